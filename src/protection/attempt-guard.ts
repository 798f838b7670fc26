import { type Kysely, type RawBuilder, sql } from "kysely";
import type { Settings } from "../config/settings.js";
import type { Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";

export interface Reservation {
  accountId: string;
  consecutiveFailures: number;
}

export type FailureOutcome =
  | { kind: "counted" }
  | { kind: "restricted"; until: number }
  | { kind: "permanently_restricted" };

export interface GuardStatus {
  restricted: boolean;
  permanent: boolean;
  until: number | null;
  consecutiveFailures: number;
}

/**
 * The per-account attempt counter of docs/behaviour.md §4, shared by every factor (password, TOTP, recovery code,
 * passkey, trading passcode, Master Key).
 *
 * A guess first *reserves* a failure with one conditional UPDATE; only a reservation may run the expensive
 * check. So however many guesses arrive in parallel, on one instance or many, at most
 * `failuresBeforeRestriction` are ever checked before the account is restricted. A check that passes
 * gives its reservation back; one that fails keeps it and may restrict the account.
 */
export class AttemptGuard {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly settings: Settings["protection"],
  ) {}

  async ensure(accountId: string): Promise<void> {
    await this.db
      .insertInto("account_guards")
      .values({ account_id: accountId })
      .onConflict((oc) => oc.column("account_id").doNothing())
      .execute();
  }

  /** Returns null while the account is restricted: the caller must answer as for a wrong guess. */
  async reserve(accountId: string): Promise<Reservation | null> {
    const now = this.clock.now();
    const limit = this.settings.failuresBeforeRestriction;
    const restrictionEnded = sql<boolean>`restricted_until is not null and restricted_until <= ${now}`;
    const row = await this.db
      .updateTable("account_guards")
      .set({
        // A restriction that has run out starts a fresh window of attempts.
        window_failures: sql`case when ${restrictionEnded} then 1 else window_failures + 1 end`,
        restricted_until: sql`case when ${restrictionEnded} then null else restricted_until end`,
        consecutive_failures: sql`consecutive_failures + 1`,
      })
      .where("account_id", "=", accountId)
      .where("permanently_restricted_at", "is", null)
      .where("consecutive_failures", "<", this.settings.failuresBeforePermanentRestriction)
      .where(
        sql<boolean>`((restricted_until is null and window_failures < ${limit}) or restricted_until <= ${now})`,
      )
      .returning(["consecutive_failures"])
      .executeTakeFirst();
    return row ? { accountId, consecutiveFailures: row.consecutive_failures } : null;
  }

  /** The guess was wrong: the reservation stays counted, and may restrict the account. */
  async recordFailure(reservation: Reservation): Promise<FailureOutcome> {
    const now = this.clock.now();
    if (reservation.consecutiveFailures >= this.settings.failuresBeforePermanentRestriction) {
      const row = await this.db
        .updateTable("account_guards")
        .set({ permanently_restricted_at: now, restricted_until: null })
        .where("account_id", "=", reservation.accountId)
        .where("permanently_restricted_at", "is", null)
        .returning("account_id")
        .executeTakeFirst();
      return row ? { kind: "permanently_restricted" } : { kind: "counted" };
    }
    const row = await this.db
      .updateTable("account_guards")
      .set({
        restricted_until: sql`cast(${now} as bigint) + ${this.restrictionLength()}`,
        restrictions: sql`restrictions + 1`,
      })
      .where("account_id", "=", reservation.accountId)
      .where("restricted_until", "is", null)
      .where("permanently_restricted_at", "is", null)
      .where("window_failures", ">=", this.settings.failuresBeforeRestriction)
      .returning("restricted_until")
      .executeTakeFirst();
    return row?.restricted_until ? { kind: "restricted", until: row.restricted_until } : { kind: "counted" };
  }

  /** The check passed: give the reservation back (the count itself resets only on a complete sign-in). */
  async release(reservation: Reservation): Promise<void> {
    await this.db
      .updateTable("account_guards")
      .set({
        window_failures: sql`window_failures - 1`,
        consecutive_failures: sql`consecutive_failures - 1`,
      })
      .where("account_id", "=", reservation.accountId)
      .where("restricted_until", "is", null)
      .where("window_failures", ">", 0)
      .where("consecutive_failures", ">", 0)
      .execute();
  }

  /** A fully successful sign-in: the owner is back, every count starts again. */
  async recordSuccess(accountId: string, db: Kysely<Database> = this.db): Promise<void> {
    await db
      .updateTable("account_guards")
      .set({ consecutive_failures: 0, window_failures: 0, restrictions: 0, restricted_until: null })
      .where("account_id", "=", accountId)
      .where("permanently_restricted_at", "is", null)
      .execute();
  }

  /** Support lifts a restriction, temporary or permanent (audited by the caller). */
  async lift(accountId: string, db: Kysely<Database> = this.db): Promise<boolean> {
    const row = await db
      .updateTable("account_guards")
      .set({
        consecutive_failures: 0,
        window_failures: 0,
        restrictions: 0,
        restricted_until: null,
        permanently_restricted_at: null,
      })
      .where("account_id", "=", accountId)
      .returning("account_id")
      .executeTakeFirst();
    return row !== undefined;
  }

  async status(accountId: string): Promise<GuardStatus> {
    const row = await this.db
      .selectFrom("account_guards")
      .selectAll()
      .where("account_id", "=", accountId)
      .executeTakeFirst();
    const now = this.clock.now();
    const permanent = row?.permanently_restricted_at != null;
    const until = row?.restricted_until != null && row.restricted_until > now ? row.restricted_until : null;
    return {
      restricted: permanent || until !== null,
      permanent,
      until,
      consecutiveFailures: row?.consecutive_failures ?? 0,
    };
  }

  /** 15 min, 30 min, 1 h … doubling with each restriction, capped at 24 h: one CASE, evaluated in the UPDATE. */
  private restrictionLength(): RawBuilder<number> {
    const { firstRestrictionMs, maxRestrictionMs } = this.settings;
    const steps: RawBuilder<unknown>[] = [];
    for (let n = 0, length = firstRestrictionMs; length < maxRestrictionMs; n += 1, length *= 2) {
      // Literals, not parameters: they come from configuration, and PostgreSQL cannot type parameters here.
      steps.push(sql`when ${sql.lit(n)} then ${sql.lit(length)}`);
    }
    return sql<number>`(case restrictions ${sql.join(steps, sql` `)} else ${sql.lit(maxRestrictionMs)} end)`;
  }
}
