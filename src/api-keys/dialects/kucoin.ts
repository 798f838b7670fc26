import { describeRequest } from "../kraken-requests.js";
import { BodyError, type Params, type ParamValue } from "../request-body.js";
import type { Dialect, GatewayRequest, ParsedRequest, Refusal } from "./dialect.js";
import {
  type Amount,
  amountOf,
  hmac,
  jsonBody,
  operationTable,
  orderMovements,
  type PathOperation,
  parsedRequest,
  sameBase64,
  spendOf,
  transferMovements,
  unknownFieldOf,
} from "./path-dialect.js";

/** KuCoin's key permissions, as KuCoin names them. */
export const kucoinPermissions = ["general", "spot", "margin", "inner_transfer", "withdrawal"] as const;

/** KuCoin accepts a request whose KC-API-TIMESTAMP is within 5 seconds of its clock. */
export const KUCOIN_WINDOW_MS = 5_000;

/**
 * KuCoin's per-key resource pools (VIP 0 quotas): weight per 30 seconds. Each operation is charged its
 * documented weight to its pool; the window opens with the first request after the last one closed.
 */
export const kucoinPools: Record<string, number> = { spot: 4000, management: 2000 };
const POOL_WINDOW_MS = 30_000;

const orderFields = [
  "clientOid",
  "side",
  "symbol",
  "type",
  "remark",
  "stp",
  "tradeType",
  "price",
  "size",
  "funds",
  "timeInForce",
  "cancelAfter",
  "postOnly",
  "hidden",
  "iceberg",
  "visibleSize",
  "tags",
  "allowMaxTimeWindow",
  "stop",
  "stopPrice",
  "approval_id",
];
const marginOrderFields = [...orderFields, "marginModel", "autoBorrow", "autoRepay", "isIsolated"];
const withdrawalFields = [
  "currency",
  "address",
  "toAddress",
  "amount",
  "memo",
  "isInner",
  "remark",
  "chain",
  "feeDeductType",
  "withdrawType",
  "approval_id",
];
const transferFields = ["clientOid", "currency", "from", "to", "amount", "fromTag", "toTag", "approval_id"];
/**
 * KuCoin's flex transfer (`/api/v3/accounts/universal-transfer`), as KuCoin documents it, between the
 * account's own accounts only (`type` INTERNAL, what ccxt sends): the inner_transfer permission is for
 * those, and a transfer to or from a sub-account's user moves money out of the account.
 */
const universalTransferFields = [
  "clientOid",
  "currency",
  "amount",
  "fromAccountType",
  "fromAccountTag",
  "type",
  "toAccountType",
  "toAccountTag",
  "approval_id",
];
/** KuCoin's margin borrowing and repaying (v3): the amount is `size`. */
const borrowFields = ["currency", "size", "timeInForce", "symbol", "isIsolated", "isHf", "approval_id"];
const repayFields = ["currency", "size", "symbol", "isIsolated", "isHf", "approval_id"];

const read = (pattern: string, weight: number, pool = "management", method = "GET"): PathOperation => ({
  name: `${method} ${pattern}`,
  httpMethod: method,
  pattern,
  permission: "general",
  product: null,
  kind: "read",
  weight,
  pool,
});
const act = (
  method: string,
  pattern: string,
  permission: string,
  kind: PathOperation["kind"],
  product: PathOperation["product"],
  weight: number,
  pool: string,
  fields?: readonly string[],
  amountField?: string,
): PathOperation => ({
  name: `${method} ${pattern}`,
  httpMethod: method,
  pattern,
  permission,
  product,
  kind,
  weight,
  pool,
  ...(fields ? { fields } : {}),
  ...(amountField ? { amountField } : {}),
});

/**
 * KuCoin's private spot and margin API, from KuCoin's documentation: which permission each path needs
 * (accounts and every read → general; spot orders → spot, or margin when their tradeType is margin's;
 * margin orders, borrowing and repaying → margin; transfers between one's own accounts →
 * inner_transfer; withdrawals → withdrawal), its weight and pool, and for a transfer the field that
 * carries its amount. A path not listed is refused: new upstream paths are opened deliberately.
 */
