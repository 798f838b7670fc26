import { type Kysely, SqliteAdapter, sql } from "kysely";

/**
 * The audit log becomes a set of chains, one per running instance, so that appends of different
 * instances never wait for each other on one row. `audit_head` keeps one row per chain (its id, when it
 * was opened, its last position, hash and time, when it was closed); every entry names its chain and its
 * position in it (`chain_id`, `chain_seq`) besides the global order key `seq`.
 *
 * The single chain written so far becomes chain 1, the root chain, unchanged: its entries keep their
 * hashes (`legacy_entries` counts them, since their hashes do not cover chain and position) and
 * `chain_seq = seq`. On PostgreSQL `seq` and chain ids come from sequences from now on: `nextval` takes
 * no row lock, so instances do not queue for a number.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const sqlite = db.getExecutor().adapter instanceof SqliteAdapter;
  await db.schema
    .alterTable("audit_log")
    .addColumn("chain_id", "bigint", (c) => c.notNull().defaultTo(1))
    .execute();
  await db.schema
    .alterTable("audit_log")
    .addColumn("chain_seq", "bigint", (c) => c.notNull().defaultTo(0))
    .execute();
  await sql`update audit_log set chain_seq = seq`.execute(db);
  await db.schema
    .createIndex("audit_log_chain")
    .on("audit_log")
    .columns(["chain_id", "chain_seq"])
    .unique()
    .execute();

  await db.schema.alterTable("audit_head").renameColumn("last_seq", "last_chain_seq").execute();
  for (const column of ["opened_at", "last_at", "legacy_entries"]) {
    await db.schema
      .alterTable("audit_head")
      .addColumn(column, "bigint", (c) => c.notNull().defaultTo(0))
      .execute();
  }
  await db.schema.alterTable("audit_head").addColumn("closed_at", "bigint").execute();
  await sql`update audit_head set
      legacy_entries = last_chain_seq,
      opened_at = coalesce((select min(at) from audit_log), 0),
      last_at = coalesce((select max(at) from audit_log), 0)
    where id = 1`.execute(db);

  if (sqlite) return;
  // Every write names these columns; no default is left to put an entry somewhere by accident.
  await sql`alter table audit_log alter column chain_id drop default, alter column chain_seq drop default`.execute(
    db,
  );
  await sql`create sequence audit_log_seq`.execute(db);
  await sql`select setval('audit_log_seq', max(seq)) from audit_log having count(*) > 0`.execute(db);
  await sql`create sequence audit_chain_ids start with 2`.execute(db);
}

/**
 * Back to one chain: possible only while chain 1 is the only one (several chains cannot be merged into
 * one without the data key, and dropping them would lose entries).
 */
export async function down(db: Kysely<unknown>): Promise<void> {
  const others = await sql<{ n: number }>`select count(*) as n from audit_head where id <> 1`.execute(db);
  if (Number(others.rows[0]?.n ?? 0) > 0) {
    throw new Error("the audit log has several chains; they cannot be merged back into one");
  }
  if (!(db.getExecutor().adapter instanceof SqliteAdapter)) {
    await sql`drop sequence if exists audit_chain_ids`.execute(db);
    await sql`drop sequence if exists audit_log_seq`.execute(db);
  }
  await db.schema.dropIndex("audit_log_chain").ifExists().execute();
  for (const column of ["chain_seq", "chain_id"]) {
    await db.schema.alterTable("audit_log").dropColumn(column).execute();
  }
  for (const column of ["closed_at", "legacy_entries", "last_at", "opened_at"]) {
    await db.schema.alterTable("audit_head").dropColumn(column).execute();
  }
  await db.schema.alterTable("audit_head").renameColumn("last_chain_seq", "last_seq").execute();
}
