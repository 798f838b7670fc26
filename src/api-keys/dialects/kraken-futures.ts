import { createHash } from "node:crypto";
import { describeRequest, type Movements } from "../kraken-requests.js";
import { BodyError, parseBody } from "../request-body.js";
import type { Dialect, Refusal } from "./dialect.js";
import {
  emptyBody,
  hmac,
  operationTable,
  orderMovements,
  type PathOperation,
  parseQuery,
  sameBase64,
  transferMovements,
  unknownFieldOf,
} from "./path-dialect.js";

/** Kraken Futures' access levels, each including the ones before it. */
export const krakenFuturesPermissions = ["read", "full", "withdrawal"] as const;

const PREFIX = "/derivatives";
const FORM = "application/x-www-form-urlencoded";

/**
 * Without a Nonce nothing in a request binds it to a time, so its Authent is what is accepted once: a
 * read for 5 seconds (parallel or quick copies are refused, a poller every few seconds still works), a
 * request that changes anything for 24 hours (a bot repeating an identical order within a day sends a
 * Nonce or a distinct cliOrdId).
 */
export const NONCELESS_READ_WINDOW_MS = 5_000;
export const NONCELESS_WRITE_WINDOW_MS = 24 * 3_600_000;

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

const NONCE = /^\d{1,24}$/;

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
    if (nonce !== "" && !NONCE.test(nonce)) return "stale";
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
    if (nonce !== "") {
      const value = BigInt(nonce);
      if (value === 0n) return "stale";
      // Below what the key may still use, or the very nonce again (a copy sent in parallel).
      const claim = await state.claimNonce(row.id, value, row.nonce_window);
      return claim === "accepted" ? null : claim === "duplicate" ? "replay" : "stale";
    }
    const window = request.method === "GET" ? NONCELESS_READ_WINDOW_MS : NONCELESS_WRITE_WINDOW_MS;
    return (await state.claimSignature(row.id, request.headers.authent ?? "", now + window, now))
      ? null
      : "replay";
  },

  unknownField: (operation, params) => unknownFieldOf(operationOf(operation.name), params),
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
    if (entry.name === "POST /sendorder") {
      // Linear perpetuals (PF_) are sized in the base asset; any other contract's size is not an amount.
      const match = /^PF_([A-Z0-9]+?)(USD|EUR|GBP|USDT|USDC)$/.exec(
        String(params.symbol ?? "").toUpperCase(),
      );
      return orderMovements(
        match ? { base: match[1]!, quote: match[2]! } : null,
        typeof params.side === "string" ? params.side : null,
        params.size,
        params.orderType === "mkt" ? undefined : params.limitPrice,
        undefined,
      );
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
