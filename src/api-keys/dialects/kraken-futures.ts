import { createHash } from "node:crypto";
import { describeRequest, type Movements } from "../kraken-requests.js";
import { BodyError, type Params, parseBody, text } from "../request-body.js";
import type { Dialect, Refusal } from "./dialect.js";
import {
  type Amount,
  amountOf,
  emptyBody,
  hmac,
  operationTable,
  orderMovements,
  type PathOperation,
  parseQuery,
  sameBase64,
  spendOf,
  transferMovements,
  unknownFieldOf,
} from "./path-dialect.js";

/** Kraken Futures' access levels, each including the ones before it. */
export const krakenFuturesPermissions = ["read", "full", "withdrawal"] as const;

const PREFIX = "/derivatives";
const FORM = "application/x-www-form-urlencoded";

/**
 * Kraken Futures signs postData + Nonce + endpointPath joined with nothing between them, and not the
 * HTTP method. So one Authent also signs other requests: the parameters' last digits moved into the
 * Nonce header or the Nonce's first digits moved onto the last parameter (`limitPrice=64123` with Nonce
 * N signs the same text as `limitPrice=6412` with Nonce 3N, or as `limitPrice=64123N` without one), and
 * a GET's parameters sent as a PUT to the same path. Three rules make every such copy a replay:
 * - every Authent is accepted once for a day, whatever request carries it (`AUTHENT_WINDOW_MS`): a
 *   copy in any of those forms within the day is refused;
 * - a key's Nonces keep the number of digits of its first (a millisecond timestamp keeps 13 until the
 *   year 2286), so digits moved into or out of a Nonce never make one the key can use, however old;
 * - a key that has sent a Nonce sends one on every request, so a Nonce cannot be moved into the body.
 * A read without a Nonce is the one exception to the first rule, so that a poller can repeat an
 * identical read: it is accepted once in 5 seconds (`POLL_WINDOW_MS`), and its Authent is still
 * remembered for the day, so no write or Nonce request can carry it.
 */
export const POLL_WINDOW_MS = 5_000;
export const AUTHENT_WINDOW_MS = 24 * 3_600_000;

/** Kraken Futures' budget for the /derivatives endpoints: cost per key per 10 seconds. */
const BUDGET = { limit: 500, windowMs: 10_000 };

const orderFields = [
  "orderType",
  "symbol",
  "side",
  "size",
  "limitPrice",
  "stopPrice",
  "cliOrdId",
  "triggerSignal",
  "reduceOnly",
  "trailingStopMaxDeviation",
  "trailingStopDeviationUnit",
  "limitPriceOffsetValue",
  "limitPriceOffsetUnit",
  "processBefore",
  "approval_id",
];

const op = (
  httpMethod: string,
  endpoint: string,
  permission: string,
  kind: PathOperation["kind"],
  weight: number,
  fields?: readonly string[],
): PathOperation => ({
  name: `${httpMethod} ${endpoint}`,
  httpMethod,
  pattern: `${PREFIX}/api/v3${endpoint}`,
  permission,
  // Every futures request, read or write, is the futures product: a US account is refused whatever its keys.
  product: "futures",
  kind,
  weight,
  pool: "derivatives",
  ...(fields ? { fields } : {}),
});

/** Kraken Futures' private endpoints, from its documentation: access level and cost of each. */
const operations: PathOperation[] = [
  op("GET", "/accounts", "read", "read", 2),
  op("GET", "/openpositions", "read", "read", 2),
  op("GET", "/openorders", "read", "read", 2),
  op("GET", "/fills", "read", "read", 2),
  op("POST", "/orders/status", "read", "read", 1),
  op("GET", "/notifications", "read", "read", 2),
  op("GET", "/leveragepreferences", "read", "read", 2),
  op("GET", "/pnlpreferences", "read", "read", 2),
  op("GET", "/initialmargin", "read", "read", 2),
  op("GET", "/unwindqueue", "read", "read", 2),
  op("POST", "/sendorder", "full", "order", 10, orderFields),
  op("POST", "/editorder", "full", "order", 10),
  op("POST", "/batchorder", "full", "order", 15),
  op("POST", "/cancelorder", "full", "cancel", 10),
  op("POST", "/cancelallorders", "full", "cancel", 25),
  op("POST", "/cancelallordersafter", "full", "cancel", 25),
  op("PUT", "/leveragepreferences", "full", "read", 10),
  op("PUT", "/pnlpreferences", "full", "read", 10),
  op("POST", "/transfer", "full", "transfer", 10, [
    "fromAccount",
    "toAccount",
    "unit",
    "amount",
    "approval_id",
  ]),
  op("POST", "/withdrawal", "withdrawal", "transfer", 10, [
    "currency",
    "amount",
    "sourceWallet",
    "approval_id",
  ]),
];
const find = operationTable(operations);
const byName = new Map(operations.map((operation) => [operation.name, operation]));
const operationOf = (name: string) => byName.get(name)!;

