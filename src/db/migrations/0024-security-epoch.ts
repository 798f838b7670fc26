import { type Kysely, sql } from "kysely";

/**
 * The account's security epoch (docs/behaviour.md §7): a counter raised, in the same transaction, by every
 * event that must cancel the links already emailed — the email address changed, the password changed or
 * reset, every device disconnected, a second factor removed, the account frozen. Each emailed token that
 * grants something records the epoch it was issued in and works only while the account is still in it.
 *
 * A table of its own, one row per account that has had such an event (none: epoch 0), so that the
 * accounts rows, read whole in many places, keep their shape. Tokens issued before this migration belong
 * to epoch 0; the links that only take access away (lock the account, disable the API keys) record none.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("account_security_epochs")
    .addColumn("account_id", "text", (c) =>
      c.primaryKey().notNull().references("accounts.id").onDelete("cascade"),
    )
    .addColumn("epoch", "bigint", (c) => c.notNull())
    .execute();
  await db.schema.alterTable("one_time_tokens").addColumn("security_epoch", "bigint").execute();
  await sql`update one_time_tokens set security_epoch = 0
            where purpose not in ('lock_account', 'disable_api_keys')`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("one_time_tokens").dropColumn("security_epoch").execute();
  await db.schema.dropTable("account_security_epochs").execute();
}
