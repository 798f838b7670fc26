import type { Kysely } from "kysely";

// A confirmed step-up is spendable only by the session that confirmed it (or what that session rotated into).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("actions").addColumn("session_id", "text").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("actions").dropColumn("session_id").execute();
}
