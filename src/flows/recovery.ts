import type { Kysely } from "kysely";
import type { Account, AccountRepository } from "../accounts/accounts.js";
import { emailError } from "../accounts/validation.js";
import type { ApiKeyService } from "../api-keys/api-keys.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Settings } from "../config/settings.js";
import type { Database } from "../db/schema.js";
import type { PasswordHasher } from "../factors/password.js";
import { passwordWeaknesses, weakPassword } from "../factors/password.js";
import type { Outbox } from "../notify/outbox.js";
import { securityDetails } from "../notify/templates.js";
import type { AccountProtection } from "../protection/account-protection.js";
import type { AttemptGuard } from "../protection/attempt-guard.js";
import type { BotCheck } from "../protection/bot-check.js";
import type { RateLimiter } from "../protection/rate-limiter.js";
import type { SecurityHolds } from "../security/holds.js";
import { isLocked, settingsLocked } from "../security/setting-changes.js";
import type { SessionService } from "../sessions/sessions.js";
import type { Clock } from "../support/clock.js";
import { addressSubject } from "../support/network.js";
import { invalidRequest, Problem, rateLimited } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import type { OneTimeTokens } from "./one-time-tokens.js";

const HOUR = 3_600_000;
const RESET_LINK_TTL_MS = 2 * HOUR;
const RESET_EMAILS_PER_HOUR = 3;

export interface RecoveryDependencies {
  db: Kysely<Database>;
  apiKeys: ApiKeyService;
  accounts: AccountRepository;
  hasher: PasswordHasher;
  protection: AccountProtection;
  guard: AttemptGuard;
  tokens: OneTimeTokens;
  sessions: SessionService;
  holds: SecurityHolds;
  outbox: Outbox;
  audit: AuditLog;
  botCheck: BotCheck;
  limiter: RateLimiter;
  clock: Clock;
  settings: Settings;
  publicUrl: URL;
}

/**
 * Recovery (behaviour §13). Answers never say whether an account matched; the mailbox owner learns by email.
 * A reset never signs in, ends every session, holds withdrawals 24 hours, and asks for the Master Key
 * when one is set — and it works while the account is temporarily restricted.
 */
export class RecoveryService {
  constructor(private readonly deps: RecoveryDependencies) {}

  async requestPasswordReset(
    input: { email: string; username: string; botCheck?: string },
    context: RequestContext,
  ) {
    const { deps } = this;
    await this.guardRequest(input.email, input.botCheck, context);
    const account = await deps.accounts.findByEmail(input.email);
    if (account && account.username === input.username.trim().toLowerCase()) {
      const sent = await deps.tokens.countIssuedSince("reset_password", account.id, deps.clock.now() - HOUR);
      if (sent < RESET_EMAILS_PER_HOUR) {
        const token = await deps.tokens.issue("reset_password", account.id, RESET_LINK_TTL_MS);
        const link = new URL("/reset-password", deps.publicUrl);
        link.searchParams.set("token", token);
        await deps.outbox.notify(account, {
          kind: "password_reset",
          link: link.href,
          masterKeyRequired: account.masterKeyHash !== null,
          ...securityDetails(context, deps.clock.now()),
        });
      }
      await deps.audit.append(
        {
          event: "recovery.password_requested",
          outcome: sent < RESET_EMAILS_PER_HOUR ? "success" : "refused",
          accountId: account.id,
        },
        context,
      );
    }
    return { status: "accepted" as const };
  }

