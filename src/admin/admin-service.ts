import type { AccountRepository } from "../accounts/accounts.js";
import { jurisdictionErrors } from "../accounts/validation.js";
import type { AuditLog } from "../audit/audit-log.js";
import { type Tier, tiers } from "../capabilities/policy.js";
import type { MaintenanceWindow, ScheduleInput, SubsystemService } from "../capabilities/subsystems.js";
import type { AttemptGuard } from "../protection/attempt-guard.js";
import { isLocked, settingsLocked } from "../security/global-lock.js";
import type { SessionService } from "../sessions/sessions.js";
import type { Clock } from "../support/clock.js";
import { invalidRequest, notFound } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";

/**
 * Operator operations (behaviour §14), the same for the admin API and the CLI: each checks its input, does
 * one thing and is audited with the operator as actor.
 */
export class AdminService {
  constructor(
    private readonly accounts: AccountRepository,
    private readonly guard: AttemptGuard,
    private readonly subsystems: SubsystemService,
    private readonly sessions: SessionService,
    private readonly audit: AuditLog,
    private readonly clock: Clock,
  ) {}

  async setTier(accountId: string, tier: string, context: RequestContext): Promise<void> {
    if (!(tiers as readonly string[]).includes(tier)) {
      throw invalidRequest(`tier must be one of ${tiers.join(", ")}.`, [
        { field: "tier", message: `The tier must be one of: ${tiers.join(", ")}.` },
      ]);
    }
    const account = await this.accounts.findById(accountId);
    if (!account) throw notFound("That account");
    // docs/behaviour.md §7: raising the verification level is a setting change the Global Settings Lock refuses.
    if (tiers.indexOf(tier as Tier) > tiers.indexOf(account.tier) && isLocked(account, this.clock.now())) {
      throw settingsLocked();
    }
    await this.accounts.setTier(account.id, tier as Tier);
    await this.sessions.accountChanged(account.id);
    await this.record("account.tier_set", account.id, { from: account.tier, to: tier }, context);
  }

  async setJurisdiction(accountId: string, country: string, region: string | null, context: RequestContext) {
    const errors = jurisdictionErrors(country, region);
    if (errors.length) throw invalidRequest("Some fields need attention.", errors);
    const account = await this.accounts.findById(accountId);
    if (!account) throw notFound("That account");
    await this.accounts.setJurisdiction(account.id, country, region);
    await this.sessions.accountChanged(account.id);
    await this.record(
      "account.jurisdiction_set",
      account.id,
      { from: account.region ?? account.country, to: region ?? country },
      context,
    );
  }

  async liftRestriction(accountId: string, context: RequestContext): Promise<void> {
    if (!(await this.guard.lift(accountId))) throw notFound("That account");
    await this.sessions.accountChanged(accountId);
    await this.record("account.restriction_lifted", accountId, {}, context);
  }

  /**
   * Disables an account (its sign-ins answer like a wrong password, every session ends at once and API
   * keys stop working through the capability function), or enables it again.
   */
  async setDisabled(accountId: string, disabled: boolean, context: RequestContext): Promise<void> {
    if (!(await this.accounts.setDisabled(accountId, disabled ? this.clock.now() : null)))
      throw notFound("That account");
    const ended = disabled ? await this.sessions.endAll(accountId, null, "account_disabled") : 0;
    await this.sessions.accountChanged(accountId);
    await this.record(
      disabled ? "account.disabled" : "account.enabled",
      accountId,
      { sessionsEnded: ended },
      context,
    );
  }

  async setSubsystemStatus(
    subsystem: string,
    status: string,
    message: string | null,
    context: RequestContext,
  ) {
    await this.subsystems.setStatus(subsystem, status, message);
    await this.record("subsystem.status_set", null, { subsystem, status, message }, context);
  }

  async scheduleMaintenance(input: ScheduleInput, context: RequestContext): Promise<MaintenanceWindow> {
    const window = await this.subsystems.schedule(input);
    await this.record("maintenance.scheduled", null, { ...window }, context);
    return window;
  }

  async cancelMaintenance(windowId: string, context: RequestContext): Promise<void> {
    if (!(await this.subsystems.cancel(windowId))) throw notFound("That maintenance window");
    await this.record("maintenance.cancelled", null, { windowId }, context);
  }

  private async record(
    event: string,
    accountId: string | null,
    details: Record<string, unknown>,
    context: RequestContext,
  ) {
    await this.audit.append({ event, outcome: "success", accountId, actor: "operator", details }, context);
  }
}
