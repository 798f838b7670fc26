import type { Account } from "../accounts/accounts.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Outbox } from "../notify/outbox.js";
import { securityDetails } from "../notify/templates.js";
import type { Clock } from "../support/clock.js";
import { iso } from "../support/clock.js";
import type { Metrics } from "../support/metrics.js";
import type { RequestContext } from "../support/request-context.js";
import type { AttemptGuard, FailureOutcome } from "./attempt-guard.js";

/** What a factor check found: the value on success, or a hint for the person on failure. */
export type CheckResult<T> = { ok: true; value: T } | { ok: false; hint?: string };

export type AttemptResult<T> =
  | { kind: "passed"; value: T }
  | { kind: "failed"; hint?: string; restriction: FailureOutcome }
  | { kind: "restricted" };

export interface AttemptLabel {
  /** The factor, as metrics and audit name it: password, totp, webauthn, recovery_code, … */
  factor: string;
  /** Where it was used: sign_in, step_up, action, … The audit event is `${stage}.${factor}`. */
  stage: string;
}

/**
 * The one way any factor is checked against an account (docs/behaviour.md §4: "per account, across every factor").
 * A failure is reserved on the attempt counter before the check runs, kept when the check fails (which
 * may restrict the account and email its owner) and given back when it passes. Every attempt is audited
 * and counted in the metrics.
 */
export class AccountProtection {
  constructor(
    private readonly guard: AttemptGuard,
    private readonly audit: AuditLog,
    private readonly outbox: Outbox,
    private readonly metrics: Metrics,
    private readonly clock: Clock,
    private readonly publicUrl: URL,
  ) {}

  async attempt<T>(
    account: Account,
    label: AttemptLabel,
    context: RequestContext,
    check: () => Promise<CheckResult<T>>,
  ): Promise<AttemptResult<T>> {
    const event = `${label.stage}.${label.factor}`;
    const reservation = await this.guard.reserve(account.id);
    if (!reservation) {
      this.metrics.attempts.inc({ factor: label.factor, outcome: "refused" });
      await this.audit.append(
        { event, outcome: "refused", accountId: account.id, details: { reason: "account_restricted" } },
        context,
      );
      return { kind: "restricted" };
    }
    let result: CheckResult<T>;
    try {
      result = await check();
    } catch (error) {
      // The check itself could not run (a dependency failed): the reservation stays, as for a failure.
      await this.guard.recordFailure(reservation).catch(() => undefined);
      throw error;
    }
    if (result.ok) {
      await this.guard.release(reservation);
      this.metrics.attempts.inc({ factor: label.factor, outcome: "success" });
      await this.audit.append({ event, outcome: "success", accountId: account.id }, context);
      return { kind: "passed", value: result.value };
    }
    const restriction = await this.guard.recordFailure(reservation);
    this.metrics.attempts.inc({ factor: label.factor, outcome: "failure" });
    await this.audit.append(
      { event, outcome: "failure", accountId: account.id, details: { reason: "wrong" } },
      context,
    );
    await this.notifyRestriction(account, restriction, context);
    return { kind: "failed", hint: result.hint, restriction };
  }

  private async notifyRestriction(
    account: Account,
    outcome: FailureOutcome,
    context: RequestContext,
  ): Promise<void> {
    if (outcome.kind === "counted") return;
    const permanent = outcome.kind === "permanently_restricted";
    const until = outcome.kind === "restricted" ? iso(outcome.until) : null;
    this.metrics.restrictions.inc({ kind: permanent ? "permanent" : "temporary" });
    await this.audit.append(
      {
        event: "account.restricted",
        outcome: "info",
        accountId: account.id,
        actor: "system",
        details: { permanent, until },
      },
      context,
    );
    await this.outbox.enqueue(
      { email: account.email, accountId: account.id, antiPhishingCode: account.antiPhishingCode },
      {
        kind: "account_restricted",
        permanent,
        until,
        resetLink: new URL("/forgot-password", this.publicUrl).href,
        ...securityDetails(context, this.clock.now()),
      },
    );
  }
}