const publicPaths = [
  /^\/derivatives\/api\/v3\/instruments$/,
  /^\/derivatives\/api\/v3\/instruments\/status$/,
  /^\/derivatives\/api\/v3\/tickers$/,
  /^\/derivatives\/api\/v3\/tickers\/[A-Za-z0-9_]{1,32}$/,
  /^\/derivatives\/api\/v3\/orderbook$/,
  /^\/derivatives\/api\/v3\/history$/,
];
export const krakenFuturesPublic = (path: string) => publicPaths.some((pattern) => pattern.test(path));

/** Kraken Futures' answer for each refusal: its error string and HTTP status. */
const futuresErrors: Record<Refusal, [string, number]> = {
  unknown_method: ["notFound", 404],
  missing_credentials: ["authenticationError", 401],
  invalid_key: ["authenticationError", 401],
  key_version: ["authenticationError", 401],
  invalid_passphrase: ["authenticationError", 401],
  invalid_signature: ["authenticationError", 401],
  stale: ["nonceBelowThreshold", 401],
  replay: ["nonceDuplicate", 401],
  lockout: ["apiLimitExceeded", 429],
  ip: ["permissionDenied", 403],
  permission: ["permissionDenied", 403],
  invalid_arguments: ["invalidArgument", 400],
  approval_required: ["approvalRequired", 403],
  account_restricted: ["accountInactive", 403],
  product_refused: ["accountNotEligible", 403],
  cancel_only: ["marketUnavailable", 403],
  post_only: ["marketUnavailable", 403],
  unavailable: ["unavailable", 503],
  rate_limit: ["apiLimitExceeded", 429],
  order_rate_limit: ["apiLimitExceeded", 429],
};

/** The encoded parameters exactly as sent: the body, or (as ccxt sends them) a POST's query string. */
function postDataOf(request: { query: string; body: string }): { postData: string; inQuery: boolean } {
  if (request.query !== "" && request.body !== "") throw new BodyError("parameters in both query and body");
  return request.query !== ""
    ? { postData: request.query, inQuery: true }
    : { postData: request.body, inQuery: false };
}

/** A Nonce: an unsigned 64-bit integer written without leading zeros (its digits are counted). */
const NONCE = /^[1-9]\d{0,19}$/;
const U64_MAX = 2n ** 64n - 1n;
const validNonce = (nonce: string) => NONCE.test(nonce) && BigInt(nonce) <= U64_MAX;

/**
 * Kraken Futures: `APIKey`, `Authent` = base64(HMAC-SHA512(base64-decoded secret, SHA-256(postData +
 * Nonce + endpointPath))) with endpointPath the path without /derivatives; an optional `Nonce` header,
 * claimed above the key's floor; access levels read, full and withdrawal.
 */
