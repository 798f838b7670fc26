import { createHmac, timingSafeEqual } from "node:crypto";
import type { Product } from "../../capabilities/policy.js";
import {
  ASSET_CODE,
  type Exact,
  type Movements,
  normaliseAsset,
  parseDecimal,
  plus,
  times,
} from "../kraken-requests.js";
import {
  BodyError,
  type Params,
  type ParsedBody,
  parseBody,
  text,
  withoutGatewayFields,
} from "../request-body.js";
import type { GatewayRequest, Operation, ParsedRequest } from "./dialect.js";

/**
 * What the path-based dialects (KuCoin, Kraken Futures) share: a table of private operations by HTTP
 * method and path pattern, a query parsed once, and the arithmetic of what an order or a transfer moves.
 */

/** One private operation: its method, path pattern ({name} is one path segment) and what it means. */
export interface PathOperation extends Operation {
  httpMethod: string;
  pattern: string;
  /** What the capability function decides beside the API: a product, or none for account reads. */
  product: Product | null;
  /** Orders and cancels, for the engine's modes; transfers and withdrawals move assets. */
  kind: "read" | "order" | "cancel" | "transfer";
  /** The fields a money-moving operation may carry (anything else is refused). */
  fields?: readonly string[];
  /** The field that carries a transfer's amount, as the venue names it (none: the amount is unknown). */
  amountField?: string;
  /** Rate-limit weight, and the pool it is charged to. */
  weight: number;
  pool: string;
}

const FORM = "application/x-www-form-urlencoded";
/** Names JavaScript gives a meaning to, refused in a query as in a body. */
const forbiddenNames = new Set(["__proto__", "constructor", "prototype"]);

const SEGMENT = "[A-Za-z0-9_.:-]{1,128}";

/**
 * A path the venue's server could resolve to another: an empty segment (`//`, a trailing `/`), a `.` or
 * `..` segment (URL resolution drops the one and climbs with the other, so `/api/v1/orders/.` reaches
 * `/api/v1/orders/`), a backslash (a slash to URL parsers), or a percent-encoded dot, slash or backslash
 * (`%2e`, `%2f`, `%5c`, any case), which a parser or server may decode into one of those. Such a path
 * names no operation, whatever the table's patterns would let through.
 */
export function ambiguousPath(path: string): boolean {
  if (!path.startsWith("/") || path.includes("\\") || /%(2e|2f|5c)/i.test(path)) return true;
  return path
    .slice(1)
    .split("/")
    .some((segment) => segment === "" || segment === "." || segment === "..");
}

export function operationTable(operations: PathOperation[]) {
  const compiled = operations.map((operation) => ({
    operation,
    regex: new RegExp(`^${operation.pattern.replace(/\{[a-zA-Z]+\}/g, SEGMENT)}$`),
  }));
  return (method: string, path: string): PathOperation | null =>
    ambiguousPath(path)
      ? null
      : (compiled.find((entry) => entry.operation.httpMethod === method && entry.regex.test(path))
          ?.operation ?? null);
}

/**
 * The query string parsed once: every name once, at most 32; re-serialised for the venue without the
 * gateway's own fields (`approval_id`, `otp`), which the checks read from `params` like any other.
 */
export function parseQuery(query: string): { params: Params; canonical: string } {
  const search = new URLSearchParams(query);
  const params: Params = {};
  let count = 0;
  for (const [name, value] of search) {
    if (++count > 32) throw new BodyError("too many query fields");
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name) || forbiddenNames.has(name) || Object.hasOwn(params, name))
      throw new BodyError(`query field "${name}"`);
    params[name] = value;
  }
  // A query is a form: the one function that takes the gateway's fields out of a body does it here too.
  const forwarded = withoutGatewayFields({
    kind: "form",
    params,
    canonical: search.toString(),
    contentType: FORM,
  });
  return { params, canonical: forwarded.canonical };
}

export const emptyBody: ParsedBody = {
  kind: "json",
  params: {},
  canonical: "",
  contentType: "application/json",
};

