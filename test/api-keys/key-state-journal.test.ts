import { randomBytes, randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type SqliteDatabase from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DatabaseGatewayState } from "../../src/api-keys/gateway-state.js";
import { ApiLockout } from "../../src/api-keys/lockout.js";
import { foldJournal, MemoryGatewayState } from "../../src/api-keys/memory-gateway-state.js";
import { AuditLog } from "../../src/audit/audit-log.js";
import { KrakenClient } from "../../src/client/kraken-client.js";
import { migrateToLatest } from "../../src/db/database.js";
import { FakeClock } from "../../src/support/clock.js";
import { createKeyOwner } from "../helpers/factors.js";
import { Harness, SERVICE_TOKEN } from "../helpers/harness.js";
import { engines, openTestStorage, type TestStorage } from "../helpers/storage.js";

const service = { authorization: `Bearer ${SERVICE_TOKEN}` };

async function keyOwner(h: Harness) {
  const { key, session } = await createKeyOwner(
    h,
    { name: "journal", permissions: ["funds_query"] },
    { country: "GB" },
  );
  let nonce = 1_000n;
  const client = new KrakenClient({
    baseUrl: "http://unused.invalid",
    key: key.key,
    secret: key.secret,
    nonce: () => ++nonce,
  });
  return { key, client, session };
}

/** One gateway decision for `client`'s Balance call; the signed request too, to send it again. */
async function check(h: Harness, client: KrakenClient, signed = client.sign("Balance")) {
  const response = await h.request("POST", "/v1/gateway/check", {
    headers: service,
    body: { path: signed.path, headers: signed.headers, body: signed.body, ip: "198.18.9.1" },
  });
  return { answer: response.json() as { allow: boolean; error?: string }, signed };
}

const row = (h: Harness, keyId: string) =>
  h.db
    .selectFrom("api_keys")
    .select(["last_nonce", "last_used_at", "rate_at"])
    .where("id", "=", keyId)
    .executeTakeFirstOrThrow();

describe.each(engines)("a key's gateway state on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  it("shows a key's last use at once, and its row holds its latest state within a second", async () => {
    const { key, client, session } = await keyOwner(h);
    const { answer } = await check(h, client);
    expect(answer.allow).toBe(true);
    const usedAt = h.clock.now();
    const listed = await h.request("GET", "/v1/api-keys", { token: session });
    expect(listed.statusCode, listed.body).toBe(200);
    const { apiKeys } = listed.json() as { apiKeys: { id: string; lastUsedAt: string | null }[] };
    const shown = apiKeys.find((k) => k.id === key.id);
    expect(shown?.lastUsedAt).toBe(new Date(usedAt).toISOString());
    if (engine === "sqlite") {
      // The batch wrote the key's state to the journal, not to its row.
      expect((await row(h, key.id)).last_used_at).toBeNull();
      expect((await h.db.selectFrom("api_key_state_journal").selectAll().execute()).length).toBeGreaterThan(
        0,
      );
      // A second on, with no other request, the server's timer runs a batch that brings the row up to
      // date and drops the journal rows nobody needs.
      h.clock.advance(1_001);
      const deadline = Date.now() + 5_000;
      while ((await row(h, key.id)).last_used_at === null) {
        if (Date.now() > deadline) throw new Error("the key's row did not catch up");
        await sleep(50);
      }
      const journal = await h.db.selectFrom("api_key_state_journal").select("states").execute();
      expect(journal.some((j) => j.states.includes(key.id))).toBe(false);
    }
    const caughtUp = await row(h, key.id);
    expect(caughtUp.last_used_at).toBeGreaterThanOrEqual(usedAt);
    expect(BigInt(caughtUp.last_nonce)).toBeGreaterThan(1_000n);
  });

  it("leaves every key's row up to date and the journal empty after a clean stop", async () => {
    const own = await Harness.create(engine);
    const { key, client } = await keyOwner(own);
    const used: Awaited<ReturnType<typeof check>>["signed"][] = [];
    for (let i = 0; i < 5; i += 1) {
      const { answer, signed } = await check(own, client);
      expect(answer.allow).toBe(true);
      used.push(signed);
    }
    const last = BigInt(new URLSearchParams(used.at(-1)!.body).get("nonce")!);
    await own.app.close();
    try {
      const stored = await row(own, key.id);
      expect(BigInt(stored.last_nonce)).toBe(last);
      expect(stored.last_used_at).toBe(own.clock.now());
      if (engine === "sqlite")
        expect(await own.db.selectFrom("api_key_state_journal").selectAll().execute()).toEqual([]);
    } finally {
      await own.smtp.stop();
      await own.storage.dispose();
    }
  });
});

