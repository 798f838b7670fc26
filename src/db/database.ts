import fs from "node:fs";
import path from "node:path";
import SqliteDatabase from "better-sqlite3";
import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  Kysely,
  type Migration,
  type MigrationProvider,
  Migrator,
  PostgresDialect,
  SqliteAdapter,
  SqliteDialect,
  type SqliteDialectConfig,
  SqliteDriver,
  sql,
} from "kysely";
import pg from "pg";
import { sqlitePath } from "../config/env.js";
import { BackgroundCheckpointer, SERVING_AUTOCHECKPOINT_PAGES } from "./checkpointer.js";
import * as foundation from "./migrations/0001-foundation.js";
import * as secondFactors from "./migrations/0002-second-factors.js";
import * as subsystems from "./migrations/0003-subsystems.js";
import * as transactionAuthorization from "./migrations/0004-transaction-authorization.js";
import * as globalLock from "./migrations/0005-global-lock-and-recovery.js";
import * as apiKeys from "./migrations/0006-api-keys.js";
import * as apiKeyLimits from "./migrations/0007-api-key-limits.js";
import * as apiKeyOtpStep from "./migrations/0008-api-key-otp-step.js";
import * as gatewayClosed from "./migrations/0009-gateway-closed.js";
import * as stepUpSession from "./migrations/0010-step-up-session.js";
import * as sealedOutbox from "./migrations/0011-sealed-outbox-and-audit-aggregates.js";
import * as keyDialects from "./migrations/0013-key-dialects.js";
import * as cacheGenerations from "./migrations/0014-cache-generations.js";
import * as accountFreeze from "./migrations/0015-account-freeze.js";
import * as accountPlaces from "./migrations/0016-account-places.js";
import * as auditChains from "./migrations/0017-audit-chains.js";
import * as breachedPassword from "./migrations/0018-breached-password.js";
import * as passkeys from "./migrations/0019-passkeys.js";
import * as auditLogSqliteLayout from "./migrations/0020-audit-log-sqlite-layout.js";
import * as apiKeyStateJournal from "./migrations/0021-api-key-state-journal.js";
import * as auditAggregatesByFirst from "./migrations/0022-audit-aggregates-by-first.js";
import * as subsystemsGeneration from "./migrations/0023-subsystems-generation.js";
import * as securityEpoch from "./migrations/0024-security-epoch.js";
import * as auditAggregateMac from "./migrations/0025-audit-aggregate-mac.js";
import type { Database } from "./schema.js";

export type Engine = "sqlite" | "postgres";

export interface Storage {
  db: Kysely<Database>;
  engine: Engine;
  /**
   * SQLite only: the one connection kysely also uses, for the gateway's hot path. A statement run on it
   * inside a kysely transaction's callback joins that transaction; outside one it runs at once,
   * synchronously, and sees whatever the connection has written (an open transaction's rows too).
   */
  sqlite?: SqliteDatabase.Database;
  close(): Promise<void>;
}

// BIGINT columns hold epoch milliseconds and counters, all within Number's exact range.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

/**
 * Kysely prepares every query afresh, and better-sqlite3 compiles SQL on each prepare(): reusing the
 * compiled statement by its text removes a fifth of a session check's CPU. Bounded, oldest out first.
 */
function withStatementCache(sqlite: SqliteDatabase.Database, limit = 1000) {
  const statements = new Map<string, SqliteDatabase.Statement>();
  return {
    close: () => sqlite.close(),
    prepare(sql: string) {
      let statement = statements.get(sql);
      if (!statement) {
        statement = sqlite.prepare(sql);
        if (statements.size >= limit) statements.delete(statements.keys().next().value!);
        statements.set(sql, statement);
      }
      return statement;
    },
  };
}

export interface OpenOptions {
  /** PostgreSQL only: the schema to work in (tests give each run its own). */
  schema?: string;
  poolSize?: number;
  /**
   * SQLite only: checkpoint the write-ahead log from a worker thread (`BackgroundCheckpointer`), for a
   * serving process; commits then rarely pay for a checkpoint.
   */
  backgroundCheckpoints?: boolean;
}

