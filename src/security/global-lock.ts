import type { Kysely } from "kysely";
import type { Account, AccountRepository } from "../accounts/accounts.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Database } from "../db/schema.js";
import type { ProofVerifier } from "../factors/proofs.js";
import type { SecondFactorRepository } from "../factors/second-factors.js";
import type { WebAuthnFactor } from "../factors/webauthn-factor.js";
import type { Outbox } from "../notify/outbox.js";
import { securityDetails } from "../notify/templates.js";
import type { SessionService } from "../sessions/sessions.js";
import type { Clock } from "../support/clock.js";
import { iso } from "../support/clock.js";
import { forbidden, invalidCredentials, notFound, Problem } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import { type ChangeRequest, isLocked, type SettingChanges } from "./setting-changes.js";

export { isLocked, settingsLocked } from "./setting-changes.js";

const DAY = 86_400_000;

export interface LockState {
  enabled: boolean;
  unlockDelayDays: number | null;
  unlockPending: boolean;
  unlocksAt: string | null;
}

const notLocked = () => new Problem(409, "conflict", "The Global Settings Lock is not on.");

/**
 * The Global Settings Lock (behaviour §7). What it refuses is decided in one place — every setting change
 * passes through SettingChanges, which refuses all of them but the few that only take privilege away.
 * Unlocking takes the Master Key (at once) or a waiting period asked for with a step-up (cancellable with
 * one); a 0-day lock without a Master Key is for support to remove. Every unlock attempt emails the owner.
 */
export class GlobalLockService {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly changes: SettingChanges,
    private readonly accounts: AccountRepository,
    private readonly factors: SecondFactorRepository,
    private readonly webauthn: WebAuthnFactor,
    private readonly proofs: ProofVerifier,
    private readonly sessions: SessionService,
    private readonly audit: AuditLog,
    private readonly outbox: Outbox,
  ) {}

  state(account: Account): LockState {
    const now = this.clock.now();
    const locked = isLocked(account, now);
    const lock = account.globalLock;
    return {
      enabled: locked,
      unlockDelayDays: locked && lock ? lock.delayDays : null,
      unlockPending: locked && lock?.unlocksAt !== null && lock?.unlocksAt !== undefined,
      unlocksAt: locked && lock?.unlocksAt ? iso(lock.unlocksAt) : null,
    };
  }

  /** Turns the lock on; enrollments started before and not finished are dropped with it. */
  async lock(request: ChangeRequest, unlockDelayDays: number) {
    const { account } = request;
    if (isLocked(account, this.clock.now()))
      throw new Problem(409, "conflict", "The Global Settings Lock is already on.");
    await this.changes.run(
      request,
      {
        stepUp: {
          type: "enable_global_lock",
          params: { unlockDelayDays },
          summary: `Turn on the Global Settings Lock (unlocking without the Master Key waits ${unlockDelayDays} days)`,
        },
      },
      async (trx) => {
        const now = this.clock.now();
        if (!(await this.accounts.enableGlobalLock(account.id, unlockDelayDays, now, trx)))
          throw new Problem(409, "conflict", "The Global Settings Lock is already on.");
        // An enrollment started before the lock would otherwise add a factor under it.
        const dropped = await this.factors.removePending(account.id, trx);
        await this.webauthn.dropPendingRegistrations(account.id, trx);
        return {
          result: null,
          event: "global_lock.enabled",
          details: { droppedEnrollments: dropped },
          change: `turned on the Global Settings Lock (${unlockDelayDays}-day unlock wait)`,
        };
      },
    );
    return this.state((await this.accounts.findById(account.id))!);
  }

  /**
   * With the Master Key: unlocked at once (the Master Key is the proof; a session opened by the Master
   * Key bypass may do this too). Without: a step-up, then the unlock waits out the lock's period.
   */
  async unlock(request: ChangeRequest, masterKey: string | undefined) {
    const { account, context } = request;
    const now = this.clock.now();
    if (!isLocked(account, now)) throw notLocked();
    if (masterKey !== undefined) {
      if (!account.masterKeyHash) throw new Problem(409, "conflict", "This account has no Master Key.");
      const result = await this.proofs.verify(account, { kind: "master_key", masterKey }, "unlock", context);
      if (result.kind !== "passed") {
        await this.outbox.notify(account, {
          kind: "security_change",
          change: "someone tried to unlock the Global Settings Lock with a wrong Master Key",
          ...securityDetails(context, now),
        });
        throw invalidCredentials();
      }
      await this.changes.run(request, { stepUp: null, whileLocked: "allowed" }, async (trx) => {
        if (!(await this.accounts.setGlobalLockOpening(account.id, "now", this.clock.now(), trx)))
          throw notLocked();
        return {
          result: null,
          event: "global_lock.unlocked",
          change: "unlocked the Global Settings Lock with the Master Key",
        };
      });
      return { state: "unlocked" as const };
    }
    const delayDays = account.globalLock?.delayDays ?? 0;
    if (delayDays === 0) {
      throw forbidden("This lock has no waiting period: unlock it with the Master Key, or contact support.");
    }
    if (account.globalLock?.unlocksAt)
      return { state: "unlock_pending" as const, unlocksAt: iso(account.globalLock.unlocksAt) };
    const unlocksAt = await this.changes.run(
      request,
      {
        stepUp: {
          type: "request_global_unlock",
          params: {},
          summary: `Unlock the Global Settings Lock after its ${delayDays}-day wait`,
        },
        whileLocked: "allowed",
      },
      async (trx) => {
        const at = this.clock.now() + delayDays * DAY;
        if (!(await this.accounts.setGlobalLockOpening(account.id, at, this.clock.now(), trx, false)))
          throw new Problem(409, "conflict", "An unlock is already pending, or the lock is not on.");
        return {
          result: at,
          event: "global_lock.unlock_requested",
          change: `asked to unlock the Global Settings Lock on ${iso(at)}`,
        };
      },
    );
    return { state: "unlock_pending" as const, unlocksAt: iso(unlocksAt) };
  }

  /** Cancels a pending unlock: a step-up too, or a thief could stop the owner's own unlock. */
  async cancelUnlock(request: ChangeRequest): Promise<void> {
    const { account } = request;
    if (!isLocked(account, this.clock.now()) || !account.globalLock?.unlocksAt) {
      throw new Problem(409, "conflict", "No unlock is pending.");
    }
    await this.changes.run(
      request,
      {
        stepUp: {
          type: "cancel_global_unlock",
          params: {},
          summary: "Cancel the pending unlock of the Global Settings Lock",
        },
        whileLocked: "allowed",
      },
      async (trx) => {
        if (!(await this.accounts.setGlobalLockOpening(account.id, null, this.clock.now(), trx, true)))
          throw new Problem(409, "conflict", "No unlock is pending.");
        return {
          result: null,
          event: "global_lock.unlock_cancelled",
          change: "cancelled the pending unlock of the Global Settings Lock",
        };
      },
    );
  }

  /** Support removes a lock (the 0-day case without a Master Key). */
  async remove(accountId: string, context: RequestContext): Promise<void> {
    const account = await this.accounts.findById(accountId);
    if (!account) throw notFound("That account");
    await this.db.transaction().execute(async (trx) => {
      if (!(await this.accounts.setGlobalLockOpening(accountId, "now", this.clock.now(), trx)))
        throw notLocked();
      await this.audit.append(
        { event: "global_lock.removed", outcome: "success", accountId, actor: "operator" },
        context,
        trx,
      );
    });
    await this.sessions.accountChanged(accountId);
  }
}
