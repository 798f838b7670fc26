import type { AliasableExpression, ExpressionBuilder, Kysely } from "kysely";
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

/**
 * The links that only take access away (freeze the account, disable its API keys). They belong to no
 * security epoch: a thief who changes the password must not be able to cancel the owner's lock link.
 */
const OUTSIDE_THE_EPOCH: ReadonlySet<TokenPurpose> = new Set<TokenPurpose>([
  "lock_account",
  "disable_api_keys",
]);

/** Does a token of this purpose stop working when the account's security epoch moves on? */
export function boundToSecurityEpoch(purpose: TokenPurpose): boolean {
  return !OUTSIDE_THE_EPOCH.has(purpose);
}

/**
 * Cancels every emailed link of the account that grants something (a password reset, an email change's
 * confirmation, a device approval, a withdrawal address's confirmation, a bypass code, an email
 * verification) by moving the account to its next security epoch. Called inside the transaction of each
 * event that must cancel them — the email address changed, the password changed or reset, every device
 * disconnected, a second factor removed, the account frozen — so the links die exactly when the event
 * commits. Tokens issued later in that same transaction, or afterwards, belong to the new epoch.
 */
export async function advanceSecurityEpoch(db: Kysely<Database>, accountId: string): Promise<void> {
  await db
    .insertInto("account_security_epochs")
    .values({ account_id: accountId, epoch: 1 })
    .onConflict((oc) =>
      oc.column("account_id").doUpdateSet((eb) => ({ epoch: eb("account_security_epochs.epoch", "+", 1) })),
    )
    .execute();
}

/** The account's epoch now (0 until its first event), as an expression inside a query. */
function currentEpoch(
  eb: ExpressionBuilder<Database, "one_time_tokens">,
  accountId: string | null,
): AliasableExpression<number> {
  const row = eb.selectFrom("account_security_epochs").select("account_security_epochs.epoch");
  return eb.fn.coalesce(
    accountId === null
      ? row.whereRef("account_security_epochs.account_id", "=", "one_time_tokens.account_id")
      : row.where("account_security_epochs.account_id", "=", accountId),
    eb.lit(0),
  );
}

const noLongerValid = () =>
  new Problem(
    410,
    "expired",
    "This link no longer works: your account's security settings changed after it was sent. Ask for a new one.",
  );

export interface ConsumedToken {
  accountId: string;
  data: Record<string, unknown> | null;
}

/**
 * Links sent by email (verification, password reset, device approval): random, stored as SHA-256, with
 * an expiry, and spent by one conditional UPDATE so that of any number of parallel uses exactly one wins.
 * Each records the account's security epoch when issued (read in the INSERT itself) and is spent only
 * while the account is still in that epoch (checked in the same UPDATE): see advanceSecurityEpoch.
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
    const db = trx ?? this.db;
    await db
      .insertInto("one_time_tokens")
      .values((eb) => ({
        token_hash: hashToken(token),
        purpose,
        account_id: accountId,
        data: data ? JSON.stringify(data) : null,
        created_at: now,
        expires_at: now + ttlMs,
        security_epoch: boundToSecurityEpoch(purpose) ? currentEpoch(eb, accountId) : null,
      }))
      .execute();
    return token;
  }

  /** Checks a token without spending it (a reset that still needs the Master Key); throws as consume does. */
  async peek(purpose: TokenPurpose, token: string): Promise<ConsumedToken> {
    const now = this.clock.now();
    const row = await this.find(this.db, purpose, hashToken(token));
    if (!row)
      throw new Problem(400, "invalid_token", "This link is not valid. Check that you copied all of it.");
    if (row.used_at !== null) throw new Problem(410, "expired", "This link was already used.");
    if (row.expires_at <= now) throw new Problem(410, "expired", "This link has expired. Ask for a new one.");
    if (!row.in_epoch) throw noLongerValid();
    return { accountId: row.account_id, data: row.data ? JSON.parse(row.data) : null };
  }

  /**
   * Spends the token or throws: 400 invalid_token when unknown, 410 expired when used, out of date, or
   * issued before the account's current security epoch (the link is left as it is).
   */
  async consume(
    purpose: TokenPurpose,
    token: string,
    db: Kysely<Database> = this.db,
  ): Promise<ConsumedToken> {
    const now = this.clock.now();
    const tokenHash = hashToken(token);
    let spend = db
      .updateTable("one_time_tokens")
      .set({ used_at: now })
      .where("token_hash", "=", tokenHash)
      .where("purpose", "=", purpose)
      .where("used_at", "is", null)
      .where("expires_at", ">", now);
    if (boundToSecurityEpoch(purpose)) {
      spend = spend.where((eb) => eb("one_time_tokens.security_epoch", "=", currentEpoch(eb, null)));
    }
    const row = await spend.returning(["account_id", "data"]).executeTakeFirst();
    if (row) return { accountId: row.account_id, data: row.data ? JSON.parse(row.data) : null };
    const existing = await this.find(db, purpose, tokenHash);
    if (!existing)
      throw new Problem(400, "invalid_token", "This link is not valid. Check that you copied all of it.");
    if (existing.used_at !== null) throw new Problem(410, "expired", "This link was already used.");
    if (existing.expires_at <= now)
      throw new Problem(410, "expired", "This link has expired. Ask for a new one.");
    throw noLongerValid();
  }

  /** The token's row, and whether it is still in its account's security epoch (always, when not bound). */
  private async find(db: Kysely<Database>, purpose: TokenPurpose, tokenHash: string) {
    const row = await db
      .selectFrom("one_time_tokens")
      .select((eb) => [
        "one_time_tokens.account_id",
        "one_time_tokens.data",
        "one_time_tokens.used_at",
        "one_time_tokens.expires_at",
        "one_time_tokens.security_epoch",
        currentEpoch(eb, null).as("account_epoch"),
      ])
      .where("one_time_tokens.token_hash", "=", tokenHash)
      .where("one_time_tokens.purpose", "=", purpose)
      .executeTakeFirst();
    if (!row) return undefined;
    const inEpoch =
      !boundToSecurityEpoch(purpose) ||
      (row.security_epoch !== null &&
        row.account_epoch !== null &&
        Number(row.security_epoch) === Number(row.account_epoch));
    return { ...row, in_epoch: inEpoch };
  }

  /**
   * The account's next security epoch, inside the transaction of the event that calls for it: every link
   * it was emailed that grants something stops working (see advanceSecurityEpoch).
   */
  advanceSecurityEpoch(accountId: string, db: Kysely<Database>): Promise<void> {
    return advanceSecurityEpoch(db, accountId);
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

  /** How many links of a purpose an account was sent since `since`: the per-hour limits count these. */
  async countIssuedSince(
    purpose: TokenPurpose,
    accountId: string,
    since: number,
    db: Kysely<Database> = this.db,
  ): Promise<number> {
    const row = await db
      .selectFrom("one_time_tokens")
      .select((eb) => eb.fn.countAll<number>().as("count"))
      .where("purpose", "=", purpose)
      .where("account_id", "=", accountId)
      .where("created_at", ">=", since)
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }
}