/**
 * The database file holds password hashes, sealed secrets and the audit log: it is created readable by
 * its owner only (0600), and an existing one that others could read is tightened to that.
 */
function createPrivateFile(file: string): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.closeSync(fs.openSync(file, "a", 0o600));
  ownerOnly(file);
}

function ownerOnly(file: string): void {
  try {
    if ((fs.statSync(file).mode & 0o077) !== 0) fs.chmodSync(file, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}

export function openStorage(databaseUrl: string, options: OpenOptions = {}): Storage {
  const file = sqlitePath(databaseUrl);
  if (file !== undefined) {
    if (file !== ":memory:") createPrivateFile(file);
    const sqlite = new SqliteDatabase(file);
    // WAL lets the CLI read while a server writes; busy_timeout makes a second writer wait instead of failing.
    sqlite.pragma("journal_mode = WAL");
    // SQLite gives the -wal and -shm files the database file's mode; ones left by an older version are
    // tightened too.
    if (file !== ":memory:") for (const suffix of ["-wal", "-shm"]) ownerOnly(`${file}${suffix}`);
    sqlite.pragma("busy_timeout = 5000");
    sqlite.pragma("foreign_keys = ON");
    sqlite.pragma("synchronous = NORMAL");
    const db = new Kysely<Database>({
      dialect: new ImmediateSqliteDialect({ database: withStatementCache(sqlite) }),
    });
    if (!options.backgroundCheckpoints || file === ":memory:")
      return { db, engine: "sqlite", sqlite, close: () => db.destroy() };
    sqlite.pragma(`wal_autocheckpoint = ${SERVING_AUTOCHECKPOINT_PAGES}`);
    const checkpointer = new BackgroundCheckpointer(file);
    const close = async () => {
      await checkpointer.stop();
      await db.destroy();
    };
    return { db, engine: "sqlite", sqlite, close };
  }
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: 5000,
    ...(options.schema ? { options: `-c search_path=${options.schema}` } : {}),
  });
  // A client losing its connection must not crash the process, idle or checked out (pg-pool listens only on
  // idle ones); the query in flight fails on its own and is answered 503.
  pool.on("error", () => {});
  pool.on("connect", (client) => client.on("error", () => {}));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { db, engine: "postgres", close: () => db.destroy() };
}

const migrations: Record<string, Migration> = {
  "0001-foundation": foundation,
  "0002-second-factors": secondFactors,
  "0003-subsystems": subsystems,
  "0004-transaction-authorization": transactionAuthorization,
  "0005-global-lock-and-recovery": globalLock,
  "0006-api-keys": apiKeys,
  "0007-api-key-limits": apiKeyLimits,
  "0008-api-key-otp-step": apiKeyOtpStep,
  "0009-gateway-closed": gatewayClosed,
  "0010-step-up-session": stepUpSession,
  "0011-sealed-outbox-and-audit-aggregates": sealedOutbox,
  "0013-key-dialects": keyDialects,
  "0014-cache-generations": cacheGenerations,
  "0015-account-freeze": accountFreeze,
  "0016-account-places": accountPlaces,
  "0017-audit-chains": auditChains,
  "0018-breached-password": breachedPassword,
  "0019-passkeys": passkeys,
  "0020-audit-log-sqlite-layout": auditLogSqliteLayout,
  "0021-api-key-state-journal": apiKeyStateJournal,
  "0022-audit-aggregates-by-first": auditAggregatesByFirst,
  "0023-subsystems-generation": subsystemsGeneration,
  "0024-security-epoch": securityEpoch,
  "0025-audit-aggregate-mac": auditAggregateMac,
};

const provider: MigrationProvider = { getMigrations: async () => migrations };

/** SQLite: how long a process waits for another one's migrations before it gives up. */
const MIGRATION_BUSY_TIMEOUT_MS = 120_000;

/** PostgreSQL advisory lock held while migrating, and by anything that drops schemas ("port"). */
export const MIGRATION_LOCK = 0x706f7274;

