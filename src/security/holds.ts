import type { Kysely } from "kysely";
import type { SecurityHold } from "../capabilities/evaluate.js";
import { newId } from "../crypto/tokens.js";
import type { Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";

const HOUR = 3_600_000;

/** docs/behaviour.md §7: how long withdrawals wait after each kind of security change. */
export const holdLengths = {
  password_reset: 24 * HOUR,
  second_factor_removed: 48 * HOUR,
  second_factor_reset: 48 * HOUR,
  trading_passcode_changed: 24 * HOUR,
  email_changed: 72 * HOUR,
} as const;
export type HoldKind = keyof typeof holdLengths;

/** Security holds: rows with an end; active ones feed the capability function. */
export class SecurityHolds {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
  ) {}

  async place(accountId: string, kind: HoldKind, db: Kysely<Database> = this.db): Promise<number> {
    const now = this.clock.now();
    const until = now + holdLengths[kind];
    await db
      .insertInto("security_holds")
      .values({ id: newId(), account_id: accountId, kind, created_at: now, until })
      .execute();
    return until;
  }

  async active(accountId: string): Promise<SecurityHold[]> {
    const rows = await this.db
      .selectFrom("security_holds")
      .select(["kind", "until"])
      .where("account_id", "=", accountId)
      .where("until", ">", this.clock.now())
      .orderBy("until", "desc")
      .execute();
    return rows.map((r) => ({ kind: r.kind, until: r.until }));
  }
}