const operations: PathOperation[] = [
  read("/api/v1/accounts", 5),
  // ccxt asks this (the unified account's mode) before anything else once it holds a key.
  read("/api/ua/v1/account/mode", 2),
  read("/api/v1/accounts/{accountId}", 5),
  read("/api/v1/accounts/ledgers", 2),
  read("/api/v1/hf/accounts/ledgers", 2, "spot"),
  read("/api/v1/hf/accounts/opened", 2),
  read("/api/v2/user-info", 20),
  read("/api/v1/user/api-key", 20),
  read("/api/v1/user-info", 20),
  read("/api/v1/base-fee", 3, "spot"),
  read("/api/v1/trade-fees", 3, "spot"),
  read("/api/v1/orders", 2, "spot"),
  read("/api/v1/orders/{orderId}", 2, "spot"),
  read("/api/v1/order/client-order/{clientOid}", 3, "spot"),
  read("/api/v1/limit/orders", 3, "spot"),
  read("/api/v1/fills", 10, "spot"),
  read("/api/v1/limit/fills", 20, "spot"),
  read("/api/v1/hf/orders/active", 2, "spot"),
  read("/api/v1/hf/orders/active/symbols", 2, "spot"),
  read("/api/v1/hf/orders/done", 2, "spot"),
  read("/api/v1/hf/orders/{orderId}", 2, "spot"),
  read("/api/v1/hf/orders/client-order/{clientOid}", 2, "spot"),
  read("/api/v1/hf/fills", 2, "spot"),
  read("/api/v1/stop-order", 8, "spot"),
  read("/api/v1/stop-order/{orderId}", 3, "spot"),
  read("/api/v1/deposit-addresses", 5),
  read("/api/v2/deposit-addresses", 5),
  read("/api/v3/deposit-addresses", 5),
  read("/api/v1/deposits", 5),
  read("/api/v1/withdrawals", 20),
  read("/api/v1/withdrawals/quotas", 20),
  read("/api/v1/accounts/transferable", 20),
  read("/api/v1/margin/account", 40, "spot"),
  read("/api/v3/margin/accounts", 15, "spot"),
  read("/api/v3/margin/symbols", 3, "spot"),
  read("/api/v1/isolated/symbols", 3, "spot"),
  read("/api/v3/isolated/accounts", 15, "spot"),
  read("/api/v3/margin/borrow", 15, "spot"),
  read("/api/v3/margin/repay", 15, "spot"),
  read("/api/v3/hf/margin/orders/active", 4, "spot"),
  read("/api/v3/hf/margin/orders/done", 10, "spot"),
  read("/api/v3/hf/margin/orders/{orderId}", 4, "spot"),
  read("/api/v3/hf/margin/fills", 5, "spot"),
  act("POST", "/api/v1/orders", "spot", "order", "spot", 2, "spot", orderFields),
  act("POST", "/api/v1/orders/test", "spot", "order", "spot", 2, "spot", orderFields),
  act("POST", "/api/v1/hf/orders", "spot", "order", "spot", 1, "spot", orderFields),
  act("POST", "/api/v1/hf/orders/sync", "spot", "order", "spot", 1, "spot", orderFields),
  act("POST", "/api/v1/hf/orders/test", "spot", "order", "spot", 1, "spot", orderFields),
  act("POST", "/api/v1/stop-order", "spot", "order", "spot", 2, "spot", orderFields),
  act("DELETE", "/api/v1/orders/{orderId}", "spot", "cancel", "spot", 3, "spot"),
  act("DELETE", "/api/v1/order/client-order/{clientOid}", "spot", "cancel", "spot", 5, "spot"),
  act("DELETE", "/api/v1/orders", "spot", "cancel", "spot", 20, "spot"),
  act("DELETE", "/api/v1/hf/orders/{orderId}", "spot", "cancel", "spot", 1, "spot"),
  act("DELETE", "/api/v1/hf/orders/sync/{orderId}", "spot", "cancel", "spot", 1, "spot"),
  act("DELETE", "/api/v1/hf/orders/client-order/{clientOid}", "spot", "cancel", "spot", 1, "spot"),
  act("DELETE", "/api/v1/hf/orders", "spot", "cancel", "spot", 2, "spot"),
  act("DELETE", "/api/v1/hf/orders/cancelAll", "spot", "cancel", "spot", 30, "spot"),
  act("DELETE", "/api/v1/stop-order/{orderId}", "spot", "cancel", "spot", 3, "spot"),
  act("POST", "/api/v1/margin/order", "margin", "order", "margin", 5, "spot", marginOrderFields),
  act("POST", "/api/v3/hf/margin/order", "margin", "order", "margin", 5, "spot", marginOrderFields),
  act("DELETE", "/api/v3/hf/margin/orders/{orderId}", "margin", "cancel", "margin", 5, "spot"),
  act("DELETE", "/api/v3/hf/margin/orders", "margin", "cancel", "margin", 10, "spot"),
  act("POST", "/api/v3/margin/borrow", "margin", "transfer", "margin", 15, "spot", borrowFields, "size"),
  act("POST", "/api/v3/margin/repay", "margin", "transfer", "margin", 10, "spot", repayFields, "size"),
  act(
    "POST",
    "/api/v2/accounts/inner-transfer",
    "inner_transfer",
    "transfer",
    null,
    10,
    "management",
    transferFields,
    "amount",
  ),
  act(
    "POST",
    "/api/v3/accounts/universal-transfer",
    "inner_transfer",
    "transfer",
    null,
    4,
    "management",
    universalTransferFields,
    "amount",
  ),
  act(
    "POST",
    "/api/v1/withdrawals",
    "withdrawal",
    "transfer",
    "withdraw.crypto",
    5,
    "management",
    withdrawalFields,
    "amount",
  ),
  act(
    "POST",
    "/api/v3/withdrawals",
    "withdrawal",
    "transfer",
    "withdraw.crypto",
    5,
    "management",
    withdrawalFields,
    "amount",
  ),
  act(
    "DELETE",
    "/api/v1/withdrawals/{withdrawalId}",
    "withdrawal",
    "cancel",
    "withdraw.crypto",
    20,
    "management",
  ),
];
const find = operationTable(operations);
const UNIVERSAL_TRANSFER = "POST /api/v3/accounts/universal-transfer";
const byName = new Map(operations.map((operation) => [operation.name, operation]));
const operationOf = (name: string) => byName.get(name)!;

