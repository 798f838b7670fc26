import type { Kysely } from "kysely";
import { type AccountRepository, emailKey } from "../accounts/accounts.js";
import { emailError } from "../accounts/validation.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Database } from "../db/schema.js";
import type { SecondFactorRepository } from "../factors/second-factors.js";
import type { OneTimeTokens } from "../flows/one-time-tokens.js";
import type { Outbox } from "../notify/outbox.js";
import { securityDetails } from "../notify/templates.js";
import type { SessionService } from "../sessions/sessions.js";
import { type Clock, iso } from "../support/clock.js";
import { isUniqueViolation } from "../support/db-errors.js";
import { invalidRequest, notFound, Problem } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import type { SecurityHolds } from "./holds.js";
import { type ChangeRequest, holdForEmailedChange, type SettingChanges } from "./setting-changes.js";

/** How long the confirmation link sent to the new address works. */
export const EMAIL_CONFIRMATION_TTL_MS = 24 * 3_600_000;

/**
 * Changing the account's email address: asked for by the owner with a step-up (a second factor), it takes
 * effect only when the new address confirms it through a single-use link, and then holds withdrawals for
 * 72 hours. The current address is told at once, with the lock link. Asking for an address another account
 * has answers the same and changes nothing (that address's owner is told instead), so the request reveals
 * no account.
 */
export class EmailChange {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly accounts: AccountRepository,
    private readonly tokens: OneTimeTokens,
    private readonly changes: SettingChanges,
    private readonly factors: SecondFactorRepository,
    private readonly holds: SecurityHolds,
    private readonly sessions: SessionService,
    private readonly audit: AuditLog,
    private readonly outbox: Outbox,
    private readonly publicUrl: URL,
  ) {}

  async request(request: ChangeRequest, newEmail: string): Promise<{ status: "confirmation_sent" }> {
    const { account, context } = request;
    const address = newEmail.trim();
    const invalid = emailError(address);
    if (invalid) throw invalidRequest(invalid.message, [{ field: "newEmail", message: invalid.message }]);
    if (emailKey(address) === emailKey(account.email)) {
      throw invalidRequest("That is already your email address.", [
        { field: "newEmail", message: "That is already your email address." },
      ]);
    }
    if (!(await this.factors.hasSignInFactor(account.id))) {
      throw new Problem(
        409,
        "conflict",
        "Turn on two-factor authentication before changing your email address.",
      );
    }
    await this.changes.run(
      request,
      {
        stepUp: {
          type: "change_email",
          // Exactly the address that is mailed and stored: the owner confirms this spelling and no other.
          params: { newEmail: address },
          summary: `Change your email address to ${address}`,
        },
      },
      async (trx) => {
        const details = securityDetails(context, this.clock.now());
        // Only the newest request can be confirmed.
        await this.tokens.revokeUnused("confirm_email", account.id, trx);
        const taken = await trx
          .selectFrom("accounts")
          .select("email")
          .where("email_key", "=", emailKey(address))
          .executeTakeFirst();
        // The new address has not proved itself: no anti-phishing code goes to it.
        const newAddress = { email: address, accountId: null, antiPhishingCode: null };
        if (taken) {
          await this.outbox.enqueue(
            { ...newAddress, email: taken.email },
            { kind: "email_change_address_taken", ...details },
            trx,
          );
        } else {
          const token = await this.tokens.issue(
            "confirm_email",
            account.id,
            EMAIL_CONFIRMATION_TTL_MS,
            { from: account.email, to: address },
            trx,
          );
          const link = new URL("/confirm-email", this.publicUrl);
          link.searchParams.set("token", token);
          await this.outbox.enqueue(
            { ...newAddress, accountId: account.id },
            { kind: "confirm_email_change", username: account.username, link: link.href, ...details },
            trx,
          );
        }
        return {
          result: null,
          event: "security.email_change_requested",
          emails: [{ kind: "email_change_requested", newEmail: address, ...details }],
        };
      },
    );
    return { status: "confirmation_sent" };
  }

  /**
   * The link from the new address: in one transaction the link is spent, the address changed (only from
   * the address the request was made with), the 72-hour hold placed, both addresses told and the change
   * audited. Refused, with the link left unspent, while the Global Settings Lock is on or the account frozen
   * (a freeze, like a password change, has already cancelled a link sent before it: see advanceSecurityEpoch);
   * the change itself cancels every link sent before it, to either address.
   */
  async confirm(
    token: string,
    context: RequestContext,
  ): Promise<{ status: "changed"; email: string; holdUntil: string }> {
    const { accountId, holdUntil } = await this.db.transaction().execute(async (trx) => {
      const { accountId, data } = await this.tokens.consume("confirm_email", token, trx);
      const from = String(data?.from ?? "");
      const to = String(data?.to ?? "");
      const now = this.clock.now();
      await holdForEmailedChange(this.accounts, accountId, now, trx);
      const account = await this.accounts.findById(accountId, trx);
      if (!account) throw notFound("That account");
      const takenMeanwhile = new Problem(
        409,
        "conflict",
        "This address now belongs to another account, so it cannot be used.",
      );
      const owner = await trx
        .selectFrom("accounts")
        .select("id")
        .where("email_key", "=", emailKey(to))
        .executeTakeFirst();
      if (owner) throw takenMeanwhile;
      let moved: boolean;
      try {
        moved = await this.accounts.changeEmail(accountId, from, to, trx);
      } catch (error) {
        // Another account took the address between the read above and this write.
        if (isUniqueViolation(error)) throw takenMeanwhile;
        throw error;
      }
      if (!moved) {
        throw new Problem(
          409,
          "conflict",
          "The account's address changed after this link was sent. Ask for a new one.",
        );
      }
      // Every link sent before, to either address (a password reset, say), stops working now.
      await this.tokens.advanceSecurityEpoch(accountId, trx);
      const holdUntil = await this.holds.place(accountId, "email_changed", trx);
      const message = {
        kind: "email_changed" as const,
        oldEmail: from,
        newEmail: to,
        holdUntil: iso(holdUntil),
        ...securityDetails(context, now),
      };
      await this.outbox.notify({ ...account, email: from }, message, trx);
      await this.outbox.notify({ ...account, email: to }, message, trx);
      await this.audit.append(
        { event: "security.email_changed", outcome: "success", accountId },
        context,
        trx,
      );
      return { accountId, holdUntil: iso(holdUntil) };
    });
    await this.sessions.accountChanged(accountId);
    this.outbox.nudge();
    const account = await this.accounts.findById(accountId);
    return { status: "changed", email: account?.email ?? "", holdUntil };
  }
}
