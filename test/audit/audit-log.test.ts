import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { sql } from "kysely";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { entryHash } from "../../src/audit/audit-log.js";
import { ADMIN_TOKEN, Harness } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

const run = promisify(execFile);

describe.each(engines)("the audit log on %s (behaviour §12)", (engine) => {
  let h: Harness;
  beforeEach(async () => {
    h = await Harness.create(engine);
    const user = await h.createVerifiedUser();
    await h.signIn(user.username, "a wrong password here");
    await h.signIn(user.username, user.password);
  });
  afterEach(async () => {
    await h.close();
  });

  const verify = async () => {
    const response = await h.request("POST", "/v1/admin/audit/verify", {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(response.statusCode).toBe(200);
    return response.json();
  };

  /** The CLI against the same database, as an operator would run it. */
  const cliVerify = async () => {
    try {
      const { stdout } = await run("npx", ["tsx", "src/cli/main.ts", "audit", "verify"], {
        env: {
          ...process.env,
          PORTCULLIS_DATABASE_URL: h.storage.url,
          PORTCULLIS_DATA_DIR: h.storage.dataDir,
        },
      });
      return { code: 0, stdout };
    } catch (error) {
      const failed = error as { code: number; stdout: string };
      return { code: failed.code, stdout: failed.stdout };
    }
  };

  it("records every attempt with its outcome, and verifies intact", async () => {
    const entries = await h.services.audit.list({ limit: 100 });
    const events = entries.map((e) => `${e.event}:${e.outcome}`);
    expect(events).toContain("sign_in.password:failure");
    expect(events).toContain("sign_in.password:success");
    expect(events).toContain("sign_in.completed:success");
    // Every entry names the address of its request: the test's own, or the one its account signed up from
    // (but the root chain's record of this instance's chain, which no request made).
    const fromRequests = entries.filter((e) => !e.event.startsWith("audit.chain_"));
    expect(fromRequests.every((e) => e.ip === "203.0.113.10" || e.ip?.startsWith("198.19."))).toBe(true);
    expect(entries.filter((e) => e.event === "audit.chain_opened")).toHaveLength(1);
    expect(entries.filter((e) => e.event.startsWith("sign_in")).every((e) => e.ip === "203.0.113.10")).toBe(
      true,
    );
    const result = await verify();
    // Two chains: the root chain, with the opening of this instance's chain, and that chain.
    expect(result).toEqual({ ok: true, checked: entries.length, chains: 2 });
    const cli = await cliVerify();
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain(`${entries.length} entries checked in 2 chains`);
  });

  it("records refused access (a wrong operator token, another site's request), but not a step-up request", async () => {
    await h.request("GET", "/v1/admin/audit", {
      headers: { authorization: "Bearer not-the-operator-token" },
    });
    const user = await h.createVerifiedUser();
    const token = await h.sessionToken(user);
    const cookieFromElsewhere = await h.request("DELETE", "/v1/sessions", {
      token,
      headers: { origin: "https://evil.example" },
    });
    expect(cookieFromElsewhere.statusCode).toBe(403);
    // The step-up request itself is the normal way to ask for confirmation: not a refusal to record.
    const stepUp = await h.request("POST", "/v1/security/totp", { token });
    expect(stepUp.json().error.code).toBe("step_up_required");

    // Both were refused before anyone was authenticated: counted for their minute, then one entry each.
    expect(await h.services.audit.list({ events: ["access.refused"], limit: 10 })).toEqual([]);
    h.clock.advance(60_000);
    expect(await h.services.audit.flushAggregates()).toBe(2);
    const refused = await h.services.audit.list({ events: ["access.refused"], limit: 10 });
    expect(refused.map((e) => e.details)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: "forbidden", method: "DELETE", route: "/v1/sessions", count: 1 }),
        expect.objectContaining({
          code: "unauthenticated",
          method: "GET",
          route: "/v1/admin/audit",
          count: 1,
        }),
      ]),
    );
    expect(refused.find((e) => e.details.code === "unauthenticated")).toMatchObject({
      actor: "operator",
      outcome: "refused",
      ip: "203.0.113.10",
    });
    expect((await verify()).ok).toBe(true);
  });

  it("chains an aggregate written straight into the database as a refusal, never as the event it claims", async () => {
    const foreign = () =>
      h.request("POST", "/v1/sign-in", {
        body: { identifier: "x", password: "y" },
        headers: { origin: "https://evil.example" },
        ip: "198.51.100.70",
      });
    expect((await foreign()).statusCode).toBe(403);
    // Someone with write access to the database (not the server's key) adds a row for the flush to chain.
    const now = h.clock.now();
    const forged = {
      key: "forged|operator",
      window_start: now - (now % 60_000),
      count: 1,
      first_at: now,
      last_at: now,
      account_id: null,
      actor: "operator",
      ip: "10.0.0.1",
      location: null,
      user_agent: null,
      event: "account.restriction_lifted",
      outcome: "success",
      details: JSON.stringify({ reason: "support ticket 1234" }),
    };
    await h.db
      .insertInto("audit_aggregates")
      .values({ ...forged, mac: null })
      .execute();
    await h.db
      .insertInto("audit_aggregates")
      .values({ ...forged, key: "forged|with a code", mac: "0".repeat(64) })
      .execute();
    h.clock.advance(60_000);
    expect(await h.services.audit.flushAggregates()).toBe(3);
    expect(await h.services.audit.list({ events: ["account.restriction_lifted"], limit: 10 })).toEqual([]);
    const refused = await h.services.audit.list({ events: ["audit.aggregate_refused"], limit: 10 });
    expect(refused).toHaveLength(2);
    for (const entry of refused)
      expect(entry.details).toMatchObject({
        claimed: { actor: "operator", event: "account.restriction_lifted" },
      });
    // The server's own aggregate is chained as what it counted.
    const genuine = await h.services.audit.list({ events: ["access.refused"], limit: 10 });
    expect(genuine.map((e) => e.ip)).toContain("198.51.100.70");
    expect((await verify()).ok).toBe(true);
  });

  it("verifies the log as intact while entries are appended, however the two interleave", async () => {
    let appended = 0;
    const appendSome = () =>
      Promise.all(
        Array.from({ length: 5 }, () =>
          h.services.audit.append(
            { event: "test.appended", outcome: "success", actor: "system", details: { n: appended++ } },
            null,
          ),
        ),
      );
    const results = [];
    for (let i = 0; i < 40; i += 1) {
      const [result] = await Promise.all([h.services.audit.verify(7), appendSome(), appendSome()]);
      results.push(result);
    }
    expect(appended).toBe(400);
    expect(results.filter((result) => !result.ok)).toEqual([]);
    expect((await verify()).ok).toBe(true);
  });

  it("answers a root chain whose announcements cannot be read as broken, never with an error", async () => {
    for (const details of ["not json", "null", "{}", '{"chain":"2"}', '{"chain":1e400}']) {
      await h.db
        .updateTable("audit_log")
        .set({ details })
        .where("chain_id", "=", 1)
        .where("event", "=", "audit.chain_opened")
        .execute();
      const response = await h.request("POST", "/v1/admin/audit/verify", {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      expect(response.statusCode, `${details}: ${response.body}`).toBe(200);
      expect(response.json().ok, details).toBe(false);
    }
  });

  it("counts a flood of unauthenticated refusals as one entry per source and minute, with the exact count", async () => {
    const before = await h.services.audit.verify();
    h.clock.set(Math.ceil(h.clock.now() / 60_000) * 60_000 + 1000);
    const foreign = (ip: string) =>
      h.request("POST", "/v1/sign-in", {
        body: { identifier: "x", password: "y" },
        headers: { origin: "https://evil.example" },
        ip,
      });
    // 120 from one address, 80 from addresses all over one IPv6 /64, 30 from another address; in parallel.
    const responses = await Promise.all([
      ...Array.from({ length: 120 }, () => foreign("198.51.100.7")),
      ...Array.from({ length: 80 }, (_, i) => foreign(`2001:db8:7:7:${i.toString(16)}::1`)),
      ...Array.from({ length: 30 }, () => foreign("198.51.100.8")),
    ]);
    expect(responses.every((r) => r.statusCode === 403)).toBe(true);
    // Each count is durable before its request is answered; nothing is in the chain yet.
    const pending = await h.db.selectFrom("audit_aggregates").select(["key", "count"]).execute();
    expect(pending.map((row) => row.count).sort((a, b) => a - b)).toEqual([30, 80, 120]);
    expect((await h.services.audit.verify()).checked).toBe(before.checked);
    // The minute still running is not flushed; once it is over, one entry per source.
    expect(await h.services.audit.flushAggregates()).toBe(0);
    h.clock.advance(60_000);
    // Several flushers at once (timers of several instances): each aggregate is written exactly once.
    const flushed = await Promise.all(Array.from({ length: 4 }, () => h.services.audit.flushAggregates()));
    expect(flushed.reduce((a, b) => a + b, 0)).toBe(3);
    expect(await h.services.audit.flushAggregates()).toBe(0);
    const entries = await h.services.audit.list({ events: ["access.refused"], limit: 10 });
    expect(entries).toHaveLength(3);
    const byIp = Object.fromEntries(entries.map((e) => [e.ip!.startsWith("2001") ? "v6" : e.ip, e.details]));
    expect(byIp["198.51.100.7"]).toMatchObject({ code: "forbidden", route: "/v1/sign-in", count: 120 });
    expect(byIp["198.51.100.8"]).toMatchObject({ count: 30 });
    expect(byIp.v6).toMatchObject({ count: 80 });
    expect(await verify()).toEqual({ ok: true, checked: before.checked + 3, chains: 2 });
    const cli = await cliVerify();
    expect(cli.code).toBe(0);

    // The next minute's flood from the same source is its own entry; shutting down flushes it at once.
    await foreign("198.51.100.7");
    await foreign("198.51.100.7");
    await h.app.close();
    const after = await h.db
      .selectFrom("audit_log")
      .select("details")
      .where("event", "=", "access.refused")
      .orderBy("seq", "desc")
      .executeTakeFirstOrThrow();
    expect(JSON.parse(after.details)).toMatchObject({ count: 2 });
  });

  it("chains a flood from rotating addresses in steps, each aggregate once and oldest first, the event loop free between", async () => {
    const before = await h.services.audit.verify();
    h.clock.set(Math.ceil(h.clock.now() / 60_000) * 60_000 + 1000);
    /** `count` sources, one refusal each, 100 to a millisecond: as many aggregates, of one minute. */
    const flood = async (from: number, count: number) => {
      for (let i = from; i < from + count; i += 100) {
        await Promise.all(
          Array.from({ length: 100 }, (_, j) => {
            const ip = `100.64.${(i + j) >> 8}.${(i + j) & 255}`;
            return h.services.audit.appendAggregated(
              `test.flood|${ip}`,
              { event: "test.flood", outcome: "refused", details: { n: i + j } },
              { ip, userAgent: null, location: null, country: null, city: null },
            );
          }),
        );
        h.clock.advance(1);
      }
      h.clock.advance(60_000);
    };
    const flooded = async () => {
      const rows = await h.db
        .selectFrom("audit_log")
        .select("details")
        .where("event", "=", "test.flood")
        .orderBy("seq")
        .execute();
      return rows.map((row) => JSON.parse(row.details) as { n: number; count: number; firstAt: string });
    };

    await flood(0, 700);
    let ticks = 0;
    let ticking = true;
    const tick = () => {
      ticks += 1;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    expect(await h.services.audit.flushAggregates()).toBe(700);
    ticking = false;
    // Three steps, each its own transaction, and other work ran between them (none ran during one
    // transaction of 700 on SQLite). The steps go oldest first: time never goes back along the chain.
    expect(ticks).toBeGreaterThanOrEqual(2);
    const first = await flooded();
    expect(first.map((d) => d.n).sort((a, b) => a - b)).toEqual(Array.from({ length: 700 }, (_, i) => i));
    expect(first.every((d) => d.count === 1)).toBe(true);
    const firstAts = first.map((d) => d.firstAt);
    expect(firstAts).toEqual([...firstAts].sort());

    // Two flushers at once (timers of two instances), over several steps: each aggregate once.
    await flood(700, 600);
    const flushed = await Promise.all([
      h.services.audit.flushAggregates(),
      h.services.audit.flushAggregates(),
    ]);
    expect(flushed[0]! + flushed[1]!).toBe(600);
    expect(await h.services.audit.flushAggregates()).toBe(0);
    const all = await flooded();
    expect(all).toHaveLength(1300);
    expect(new Set(all.map((d) => d.n)).size).toBe(1300);
    expect(await verify()).toMatchObject({ ok: true, checked: before.checked + 1300 });
  });

  /** This instance's chain, ordered by position. */
  const ownChain = async () => {
    const chain = h.services.audit.chainId!;
    const rows = await h.db
      .selectFrom("audit_log")
      .selectAll()
      .where("chain_id", "=", chain)
      .orderBy("chain_seq")
      .execute();
    return { chain, rows };
  };

  it("finds an edited entry", async () => {
    const { chain, rows } = await ownChain();
    const failed = rows.find((row) => row.event === "sign_in.password" && row.outcome === "failure")!;
    await sql`update audit_log set outcome = 'success' where seq = ${failed.seq}`.execute(h.db);
    expect(await verify()).toMatchObject({
      ok: false,
      firstBadEntry: { chain, position: failed.chain_seq, seq: failed.seq, reason: "contents changed" },
    });
    const cli = await cliVerify();
    expect(cli.code).toBe(1);
    expect(cli.stdout).toContain(
      `BROKEN in chain ${chain} at position ${failed.chain_seq} (entry ${failed.seq}): contents changed`,
    );
  });

  it("finds an entry rewritten with the whole chain recomputed by someone without the data key", async () => {
    // Someone with write access to the database alone: edits the third entry of the chain and recomputes
    // every hash after it, and the head, with a key of their own (or plain SHA-256, the same thing to them).
    const { chain, rows } = await ownChain();
    const forgedKey = Buffer.alloc(32, 7);
    let previous = rows[1]!.hash;
    for (const row of rows.slice(2)) {
      const body = { ...row, prev_hash: previous, outcome: row.chain_seq === 3 ? "success" : row.outcome };
      const { hash: _old, ...unsigned } = body;
      const hash = entryHash(unsigned, forgedKey);
      await h.db
        .updateTable("audit_log")
        .set({ outcome: body.outcome, prev_hash: previous, hash })
        .where("seq", "=", row.seq)
        .execute();
      previous = hash;
    }
    await h.db.updateTable("audit_head").set({ last_hash: previous }).where("id", "=", chain).execute();
    expect(await verify()).toMatchObject({
      ok: false,
      firstBadEntry: { chain, position: 3, seq: rows[2]!.seq, reason: "contents changed" },
    });
  });

  it("finds a deleted entry, in the middle or at the end", async () => {
    const { chain } = await ownChain();
    await sql`delete from audit_log where chain_id = ${chain} and chain_seq = 2`.execute(h.db);
    expect(await verify()).toMatchObject({
      ok: false,
      firstBadEntry: { chain, position: 2, reason: "missing entry" },
    });
    await sql`delete from audit_log where chain_id = ${chain} and chain_seq >= 2`.execute(h.db);
    expect(await verify()).toMatchObject({
      ok: false,
      firstBadEntry: { chain, position: 2, reason: "entries missing at the end" },
    });
  });

  it("finds reordered entries", async () => {
    // Swap the contents of the chain's entries 2 and 3, hashes and all, keeping their positions.
    const { chain } = await ownChain();
    const at = (position: number) => sql`chain_id = ${chain} and chain_seq = ${position}`;
    await sql`update audit_log set chain_seq = -1 where ${at(2)}`.execute(h.db);
    await sql`update audit_log set chain_seq = 2 where ${at(3)}`.execute(h.db);
    await sql`update audit_log set chain_seq = 3 where ${at(-1)}`.execute(h.db);
    expect(await verify()).toMatchObject({ ok: false, firstBadEntry: { chain, position: 2 } });
  });

  it("keeps one unbroken chain under 450 parallel appends, committed in batches, each seq once", async () => {
    // More than one batch (200): appends made while a batch commits go together in the next one.
    const seqsReturned = await Promise.all(
      Array.from({ length: 450 }, (_, i) =>
        h.services.audit.append({ event: "test.parallel", outcome: "info", details: { i } }, null),
      ),
    );
    expect(new Set(seqsReturned).size).toBe(450);
    const result = await verify();
    expect(result.ok).toBe(true);
    const entries = await h.services.audit.list({ limit: 2000 });
    const seqs = entries.map((e) => e.seq).sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    // Each caller got the seq its own entry was stored under.
    const bySeq = new Map(entries.map((e) => [e.seq, e.details.i]));
    expect(seqsReturned.map((seq) => bySeq.get(seq))).toEqual(seqsReturned.map((_, i) => i));
  });

  it("keeps the chain whole when appends inside change transactions, committed or rolled back, meet group commits", async () => {
    const { db } = h;
    const grouped = Array.from({ length: 120 }, (_, i) =>
      h.services.audit.append({ event: "test.grouped", outcome: "info", details: { i } }, null),
    );
    // Each change appends in its own transaction; every third one fails after its append and rolls back.
    const inChanges = Array.from({ length: 30 }, (_, i) =>
      db
        .transaction()
        .execute(async (trx) => {
          const seq = await h.services.audit.append(
            { event: "test.in_change", outcome: "info", details: { i } },
            null,
            trx,
          );
          if (i % 3 === 0) throw new Error("the change failed");
          return seq;
        })
        .catch(() => null),
    );
    const [groupedSeqs, changeSeqs] = await Promise.all([Promise.all(grouped), Promise.all(inChanges)]);
    expect((await verify()).ok).toBe(true);
    const committed = changeSeqs.filter((seq): seq is number => seq !== null);
    expect(committed).toHaveLength(20);
    const entries = await h.services.audit.list({ events: ["test.in_change"], limit: 100 });
    // Only the committed changes left an entry, each under the seq its append returned.
    expect(entries.map((e) => e.seq).sort((a, b) => a - b)).toEqual([...committed].sort((a, b) => a - b));
    expect(entries.every((e) => Number(e.details.i) % 3 !== 0)).toBe(true);
    expect(new Set([...groupedSeqs, ...committed]).size).toBe(140);
  });

  it("links each batch from the chain's head row as it stands, not from the end this instance last wrote there", async () => {
    const appendAll = (event: string, count: number) =>
      Promise.all(
        Array.from({ length: count }, (_, i) =>
          h.services.audit.append({ event, outcome: "info", details: { i } }, null),
        ),
      );
    await appendAll("test.before", 5);
    const chain = h.services.audit.chainId!;
    const before = await h.db
      .selectFrom("audit_head")
      .select(["last_chain_seq", "last_hash"])
      .where("id", "=", chain)
      .executeTakeFirstOrThrow();
    // The row moves on without this instance (as another writer of it would move it).
    const moved = "f".repeat(64);
    await h.db
      .updateTable("audit_head")
      .set({ last_chain_seq: Number(before.last_chain_seq) + 1, last_hash: moved })
      .where("id", "=", chain)
      .execute();
    await appendAll("test.after", 3);
    const after = await h.db
      .selectFrom("audit_log")
      .select(["chain_id", "chain_seq", "prev_hash", "hash"])
      .where("event", "=", "test.after")
      .orderBy("chain_seq")
      .execute();
    expect(after.map((e) => Number(e.chain_id))).toEqual([chain, chain, chain]);
    expect(after.map((e) => Number(e.chain_seq))).toEqual(
      [2, 3, 4].map((i) => Number(before.last_chain_seq) + i),
    );
    expect(after[0]!.prev_hash).toBe(moved);
    const head = await h.db
      .selectFrom("audit_head")
      .select(["last_chain_seq", "last_hash"])
      .where("id", "=", chain)
      .executeTakeFirstOrThrow();
    expect(Number(head.last_chain_seq)).toBe(Number(after[2]!.chain_seq));
    expect(head.last_hash).toBe(after[2]!.hash);
  });

  it("never stores a password, token or bot-check answer", async () => {
    const rows = await sql<{
      text: string;
    }>`select details || coalesce(user_agent, '') as text from audit_log`.execute(h.db);
    const everything = rows.rows.map((r) => r.text).join("\n");
    expect(everything).not.toContain("a wrong password here");
    expect(everything).not.toContain("violet tractor");
  });
});