export const krakenFutures: Dialect = {
  name: "kraken_futures",
  permissions: krakenFuturesPermissions,
  allowlistRequired: ["withdrawal"],
  grants: (keyPermissions, needed) => {
    const levels: readonly string[] = krakenFuturesPermissions;
    return keyPermissions.some((held) => levels.indexOf(held) >= levels.indexOf(needed));
  },
  keyOtp: false,

  operation: (request) =>
    request.path.includes("//") || request.path.includes("..") ? null : find(request.method, request.path),
  apiKey: (request) => request.headers.apikey,
  credentialsPresent: (request) =>
    (request.headers.apikey ?? "") !== "" && (request.headers.authent ?? "") !== "",

  parse(request) {
    if (request.method === "GET" && request.body !== "") throw new BodyError("a GET with a body");
    const { postData, inQuery } = postDataOf(request);
    if (inQuery) {
      const query = parseQuery(postData);
      return { params: query.params, body: emptyBody, query: query.canonical };
    }
    const body =
      postData === ""
        ? { ...emptyBody, kind: "form" as const, contentType: FORM }
        : parseBody(FORM, postData);
    return { params: body.params, body, query: "" };
  },

  authenticate(request, _parsed, secrets) {
    const nonce = request.headers.nonce ?? "";
    if (nonce !== "" && !validNonce(nonce)) return "stale";
    const { postData } = postDataOf(request);
    const endpointPath = request.path.slice(PREFIX.length);
    const digest = createHash("sha256")
      .update(postData + nonce + endpointPath)
      .digest();
    return sameBase64(request.headers.authent, hmac("sha512", Buffer.from(secrets.secret, "base64"), digest))
      ? null
      : "invalid_signature";
  },

  async claim(state, row, request, _parsed, now) {
    const nonce = request.headers.nonce ?? "";
    const authent = request.headers.authent ?? "";
    if (nonce === "" && request.method === "GET") {
      if (!(await state.claimSignature(row.id, `${authent} poll`, now + POLL_WINDOW_MS, now)))
        return "replay";
      // Remembered for the day without being refused: the poller may repeat it, nothing else may carry it.
      await state.claimSignature(row.id, authent, now + AUTHENT_WINDOW_MS, now);
    } else if (!(await state.claimSignature(row.id, authent, now + AUTHENT_WINDOW_MS, now))) {
      return "replay";
    }
    // The highest nonce only ever rises and is read before the claim: the rules below can only be
    // stricter for it, except at a key's very first Nonce, which no copy can precede.
    const highest = await state.highestNonce(row.id);
    if (nonce === "") return highest === 0n ? null : "stale";
    if (highest !== 0n && nonce.length !== highest.toString().length) return "stale";
    // Below what the key may still use, or the very nonce again (a copy sent in parallel).
    const claim = await state.claimNonce(row.id, BigInt(nonce), row.nonce_window);
    return claim === "accepted" ? null : claim === "duplicate" ? "replay" : "stale";
  },

  permission: (operation) => operation.permission,
  unknownField(operation, params) {
    // An order type Kraken Futures does not document (or one spelt otherwise) could be read as any.
    if (operation.name === SEND_ORDER && !isOrderType(params.orderType)) return "orderType";
    return unknownFieldOf(operationOf(operation.name), params);
  },
  product: (operation) => operationOf(operation.name).product,

  intent(operation, params) {
    const entry = operationOf(operation.name);
    if (entry.kind === "cancel") return { kind: "cancel" };
    if (entry.kind === "order") return { kind: "order", postOnly: params.orderType === "post" };
    return null;
  },

  bound: (_row, _operation, parsed) => parsed,

  async charge({ state, row, operation, now }) {
    const entry = operationOf(operation.name);
    return (await state.chargeWeight(row.id, "kraken_futures", entry.weight, BUDGET, now))
      ? null
      : "rate_limit";
  },

  movements(operation, params): Movements | null {
    const entry = operationOf(operation.name);
    if (entry.name === SEND_ORDER) {
      // Linear perpetuals (PF_) are sized in the base asset; any other contract's size is not an amount.
      const match = /^PF_([A-Z0-9]+?)(USD|EUR|GBP|USDT|USDC)$/.exec(
        (text(params.symbol) ?? "").toUpperCase(),
      );
      const size = amountOf(params.size);
      return orderMovements(match ? { base: match[1]!, quote: match[2]! } : null, params.side, {
        base: size,
        quote: spendOf(size, buyLimit(params)),
      });
    }
    if (entry.kind === "order") return new Map([["*", "unknown"]]);
    if (entry.kind === "transfer") return transferMovements(params.currency ?? params.unit, params.amount);
    return null;
  },

  describe: (operation, params) => describeRequest(operation.name, params),

  refusal(reason, context) {
    const [error, status] = futuresErrors[reason];
    return {
      status,
      error,
      body: {
        result: "error",
        error,
        serverTime: new Date(context.now).toISOString(),
        ...(context.approval
          ? { approval_id: context.approval.id, expires_at: context.approval.expiresAt }
          : {}),
      },
    };
  },
};

const SEND_ORDER = "POST /sendorder";

/**
 * Kraken Futures' order types (sendorder's `orderType`), exactly as documented, each with whether
 * `limitPrice` bounds what a buy of it pays. `lmt`, `post` and `ioc` are limit orders at `limitPrice`.
 * For `stp` and `take_profit`, `limitPrice` "denotes the worst price at which the order can get filled";
 * without it they trigger a market order. `mkt` is a market order (its 1% price protection is from a price
 * the client does not give), `trailing_stop` takes no `limitPrice`, and `fok` is not documented to read
 * one as its limit: no price the client gives bounds them. Any other value is refused (`unknownField`).
 */
const readsLimitPrice: Record<string, boolean> = {
  lmt: true,
  post: true,
  ioc: true,
  stp: true,
  take_profit: true,
  mkt: false,
  trailing_stop: false,
  fok: false,
};
const isOrderType = (value: Params[string] | undefined): value is string =>
  typeof value === "string" && Object.hasOwn(readsLimitPrice, value);

/**
 * The price a buy of this order never pays more than: its `limitPrice` when its type reads that as its
 * limit; unknown otherwise, and when a trigger's limit is set relative to the trigger
 * (`limitPriceOffsetValue`), a price not known until it fires.
 */
function buyLimit(params: Params): Amount {
  if (!isOrderType(params.orderType) || !readsLimitPrice[params.orderType]) return "unknown";
  if (params.limitPriceOffsetValue !== undefined || params.limitPriceOffsetUnit !== undefined)
    return "unknown";
  return amountOf(params.limitPrice);
}
