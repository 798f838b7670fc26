import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import SqliteDatabase from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { SERVING_AUTOCHECKPOINT_PAGES } from "../../src/db/checkpointer.js";
import { openStorage, type Storage } from "../../src/db/database.js";

// SQLite's write-ahead log only: PostgreSQL has no checkpoints of this kind.
describe("SQLite's write-ahead log in a serving process", () => {
  const opened: { close(): unknown }[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const item of opened.splice(0)) await item.close();
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });
  const file = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-wal-"));
    dirs.push(dir);
    return path.join(dir, "portcullis.db");
  };
  const open = (name: string, options = {}): Storage => {
    const storage = openStorage(`sqlite:${name}`, options);
    opened.push(storage);
    return storage;
  };

  it("checkpoints the log from a worker thread, so the serving connection's commits do not", async () => {
    const name = file();
    const storage = open(name, { backgroundCheckpoints: true });
    const sqlite = storage.sqlite!;
    expect(sqlite.pragma("wal_autocheckpoint", { simple: true })).toBe(SERVING_AUTOCHECKPOINT_PAGES);
    sqlite.exec("create table t (v text)");
    const before = fs.statSync(name).size;
    const insert = sqlite.prepare("insert into t values (?)");
    // About 500 pages, one commit each: far below the serving connection's own threshold.
    for (let i = 0; i < 2000; i += 1) insert.run("x".repeat(1000));
    const deadline = Date.now() + 5000;
    while (fs.statSync(name).size < before + 1_000_000 && Date.now() < deadline) await sleep(50);
    // The rows reached the database file itself: something checkpointed, and it was not this connection.
    expect(fs.statSync(name).size).toBeGreaterThan(before + 1_000_000);
    await storage.close();
    opened.splice(opened.indexOf(storage), 1);
    const reopened = new SqliteDatabase(name);
    opened.push(reopened);
    expect(reopened.prepare("select count(*) as n from t").get()).toEqual({ n: 2000 });
  });
});
