import type { Kysely } from "kysely";

/**
 * Key dialects: a key signs as Kraken, KuCoin or Kraken Futures, fixed at creation; a KuCoin key's
 * passphrase, sealed; signatures accepted once within their window (KuCoin, and Kraken Futures requests
 * without a nonce); and weight budgets per key and pool over a fixed window (KuCoin's resource pools,
 * Kraken Futures' cost budget).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable("api_keys")
    .addColumn("dialect", "text", (c) => c.notNull().defaultTo("kraken"))
    .execute();
  await db.schema.alterTable("api_keys").addColumn("passphrase_sealed", "text").execute();
  await db.schema
    .createTable("api_key_signatures")
    .addColumn("key_id", "text", (c) => c.notNull())
    .addColumn("signature", "text", (c) => c.notNull())
    .addColumn("expires_at", "bigint", (c) => c.notNull())
    .addPrimaryKeyConstraint("api_key_signatures_pk", ["key_id", "signature"])
    .execute();
  await db.schema
    .createIndex("api_key_signatures_expires_at")
    .on("api_key_signatures")
    .column("expires_at")
    .execute();
  await db.schema
    .createTable("api_key_weights")
    .addColumn("key_id", "text", (c) => c.notNull())
    .addColumn("pool", "text", (c) => c.notNull())
    .addColumn("window_start", "bigint", (c) => c.notNull())
    .addColumn("used", "integer", (c) => c.notNull())
    .addPrimaryKeyConstraint("api_key_weights_pk", ["key_id", "pool"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("api_key_weights").ifExists().execute();
  await db.schema.dropTable("api_key_signatures").ifExists().execute();
  await db.schema.alterTable("api_keys").dropColumn("passphrase_sealed").execute();
  await db.schema.alterTable("api_keys").dropColumn("dialect").execute();
}
