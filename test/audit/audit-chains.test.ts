import { createHmac, randomBytes } from "node:crypto";
import { type Kysely, sql } from "kysely";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AuditLog, entryHash, ROOT_CHAIN } from "../../src/audit/audit-log.js";
import { migrateToLatest, migrateUpTo, openStorage, type Storage } from "../../src/db/database.js";
import type { AuditLogTable, Database } from "../../src/db/schema.js";
import { systemClock } from "../../src/support/clock.js";
import { engines, openTestStorage, postgresUrl, type TestStorage } from "../helpers/storage.js";

const chainKey = randomBytes(32);
const event = (instance: string, i: number) => ({
  event: "test.chains",
  outcome: "info" as const,
  details: { instance, i },
});

/**
 * Two instances on one database: on SQLite two AuditLog objects over the one storage (one process by
 * design), on PostgreSQL two storages with their own connection pools on the same schema, as two
 * processes would have.
 */
async function twoInstances(test: TestStorage): Promise<{ second: Storage; a: AuditLog; b: AuditLog }> {
  const second =
    test.storage.engine === "postgres" ? openStorage(postgresUrl, { schema: test.schema }) : test.storage;
  return {
    second,
    a: new AuditLog(test.storage.db, systemClock, chainKey),
    b: new AuditLog(second.db, systemClock, chainKey),
  };
}

