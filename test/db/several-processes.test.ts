import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { sql } from "kysely";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { migrateToLatest } from "../../src/db/database.js";
import { engines, openTestStorage, type TestStorage } from "../helpers/storage.js";

const run = promisify(execFile);

/** Runs a TypeScript entry point of the repository in a process of its own. */
function node(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, ["--import", "tsx", ...args], {
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
}

describe.each(engines)("one database, several processes (%s)", (engine) => {
  let test: TestStorage;
  beforeEach(async () => {
    test = await openTestStorage(engine);
  });
  afterEach(async () => {
    await test.dispose();
  });

  it("brings a new database up to date once when four processes start migrating it at the same moment", async () => {
    const outputs = await Promise.all(
      [1, 2, 3, 4].map(() =>
        node(["src/cli/main.ts", "migrate"], { PORTCULLIS_DATABASE_URL: test.url }).then(
          ({ stdout }) => stdout.trim(),
          (error: { stdout?: string; stderr?: string }) => `failed: ${error.stderr ?? error.stdout ?? error}`,
        ),
      ),
    );
    // Each process either applied every migration, all in one transaction, or found nothing left to do.
    const applied = outputs.filter((output) => output.startsWith("applied: "));
    expect(applied).toHaveLength(1);
    expect(outputs.filter((output) => output === "schema is up to date")).toHaveLength(3);
    expect(applied[0]).toContain("0001-foundation");
    expect(await migrateToLatest(test.storage)).toEqual([]);
  });

  it("commits every transaction that read before it wrote while other processes commit meanwhile", async () => {
    const { db } = test.storage;
    await sql`create table process_writes (id text primary key)`.execute(db);
    const perProcess = 40;
    // Two other processes and this one, each reading, pausing and then writing, all at once: on SQLite a
    // transaction that began by reading could not take the write lock once another process had committed
    // after its read, and failed at once instead of waiting.
    const others = [1, 2].map((n) =>
      node(["test/helpers/transaction-writer.ts", test.url, `process-${n}`, String(perProcess)]),
    );
    let here = 0;
    for (let i = 0; i < perProcess; i++) {
      await db.transaction().execute(async (trx) => {
        await sql`select count(*) as n from process_writes`.execute(trx);
        await new Promise((resolve) => setTimeout(resolve, 2));
        await sql`insert into process_writes (id) values (${`here-${i}`})`.execute(trx);
      });
      here += 1;
    }
    const reports = (await Promise.all(others)).map(
      ({ stdout }) =>
        JSON.parse(stdout.trim().split("\n").at(-1)!) as { committed: number; errors: string[] },
    );
    expect(reports).toEqual([
      { committed: perProcess, errors: [] },
      { committed: perProcess, errors: [] },
    ]);
    expect(here).toBe(perProcess);
    const { rows } = await sql<{ n: number | string }>`select count(*) as n from process_writes`.execute(db);
    expect(Number(rows[0]!.n)).toBe(3 * perProcess);
  });
});
