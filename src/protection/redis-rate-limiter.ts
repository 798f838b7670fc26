import type { Redis } from "ioredis";
import type { Clock } from "../support/clock.js";
import { DependencyUnavailable } from "../support/problem.js";
import type { Limit, LimitDecision, RateLimiter } from "./rate-limiter.js";

// INCR and the expiry in one step, so a counter can never be left without one.
const incrementScript = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count`;

/**
 * Fixed-window counters in Redis for deployments with several instances: one atomic script per hit.
 * Windows follow the injected clock, like the database limiter; keys expire by themselves. When Redis
 * cannot answer, the request is refused with 503 rather than let through uncounted.
 */
export class RedisRateLimiter implements RateLimiter {
  constructor(
    private readonly redis: Redis,
    private readonly clock: Clock,
    private readonly prefix = "portcullis:",
  ) {}

  async hit(key: string, limit: Limit): Promise<LimitDecision> {
    const now = this.clock.now();
    const windowStart = now - (now % limit.windowMs);
    const redisKey = `${this.prefix}rate:${key}:${windowStart}`;
    const count = Number(
      await this.call(() => this.redis.eval(incrementScript, 1, redisKey, limit.windowMs * 2)),
    );
    const retryAfterSeconds = Math.max(1, Math.ceil((windowStart + limit.windowMs - now) / 1000));
    return { allowed: count <= limit.max, count, retryAfterSeconds };
  }

  async peek(key: string, windowMs: number): Promise<number> {
    const now = this.clock.now();
    const value = await this.call(() =>
      this.redis.get(`${this.prefix}rate:${key}:${now - (now % windowMs)}`),
    );
    return value ? Number(value) : 0;
  }

  async prune(): Promise<void> {
    // Keys expire by themselves.
  }

  private async call<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch {
      throw new DependencyUnavailable("redis");
    }
  }
}
