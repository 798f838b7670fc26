import type { Kysely, Transaction } from "kysely";
import type { Account, AccountRepository } from "../accounts/accounts.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Database } from "../db/schema.js";
import type { Outbox } from "../notify/outbox.js";
import { type EmailMessage, securityDetails } from "../notify/templates.js";
import type { SessionService } from "../sessions/sessions.js";
import type { Clock } from "../support/clock.js";
import { accountFrozen, Problem } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";

/** The owner, their session and the action id they present for a setting change. */
export interface ChangeRequest {
  account: Account;
  sessionId: string;
  actionId: string | undefined;
  context: RequestContext;
}

/** Is the Global Settings Lock on right now? A requested unlock completes by itself when its time comes. */
export function isLocked(account: Pick<Account, "globalLock">, now: number): boolean {
  const lock = account.globalLock;
  if (!lock) return false;
  return lock.unlocksAt === null || lock.unlocksAt > now;
}

export const settingsLocked = () =>
  new Problem(
    403,
    "settings_locked",
    "The Global Settings Lock is on: unlock it to change security settings.",
  );

/**
 * For a change finished from an emailed link (no session, so not through SettingChanges.run): holds the
 * account's row until the transaction ends, or refuses while the Global Settings Lock is on or the account
 * is frozen. The link's transaction then rolls back, leaving the link unspent.
 */
export async function holdForEmailedChange(
  accounts: AccountRepository,
  accountId: string,
  now: number,
  trx: Transaction<Database>,
): Promise<void> {
  if (await accounts.holdForChange(accountId, now, { lock: true, freeze: true }, trx)) return;
  const current = await accounts.findById(accountId, trx);
  throw current?.frozenAt != null ? accountFrozen() : settingsLocked();
}

/**
 * The step-up half of a change, as ActionService offers it. Declared here so that security/ needs nothing
 * from actions/ (which reads withdrawal addresses from here).
 */
export interface StepUps {
  demandStepUp(
    account: Account,
    type: string,
    params: Record<string, unknown>,
    summary: string,
    alsoRequire?: readonly "trading_passcode"[],
  ): Promise<never>;
  spend(
    trx: Transaction<Database>,
    accountId: string,
    sessionId: string,
    actionId: string,
    type: string,
    params: Record<string, unknown>,
  ): Promise<boolean>;
  canSpend(
    accountId: string,
    sessionId: string,
    actionId: string,
    type: string,
    params: Record<string, unknown>,
  ): Promise<boolean>;
}

/** What the owner confirms before the change: its type and parameters (digested), and how it reads. */
export interface StepUp {
  type: string;
  params: Record<string, unknown>;
  summary: string;
  alsoRequire?: readonly "trading_passcode"[];
}

export interface ChangeOptions {
  /** The step-up the change needs; null for the few that need none (revoking API keys, say). */
  stepUp: StepUp | null;
  /**
   * "refused" (the default): refused while the Global Settings Lock is on. "allowed": changes that only
   * take privilege away, and the lock's own unlock and cancel, which check the lock themselves.
   */
  whileLocked?: "refused" | "allowed";
  /** "refused" (the default): refused while the account is frozen. "allowed": only lifting the freeze. */
  whileFrozen?: "refused" | "allowed";
}

/** What a change did: its audit entry, the sentence of its "security setting changed" email, other emails. */
export interface ChangeOutcome<T> {
  result: T;
  event: string;
  details?: Record<string, unknown>;
  /** "changed the Master Key": emailed to the owner as a security change. Omitted: no such email. */
  change?: string;
  /** Further emails to the owner, queued in the same transaction. */
  emails?: EmailMessage[];
  /** The account as the emails should address it (a new anti-phishing code frames its own email). */
  recipient?: Account;
}

/** Thrown inside the transaction when the presented action cannot be spent: the transaction rolls back. */
class StepUpNeeded extends Error {}

