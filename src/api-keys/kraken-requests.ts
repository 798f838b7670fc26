import type { Product } from "../capabilities/policy.js";
import { type Params, type ParamValue, text } from "./request-body.js";

/**
 * What Kraken's private methods mean, read from the one parse of a request: which fields a money-moving
 * method may carry, which product it uses, which assets it moves and how much, and how the owner is
 * shown it. The gateway's checks, approvals and summaries all read these functions, never the body.
 */

/** An exact decimal as digits and scale: amounts must not drift through floating point. */
export interface Exact {
  digits: bigint;
  scale: number;
}

const DECIMAL = /^(\d{1,20})(?:\.(\d{1,18}))?$/;

export function parseDecimal(value: string): Exact | null {
  const match = DECIMAL.exec(value);
  if (!match) return null;
  const fraction = match[2] ?? "";
  return { digits: BigInt(match[1]! + fraction), scale: fraction.length };
}

const align = (a: Exact, scale: number) => a.digits * 10n ** BigInt(scale - a.scale);
export const times = (a: Exact, b: Exact): Exact => ({
  digits: a.digits * b.digits,
  scale: a.scale + b.scale,
});
export const plus = (a: Exact, b: Exact): Exact => {
  const scale = Math.max(a.scale, b.scale);
  return { digits: align(a, scale) + align(b, scale), scale };
};
export const exceeds = (a: Exact, b: Exact): boolean => {
  const scale = Math.max(a.scale, b.scale);
  return align(a, scale) > align(b, scale);
};
export const showDecimal = (a: Exact): string => {
  const digits = a.digits.toString().padStart(a.scale + 1, "0");
  const whole = digits.slice(0, digits.length - a.scale);
  const fraction = digits.slice(digits.length - a.scale).replace(/0+$/, "");
  return fraction ? `${whole}.${fraction}` : whole;
};

/** Kraken's legacy asset codes and their usual names: a threshold on "BTC" also covers "XXBT" and "XBT". */
const assetAliases: Record<string, string> = {
  XBT: "BTC",
  XXBT: "BTC",
  XETH: "ETH",
  XXDG: "DOGE",
  XDG: "DOGE",
  XLTC: "LTC",
  XXRP: "XRP",
  XXLM: "XLM",
  XETC: "ETC",
  XXMR: "XMR",
  XZEC: "ZEC",
  XMLN: "MLN",
  XREP: "REP",
  ZUSD: "USD",
  ZEUR: "EUR",
  ZGBP: "GBP",
  ZCAD: "CAD",
  ZJPY: "JPY",
  ZCHF: "CHF",
  ZAUD: "AUD",
};

export const ASSET_CODE = /^[A-Z0-9]{2,12}$/;

/** An asset code as thresholds name it: upper case, Kraken's legacy names mapped (XXBT → BTC). */
export function normaliseAsset(code: string): string {
  const upper = code.toUpperCase();
  return assetAliases[upper] ?? upper;
}

/** Quote assets Kraken lists pairs against, longest first so "USDT" wins over "USD". */
const quotes = [
  "PYUSD",
  "USDT",
  "USDC",
  "ZUSD",
  "ZEUR",
  "ZGBP",
  "ZCAD",
  "ZJPY",
  "ZCHF",
  "ZAUD",
  "XXBT",
  "XETH",
  "USD",
  "EUR",
  "GBP",
  "CAD",
  "JPY",
  "CHF",
  "AUD",
  "XBT",
  "BTC",
  "ETH",
  "DAI",
  "DOT",
  "POL",
];

/** A pair's base and quote assets ("XBTUSD", "XXBTZUSD", "BTC/USD"); null when it cannot be told. */
export function splitPair(pair: string): { base: string; quote: string } | null {
  const upper = pair.toUpperCase();
  if (upper.includes("/")) {
    const [base, quote, extra] = upper.split("/");
    if (extra !== undefined || !base || !quote || !ASSET_CODE.test(base) || !ASSET_CODE.test(quote))
      return null;
    return { base: normaliseAsset(base), quote: normaliseAsset(quote) };
  }
  if (!/^[A-Z0-9]{4,20}$/.test(upper)) return null;
  for (const quote of quotes) {
    if (!upper.endsWith(quote)) continue;
    const base = upper.slice(0, -quote.length);
    if (base.length >= 2) return { base: normaliseAsset(base), quote: normaliseAsset(quote) };
  }
  return null;
}