/** Writes an account with `count` API keys straight into a migrated SQLite file; returns the keys' ids. */
function insertKeys(
  sqlite: SqliteDatabase.Database,
  name: string,
  count: number,
  state: { nonce: string; rateLevel: number; rateAt: number; lastUsedAt: number | null },
): string[] {
  const accountId = randomUUID();
  sqlite
    .prepare(
      `insert into accounts (id, email, email_key, username, password_hash, country, created_at)
         values (?, ?, ?, ?, 'x', 'GB', 0)`,
    )
    .run(accountId, `${name}@example.com`, `${name}@example.com`, name);
  const insert = sqlite.prepare(
    `insert into api_keys (id, account_id, name, key, secret_sealed, dialect, permissions, ip_allowlist,
       nonce_window, last_nonce, nonce_floor, rate_level, rate_at, last_used_at, created_at)
     values (?, ?, ?, ?, 'x', 'kraken', '[]', '[]', 0, ?, ?, ?, ?, ?, 0)`,
  );
  const keyIds = Array.from({ length: count }, () => randomUUID());
  for (const [i, id] of keyIds.entries())
    insert.run(
      id,
      accountId,
      `k${i}`,
      `${name}-${i}`,
      state.nonce,
      state.nonce,
      state.rateLevel,
      state.rateAt,
      state.lastUsedAt,
    );
  return keyIds;
}

describe("the state journal on a SQLite file", () => {
  let storage: TestStorage;
  beforeAll(async () => {
    storage = await openTestStorage("sqlite");
    await migrateToLatest(storage.storage);
  });
  afterAll(async () => {
    await storage.dispose();
  });

  it("is folded at start after a crash: each row brought up to date, never back (an older state in the journal changes nothing)", async () => {
    const sqlite = storage.storage.sqlite!;
    const keyIds = insertKeys(sqlite, "journal", 2, {
      nonce: "00000000000000000500",
      rateLevel: 3,
      rateAt: 5000,
      lastUsedAt: 5000,
    });
    const state = (id: string, nonce: number, at: number, level: number, otp: number | null) => [
      id,
      String(nonce).padStart(20, "0"),
      String(nonce).padStart(20, "0"),
      otp,
      level,
      at,
      at,
    ];
    const journal = sqlite.prepare("insert into api_key_state_journal (states) values (?)");
    // Key 0: an older state (folded into its row already), then two newer ones; key 1: only older ones.
    journal.run(JSON.stringify([state(keyIds[0]!, 400, 4000, 1, null), state(keyIds[1]!, 100, 1000, 9, 7)]));
    journal.run(JSON.stringify([state(keyIds[0]!, 600, 6000, 2, 3)]));
    journal.run(JSON.stringify([state(keyIds[0]!, 700, 7000, 4, 5)]));

    foldJournal(sqlite);

    const rows = sqlite
      .prepare(
        "select id, last_nonce, nonce_floor, otp_last_step, rate_level, rate_at, last_used_at from api_keys where id in (?, ?)",
      )
      .all(...keyIds) as Record<string, unknown>[];
    const byId = new Map(rows.map((r) => [r.id, r]));
    expect(byId.get(keyIds[0])).toMatchObject({
      last_nonce: "00000000000000000700",
      nonce_floor: "00000000000000000700",
      otp_last_step: 5,
      rate_level: 4,
      rate_at: 7000,
      last_used_at: 7000,
    });
    // Key 1's journal state is older than its row in every field but the OTP step, which only grows.
    expect(byId.get(keyIds[1])).toMatchObject({
      last_nonce: "00000000000000000500",
      nonce_floor: "00000000000000000500",
      otp_last_step: 7,
      rate_level: 3,
      rate_at: 5000,
      last_used_at: 5000,
    });
    expect(sqlite.prepare("select count(*) from api_key_state_journal").pluck().get()).toBe(0);
  });

  it("catches up after a burst: more rows than one batch may, in one call of the idle timer's work", async () => {
    const { db, sqlite } = storage.storage;
    const clock = new FakeClock(Date.now());
    const audit = new AuditLog(db, clock, randomBytes(32), sqlite);
    const state = new MemoryGatewayState(
      db,
      sqlite!,
      clock,
      new DatabaseGatewayState(db, new ApiLockout(db, clock)),
      audit,
    );
    // More keys than one batch writes rows for (32).
    const keyIds = insertKeys(sqlite!, "burst", 75, {
      nonce: "0".repeat(20),
      rateLevel: 0,
      rateAt: 0,
      lastUsedAt: null,
    });
    const usedAt = clock.now();
    for (const id of keyIds) expect(await state.chargeCalls(id, "pro", 1, usedAt)).toBe(true);
    await audit.commit();
    const lastUsed = () =>
      sqlite!
        .prepare(`select last_used_at from api_keys where id in (${keyIds.map(() => "?").join(",")})`)
        .pluck()
        .all(...keyIds);
    // In the journal only, for now.
    expect(lastUsed().every((at) => at === null)).toBe(true);
    clock.advance(1_001);
    await state.foldWhenDue();
    expect(lastUsed().every((at) => at === usedAt)).toBe(true);
    expect(sqlite!.prepare("select count(*) from api_key_state_journal").pluck().get()).toBe(0);
  });
});
