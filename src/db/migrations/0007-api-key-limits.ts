import type { Kysely } from "kysely";

// docs/behaviour.md §11: the per-key decaying rate counter, per-key 2FA, approval thresholds and the temporary lockout.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable("api_keys")
    .addColumn("rate_level", "double precision", (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema
    .alterTable("api_keys")
    .addColumn("rate_at", "bigint", (c) => c.notNull().defaultTo(0))
    .execute();
  // "static" or "totp"; the password or the TOTP seed sealed with the data key, bound to the key's id.
  await db.schema.alterTable("api_keys").addColumn("otp_type", "text").execute();
  await db.schema.alterTable("api_keys").addColumn("otp_sealed", "text").execute();
  // Notional per order or withdrawal above which a request waits for the owner's approval (decimal text).
  await db.schema.alterTable("api_keys").addColumn("approval_threshold", "text").execute();
  // Bad signatures, nonces and keys per API key or IP: `failures` since `window_start`, locked until then.
  await db.schema
    .createTable("api_lockouts")
    .addColumn("subject", "text", (c) => c.primaryKey())
    .addColumn("failures", "integer", (c) => c.notNull())
    .addColumn("window_start", "bigint", (c) => c.notNull())
    .addColumn("locked_until", "bigint", (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("api_lockouts").ifExists().execute();
  for (const column of ["approval_threshold", "otp_sealed", "otp_type", "rate_at", "rate_level"]) {
    await db.schema.alterTable("api_keys").dropColumn(column).execute();
  }
}
