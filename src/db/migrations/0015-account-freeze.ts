import type { Kysely } from "kysely";

/**
 * "Lock my account": when the owner froze the account from a security email (null while not frozen).
 * A column of accounts, so the triggers that raise the gateway's cache generation on every change of
 * an account row raise it for a freeze and a lift too: cached keys are refused on the next request.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("accounts").addColumn("frozen_at", "bigint").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("accounts").dropColumn("frozen_at").execute();
}
