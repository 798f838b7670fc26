import type { Kysely, Transaction } from "kysely";
import { type AccountRepository, emailKey, usernameKey } from "../accounts/accounts.js";
import { emailError, type FieldError, jurisdictionErrors, usernameError } from "../accounts/validation.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Settings } from "../config/settings.js";
import { newId } from "../crypto/tokens.js";
import type { Database } from "../db/schema.js";
import { type PasswordHasher, passwordWeaknesses, weakPassword } from "../factors/password.js";
import type { Outbox } from "../notify/outbox.js";
import type { BotCheck } from "../protection/bot-check.js";
import type { RateLimiter } from "../protection/rate-limiter.js";
import type { DeviceService } from "../sessions/devices.js";
import type { Clock } from "../support/clock.js";
import { isUniqueViolation } from "../support/db-errors.js";
import { addressSubject } from "../support/network.js";
import { invalidRequest, Problem, rateLimited } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import type { OneTimeTokens } from "./one-time-tokens.js";

export interface SignUpInput {
  email: string;
  username: string;
  password: string;
  country: string;
  region?: string | undefined;
  botCheck?: string | undefined;
}

export interface VerifyingDevice {
  /** The device cookie or app device id of the browser or app that completes email verification. */
  key: string;
}

export interface SignUpDependencies {
  db: Kysely<Database>;
  accounts: AccountRepository;
  devices: DeviceService;
  hasher: PasswordHasher;
  tokens: OneTimeTokens;
  outbox: Outbox;
  audit: AuditLog;
  botCheck: BotCheck;
  limiter: RateLimiter;
  clock: Clock;
  settings: Settings;
  publicUrl: URL;
  /** Refuses while the `signups` subsystem is in maintenance (behaviour §10); open by default. */
  assertSignUpsOpen?: () => Promise<void>;
}

/**
 * Sign-up (behaviour §1). The answer is the same whether or not the email or username already exists; the
 * owner of the mailbox learns what happened by email. The password is hashed in every case, so the
 * answer takes the same time too.
 */
export class SignUpService {
  constructor(private readonly deps: SignUpDependencies) {}

  async signUp(input: SignUpInput, context: RequestContext): Promise<{ status: "verification_sent" }> {
    const { deps } = this;
    const { email, username } = this.validate(input);
    await deps.assertSignUpsOpen?.();
    const limit = await deps.limiter.hit(
      `sign-up:ip:${addressSubject(context.ip)}`,
      deps.settings.protection.signUpIpLimit,
    );
    if (!limit.allowed) throw rateLimited(limit.retryAfterSeconds);
    await deps.botCheck.check(input.botCheck, context.ip, null);

    const passwordHash = await deps.hasher.hash(input.password);
    const accountId = newId();
    try {
      await deps.db.transaction().execute(async (trx) => {
        await this.insertAccount(trx, accountId, { ...input, email, username }, passwordHash, null);
        const token = await deps.tokens.issue(
          "verify_email",
          accountId,
          deps.settings.signUp.emailVerificationTtlMs,
          null,
          trx,
        );
        await deps.outbox.enqueue(
          { email, accountId, antiPhishingCode: null },
          { kind: "verify_email", username, link: this.link("/verify-email", token) },
          trx,
        );
      });
      deps.outbox.nudge();
      await deps.audit.append(
        { event: "account.created", outcome: "success", accountId, actor: "account" },
        context,
      );
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      await this.tellMailboxOwner(email, username, context);
    }
    return { status: "verification_sent" };
  }

  /** An operator creates a verified account (a demo, a migration): same rules, no email round trip. */
  async createVerified(input: SignUpInput, context: RequestContext): Promise<string> {
    const { email, username } = this.validate(input);
    const passwordHash = await this.deps.hasher.hash(input.password);
    const accountId = newId();
    try {
      await this.deps.db
        .transaction()
        .execute((trx) =>
          this.insertAccount(
            trx,
            accountId,
            { ...input, email, username },
            passwordHash,
            this.deps.clock.now(),
          ),
        );
    } catch (error) {
      if (isUniqueViolation(error)) throw new Problem(409, "conflict", "That email or username is taken.");
      throw error;
    }
    await this.deps.audit.append(
      { event: "account.created", outcome: "success", accountId, actor: "operator" },
      context,
    );
    return accountId;
  }

