import type { Kysely } from "kysely";

/**
 * Closed aggregates are chained in steps of a bounded size, oldest first occurrence first
 * (`AuditLog.flushAggregates`): the index finds each step's rows without sorting every closed row again.
 * A row's first occurrence never changes once written, so the index costs one entry per new aggregate.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createIndex("audit_aggregates_first_at")
    .on("audit_aggregates")
    .column("first_at")
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex("audit_aggregates_first_at").ifExists().execute();
}
