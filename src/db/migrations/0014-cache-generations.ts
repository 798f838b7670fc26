import { type Kysely, SqliteAdapter, sql } from "kysely";

/**
 * Generations the gateway's in-memory caches check on every decision. Triggers raise them in the same
 * transaction as any change to what the caches hold, whoever makes it (this server, another instance,
 * the CLI against the same database), so a cached key or account is never used after it changed: the
 * next decision on every instance sees the new generation and reads again.
 */
const keyColumns = [
  "key",
  "secret_sealed",
  "name",
  "permissions",
  "ip_allowlist",
  "valid_until",
  "query_from",
  "query_to",
  "nonce_window",
  "otp_type",
  "otp_sealed",
  "approval_threshold",
  "disabled_at",
];
/** Tables whose rows decide what an account may do through the gateway. */
const accountTables = ["accounts", "account_guards", "second_factors", "security_holds"];

/** A failed probe would abort PostgreSQL's migration transaction: ask Kysely which dialect it speaks. */
async function isSqlite(db: Kysely<unknown>): Promise<boolean> {
  return db.getExecutor().adapter instanceof SqliteAdapter;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("cache_generations")
    .addColumn("name", "text", (c) => c.primaryKey())
    .addColumn("value", "bigint", (c) => c.notNull())
    .execute();
  await sql`insert into cache_generations (name, value) values ('api_keys', 0), ('accounts', 0)`.execute(db);
  const bump = (name: string) => `update cache_generations set value = value + 1 where name = '${name}';`;
  if (await isSqlite(db)) {
    await sql
      .raw(
        `create trigger api_keys_changed after update of ${keyColumns.join(", ")} on api_keys begin ${bump("api_keys")} end`,
      )
      .execute(db);
    await sql
      .raw(`create trigger api_keys_deleted after delete on api_keys begin ${bump("api_keys")} end`)
      .execute(db);
    for (const table of accountTables) {
      for (const event of ["insert", "update", "delete"]) {
        await sql
          .raw(
            `create trigger ${table}_${event}_generation after ${event} on ${table} begin ${bump("accounts")} end`,
          )
          .execute(db);
      }
    }
    return;
  }
  await sql
    .raw(
      `create function bump_cache_generation() returns trigger language plpgsql as $$
       begin update cache_generations set value = value + 1 where name = TG_ARGV[0]; return null; end $$`,
    )
    .execute(db);
  await sql
    .raw(
      `create trigger api_keys_generation after update of ${keyColumns.join(", ")} or delete on api_keys
       for each statement execute function bump_cache_generation('api_keys')`,
    )
    .execute(db);
  for (const table of accountTables) {
    await sql
      .raw(
        `create trigger ${table}_generation after insert or update or delete on ${table}
         for each statement execute function bump_cache_generation('accounts')`,
      )
      .execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  if (await isSqlite(db)) {
    await sql.raw("drop trigger if exists api_keys_changed").execute(db);
    await sql.raw("drop trigger if exists api_keys_deleted").execute(db);
    for (const table of accountTables)
      for (const event of ["insert", "update", "delete"])
        await sql.raw(`drop trigger if exists ${table}_${event}_generation`).execute(db);
  } else {
    await sql.raw("drop trigger if exists api_keys_generation on api_keys").execute(db);
    for (const table of accountTables)
      await sql.raw(`drop trigger if exists ${table}_generation on ${table}`).execute(db);
    await sql.raw("drop function if exists bump_cache_generation()").execute(db);
  }
  await db.schema.dropTable("cache_generations").ifExists().execute();
}
