import { type Kysely, sql } from "kysely";
import type { Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";

export interface Limit {
  max: number;
  windowMs: number;
}

export interface LimitDecision {
  allowed: boolean;
  count: number;
  retryAfterSeconds: number;
}

/** Counts hits per key in fixed windows. Implementations must be atomic across instances. */
export interface RateLimiter {
  hit(key: string, limit: Limit): Promise<LimitDecision>;
  /** The count in the current window, without adding to it. */
  peek(key: string, windowMs: number): Promise<number>;
  /** Forget windows older than this; a no-op where counters expire by themselves. */
  prune(olderThanMs: number): Promise<void>;
}

/**
 * Fixed-window counters in the database: one upsert per hit, atomic on SQLite and PostgreSQL alike, so
 * limits hold across instances even without Redis.
 */
export class DatabaseRateLimiter implements RateLimiter {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
  ) {}

  async hit(key: string, limit: Limit): Promise<LimitDecision> {
    const now = this.clock.now();
    const windowStart = now - (now % limit.windowMs);
    // One statement as text: it runs several times per sign-in, and the builder's version of this upsert
    // cost more to assemble and compile than to execute.
    const { rows } = await sql<{ count: number | string }>`
      insert into rate_limits (key, window_start, count) values (${key}, ${windowStart}, 1)
      on conflict (key) do update set
        count = case when rate_limits.window_start = excluded.window_start then rate_limits.count + 1 else 1 end,
        window_start = excluded.window_start
      returning count`.execute(this.db);
    const count = Number(rows[0]?.count);
    if (!Number.isSafeInteger(count)) throw new Error("the rate limit upsert returned no count");
    const retryAfterSeconds = Math.max(1, Math.ceil((windowStart + limit.windowMs - now) / 1000));
    return { allowed: count <= limit.max, count, retryAfterSeconds };
  }

  async peek(key: string, windowMs: number): Promise<number> {
    const now = this.clock.now();
    const row = await this.db
      .selectFrom("rate_limits")
      .select(["count", "window_start"])
      .where("key", "=", key)
      .executeTakeFirst();
    return row && row.window_start === now - (now % windowMs) ? row.count : 0;
  }

  async prune(olderThanMs: number): Promise<void> {
    await this.db
      .deleteFrom("rate_limits")
      .where("window_start", "<", this.clock.now() - olderThanMs)
      .execute();
  }
}
