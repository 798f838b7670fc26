import { iso } from "../support/clock.js";
import {
  type ClientName,
  type JurisdictionRule,
  type Policy,
  type Product,
  type ProductPolicy,
  products,
  type Tier,
  tiers,
} from "./policy.js";
import type { SubsystemSnapshot } from "./subsystems.js";

export type Reason =
  | { code: "tier_too_low"; message: string; requiredTier: Tier }
  | { code: "jurisdiction"; message: string }
  | { code: "client_app"; message: string; clients: ClientName[] }
  | { code: "subsystem_maintenance"; message: string; subsystem: string; state: string; until: string | null }
  | { code: "security_hold"; message: string; until: string; hold: string }
  | { code: "account_restricted"; message: string }
  | { code: "account_frozen"; message: string }
  | { code: "second_factor_required"; message: string };

export type Capability = { allowed: true; mode?: "post_only" } | { allowed: false; reasons: Reason[] };
export type CapabilityVector = Record<Product, Capability>;

export interface SecurityHold {
  /** What started it: password_reset, second_factor_reset, trading_passcode_changed, email_changed. */
  kind: string;
  until: number;
}

export interface CapabilityInput {
  account: {
    tier: Tier;
    country: string;
    region: string | null;
    restricted: boolean;
    /** Frozen by "lock my account": every product refused until the freeze is lifted. */
    frozen?: boolean;
  };
  client: ClientName;
  security: { hasSecondFactor: boolean; holds: SecurityHold[] };
  subsystems: SubsystemSnapshot;
  policy: Policy;
}

const names: Record<Product, string> = {
  spot: "Spot trading",
  margin: "Margin trading",
  futures: "Futures",
  staking: "Staking",
  stocks: "Stocks",
  "deposit.crypto": "Crypto deposits",
  "withdraw.crypto": "Crypto withdrawals",
  "funding.ach": "ACH transfers",
  "funding.wire": "Wire transfers",
  "funding.card": "Card purchases",
  api: "API trading",
};
const clientNames: Record<ClientName, string> = {
  web: "the website",
  app: "the app",
  pro: "Pro",
  api: "the API",
};
const tierNames: Record<Tier, string> = { starter: "Starter", intermediate: "Intermediate", pro: "Pro" };
/** Products that move funds out: security holds apply to them (behaviour §7). */
const withdrawals: Product[] = ["withdraw.crypto"];
/** Products whose new orders a cancel-only engine refuses. */
const trading: Product[] = ["spot", "margin", "futures", "stocks"];

/** A country's own rule, where it has one, replaces the product's tier and region fields. */
function ruleFor(policy: ProductPolicy, country: string): JurisdictionRule {
  return { ...policy, ...(policy.byCountry?.[country] ?? {}) };
}

function place(account: CapabilityInput["account"]): string {
  return account.region ?? account.country;
}

/**
 * The capability vector of docs/behaviour.md §9: for every product, whether this account may use it right now
 * through this client, and every reason when not. Pure: the same input gives the same vector, so every
 * gate (portal, actions, the API gateway) can call it and agree.
 */
export function evaluateCapabilities(input: CapabilityInput): CapabilityVector {
  const vector = {} as CapabilityVector;
  for (const product of products) vector[product] = evaluateProduct(product, input);
  return vector;
}

/** One product's capability, as the vector has it: for a caller that needs only some of them. */
export function evaluateProduct(product: Product, input: CapabilityInput): Capability {
  const { account, client, security, subsystems, policy } = input;
  const productPolicy = policy[product];
  const rule = ruleFor(productPolicy, account.country);
  const name = names[product];
  const reasons: Reason[] = [];

  if (account.frozen) {
    reasons.push({
      code: "account_frozen",
      message: "Your account is frozen from a security email's lock link until the freeze is lifted.",
    });
  }
  if (account.restricted) {
    reasons.push({ code: "account_restricted", message: "Your account is restricted. Contact support." });
  }
  if (tiers.indexOf(account.tier) < tiers.indexOf(rule.minTier)) {
    reasons.push({
      code: "tier_too_low",
      message: `${name} needs ${tierNames[rule.minTier]} verification.`,
      requiredTier: rule.minTier,
    });
  }
  const region = account.region ?? "";
  const outside =
    (rule.onlyCountries && !rule.onlyCountries.includes(account.country)) ||
    rule.excludeCountries?.includes(account.country) ||
    (rule.onlyRegions && !rule.onlyRegions.includes(region)) ||
    (region !== "" && rule.excludeRegions?.includes(region));
  if (outside)
    reasons.push({ code: "jurisdiction", message: `${name} is not available in ${place(account)}.` });
  if (!productPolicy.clients.includes(client)) {
    reasons.push({
      code: "client_app",
      message: `${name} is not offered in ${clientNames[client]}.`,
      clients: productPolicy.clients,
    });
  }
  let mode: "post_only" | undefined;
  for (const subsystem of productPolicy.subsystems) {
    const state = subsystems.states[subsystem];
    if (!state) continue;
    const until = state.until === null ? null : iso(state.until);
    const refuses =
      state.status === "maintenance" ||
      state.status === "outage" ||
      (state.status === "cancel_only" && trading.includes(product));
    if (refuses) {
      reasons.push({
        code: "subsystem_maintenance",
        message: until
          ? `${name} is unavailable for maintenance until ${until}.`
          : `${name} is unavailable right now${state.message ? `: ${state.message}` : "."}`,
        subsystem,
        state: state.status,
        until,
      });
    }
    if (state.status === "post_only") mode = "post_only";
  }
  if (productPolicy.requires.includes("second_factor") && !security.hasSecondFactor) {
    reasons.push({
      code: "second_factor_required",
      message: `${name} needs two-factor authentication. Turn it on in Security.`,
    });
  }
  if (withdrawals.includes(product)) {
    for (const hold of security.holds) {
      reasons.push({
        code: "security_hold",
        message: `${name} are on hold after a security change until ${iso(hold.until)}.`,
        until: iso(hold.until),
        hold: hold.kind,
      });
    }
  }
  if (reasons.length > 0) return { allowed: false, reasons };
  return mode ? { allowed: true, mode } : { allowed: true };
}

/** What a trading request does to the book: Kraken's engine modes treat the two differently. */
export type TradingIntent = { kind: "cancel" } | { kind: "order"; postOnly: boolean };

/**
 * Kraken's engine modes for one trading request, on top of the product's capability: in `cancel_only`
 * cancelling passes (it is the one thing the mode exists to allow) and order entry is refused; in
 * `post_only` only orders that are all post-only pass. The remaining reasons, or null when the request
 * may go ahead. Every trading gate (portal actions and every gateway dialect) asks this one function.
 */
export function tradingRefusal(capability: Capability, intent: TradingIntent): Reason[] | null {
  if (capability.allowed) {
    if (intent.kind === "order" && capability.mode === "post_only" && !intent.postOnly) {
      return [
        {
          code: "subsystem_maintenance",
          message: "The market accepts only post-only limit orders right now.",
          subsystem: "spot_engine",
          state: "post_only",
          until: null,
        },
      ];
    }
    return null;
  }
  const reasons =
    intent.kind === "cancel"
      ? capability.reasons.filter((r) => !(r.code === "subsystem_maintenance" && r.state === "cancel_only"))
      : capability.reasons;
  return reasons.length > 0 ? reasons : null;
}