/**
 * What a spot order or cancel trades on, by its `tradeType`: KuCoin's spot value (`TRADE`, or none) is
 * spot; `MARGIN_TRADE` (cross) and `MARGIN_ISOLATED_TRADE` are margin; any other value is none the
 * gateway knows, and refused (the venue might read it as margin).
 */
function marketOf(tradeType: ParamValue | undefined): "spot" | "margin" | "invalid" {
  if (tradeType === undefined || tradeType === "TRADE") return "spot";
  if (tradeType === "MARGIN_TRADE" || tradeType === "MARGIN_ISOLATED_TRADE") return "margin";
  return "invalid";
}

/**
 * The market a request trades on, read once for the permission the key needs and the product the
 * account may use, so the two can never disagree: the spot paths that also trade on margin (orders,
 * stop orders, cancels) by their tradeType, every other path by its table entry.
 */
function marketOfRequest(entry: PathOperation, params: Params): "spot" | "margin" | "invalid" | null {
  const spotTrading = entry.product === "spot" && (entry.kind === "order" || entry.kind === "cancel");
  return spotTrading ? marketOf(params.tradeType) : null;
}

/**
 * What a KuCoin order moves, read by its `type` as KuCoin reads it (spot, hf, stop and margin orders
 * alike), or the field that makes it unreadable. KuCoin's types are `limit` (the default when none is
 * sent) and `market`, exactly so spelt. A limit order is `size` at `price`: a buy spends at most size ×
 * price, and `funds`, which KuCoin reads for market orders only, is refused. A market order is `size` or
 * `funds` ("choose one"): its quote spend is `funds`, unknown when sized in the base asset; its base
 * amount is `size`, unknown when it spends funds; `price`, which KuCoin does not read for it, and both
 * amounts at once are refused. A stop order (`stop`, `stopPrice`) becomes an order of its type when
 * triggered, so the same rules hold: the trigger price is never an amount.
 */
function kucoinOrder(params: Params): { base: Amount; quote: Amount } | { refused: string } {
  const type = params.type ?? "limit";
  if (type === "limit") {
    if (params.funds !== undefined) return { refused: "funds" };
    const size = amountOf(params.size);
    return { base: size, quote: spendOf(size, amountOf(params.price)) };
  }
  if (type === "market") {
    if (params.price !== undefined) return { refused: "price" };
    if (params.size !== undefined && params.funds !== undefined) return { refused: "funds" };
    return { base: amountOf(params.size), quote: amountOf(params.funds) };
  }
  return { refused: "type" };
}

/**
 * KuCoin's parameters: a GET's in its query; a POST's or PUT's in its JSON body, which is all KuCoin reads
 * of them, so such a request with a query string is refused: the gateway would check a parameter the
 * venue does not act on (a `?postOnly=true` beside a body that is not post-only).
 */
