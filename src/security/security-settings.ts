import type { AccountRepository } from "../accounts/accounts.js";
import type { Settings } from "../config/settings.js";
import type { PasswordHasher } from "../factors/password.js";
import { normalizePassword, passwordWeaknesses, weakPassword } from "../factors/password.js";
import type { ProofVerifier } from "../factors/proofs.js";
import type { SecondFactorRepository } from "../factors/second-factors.js";
import { advanceSecurityEpoch } from "../flows/one-time-tokens.js";
import type { SessionService } from "../sessions/sessions.js";
import { invalidCredentials, invalidRequest, Problem } from "../support/problem.js";
import type { SecurityHolds } from "./holds.js";
import type { ChangeRequest, SettingChanges } from "./setting-changes.js";

/**
 * The owner's per-action settings (behaviour §8): funding 2FA, trading 2FA and the KuCoin-style trading
 * passcode; the password, the Master Key and the anti-phishing code. Every change is a step-up action,
 * made with its audit entry and email in one transaction (SettingChanges).
 */
export class SecuritySettings {
  constructor(
    private readonly accounts: AccountRepository,
    private readonly factors: SecondFactorRepository,
    private readonly changes: SettingChanges,
    private readonly hasher: PasswordHasher,
    private readonly holds: SecurityHolds,
    private readonly sessions: SessionService,
    private readonly proofs: ProofVerifier,
    private readonly passwordRules: Settings["password"],
  ) {}

  async setRequirements(request: ChangeRequest, requirements: { funding: boolean; trading: boolean }) {
    const { account } = request;
    if ((requirements.funding || requirements.trading) && !(await this.factors.hasSignInFactor(account.id))) {
      throw new Problem(
        409,
        "conflict",
        "Turn on two-factor authentication before requiring it for funding or trading.",
      );
    }
    const words = (on: boolean) => (on ? "on" : "off");
    await this.changes.run(
      request,
      {
        stepUp: {
          type: "set_requirements",
          params: requirements,
          summary: `Funding 2FA ${words(requirements.funding)}, trading 2FA ${words(requirements.trading)}`,
        },
      },
      async (trx) => {
        await this.accounts.setRequirements(account.id, requirements, trx);
        return {
          result: null,
          event: "security.requirements_set",
          change: `funding 2FA ${words(requirements.funding)}, trading 2FA ${words(requirements.trading)}`,
        };
      },
    );
  }

  /** A 6-digit passcode, Argon2id at rest; changing an existing one holds withdrawals for 24 hours. */
  async setTradingPasscode(request: ChangeRequest, passcode: string) {
    const { account } = request;
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
    const stepUp = {
      type: "set_trading_passcode",
      params: {},
      summary: replacing ? "Change the trading passcode" : "Set a trading passcode",
    };
    // Hashed only once the step-up is presented, and outside the transaction (Argon2id takes a while).
    const hash = request.actionId === undefined ? "" : await this.hasher.hash(passcode);
    await this.changes.run(request, { stepUp }, async (trx) => {
      await this.accounts.setTradingPasscodeHash(account.id, hash, trx);
      if (replacing) await this.holds.place(account.id, "trading_passcode_changed", trx);
      return {
        result: null,
        event: "security.trading_passcode_set",
        change: replacing ? "changed the trading passcode" : "set a trading passcode",
      };
    });
  }

  /** ASVS 6.2.3: changing the password needs the current one; every other session ends (behaviour §5). */
  async changePassword(request: ChangeRequest, input: { currentPassword: string; newPassword: string }) {
    const { account, context } = request;
    const stepUp = { type: "change_password", params: {}, summary: "Change your password" };
    let hash = "";
    if (request.actionId !== undefined) {
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
        throw weakPassword(weaknesses, "newPassword");
      }
      hash = await this.hasher.hash(input.newPassword);
    }
    await this.changes.run(request, { stepUp }, async (trx) => {
      await this.accounts.replacePassword(account.id, hash, trx);
      await this.sessions.endAllWithin(trx, account.id, request.sessionId, "password_changed");
      // The links already emailed (a reset, an email change's confirmation, a device approval) die too.
      await advanceSecurityEpoch(trx, account.id);
      return {
        result: null,
        event: "security.password_changed",
        change: "changed the password (other sessions were ended)",
      };
    });
  }

  /** The Master Key (behaviour §7): a separate long passphrase, set or changed only while the lock is off. */
  async setMasterKey(request: ChangeRequest, masterKey: string) {
    const { account } = request;
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
    const stepUp = {
      type: "set_master_key",
      params: {},
      summary: replacing ? "Change the Master Key" : "Set a Master Key",
    };
    const hash = request.actionId === undefined ? "" : await this.hasher.hash(masterKey);
    await this.changes.run(request, { stepUp }, async (trx) => {
      await this.accounts.setMasterKeyHash(account.id, hash, trx);
      return {
        result: null,
        event: "security.master_key_set",
        change: replacing ? "changed the Master Key" : "set a Master Key",
      };
    });
  }

  /** A code of the owner's choosing, shown in every email Portcullis sends (behaviour §12). */
  async setAntiPhishingCode(request: ChangeRequest, code: string) {
    const { account } = request;
    if (!/^[\p{L}\p{N} _-]{4,20}$/u.test(code)) {
      throw invalidRequest("Use 4 to 20 letters, digits, spaces, '-' or '_'.", [
        { field: "code", message: "Use 4 to 20 letters, digits, spaces, dashes or underscores." },
      ]);
    }
    await this.changes.run(
      request,
      { stepUp: { type: "set_anti_phishing_code", params: {}, summary: "Set the anti-phishing code" } },
      async (trx) => {
        await this.accounts.setAntiPhishingCode(account.id, code, trx);
        return {
          result: null,
          event: "security.anti_phishing_code_set",
          change: "set the anti-phishing code",
          recipient: { ...account, antiPhishingCode: code },
        };
      },
    );
  }
}
