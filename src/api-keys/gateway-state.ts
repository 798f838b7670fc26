import type { Kysely } from "kysely";
import type { Tier } from "../capabilities/policy.js";
import type { Database } from "../db/schema.js";
import { chargeCall } from "./call-counter.js";
import type { ApiLockout } from "./lockout.js";
import { chargeTrading, type TradingCharge } from "./trading-limiter.js";

const pad = (n: bigint) => n.toString().padStart(20, "0");

/**
 * What became of a nonce: accepted (once), already used (a copy), or stale (at or below what the key
 * may still use). Dialects that tell the two refusals apart (Kraken Futures) read it from here, the one
 * place that knows.
 */
export type NonceClaim = "accepted" | "duplicate" | "stale";

/**
 * The gateway's hot state: lockouts, nonces, the key's TOTP steps and its rate counters. Every rule
 * here is "exactly once" or "never past a ceiling", on any number of instances; the verifier asks this
 * interface and nothing else, so where the state lives (the database, memory, Redis) is one choice.
 */
export interface GatewayState {
  /** The subjects among these that are locked out now. */
  lockedOut(subjects: string[]): Promise<Set<string>>;
  /**
   * Counts a failure against each subject. It may be durable only once the decision's own audit record is
   * (the in-memory state writes it in the same batch); the verifier writes that record next and answers
   * after it.
   */
  recordFailure(subjects: string[]): Promise<void>;
  /** Claims a nonce for a key: true once, for a nonce above the key's floor. */
  claimNonce(keyId: string, nonce: bigint, window: number): Promise<NonceClaim>;
  /** The highest nonce the key has had accepted, 0 when it has never sent one. */
  highestNonce(keyId: string): Promise<bigint>;
  /** Claims a TOTP step of the key's own second factor: each step once. */
  claimOtpStep(keyId: string, step: number): Promise<boolean>;
  /** Charges the REST call counter; false when it would pass the tier's ceiling. */
  chargeCalls(keyId: string, tier: Tier, cost: number, now: number): Promise<boolean>;
  /** Charges one pair's trading counter; false when it would pass the tier's ceiling. */
  chargeTrading(keyId: string, tier: Tier, charge: TradingCharge, now: number): Promise<boolean>;
  /** Housekeeping: forgets lockout subjects that have stopped counting. */
  prune(): Promise<void>;
  /**
   * Claims a signature for a key: true once until `expiresAt` (epoch ms), after which the request it
   * signs can no longer be accepted anyway (its timestamp is stale) or is, by rule, accepted again.
   */
  claimSignature(keyId: string, signature: string, expiresAt: number, now: number): Promise<boolean>;
  /**
   * Charges a weight to a key's budget in one pool over a fixed window: false when the window's
   * budget would be passed (the window opens with the first charge after the previous one ended).
   */
  chargeWeight(
    keyId: string,
    pool: string,
    weight: number,
    budget: { limit: number; windowMs: number },
    now: number,
  ): Promise<boolean>;
}

