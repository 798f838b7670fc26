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
  close(): void;
}

/**
 * Revocations over Redis pub/sub, so a session ended on one instance is refused by the others on their
 * next request. The database stays the record: a lost message only means another instance may serve a
 * cached session until its short cache time runs out.
 */
export class RedisRevocationBus implements RevocationBus {
  private readonly subscriber: Redis;
  private readonly handlers: ((revocation: Revocation) => void)[] = [];

  constructor(
    private readonly redis: Redis,
    private readonly channel: string,
  ) {
    this.subscriber = redis.duplicate({ lazyConnect: true, enableOfflineQueue: true });
    this.subscriber.on("error", () => {});
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
    void this.subscriber.subscribe(channel).catch(() => {});
  }

  async publish(revocation: Revocation): Promise<void> {
    await this.redis.publish(this.channel, JSON.stringify(revocation)).catch(() => 0);
  }

  subscribe(handler: (revocation: Revocation) => void): void {
    this.handlers.push(handler);
  }

  close(): void {
    this.subscriber.disconnect();
  }
}
