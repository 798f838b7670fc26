import type { Kysely } from "kysely";

// RFC 6238 §5.2: a key's TOTP code is accepted once — the last step used, advanced atomically.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("api_keys").addColumn("otp_last_step", "bigint").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("api_keys").dropColumn("otp_last_step").execute();
}