/** Query and body as one set of parameters: a name in both is ambiguous and refused. */
export function parsedRequest(query: string, body: ParsedBody): ParsedRequest {
  const parsedQuery = parseQuery(query);
  for (const name of Object.keys(body.params))
    if (Object.hasOwn(parsedQuery.params, name)) throw new BodyError(`field "${name}" in query and body`);
  return { params: { ...parsedQuery.params, ...body.params }, body, query: parsedQuery.canonical };
}

/** A JSON body when one is sent (KuCoin's POSTs); nothing else. */
export function jsonBody(request: GatewayRequest): ParsedBody {
  if (request.body === "") return emptyBody;
  const body = parseBody(request.headers["content-type"], request.body);
  if (body.kind !== "json") throw new BodyError("a body that is not JSON");
  return body;
}

/**
 * A signature sent in base64, compared in constant time with the one spelling every client of these
 * exchanges sends: the standard alphabet, padded. Node's decoder would also read the same bytes from other
 * spellings (no padding, the URL-safe alphabet, characters it skips, other unused bits in the last
 * character), and the string sent is what "accepted once" remembers (`claimSignature`): a captured request
 * sent again with its signature spelled another way would pass as a new one. So the text is compared, not
 * what it decodes to.
 */
export function sameBase64(given: string | undefined, expected: Buffer): boolean {
  const sent = Buffer.from(given ?? "", "utf8");
  const canonical = Buffer.from(expected.toString("base64"), "utf8");
  return sent.length === canonical.length && timingSafeEqual(sent, canonical);
}

export const hmac = (algorithm: string, key: string | Buffer, data: string | Buffer) =>
  createHmac(algorithm, key).update(data).digest();

/**
 * The first field an operation may not carry: a money-moving operation's field not in its list, or on any
 * operation an `approval_id` that is not text. The approval id is the gateway's own field, read by the
 * approval check of whatever request carries it; a JSON object, list, number or boolean, or a form's
 * nested field, is no id, and is refused here before anything reads it.
 */
export function unknownFieldOf(operation: PathOperation, params: Params): string | null {
  if (params.approval_id !== undefined && typeof params.approval_id !== "string") return "approval_id";
  if (!operation.fields) return null;
  return Object.keys(params).find((field) => !operation.fields!.includes(field)) ?? null;
}

/** An amount the gateway can count, or one it cannot know (held under any threshold of its asset). */
export type Amount = Exact | "unknown";

function add(movements: Movements, asset: string, amount: Amount) {
  const current = movements.get(asset);
  if (current === "unknown" || amount === "unknown") movements.set(asset, "unknown");
  else movements.set(asset, current ? plus(current, amount) : amount);
}

/** A field's value as an exact unsigned decimal; unknown when absent or not one. */
export const amountOf = (value: Params[string] | undefined): Amount => {
  const raw = text(value);
  return (raw === null ? null : parseDecimal(raw)) ?? "unknown";
};

/** What a buy of `size` at a limit of `price` spends at most: their product, unknown when either is. */
export const spendOf = (size: Amount, price: Amount): Amount =>
  size === "unknown" || price === "unknown" ? "unknown" : times(size, price);

/**
 * What an order moves, once its dialect has read its amounts by its type: `base` of the base asset, and
 * for a buy (any side but "sell") `quote` of the quote asset. Every asset is unknown when the market's
 * assets cannot be told.
 */
export function orderMovements(
  assets: { base: string; quote: string } | null,
  side: Params[string] | undefined,
  amounts: { base: Amount; quote: Amount },
): Movements {
  const movements: Movements = new Map();
  if (!assets || !ASSET_CODE.test(assets.base) || !ASSET_CODE.test(assets.quote)) {
    movements.set("*", "unknown");
    return movements;
  }
  add(movements, normaliseAsset(assets.base), amounts.base);
  if (text(side) !== "sell") add(movements, normaliseAsset(assets.quote), amounts.quote);
  return movements;
}

/** What a transfer or withdrawal moves: its amount of its currency. */
export function transferMovements(currency: Params[string] | undefined, amount: Params[string] | undefined) {
  const movements: Movements = new Map();
  const asset = text(currency);
  if (asset === null || !ASSET_CODE.test(asset.toUpperCase())) movements.set("*", "unknown");
  else add(movements, normaliseAsset(asset), amountOf(amount));
  return movements;
}
