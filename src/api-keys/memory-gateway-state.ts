import type SqliteDatabase from "better-sqlite3";
import type { Kysely } from "kysely";
import type { AuditLog } from "../audit/audit-log.js";
import type { Tier } from "../capabilities/policy.js";
import type { Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";
import { callLimits } from "./call-counter.js";
import type { DatabaseGatewayState, GatewayState, NonceClaim } from "./gateway-state.js";
import { type TradingCharge, tradingLimits } from "./trading-limiter.js";

const MAX_FAILURES = 10;
const WINDOW_MS = 15 * 60_000;
const LOCKOUT_MS = 15 * 60_000;
const pad = (n: bigint) => n.toString().padStart(20, "0");

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
 * The gateway's hot state for a single process (the embedded SQLite deployment, which is one process by
 * construction): every rule is decided in memory, synchronously, so two requests can never both pass a
 * check meant for one. The database stays the durable record: changes are written in the audit log's
 * group-committed batches, in the same transaction as the audit entries of the decisions that made
 * them. Every answer waits for such a commit (its own audit entry, or its count in aggregate, each
 * resolved once the batch that holds it has committed), so a crash never forgets a nonce, a counter or a
 * lockout behind an answer already given. State is read back from the database the first time a key or
 * subject is met.
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

  constructor(
    private readonly db: Kysely<Database>,
    /** The connection under `db`: the batch's statements run on it inside the audit batch's transaction. */
    sqlite: SqliteDatabase.Database,
    private readonly clock: Clock,
    /** Signature claims and weight pools (KuCoin, Kraken Futures) stay one statement in the database. */
    private readonly database: DatabaseGatewayState,
    audit: AuditLog,
  ) {
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
    this.lockouts ??= this.db
      .selectFrom("api_lockouts")
      .selectAll()
      .where("window_start", ">", this.clock.now() - 24 * 3_600_000)
      .execute()
      .then((rows) => {
        this.lockoutsLoaded = new Map(
          rows.map((r) => [
            r.subject,
            { failures: r.failures, windowStart: r.window_start, lockedUntil: r.locked_until },
          ]),
        );
        return this.lockoutsLoaded;
      });
    return this.lockouts;
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
        lockouts.set(subject, { failures: 1, windowStart: now, lockedUntil: current?.lockedUntil ?? 0 });
      } else {
        current.failures += 1;
        if (current.failures >= MAX_FAILURES) current.lockedUntil = now + LOCKOUT_MS;
      }
      this.dirtySubjects.add(subject);
    }
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

  /** Forgets lockout subjects that are neither counting nor locked (their rows are pruned likewise). */
  async prune(): Promise<void> {
    const lockouts = await this.subjects();
    const now = this.clock.now();
    for (const [subject, lockout] of lockouts) {
      if (lockout.windowStart < now - 24 * 3_600_000 && lockout.lockedUntil < now) lockouts.delete(subject);
    }
    await this.db
      .deleteFrom("api_lockouts")
      .where("window_start", "<", now - 24 * 3_600_000)
      .where("locked_until", "<", now)
      .execute();
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
    if (this.dirtyKeys.size === 0 && this.dirtySubjects.size === 0) return undefined;
    const keys = [...this.dirtyKeys];
    this.dirtyKeys.clear();
    const subjects = [...this.dirtySubjects];
    this.dirtySubjects.clear();
    // Loaded already (a subject is marked only after its lockouts were read): no query inside the batch.
    const lockouts = this.lockoutsLoaded ?? new Map<string, Lockout>();
    for (const [keyId, dirty] of keys) {
      const state = this.loadedKeys.get(keyId);
      if (!state) continue;
      const c = state.calls;
      this.write.key.run(
        pad(state.last),
        pad(state.floor),
        state.otpStep,
        c.level,
        c.at,
        state.lastUsedAt,
        keyId,
      );
      if (dirty.nonces.length > 0) {
        for (const nonce of dirty.nonces) this.write.nonce.run(keyId, pad(nonce));
        this.write.forgetNonces.run(keyId, pad(state.floor));
      }
      for (const pair of dirty.pairs) {
        const counter = state.trading.get(pair)!;
        this.write.trading.run(keyId, pair, counter.level, counter.at);
      }
    }
    for (const subject of subjects) {
      const lockout = lockouts.get(subject)!;
      this.write.lockout.run(subject, lockout.failures, lockout.windowStart, lockout.lockedUntil);
    }
    return () => {
      for (const [keyId, dirty] of keys) {
        const again = this.dirty(keyId);
        again.nonces.push(...dirty.nonces);
        for (const pair of dirty.pairs) again.pairs.add(pair);
      }
      for (const subject of subjects) this.dirtySubjects.add(subject);
    };
  }
}
