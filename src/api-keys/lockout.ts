import type { Kysely } from "kysely";
import type { Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";

const MAX_FAILURES = 10;
const WINDOW_MS = 15 * 60_000;
const LOCKOUT_MS = 15 * 60_000;

/** The subjects a signed request is counted under: the API-Key it names (known or not) and its IP. */
export function lockoutSubjects(apiKey: string | undefined, ip: string): string[] {
  return apiKey ? [`key:${apiKey.slice(0, 128)}`, `ip:${ip}`] : [`ip:${ip}`];
}

/**
 * SPEC §11: ten bad signatures, nonces or keys within 15 minutes from one key or one IP lock both out for
 * 15 minutes (`EGeneral:Temporary lockout`). Each failure is one upsert that counts within a window
 * opened by the first failure and sets the lock on the tenth, so parallel guesses count exactly.
 */
export class ApiLockout {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
  ) {}

  async isLockedOut(subjects: string[]): Promise<boolean> {
    const row = await this.db
      .selectFrom("api_lockouts")
      .select("subject")
      .where("subject", "in", subjects)
      .where("locked_until", ">", this.clock.now())
      .executeTakeFirst();
    return row !== undefined;
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

  async prune(): Promise<void> {
    const now = this.clock.now();
    await this.db
      .deleteFrom("api_lockouts")
      .where("window_start", "<", now - 24 * 3_600_000)
      .where("locked_until", "<", now)
      .execute();
  }
}
