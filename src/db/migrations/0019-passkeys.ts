import type { Kysely } from "kysely";

/**
 * Passkeys (docs/behaviour.md §6 and §2): what kind of credential a security key or passkey is, as its
 * registration said (`device_type`: "singleDevice" or "multiDevice", beside the existing `backed_up`
 * flag), and the challenges of "sign in with a passkey", which belong to no account until an assertion
 * names one. Each challenge is spent once (`used_at`, set by a conditional update).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("second_factors").addColumn("device_type", "text").execute();
  await db.schema
    .createTable("passkey_challenges")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("challenge", "text", (c) => c.notNull().unique())
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("expires_at", "bigint", (c) => c.notNull())
    .addColumn("used_at", "bigint")
    .execute();
  await db.schema
    .createIndex("passkey_challenges_expiry")
    .on("passkey_challenges")
    .column("expires_at")
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("passkey_challenges").ifExists().execute();
  await db.schema.alterTable("second_factors").dropColumn("device_type").execute();
}
