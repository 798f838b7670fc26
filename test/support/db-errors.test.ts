import SqliteDatabase from "better-sqlite3";
import { sql } from "kysely";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { sqlitePath } from "../../src/config/env.js";
import { openStorage } from "../../src/db/database.js";
import { isDependencyFailure, isUniqueViolation } from "../../src/support/db-errors.js";
import { engines, openTestStorage, type TestStorage } from "../helpers/storage.js";

const coded = (code: string, message = "") => Object.assign(new Error(message), { code });

/** A promise and its resolve (Node 20 has no Promise.withResolvers). */
function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

describe("telling a dependency's failure from a bug", () => {
  it.each([
    ["SQLITE_BUSY", true],
    ["SQLITE_BUSY_SNAPSHOT", true],
    ["SQLITE_BUSY_TIMEOUT", true],
    ["SQLITE_BUSY_RECOVERY", true],
    ["SQLITE_IOERR", true],
    ["SQLITE_IOERR_WRITE", true],
    ["SQLITE_IOERR_SHORT_READ", true],
    ["SQLITE_FULL", true],
    ["SQLITE_CANTOPEN", true],
    ["SQLITE_CANTOPEN_ISDIR", true],
    ["ECONNREFUSED", true],
    ["57P01", true],
    ["08006", true],
    ["40001", true],
    ["40P01", true],
    ["55P03", true],
    // Bugs and bad input, not an unavailable dependency: answered as what they are.
    ["SQLITE_CONSTRAINT_UNIQUE", false],
    ["SQLITE_ERROR", false],
    ["SQLITE_MISMATCH", false],
    ["SQLITE_BUSYNESS", false],
    ["SQLITE_", false],
    ["23505", false],
    ["42P01", false],
    ["", false],
  ])("%s → %s", (code, unavailable) => {
    expect(isDependencyFailure(coded(code))).toBe(unavailable);
  });

  it("knows a lost connection by its message, and nothing by a missing error", () => {
    expect(isDependencyFailure(new Error("Connection terminated unexpectedly"))).toBe(true);
    expect(isDependencyFailure(new Error("column does not exist"))).toBe(false);
    expect(isDependencyFailure(null)).toBe(false);
    expect(isDependencyFailure({ code: 42 })).toBe(false);
  });

  it("knows a unique violation on both engines", () => {
    expect(isUniqueViolation(coded("23505"))).toBe(true);
    expect(isUniqueViolation(coded("SQLITE_CONSTRAINT_PRIMARYKEY"))).toBe(true);
    expect(isUniqueViolation(coded("SQLITE_CONSTRAINT_FOREIGNKEY"))).toBe(false);
  });
});

describe.each(engines)("a conflict the database reports as transient (%s)", (engine) => {
  let test: TestStorage;
  beforeEach(async () => {
    test = await openTestStorage(engine);
    await sql`create table conflict_rows (id integer primary key, n integer not null)`.execute(
      test.storage.db,
    );
    await sql`insert into conflict_rows (id, n) values (1, 0), (2, 0)`.execute(test.storage.db);
  });
  afterEach(async () => {
    await test.dispose();
  });

  it("is told apart from a bug, with the error the driver really raises", async () => {
    let raised: unknown;
    if (engine === "postgres") {
      // Two transactions taking the same two rows in opposite orders: PostgreSQL ends one of them.
      const other = openStorage(test.url);
      try {
        const lockedFirst = deferred();
        const bothLocked = deferred();
        const runs = [
          { db: test.storage.db, first: 1, second: 2 },
          { db: other.db, first: 2, second: 1 },
        ].map(({ db, first, second }) =>
          db.transaction().execute(async (trx) => {
            await sql`update conflict_rows set n = n + 1 where id = ${first}`.execute(trx);
            if (first === 1) lockedFirst.resolve();
            else await lockedFirst.promise.then(() => bothLocked.resolve());
            await bothLocked.promise;
            await sql`update conflict_rows set n = n + 1 where id = ${second}`.execute(trx);
          }),
        );
        const settled = await Promise.allSettled(runs);
        const failed = settled.filter((r): r is PromiseRejectedResult => r.status === "rejected");
        expect(failed).toHaveLength(1);
        raised = failed[0]!.reason;
        expect((raised as { code?: string }).code).toBe("40P01");
      } finally {
        await other.close();
      }
    } else {
      // A DEFERRED transaction of a second connection reads, this one commits, the reader then writes.
      const file = sqlitePath(test.url)!;
      const reader = new SqliteDatabase(file);
      try {
        reader.exec("begin");
        reader.prepare("select n from conflict_rows where id = 1").get();
        await sql`update conflict_rows set n = n + 1 where id = 1`.execute(test.storage.db);
        try {
          reader.prepare("update conflict_rows set n = n + 1 where id = 2").run();
        } catch (error) {
          raised = error;
        }
        reader.exec("rollback");
      } finally {
        reader.close();
      }
      expect((raised as { code?: string }).code).toBe("SQLITE_BUSY_SNAPSHOT");
    }
    expect(isDependencyFailure(raised)).toBe(true);
  });
});
