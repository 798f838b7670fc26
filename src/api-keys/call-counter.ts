import { type Kysely, sql } from "kysely";
import type { Tier } from "../capabilities/policy.js";
import type { Database } from "../db/schema.js";

/** Kraken's per-key call counter by verification tier (behaviour §11): a ceiling and a decay per second. */
export const callLimits: Record<Tier, { max: number; decayPerSecond: number }> = {
  starter: { max: 15, decayPerSecond: 0.33 },
  intermediate: { max: 20, decayPerSecond: 0.5 },
  pro: { max: 20, decayPerSecond: 1 },
};

/**
 * Charges a call to a key's counter, or refuses it when the counter would pass the tier's ceiling. The
 * counter lives on the key's row as a level and the time it was set, so one conditional UPDATE decays it
 * to now, adds the cost and checks the ceiling at once: parallel calls, on any number of instances,
 * cannot pass the ceiling between a read and a write. Also stamps the key's last use.
 */
export async function chargeCall(
  db: Kysely<Database>,
  keyId: string,
  tier: Tier,
  cost: number,
  now: number,
): Promise<boolean> {
  const { max, decayPerSecond } = callLimits[tier];
  // Casts keep PostgreSQL from typing the parameters after the BIGINT column they meet.
  const elapsed = sql`(cast(${now} as bigint) - rate_at)`;
  const decay = sql`(${elapsed} * cast(${decayPerSecond / 1000} as double precision))`;
  const level = sql<number>`(case when rate_level - ${decay} < 0 then 0 else rate_level - ${decay} end + cast(${cost} as double precision))`;
  const charged = await db
    .updateTable("api_keys")
    .set({ rate_level: level, rate_at: now, last_used_at: now })
    .where("id", "=", keyId)
    .where(level, "<=", sql<number>`cast(${max} as double precision)`)
    .returning("id")
    .executeTakeFirst();
  return charged !== undefined;
}
