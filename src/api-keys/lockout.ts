import type { ExpressionBuilder, Kysely } from "kysely";
import type { Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";
import { addressSubject } from "../support/network.js";

export const MAX_FAILURES = 10;
export const WINDOW_MS = 15 * 60_000;
export const LOCKOUT_MS = 15 * 60_000;

/**
 * A subject whose window is over and which is not locked counts nothing: its next failure opens a new
 * window exactly as a first one would. Such a subject is forgotten (its row deleted, its entry in memory
 * dropped). Kept for a day instead, every address or IPv6 /64 a guesser names once grew the table, and on
 * SQLite the gateway's memory, for that day: a flood from rotating addresses filled both.
 */
export const countsNothing = (windowStart: number, lockedUntil: number, now: number): boolean =>
  windowStart <= now - WINDOW_MS && lockedUntil <= now;

/** `countsNothing` as a condition on `api_lockouts` rows, for the queries that delete or skip them. */
export const rowCountsNothing = (eb: ExpressionBuilder<Database, "api_lockouts">, now: number) =>
  eb.and([eb("window_start", "<=", now - WINDOW_MS), eb("locked_until", "<=", now)]);

/**
 * Who a failure is counted against. Before a valid signature anyone can send anything, so failures count
 * against where they come from (the address, an IPv6 address by its /64, and that address with the key it
 * named), never against the key alone: knowing a key's public string must not let a stranger lock its
 * owner out. A used or stale nonce is validly signed but proves no secret (a captured copy, sent again or
 * late), so it counts against the source as well; a wrong key `otp` after a valid signature needs the
 * secret, and counts against the key.
 */
export const sourceSubjects = (apiKey: string | undefined, ip: string): string[] => {
  const source = addressSubject(ip);
  return apiKey ? [`ip:${source}`, `keyip:${apiKey.slice(0, 128)}|${source}`] : [`ip:${source}`];
};
export const keySubject = (keyId: string): string => `key:${keyId}`;

/**
 * docs/behaviour.md §11: ten bad signatures, nonces or keys within 15 minutes against one subject lock it out for 15
 * minutes (`EGeneral:Temporary lockout`). Each failure is one upsert that counts within a window
 * opened by the first failure and sets the lock on the tenth, so parallel guesses count exactly.
 */
export class ApiLockout {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
  ) {}

  /** The subjects among these that are locked out now (one query for every subject of a request). */
  async lockedOut(subjects: string[]): Promise<Set<string>> {
    const rows = await this.db
      .selectFrom("api_lockouts")
      .select("subject")
      .where("subject", "in", subjects)
      .where("locked_until", ">", this.clock.now())
      .execute();
    return new Set(rows.map((row) => row.subject));
  }

  async recordFailure(subjects: string[]): Promise<void> {
    const now = this.clock.now();
    const windowOpenedBefore = now - WINDOW_MS;
    for (const subject of subjects) {
      await this.db
        .insertInto("api_lockouts")
        .values({ subject, failures: 1, window_start: now, locked_until: 0 })
        .onConflict((oc) =>
          oc.column("subject").doUpdateSet((eb) => {
            const windowOver = eb("api_lockouts.window_start", "<=", windowOpenedBefore);
            return {
              failures: eb
                .case()
                .when(windowOver)
                .then(1)
                .else(eb("api_lockouts.failures", "+", 1))
                .end(),
              window_start: eb
                .case()
                .when(windowOver)
                .then(now)
                .else(eb.ref("api_lockouts.window_start"))
                .end(),
              locked_until: eb
                .case()
                .when(eb.and([eb.not(windowOver), eb("api_lockouts.failures", ">=", MAX_FAILURES - 1)]))
                .then(now + LOCKOUT_MS)
                .else(eb.ref("api_lockouts.locked_until"))
                .end(),
            };
          }),
        )
        .execute();
    }
  }

  /** Deletes the rows of the subjects that count nothing any more (`countsNothing`). */
  async prune(): Promise<void> {
    const now = this.clock.now();
    await this.db
      .deleteFrom("api_lockouts")
      .where((eb) => rowCountsNothing(eb, now))
      .execute();
  }
}
