import { type Kysely, SqliteAdapter, sql } from "kysely";

/**
 * SQLite only: the journal of the gateway's per-key state (`MemoryGatewayState`). Each group-committed
 * batch appends one row holding the latest state of every key it changed, instead of updating each key's
 * row in `api_keys`: one page written at the end of one table instead of one page per key, scattered
 * over a table of wide rows. Each key's row is brought up to date from memory about a second later, a
 * few keys a batch, and the rows no key needs any more are deleted; what is left at start (after a
 * crash) is folded into `api_keys` before the first request. PostgreSQL keeps the state in `api_keys`,
 * written by one conditional statement per rule.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  if (!(db.getExecutor().adapter instanceof SqliteAdapter)) return;
  await sql`create table api_key_state_journal (seq integer primary key, states text not null)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  if (!(db.getExecutor().adapter instanceof SqliteAdapter)) return;
  await sql`drop table api_key_state_journal`.execute(db);
}
