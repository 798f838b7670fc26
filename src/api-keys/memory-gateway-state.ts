import type SqliteDatabase from "better-sqlite3";
import type { Kysely } from "kysely";
import type { AuditLog } from "../audit/audit-log.js";
import type { Tier } from "../capabilities/policy.js";
import type { Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";
import { callLimits } from "./call-counter.js";
import type { DatabaseGatewayState, GatewayState, NonceClaim } from "./gateway-state.js";
import { countsNothing, LOCKOUT_MS, MAX_FAILURES, rowCountsNothing, WINDOW_MS } from "./lockout.js";
import { type TradingCharge, tradingLimits } from "./trading-limiter.js";

const pad = (n: bigint) => n.toString().padStart(20, "0");
/** How long a key's latest state may be only in the journal before its `api_keys` row is brought up to date. */
const FOLD_AFTER_MS = 1_000;
/** At most this many `api_keys` rows are brought up to date in one batch, so no batch waits long for it. */
const FOLD_PER_BATCH = 32;

/** A key's state as the journal holds it: [key id, last nonce, floor, OTP step, call level, level at, last used]. */
type JournalState = [string, string, string, number | null, number, number, number | null];

interface Level {
  level: number;
  at: number;
}

interface KeyState {
  last: bigint;
  floor: bigint;
  /** Nonces above the floor already used (keys with a window). */
  used: Set<bigint>;
  otpStep: number | null;
  calls: Level;
  trading: Map<string, Level>;
  lastUsedAt: number | null;
}

interface Lockout {
  failures: number;
  windowStart: number;
  lockedUntil: number;
}

/**
 * The batch's statements, prepared once. They run synchronously on the connection kysely uses, from
 * inside the callback of the audit batch's transaction, so they are part of that transaction.
 */
function writeStatements(sqlite: SqliteDatabase.Database) {
  return {
    journal: sqlite.prepare("insert into api_key_state_journal (states) values (?)"),
    forgetJournal: sqlite.prepare("delete from api_key_state_journal where seq < ?"),
    key: sqlite.prepare(
      `update api_keys set last_nonce = ?, nonce_floor = ?, otp_last_step = ?, rate_level = ?, rate_at = ?,
         last_used_at = ? where id = ?`,
    ),
    nonce: sqlite.prepare("insert into api_key_nonces (key_id, nonce) values (?, ?) on conflict do nothing"),
    forgetNonces: sqlite.prepare("delete from api_key_nonces where key_id = ? and nonce <= ?"),
    trading: sqlite.prepare(
      `insert into api_trading_counters (key_id, pair, level, level_at) values (?, ?, ?, ?)
         on conflict (key_id, pair) do update set level = excluded.level, level_at = excluded.level_at`,
    ),
    lockout: sqlite.prepare(
      `insert into api_lockouts (subject, failures, window_start, locked_until) values (?, ?, ?, ?)
         on conflict (subject) do update set failures = excluded.failures,
           window_start = excluded.window_start, locked_until = excluded.locked_until`,
    ),
  };
}

/** A decaying counter charged by `cost` if it stays within `max`: decided and applied at once. */
function charge(counter: Level, cost: number, max: number, decayPerSecond: number, now: number): boolean {
  const decayed = Math.max(0, counter.level - ((now - counter.at) * decayPerSecond) / 1000);
  if (decayed + cost > max) return false;
  counter.level = decayed + cost;
  counter.at = now;
  return true;
}

/**
 * Folds what the journal holds into `api_keys` (at start, before any key's state is read: after a crash,
 * the latest state of recently used keys is only there). Every field only ever grows (nonces, the OTP
 * step, the times), and a call level is newer when its time is: so a journal state older than its row
 * (the row was brought up to date after it was written) changes nothing, and the order rows are folded
 * in does not matter.
 */
export function foldJournal(sqlite: SqliteDatabase.Database): void {
  const rows = sqlite
    .prepare("select states from api_key_state_journal order by seq")
    .pluck()
    .all() as string[];
  if (rows.length === 0) return;
  const merge = sqlite.prepare(
    `update api_keys set
       last_nonce = max(last_nonce, @last),
       nonce_floor = max(nonce_floor, @floor),
       otp_last_step = case when otp_last_step is null or otp_last_step < @otpStep then @otpStep else otp_last_step end,
       rate_level = case when @at > rate_at then @level when @at = rate_at then max(rate_level, @level) else rate_level end,
       rate_at = max(rate_at, @at),
       last_used_at = case when last_used_at is null or last_used_at < @lastUsedAt then @lastUsedAt else last_used_at end
     where id = @keyId`,
  );
  sqlite.transaction(() => {
    for (const row of rows)
      for (const [keyId, last, floor, otpStep, level, at, lastUsedAt] of JSON.parse(row) as JournalState[])
        merge.run({ last, floor, otpStep, level, at, lastUsedAt, keyId });
    sqlite.prepare("delete from api_key_state_journal").run();
  })();
}

/**
 * The gateway's hot state for a single process (the embedded SQLite deployment, which is one process by
 * construction): every rule is decided in memory, synchronously, so two requests can never both pass a
 * check meant for one. The database stays the durable record: changes are written in the audit log's
 * group-committed batches, in the same transaction as the audit entries of the decisions that made
 * them. Every answer waits for such a commit (its own audit entry, or its count in aggregate, each
 * resolved once the batch that holds it has committed), so a crash never forgets a nonce, a counter or a
 * lockout behind an answer already given. State is read back from the database the first time a key or
 * subject is met.
 *
 * A key's own state (its nonces' high mark and floor, OTP step, call counter, last use) is written to the
 * journal (`api_key_state_journal`): one row a batch with the latest state of every key the batch changed,
 * appended where the previous one ended. Writing each key's wide `api_keys` row instead dirtied a page per
 * key, scattered over the table, and was 40% of a batch. About a second after a key's first change that
 * is only in the journal, its row is brought up to date from memory (a few keys a batch), and journal rows
 * that hold no key's latest state any more are deleted, in the same batch. Durability is unchanged: every
 * change is in the batch that commits before the answer; only where it lies differs.
 */
export class MemoryGatewayState implements GatewayState {
  private readonly keys = new Map<string, Promise<KeyState>>();
  private readonly loadedKeys = new Map<string, KeyState>();
  private lockouts: Promise<Map<string, Lockout>> | null = null;
  /** The same map once read: the batch writer runs synchronously and needs it without waiting. */
  private lockoutsLoaded: Map<string, Lockout> | null = null;
  private readonly dirtyKeys = new Map<string, { nonces: bigint[]; pairs: Set<string> }>();
  private readonly dirtySubjects = new Set<string>();

  private readonly write: ReturnType<typeof writeStatements>;
  /**
   * Keys whose latest state is only in the journal, in the order of the journal row of their first such
   * change (that row's seq, and when it was written). No journal row from the first entry's on is
   * deleted; the rows before it hold no key's latest state.
   */
  private unfolded = new Map<string, { seq: number; at: number }>();
  /** Set by `close`: the next batch brings every row up to date and leaves the journal empty. */
  private foldAll = false;

  constructor(
    private readonly db: Kysely<Database>,
    /** The connection under `db`: the batch's statements run on it inside the audit batch's transaction. */
    sqlite: SqliteDatabase.Database,
    private readonly clock: Clock,
    /** Signature claims and weight pools (KuCoin, Kraken Futures) stay one statement in the database. */
    private readonly database: DatabaseGatewayState,
    private readonly audit: AuditLog,
  ) {
    foldJournal(sqlite);
    this.write = writeStatements(sqlite);
    audit.joinBatches(() => this.writeDirty());
  }

  claimSignature(keyId: string, signature: string, expiresAt: number, now: number): Promise<boolean> {
    return this.database.claimSignature(keyId, signature, expiresAt, now);
  }

  chargeWeight(
    keyId: string,
    pool: string,
    weight: number,
    budget: { limit: number; windowMs: number },
    now: number,
  ): Promise<boolean> {
    return this.database.chargeWeight(keyId, pool, weight, budget, now);
  }

  private key(keyId: string): Promise<KeyState> {
    let state = this.keys.get(keyId);
    if (!state) {
      state = this.loadKey(keyId);
      this.keys.set(keyId, state);
      state.then(
        (loaded) => this.loadedKeys.set(keyId, loaded),
        () => this.keys.delete(keyId),
      );
    }
    return state;
  }

  private async loadKey(keyId: string): Promise<KeyState> {
    const [row, nonces, counters] = await Promise.all([
      this.db
        .selectFrom("api_keys")
        .select(["last_nonce", "nonce_floor", "otp_last_step", "rate_level", "rate_at", "last_used_at"])
        .where("id", "=", keyId)
        .executeTakeFirstOrThrow(),
      this.db.selectFrom("api_key_nonces").select("nonce").where("key_id", "=", keyId).execute(),
      this.db.selectFrom("api_trading_counters").selectAll().where("key_id", "=", keyId).execute(),
    ]);
    const floor = BigInt(row.nonce_floor);
    return {
      last: BigInt(row.last_nonce),
      floor,
      used: new Set(nonces.map((n) => BigInt(n.nonce)).filter((n) => n > floor)),
      otpStep: row.otp_last_step,
      calls: { level: row.rate_level, at: row.rate_at },
      trading: new Map(counters.map((c) => [c.pair, { level: c.level, at: c.level_at }])),
      lastUsedAt: row.last_used_at,
    };
  }

  private subjects(): Promise<Map<string, Lockout>> {
    this.lockouts ??= this.loadSubjects(this.clock.now());
    return this.lockouts;
  }

  /** The subjects that count (`countsNothing` says which do not), in order of window start as `forgetSome` needs. */
  private async loadSubjects(now: number): Promise<Map<string, Lockout>> {
    const rows = await this.db
      .selectFrom("api_lockouts")
      .selectAll()
      .where((eb) => eb.not(rowCountsNothing(eb, now)))
      .orderBy("window_start")
      .execute();
    this.lockoutsLoaded = new Map(
      rows.map((r) => [
        r.subject,
        { failures: r.failures, windowStart: r.window_start, lockedUntil: r.locked_until },
      ]),
    );
    return this.lockoutsLoaded;
  }

  async lockedOut(subjects: string[]): Promise<Set<string>> {
    const lockouts = await this.subjects();
    const now = this.clock.now();
    return new Set(subjects.filter((subject) => (lockouts.get(subject)?.lockedUntil ?? 0) > now));
  }

  async recordFailure(subjects: string[]): Promise<void> {
    const lockouts = await this.subjects();
    const now = this.clock.now();
    for (const subject of subjects) {
      const current = lockouts.get(subject);
      if (!current || current.windowStart <= now - WINDOW_MS) {
        // A new window: the subject moves to the end of the map, which stays in order of window start.
        lockouts.delete(subject);
        lockouts.set(subject, { failures: 1, windowStart: now, lockedUntil: current?.lockedUntil ?? 0 });
      } else {
        current.failures += 1;
        if (current.failures >= MAX_FAILURES) current.lockedUntil = now + LOCKOUT_MS;
      }
      this.dirtySubjects.add(subject);
    }
    this.forgetSome(lockouts, now);
    // Not waited for here: the refusal's audit record (its entry, or its count in aggregate) is written
    // after this, and the verifier answers only once that record's batch has committed, a batch that
    // writes every subject marked by then. Waiting here as well made each such refusal wait for two
    // commits, one after the other.
  }

  async claimNonce(keyId: string, nonce: bigint, window: number): Promise<NonceClaim> {
    const state = await this.key(keyId);
    if (state.used.has(nonce) || (window === 0 && nonce === state.last)) return "duplicate";
    if (nonce <= state.floor || (window === 0 && nonce < state.last)) return "stale";
    const dirty = this.dirty(keyId);
    if (nonce > state.last) state.last = nonce;
    const floor = state.last - BigInt(window);
    if (floor > state.floor) {
      state.floor = floor;
      for (const used of state.used) if (used <= floor) state.used.delete(used);
    }
    if (window > 0 && nonce > state.floor) {
      state.used.add(nonce);
      dirty.nonces.push(nonce);
    }
    return "accepted";
  }

  async highestNonce(keyId: string): Promise<bigint> {
    return (await this.key(keyId)).last;
  }

  async claimOtpStep(keyId: string, step: number): Promise<boolean> {
    const state = await this.key(keyId);
    if (state.otpStep !== null && state.otpStep >= step) return false;
    state.otpStep = step;
    this.dirty(keyId);
    return true;
  }

  async chargeCalls(keyId: string, tier: Tier, cost: number, now: number): Promise<boolean> {
    const state = await this.key(keyId);
    const { max, decayPerSecond } = callLimits[tier];
    if (!charge(state.calls, cost, max, decayPerSecond, now)) return false;
    state.lastUsedAt = now;
    this.dirty(keyId);
    return true;
  }

  async chargeTrading(keyId: string, tier: Tier, trade: TradingCharge, now: number): Promise<boolean> {
    const state = await this.key(keyId);
    const { max, decayPerSecond } = tradingLimits[tier];
    let counter = state.trading.get(trade.pair);
    if (!counter) {
      counter = { level: 0, at: now };
      state.trading.set(trade.pair, counter);
    }
    if (!charge(counter, trade.cost, max, decayPerSecond, now)) return false;
    this.dirty(keyId).pairs.add(trade.pair);
    return true;
  }

  /** When a key was last used, as this process knows it (its `api_keys` row may be a second behind). */
  lastUsedAt(keyId: string): number | null {
    return this.loadedKeys.get(keyId)?.lastUsedAt ?? null;
  }

  /**
   * Runs batches while a key's row is due to be brought up to date, for when no request would run one
   * (the server calls it every second): rows catch up after the traffic stops, too. Up to 16 batches a
   * call, so after a burst over many keys they catch up at about 500 rows a second; under traffic each
   * of them only waits for a batch that runs anyway.
   */
  async foldWhenDue(): Promise<void> {
    for (let batches = 0; batches < 16 && this.foldDue(); batches += 1) await this.audit.commit();
  }

  /** Brings every key's row up to date in one last batch, leaving the journal empty (a clean stop). */
  async close(): Promise<void> {
    this.foldAll = true;
    await this.audit.commit();
  }

  /** Housekeeping: forgets every lockout subject that counts nothing (`countsNothing`), and its row. */
  async prune(): Promise<void> {
    const lockouts = await this.subjects();
    const now = this.clock.now();
    for (const [subject, lockout] of lockouts)
      if (countsNothing(lockout.windowStart, lockout.lockedUntil, now)) lockouts.delete(subject);
    // Their rows: the database state's own housekeeping.
    await this.database.prune();
  }

  /** How many lockout subjects are held in memory (those whose window is open, or that are locked). */
  get lockoutSubjects(): number {
    return this.lockoutsLoaded?.size ?? 0;
  }

  /**
   * Forgets the oldest subjects that count nothing, a few each failure: more than a failure adds, so the
   * map holds about one window's worth of subjects (plus the locked ones) however fast new addresses come,
   * without waiting for housekeeping. The map is in order of window start; a subject still locked is
   * moved to the end, to be looked at again when its turn comes.
   */
  private forgetSome(lockouts: Map<string, Lockout>, now: number): void {
    for (let looked = 0; looked < 4; looked++) {
      const first = lockouts.entries().next();
      if (first.done) return;
      const [subject, lockout] = first.value;
      if (lockout.windowStart > now - WINDOW_MS) return;
      lockouts.delete(subject);
      if (!countsNothing(lockout.windowStart, lockout.lockedUntil, now)) lockouts.set(subject, lockout);
    }
  }

  private dirty(keyId: string) {
    let entry = this.dirtyKeys.get(keyId);
    if (!entry) {
      entry = { nonces: [], pairs: new Set() };
      this.dirtyKeys.set(keyId, entry);
    }
    return entry;
  }

  /**
   * Writes everything changed since the last batch inside the audit batch's transaction; should that
   * transaction fail, the changes are marked again for the next one.
   */
  private writeDirty(): (() => void) | undefined {
    if (this.dirtyKeys.size === 0 && this.dirtySubjects.size === 0 && !this.foldDue()) return undefined;
    const keys = [...this.dirtyKeys];
    this.dirtyKeys.clear();
    const subjects = [...this.dirtySubjects];
    this.dirtySubjects.clear();
    const now = this.clock.now();
    const added: string[] = [];
    let folded: [string, { seq: number; at: number }][] = [];
    const undo = () => {
      // Rolled back: the journal row, the rows brought up to date and the deletions with it. The keys
      // folded were the first in order, so put back in front they keep it.
      for (const keyId of added) this.unfolded.delete(keyId);
      if (folded.length > 0) this.unfolded = new Map([...folded, ...this.unfolded]);
      for (const [keyId, dirty] of keys) {
        const again = this.dirty(keyId);
        again.nonces.push(...dirty.nonces);
        for (const pair of dirty.pairs) again.pairs.add(pair);
      }
      for (const subject of subjects) this.dirtySubjects.add(subject);
    };
    try {
      // Loaded already (a subject is marked only after its lockouts were read): no query inside the batch.
      const lockouts = this.lockoutsLoaded ?? new Map<string, Lockout>();
      const journaled: JournalState[] = [];
      for (const [keyId, dirty] of keys) {
        const state = this.loadedKeys.get(keyId);
        if (!state) continue;
        journaled.push(journalState(keyId, state));
        if (dirty.nonces.length > 0) {
          for (const nonce of dirty.nonces) this.write.nonce.run(keyId, pad(nonce));
          this.write.forgetNonces.run(keyId, pad(state.floor));
        }
        for (const pair of dirty.pairs) {
          const counter = state.trading.get(pair)!;
          this.write.trading.run(keyId, pair, counter.level, counter.at);
        }
      }
      if (journaled.length > 0) {
        const seq = Number(this.write.journal.run(JSON.stringify(journaled)).lastInsertRowid);
        for (const [keyId] of journaled) {
          if (this.unfolded.has(keyId)) continue;
          this.unfolded.set(keyId, { seq, at: now });
          added.push(keyId);
        }
      }
      folded = this.fold(now);
      for (const subject of subjects) {
        const lockout = lockouts.get(subject);
        if (!lockout) continue; // forgotten: it counted nothing (never so soon after its failure)
        this.write.lockout.run(subject, lockout.failures, lockout.windowStart, lockout.lockedUntil);
      }
    } catch (error) {
      // The batch's transaction rolls back: everything is written again by the next one.
      undo();
      throw error;
    }
    return undo;
  }

  /** Whether a key's row is due to be brought up to date (or `close` asked for all of them). */
  private foldDue(): boolean {
    if (this.unfolded.size === 0) return false;
    if (this.foldAll) return true;
    const first = this.unfolded.values().next().value!;
    return first.at <= this.clock.now() - FOLD_AFTER_MS;
  }

  /**
   * Brings the rows of the keys longest only in the journal up to date from memory (at most
   * FOLD_PER_BATCH, unless closing), then deletes the journal rows no key needs any more. Returns the
   * keys it took off `unfolded`, in order, for the batch's undo.
   */
  private fold(now: number): [string, { seq: number; at: number }][] {
    const folded: [string, { seq: number; at: number }][] = [];
    let firstLeft: { seq: number } | null = null;
    for (const entry of this.unfolded) {
      const [keyId, { at }] = entry;
      if (!this.foldAll && (folded.length >= FOLD_PER_BATCH || at > now - FOLD_AFTER_MS)) {
        firstLeft = entry[1];
        break;
      }
      const state = this.loadedKeys.get(keyId);
      if (state) {
        const [, last, floor, otpStep, level, levelAt, lastUsedAt] = journalState(keyId, state);
        this.write.key.run(last, floor, otpStep, level, levelAt, lastUsedAt, keyId);
      }
      folded.push(entry);
    }
    if (folded.length === 0) return folded;
    // Rows before the first key still only in the journal hold nobody's latest state.
    this.write.forgetJournal.run(firstLeft ? firstLeft.seq : Number.MAX_SAFE_INTEGER);
    // Only once every statement ran: should one throw, the batch's undo finds `unfolded` as it was.
    for (const [keyId] of folded) this.unfolded.delete(keyId);
    return folded;
  }
}

function journalState(keyId: string, state: KeyState): JournalState {
  const c = state.calls;
  return [keyId, pad(state.last), pad(state.floor), state.otpStep, c.level, c.at, state.lastUsedAt];
}