function parseParameters(request: GatewayRequest): ParsedRequest {
  if (request.method === "GET" && request.body !== "") throw new BodyError("a GET with a body");
  if ((request.method === "POST" || request.method === "PUT") && request.query !== "")
    throw new BodyError(`a ${request.method} with a query string`);
  return parsedRequest(request.query, jsonBody(request));
}

/** KuCoin's public market data the venue answers, by path (GET only). */
const publicPaths = [
  /^\/api\/v1\/timestamp$/,
  /^\/api\/v1\/status$/,
  /^\/api\/v2\/symbols$/,
  /^\/api\/v1\/symbols$/,
  /^\/api\/v1\/currencies$/,
  /^\/api\/v3\/currencies$/,
  /^\/api\/v3\/currencies\/[A-Za-z0-9-]{1,20}$/,
  /^\/api\/v1\/prices$/,
  /^\/api\/v1\/market\/allTickers$/,
  /^\/api\/v1\/market\/stats$/,
  /^\/api\/v1\/market\/orderbook\/level1$/,
  /^\/api\/v1\/market\/orderbook\/level2_(20|100)$/,
  /^\/api\/v1\/market\/histories$/,
  /^\/api\/v1\/market\/candles$/,
  // KuCoin Futures' contract list, which ccxt's loadMarkets reads beside the spot symbols.
  /^\/api\/v1\/contracts\/active$/,
];
export const kucoinPublic = (path: string) => publicPaths.some((pattern) => pattern.test(path));

/** KuCoin's answer for each refusal: its code (a string), its message, and the HTTP status KuCoin uses. */
const kucoinErrors: Record<Refusal, [string, number, string]> = {
  unknown_method: ["404000", 404, "Url Not Found: this path is not open through this gateway."],
  missing_credentials: [
    "400001",
    401,
    "Please check the header of your request for KC-API-KEY, KC-API-SIGN, KC-API-TIMESTAMP and KC-API-PASSPHRASE.",
  ],
  invalid_key: ["400003", 401, "KC-API-KEY not exists."],
  key_version: [
    "400008",
    401,
    "This key version is not supported: sign KC-API-PASSPHRASE with the secret (version 2 or 3).",
  ],
  invalid_passphrase: ["400004", 401, "Invalid KC-API-PASSPHRASE."],
  invalid_signature: ["400005", 401, "Signature verification failed."],
  stale: ["400002", 401, "KC-API-TIMESTAMP Invalid: it must be within 5 seconds of the server's time."],
  replay: ["400005", 401, "Signature verification failed: this signature was already used."],
  lockout: ["429000", 429, "Too many failed requests from here: try again in 15 minutes."],
  ip: ["400006", 403, "The IP address is not in the key's allowlist."],
  permission: ["400007", 403, "Access denied: the key does not have the permission this request needs."],
  invalid_arguments: ["400100", 400, "Parameter error: the request's parameters could not be accepted."],
  approval_required: [
    "400007",
    403,
    "This request is above the key's approval threshold: the owner approves it in the portal, then send it again with approval_id.",
  ],
  account_restricted: ["411100", 403, "The account is frozen or restricted."],
  product_refused: [
    "400301",
    403,
    "This account may not use this product in its jurisdiction or at its verification tier.",
  ],
  cancel_only: ["400100", 400, "The market accepts only cancels right now."],
  post_only: ["400100", 400, "The market accepts only post-only limit orders right now."],
  unavailable: ["503000", 503, "The service is unavailable; try again shortly."],
  rate_limit: ["429000", 429, "Too many requests in the key's resource pool; try again shortly."],
  order_rate_limit: ["429000", 429, "Too many requests in the key's resource pool; try again shortly."],
};

/**
 * KuCoin spot and margin: `KC-API-KEY`, `KC-API-SIGN` = base64(HMAC-SHA256(secret, timestamp + METHOD
 * + path with its query as sent + body as sent)), `KC-API-TIMESTAMP` within 5 s, `KC-API-PASSPHRASE` =
 * base64(HMAC-SHA256(secret, passphrase)) with `KC-API-KEY-VERSION` 2 or 3; each signature accepted once.
 */
