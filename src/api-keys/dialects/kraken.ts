import type { TradingIntent } from "../../capabilities/evaluate.js";
import { krakenSignatureBytes } from "../../client/kraken-client.js";
import {
  allPostOnly,
  cancelMethods,
  describeRequest,
  movementsOf,
  orderEntryMethods,
  productOf,
  unknownField,
} from "../kraken-requests.js";
import { callCost, methodPermissions, permissions } from "../permissions.js";
import { type Params, type ParsedBody, parseBody, text, withParams } from "../request-body.js";
import { tradingCharges, tradingMethods } from "../trading-limiter.js";
import type { Answer, Dialect, KeyRow, ParsedRequest, Refusal } from "./dialect.js";
import { sameBase64 } from "./path-dialect.js";

export type KrakenError =
  | "EAPI:Invalid key"
  | "EAPI:Invalid signature"
  | "EAPI:Invalid nonce"
  | "EAPI:Rate limit exceeded"
  | "EOrder:Rate limit exceeded"
  | "EGeneral:Permission denied"
  | "EGeneral:Unknown method"
  | "EGeneral:Invalid arguments"
  | "EGeneral:Temporary lockout"
  | "EGeneral:Approval required"
  | "EAuth:Account temporary disabled"
  | "EService:Market in cancel_only mode"
  | "EService:Market in post_only mode"
  | "EService:Unavailable";

/** HTTP statuses for Kraken's error strings: the body keeps Kraken's shape, the status says 4xx/5xx. */
export const krakenStatus: Record<KrakenError, number> = {
  "EAPI:Invalid key": 401,
  "EAPI:Invalid signature": 401,
  "EAPI:Invalid nonce": 401,
  "EAPI:Rate limit exceeded": 429,
  "EOrder:Rate limit exceeded": 429,
  "EGeneral:Permission denied": 403,
  "EGeneral:Unknown method": 404,
  "EGeneral:Invalid arguments": 400,
  "EGeneral:Temporary lockout": 429,
  "EGeneral:Approval required": 403,
  "EAuth:Account temporary disabled": 403,
  "EService:Market in cancel_only mode": 403,
  "EService:Market in post_only mode": 403,
  "EService:Unavailable": 503,
};

/** Kraken's error string for each refusal of the pipeline. */
const krakenErrors: Record<Refusal, KrakenError> = {
  unknown_method: "EGeneral:Unknown method",
  missing_credentials: "EAPI:Invalid key",
  invalid_key: "EAPI:Invalid key",
  key_version: "EAPI:Invalid key",
  invalid_passphrase: "EAPI:Invalid key",
  invalid_signature: "EAPI:Invalid signature",
  stale: "EAPI:Invalid nonce",
  replay: "EAPI:Invalid nonce",
  lockout: "EGeneral:Temporary lockout",
  ip: "EGeneral:Permission denied",
  permission: "EGeneral:Permission denied",
  invalid_arguments: "EGeneral:Invalid arguments",
  approval_required: "EGeneral:Approval required",
  account_restricted: "EAuth:Account temporary disabled",
  product_refused: "EGeneral:Permission denied",
  cancel_only: "EService:Market in cancel_only mode",
  post_only: "EService:Market in post_only mode",
  unavailable: "EService:Unavailable",
  rate_limit: "EAPI:Rate limit exceeded",
  order_rate_limit: "EOrder:Rate limit exceeded",
};

/** Kraken's answer to a refusal: `{"error":[…],"result":{…}}` with a 4xx/5xx status. */
export function krakenAnswer(error: KrakenError, result: Record<string, unknown> = {}): Answer {
  return { status: krakenStatus[error], error, body: { error: [error], result } };
}

const U64_MAX = 18446744073709551615n;

/**
 * The nonce of a request as sent (the string is what the client signed, leading zeros and all) and its
 * value as a u64; null when absent or malformed.
 */
export function nonceOf(value: Params[string] | undefined): { sent: string; value: bigint } | null {
  if (typeof value === "number" && !Number.isSafeInteger(value)) return null;
  const sent = text(value);
  if (sent === null || !/^\d{1,24}$/.test(sent)) return null;
  const parsed = BigInt(sent);
  return parsed > 0n && parsed <= U64_MAX ? { sent, value: parsed } : null;
}

/** History methods and the fields that bound them in time (unix seconds). */
const historyBounds: Record<string, [string, string]> = {
  ClosedOrders: ["start", "end"],
  TradesHistory: ["start", "end"],
  Ledgers: ["start", "end"],
  AddExport: ["starttm", "endtm"],
};
const TIME = /^\d{1,12}(\.\d{1,6})?$/;

