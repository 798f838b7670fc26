import type { Kysely } from "kysely";

// docs/behaviour.md §7 (Master Key, Global Settings Lock), §12 (anti-phishing code), §13 (recovery).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("accounts").addColumn("master_key_hash", "text").execute();
  await db.schema.alterTable("accounts").addColumn("global_lock_since", "bigint").execute();
  await db.schema.alterTable("accounts").addColumn("global_lock_delay_days", "integer").execute();
  await db.schema.alterTable("accounts").addColumn("global_lock_unlocks_at", "bigint").execute();
  // A session opened with the Master Key bypass may do nothing but enroll a new second factor.
  await db.schema
    .alterTable("sessions")
    .addColumn("enrollment_required", "integer", (c) => c.notNull().defaultTo(0))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("sessions").dropColumn("enrollment_required").execute();
  for (const column of [
    "global_lock_unlocks_at",
    "global_lock_delay_days",
    "global_lock_since",
    "master_key_hash",
  ]) {
    await db.schema.alterTable("accounts").dropColumn(column).execute();
  }
}