async function runMigrations(
  db: Kysely<Database>,
  migrationTableSchema: string | undefined,
  upTo?: string,
): Promise<string[]> {
  // Migrations are independent of each other: a database that took a later-numbered one first (built
  // between releases) still takes the others.
  const migrator = new Migrator({
    db,
    provider,
    allowUnorderedMigrations: true,
    ...(migrationTableSchema ? { migrationTableSchema } : {}),
  });
  const { error, results } = upTo ? await migrator.migrateTo(upTo) : await migrator.migrateToLatest();
  if (error) throw error;
  return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
}

export function migrateToLatest(storage: Storage): Promise<string[]> {
  return migrate(storage);
}

/** The schema as of migration `name` (those after it undone): what an older release left (upgrade tests). */
export function migrateUpTo(storage: Storage, name: string): Promise<string[]> {
  return migrate(storage, name);
}

/**
 * Transactions on SQLite begin IMMEDIATE: they take the database's write lock at BEGIN, waiting for another
 * connection's writer within the busy timeout. kysely begins them DEFERRED, so a transaction that read
 * before it wrote could not take the lock once another process (the CLI, a second process migrating) had
 * committed since that read: SQLite refuses the upgrade at once (SQLITE_BUSY_SNAPSHOT) instead of waiting,
 * and the request failed. Within this process kysely's one connection already runs one transaction at a
 * time, so taking the lock early costs nothing here.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("begin immediate"));
  }
}

class ImmediateSqliteDialect extends SqliteDialect {
  constructor(private readonly config: SqliteDialectConfig) {
    super(config);
  }

  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.config);
  }
}

/**
 * SQLite runs DDL inside transactions, though kysely's SQLite adapter says it does not; the migrator would
 * then commit each statement of a migration as it goes, and a crash half-way through one (a table copied
 * and dropped, its copy not yet renamed) would leave the schema half changed and the migration unable to
 * run again. Migrating through this adapter puts the pending migrations and their bookkeeping in one
 * transaction, as on PostgreSQL.
 */
class TransactionalDdlSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

class MigratingSqliteDialect extends ImmediateSqliteDialect {
  override createAdapter(): SqliteAdapter {
    return new TransactionalDdlSqliteAdapter();
  }
}

/** Kysely for the migrator over the storage's own connection, which stays open when this is dropped. */
function sqliteMigrationDb(connection: SqliteDatabase.Database): Kysely<Database> {
  return new Kysely<Database>({
    dialect: new MigratingSqliteDialect({
      database: { prepare: (text) => connection.prepare(text), close() {} },
    }),
  });
}

async function migrate({ db, engine, sqlite }: Storage, upTo?: string): Promise<string[]> {
  if (engine === "sqlite") {
    // A second process starting meanwhile (a server and the CLI together) waits for this one's upgrade,
    // which may copy a whole table, rather than give up after the serving connection's timeout; then it
    // finds nothing left to do.
    const serving = sqlite!.pragma("busy_timeout", { simple: true });
    sqlite!.pragma(`busy_timeout = ${MIGRATION_BUSY_TIMEOUT_MS}`);
    try {
      return await runMigrations(sqliteMigrationDb(sqlite!), undefined, upTo);
    } finally {
      sqlite!.pragma(`busy_timeout = ${serving}`);
    }
  }
  // On PostgreSQL the migrator reads the catalogue of every schema in the database, so it must be told its
  // own (else it finds another deployment's bookkeeping tables), and a schema dropped meanwhile would
  // break that read: migrations run on one connection holding an advisory lock that schema droppers take
  // too. Instances starting together thereby migrate one after another.
  return db.connection().execute(async (connection) => {
    await sql`select pg_advisory_lock(${MIGRATION_LOCK})`.execute(connection);
    try {
      const schema = (await sql<{ schema: string }>`select current_schema() as schema`.execute(connection))
        .rows[0]?.schema;
      return await runMigrations(connection, schema, upTo);
    } finally {
      await sql`select pg_advisory_unlock(${MIGRATION_LOCK})`.execute(connection);
    }
  });
}
