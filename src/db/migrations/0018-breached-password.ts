import type { Kysely } from "kysely";

/**
 * When a sign-in found the account's password on the list of passwords known from breaches (null while
 * not): the owner is asked to change it, and a new password that passes the rules clears it.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("accounts").addColumn("password_breached_at", "bigint").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("accounts").dropColumn("password_breached_at").execute();
}
