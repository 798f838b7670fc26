import type { Kysely } from "kysely";
import type { Account, AccountRepository } from "../accounts/accounts.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Database } from "../db/schema.js";
import type { ProofVerifier } from "../factors/proofs.js";
import type { SecondFactorRepository } from "../factors/second-factors.js";
import { advanceSecurityEpoch, type OneTimeTokens } from "../flows/one-time-tokens.js";
import type { LockLinkIssuer, Outbox } from "../notify/outbox.js";
import { securityDetails } from "../notify/templates.js";
import type { SessionService } from "../sessions/sessions.js";
import { type Clock, iso } from "../support/clock.js";
import { invalidCredentials, notFound, Problem } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import type { ChangeRequest, SettingChanges } from "./setting-changes.js";

const HOUR = 3_600_000;
/** How long a lock link in a security email works. */
export const LOCK_LINK_TTL_MS = 7 * 24 * HOUR;
/** How long a freeze lasts at least before the owner may lift it: a thief who froze it cannot undo it at once. */
export const LIFT_AFTER_MS = 24 * HOUR;

/** The "lock my account" links of security emails: single-use tokens, hashed at rest, 7 days valid. */
export class LockLinks implements LockLinkIssuer {
  constructor(
    private readonly tokens: OneTimeTokens,
    private readonly publicUrl: URL,
  ) {}

  async issue(accountId: string, db: Kysely<Database>): Promise<string> {
    const token = await this.tokens.issue("lock_account", accountId, LOCK_LINK_TTL_MS, null, db);
    const link = new URL("/lock-account", this.publicUrl);
    link.searchParams.set("token", token);
    return link.href;
  }
}

/**
 * What the owner's session shows of a freeze. `liftable` is decided by the server's clock, not the browser's,
 * which may be off.
 */
export function freezeState(account: Pick<Account, "frozenAt">, now: number) {
  if (account.frozenAt === null) return null;
  const liftableAt = account.frozenAt + LIFT_AFTER_MS;
  return { since: iso(account.frozenAt), liftableAt: iso(liftableAt), liftable: now >= liftableAt };
}

/** "2026-06-20 09:15 UTC": a time in a sentence, read the same wherever the reader is. */
function readableUtc(ms: number): string {
  return `${iso(ms).slice(0, 16).replace("T", " ")} UTC`;
}

const LIFT_FREEZE = "lift_freeze";

const notFrozen = () => new Problem(409, "conflict", "This account is not frozen.");

/**
 * "Lock my account": anyone holding a lock link from a security email freezes the account in one
 * transaction (link spent, account frozen, every session ended, the owner emailed, the audit entry).
 * While frozen, the capability function refuses every product with `account_frozen` (API keys stop on
 * their next request), setting changes refuse, and sessions opened afterwards see the freeze and can do
 * nothing else. Lifting needs the Master Key and a second factor once 24 hours have passed, or an operator.
 */
