import { type Kysely, SqliteAdapter, sql } from "kysely";

/**
 * SQLite only: the audit log's layout for appending many entries a second (PostgreSQL keeps its own).
 *
 * - `seq` becomes the table's rowid (`integer primary key`). Declared `bigint primary key`, SQLite kept
 *   a rowid of its own and a unique index on `seq` beside it: a second B-tree written by every append.
 * - The index by account leaves the table for `audit_account_entries`, which the audit log brings up
 *   to date in bulk (`AuditLog.indexAccounts`), up to `audit_account_index.through`. In the table, each
 *   group commit wrote one index page per account it touched — the largest part of a gateway batch's
 *   write; in bulk, one page holds many entries of each account. On SQLite entries are numbered by the
 *   one writer in commit order, so "everything up to `through`" is exact; on PostgreSQL numbers come
 *   from a sequence and may commit out of order, so the index stays in the table there.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  if (!(db.getExecutor().adapter instanceof SqliteAdapter)) return;
  await sql`create table audit_log_rowid (
      seq integer primary key, at bigint not null, account_id text, actor text not null, ip text,
      location text, user_agent text, event text not null, outcome text not null, details text not null,
      prev_hash text not null, hash text not null, chain_id bigint not null default 1,
      chain_seq bigint not null default 0)`.execute(db);
  await sql`insert into audit_log_rowid (seq, at, account_id, actor, ip, location, user_agent, event,
      outcome, details, prev_hash, hash, chain_id, chain_seq)
    select seq, at, account_id, actor, ip, location, user_agent, event, outcome, details, prev_hash, hash,
      chain_id, chain_seq from audit_log order by seq`.execute(db);
  await sql`drop table audit_log`.execute(db);
  await sql`alter table audit_log_rowid rename to audit_log`.execute(db);
  await sql`create unique index audit_log_chain on audit_log (chain_id, chain_seq)`.execute(db);

  await sql`create table audit_account_entries (account_id text not null, seq integer not null,
      primary key (account_id, seq)) without rowid`.execute(db);
  await sql`insert into audit_account_entries (account_id, seq)
    select account_id, seq from audit_log where account_id is not null`.execute(db);
  await sql`create table audit_account_index (id integer primary key check (id = 1), through bigint not null)`.execute(
    db,
  );
  await sql`insert into audit_account_index (id, through) select 1, coalesce(max(seq), 0) from audit_log`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  if (!(db.getExecutor().adapter instanceof SqliteAdapter)) return;
  await sql`drop table audit_account_index`.execute(db);
  await sql`drop table audit_account_entries`.execute(db);
  await sql`create index audit_log_account on audit_log (account_id, seq)`.execute(db);
  // The rowid layout stays: the columns and their meaning are those of before.
}
