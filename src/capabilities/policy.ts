import fs from "node:fs";
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { ConfigError } from "../config/env.js";

export const tiers = ["starter", "intermediate", "pro"] as const;
export type Tier = (typeof tiers)[number];

export const products = [
  "spot",
  "margin",
  "futures",
  "staking",
  "stocks",
  "deposit.crypto",
  "withdraw.crypto",
  "funding.ach",
  "funding.wire",
  "funding.card",
  "api",
] as const;
export type Product = (typeof products)[number];

export const subsystemIds = [
  "website",
  "api",
  "spot_engine",
  "futures_engine",
  "funding.crypto",
  "funding.ach",
  "funding.wire",
  "funding.card",
  "signups",
] as const;
export type SubsystemId = (typeof subsystemIds)[number];

export const clientNames = ["web", "app", "pro", "api"] as const;
export type ClientName = (typeof clientNames)[number];

export const prerequisites = ["second_factor"] as const;
export type Prerequisite = (typeof prerequisites)[number];

/** Who may use a product where: a tier floor and country / region lists (ISO 3166-1 and 3166-2). */
export interface JurisdictionRule {
  minTier: Tier;
  onlyCountries?: string[];
  excludeCountries?: string[];
  onlyRegions?: string[];
  excludeRegions?: string[];
}

export interface ProductPolicy extends JurisdictionRule {
  /** Client apps that offer the product (docs/behaviour.md §9: app is the simple app, pro everything, api the gateway). */
  clients: ClientName[];
  /** Subsystems it cannot work without. */
  subsystems: SubsystemId[];
  /** Security prerequisites, e.g. withdrawals need a second factor enrolled. */
  requires: Prerequisite[];
  /** A country's own rule replaces the tier and region fields for accounts in that country. */
  byCountry?: Record<string, Partial<JurisdictionRule>>;
}

export type Policy = Record<Product, ProductPolicy>;

const everywhere: ClientName[] = ["web", "app", "pro", "api"];

/** The defaults of docs/behaviour.md §9. */
export const defaultPolicy: Policy = {
  spot: { minTier: "starter", clients: everywhere, subsystems: ["spot_engine"], requires: [] },
  margin: {
    minTier: "intermediate",
    excludeCountries: ["US", "CA"],
    clients: ["web", "pro", "api"],
    subsystems: ["spot_engine"],
    requires: [],
  },
  futures: {
    minTier: "intermediate",
    excludeCountries: ["US", "CA", "GB", "JP", "HK", "SG", "AU"],
    clients: ["web", "pro", "api"],
    subsystems: ["futures_engine"],
    requires: [],
  },
  staking: {
    minTier: "intermediate",
    excludeRegions: ["US-NY", "US-WA"],
    clients: ["web", "app", "pro", "api"],
    subsystems: [],
    requires: [],
  },
  stocks: {
    minTier: "intermediate",
    onlyCountries: ["US"],
    excludeRegions: ["US-NY", "US-TX", "US-WA"],
    clients: ["web", "app", "pro"],
    subsystems: ["spot_engine"],
    requires: [],
  },
  "deposit.crypto": { minTier: "starter", clients: everywhere, subsystems: ["funding.crypto"], requires: [] },
  "withdraw.crypto": {
    minTier: "starter",
    clients: everywhere,
    subsystems: ["funding.crypto"],
    requires: ["second_factor"],
  },
  "funding.ach": {
    minTier: "intermediate",
    onlyCountries: ["US"],
    clients: ["web", "app", "pro"],
    subsystems: ["funding.ach"],
    requires: [],
  },
  "funding.wire": {
    minTier: "starter",
    clients: ["web", "app", "pro"],
    subsystems: ["funding.wire"],
    requires: [],
    byCountry: { US: { minTier: "intermediate", excludeRegions: ["US-NY", "US-WA"] } },
  },
  "funding.card": {
    minTier: "starter",
    clients: ["web", "app", "pro"],
    subsystems: ["funding.card"],
    requires: [],
  },
  api: { minTier: "starter", clients: ["web", "pro", "api"], subsystems: ["api"], requires: [] },
};

type Path = (string | number)[];

/**
 * Reads a policy file (YAML). Products it names replace the defaults for those products; anything wrong
 * stops start-up with the file, line and field: `policy.yaml:7: products.margin.minTier: must be one of …`.
 */
export function loadPolicy(file: string | undefined): Policy {
  if (!file) return defaultPolicy;
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    throw new ConfigError("PORTCULLIS_POLICY", `cannot read ${file}`);
  }
  return parsePolicy(text, file);
}

