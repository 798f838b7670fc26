import type {
  PublicKeyCredentialCreationOptionsJSON,
  RegistrationResponseJSON,
} from "@simplewebauthn/server";
import type { Account } from "../accounts/accounts.js";
import type { ActionService } from "../actions/actions.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Outbox } from "../notify/outbox.js";
import { securityDetails } from "../notify/templates.js";
import type { SecurityHolds } from "../security/holds.js";
import type { SessionService } from "../sessions/sessions.js";
import type { Clock } from "../support/clock.js";
import { notFound, Problem } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import { invalidCode } from "./proofs.js";
import type { RecoveryCodes } from "./recovery-codes.js";
import { isRoaming, type SecondFactorRepository, type SecondFactorView } from "./second-factors.js";
import type { TotpEnrollment, TotpFactor } from "./totp-factor.js";
import type { WebAuthnFactor } from "./webauthn-factor.js";

/** The owner, their session and the action id they present for a setting change. */
export interface ChangeRequest {
  account: Account;
  sessionId: string;
  actionId: string | undefined;
  context: RequestContext;
}

const roamingRequired = () =>
  new Problem(
    409,
    "roaming_factor_required",
    "Your first sign-in factor must go wherever you go: an authenticator app or a security key, not a passkey tied to one device.",
  );

/**
 * Adding and removing second factors (SPEC §6). Every change needs a fresh step-up (ActionService), is
 * audited, and emails the owner; the first factor must be a roaming one; the first factor also creates
 * the recovery codes, shown once.
 */
export class FactorManagement {
  constructor(
    private readonly factors: SecondFactorRepository,
    private readonly totp: TotpFactor,
    private readonly webauthn: WebAuthnFactor,
    private readonly recoveryCodes: RecoveryCodes,
    private readonly actions: ActionService,
    private readonly sessions: SessionService,
    private readonly audit: AuditLog,
    private readonly outbox: Outbox,
    private readonly clock: Clock,
    private readonly holds: SecurityHolds,
  ) {}

  list(account: Account): Promise<SecondFactorView[]> {
    return this.factors.describe(account.id);
  }

  async startTotp(request: ChangeRequest): Promise<TotpEnrollment> {
    await this.actions.requireStepUp(
      request.account,
      request.actionId,
      "add_totp",
      {},
      "Add an authenticator app",
    );
    return this.totp.startEnrollment(request.account);
  }

  async confirmTotp(
    request: Omit<ChangeRequest, "actionId">,
    enrollmentId: string,
    code: string,
    name: string | undefined,
    endOtherSessions: boolean,
  ): Promise<{ factorId: string; recoveryCodes?: string[] }> {
    const first = !(await this.factors.hasSignInFactor(request.account.id));
    const confirmed = await this.totp.confirmEnrollment(
      request.account,
      enrollmentId,
      code,
      name ?? "Authenticator app",
    );
    if (!confirmed.ok) throw invalidCode(confirmed.hint);
    const recoveryCodes = await this.afterAdding(request, "authenticator app", first, endOtherSessions);
    return { factorId: confirmed.value, ...(recoveryCodes ? { recoveryCodes } : {}) };
  }

  async webauthnOptions(request: ChangeRequest): Promise<PublicKeyCredentialCreationOptionsJSON> {
    await this.actions.requireStepUp(
      request.account,
      request.actionId,
      "add_webauthn",
      {},
      "Add a security key or passkey",
    );
    return this.webauthn.registrationOptions(request.account);
  }

  async registerWebauthn(
    request: Omit<ChangeRequest, "actionId">,
    response: RegistrationResponseJSON,
    name: string,
    endOtherSessions: boolean,
  ): Promise<{ factorId: string; recoveryCodes?: string[] }> {
    const first = !(await this.factors.hasSignInFactor(request.account.id));
    // Decided from the transports in the attestation response, never the browser's attachment label.
    const roaming = isRoaming({
      type: "webauthn",
      transports: JSON.stringify(response?.response?.transports ?? []),
    });
    if (first && !roaming) throw roamingRequired();
    const factorId = await this.webauthn.register(request.account, response, name);
    const recoveryCodes = await this.afterAdding(request, `security key "${name}"`, first, endOtherSessions);
    return { factorId, ...(recoveryCodes ? { recoveryCodes } : {}) };
  }

  async remove(request: ChangeRequest, factorId: string, endOtherSessions: boolean): Promise<void> {
    const { account } = request;
    const factor = await this.factors.find(account.id, factorId);
    if (!factor) throw notFound("That factor");
    await this.actions.requireStepUp(
      account,
      request.actionId,
      "remove_factor",
      { factorId },
      `Remove "${factor.name}"`,
    );
    const remaining = (await this.factors.listConfirmed(account.id)).filter((f) => f.id !== factorId);
    if (remaining.length > 0 && !remaining.some(isRoaming)) throw roamingRequired();
    if (!(await this.factors.remove(account.id, factorId))) throw notFound("That factor");
    // SPEC §7: removing a second factor holds withdrawals for 48 hours.
    await this.holds.place(account.id, "second_factor_removed");
    // With no second factor left, recovery codes would recover nothing; a new first factor makes new ones.
    if (remaining.length === 0) await this.recoveryCodes.clear(account.id);
    await this.record(
      request,
      "factor.removed",
      `removed ${factor.type === "totp" ? "authenticator app" : "security key"} "${factor.name}"`,
    );
    if (endOtherSessions) await this.sessions.endAll(account.id, request.sessionId, "ended_others");
  }

  async regenerateRecoveryCodes(request: ChangeRequest): Promise<string[]> {
    const { account } = request;
    if (!(await this.factors.hasSignInFactor(account.id))) {
      throw new Problem(409, "conflict", "Turn on two-factor authentication before creating recovery codes.");
    }
    await this.actions.requireStepUp(
      account,
      request.actionId,
      "regenerate_recovery_codes",
      {},
      "Create new recovery codes",
    );
    const codes = await this.recoveryCodes.regenerate(account.id);
    await this.record(
      request,
      "recovery_codes.regenerated",
      "created new recovery codes (the old ones no longer work)",
    );
    return codes;
  }

  private async afterAdding(
    request: Omit<ChangeRequest, "actionId">,
    what: string,
    first: boolean,
    endOtherSessions: boolean,
  ): Promise<string[] | undefined> {
    await this.record(request, "factor.added", `added ${what}`);
    await this.sessions.clearEnrollmentRequired(request.account.id);
    if (endOtherSessions) await this.sessions.endAll(request.account.id, request.sessionId, "ended_others");
    return first ? this.recoveryCodes.regenerate(request.account.id) : undefined;
  }

  private async record(
    request: Omit<ChangeRequest, "actionId">,
    event: string,
    change: string,
  ): Promise<void> {
    // Other sessions' view of the account (has it a second factor?) is read again.
    await this.sessions.accountChanged(request.account.id);
    await this.audit.append(
      { event, outcome: "success", accountId: request.account.id, details: { change } },
      request.context,
    );
    await this.outbox.notify(request.account, {
      kind: "security_change",
      change,
      ...securityDetails(request.context, this.clock.now()),
    });
  }
}
