import { type Kysely, sql } from "kysely";

const subsystems = [
  "website",
  "api",
  "spot_engine",
  "futures_engine",
  "funding.crypto",
  "funding.ach",
  "funding.wire",
  "funding.card",
  "signups",
];

// docs/behaviour.md §10: subsystem status and scheduled maintenance windows.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("subsystems")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("message", "text")
    .addColumn("updated_at", "bigint", (c) => c.notNull())
    .execute();
  for (const id of subsystems) {
    await sql`insert into subsystems (id, status, message, updated_at) values (${id}, 'operational', null, 0)`.execute(
      db,
    );
  }
  await db.schema
    .createTable("maintenance_windows")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("subsystem", "text", (c) => c.notNull().references("subsystems.id"))
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("starts_at", "bigint", (c) => c.notNull())
    .addColumn("ends_at", "bigint", (c) => c.notNull())
    .addColumn("message", "text", (c) => c.notNull())
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("cancelled_at", "bigint")
    .execute();
  await db.schema
    .createIndex("maintenance_windows_time")
    .on("maintenance_windows")
    .columns(["ends_at", "starts_at"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("maintenance_windows").ifExists().execute();
  await db.schema.dropTable("subsystems").ifExists().execute();
}
