import type { Redis } from "ioredis";

/**
 * A session ended, or an account changed: every instance drops what it cached of that session (or of all
 * the account's sessions) and reads it again on its next request.
 */
export interface Revocation {
  accountId: string;
  /** Absent: every session of the account. */
  sessionId?: string;
}

export interface RevocationBus {
  publish(revocation: Revocation): Promise<void>;
  subscribe(handler: (revocation: Revocation) => void): void;
  /**
   * A counter every revocation anywhere raises before it is published. A cached session is served only
   * while the counter still reads what it read before the session was loaded, so a revocation made on
   * another instance is honoured on the very next request, whether or not its message has arrived.
   * Null when it cannot be read: then nothing is served from the cache.
   */
  generation(): Promise<string | null>;
  close(): void;
}

/**
 * Revocations over Redis: a generation counter that every instance reads before serving a cached session
 * (so a session ended on one instance is refused by the others on their next request), and pub/sub so
 * the others drop their cached copies at once. The database stays the record.
 */
export class RedisRevocationBus implements RevocationBus {
  private readonly subscriber: Redis;
  private readonly handlers: ((revocation: Revocation) => void)[] = [];

  constructor(
    private readonly redis: Redis,
    private readonly channel: string,
  ) {
    // ioredis subscribes again by itself after a reconnection, but drops that command's promise: a
    // connection lost before the answer (Redis flapping, or this instance stopping just then) rejected it
    // with no handler, and an unhandled rejection ends a Node process. So the bus subscribes on every
    // `ready` itself, its failure handled: the next `ready` tries again.
    this.subscriber = redis.duplicate({
      lazyConnect: true,
      enableOfflineQueue: true,
      autoResubscribe: false,
    });
    this.subscriber.on("error", () => {});
    this.subscriber.on("ready", () => {
      this.subscriber.subscribe(channel).catch(() => {});
    });
    this.subscriber.on("message", (_channel, message: string) => {
      try {
        const revocation = JSON.parse(message) as Revocation;
        if (typeof revocation?.accountId !== "string") return;
        for (const handler of this.handlers) handler(revocation);
      } catch {
        // Not ours; ignore.
      }
    });
    this.subscriber.connect().catch(() => {});
  }

  async publish(revocation: Revocation): Promise<void> {
    // The counter must move, or other instances would go on serving what they cached: fail loudly.
    await this.redis.incr(`${this.channel}:generation`);
    await this.redis.publish(this.channel, JSON.stringify(revocation)).catch(() => 0);
  }

  async generation(): Promise<string | null> {
    try {
      return (await this.redis.get(`${this.channel}:generation`)) ?? "0";
    } catch {
      return null;
    }
  }

  subscribe(handler: (revocation: Revocation) => void): void {
    this.handlers.push(handler);
  }

  close(): void {
    this.subscriber.disconnect();
  }
}
