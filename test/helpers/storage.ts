import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { type Engine, MIGRATION_LOCK, openStorage, type Storage } from "../../src/db/database.js";

export const engines: Engine[] = ["sqlite", "postgres"];

export const postgresUrl =
  process.env.PORTCULLIS_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
export const redisUrl = process.env.PORTCULLIS_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

export interface TestStorage {
  storage: Storage;
  /** The database URL another process could open (for CLI tests). */
  url: string;
  /** PostgreSQL: the private schema; SQLite: undefined. */
  schema: string | undefined;
  dataDir: string;
  dispose(): Promise<void>;
}

/**
 * Real storage for one test suite: a fresh SQLite file in a temporary folder, or a fresh schema in the
 * local PostgreSQL, dropped afterwards. Suites never see each other's rows.
 */
export async function openTestStorage(engine: Engine): Promise<TestStorage> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-test-"));
  if (engine === "sqlite") {
    const url = `sqlite:${path.join(dataDir, "portcullis.db")}`;
    const storage = openStorage(url);
    return {
      storage,
      url,
      schema: undefined,
      dataDir,
      async dispose() {
        await storage.close().catch(() => {});
        fs.rmSync(dataDir, { recursive: true, force: true });
      },
    };
  }
  const schema = `t_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
  const admin = new pg.Client({ connectionString: postgresUrl });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
  await admin.end();
  const storage = openStorage(postgresUrl, { schema });
  const url = `${postgresUrl}${postgresUrl.includes("?") ? "&" : "?"}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  return {
    storage,
    url,
    schema,
    dataDir,
    async dispose() {
      await storage.close().catch(() => {});
      const cleanup = new pg.Client({ connectionString: postgresUrl });
      await cleanup.connect();
      // Not while any suite is migrating: the migrator reads every schema's catalogue entries.
      await cleanup.query("select pg_advisory_lock($1)", [MIGRATION_LOCK]);
      await cleanup.query(`drop schema if exists ${schema} cascade`);
      await cleanup.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK]);
      await cleanup.end();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
