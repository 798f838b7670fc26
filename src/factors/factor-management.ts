import type {
  PublicKeyCredentialCreationOptionsJSON,
  RegistrationResponseJSON,
} from "@simplewebauthn/server";
import type { Transaction } from "kysely";
import type { Account } from "../accounts/accounts.js";
import type { Database } from "../db/schema.js";
import { advanceSecurityEpoch } from "../flows/one-time-tokens.js";
import type { SecurityHolds } from "../security/holds.js";
import type { ChangeOutcome, ChangeRequest, SettingChanges } from "../security/setting-changes.js";
import type { SessionService } from "../sessions/sessions.js";
import { notFound, Problem } from "../support/problem.js";
import { invalidCode } from "./proofs.js";
import type { RecoveryCodes } from "./recovery-codes.js";
import {
  type FactorKind,
  factorKind,
  isRoaming,
  type SecondFactorRepository,
  type SecondFactorView,
} from "./second-factors.js";
import type { TotpEnrollment, TotpFactor } from "./totp-factor.js";
import type { CredentialKind, WebAuthnFactor } from "./webauthn-factor.js";

export type { ChangeRequest };

/** The account's confirmed factors, read through the change's transaction (after its row is held). */
function confirmedFactors(trx: Transaction<Database>, accountId: string) {
  return trx
    .selectFrom("second_factors")
    .selectAll()
    .where("account_id", "=", accountId)
    .where("confirmed_at", "is not", null)
    .execute();
}

const roamingRequired = () =>
  new Problem(
    409,
    "roaming_factor_required",
    "Add an authenticator app or a security key you carry first: a passkey kept on one device cannot be your only way in.",
  );

const factorWords: Record<FactorKind, string> = {
  authenticator_app: "authenticator app",
  security_key: "security key",
  passkey: "passkey",
};

/**
 * Adding and removing second factors (behaviour §6). Every change needs a fresh step-up, is audited and emails
 * the owner in one transaction (SettingChanges), and is refused under the Global Settings Lock — finishing
 * an enrollment too; a passkey that does not roam is added only beside a roaming factor, and the last
 * roaming factor cannot be removed while others remain; the first factor also creates the recovery codes,
 * shown once.
 */
export class FactorManagement {
  constructor(
    private readonly factors: SecondFactorRepository,
    private readonly totp: TotpFactor,
    private readonly webauthn: WebAuthnFactor,
    private readonly recoveryCodes: RecoveryCodes,
    private readonly changes: SettingChanges,
    private readonly sessions: SessionService,
    private readonly holds: SecurityHolds,
  ) {}

  list(account: Account): Promise<SecondFactorView[]> {
    return this.factors.describe(account.id);
  }

  async startTotp(request: ChangeRequest): Promise<TotpEnrollment> {
    return this.changes.run(
      request,
      { stepUp: { type: "add_totp", params: {}, summary: "Add an authenticator app" } },
      async (trx) => ({
        result: await this.totp.startEnrollment(request.account, trx),
        event: "factor.enrollment_started",
        details: { type: "totp" },
      }),
    );
  }

  async confirmTotp(
    request: Omit<ChangeRequest, "actionId">,
    enrollmentId: string,
    code: string,
    name: string | undefined,
    endOtherSessions: boolean,
  ): Promise<{ factorId: string; recoveryCodes?: string[] }> {
    const first = !(await this.factors.hasSignInFactor(request.account.id));
    return this.changes.run({ ...request, actionId: undefined }, { stepUp: null }, async (trx) => {
      const confirmed = await this.totp.confirmEnrollment(
        request.account,
        enrollmentId,
        code,
        name ?? "Authenticator app",
        trx,
      );
      if (!confirmed.ok) throw invalidCode(confirmed.hint);
      return this.added(trx, request, confirmed.value, "authenticator app", first, endOtherSessions);
    });
  }