/** The gateway's hot state in the database: each rule one conditional statement, exact across instances. */
export class DatabaseGatewayState implements GatewayState {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly lockout: ApiLockout,
  ) {}

  lockedOut(subjects: string[]): Promise<Set<string>> {
    return this.lockout.lockedOut(subjects);
  }

  recordFailure(subjects: string[]): Promise<void> {
    return this.lockout.recordFailure(subjects);
  }

  prune(): Promise<void> {
    return this.lockout.prune();
  }

  async claimOtpStep(keyId: string, step: number): Promise<boolean> {
    const claimed = await this.db
      .updateTable("api_keys")
      .set({ otp_last_step: step })
      .where("id", "=", keyId)
      .where((eb) => eb.or([eb("otp_last_step", "is", null), eb("otp_last_step", "<", step)]))
      .returning("id")
      .executeTakeFirst();
    return claimed !== undefined;
  }

  chargeCalls(keyId: string, tier: Tier, cost: number, now: number): Promise<boolean> {
    return chargeCall(this.db, keyId, tier, cost, now);
  }

  chargeTrading(keyId: string, tier: Tier, charge: TradingCharge, now: number): Promise<boolean> {
    return chargeTrading(this.db, keyId, tier, charge, now);
  }

  async claimSignature(keyId: string, signature: string, expiresAt: number, now: number): Promise<boolean> {
    // An expired row of the same signature is taken over (the conditional update); a live one is not.
    const claimed = await this.db
      .insertInto("api_key_signatures")
      .values({ key_id: keyId, signature, expires_at: expiresAt })
      .onConflict((oc) =>
        oc
          .columns(["key_id", "signature"])
          .doUpdateSet({ expires_at: expiresAt })
          .where("api_key_signatures.expires_at", "<=", now),
      )
      .returning("key_id")
      .executeTakeFirst();
    if (claimed && signature.charCodeAt(0) % 16 === 0)
      await this.db.deleteFrom("api_key_signatures").where("expires_at", "<=", now).execute();
    return claimed !== undefined;
  }

  /** One upsert: a new window when the last one ended, else the sum, refused (no row) past the limit. */
  async chargeWeight(
    keyId: string,
    pool: string,
    weight: number,
    budget: { limit: number; windowMs: number },
    now: number,
  ): Promise<boolean> {
    if (weight > budget.limit) return false;
    const ended = now - budget.windowMs;
    const charged = await this.db
      .insertInto("api_key_weights")
      .values({ key_id: keyId, pool, window_start: now, used: weight })
      .onConflict((oc) =>
        oc
          .columns(["key_id", "pool"])
          .doUpdateSet((eb) => {
            const over = eb("api_key_weights.window_start", "<=", ended);
            return {
              used: eb
                .case()
                .when(over)
                .then(weight)
                .else(eb("api_key_weights.used", "+", weight))
                .end(),
              window_start: eb.case().when(over).then(now).else(eb.ref("api_key_weights.window_start")).end(),
            };
          })
          .where((eb) =>
            eb.or([
              eb("api_key_weights.window_start", "<=", ended),
              eb(eb("api_key_weights.used", "+", weight), "<=", budget.limit),
            ]),
          ),
      )
      .returning("key_id")
      .executeTakeFirst();
    return charged !== undefined;
  }

  async highestNonce(keyId: string): Promise<bigint> {
    const { last_nonce } = await this.db
      .selectFrom("api_keys")
      .select("last_nonce")
      .where("id", "=", keyId)
      .executeTakeFirstOrThrow();
    return BigInt(last_nonce);
  }

  /**
   * Nonces rise per key. With a window of 0 a nonce must exceed the highest seen (one conditional UPDATE
   * that also raises the floor). With a window, a nonce above the floor is accepted once (a unique row),
   * and the floor rises to the highest seen less the window — it never moves down, so widening the window
   * later cannot reopen nonces already refused or used. Both are exact across instances: the database
   * decides.
   */
  async claimNonce(keyId: string, nonce: bigint, window: number): Promise<NonceClaim> {
    const padded = pad(nonce);
    if (window === 0) {
      const row = await this.db
        .updateTable("api_keys")
        .set({ last_nonce: padded, nonce_floor: padded })
        .where("id", "=", keyId)
        .where("last_nonce", "<", padded)
        .where("nonce_floor", "<", padded)
        .returning("id")
        .executeTakeFirst();
      if (row) return "accepted";
      const { last_nonce } = await this.db
        .selectFrom("api_keys")
        .select("last_nonce")
        .where("id", "=", keyId)
        .executeTakeFirstOrThrow();
      return last_nonce === padded ? "duplicate" : "stale";
    }
    const inserted = await this.db
      .insertInto("api_key_nonces")
      .values({ key_id: keyId, nonce: padded })
      .onConflict((oc) => oc.columns(["key_id", "nonce"]).doNothing())
      .returning("nonce")
      .executeTakeFirst();
    if (!inserted) return "duplicate";
    // Read the floor after claiming the row: rows are cleared only once the floor has passed them, so a
    // used nonce whose row was cleared is always caught here, whatever ran in between.
    const { nonce_floor, last_nonce } = await this.db
      .selectFrom("api_keys")
      .select(["nonce_floor", "last_nonce"])
      .where("id", "=", keyId)
      .executeTakeFirstOrThrow();
    if (padded <= nonce_floor) return "stale";
    // Padded to 20 digits, the nonces compare as text exactly as they do as numbers.
    let highest = BigInt(last_nonce);
    if (nonce > highest) highest = nonce;
    const floor = highest - BigInt(window);
    const newFloor = pad(floor > 0n ? floor : 0n);
    await this.db
      .updateTable("api_keys")
      .set((eb) => ({
        last_nonce: eb.case().when("last_nonce", "<", padded).then(padded).else(eb.ref("last_nonce")).end(),
        nonce_floor: eb
          .case()
          .when("nonce_floor", "<", newFloor)
          .then(newFloor)
          .else(eb.ref("nonce_floor"))
          .end(),
      }))
      .where("id", "=", keyId)
      .execute();
    // Rows at or below the floor can never be used again: clear them, after the floor was raised.
    if (nonce % 32n === 0n) {
      await this.db
        .deleteFrom("api_key_nonces")
        .where("key_id", "=", keyId)
        .where("nonce", "<=", newFloor)
        .execute();
    }
    return "accepted";
  }
}
