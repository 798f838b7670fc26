import type { Kysely } from "kysely";
import type { Account } from "../accounts/accounts.js";
import {
  type ActionService,
  type ActionView,
  API_APPROVAL,
  actionDigest,
  type ConfirmInput,
} from "../actions/actions.js";
import type { Database } from "../db/schema.js";
import type { Session } from "../sessions/sessions.js";
import type { Clock } from "../support/clock.js";
import { notFound } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";

/** Long enough for the owner to open the portal and approve, short enough not to linger. */
const APPROVAL_TTL_MS = 15 * 60_000;

const DECIMAL = /^(\d{1,20})(?:\.(\d{1,18}))?$/;

/** An exact decimal as digits and scale: notional values must not drift through floating point. */
interface Exact {
  digits: bigint;
  scale: number;
}

export function parseDecimal(text: string): Exact | null {
  const match = DECIMAL.exec(text.trim());
  if (!match) return null;
  const fraction = match[2] ?? "";
  return { digits: BigInt(match[1]! + fraction), scale: fraction.length };
}

const times = (a: Exact, b: Exact): Exact => ({ digits: a.digits * b.digits, scale: a.scale + b.scale });
const plus = (a: Exact, b: Exact): Exact => {
  const scale = Math.max(a.scale, b.scale);
  return {
    digits: a.digits * 10n ** BigInt(scale - a.scale) + b.digits * 10n ** BigInt(scale - b.scale),
    scale,
  };
};
const exceeds = (a: Exact, b: Exact): boolean => {
  const scale = Math.max(a.scale, b.scale);
  return a.digits * 10n ** BigInt(scale - a.scale) > b.digits * 10n ** BigInt(scale - b.scale);
};
const show = (a: Exact): string => {
  const text = a.digits.toString().padStart(a.scale + 1, "0");
  const whole = text.slice(0, text.length - a.scale);
  const fraction = text.slice(text.length - a.scale).replace(/0+$/, "");
  return fraction ? `${whole}.${fraction}` : whole;
};

/** Orders of AddOrderBatch, from a JSON body's array or a form body's `orders[i][field]` names. */
function batchOrders(params: Record<string, unknown>): Record<string, unknown>[] {
  if (Array.isArray(params.orders)) return params.orders as Record<string, unknown>[];
  const orders: Record<string, unknown>[] = [];
  for (const [name, value] of Object.entries(params)) {
    const match = /^orders\[(\d{1,3})\]\[(\w+)\]$/.exec(name);
    if (!match) continue;
    const index = Number(match[1]);
    orders[index] = { ...orders[index], [match[2]!]: value };
  }
  return orders.filter(Boolean);
}

const decimalOf = (value: unknown) =>
  typeof value === "string" || typeof value === "number" ? parseDecimal(String(value)) : null;

/** One order's notional: volume × limit price; unknown (null) for a market order, whose price is not known here. */
function orderNotional(order: Record<string, unknown>): Exact | null {
  const volume = decimalOf(order.volume ?? order.order_qty);
  const price = decimalOf(order.price ?? order.limit_price);
  return volume && price ? times(volume, price) : null;
}

/**
 * What a request moves, for the key's approval threshold (SPEC §11): an order's notional in the quote
 * currency or a withdrawal's amount. "unknown" when it cannot be established (a market order): such a
 * request is held for approval too. Null for methods that move nothing.
 */
export function notionalOf(method: string, params: Record<string, unknown>): Exact | "unknown" | null {
  switch (method) {
    case "AddOrder":
    case "EditOrder":
    case "AmendOrder":
      return orderNotional(params) ?? "unknown";
    case "AddOrderBatch": {
      const orders = batchOrders(params);
      let total: Exact = { digits: 0n, scale: 0 };
      for (const order of orders) {
        const notional = orderNotional(order);
        if (!notional) return "unknown";
        total = plus(total, notional);
      }
      return orders.length ? total : "unknown";
    }
    case "Withdraw":
    case "WalletTransfer":
      return decimalOf(params.amount) ?? "unknown";
    default:
      return null;
  }
}

export type ApprovalDecision =
  | { kind: "not_needed" }
  | { kind: "approved" }
  | { kind: "required"; approval: ActionView }
  | { kind: "invalid" };

/**
 * Out-of-band approval of signed requests above a key's threshold (SPEC §11). A request over the line is
 * held as an action whose parameters are the key, the method and every request field but the nonce, the
 * otp and the approval id; the owner confirms it in the portal with a second factor; the bot sends the
 * same request again (new nonce) with `approval_id`, which spends the approval once.
 */
export class ApiApprovals {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly actions: ActionService,
  ) {}

  async decide(
    account: Account,
    key: { id: string; name: string; approval_threshold: string | null },
    method: string,
    params: Record<string, unknown>,
  ): Promise<ApprovalDecision> {
    const threshold = key.approval_threshold === null ? null : parseDecimal(key.approval_threshold);
    if (!threshold) return { kind: "not_needed" };
    const notional = notionalOf(method, params);
    if (notional === null || (notional !== "unknown" && !exceeds(notional, threshold)))
      return { kind: "not_needed" };

    const { nonce: _nonce, otp: _otp, approval_id: approvalId, ...fields } = params;
    const request = { keyId: key.id, method, fields };
    if (approvalId !== undefined) {
      const now = this.clock.now();
      const spent = await this.db
        .updateTable("actions")
        .set({ state: "used", used_at: now })
        .where("id", "=", String(approvalId))
        .where("account_id", "=", account.id)
        .where("type", "=", API_APPROVAL)
        .where("digest", "=", actionDigest(API_APPROVAL, request))
        .where("state", "=", "confirmed")
        .where("expires_at", ">", now)
        .returning("id")
        .executeTakeFirst();
      return spent ? { kind: "approved" } : { kind: "invalid" };
    }
    const amount = notional === "unknown" ? "an amount not known in advance" : show(notional);
    const approval = await this.actions.create(
      account,
      API_APPROVAL,
      request,
      `API key "${key.name}": ${method} ${describeFields(fields)} — ${amount}, above the key's approval threshold of ${show(threshold)}`,
      undefined,
      APPROVAL_TTL_MS,
    );
    return { kind: "required", approval };
  }

  /** The owner approves a held request with a second factor, through the one action mechanism. */
  async confirm(
    account: Account,
    session: Session,
    approvalId: string,
    input: ConfirmInput,
    context: RequestContext,
  ) {
    const action = await this.actions.load(account, approvalId);
    if (action.type !== API_APPROVAL) throw notFound("That approval");
    return this.actions.confirm(account, session, approvalId, input, context);
  }

  /** This account's requests waiting for approval, newest first. */
  async pending(account: Account): Promise<ActionView[]> {
    return this.actions.pendingOfType(account, API_APPROVAL);
  }
}

function describeFields(fields: Record<string, unknown>): string {
  return Object.entries(fields)
    .map(([name, value]) => `${name}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(" ")
    .slice(0, 300);
}
