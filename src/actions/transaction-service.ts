import type { Kysely } from "kysely";
import type { Account, AccountRepository } from "../accounts/accounts.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { CapabilityService } from "../capabilities/capability-service.js";
import { type TradingIntent, tradingRefusal } from "../capabilities/evaluate.js";
import type { ClientName } from "../capabilities/policy.js";
import type { Database } from "../db/schema.js";
import type { SecondFactorRepository } from "../factors/second-factors.js";
import type { WithdrawalAddressBook } from "../security/withdrawal-addresses.js";
import type { Clock } from "../support/clock.js";
import { iso } from "../support/clock.js";
import { accountFrozen, expired, notFound, Problem } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import { type ActionService, type ActionView, isTransaction, type RequiredProof } from "./actions.js";
import { describeTransaction, productOf, type TransactionType } from "./transactions.js";

/**
 * Funding and trading actions (behaviour §8): built by the server from the request, gated by the capability
 * function (and, for withdrawals, the address book), confirmed with the proofs the owner's settings
 * require, and redeemed exactly once by the venue's backend after a final check.
 */
export class TransactionService {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly actions: ActionService,
    private readonly capabilities: CapabilityService,
    private readonly addresses: WithdrawalAddressBook,
    private readonly factors: SecondFactorRepository,
    private readonly accounts: AccountRepository,
    private readonly audit: AuditLog,
  ) {}

  async create(
    account: Account,
    client: ClientName,
    type: string,
    params: Record<string, unknown>,
    context: RequestContext,
  ): Promise<ActionView> {
    const transaction = await describeTransaction(type, params, account, this.addresses);
    await this.gate(account, client, transaction.type, transaction.params);
    const required = await this.requiredProofs(account, transaction.type);
    const action = await this.actions.create(
      account,
      transaction.type,
      transaction.params,
      transaction.summary,
      required,
    );
    await this.audit.append(
      {
        event: "action.created",
        outcome: "success",
        accountId: account.id,
        details: { actionId: action.id, type: action.type, required },
      },
      context,
    );
    if (required.length > 0) return action;
    // Nothing more to prove: confirmed at once, with its grant.
    const { row, grant } = await this.actions.markConfirmed(
      account,
      await this.actions.load(account, action.id),
    );
    return { ...action, state: row.state, ...(grant ? { grant } : {}) };
  }

  /**
   * The venue's backend redeems a grant's action, once. The gate runs again first (a maintenance window or
   * hold may have begun since the owner confirmed); of any number of parallel redeems exactly one wins.
   */
  async redeem(actionId: string, context: RequestContext) {
    const action = await this.db
      .selectFrom("actions")
      .selectAll()
      .where("id", "=", actionId)
      .executeTakeFirst();
    // Only funding and trading actions carry grants; setting changes are never redeemed.
    if (!action || !isTransaction(action.type)) throw notFound("That action");
    if (action.redeemed_at !== null) throw new Problem(409, "conflict", "This action was already redeemed.");
    if (action.state !== "confirmed" || !action.grant_id) {
      throw new Problem(409, "conflict", "This action is not confirmed.");
    }
    const now = this.clock.now();
    if (action.grant_expires_at === null || action.grant_expires_at <= now)
      throw expired("This grant has expired.");
    const account = await this.accounts.findById(action.account_id);
    if (!account) throw notFound("That action");
    const params = JSON.parse(action.params) as Record<string, string>;
    const type = action.type as TransactionType;
    await this.gate(account, "api", type, params, { finalCheck: true });
    if (type === "withdraw")
      await this.addresses.assertUsable(account.id, params.addressId ?? "", params.asset ?? "");
    const redeemed = await this.db
      .updateTable("actions")
      .set({ state: "redeemed", redeemed_at: now })
      .where("id", "=", actionId)
      .where("state", "=", "confirmed")
      .where("redeemed_at", "is", null)
      .where("grant_expires_at", ">", now)
      .returning("id")
      .executeTakeFirst();
    if (!redeemed) throw new Problem(409, "conflict", "This action was already redeemed.");
    await this.audit.append(
      {
        event: "action.redeemed",
        outcome: "success",
        accountId: account.id,
        actor: "service",
        details: { actionId, type },
      },
      context,
    );
    return { type, params, accountId: account.id, grantId: action.grant_id, redeemedAt: iso(now) };
  }

  /**
   * The one gate: the product must be allowed right now. Only holds in the way → 423 on_hold with the
   * latest end; anything else → 403 not_eligible with every reason. The API client is not a gate at redeem.
   */
  private async gate(
    account: Account,
    client: ClientName,
    type: TransactionType,
    params: Record<string, unknown>,
    options: { finalCheck?: boolean } = {},
  ) {
    const product = productOf[type];
    const capability = (await this.capabilities.vector(account, client))[product];
    // Orders and cancels pass the engine modes as on the gateway (cancel_only, post_only).
    const intent: TradingIntent | null =
      type === "cancel_order"
        ? { kind: "cancel" }
        : type === "place_order"
          ? { kind: "order", postOnly: params.postOnly === true }
          : null;
    const refused = intent
      ? (tradingRefusal(capability, intent) ?? [])
      : capability.allowed
        ? []
        : capability.reasons;
    const reasons = options.finalCheck ? refused.filter((r) => r.code !== "client_app") : refused;
    if (reasons.length === 0) return;
    if (reasons.some((r) => r.code === "account_frozen")) throw accountFrozen();
    if (reasons.every((r) => r.code === "security_hold")) {
      const until = reasons
        .map((r) => (r.code === "security_hold" ? r.until : ""))
        .sort()
        .at(-1)!;
      throw new Problem(423, "on_hold", reasons[0]!.message, { until, reasons });
    }
    throw new Problem(403, "not_eligible", reasons[0]?.message ?? "Not available.", { product, reasons });
  }

  /** docs/behaviour.md §8: withdrawals always need a second factor; the owner's settings add the rest. */
  private async requiredProofs(account: Account, type: TransactionType): Promise<RequiredProof[]> {
    const required: RequiredProof[] = [];
    const funding =
      type === "withdraw" ||
      ((type === "new_deposit_address" || type === "transfer_futures") && account.fundingTwoFactor);
    const trading = (type === "place_order" || type === "cancel_order") && account.tradingTwoFactor;
    if ((funding || trading) && (await this.factors.hasSignInFactor(account.id)))
      required.push("second_factor");
    if ((type === "withdraw" || type === "place_order") && account.tradingPasscodeHash)
      required.push("trading_passcode");
    return required;
  }
}