export const kucoin: Dialect = {
  name: "kucoin",
  permissions: kucoinPermissions,
  allowlistRequired: ["withdrawal"],
  grants: (keyPermissions, needed) => keyPermissions.includes(needed),
  keyOtp: false,

  // A path with an empty, "." or ".." segment or an encoded dot or slash names nothing (operationTable).
  operation: (request) => find(request.method, request.path),
  apiKey: (request) => request.headers["kc-api-key"],
  credentialsPresent: (request) =>
    ["kc-api-key", "kc-api-sign", "kc-api-timestamp", "kc-api-passphrase"].every(
      (name) => (request.headers[name] ?? "") !== "",
    ),

  parse: parseParameters,

  authenticate(request, _parsed, secrets, now) {
    const version = request.headers["kc-api-key-version"] ?? "1";
    if (version !== "2" && version !== "3") return "key_version";
    const timestamp = request.headers["kc-api-timestamp"] ?? "";
    if (!/^\d{13}$/.test(timestamp) || Math.abs(now - Number(timestamp)) > KUCOIN_WINDOW_MS) return "stale";
    if (
      secrets.passphrase === null ||
      !sameBase64(request.headers["kc-api-passphrase"], hmac("sha256", secrets.secret, secrets.passphrase))
    )
      return "invalid_passphrase";
    const target = request.query === "" ? request.path : `${request.path}?${request.query}`;
    const payload = timestamp + request.method + target + request.body;
    return sameBase64(request.headers["kc-api-sign"], hmac("sha256", secrets.secret, payload))
      ? null
      : "invalid_signature";
  },

  /** A signature is accepted once: kept until its timestamp leaves the window, when it is stale anyway. */
  async claim(state, row, request, _parsed, now) {
    const timestamp = Number(request.headers["kc-api-timestamp"]);
    const signature = request.headers["kc-api-sign"] ?? "";
    return (await state.claimSignature(row.id, signature, timestamp + KUCOIN_WINDOW_MS + 1, now))
      ? null
      : "replay";
  },

  // A spot order or cancel whose tradeType says margin needs the margin permission and is the margin
  // product; a tradeType the gateway does not know is refused as a field it does not know would be.
  permission(operation, params) {
    return marketOfRequest(operationOf(operation.name), params) === "margin"
      ? "margin"
      : operation.permission;
  },
  unknownField(operation, params) {
    const entry = operationOf(operation.name);
    if (marketOfRequest(entry, params) === "invalid") return "tradeType";
    if (entry.name === UNIVERSAL_TRANSFER && params.type !== "INTERNAL") return "type";
    if (entry.kind === "order") {
      const order = kucoinOrder(params);
      if ("refused" in order) return order.refused;
    }
    return unknownFieldOf(entry, params);
  },
  product(operation, params) {
    const entry = operationOf(operation.name);
    return marketOfRequest(entry, params) === "margin" ? "margin" : entry.product;
  },

  intent(operation, params) {
    const entry = operationOf(operation.name);
    if (entry.kind === "cancel" && entry.product !== "withdraw.crypto") return { kind: "cancel" };
    if (entry.kind === "order")
      return { kind: "order", postOnly: params.postOnly === true || params.postOnly === "true" };
    return null;
  },

  bound: (_row, _operation, parsed) => parsed,

  async charge({ state, row, operation, now }) {
    const entry = operationOf(operation.name);
    const limit = kucoinPools[entry.pool] ?? 2000;
    return (await state.chargeWeight(
      row.id,
      `kucoin:${entry.pool}`,
      entry.weight,
      { limit, windowMs: POOL_WINDOW_MS },
      now,
    ))
      ? null
      : "rate_limit";
  },

  movements(operation, params) {
    const entry = operationOf(operation.name);
    if (entry.kind === "order") {
      const [base, quote] = (typeof params.symbol === "string" ? params.symbol : "").toUpperCase().split("-");
      const order = kucoinOrder(params);
      // A refused order never gets here (unknownField); were it read anyway, nothing it moves is known.
      if ("refused" in order) return new Map([["*", "unknown"]]);
      return orderMovements(base && quote ? { base, quote } : null, params.side, order);
    }
    // Each transfer's amount is read from the one field the venue reads it from (borrowing: `size`).
    if (entry.kind === "transfer")
      return transferMovements(
        params.currency,
        entry.amountField === undefined ? undefined : params[entry.amountField],
      );
    return null;
  },

  describe: (operation, params) => describeRequest(operation.name, params),

  refusal(reason, context) {
    const [code, status, message] = kucoinErrors[reason];
    const msg = reason === "ip" ? `The IP address ${context.ip} is not in the key's allowlist.` : message;
    return {
      status,
      error: code,
      body: {
        code,
        msg,
        ...(context.approval
          ? { data: { approval_id: context.approval.id, expires_at: context.approval.expiresAt } }
          : {}),
      },
    };
  },
};