  /**
   * Registration options. A passkey on this device (`kind` "passkey") is refused at once without a
   * roaming factor, before the browser asks for a fingerprint; the final word is `registerWebauthn`'s.
   */
  async webauthnOptions(
    request: ChangeRequest,
    kind?: CredentialKind,
  ): Promise<PublicKeyCredentialCreationOptionsJSON> {
    if (kind === "passkey" && !(await this.hasRoamingFactor(request.account.id))) throw roamingRequired();
    await this.changes.run(
      request,
      { stepUp: { type: "add_webauthn", params: {}, summary: "Add a security key or passkey" } },
      async () => ({
        result: null,
        event: "factor.enrollment_started",
        details: { type: "webauthn", ...(kind ? { kind } : {}) },
      }),
    );
    return this.webauthn.registrationOptions(request.account, kind);
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
    // A passkey bound to one device (or synced by one platform) only beside a factor that roams.
    if (!roaming && !(await this.hasRoamingFactor(request.account.id))) throw roamingRequired();
    return this.changes.run({ ...request, actionId: undefined }, { stepUp: null }, async (trx) => {
      // Again with the account's row held: the roaming factor may have been removed meanwhile.
      if (!roaming && !(await confirmedFactors(trx, request.account.id)).some(isRoaming))
        throw roamingRequired();
      const factorId = await this.webauthn.register(request.account, response, name, trx);
      const what = roaming ? `security key "${name}"` : `passkey "${name}"`;
      return this.added(trx, request, factorId, what, first, endOtherSessions);
    });
  }

  async remove(request: ChangeRequest, factorId: string, endOtherSessions: boolean): Promise<void> {
    const { account } = request;
    const factor = await this.factors.find(account.id, factorId);
    if (!factor) throw notFound("That factor");
    await this.changes.run(
      request,
      { stepUp: { type: "remove_factor", params: { factorId }, summary: `Remove "${factor.name}"` } },
      async (trx) => {
        // Decided here, with the account's row held by the change (refused under the lock and the freeze):
        // a removal committed meanwhile, in parallel, is seen, so two removals cannot together leave only
        // a passkey, or recovery codes beside no factor at all.
        const factors = await confirmedFactors(trx, account.id);
        if (!factors.some((f) => f.id === factorId)) throw notFound("That factor");
        const remaining = factors.filter((f) => f.id !== factorId);
        if (remaining.length > 0 && !remaining.some(isRoaming)) throw roamingRequired();
        if (!(await this.factors.remove(account.id, factorId, trx))) throw notFound("That factor");
        // docs/behaviour.md §7: removing a second factor holds withdrawals for 48 hours.
        await this.holds.place(account.id, "second_factor_removed", trx);
        // With no second factor left, recovery codes would recover nothing; a new first factor makes new ones.
        if (remaining.length === 0) await this.recoveryCodes.clear(account.id, trx);
        if (endOtherSessions)
          await this.sessions.endAllWithin(trx, account.id, request.sessionId, "ended_others");
        // The links already emailed (a reset, an email change's confirmation, a device approval) die too.
        await advanceSecurityEpoch(trx, account.id);
        return {
          result: null,
          event: "factor.removed",
          details: { factorId },
          change: `removed ${factorWords[factorKind(factor)]} "${factor.name}"`,
        };
      },
    );
  }

  async regenerateRecoveryCodes(request: ChangeRequest): Promise<string[]> {
    const { account } = request;
    if (!(await this.factors.hasSignInFactor(account.id))) {
      throw new Problem(409, "conflict", "Turn on two-factor authentication before creating recovery codes.");
    }
    return this.changes.run(
      request,
      {
        stepUp: { type: "regenerate_recovery_codes", params: {}, summary: "Create new recovery codes" },
      },
      async (trx) => ({
        result: await this.recoveryCodes.regenerate(account.id, trx),
        event: "recovery_codes.regenerated",
        change: "created new recovery codes (the old ones no longer work)",
      }),
    );
  }

  private async hasRoamingFactor(accountId: string): Promise<boolean> {
    return (await this.factors.listConfirmed(accountId)).some(isRoaming);
  }

  /** A factor was added: the bypass's restriction ends, and the first factor brings recovery codes. */
  private async added(
    trx: Transaction<Database>,
    request: Omit<ChangeRequest, "actionId">,
    factorId: string,
    what: string,
    first: boolean,
    endOtherSessions: boolean,
  ): Promise<ChangeOutcome<{ factorId: string; recoveryCodes?: string[] }>> {
    const accountId = request.account.id;
    await this.sessions.clearEnrollmentRequired(accountId, trx);
    if (endOtherSessions) await this.sessions.endAllWithin(trx, accountId, request.sessionId, "ended_others");
    const recoveryCodes = first ? await this.recoveryCodes.regenerate(accountId, trx) : undefined;
    return {
      result: { factorId, ...(recoveryCodes ? { recoveryCodes } : {}) },
      event: "factor.added",
      details: { factorId },
      change: `added ${what}`,
    };
  }
}
