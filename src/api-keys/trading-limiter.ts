import { type Kysely, sql } from "kysely";
import type { Tier } from "../capabilities/policy.js";
import type { Database } from "../db/schema.js";
import { batchOrders, splitPair } from "./kraken-requests.js";
import { type Params, text } from "./request-body.js";

/**
 * Kraken's trading rate limiter: a counter per key and pair that order events raise and time lowers, with
 * a ceiling and a decay per second by verification tier. Order entry and cancels are charged here, not
 * to the REST call counter, so a market maker gets the room Kraken gives it.
 */
export const tradingLimits: Record<Tier, { max: number; decayPerSecond: number }> = {
  starter: { max: 60, decayPerSecond: 1 },
  intermediate: { max: 125, decayPerSecond: 2.34 },
  pro: { max: 180, decayPerSecond: 3.75 },
};

/** Kraken's penalties by the age of the order touched: the quicker an order is pulled, the more it costs. */
const ages = [5_000, 10_000, 15_000, 45_000, 90_000, 300_000];
const penalties = {
  cancel: [8, 6, 5, 4, 2, 1],
  edit: [6, 5, 4, 2, 1, 0],
  amend: [3, 2, 1, 0, 0, 0],
};

function penalty(kind: keyof typeof penalties, ageMs: number): number {
  const index = ages.findIndex((limit) => ageMs < limit);
  return index === -1 ? 0 : penalties[kind][index]!;
}

export const tradingMethods = [
  "AddOrder",
  "AddOrderBatch",
  "EditOrder",
  "AmendOrder",
  "CancelOrder",
  "CancelOrderBatch",
];

/** The pair a counter is kept under: base/quote as normalised, or the pair as sent when it cannot be split. */
export function counterPair(pair: string): string {
  const assets = splitPair(pair);
  return assets ? `${assets.base}/${assets.quote}` : pair.toUpperCase().slice(0, 32);
}

/** An order the gateway saw placed: its pair and when. */
export interface KnownOrder {
  pair: string;
  placedAt: number;
}

/** One charge: so much to one pair's counter. */
export interface TradingCharge {
  pair: string;
  cost: number;
}

/**
 * What a trading request costs, per pair. Orders the gateway never saw placed (another channel, or long
 * gone) cannot be aged: their cancels are charged nothing here and fall to the REST counter instead
 * (`unknownOrders`), so a flood of cancels is never free.
 */
export async function tradingCharges(
  method: string,
  params: Params,
  now: number,
  lookup: (txids: string[]) => Promise<Map<string, KnownOrder>>,
): Promise<{ charges: TradingCharge[]; unknownOrders: number }> {
  const pair = text(params.pair);
  switch (method) {
    case "AddOrder":
      return { charges: [{ pair: counterPair(pair ?? "?"), cost: 1 }], unknownOrders: 0 };
    case "AddOrderBatch":
      return {
        charges: [{ pair: counterPair(pair ?? "?"), cost: (batchOrders(params)?.length ?? 1) / 2 }],
        unknownOrders: 0,
      };
    case "EditOrder":
    case "AmendOrder":
    case "CancelOrder":
    case "CancelOrderBatch": {
      const txids =
        method === "CancelOrderBatch"
          ? (Array.isArray(params.orders) ? params.orders : []).map((order) =>
              typeof order === "object" && !Array.isArray(order)
                ? (text(order.txid) ?? "")
                : (text(order) ?? ""),
            )
          : [text(params.txid) ?? text(params.cl_ord_id) ?? ""];
      const known = await lookup(txids.filter((txid) => txid !== ""));
      const kind = method === "EditOrder" ? "edit" : method === "AmendOrder" ? "amend" : "cancel";
      const fixed = kind === "cancel" ? 0 : 1;
      const charges: TradingCharge[] = [];
      let unknownOrders = 0;
      for (const txid of txids) {
        const order = known.get(txid);
        if (!order) {
          unknownOrders += 1;
          if (fixed > 0 && pair !== null) charges.push({ pair: counterPair(pair), cost: fixed });
          continue;
        }
        charges.push({ pair: order.pair, cost: fixed + penalty(kind, now - order.placedAt) });
      }
      return { charges, unknownOrders };
    }
    default:
      return { charges: [], unknownOrders: 0 };
  }
}

/**
 * Charges a pair's counter for a key, or refuses when it would pass the tier's ceiling: one upsert that
 * decays the level to now, adds the cost and checks the ceiling at once, so parallel requests on any
 * number of instances cannot pass it between a read and a write.
 */
export async function chargeTrading(
  db: Kysely<Database>,
  keyId: string,
  tier: Tier,
  charge: TradingCharge,
  now: number,
): Promise<boolean> {
  const { max, decayPerSecond } = tradingLimits[tier];
  if (charge.cost > max) return false;
  const elapsed = sql`(cast(${now} as bigint) - api_trading_counters.level_at)`;
  const decayed = sql`(api_trading_counters.level - ${elapsed} * cast(${decayPerSecond / 1000} as double precision))`;
  const level = sql<number>`(case when ${decayed} < 0 then 0 else ${decayed} end + cast(${charge.cost} as double precision))`;
  const row = await db
    .insertInto("api_trading_counters")
    .values({ key_id: keyId, pair: charge.pair, level: charge.cost, level_at: now })
    .onConflict((oc) =>
      oc
        .columns(["key_id", "pair"])
        .doUpdateSet({ level, level_at: now })
        .where(level, "<=", sql<number>`cast(${max} as double precision)`),
    )
    .returning("key_id")
    .executeTakeFirst();
  return row !== undefined;
}