/** Kraken's order fields, as its documentation and clients (ccxt) send them. */
const orderFields = [
  "userref",
  "cl_ord_id",
  "ordertype",
  "type",
  "volume",
  "displayvol",
  "price",
  "price2",
  "trigger",
  "leverage",
  "reduce_only",
  "stptype",
  "oflags",
  "timeinforce",
  "starttm",
  "expiretm",
  "close",
];
const closeFields = ["ordertype", "price", "price2"];
const gatewayFields = ["nonce", "otp", "approval_id"];

/**
 * The fields each money-moving method may carry. Anything else is refused: a field the gateway does not
 * understand could change what the venue does with the money.
 */
export const moneyMovingFields: Record<string, string[]> = {
  AddOrder: [...orderFields, "pair", "asset_class", "deadline", "validate", "trading_agreement"],
  AddOrderBatch: ["orders", "pair", "asset_class", "deadline", "validate"],
  EditOrder: [
    "txid",
    "userref",
    "volume",
    "displayvol",
    "pair",
    "asset_class",
    "price",
    "price2",
    "oflags",
    "deadline",
    "cancel_response",
    "validate",
  ],
  AmendOrder: [
    "txid",
    "cl_ord_id",
    "order_qty",
    "display_qty",
    "limit_price",
    "trigger_price",
    "post_only",
    "deadline",
  ],
  Withdraw: ["asset", "aclass", "key", "address", "amount", "max_fee"],
  WalletTransfer: ["asset", "from", "to", "amount"],
};

const isScalar = (value: ParamValue | undefined) => value !== undefined && text(value) !== null;

function scalarFieldsOnly(object: Params, allowed: string[], where: string): string | null {
  for (const [name, value] of Object.entries(object)) {
    if (!allowed.includes(name)) return `${where}${name}`;
    if (name === "close") {
      if (typeof value !== "object" || Array.isArray(value)) return `${where}close`;
      const bad = scalarFieldsOnly(value, closeFields, `${where}close.`);
      if (bad) return bad;
    } else if (name !== "orders" && !isScalar(value)) {
      return `${where}${name}`;
    }
  }
  return null;
}

/** The orders of a batch, each an object; null when `orders` is not a list of objects. */
export function batchOrders(params: Params): Params[] | null {
  const orders = params.orders;
  if (!Array.isArray(orders) || orders.length === 0) return null;
  if (!orders.every((order) => typeof order === "object" && order !== null && !Array.isArray(order)))
    return null;
  return orders as Params[];
}

/** Kraken's order flags (AddOrder's `oflags`): post-only, fee in base or quote, no market price protection, volume in quote. */
const ORDER_FLAGS = ["post", "fcib", "fciq", "nompp", "viqc"] as const;
export type OrderFlag = (typeof ORDER_FLAGS)[number];
const isOrderFlag = (flag: string): flag is OrderFlag => (ORDER_FLAGS as readonly string[]).includes(flag);

/**
 * An order's `oflags`, read once for every check (post-only markets, approvals): the set of its flags,
 * empty when it has none; null when the value is not exactly a comma-separated list of Kraken's flags, in
 * lower case, without spaces, each at most once. Such a value is refused (`unknownField`), so no reader
 * can find a flag that another reader, or the venue, does not.
 */
export function orderFlags(order: Params): ReadonlySet<OrderFlag> | null {
  if (order.oflags === undefined) return new Set();
  const raw = text(order.oflags);
  if (raw === null) return null;
  const flags = raw.split(",");
  const set = new Set(flags);
  return set.size === flags.length && flags.every(isOrderFlag) ? (set as Set<OrderFlag>) : null;
}

/**
 * Kraken's `asset_class` values for AddOrder and AddOrderBatch: only `tokenized_asset`, which its spot
 * API requires for pairs that are not crypto (xStocks). Absent, the pair is crypto.
 */
const TOKENIZED_ASSET = "tokenized_asset";
const isTokenized = (params: Params) => text(params.asset_class) === TOKENIZED_ASSET;

/**
 * The first field of one object (a request or a batch's order) whose value the gateway does not read.
 * `viqc` (volume in quote currency) is one on any order but a market order: Kraken documents it as not
 * available for limit orders, so what a limit order with it moves is not what the flag would say. An
 * order whose type is not sent (EditOrder) is not known to be a market order.
 */
