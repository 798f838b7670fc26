import type { Kysely } from "kysely";
import { type Account, toAccount } from "../accounts/accounts.js";
import type { ActionService } from "../actions/actions.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Database } from "../db/schema.js";
import type { ProofVerifier } from "../factors/proofs.js";
import type { Outbox } from "../notify/outbox.js";
import { securityDetails } from "../notify/templates.js";
import type { SessionService } from "../sessions/sessions.js";
import type { Clock } from "../support/clock.js";
import { iso } from "../support/clock.js";
import { forbidden, invalidCredentials, notFound, Problem } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";

const DAY = 86_400_000;

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

export interface LockState {
  enabled: boolean;
  unlockDelayDays: number | null;
  unlockPending: boolean;
  unlocksAt: string | null;
}

/**
 * The Global Settings Lock (SPEC §7). What it refuses is decided in one place — every setting change
 * passes through ActionService.requireStepUp, which refuses all of them but turning the lock on. Unlocking
 * takes the Master Key (at once) or a waiting period (cancellable); a 0-day lock without a Master Key is
 * for support to remove. Every unlock attempt emails the owner.
 */
export class GlobalLockService {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly actions: ActionService,
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

  async lock(
    account: Account,
    actionId: string | undefined,
    unlockDelayDays: number,
    context: RequestContext,
  ) {
    if (isLocked(account, this.clock.now()))
      throw new Problem(409, "conflict", "The Global Settings Lock is already on.");
    await this.actions.requireStepUp(
      account,
      actionId,
      "enable_global_lock",
      { unlockDelayDays },
      `Turn on the Global Settings Lock (unlocking without the Master Key waits ${unlockDelayDays} days)`,
    );
    await this.write(account.id, {
      global_lock_since: this.clock.now(),
      global_lock_delay_days: unlockDelayDays,
      global_lock_unlocks_at: null,
    });
    await this.record(
      account,
      "global_lock.enabled",
      `turned on the Global Settings Lock (${unlockDelayDays}-day unlock wait)`,
      context,
    );
    return this.state((await this.reload(account))!);
  }

  async unlock(account: Account, masterKey: string | undefined, context: RequestContext) {
    const now = this.clock.now();
    if (!isLocked(account, now)) throw new Problem(409, "conflict", "The Global Settings Lock is not on.");
    await this.outbox.notify(account, {
      kind: "security_change",
      change:
        masterKey === undefined
          ? "someone asked to unlock the Global Settings Lock"
          : "someone tried to unlock the Global Settings Lock with the Master Key",
      ...securityDetails(context, now),
    });
    if (masterKey !== undefined) {
      if (!account.masterKeyHash) throw new Problem(409, "conflict", "This account has no Master Key.");
      const result = await this.proofs.verify(account, { kind: "master_key", masterKey }, "unlock", context);
      if (result.kind !== "passed") throw invalidCredentials();
      await this.write(account.id, {
        global_lock_since: null,
        global_lock_delay_days: null,
        global_lock_unlocks_at: null,
      });
      await this.record(
        account,
        "global_lock.unlocked",
        "unlocked the Global Settings Lock with the Master Key",
        context,
      );
      return { state: "unlocked" as const };
    }
    const delayDays = account.globalLock?.delayDays ?? 0;
    if (delayDays === 0) {
      throw forbidden("This lock has no waiting period: unlock it with the Master Key, or contact support.");
    }
    if (account.globalLock?.unlocksAt)
      return { state: "unlock_pending" as const, unlocksAt: iso(account.globalLock.unlocksAt) };
    const unlocksAt = now + delayDays * DAY;
    await this.write(account.id, { global_lock_unlocks_at: unlocksAt });
    await this.record(
      account,
      "global_lock.unlock_requested",
      `asked to unlock the Global Settings Lock on ${iso(unlocksAt)}`,
      context,
    );
    return { state: "unlock_pending" as const, unlocksAt: iso(unlocksAt) };
  }

  async cancelUnlock(account: Account, context: RequestContext): Promise<void> {
    if (!isLocked(account, this.clock.now()) || !account.globalLock?.unlocksAt) {
      throw new Problem(409, "conflict", "No unlock is pending.");
    }
    await this.write(account.id, { global_lock_unlocks_at: null });
    await this.record(
      account,
      "global_lock.unlock_cancelled",
      "cancelled the pending unlock of the Global Settings Lock",
      context,
    );
  }

  /** Support removes a lock (the 0-day case without a Master Key). */
  async remove(accountId: string, context: RequestContext): Promise<void> {
    const row = await this.db
      .updateTable("accounts")
      .set({ global_lock_since: null, global_lock_delay_days: null, global_lock_unlocks_at: null })
      .where("id", "=", accountId)
      .returning("id")
      .executeTakeFirst();
    if (!row) throw notFound("That account");
    await this.sessions.accountChanged(accountId);
    await this.audit.append(
      { event: "global_lock.removed", outcome: "success", accountId, actor: "operator" },
      context,
    );
  }

  private async write(
    accountId: string,
    values: Partial<
      Record<"global_lock_since" | "global_lock_delay_days" | "global_lock_unlocks_at", number | null>
    >,
  ) {
    await this.db.updateTable("accounts").set(values).where("id", "=", accountId).execute();
    await this.sessions.accountChanged(accountId);
  }

  private async reload(account: Account) {
    const row = await this.db
      .selectFrom("accounts")
      .selectAll()
      .where("id", "=", account.id)
      .executeTakeFirst();
    return row ? toAccount(row) : null;
  }

  private async record(
    account: Account,
    event: string,
    change: string,
    context: RequestContext,
  ): Promise<void> {
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