describe.each(engines)("audit chains on %s (behaviour §12)", (engine) => {
  let test: TestStorage;
  let second: Storage;
  let a: AuditLog;
  let b: AuditLog;
  let db: Kysely<Database>;
  beforeEach(async () => {
    test = await openTestStorage(engine);
    await migrateToLatest(test.storage);
    ({ second, a, b } = await twoInstances(test));
    db = test.storage.db;
  });
  afterEach(async () => {
    if (second !== test.storage) await second.close();
    await test.dispose();
  });

  it("gives each instance a chain of its own: parallel appends from two instances lose nothing and verify", async () => {
    const appends = (log: AuditLog, name: string) =>
      Array.from({ length: 150 }, (_, i) =>
        i % 10 === 0
          ? // Some inside transactions of their own, as a change records itself.
            db.transaction().execute((trx) => log.append(event(name, i), null, trx))
          : log.append(event(name, i), null),
      );
    const seqs = await Promise.all([...appends(a, "a"), ...appends(b, "b")]);
    expect(new Set(seqs).size).toBe(300);
    expect(a.chainId).not.toBeNull();
    expect(b.chainId).not.toBeNull();
    expect(a.chainId).not.toBe(b.chainId);
    expect(a.chainId).not.toBe(ROOT_CHAIN);

    // Each instance's entries are in its own chain, positions 1…150, in global seq order.
    for (const [log, name] of [
      [a, "a"],
      [b, "b"],
    ] as const) {
      const rows = await db
        .selectFrom("audit_log")
        .selectAll()
        .where("chain_id", "=", log.chainId!)
        .orderBy("chain_seq")
        .execute();
      expect(rows.map((row) => row.chain_seq)).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));
      expect(rows.every((row) => JSON.parse(row.details).instance === name)).toBe(true);
      const bySeq = [...rows].sort((x, y) => x.seq - y.seq);
      expect(bySeq.map((row) => row.chain_seq)).toEqual(rows.map((row) => row.chain_seq));
    }
    // The root chain announces both, and holds nothing else.
    const root = await db
      .selectFrom("audit_log")
      .select(["event", "details"])
      .where("chain_id", "=", ROOT_CHAIN)
      .execute();
    expect(root.map((row) => [row.event, JSON.parse(row.details).chain]).sort()).toEqual(
      [
        ["audit.chain_opened", a.chainId],
        ["audit.chain_opened", b.chainId],
      ].sort(),
    );
    expect(await a.verify()).toEqual({ ok: true, checked: 302, chains: 3 });

    // Stopping records each chain's end in the root chain; an append after that opens a new chain.
    const first = a.chainId;
    await a.close();
    await b.close();
    expect(await b.verify()).toEqual({ ok: true, checked: 304, chains: 3 });
    await a.append(event("a", 150), null);
    expect(a.chainId).not.toBe(first);
    expect(await b.verify()).toEqual({ ok: true, checked: 306, chains: 4 });
  });

  it("keeps a chain whole when its first append rolls back", async () => {
    await db
      .transaction()
      .execute(async (trx) => {
        await a.append(event("a", 0), null, trx);
        throw new Error("the change failed");
      })
      .catch(() => {});
    await a.append(event("a", 1), null);
    await b.append(event("b", 0), null);
    expect(await a.verify()).toEqual({ ok: true, checked: 4, chains: 3 });
  });

  if (engine === "postgres") {
    it("lets an instance append while another instance holds an open transaction that appended", async () => {
      // Both chains open (the one write to the root chain each instance makes).
      await a.append(event("a", 0), null);
      await b.append(event("b", 0), null);
      const trx = await db.startTransaction().execute();
      try {
        await a.append(event("a", 1), null, trx);
        // With one head row for all, B would wait for A's commit here.
        const appended = b.append(event("b", 1), null).then(() => "appended");
        const waited = new Promise((resolve) => setTimeout(() => resolve("still waiting"), 3000));
        expect(await Promise.race([appended, waited])).toBe("appended");
      } finally {
        await trx.commit().execute();
      }
      expect(await a.verify()).toEqual({ ok: true, checked: 6, chains: 3 });
    });
  }

  it("lists an account's entries from every instance and process, newest first and in pages, while appends go on", async () => {
    // On SQLite a third writer on a connection of its own, as the CLI in another process.
    const other =
      engine === "sqlite" ? openStorage(test.url) : openStorage(postgresUrl, { schema: test.schema });
    try {
      const c = new AuditLog(other.db, systemClock, chainKey);
      const accountOf = (i: number) => (i % 3 === 0 ? "account-1" : i % 3 === 1 ? "account-2" : null);
      const appends = [a, b, c].flatMap((log, n) =>
        Array.from({ length: 60 }, (_, i) =>
          log.append(
            {
              event: i % 4 === 0 ? "test.other" : "test.chains",
              outcome: "info",
              accountId: accountOf(i),
              details: { n, i },
            },
            null,
          ),
        ),
      );
      // Listings by account while the appends commit: each brings the index up to date as it goes.
      const listings = Array.from({ length: 6 }, (_, i) =>
        (i % 2 ? a : c).list({ accountId: "account-1", limit: 1000 }),
      );
      await Promise.all([...appends, ...listings]);

      const expected = (
        await db
          .selectFrom("audit_log")
          .select("seq")
          .where("account_id", "=", "account-1")
          .orderBy("seq", "desc")
          .execute()
      ).map((row) => row.seq);
      expect(expected).toHaveLength(60);
      for (const log of [a, c]) {
        const paged: number[] = [];
        let before: number | undefined;
        for (;;) {
          const page = await log.list({ accountId: "account-1", before, limit: 7 });
          expect(page.every((entry) => entry.accountId === "account-1")).toBe(true);
          paged.push(...page.map((entry) => entry.seq));
          if (page.length < 7) break;
          before = page.at(-1)!.seq;
        }
        expect(paged).toEqual(expected);
      }
      const others = await a.list({ accountId: "account-2", events: ["test.other"], limit: 1000 });
      expect(others).toHaveLength(15);
      expect(others.every((entry) => entry.event === "test.other" && entry.accountId === "account-2")).toBe(
        true,
      );
      if (engine === "sqlite") {
        // Every entry with an account is in the index once (its primary key would refuse a second).
        const indexed = await sql<{ n: number }>`select count(*) as n from audit_account_entries`.execute(db);
        expect(indexed.rows[0]!.n).toBe(120);
      }
      expect(await a.verify()).toMatchObject({ ok: true });
    } finally {
      await other.close();
    }
  });

  describe("finds tampering and names the chain", () => {
    /** Chains 2 (instance A) and 3 (instance B), five entries each; the root chain announces both. */
    beforeEach(async () => {
      for (let i = 0; i < 5; i++) await a.append(event("a", i), null);
      for (let i = 0; i < 5; i++) await b.append(event("b", i), null);
      expect([a.chainId, b.chainId]).toEqual([2, 3]);
      expect(await a.verify()).toEqual({ ok: true, checked: 12, chains: 3 });
    });
    const entry = (chain: number, position: number) =>
      db
        .selectFrom("audit_log")
        .selectAll()
        .where("chain_id", "=", chain)
        .where("chain_seq", "=", position)
        .executeTakeFirstOrThrow();
    const problems = async () => (await a.verify()).badChains;

    it("an entry's hash covers its chain and its position there", async () => {
      const { hash, ...body } = await entry(3, 2);
      expect(entryHash(body, chainKey)).toBe(hash);
      expect(entryHash({ ...body, chain_id: 2 }, chainKey)).not.toBe(hash);
      expect(entryHash({ ...body, chain_seq: 3 }, chainKey)).not.toBe(hash);
    });

    it("a changed field", async () => {
      const target = await entry(3, 2);
      await sql`update audit_log set outcome = 'success' where seq = ${target.seq}`.execute(db);
      expect(await problems()).toEqual([
        { chain: 3, position: 2, seq: target.seq, reason: "contents changed" },
      ]);
    });

    it("an entry deleted from the middle", async () => {
      await sql`delete from audit_log where chain_id = 2 and chain_seq = 3`.execute(db);
      expect(await problems()).toEqual([{ chain: 2, position: 3, reason: "missing entry" }]);
    });

    it("a chain's tail deleted", async () => {
      await sql`delete from audit_log where chain_id = 3 and chain_seq >= 4`.execute(db);
      expect(await problems()).toEqual([{ chain: 3, position: 4, reason: "entries missing at the end" }]);
    });

    it("a closed chain's tail deleted and its head moved back to match", async () => {
      await b.close();
      const kept = await entry(3, 4);
      await sql`delete from audit_log where chain_id = 3 and chain_seq = 5`.execute(db);
      await db
        .updateTable("audit_head")
        .set({ last_chain_seq: 4, last_hash: kept.hash })
        .where("id", "=", 3)
        .execute();
      expect(await problems()).toEqual([
        { chain: 3, position: 5, reason: "entries missing at the end, where it was closed" },
      ]);
    });

    it("a whole chain deleted, entries and head", async () => {
      await sql`delete from audit_log where chain_id = 2`.execute(db);
      await sql`delete from audit_head where id = 2`.execute(db);
      expect(await problems()).toEqual([
        { chain: 2, reason: "announced in the root chain, but its head and entries are gone" },
      ]);
    });

    it("a chain's head row deleted", async () => {
      await sql`delete from audit_head where id = 3`.execute(db);
      expect(await problems()).toEqual([{ chain: 3, position: 6, reason: "its head row is missing" }]);
    });

    it("two entries' seqs swapped", async () => {
      const [x, y] = [await entry(2, 2), await entry(3, 2)];
      await sql`update audit_log set seq = -1 where seq = ${x.seq}`.execute(db);
      await sql`update audit_log set seq = ${x.seq} where seq = ${y.seq}`.execute(db);
      await sql`update audit_log set seq = ${y.seq} where seq = -1`.execute(db);
      expect(await problems()).toEqual([
        { chain: 2, position: 2, seq: y.seq, reason: "contents changed" },
        { chain: 3, position: 2, seq: x.seq, reason: "contents changed" },
      ]);
    });

    it("an entry moved to another chain", async () => {
      const moved = await entry(2, 5);
      await sql`update audit_log set chain_id = 3, chain_seq = 6 where seq = ${moved.seq}`.execute(db);
      await db
        .updateTable("audit_head")
        .set({ last_chain_seq: 6, last_hash: moved.hash })
        .where("id", "=", 3)
        .execute();
      expect(await problems()).toEqual([
        { chain: 2, position: 5, reason: "entries missing at the end" },
        { chain: 3, position: 6, seq: moved.seq, reason: "does not link to the previous entry" },
      ]);
    });

    it("a chain's announcement deleted from the root chain", async () => {
      await sql`delete from audit_log where chain_id = ${ROOT_CHAIN} and chain_seq = 2`.execute(db);
      expect(await problems()).toEqual([
        { chain: ROOT_CHAIN, position: 2, reason: "entries missing at the end" },
        { chain: 3, reason: "not announced in the root chain" },
      ]);
    });

    it("a chain the root chain never announced", async () => {
      await db
        .insertInto("audit_head")
        .values({
          id: 9,
          opened_at: 0,
          last_chain_seq: 0,
          last_hash: "0".repeat(64),
          last_at: 0,
          closed_at: null,
          legacy_entries: 0,
        })
        .execute();
      expect(await problems()).toEqual([{ chain: 9, reason: "not announced in the root chain" }]);
    });

    it("entries out of order in number or time, even when re-signed with the data key", async () => {
      // Whoever holds the key (the server itself) can re-sign; the order within a chain is still checked.
      const resign = async (chain: number, change: (rows: AuditLogTable[]) => void) => {
        const rows = await db
          .selectFrom("audit_log")
          .selectAll()
          .where("chain_id", "=", chain)
          .orderBy("chain_seq")
          .execute();
        change(rows);
        let previous = rows[0]!.prev_hash;
        for (const row of rows) {
          row.prev_hash = previous;
          const { hash: _old, ...body } = row;
          row.hash = entryHash(body, chainKey);
          previous = row.hash;
        }
        await sql`delete from audit_log where chain_id = ${chain}`.execute(db);
        await db.insertInto("audit_log").values(rows).execute();
        await db.updateTable("audit_head").set({ last_hash: previous }).where("id", "=", chain).execute();
      };
      let swapped = 0;
      await resign(2, (rows) => {
        [rows[1]!.seq, rows[2]!.seq] = [rows[2]!.seq, rows[1]!.seq];
        swapped = rows[2]!.seq;
      });
      let backdated = 0;
      await resign(3, (rows) => {
        rows[2]!.at = rows[1]!.at - 60_000;
        backdated = rows[2]!.seq;
      });
      expect(await problems()).toEqual([
        { chain: 2, position: 3, seq: swapped, reason: "numbered before the previous entry" },
        { chain: 3, position: 3, seq: backdated, reason: "dated before the previous entry" },
      ]);
    });
  });
});

