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
import { advanceSecurityEpoch, type OneTimeTokens } from "./one-time-tokens.js";

const HOUR = 3_600_000;
const RESET_LINK_TTL_MS = 2 * HOUR;
const RESET_EMAILS_PER_HOUR = 3;

const masterKeyRequired = () =>
  new Problem(400, "master_key_required", "This account has a Master Key: enter it to reset the password.", {
    details: [{ field: "masterKey", message: "Enter your Master Key." }],
  });

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
      // Counted and issued in one transaction holding the account's row: requests arriving together
      // wait for each other, so no more than three links an hour are ever issued.
      const sent = await deps.db.transaction().execute(async (trx) => {
        const now = deps.clock.now();
        await deps.accounts.holdForChange(account.id, now, { lock: false, freeze: false }, trx);
        const issued = await deps.tokens.countIssuedSince("reset_password", account.id, now - HOUR, trx);
        const allowed = issued < RESET_EMAILS_PER_HOUR;
        if (allowed) {
          const token = await deps.tokens.issue("reset_password", account.id, RESET_LINK_TTL_MS, null, trx);
          const link = new URL("/reset-password", deps.publicUrl);
          link.searchParams.set("token", token);
          await deps.outbox.notify(
            account,
            {
              kind: "password_reset",
              link: link.href,
              masterKeyRequired: account.masterKeyHash !== null,
              ...securityDetails(context, now),
            },
            trx,
          );
        }
        await deps.audit.append(
          {
            event: "recovery.password_requested",
            outcome: allowed ? "success" : "refused",
            accountId: account.id,
          },
          context,
          trx,
        );
        return allowed;
      });
      if (sent) deps.outbox.nudge();
    }
    return { status: "accepted" as const };
  }

  /**
   * A wrong Master Key spends the link (behaviour §13): the link is spent first, by one conditional UPDATE,
   * so of any number of requests carrying it at once exactly one gets a Master Key check, and gets exactly
   * one. What is refused before that (the Global Settings Lock, a new password that will not do, a missing
   * Master Key) leaves the link for the next try; once the Master Key is checked the link is spent, whatever
   * the outcome.
   */
  async completePasswordReset(
    input: { token: string; newPassword: string; masterKey?: string },
    context: RequestContext,
  ) {
    const { deps } = this;
    const { accountId } = await deps.tokens.peek("reset_password", input.token);
    const seen = await deps.accounts.findById(accountId);
    if (!seen) throw invalidRequest("This link is not valid.");
    // The lock is there for exactly this: someone who controls the mailbox. The link stays unspent.
    if (isLocked(seen, deps.clock.now())) throw settingsLocked();
    const weaknesses = passwordWeaknesses(
      input.newPassword,
      { username: seen.username, email: seen.email },
      deps.settings.password,
    );
    if (weaknesses.length > 0) {
      throw weakPassword(weaknesses, "newPassword");
    }
    if (seen.masterKeyHash === null) {
      // Nothing to guess: the link is spent in the reset's own transaction, so a reset that fails
      // leaves it unspent.
      const passwordHash = await deps.hasher.hash(input.newPassword);
      await this.commitReset(seen, passwordHash, { masterKeyProven: false, token: input.token }, context);
      return { status: "password_reset" as const };
    }
    if (input.masterKey === undefined) throw masterKeyRequired();
    // Spent before the Master Key is looked at. A parallel request with the same link gets 410 here.
    await deps.tokens.consume("reset_password", input.token);
    const account = await deps.accounts.findById(accountId);
    if (!account?.masterKeyHash) throw invalidRequest("This link is not valid.");
    if (isLocked(account, deps.clock.now())) throw settingsLocked();
    // The same work whatever the key: the new password is hashed before the key is checked, so a right
    // key's answer takes no longer than a wrong one's.
    const passwordHash = await deps.hasher.hash(input.newPassword);
    if (!(await this.checkMasterKey(account, input.masterKey, context))) {
      throw new Problem(401, "invalid_credentials", "The Master Key is not right. Ask for a new reset link.");
    }
    await this.commitReset(account, passwordHash, { masterKeyProven: true, token: null }, context);
    return { status: "password_reset" as const };
  }

  /**
   * One transaction: the link spent (when not spent already), the password, the sessions ended, the hold,
   * the restriction lifted, the audit entry and the emails — and the lock checked again while the
   * account's row is held.
   */
  private async commitReset(
    account: Account,
    passwordHash: string,
    how: { masterKeyProven: boolean; token: string | null },
    context: RequestContext,
  ): Promise<void> {
    const { deps } = this;
    // A permanent restriction is lifted only by support or a reset that proves the Master Key (behaviour §4).
    const { permanent } = await deps.guard.status(account.id);
    await deps.db.transaction().execute(async (trx) => {
      if (!(await deps.accounts.holdIfUnlocked(account.id, deps.clock.now(), trx))) throw settingsLocked();
      if (how.token !== null) {
        // A Master Key set since the link was read is asked for (the transaction rolls back, the link unspent).
        if (!how.masterKeyProven && (await deps.accounts.findById(account.id, trx))?.masterKeyHash)
          throw masterKeyRequired();
        await deps.tokens.consume("reset_password", how.token, trx);
      }
      await deps.accounts.replacePassword(account.id, passwordHash, trx);
      // Every other link emailed before (another reset, an email change) stops working with the reset.
      await advanceSecurityEpoch(trx, account.id);
      await deps.sessions.endAllWithin(trx, account.id, null, "password_changed");
      await deps.holds.place(account.id, "password_reset", trx);
      if (!permanent || how.masterKeyProven) await deps.guard.lift(account.id, trx);
      await deps.audit.append(
        {
          event: "recovery.password_reset",
          outcome: "success",
          accountId: account.id,
          details: { masterKey: how.masterKeyProven },
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

  /**
   * The one Master Key check a spent link buys, counted on the account's attempt counter like every factor
   * (behaviour §4). While the account is restricted the counter reserves nothing, yet a reset still works
   * (behaviour §4, §13: and a permanent restriction is lifted by a reset proving the Master Key): the spent
   * link alone bounds the guesses then — one per link, three links an hour — and the check is audited.
   */
  private async checkMasterKey(
    account: Account,
    masterKey: string,
    context: RequestContext,
  ): Promise<boolean> {
    const { deps } = this;
    const verify = async () =>
      account.masterKeyHash !== null && (await deps.hasher.verify(account.masterKeyHash, masterKey));
    const result = await deps.protection.attempt(
      account,
      { factor: "master_key", stage: "password_reset" },
      context,
      async () => ((await verify()) ? { ok: true, value: true } : { ok: false }),
    );
    if (result.kind !== "restricted") return result.kind === "passed";
    const proven = await verify();
    await deps.audit.append(
      {
        event: "password_reset.master_key",
        outcome: proven ? "success" : "failure",
        accountId: account.id,
        details: { whileRestricted: true },
      },
      context,
    );
    return proven;
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