export function parsePolicy(text: string, name = "policy"): Policy {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true });
  const fail = (path: Path, message: string): never => {
    // A mapping entry is reported at its key (the line a person looks for), a list item at the item.
    const parent = path.length > 1 ? doc.getIn(path.slice(0, -1), true) : doc.contents;
    const pair = isMap(parent)
      ? parent.items.find((p) => isScalar(p.key) && p.key.value === path.at(-1))
      : undefined;
    const node = pair?.key ?? (path.length ? doc.getIn(path, true) : doc.contents);
    const offset = (node as { range?: [number] } | undefined)?.range?.[0];
    const line = offset === undefined ? 1 : lineCounter.linePos(offset).line;
    throw new ConfigError("PORTCULLIS_POLICY", `${name}:${line}: ${path.join(".") || "(file)"}: ${message}`);
  };
  if (doc.errors.length > 0) {
    const error = doc.errors[0]!;
    const line = error.linePos?.[0]?.line ?? 1;
    throw new ConfigError(
      "PORTCULLIS_POLICY",
      `${name}:${line}: not valid YAML: ${error.message.split("\n")[0]}`,
    );
  }
  const root = doc.toJS() as unknown;
  if (!isMap(doc.contents) || root === null || typeof root !== "object")
    fail([], "must be a mapping with a products key");
  const unknownTop = Object.keys(root as object).filter((key) => key !== "products");
  if (unknownTop.length) fail([unknownTop[0]!], "unknown key (expected products)");
  const declared = (root as { products?: unknown }).products;
  if (declared === undefined) return defaultPolicy;
  if (!isMap(doc.getIn(["products"], true))) fail(["products"], "must be a mapping of product names");

  const policy: Policy = { ...defaultPolicy };
  for (const [product, value] of Object.entries(declared as Record<string, unknown>)) {
    const at: Path = ["products", product];
    if (!(products as readonly string[]).includes(product)) {
      fail(at, `unknown product (one of ${products.join(", ")})`);
    }
    policy[product as Product] = validateProduct(value, at, fail, doc);
  }
  return policy;
}

function validateProduct(
  value: unknown,
  at: Path,
  fail: (path: Path, message: string) => never,
  doc: ReturnType<typeof parseDocument>,
): ProductPolicy {
  if (!value || typeof value !== "object" || Array.isArray(value)) fail(at, "must be a mapping");
  const record = value as Record<string, unknown>;
  const known = [
    "minTier",
    "onlyCountries",
    "excludeCountries",
    "onlyRegions",
    "excludeRegions",
    "clients",
    "subsystems",
    "requires",
    "byCountry",
  ];
  for (const key of Object.keys(record))
    if (!known.includes(key)) fail([...at, key], `unknown field (one of ${known.join(", ")})`);
  const list = <T extends string>(
    key: string,
    allowed: readonly T[] | RegExp,
    required: boolean,
  ): T[] | undefined => {
    const raw = record[key];
    if (raw === undefined) {
      if (required) fail(at, `${key} is required`);
      return undefined;
    }
    if (!isSeq(doc.getIn([...at, key], true))) fail([...at, key], "must be a list");
    (raw as unknown[]).forEach((item, index) => {
      const ok =
        typeof item === "string" &&
        (allowed instanceof RegExp ? allowed.test(item) : allowed.includes(item as T));
      if (!ok) {
        fail(
          [...at, key, index],
          allowed instanceof RegExp
            ? `"${String(item)}" is not a valid code`
            : `must be one of ${allowed.join(", ")}`,
        );
      }
    });
    return raw as T[];
  };
  const tier = (path: Path, raw: unknown): Tier => {
    if (!(tiers as readonly unknown[]).includes(raw)) fail(path, `must be one of ${tiers.join(", ")}`);
    return raw as Tier;
  };
  const country = /^[A-Z]{2}$/;
  const region = /^[A-Z]{2}-[A-Z0-9]{1,3}$/;
  const byCountry: Record<string, Partial<JurisdictionRule>> = {};
  if (record.byCountry !== undefined) {
    if (!record.byCountry || typeof record.byCountry !== "object")
      fail([...at, "byCountry"], "must be a mapping of country codes");
    for (const [code, rule] of Object.entries(record.byCountry as Record<string, unknown>)) {
      const ruleAt: Path = [...at, "byCountry", code];
      if (!country.test(code)) fail(ruleAt, `"${code}" is not an ISO 3166-1 alpha-2 code`);
      const nested = validateProduct(
        { clients: [], subsystems: [], requires: [], minTier: "starter", ...(rule as object) },
        ruleAt,
        fail,
        doc,
      );
      byCountry[code] = {
        ...((rule as Record<string, unknown>).minTier !== undefined ? { minTier: nested.minTier } : {}),
        ...(nested.onlyRegions ? { onlyRegions: nested.onlyRegions } : {}),
        ...(nested.excludeRegions ? { excludeRegions: nested.excludeRegions } : {}),
      };
    }
  }
  return {
    minTier: record.minTier === undefined ? "starter" : tier([...at, "minTier"], record.minTier),
    clients: list("clients", clientNames, true)!,
    subsystems: list("subsystems", subsystemIds, false) ?? [],
    requires: list("requires", prerequisites, false) ?? [],
    ...optional("onlyCountries", list("onlyCountries", country, false)),
    ...optional("excludeCountries", list("excludeCountries", country, false)),
    ...optional("onlyRegions", list("onlyRegions", region, false)),
    ...optional("excludeRegions", list("excludeRegions", region, false)),
    ...(Object.keys(byCountry).length ? { byCountry } : {}),
  };
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
