import { type Kysely, sql } from "kysely";

/**
 * The outbox keeps what to send, sealed, instead of rendered bodies in clear: `payload` replaces the
 * subject and body columns and is cleared once the message is sent. Unsent rows written before this
 * migration keep their rendered text (marked "plain:") so they are still delivered, then cleared.
 *
 * Refusals of unauthenticated requests are counted per source and minute in `audit_aggregates` and
 * written to the audit chain as one entry with the count when the minute is over.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("outbox").addColumn("payload", "text").execute();
  const unsent = await sql<{ id: string; subject: string; body_text: string; body_html: string }>`
    select id, subject, body_text, body_html from outbox where sent_at is null`.execute(db);
  for (const row of unsent.rows) {
    const plain = `plain:${JSON.stringify({ subject: row.subject, text: row.body_text, html: row.body_html })}`;
    await sql`update outbox set payload = ${plain} where id = ${row.id}`.execute(db);
  }
  for (const column of ["subject", "body_text", "body_html"]) {
    await db.schema.alterTable("outbox").dropColumn(column).execute();
  }
  await db.schema.createIndex("outbox_sent").on("outbox").column("sent_at").execute();

  await db.schema
    .createTable("audit_aggregates")
    .addColumn("key", "text", (c) => c.notNull())
    .addColumn("window_start", "bigint", (c) => c.notNull())
    .addColumn("count", "integer", (c) => c.notNull())
    .addColumn("first_at", "bigint", (c) => c.notNull())
    .addColumn("last_at", "bigint", (c) => c.notNull())
    .addColumn("account_id", "text")
    .addColumn("actor", "text", (c) => c.notNull())
    .addColumn("ip", "text")
    .addColumn("location", "text")
    .addColumn("user_agent", "text")
    .addColumn("event", "text", (c) => c.notNull())
    .addColumn("outcome", "text", (c) => c.notNull())
    .addColumn("details", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("audit_aggregates_pk", ["key", "window_start"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("audit_aggregates").ifExists().execute();
  await db.schema.dropIndex("outbox_sent").ifExists().execute();
  // Sealed payloads cannot be turned back into bodies here: unsent rows are dropped with the column.
  await sql`delete from outbox where sent_at is null`.execute(db);
  for (const column of ["subject", "body_text", "body_html"]) {
    await db.schema
      .alterTable("outbox")
      .addColumn(column, "text", (c) => c.notNull().defaultTo(""))
      .execute();
  }
  await db.schema.alterTable("outbox").dropColumn("payload").execute();
}