/**
 * A windowed key's history request, bounded: a bound outside the window is refused; a missing bound is
 * set to the window's edge, so the venue is asked for nothing outside it; a bound that is not a time (an
 * order id, which Kraken also accepts) is refused for such a key, since it cannot be checked.
 */
function boundedHistory(row: KeyRow, method: string, body: ParsedBody): ParsedBody | "outside" | "invalid" {
  const fields = historyBounds[method];
  if (!fields || (row.query_from === null && row.query_to === null)) return body;
  const [startField] = fields;
  const changes: Record<string, string> = {};
  for (const field of fields) {
    const value = body.params[field];
    if (value === undefined) {
      const edge = field === startField ? row.query_from : row.query_to;
      if (edge !== null)
        changes[field] = String(field === startField ? Math.floor(edge / 1000) : Math.ceil(edge / 1000));
      continue;
    }
    const raw = text(value);
    if (raw === null || !TIME.test(raw)) return "invalid";
    const ms = Number(raw) * 1000;
    if ((row.query_from !== null && ms < row.query_from) || (row.query_to !== null && ms > row.query_to))
      return "outside";
  }
  return Object.keys(changes).length > 0 ? withParams(body, changes) : body;
}

const PRIVATE = "/0/private/";

/**
 * Kraken spot: `API-Key`, and `API-Sign` = base64(HMAC-SHA512(base64-decoded secret, path +
 * SHA-256(nonce + body))) over the body as sent; a nonce in the body, claimed above a floor that never
 * moves down; the key's own second factor as `otp`; methods by name under /0/private/.
 */
export const kraken: Dialect = {
  name: "kraken",
  permissions,
  allowlistRequired: ["funds_withdraw"],
  grants: (keyPermissions, needed) => keyPermissions.includes(needed),
  keyOtp: true,

  operation(request) {
    const method = request.path.startsWith(PRIVATE) ? request.path.slice(PRIVATE.length) : "";
    if (!Object.hasOwn(methodPermissions, method)) return null;
    return { name: method, permission: methodPermissions[method] ?? null };
  },

  apiKey: (request) => request.headers["api-key"],
  credentialsPresent: () => true,

  parse(request): ParsedRequest {
    const body = parseBody(request.headers["content-type"], request.body);
    return { params: body.params, body, query: "" };
  },

  authenticate(request, parsed, secrets) {
    const nonce = nonceOf(parsed.params.nonce);
    if (!nonce) return "stale";
    // Compared as the text sent, by the one comparison every dialect uses.
    const expected = krakenSignatureBytes(
      Buffer.from(secrets.secret, "base64"),
      request.path,
      nonce.sent,
      request.body,
    );
    return sameBase64(request.headers["api-sign"], expected) ? null : "invalid_signature";
  },

  async claim(state, row, _request, parsed) {
    const nonce = nonceOf(parsed.params.nonce);
    if (!nonce) return "stale";
    const claim = await state.claimNonce(row.id, nonce.value, row.nonce_window);
    return claim === "accepted" ? null : claim === "duplicate" ? "replay" : "stale";
  },

  permission: (operation) => operation.permission,
  unknownField: (operation, params) => unknownField(operation.name, params),
  product: (operation, params) => productOf(operation.name, params),

  intent(operation, params): TradingIntent | null {
    if (cancelMethods.includes(operation.name)) return { kind: "cancel" };
    if (orderEntryMethods.includes(operation.name))
      return { kind: "order", postOnly: allPostOnly(operation.name, params) };
    return null;
  },

  bound(row, operation, parsed) {
    const body = boundedHistory(row, operation.name, parsed.body);
    return typeof body === "string" ? body : { ...parsed, params: body.params, body };
  },

  /**
   * Order events go to Kraken's per-pair trading limiter; everything else, and cancels of orders the
   * gateway never saw placed, to the REST call counter.
   */
  async charge({ state, row, account, operation, parsed, now, knownOrders }) {
    const method = operation.name;
    if (!tradingMethods.includes(method))
      return (await state.chargeCalls(row.id, account.tier, callCost(method), now)) ? null : "rate_limit";
    const { charges, unknownOrders } = await tradingCharges(method, parsed.params, now, knownOrders);
    for (const charge of charges) {
      if (!(await state.chargeTrading(row.id, account.tier, charge, now))) return "order_rate_limit";
    }
    if (unknownOrders > 0 && !(await state.chargeCalls(row.id, account.tier, unknownOrders, now)))
      return "rate_limit";
    return null;
  },

  movements: (operation, params) => movementsOf(operation.name, params),
  describe: (operation, params) => describeRequest(operation.name, params),

  refusal(reason, context) {
    const held = context.approval
      ? { approval_id: context.approval.id, expires_at: context.approval.expiresAt }
      : {};
    return krakenAnswer(krakenErrors[reason], held);
  },
};