/** The hash entries had before chains: the previous hash and the fields, without chain or position. */
function singleChainHash(row: Omit<AuditLogTable, "hash" | "chain_id" | "chain_seq">): string {
  const body = JSON.stringify([
    row.seq,
    row.at,
    row.account_id,
    row.actor,
    row.ip,
    row.location,
    row.user_agent,
    row.event,
    row.outcome,
    row.details,
  ]);
  return createHmac("sha256", chainKey).update(`${row.prev_hash}\n${body}`).digest("hex");
}

describe.each(engines)("upgrading to audit chains on %s", (engine) => {
  let test: TestStorage;
  beforeEach(async () => {
    test = await openTestStorage(engine);
  });
  afterEach(async () => {
    await test.dispose();
  });

  it("verifies the log written before chains, as chain 1, and appends after it in chains", async () => {
    // The schema before chains, and a single chain written as the release before them wrote it.
    await migrateUpTo(test.storage, "0016-account-places");
    const older = test.storage.db as unknown as Kysely<{
      audit_log: Omit<AuditLogTable, "chain_id" | "chain_seq">;
      audit_head: { id: number; last_seq: number; last_hash: string };
    }>;
    let previous = "0".repeat(64);
    const start = Date.now() - 3_600_000;
    for (let seq = 1; seq <= 5; seq++) {
      const row = {
        seq,
        // Entries of the single chain were not always in time order (an aggregate's minute, a wait).
        at: seq === 4 ? start : start + seq * 1000,
        account_id: null,
        actor: "system",
        ip: "203.0.113.10",
        location: null,
        user_agent: null,
        event: "test.before_chains",
        outcome: "info",
        details: JSON.stringify({ seq }),
        prev_hash: previous,
      };
      previous = singleChainHash(row);
      await older
        .insertInto("audit_log")
        .values({ ...row, hash: previous })
        .execute();
    }
    await older
      .updateTable("audit_head")
      .set({ last_seq: 5, last_hash: previous })
      .where("id", "=", 1)
      .execute();

    expect(await migrateToLatest(test.storage)).toContain("0017-audit-chains");
    const { db } = test.storage;
    const rows = await db
      .selectFrom("audit_log")
      .select(["seq", "chain_id", "chain_seq"])
      .orderBy("seq")
      .execute();
    expect(rows).toEqual([1, 2, 3, 4, 5].map((seq) => ({ seq, chain_id: ROOT_CHAIN, chain_seq: seq })));
    const log = new AuditLog(db, systemClock, chainKey);
    expect(await log.verify()).toEqual({ ok: true, checked: 5, chains: 1 });

    // New entries go into a chain of this instance, announced after the old entries, numbered after them.
    const seqs = await Promise.all([0, 1, 2].map((i) => log.append(event("a", i), null)));
    expect(Math.min(...seqs)).toBeGreaterThan(6);
    expect(log.chainId).toBe(2);
    expect(await log.verify()).toEqual({ ok: true, checked: 9, chains: 2 });

    // The old entries are still covered by their hashes.
    await sql`update audit_log set ip = '198.51.100.1' where seq = 3`.execute(db);
    expect((await log.verify()).badChains).toEqual([
      { chain: ROOT_CHAIN, position: 3, seq: 3, reason: "contents changed" },
    ]);
  });
  it("leaves the schema as it was when an upgrade fails half-way, and completes it on the next run", async () => {
    await migrateUpTo(test.storage, "0016-account-places");
    const { db } = test.storage;
    // 0017 adds its columns, then creates its index: a table by that name makes it fail after the columns.
    await sql`create table audit_log_chain (id integer)`.execute(db);
    await expect(migrateToLatest(test.storage)).rejects.toThrow();
    await expect(sql`select chain_id from audit_log`.execute(db)).rejects.toThrow();
    await expect(sql`select last_seq from audit_head`.execute(db)).resolves.toBeDefined();
    await sql`drop table audit_log_chain`.execute(db);
    expect(await migrateToLatest(test.storage)).toContain("0017-audit-chains");
    await expect(sql`select chain_id from audit_log`.execute(db)).resolves.toBeDefined();
  });

  it("keeps every entry listed by account across the upgrade that moves SQLite's account index", async () => {
    await migrateUpTo(test.storage, "0019-passkeys");
    const { db } = test.storage;
    const a = new AuditLog(db, systemClock, chainKey);
    const seqs = await Promise.all(
      Array.from({ length: 9 }, (_, i) =>
        a.append(
          { event: "test.before_upgrade", outcome: "info", accountId: `account-${i % 2}`, details: { i } },
          null,
        ),
      ),
    );
    expect(await migrateToLatest(test.storage)).toContain("0020-audit-log-sqlite-layout");
    const log = new AuditLog(db, systemClock, chainKey);
    const listed = (await log.list({ accountId: "account-0", limit: 100 })).map((entry) => entry.seq);
    expect(listed).toEqual(seqs.filter((_, i) => i % 2 === 0).sort((x, y) => y - x));
    const after = await log.append(
      { event: "test.after_upgrade", outcome: "info", accountId: "account-0" },
      null,
    );
    expect((await log.list({ accountId: "account-0", limit: 1 }))[0]!.seq).toBe(after);
    expect(await log.verify()).toMatchObject({ ok: true, checked: 12 });
    if (engine === "sqlite") {
      // `seq` is the table's rowid now: no second B-tree beside it.
      const indexes = await sql<{ name: string }>`select name from pragma_index_list('audit_log')`.execute(
        db,
      );
      expect(indexes.rows.map((row) => row.name)).toEqual(["audit_log_chain"]);
    }
  });
});