function unreadableValue(object: Params, where: string): string | null {
  const flags = orderFlags(object);
  if (flags === null) return `${where}oflags`;
  if (flags.has("viqc") && text(object.ordertype) !== "market") return `${where}oflags`;
  if (object.asset_class !== undefined && !isTokenized(object)) return `${where}asset_class`;
  return null;
}

/**
 * The first field a money-moving request may not carry, or whose value the gateway cannot read as Kraken
 * does (`oflags`, `asset_class`), or null when every field is known. Methods that move no money are
 * forwarded as parsed (the venue answers unknown fields of a read itself), except for an `approval_id`
 * that is not text, refused on every method as in every dialect. A leveraged order of tokenized
 * assets would need two products at once (margin and stocks), which one capability check cannot decide:
 * it is refused.
 */
export function unknownField(method: string, params: Params): string | null {
  // The gateway's approval id, on any method: text, or no id at all (a JSON number or object is refused).
  if (params.approval_id !== undefined && typeof params.approval_id !== "string") return "approval_id";
  const allowed = moneyMovingFields[method];
  if (!allowed) return null;
  const top = scalarFieldsOnly(params, [...allowed, ...gatewayFields], "") ?? unreadableValue(params, "");
  if (top) return top;
  if (method === "AddOrderBatch") {
    const orders = batchOrders(params);
    if (!orders) return "orders";
    for (const [index, order] of orders.entries()) {
      const where = `orders[${index}].`;
      const bad = scalarFieldsOnly(order, orderFields, where) ?? unreadableValue(order, where);
      if (bad) return bad;
    }
  }
  if (isTokenized(params) && enteredOrders(method, params).some(hasLeverage)) return "leverage";
  return null;
}

const hasLeverage = (order: Params) => {
  const leverage = text(order.leverage);
  return leverage !== null && leverage !== "" && leverage.toLowerCase() !== "none";
};

export const orderEntryMethods = ["AddOrder", "AddOrderBatch", "EditOrder", "AmendOrder"];
export const cancelMethods = ["CancelOrder", "CancelAll", "CancelAllOrdersAfter", "CancelOrderBatch"];

/** The orders a request enters: one for most methods, each of a batch's. */
export function enteredOrders(method: string, params: Params): Params[] {
  if (method === "AddOrderBatch") return batchOrders(params) ?? [];
  return orderEntryMethods.includes(method) ? [params] : [];
}

/**
 * Which product a request uses, beside the API itself: what the capability function must allow. An order
 * of tokenized assets (`asset_class=tokenized_asset`) is stocks; otherwise any leveraged order makes the
 * whole request margin, wherever in a batch it stands.
 */
export function productOf(method: string, params: Params): Product | null {
  // Kraken's tokenized assets (xStocks) are the policy's stocks, whatever else the order says: the
  // jurisdiction and tier rules of stocks apply to them, not those of crypto spot.
  if (orderEntryMethods.includes(method) && isTokenized(params)) return "stocks";
  if (orderEntryMethods.includes(method) || cancelMethods.includes(method)) {
    return enteredOrders(method, params).some(hasLeverage) ? "margin" : "spot";
  }
  if (["Withdraw", "WalletTransfer"].includes(method)) return "withdraw.crypto";
  if (method.startsWith("Deposit")) return "deposit.crypto";
  if (method === "Stake" || method === "Unstake" || method.startsWith("Earn/")) return "staking";
  return null;
}

/** Whether every order a request enters is post-only, as a market in post_only mode requires. */
export function allPostOnly(method: string, params: Params): boolean {
  return enteredOrders(method, params).every((order) => {
    if (method === "AmendOrder") return text(order.post_only) === "true";
    return orderFlags(order)?.has("post") ?? false;
  });
}

/** Amounts per asset; an asset whose amount cannot be known is "unknown" (held when it has a threshold). */
export type Movements = Map<string, Exact | "unknown">;

function add(movements: Movements, asset: string, amount: Exact | "unknown"): void {
  const current = movements.get(asset);
  if (current === "unknown" || amount === "unknown") movements.set(asset, "unknown");
  else movements.set(asset, current ? plus(current, amount) : amount);
}

const decimalField = (value: ParamValue | undefined) => {
  const raw = text(value);
  return raw === null ? null : parseDecimal(raw);
};

/** Marks every asset of the key's thresholds unknown: the request moves something that cannot be told. */
const UNKNOWN_ASSET = "*";

