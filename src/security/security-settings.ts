import type { Account, AccountRepository } from "../accounts/accounts.js";
import type { ActionService } from "../actions/actions.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Settings } from "../config/settings.js";
import type { PasswordHasher } from "../factors/password.js";
import { normalizePassword, passwordWeaknesses, weaknessMessages } from "../factors/password.js";
import type { ProofVerifier } from "../factors/proofs.js";
import type { SecondFactorRepository } from "../factors/second-factors.js";
import type { Outbox } from "../notify/outbox.js";
import { securityDetails } from "../notify/templates.js";
import type { SessionService } from "../sessions/sessions.js";
import type { Clock } from "../support/clock.js";
import { invalidCredentials, invalidRequest, Problem } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import type { SecurityHolds } from "./holds.js";

/**
 * The owner's per-action settings (SPEC §8): funding 2FA, trading 2FA and the KuCoin-style trading
 * passcode. Every change is a step-up action, audited and emailed.
 */
export class SecuritySettings {
  constructor(
    private readonly accounts: AccountRepository,
    private readonly factors: SecondFactorRepository,
    private readonly actions: ActionService,
    private readonly hasher: PasswordHasher,
    private readonly holds: SecurityHolds,
    private readonly sessions: SessionService,
    private readonly audit: AuditLog,
    private readonly outbox: Outbox,
    private readonly clock: Clock,
    private readonly proofs: ProofVerifier,
    private readonly passwordRules: Settings["password"],
  ) {}

  async setRequirements(
    account: Account,
    actionId: string | undefined,
    requirements: { funding: boolean; trading: boolean },
    context: RequestContext,
  ): Promise<void> {
    if ((requirements.funding || requirements.trading) && !(await this.factors.hasSignInFactor(account.id))) {
      throw new Problem(
        409,
        "conflict",
        "Turn on two-factor authentication before requiring it for funding or trading.",
      );
    }
    const words = (on: boolean) => (on ? "on" : "off");
    await this.actions.requireStepUp(
      account,
      actionId,
      "set_requirements",
      requirements,
      `Funding 2FA ${words(requirements.funding)}, trading 2FA ${words(requirements.trading)}`,
    );
    await this.accounts.setRequirements(account.id, requirements);
    await this.changed(
      account,
      "security.requirements_set",
      `funding 2FA ${words(requirements.funding)}, trading 2FA ${words(requirements.trading)}`,
      context,
    );
  }

  /** A 6-digit passcode, Argon2id at rest; changing an existing one holds withdrawals for 24 hours. */
  async setTradingPasscode(
    account: Account,
    actionId: string | undefined,
    passcode: string,
    context: RequestContext,
  ) {
    if (!/^\d{6}$/.test(passcode)) {
      throw invalidRequest("The trading passcode is 6 digits.", [
        { field: "passcode", message: "The trading passcode is 6 digits." },
      ]);
    }
    if (/^(\d)\1{5}$/.test(passcode) || "0123456789".includes(passcode) || "9876543210".includes(passcode)) {
      throw invalidRequest("Choose a passcode that is not a run or a repeat.", [
        { field: "passcode", message: "Choose a passcode that is not a run or a repeat." },
      ]);
    }
    const replacing = account.tradingPasscodeHash !== null;
    await this.actions.requireStepUp(
      account,
      actionId,
      "set_trading_passcode",
      {},
      replacing ? "Change the trading passcode" : "Set a trading passcode",
    );
    await this.accounts.setTradingPasscodeHash(account.id, await this.hasher.hash(passcode));
    if (replacing) await this.holds.place(account.id, "trading_passcode_changed");
    await this.changed(
      account,
      "security.trading_passcode_set",
      replacing ? "changed the trading passcode" : "set a trading passcode",
      context,
    );
  }

  /** ASVS 6.2.3: changing the password needs the current one; every other session ends (SPEC §5). */
  async changePassword(
    account: Account,
    actionId: string | undefined,
    sessionId: string,
    input: { currentPassword: string; newPassword: string },
    context: RequestContext,
  ): Promise<void> {
    await this.actions.requireStepUp(account, actionId, "change_password", {}, "Change your password");
    const current = await this.proofs.verify(
      account,
      { kind: "password", password: input.currentPassword },
      "change_password",
      context,
    );
    if (current.kind !== "passed") throw invalidCredentials();
    const weaknesses = passwordWeaknesses(
      input.newPassword,
      { username: account.username, email: account.email },
      this.passwordRules,
    );
    if (weaknesses.length > 0) {
      throw new Problem(400, "weak_password", "Choose a stronger password.", {
        reasons: weaknesses.map((code) => ({ code, message: weaknessMessages[code] })),
      });
    }
    await this.accounts.updatePasswordHash(account.id, await this.hasher.hash(input.newPassword));
    await this.sessions.endAll(account.id, sessionId, "password_changed");
    await this.changed(
      account,
      "security.password_changed",
      "changed the password (other sessions were ended)",
      context,
    );
  }

  /** The Master Key (SPEC §7): a separate long passphrase, set or changed only while the lock is off. */
  async setMasterKey(
    account: Account,
    actionId: string | undefined,
    masterKey: string,
    context: RequestContext,
  ) {
    const length = [...normalizePassword(masterKey)].length;
    if (length < 16 || length > 256) {
      throw invalidRequest("The Master Key is 16 to 256 characters: a passphrase you keep offline.", [
        { field: "masterKey", message: "The Master Key is 16 to 256 characters." },
      ]);
    }
    if (await this.hasher.verify(account.passwordHash, masterKey)) {
      throw invalidRequest("The Master Key must differ from your password.", [
        { field: "masterKey", message: "The Master Key must differ from your password." },
      ]);
    }
    const replacing = account.masterKeyHash !== null;
    await this.actions.requireStepUp(
      account,
      actionId,
      "set_master_key",
      {},
      replacing ? "Change the Master Key" : "Set a Master Key",
    );
    await this.accounts.setMasterKeyHash(account.id, await this.hasher.hash(masterKey));
    await this.changed(
      account,
      "security.master_key_set",
      replacing ? "changed the Master Key" : "set a Master Key",
      context,
    );
  }

  /** A code of the owner's choosing, shown in every email Portcullis sends (SPEC §12). */
  async setAntiPhishingCode(
    account: Account,
    actionId: string | undefined,
    code: string,
    context: RequestContext,
  ) {
    if (!/^[\p{L}\p{N} _-]{4,20}$/u.test(code)) {
      throw invalidRequest("Use 4 to 20 letters, digits, spaces, '-' or '_'.", [
        { field: "code", message: "Use 4 to 20 letters, digits, spaces, dashes or underscores." },
      ]);
    }
    await this.actions.requireStepUp(
      account,
      actionId,
      "set_anti_phishing_code",
      {},
      "Set the anti-phishing code",
    );
    await this.accounts.setAntiPhishingCode(account.id, code);
    await this.changed(
      { ...account, antiPhishingCode: code },
      "security.anti_phishing_code_set",
      "set the anti-phishing code",
      context,
    );
  }

  private async changed(
    account: Account,
    event: string,
    change: string,
    context: RequestContext,
  ): Promise<void> {
    await this.sessions.accountChanged(account.id);
    await this.audit.append(
      { event, outcome: "success", accountId: account.id, details: { change } },
      context,
    );
    await this.outbox.notify(account, {
      kind: "security_change",
      change,
      ...securityDetails(context, this.clock.now()),
    });
  }
}
