import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import SqliteDatabase from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { SERVING_AUTOCHECKPOINT_PAGES } from "../../src/db/checkpointer.js";
import { CommitWatch } from "../../src/db/commit-watch.js";
import { openStorage, type Storage } from "../../src/db/database.js";

// SQLite's write-ahead log only: PostgreSQL has neither a -shm file nor checkpoints of this kind.
describe("SQLite commits seen and checkpointed", () => {
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

  it("tells of every commit, by this connection or another, and of nothing else", () => {
    const name = file();
    const own = open(name).sqlite!;
    own.exec("create table t (v integer)");
    const watch = new CommitWatch(own);
    opened.push(watch);
    expect(watch.changed()).toBe(true);
    expect(watch.changed()).toBe(false);
    own.prepare("select count(*) from t").get();
    expect(watch.changed()).toBe(false);
    own.prepare("insert into t values (1)").run();
    expect(watch.changed()).toBe(true);
    expect(watch.changed()).toBe(false);
    const other = new SqliteDatabase(name);
    opened.push(other);
    for (let i = 0; i < 50; i += 1) {
      other.prepare("insert into t values (?)").run(i);
      expect(watch.changed()).toBe(true);
      expect(watch.changed()).toBe(false);
    }
    // A transaction still open is no commit; its rollback is none either, and forget() looks again.
    own.exec("begin immediate; insert into t values (2)");
    expect(watch.changed()).toBe(false);
    own.exec("rollback");
    expect(watch.changed()).toBe(false);
    watch.forget();
    expect(watch.changed()).toBe(true);
  });

  it("takes every look as a change where there is no -shm file", () => {
    const memory = new SqliteDatabase(":memory:");
    opened.push(memory);
    const watch = new CommitWatch(memory);
    expect(watch.changed()).toBe(true);
    expect(watch.changed()).toBe(true);
  });

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