/**
 * Kraken's order types (AddOrder's `ordertype`, and `close[ordertype]`), each with the field holding the
 * limit price a buy of it never pays more than; null when no price the client gives bounds what it pays:
 * market orders and those that become market orders when triggered (their `price` is the trigger, not a
 * limit), `trailing-stop-limit` (its `price2` is an offset from a trigger that follows the market) and
 * `settle-position`. Kraken puts the limit of `limit` and `iceberg` in `price`, and of `stop-loss-limit`
 * and `take-profit-limit` in `price2` (`price` is their trigger). A type not listed is bounded by nothing.
 */
const buyLimitField: Record<string, "price" | "price2" | null> = {
  limit: "price",
  iceberg: "price",
  "stop-loss-limit": "price2",
  "take-profit-limit": "price2",
  "trailing-stop-limit": null,
  market: null,
  "stop-loss": null,
  "take-profit": null,
  "trailing-stop": null,
  "settle-position": null,
};

/**
 * An order's volume; null when it is not an amount: not an unsigned decimal, or zero, which Kraken reads
 * as "the whole position" when closing margin positions.
 */
function orderVolume(value: ParamValue | undefined): Exact | null {
  const volume = decimalField(value);
  return volume === null || volume.digits === 0n ? null : volume;
}

/**
 * What a buy of `volume` spends of the quote asset, by its type: volume × the limit price Kraken reads
 * for that type, when it is an absolute price; unknown otherwise (relative prices such as +1, -2% or #5
 * are not amounts).
 */
function buyCost(leg: Params, volume: Exact | null): Exact | "unknown" {
  const ordertype = text(leg.ordertype);
  const field =
    ordertype !== null && Object.hasOwn(buyLimitField, ordertype) ? buyLimitField[ordertype] : null;
  if (!field || volume === null) return "unknown";
  const limit = decimalField(leg[field]);
  return limit === null ? "unknown" : times(volume, limit);
}

/**
 * What one order moves. Its volume of the base asset whatever its type (a market buy with a dummy price,
 * a stop whose trigger is tiny, a sell far below the market all move that volume); a buy also moves
 * volume × its limit price of the quote asset, and an amount that cannot be known when nothing the
 * client gives bounds its price (see `buyLimitField`); with `viqc` the volume is of the quote asset and the
 * base amount is unknown. A conditional close (`close[…]`) trades the order's volume back: when the order
 * is not a buy, the close buys, and moves the quote asset as a buy of its own type would. A side that is
 * not stated counts as a buy.
 */
function orderMovements(order: Params, pair: string | null, movements: Movements): void {
  const assets = pair === null ? null : splitPair(pair);
  const flags = orderFlags(order);
  if (!assets || flags === null) {
    movements.set(UNKNOWN_ASSET, "unknown");
    return;
  }
  const volume = orderVolume(order.volume);
  const buys = text(order.type) !== "sell";
  if (flags.has("viqc")) {
    add(movements, assets.quote, volume ?? "unknown");
    add(movements, assets.base, "unknown");
  } else {
    add(movements, assets.base, volume ?? "unknown");
    if (buys) add(movements, assets.quote, buyCost(order, volume));
  }
  const close = order.close;
  if (close === undefined || text(order.type) === "buy") return;
  if (typeof close !== "object" || Array.isArray(close)) {
    movements.set(UNKNOWN_ASSET, "unknown");
    return;
  }
  add(movements, assets.quote, flags.has("viqc") ? "unknown" : buyCost(close, volume));
}

/**
 * The assets a request moves and how much of each, for the key's approval thresholds; null for methods
 * that move nothing. A batch adds up per asset across its orders. `EditOrder` and `AmendOrder` name an
 * order the venue already holds: its pair as sent need not be the order's (nothing here compares them
 * with the pair the order was placed on), and its type, which says whether `price` is a limit or a
 * trigger, is not sent at all. What they move cannot be told here: every asset with a threshold is held.
 */
