import type { Kysely } from "kysely";
import { hashToken, mintToken } from "../crypto/tokens.js";
import type { Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";
import { Problem } from "../support/problem.js";

export type TokenPurpose =
  | "verify_email"
  | "reset_password"
  | "approve_device"
  | "confirm_address"
  | "bypass_code"
  | "disable_api_keys"
  | "lock_account"
  | "confirm_email";

export interface ConsumedToken {
  accountId: string;
  data: Record<string, unknown> | null;
}

/**
 * Links sent by email (verification, password reset, device approval): random, stored as SHA-256, with
 * an expiry, and spent by one conditional UPDATE so that of any number of parallel uses exactly one wins.
 */
export class OneTimeTokens {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
  ) {}

  async issue(
    purpose: TokenPurpose,
    accountId: string,
    ttlMs: number,
    data: Record<string, unknown> | null = null,
    trx?: Kysely<Database>,
    token: string = mintToken(),
  ): Promise<string> {
    const now = this.clock.now();
    await (trx ?? this.db)
      .insertInto("one_time_tokens")
      .values({
        token_hash: hashToken(token),
        purpose,
        account_id: accountId,
        data: data ? JSON.stringify(data) : null,
        created_at: now,
        expires_at: now + ttlMs,
      })
      .execute();
    return token;
  }

  /** Checks a token without spending it (a reset that still needs the Master Key); throws as consume does. */
  async peek(purpose: TokenPurpose, token: string): Promise<ConsumedToken> {
    const now = this.clock.now();
    const row = await this.db
      .selectFrom("one_time_tokens")
      .select(["account_id", "data", "used_at", "expires_at"])
      .where("token_hash", "=", hashToken(token))
      .where("purpose", "=", purpose)
      .executeTakeFirst();
    if (!row)
      throw new Problem(400, "invalid_token", "This link is not valid. Check that you copied all of it.");
    if (row.used_at !== null) throw new Problem(410, "expired", "This link was already used.");
    if (row.expires_at <= now) throw new Problem(410, "expired", "This link has expired. Ask for a new one.");
    return { accountId: row.account_id, data: row.data ? JSON.parse(row.data) : null };
  }

  /** Spends the token or throws: 400 invalid_token when unknown, 410 expired when used or out of date. */
  async consume(
    purpose: TokenPurpose,
    token: string,
    db: Kysely<Database> = this.db,
  ): Promise<ConsumedToken> {
    const now = this.clock.now();
    const tokenHash = hashToken(token);
    const row = await db
      .updateTable("one_time_tokens")
      .set({ used_at: now })
      .where("token_hash", "=", tokenHash)
      .where("purpose", "=", purpose)
      .where("used_at", "is", null)
      .where("expires_at", ">", now)
      .returning(["account_id", "data"])
      .executeTakeFirst();
    if (row) return { accountId: row.account_id, data: row.data ? JSON.parse(row.data) : null };
    const existing = await db
      .selectFrom("one_time_tokens")
      .select(["used_at"])
      .where("token_hash", "=", tokenHash)
      .where("purpose", "=", purpose)
      .executeTakeFirst();
    if (!existing)
      throw new Problem(400, "invalid_token", "This link is not valid. Check that you copied all of it.");
    throw new Problem(
      410,
      "expired",
      existing.used_at !== null ? "This link was already used." : "This link has expired. Ask for a new one.",
    );
  }

  /** Spends every unused token of this purpose for the account: a newer link replaces the older ones. */
  async revokeUnused(
    purpose: TokenPurpose,
    accountId: string,
    db: Kysely<Database> = this.db,
  ): Promise<void> {
    await db
      .updateTable("one_time_tokens")
      .set({ used_at: this.clock.now() })
      .where("account_id", "=", accountId)
      .where("purpose", "=", purpose)
      .where("used_at", "is", null)
      .execute();
  }

  async countIssuedSince(purpose: TokenPurpose, accountId: string, since: number): Promise<number> {
    const row = await this.db
      .selectFrom("one_time_tokens")
      .select((eb) => eb.fn.countAll<number>().as("count"))
      .where("purpose", "=", purpose)
      .where("account_id", "=", accountId)
      .where("created_at", ">=", since)
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }
}
