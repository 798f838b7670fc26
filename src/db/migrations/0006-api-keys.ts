import type { Kysely } from "kysely";

// docs/behaviour.md §11: API keys with Kraken-compatible signed requests.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("api_keys")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("account_id", "text", (c) => c.notNull().references("accounts.id").onDelete("cascade"))
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("key", "text", (c) => c.notNull().unique())
    .addColumn("secret_sealed", "text", (c) => c.notNull())
    .addColumn("permissions", "text", (c) => c.notNull())
    .addColumn("ip_allowlist", "text", (c) => c.notNull())
    .addColumn("valid_until", "bigint")
    .addColumn("query_from", "bigint")
    .addColumn("query_to", "bigint")
    .addColumn("nonce_window", "integer", (c) => c.notNull().defaultTo(0))
    // The highest nonce seen, as 20 zero-padded digits: u64 compares correctly as text on both engines.
    .addColumn("last_nonce", "text", (c) => c.notNull())
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("last_used_at", "bigint")
    .addColumn("disabled_at", "bigint")
    .addUniqueConstraint("api_keys_account_name", ["account_id", "name"])
    .execute();
  await db.schema
    .createTable("api_key_nonces")
    .addColumn("key_id", "text", (c) => c.notNull().references("api_keys.id").onDelete("cascade"))
    .addColumn("nonce", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("api_key_nonces_pk", ["key_id", "nonce"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("api_key_nonces").ifExists().execute();
  await db.schema.dropTable("api_keys").ifExists().execute();
}
