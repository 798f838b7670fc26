/**
 * One parse of a signed request's body, and the one serialisation the venue receives.
 *
 * The signature covers the body's bytes as sent; every check after it (nonce, permissions, products,
 * approvals) reads the parameters parsed here; and the upstream receives a canonical re-serialisation of
 * exactly these parameters with the matching Content-Type. So no field can mean one thing to the
 * gateway and another to the venue: a JSON body sent as a form, a repeated field, or a nested field the
 * gateway did not see are refused or cannot arise.
 */

/** A parameter value: text at the leaves (numbers and booleans of JSON are kept as such for forwarding). */
export type ParamValue = string | number | boolean | ParamValue[] | { [field: string]: ParamValue };
export type Params = { [field: string]: ParamValue };

export type BodyKind = "form" | "json";

export interface ParsedBody {
  kind: BodyKind;
  params: Params;
  /** What the upstream receives: exactly `params`, serialised as `kind` with `contentType`. */
  canonical: string;
  contentType: string;
}

export class BodyError extends Error {}

const FORM = "application/x-www-form-urlencoded";
const JSON_TYPE = "application/json";
/** Kraken's largest request (AddOrderBatch of 15 orders with close legs) stays far below these. */
const MAX_FIELDS = 512;
const MAX_DEPTH = 3;
const MAX_INDEX = 99;
const FIELD_NAME = /^[A-Za-z0-9_./-]{1,64}$/;
const forbiddenNames = new Set(["__proto__", "constructor", "prototype"]);

/** The media type of a Content-Type header, lower-cased, without parameters such as charset. */
export function mediaType(header: string | undefined): string | null {
  if (header === undefined) return null;
  const type = header.split(";")[0]!.trim().toLowerCase();
  return type === "" ? null : type;
}

function checkName(name: string): void {
  if (!FIELD_NAME.test(name) || forbiddenNames.has(name)) throw new BodyError(`field name "${name}"`);
}

/** `orders[0][close][price]` → ["orders", "0", "close", "price"]; refused when not of that grammar. */
function pathOf(name: string): string[] {
  // Most fields are plain names (nonce, pair, volume): one check, no grammar to parse.
  if (!name.includes("[")) {
    if (/^\d+$/.test(name)) return [name];
    checkName(name);
    return [name];
  }
  const match = /^([^[\]]+)((?:\[[^[\]]*\])*)$/.exec(name);
  if (!match) throw new BodyError(`field name "${name}"`);
  const segments = [match[1]!];
  for (const part of match[2]!.matchAll(/\[([^[\]]*)\]/g)) segments.push(part[1]!);
  if (segments.length - 1 > MAX_DEPTH) throw new BodyError(`field "${name}" nests too deeply`);
  for (const segment of segments) {
    if (/^\d+$/.test(segment)) continue;
    checkName(segment);
  }
  return segments;
}

const isIndex = (segment: string) => /^(0|[1-9]\d*)$/.test(segment) && Number(segment) <= MAX_INDEX;

/** Builds the nested parameters of a form body; every name may appear once, and structure must agree. */
function parseForm(body: string): Params {
  const root: Params = {};
  let count = 0;
  const seen = new Set<string>();
  for (const [name, value] of new URLSearchParams(body)) {
    if (++count > MAX_FIELDS) throw new BodyError("too many fields");
    if (seen.has(name)) throw new BodyError(`field "${name}" is repeated`);
    seen.add(name);
    const segments = pathOf(name);
    // Objects are built with string keys; arrays are told apart afterwards (all keys 0..n-1).
    let node: Record<string, ParamValue> = root;
    for (let i = 0; i < segments.length - 1; i++) {
      const segment = segments[i]!;
      const next = node[segment];
      if (next === undefined) {
        const created: Record<string, ParamValue> = {};
        node[segment] = created;
        node = created;
      } else if (typeof next === "object" && !Array.isArray(next)) {
        node = next as Record<string, ParamValue>;
      } else {
        throw new BodyError(`field "${name}" conflicts with another`);
      }
    }
    const leaf = segments.at(-1)!;
    if (leaf === "" || node[leaf] !== undefined)
      throw new BodyError(`field "${name}" conflicts with another`);
    node[leaf] = value;
  }
  return arraysOf(root) as Params;
}

/** Objects whose keys are exactly 0..n-1 become arrays (Kraken's `orders[i][…]`); mixed keys are refused. */
function arraysOf(value: ParamValue): ParamValue {
  if (typeof value !== "object" || Array.isArray(value)) return value;
  const keys = Object.keys(value);
  const indexed = keys.filter(isIndex);
  if (indexed.length > 0) {
    if (indexed.length !== keys.length) throw new BodyError("a list mixes numbered and named fields");
    const list: ParamValue[] = [];
    for (let i = 0; i < keys.length; i++) {
      const item = value[String(i)];
      if (item === undefined) throw new BodyError("a numbered list has a gap");
      list.push(arraysOf(item));
    }
    return list;
  }
  for (const key of keys) {
    if (/^\d+$/.test(key)) throw new BodyError(`index ${key}`);
    value[key] = arraysOf(value[key]!);
  }
  return value;
}