  async completePasswordReset(
    input: { token: string; newPassword: string; masterKey?: string },
    context: RequestContext,
  ) {
    const { deps } = this;
    const { accountId } = await deps.tokens.peek("reset_password", input.token);
    const account = await deps.accounts.findById(accountId);
    if (!account) throw invalidRequest("This link is not valid.");
    // The lock is there for exactly this: someone who controls the mailbox. The link stays unspent.
    if (isLocked(account, deps.clock.now())) throw settingsLocked();
    const weaknesses = passwordWeaknesses(
      input.newPassword,
      { username: account.username, email: account.email },
      deps.settings.password,
    );
    if (weaknesses.length > 0) {
      throw weakPassword(weaknesses, "newPassword");
    }
    let masterKeyProven = false;
    if (account.masterKeyHash) {
      if (input.masterKey === undefined) {
        throw new Problem(
          400,
          "master_key_required",
          "This account has a Master Key: enter it to reset the password.",
          {
            details: [{ field: "masterKey", message: "Enter your Master Key." }],
          },
        );
      }
      masterKeyProven = await this.checkMasterKey(account, input.masterKey, context);
      if (!masterKeyProven) {
        // A wrong Master Key spends the link: guesses are bounded by the three links an hour.
        await deps.tokens.consume("reset_password", input.token);
        throw new Problem(
          401,
          "invalid_credentials",
          "The Master Key is not right. Ask for a new reset link.",
        );
      }
    }
    const passwordHash = await deps.hasher.hash(input.newPassword);
    // A permanent restriction is lifted only by support or a reset that proves the Master Key (behaviour §4).
    const { permanent } = await deps.guard.status(account.id);
    // One transaction: the link spent, the password, the sessions ended, the hold, the audit entry and
    // the emails — and the lock checked again while the account's row is held.
    await deps.db.transaction().execute(async (trx) => {
      if (!(await deps.accounts.holdIfUnlocked(account.id, deps.clock.now(), trx))) throw settingsLocked();
      await deps.tokens.consume("reset_password", input.token, trx);
      await deps.accounts.replacePassword(account.id, passwordHash, trx);
      await deps.sessions.endAllWithin(trx, account.id, null, "password_changed");
      await deps.holds.place(account.id, "password_reset", trx);
      if (!permanent || masterKeyProven) await deps.guard.lift(account.id, trx);
      await deps.audit.append(
        {
          event: "recovery.password_reset",
          outcome: "success",
          accountId: account.id,
          details: { masterKey: masterKeyProven },
        },
        context,
        trx,
      );
      await deps.outbox.notify(
        account,
        {
          kind: "security_change",
          change: "reset the password (every session was ended; withdrawals are on hold for 24 hours)",
          ...securityDetails(context, deps.clock.now()),
        },
        trx,
      );
      // Ending sessions does not stop API keys: name the ones that still work, with a link to stop them.
      const keys = await deps.apiKeys.stillActiveNotice(trx, account.id, context);
      if (keys) await deps.outbox.notify(account, keys, trx);
    });
    await deps.sessions.accountChanged(account.id);
    deps.outbox.nudge();
    return { status: "password_reset" as const };
  }

  async requestUsername(input: { email: string; botCheck?: string }, context: RequestContext) {
    const { deps } = this;
    await this.guardRequest(input.email, input.botCheck, context);
    const account = await deps.accounts.findByEmail(input.email);
    if (account) {
      const sent = await deps.limiter.hit(`recovery:username:${account.id}`, {
        max: RESET_EMAILS_PER_HOUR,
        windowMs: HOUR,
      });
      if (sent.allowed) {
        await deps.outbox.notify(account, {
          kind: "username_reminder",
          username: account.username,
          signInLink: new URL("/sign-in", deps.publicUrl).href,
        });
      }
    }
    return { status: "accepted" as const };
  }

  /** Counted like every factor; while temporarily restricted the link alone bounds the guesses. */
  private async checkMasterKey(
    account: Account,
    masterKey: string,
    context: RequestContext,
  ): Promise<boolean> {
    const result = await this.deps.protection.attempt(
      account,
      { factor: "master_key", stage: "password_reset" },
      context,
      async () =>
        account.masterKeyHash && (await this.deps.hasher.verify(account.masterKeyHash, masterKey))
          ? { ok: true, value: true }
          : { ok: false },
    );
    if (result.kind === "restricted")
      return account.masterKeyHash !== null && this.deps.hasher.verify(account.masterKeyHash, masterKey);
    return result.kind === "passed";
  }

  private async guardRequest(email: string, botCheck: string | undefined, context: RequestContext) {
    const error = emailError(email.trim());
    if (error) throw invalidRequest("Some fields need attention.", [error]);
    const limit = await this.deps.limiter.hit(
      `recovery:ip:${addressSubject(context.ip)}`,
      this.deps.settings.protection.signUpIpLimit,
    );
    if (!limit.allowed) throw rateLimited(limit.retryAfterSeconds);
    await this.deps.botCheck.check(botCheck, context.ip, email.trim().toLowerCase());
  }
}