/**
 * The one path of an owner's setting change: check the Global Settings Lock, spend the confirmed step-up
 * (bound to the session that confirmed it), make the change, queue its emails and append its audit entry
 * in one database transaction, then tell every instance after the commit. A crash leaves the change
 * wholly there (row, email, audit entry) or wholly absent.
 *
 * `apply` must write only through the transaction it is handed: on SQLite a write through the pool
 * would wait for the transaction's own connection.
 */
export class SettingChanges {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly stepUps: StepUps,
    private readonly accounts: AccountRepository,
    private readonly sessions: SessionService,
    private readonly audit: AuditLog,
    private readonly outbox: Outbox,
  ) {}

  /**
   * Whether the request presents the confirmed step-up `run` would spend for this change: read only, for a
   * change that must not ask anything else (a Master Key) before the step-up is proven.
   */
  async presentsStepUp(request: ChangeRequest, options: ChangeOptions): Promise<boolean> {
    const { stepUp } = options;
    if (!stepUp || request.actionId === undefined) return false;
    return this.stepUps.canSpend(
      request.account.id,
      request.sessionId,
      request.actionId,
      stepUp.type,
      stepUp.params,
    );
  }

  async run<T>(
    request: ChangeRequest,
    options: ChangeOptions,
    apply: (trx: Transaction<Database>) => Promise<ChangeOutcome<T>>,
  ): Promise<T> {
    const { account, context, actionId } = request;
    const lockRefuses = (options.whileLocked ?? "refused") === "refused";
    const freezeRefuses = (options.whileFrozen ?? "refused") === "refused";
    // Read from the session's view first, so a locked owner is told so before being asked to step up.
    if (freezeRefuses && account.frozenAt !== null) throw accountFrozen();
    if (lockRefuses && isLocked(account, this.clock.now())) throw settingsLocked();
    const { stepUp } = options;
    if (stepUp && actionId === undefined) return this.demand(account, stepUp);
    let outcome: ChangeOutcome<T>;
    try {
      outcome = await this.db.transaction().execute(async (trx) => {
        // Again inside the transaction, holding the account's row: the lock may have turned on, or the
        // account been frozen, meanwhile.
        if (
          (lockRefuses || freezeRefuses) &&
          !(await this.accounts.holdForChange(
            account.id,
            this.clock.now(),
            { lock: lockRefuses, freeze: freezeRefuses },
            trx,
          ))
        ) {
          const current = await this.accounts.findById(account.id, trx);
          throw current?.frozenAt != null && freezeRefuses ? accountFrozen() : settingsLocked();
        }
        if (
          stepUp &&
          !(await this.stepUps.spend(
            trx,
            account.id,
            request.sessionId,
            actionId!,
            stepUp.type,
            stepUp.params,
          ))
        ) {
          throw new StepUpNeeded();
        }
        const done = await apply(trx);
        const recipient = done.recipient ?? account;
        const at = this.clock.now();
        if (done.change) {
          await this.outbox.notify(
            recipient,
            { kind: "security_change", change: done.change, ...securityDetails(context, at) },
            trx,
          );
        }
        for (const email of done.emails ?? []) await this.outbox.notify(recipient, email, trx);
        // Last: the chain head's row lock is held from here to the commit, so kept as short as can be.
        await this.audit.append(
          {
            event: done.event,
            outcome: "success",
            accountId: account.id,
            details: { ...(done.change ? { change: done.change } : {}), ...done.details },
          },
          context,
          trx,
        );
        return done;
      });
    } catch (error) {
      if (error instanceof StepUpNeeded && stepUp) return this.demand(account, stepUp);
      throw error;
    }
    // After the commit: every instance reads the account (and its sessions) again; mail goes out soon.
    await this.sessions.accountChanged(account.id);
    this.outbox.nudge();
    return outcome.result;
  }

  private demand(account: Account, stepUp: StepUp): Promise<never> {
    return this.stepUps.demandStepUp(
      account,
      stepUp.type,
      stepUp.params,
      stepUp.summary,
      stepUp.alsoRequire ?? [],
    );
  }
}