/** Serialises parameters as a form the way Kraken's clients write nested fields: `a[b][0]=…`. */
function serialiseForm(params: Params): string {
  const pairs: [string, string][] = [];
  const walk = (prefix: string, value: ParamValue) => {
    if (Array.isArray(value)) {
      for (const [index, item] of value.entries()) walk(`${prefix}[${index}]`, item);
    } else if (typeof value === "object")
      for (const [key, item] of Object.entries(value)) walk(`${prefix}[${key}]`, item);
    else pairs.push([prefix, String(value)]);
  };
  for (const [key, value] of Object.entries(params)) walk(key, value);
  return new URLSearchParams(pairs).toString();
}

/**
 * Finds a repeated key in any object of a JSON text. JSON.parse silently keeps the last of two equal
 * keys while another parser may keep the first; such a body is refused rather than guessed at. The
 * text has already parsed, so this scanner only tracks strings, nesting and which string is a key.
 */
function hasRepeatedKey(text: string): boolean {
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (expectKey) {
        const keys = stack.at(-1)!;
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (keys.has(key)) return true;
        keys.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === "{") {
      stack.push(new Set());
      expectKey = true;
    } else if (c === "[") {
      stack.push(null);
    } else if (c === "}" || c === "]") {
      stack.pop();
    } else if (c === ",") {
      expectKey = stack.at(-1) instanceof Set;
    }
  }
  return false;
}

function checkJson(value: unknown, depth: number, count: { fields: number }): ParamValue {
  if (typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new BodyError("a number out of range");
    return value;
  }
  if (value === null || typeof value !== "object") throw new BodyError("null values");
  if (depth > MAX_DEPTH) throw new BodyError("nesting too deep");
  if (Array.isArray(value)) {
    if (value.length > MAX_INDEX + 1) throw new BodyError("a list too long");
    return value.map((item) => checkJson(item, depth + 1, count));
  }
  const result: Record<string, ParamValue> = {};
  for (const [key, item] of Object.entries(value)) {
    if (++count.fields > MAX_FIELDS) throw new BodyError("too many fields");
    checkName(key);
    result[key] = checkJson(item, depth + 1, count);
  }
  return result;
}

function parseJson(body: string): Params {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new BodyError("the body is not JSON");
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed))
    throw new BodyError("the body is not a JSON object");
  if (hasRepeatedKey(body)) throw new BodyError("a field is repeated");
  return checkJson(parsed, 0, { fields: 0 }) as Params;
}

/**
 * Parses a body by its declared Content-Type: form or JSON, nothing else, and nothing that does not parse
 * as what it declares. An empty body is an empty form only when declared as a form.
 */
export function parseBody(contentType: string | undefined, body: string): ParsedBody {
  const type = mediaType(contentType);
  if (type === FORM) {
    const params = parseForm(body);
    return { kind: "form", params, canonical: serialiseForm(params), contentType: FORM };
  }
  if (type === JSON_TYPE) {
    const params = parseJson(body);
    return { kind: "json", params, canonical: JSON.stringify(params), contentType: JSON_TYPE };
  }
  throw new BodyError(type === null ? "no Content-Type" : `Content-Type ${type}`);
}

/** A scalar parameter as text (JSON numbers and booleans as JavaScript writes them); null otherwise. */
export function text(value: ParamValue | undefined): string | null {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return null;
}

/** Replaces or adds top-level fields, re-serialising as the body's own kind (the query-window clamp). */
export function withParams(body: ParsedBody, changes: Params): ParsedBody {
  const params = { ...body.params, ...changes };
  return {
    kind: body.kind,
    params,
    canonical: body.kind === "form" ? serialiseForm(params) : JSON.stringify(params),
    contentType: body.contentType,
  };
}

/** The gateway's own parameters (a key's `otp`, an `approval_id`): read by the checks, never forwarded. */
const gatewayFields: readonly string[] = ["otp", "approval_id"];

/**
 * Parameters without the gateway's own fields, which the venue never needs to see, from whatever carries
 * them: a body, or a query string, which is a form too (`parseQuery` forwards its canonical text from
 * here). Every dialect's forwarded parameters pass through this one function.
 */
export function withoutGatewayFields(body: ParsedBody): ParsedBody {
  // Nothing to take out (most requests): the canonical text already is exactly these parameters — except
  // a JSON request sent without a body, whose parameters the venue has always been given as "{}".
  const unchanged = !gatewayFields.some((field) => Object.hasOwn(body.params, field));
  if (unchanged && (body.kind === "form" || body.canonical !== "")) return body;
  const params: Params = {};
  for (const [field, value] of Object.entries(body.params))
    if (!gatewayFields.includes(field)) params[field] = value;
  return withParams(
    { kind: body.kind, params, canonical: body.canonical, contentType: body.contentType },
    {},
  );
}
