import type { Kysely } from "kysely";
import type { Tier } from "../capabilities/policy.js";
import type { Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";
import { callLimits } from "./call-counter.js";
import type { GatewayState } from "./gateway-state.js";
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
 * check meant for one. The database stays the durable record: changes are written in batches (one
 * transaction for everything decided meanwhile) and each decision waits for the batch holding its state,
 * so a crash never forgets a nonce, a counter or a lockout behind an answer already given. State is read
 * back from the database the first time a key or subject is met.
 */
export class MemoryGatewayState implements GatewayState {
  private readonly keys = new Map<string, Promise<KeyState>>();
  private readonly loadedKeys = new Map<string, KeyState>();
  private lockouts: Promise<Map<string, Lockout>> | null = null;
  private readonly dirtyKeys = new Map<string, { nonces: bigint[]; pairs: Set<string> }>();
  private readonly dirtySubjects = new Set<string>();
  private waiters: { resolve(): void; reject(error: unknown): void }[] = [];
  private scheduled = false;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
  ) {}

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
      .then(
        (rows) =>
          new Map(
            rows.map((r) => [
              r.subject,
              { failures: r.failures, windowStart: r.window_start, lockedUntil: r.locked_until },
            ]),
          ),
      );
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
    await this.persist();
  }

  async claimNonce(keyId: string, nonce: bigint, window: number): Promise<boolean> {
    const state = await this.key(keyId);
    if (nonce <= state.floor || (window === 0 && nonce <= state.last) || state.used.has(nonce)) return false;
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
    await this.persist();
    return true;
  }

  async claimOtpStep(keyId: string, step: number): Promise<boolean> {
    const state = await this.key(keyId);
    if (state.otpStep !== null && state.otpStep >= step) return false;
    state.otpStep = step;
    this.dirty(keyId);
    await this.persist();
    return true;
  }

  async chargeCalls(keyId: string, tier: Tier, cost: number, now: number): Promise<boolean> {
    const state = await this.key(keyId);
    const { max, decayPerSecond } = callLimits[tier];
    if (!charge(state.calls, cost, max, decayPerSecond, now)) return false;
    state.lastUsedAt = now;
    this.dirty(keyId);
    await this.persist();
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
    await this.persist();
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

  /** Resolves once a batch holding every change made so far is committed (group commit). */
  private persist(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        // One batch at a time, in order: the next starts when the one in flight has committed.
        this.writing = this.writing.then(() => this.writeBatch());
      }
    });
  }

  private async writeBatch(): Promise<void> {
    this.scheduled = false;
    const waiters = this.waiters;
    this.waiters = [];
    const keys = [...this.dirtyKeys];
    this.dirtyKeys.clear();
    const subjects = [...this.dirtySubjects];
    this.dirtySubjects.clear();
    const lockouts = subjects.length > 0 ? await this.subjects() : new Map<string, Lockout>();
    try {
      await this.db.transaction().execute(async (trx) => {
        for (const [keyId, dirty] of keys) {
          const state = this.loadedKeys.get(keyId);
          if (!state) continue;
          await trx
            .updateTable("api_keys")
            .set({
              last_nonce: pad(state.last),
              nonce_floor: pad(state.floor),
              otp_last_step: state.otpStep,
              rate_level: state.calls.level,
              rate_at: state.calls.at,
              last_used_at: state.lastUsedAt,
            })
            .where("id", "=", keyId)
            .execute();
          if (dirty.nonces.length > 0) {
            await trx
              .insertInto("api_key_nonces")
              .values(dirty.nonces.map((nonce) => ({ key_id: keyId, nonce: pad(nonce) })))
              .onConflict((oc) => oc.columns(["key_id", "nonce"]).doNothing())
              .execute();
            await trx
              .deleteFrom("api_key_nonces")
              .where("key_id", "=", keyId)
              .where("nonce", "<=", pad(state.floor))
              .execute();
          }
          for (const pair of dirty.pairs) {
            const counter = state.trading.get(pair)!;
            await trx
              .insertInto("api_trading_counters")
              .values({ key_id: keyId, pair, level: counter.level, level_at: counter.at })
              .onConflict((oc) =>
                oc.columns(["key_id", "pair"]).doUpdateSet({ level: counter.level, level_at: counter.at }),
              )
              .execute();
          }
        }
        for (const subject of subjects) {
          const lockout = lockouts.get(subject)!;
          const values = {
            failures: lockout.failures,
            window_start: lockout.windowStart,
            locked_until: lockout.lockedUntil,
          };
          await trx
            .insertInto("api_lockouts")
            .values({ subject, ...values })
            .onConflict((oc) => oc.column("subject").doUpdateSet(values))
            .execute();
        }
      });
      for (const waiter of waiters) waiter.resolve();
    } catch (error) {
      for (const waiter of waiters) waiter.reject(error);
    }
  }
}