  /** Field and password rules (behaviour §1), with every reason. */
  private validate(input: SignUpInput): { email: string; username: string } {
    const email = input.email.trim();
    const username = usernameKey(input.username);
    const errors = [
      usernameError(username),
      emailError(email),
      ...jurisdictionErrors(input.country, input.region),
    ].filter((e): e is FieldError => e !== null);
    if (errors.length > 0) throw invalidRequest("Some fields need attention.", errors);
    const weaknesses = passwordWeaknesses(input.password, { username, email }, this.deps.settings.password);
    if (weaknesses.length > 0) {
      throw weakPassword(weaknesses, "password");
    }
    return { email, username };
  }

  private async insertAccount(
    trx: Transaction<Database>,
    id: string,
    input: SignUpInput,
    passwordHash: string,
    verifiedAt: number | null,
  ): Promise<void> {
    await trx
      .insertInto("accounts")
      .values({
        id,
        email: input.email,
        email_key: emailKey(input.email),
        username: input.username,
        password_hash: passwordHash,
        country: input.country,
        region: input.region ?? null,
        tier: "starter",
        email_verified_at: verifiedAt,
        created_at: this.deps.clock.now(),
      })
      .execute();
    await trx.insertInto("account_guards").values({ account_id: id }).execute();
  }

  /**
   * Completes verification; the device that does it becomes a known device of the account. Not the one
   * that signed up: anyone can sign up with someone else's address, and a browser remembered then would
   * let that squatter in without device approval once the real owner verifies (account pre-hijacking).
   * Opening the link proves control of the mailbox, so only that device is trusted — and only the
   * verification that actually verifies: in one transaction the account is marked (if it was not yet),
   * this link spent and every other verification link of the account revoked, so a leftover link (a
   * sign-in before verifying sends another) cannot later make some other device known, from anywhere.
   */
  async verifyEmail(token: string, context: RequestContext, device?: VerifyingDevice): Promise<void> {
    const { deps } = this;
    // Throws at once for an unknown, used or expired link; the account it names is held next.
    const { accountId } = await deps.tokens.peek("verify_email", token);
    const verifiedNow = await deps.db.transaction().execute(async (trx) => {
      // First, holding the account's row: of two links used at once, the second waits here, then finds
      // the account verified and its own link revoked.
      const marked = await trx
        .updateTable("accounts")
        .set({ email_verified_at: deps.clock.now() })
        .where("id", "=", accountId)
        .where("email_verified_at", "is", null)
        .returning("id")
        .executeTakeFirst();
      await deps.tokens.consume("verify_email", token, trx);
      await deps.tokens.revokeUnused("verify_email", accountId, trx);
      return marked !== undefined;
    });
    if (!verifiedNow) return;
    if (device) await deps.devices.remember(accountId, deps.devices.keyHash(device.key), context);
    await deps.audit.append({ event: "account.email_verified", outcome: "success", accountId }, context);
  }

  /** The email or the username was taken: the response stays the same, the mailbox owner gets the news. */
  private async tellMailboxOwner(email: string, username: string, context: RequestContext): Promise<void> {
    const { deps } = this;
    const existing = await deps.accounts.findByEmail(email);
    if (existing) {
      await deps.outbox.enqueue(
        { email: existing.email, accountId: existing.id, antiPhishingCode: existing.antiPhishingCode },
        {
          kind: "sign_up_email_taken",
          signInLink: this.link("/sign-in"),
          resetLink: this.link("/forgot-password"),
        },
      );
      await deps.audit.append(
        {
          event: "account.sign_up_refused",
          outcome: "refused",
          accountId: existing.id,
          details: { reason: "email_taken" },
        },
        context,
      );
      return;
    }
    await deps.outbox.enqueue(
      { email, accountId: null, antiPhishingCode: null },
      { kind: "sign_up_username_taken", username, signUpLink: this.link("/sign-up") },
    );
    await deps.audit.append(
      { event: "account.sign_up_refused", outcome: "refused", details: { reason: "username_taken" } },
      context,
    );
  }

  private link(path: string, token?: string): string {
    const url = new URL(path, this.deps.publicUrl);
    if (token) url.searchParams.set("token", token);
    return url.href;
  }
}
