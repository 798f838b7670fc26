import type { Kysely } from "kysely";

// docs/behaviour.md §7 (holds), §8 (funding and trading 2FA, trading passcode, grants), withdrawal address book.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable("accounts")
    .addColumn("funding_2fa", "integer", (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema
    .alterTable("accounts")
    .addColumn("trading_2fa", "integer", (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema.alterTable("accounts").addColumn("trading_passcode_hash", "text").execute();

  await db.schema.alterTable("actions").addColumn("grant_id", "text").execute();
  await db.schema.alterTable("actions").addColumn("grant_expires_at", "bigint").execute();
  await db.schema.alterTable("actions").addColumn("redeemed_at", "bigint").execute();

  await db.schema
    .createTable("security_holds")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("account_id", "text", (c) => c.notNull().references("accounts.id").onDelete("cascade"))
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("until", "bigint", (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex("security_holds_account")
    .on("security_holds")
    .columns(["account_id", "until"])
    .execute();

  await db.schema
    .createTable("withdrawal_addresses")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("account_id", "text", (c) => c.notNull().references("accounts.id").onDelete("cascade"))
    .addColumn("asset", "text", (c) => c.notNull())
    .addColumn("address", "text", (c) => c.notNull())
    .addColumn("label", "text", (c) => c.notNull())
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("confirmed_at", "bigint")
    .addColumn("usable_from", "bigint")
    .addColumn("removed_at", "bigint")
    .execute();
  await db.schema
    .createIndex("withdrawal_addresses_account")
    .on("withdrawal_addresses")
    .columns(["account_id", "asset"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("withdrawal_addresses").ifExists().execute();
  await db.schema.dropTable("security_holds").ifExists().execute();
  for (const column of ["redeemed_at", "grant_expires_at", "grant_id"]) {
    await db.schema.alterTable("actions").dropColumn(column).execute();
  }
  for (const column of ["trading_passcode_hash", "trading_2fa", "funding_2fa"]) {
    await db.schema.alterTable("accounts").dropColumn(column).execute();
  }
}