export function movementsOf(method: string, params: Params): Movements | null {
  const movements: Movements = new Map();
  switch (method) {
    case "AddOrder":
      orderMovements(params, text(params.pair), movements);
      return movements;
    case "AddOrderBatch": {
      const orders = batchOrders(params) ?? [];
      for (const order of orders) orderMovements(order, text(params.pair), movements);
      if (orders.length === 0) movements.set(UNKNOWN_ASSET, "unknown");
      return movements;
    }
    case "EditOrder":
    case "AmendOrder":
      movements.set(UNKNOWN_ASSET, "unknown");
      return movements;
    case "Withdraw":
    case "WalletTransfer": {
      const asset = text(params.asset);
      if (asset === null || !ASSET_CODE.test(asset.toUpperCase())) movements.set(UNKNOWN_ASSET, "unknown");
      else add(movements, normaliseAsset(asset), decimalField(params.amount) ?? "unknown");
      return movements;
    }
    default:
      return null;
  }
}

export type Thresholds = Record<string, string>;

/** The assets whose threshold a request passes (or may pass: its amount is unknown), in a stable order. */
export function assetsOverThreshold(movements: Movements, thresholds: Thresholds): string[] {
  const limited = Object.keys(thresholds);
  if (limited.length === 0) return [];
  if (movements.has(UNKNOWN_ASSET)) return limited.sort();
  const over: string[] = [];
  for (const [asset, amount] of movements) {
    const limit = thresholds[asset];
    if (limit === undefined) continue;
    const threshold = parseDecimal(limit);
    if (amount === "unknown" || !threshold || exceeds(amount, threshold)) over.push(asset);
  }
  return over.sort();
}

/** A parameter as the owner reads it: text as is when plain, otherwise quoted with escapes shown. */
function shown(value: ParamValue): string {
  const raw = text(value);
  if (raw !== null && /^[\w .:/,+#%@-]*$/.test(raw) && raw.length > 0) return raw;
  return JSON.stringify(value);
}

const semanticOrder = [
  "type",
  "ordertype",
  "volume",
  "order_qty",
  "price",
  "price2",
  "limit_price",
  "trigger",
  "trigger_price",
  "leverage",
  "oflags",
];
const labels: Record<string, string> = {
  pair: "pair",
  type: "side",
  ordertype: "type",
  volume: "volume",
  order_qty: "quantity",
  price: "price",
  price2: "second price",
  limit_price: "limit price",
  trigger: "trigger",
  trigger_price: "trigger price",
  leverage: "leverage",
  oflags: "flags",
  asset: "asset",
  amount: "amount",
  key: "destination",
  address: "address",
  to: "to wallet",
  from: "from wallet",
  txid: "order",
};

function describeOrder(order: Params): string[] {
  const lines: string[] = [];
  for (const field of semanticOrder) {
    const value = order[field];
    if (value !== undefined) lines.push(`${labels[field]} ${shown(value)}`);
  }
  for (const [field, value] of Object.entries(order)) {
    if (semanticOrder.includes(field) || field === "pair") continue;
    if (field === "close" && typeof value === "object" && !Array.isArray(value)) {
      lines.push(
        `close order ${Object.entries(value)
          .map(([k, v]) => `${k} ${shown(v)}`)
          .join(", ")}`,
      );
    } else {
      lines.push(`${field} ${shown(value)}`);
    }
  }
  return lines;
}

/**
 * The owner's summary of a held request: the semantic fields first (pair, side, type, volume, price,
 * leverage, asset, amount, destination), then every other field, escaped. Never cut short: what is
 * approved is what is read.
 */
export function describeRequest(method: string, params: Params): string {
  const { nonce: _n, otp: _o, approval_id: _a, ...fields } = params;
  const parts: string[] = [];
  if (fields.pair !== undefined) parts.push(`pair ${shown(fields.pair)}`);
  if (method === "AddOrderBatch") {
    const { orders, pair: _p, ...rest } = fields;
    (batchOrders(fields) ?? []).forEach((order, index) => {
      parts.push(`order ${index + 1}: ${describeOrder(order).join(", ")}`);
    });
    if (!Array.isArray(orders)) parts.push(`orders ${shown(orders ?? "")}`);
    parts.push(...describeOrder(rest));
  } else if (method === "Withdraw" || method === "WalletTransfer") {
    for (const field of ["asset", "amount", "key", "address", "from", "to"]) {
      if (fields[field] !== undefined) parts.push(`${labels[field]} ${shown(fields[field])}`);
    }
    for (const [field, value] of Object.entries(fields)) {
      if (!["asset", "amount", "key", "address", "from", "to"].includes(field))
        parts.push(`${field} ${shown(value)}`);
    }
  } else {
    const { pair: _p, ...rest } = fields;
    parts.push(...describeOrder(rest));
  }
  return `${method}: ${parts.join("; ")}`;
}