export class AccountFreeze {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly accounts: AccountRepository,
    private readonly tokens: OneTimeTokens,
    private readonly sessions: SessionService,
    private readonly changes: SettingChanges,
    private readonly factors: SecondFactorRepository,
    private readonly proofs: ProofVerifier,
    private readonly audit: AuditLog,
    private readonly outbox: Outbox,
  ) {}

  /** Spends a lock link and freezes its account (already frozen: the link is spent, nothing else changes). */
  async freeze(token: string, context: RequestContext) {
    const outcome = await this.db.transaction().execute(async (trx) => {
      const { accountId } = await this.tokens.consume("lock_account", token, trx);
      const now = this.clock.now();
      const froze = await this.accounts.freeze(accountId, now, trx);
      // Links emailed before the freeze (an email change, an address, a reset) may be the intruder's:
      // none of them works again, even once the freeze is lifted.
      await advanceSecurityEpoch(trx, accountId);
      const account = await this.accounts.findById(accountId, trx);
      if (!account) throw notFound("That account");
      if (!froze) return { account, newly: false };
      const ended = await this.sessions.endAllWithin(trx, accountId, null, "account_frozen");
      await this.outbox.notify(account, { kind: "account_frozen", ...securityDetails(context, now) }, trx);
      await this.audit.append(
        { event: "account.frozen", outcome: "success", accountId, details: { sessionsEnded: ended } },
        context,
        trx,
      );
      return { account, newly: true };
    });
    // After the commit, so no instance reads the still-open sessions again: every cached one is dropped.
    if (outcome.newly) {
      await this.sessions.accountChanged(outcome.account.id);
      this.outbox.nudge();
    }
    return { status: "frozen" as const, ...freezeState(outcome.account, this.clock.now())! };
  }

  /**
   * The owner lifts the freeze, 24 hours after it began, with the Master Key and a step-up with a second
   * factor. Accounts without either need an operator.
   */
  async liftByOwner(request: ChangeRequest, masterKey: string): Promise<{ status: "lifted" }> {
    const { account, context } = request;
    const now = this.clock.now();
    if (account.frozenAt === null) throw notFrozen();
    if (!account.masterKeyHash || !(await this.factors.hasSignInFactor(account.id))) {
      throw new Problem(
        409,
        "conflict",
        "Lifting a freeze yourself needs a Master Key and a second factor on the account. Contact support to lift it.",
      );
    }
    if (now < account.frozenAt + LIFT_AFTER_MS) {
      throw new Problem(
        423,
        "account_frozen",
        `The freeze can be lifted 24 hours after it began, from ${readableUtc(account.frozenAt + LIFT_AFTER_MS)}.`,
        { liftableAt: iso(account.frozenAt + LIFT_AFTER_MS) },
      );
    }
    const options = {
      stepUp: { type: LIFT_FREEZE, params: {}, summary: "Lift the freeze on your account" },
      whileLocked: "allowed",
      whileFrozen: "allowed",
    } as const;
    // The step-up first: without a confirmed one of this session for this change (none presented, or an id
    // that is not one), a step-up is demanded and the Master Key is not looked at.
    if (!(await this.changes.presentsStepUp(request, options))) {
      await this.changes.run({ ...request, actionId: undefined }, options, async () => {
        throw notFrozen(); // never reached: without an action id the change only demands the step-up
      });
    }
    // Then the Master Key, counted like every factor. (It cannot be checked inside the lift's transaction:
    // its attempt counter is written outside it, which SQLite's one connection would wait for.)
    const proof = await this.proofs.verify(
      account,
      { kind: "master_key", masterKey },
      "lift_freeze",
      context,
    );
    if (proof.kind !== "passed") {
      await this.outbox.notify(account, {
        kind: "security_change",
        change: "someone tried to lift the freeze on your account with a wrong Master Key",
        ...securityDetails(context, now),
      });
      throw invalidCredentials();
    }
    // One transaction: the step-up spent (a parallel request that spent it first leaves a step-up demanded
    // here), the freeze lifted, the email and the audit entry.
    await this.changes.run(request, options, async (trx) => {
      if (!(await this.accounts.unfreeze(account.id, this.clock.now() - LIFT_AFTER_MS, trx)))
        throw notFrozen();
      return {
        result: null,
        event: "account.unfrozen",
        details: { by: "owner" },
        emails: [{ kind: "account_unfrozen", by: "owner", ...securityDetails(context, this.clock.now()) }],
      };
    });
    return { status: "lifted" };
  }

  /** An operator lifts the freeze at once (admin API and CLI), audited with the operator as actor. */
  async liftByOperator(accountId: string, context: RequestContext): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const lifted = await this.accounts.unfreeze(accountId, null, trx);
      const account = await this.accounts.findById(accountId, trx);
      if (!account) throw notFound("That account");
      if (!lifted) throw notFrozen();
      await this.outbox.notify(
        account,
        { kind: "account_unfrozen", by: "operator", ...securityDetails(context, this.clock.now()) },
        trx,
      );
      await this.audit.append(
        {
          event: "account.unfrozen",
          outcome: "success",
          accountId,
          actor: "operator",
          details: { by: "operator" },
        },
        context,
        trx,
      );
    });
    await this.sessions.accountChanged(accountId);
    this.outbox.nudge();
  }
}
