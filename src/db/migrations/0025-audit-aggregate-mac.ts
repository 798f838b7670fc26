import type { Kysely } from "kysely";

/**
 * An aggregate waiting for its minute to end is a row anyone with write access to the database could
 * insert, and the flush used to chain it, signed with the chain's key like any entry. Each row now carries
 * an HMAC, under the chain's key, of everything its count and last time leave unchanged
 * (`AuditLog.flushAggregates` chains a row whose code does not match as a refusal, not as what it claims).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("audit_aggregates").addColumn("mac", "text").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("audit_aggregates").dropColumn("mac").execute();
}
