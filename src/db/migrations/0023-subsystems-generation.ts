import { type Kysely, SqliteAdapter, sql } from "kysely";

/**
 * A third cache generation, for the subsystems' states and maintenance windows: raised by triggers in
 * the same transaction as any change to them (this server, another instance, the CLI), so the gateway,
 * which checks the generations before every decision, never decides on a market's mode or a
 * maintenance another process has changed. Before, another instance saw such a change only when its
 * copy of the rows, kept for a second, ran out.
 */
const tables = ["subsystems", "maintenance_windows"];

async function isSqlite(db: Kysely<unknown>): Promise<boolean> {
  return db.getExecutor().adapter instanceof SqliteAdapter;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`insert into cache_generations (name, value) values ('subsystems', 0)`.execute(db);
  if (await isSqlite(db)) {
    for (const table of tables)
      for (const event of ["insert", "update", "delete"])
        await sql
          .raw(
            `create trigger ${table}_${event}_generation after ${event} on ${table} begin update cache_generations set value = value + 1 where name = 'subsystems'; end`,
          )
          .execute(db);
    return;
  }
  // bump_cache_generation() comes with the first generations (0014).
  for (const table of tables)
    await sql
      .raw(
        `create trigger ${table}_generation after insert or update or delete on ${table}
         for each statement execute function bump_cache_generation('subsystems')`,
      )
      .execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  if (await isSqlite(db)) {
    for (const table of tables)
      for (const event of ["insert", "update", "delete"])
        await sql.raw(`drop trigger if exists ${table}_${event}_generation`).execute(db);
  } else {
    for (const table of tables)
      await sql.raw(`drop trigger if exists ${table}_generation on ${table}`).execute(db);
  }
  await sql`delete from cache_generations where name = 'subsystems'`.execute(db);
}
