import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryGatewayState } from "../../src/api-keys/memory-gateway-state.js";
import { KrakenClient, type Params } from "../../src/client/kraken-client.js";
import { totpCode } from "../../src/factors/totp.js";
import { base32Decode, enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness, METRICS_TOKEN, SERVICE_TOKEN } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

const service = { authorization: `Bearer ${SERVICE_TOKEN}` };
const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };
const run = promisify(execFile);

describe.each(engines)("API key limits, second factors and approvals on %s (behaviour §11)", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  let ipCounter = 0;
  const nextIp = () => `198.18.${Math.floor(ipCounter / 250)}.${(ipCounter++ % 250) + 1}`;

  const owner = async (country = "GB") => {
    const user = await h.createVerifiedUser({ country });
    const enrolled = await enrollTotp(h, await h.sessionToken(user, "pro"), { password: user.password });
    let token = enrolled.token;
    const change = async (method: "POST" | "PATCH", url: string, body: Record<string, unknown>) => {
      const result = await withStepUp(
        h,
        token,
        method,
        url,
        { totp: nextTotpCode(h, enrolled.secret) },
        { body },
      );
      token = result.token;
      return result.response;
    };
    const createKey = async (body: Record<string, unknown>) => {
      const response = await change("POST", "/v1/api-keys", body);
      expect(response.statusCode, response.body).toBe(201);
      return response.json() as { id: string; key: string; secret: string; otp?: { secret: string } };
    };
    return {
      user,
      secret: enrolled.secret,
      token: () => token,
      change,
      createKey,
      accountId: await h.accountId(user),
    };
  };

  /** A Kraken-signed request, built by the repository's client, checked through the venue's endpoint. */
  const check = async (
    client: KrakenClient,
    method: string,
    params: Params = {},
    ip = nextIp(),
  ): Promise<{
    allow: boolean;
    error?: string;
    approval?: { id: string };
    headers?: Record<string, string>;
  }> => {
    const signed = client.sign(method, params);
    const response = await h.request("POST", "/v1/gateway/check", {
      headers: service,
      body: { method: "POST", path: signed.path, headers: signed.headers, body: signed.body, ip },
    });
    expect(response.statusCode, response.body).toBe(200);
    return response.json();
  };
  const clientFor = (key: { key: string; secret: string }, otp?: string | (() => string)) =>
    new KrakenClient({
      baseUrl: "http://unused.invalid",
      key: key.key,
      secret: key.secret,
      ...(otp ? { otp } : {}),
    });

  it("refuses a burst beyond the tier's ceiling and recovers at the tier's decay rate (fake clock)", async () => {
    const starter = await owner();
    const key = await starter.createKey({ name: "burst", permissions: ["funds_query", "ledger_query"] });
    const client = clientFor(key);
    // Starter: ceiling 15, decays 0.33 per second.
    for (let i = 0; i < 15; i += 1) expect((await check(client, "Balance")).allow).toBe(true);
    expect(await check(client, "Balance")).toEqual({ allow: false, error: "EAPI:Rate limit exceeded" });
    h.clock.advance(2_000); // 0.66 decayed: still no room for a call of cost 1
    expect((await check(client, "Balance")).error).toBe("EAPI:Rate limit exceeded");
    h.clock.advance(1_100); // 3.1 s in all: 1.02 decayed
    expect((await check(client, "Balance")).allow).toBe(true);
    expect((await check(client, "Balance")).error).toBe("EAPI:Rate limit exceeded");
    // A ledger query costs 2: it needs twice the room.
    h.clock.advance(3_100);
    expect((await check(client, "Ledgers")).error).toBe("EAPI:Rate limit exceeded");
    h.clock.advance(3_100);
    expect((await check(client, "Ledgers")).allow).toBe(true);

    // Pro: ceiling 20, decays 1 per second.
    const pro = await owner();
    await h.request("PUT", `/v1/admin/accounts/${pro.accountId}/verification`, {
      headers: operator,
      body: { tier: "pro" },
    });
    const proClient = clientFor(await pro.createKey({ name: "pro-burst", permissions: ["funds_query"] }));
    for (let i = 0; i < 20; i += 1) expect((await check(proClient, "Balance")).allow).toBe(true);
    expect((await check(proClient, "Balance")).error).toBe("EAPI:Rate limit exceeded");
    h.clock.advance(1_000);
    expect((await check(proClient, "Balance")).allow).toBe(true);
    expect((await check(proClient, "Balance")).error).toBe("EAPI:Rate limit exceeded");
  });

  it("lets exactly the ceiling's worth of 40 parallel calls through", async () => {
    const { createKey } = await owner();
    // A nonce window: parallel requests arrive in any order.
    const client = clientFor(
      await createKey({ name: "parallel", permissions: ["funds_query"], nonceWindow: 1000 }),
    );
    // Consecutive nonces: forty microsecond nonces signed on a busy machine can span more than the window.
    const first = BigInt(Date.now()) * 1000n;
    const signed = Array.from({ length: 40 }, (_, i) => client.sign("Balance", {}, first + BigInt(i)));
    const results = await Promise.all(
      signed.map((s) =>
        h.request("POST", "/v1/gateway/check", {
          headers: service,
          body: { path: s.path, headers: s.headers, body: s.body, ip: nextIp() },
        }),
      ),
    );
    const answers = results.map((r) => r.json());
    expect(answers.filter((a) => a.allow)).toHaveLength(15);
    expect(answers.filter((a) => a.error === "EAPI:Rate limit exceeded")).toHaveLength(25);
  });

  it("audits a key's flood past its limit as one entry per source and minute, and still spends each refused nonce", async () => {
    const { createKey } = await owner();
    const key = await createKey({ name: "flood", permissions: ["funds_query"] });
    const client = clientFor(key);
    h.clock.set(Math.ceil(h.clock.now() / 60_000) * 60_000 + 1000);
    const ip = "198.18.250.9";
    const send = async (signed: ReturnType<KrakenClient["sign"]>) =>
      (
        await h.request("POST", "/v1/gateway/check", {
          headers: service,
          body: { path: signed.path, headers: signed.headers, body: signed.body, ip },
        })
      ).json() as { allow: boolean; error?: string };
    const signed = Array.from({ length: 40 }, () => client.sign("Balance"));
    const answers = [];
    for (const request of signed) answers.push(await send(request));
    expect(answers.filter((a) => a.allow)).toHaveLength(15);
    expect(answers.filter((a) => a.error === "EAPI:Rate limit exceeded")).toHaveLength(25);
    // The 15 allowed calls each have their entry; the 25 refusals are one count, durable already.
    const allowed = await h.db
      .selectFrom("audit_log")
      .select("details")
      .where("actor", "=", `api_key:${key.id}`)
      .execute();
    expect(allowed).toHaveLength(15);
    const counted = await h.db
      .selectFrom("audit_aggregates")
      .select(["count", "actor"])
      .where("key", "like", `%EAPI:Rate limit exceeded|${key.id}`)
      .execute();
    expect(counted).toEqual([{ count: 25, actor: `api_key:${key.id}` }]);
    // A refused call spent its nonce: sent again once the counter has room, it is a replay.
    h.clock.advance(60_000);
    expect(await send(signed[39]!)).toEqual({ allow: false, error: "EAPI:Invalid nonce" });
  });

  it("has each failure counted in the database by the time its refusal is answered, once", async () => {
    const { createKey } = await owner();
    const key = await createKey({ name: "counted", permissions: ["funds_query"] });
    const forger = clientFor({ key: key.key, secret: Buffer.alloc(64, 5).toString("base64") });
    const address = "192.0.2.91";
    const stored = async (subject: string) =>
      (
        await h.db
          .selectFrom("api_lockouts")
          .select(["failures", "locked_until"])
          .where("subject", "=", subject)
          .executeTakeFirst()
      )?.failures ?? 0;
    for (let i = 1; i <= 3; i += 1) {
      expect((await check(forger, "Balance", {}, address)).error).toBe("EAPI:Invalid signature");
      expect(await stored(`ip:${address}`)).toBe(i);
      expect(await stored(`keyip:${key.key}|${address}`)).toBe(i);
    }
    // In parallel, each of the next seven is counted once: the tenth failure locks the address out.
    const parallel = await Promise.all(
      Array.from({ length: 7 }, () => check(forger, "Balance", {}, address)),
    );
    expect(parallel.map((answer) => answer.error)).toEqual(Array(7).fill("EAPI:Invalid signature"));
    expect(await stored(`ip:${address}`)).toBe(10);
    expect((await check(clientFor(key), "Balance", {}, address)).error).toBe("EGeneral:Temporary lockout");
  });

  it("locks out where guesses come from, never a key whose public string a stranger knows", async () => {
    const { createKey } = await owner();
    const key = await createKey({ name: "target", permissions: ["funds_query"] });
    const good = clientFor(key);
    const forger = clientFor({ key: key.key, secret: Buffer.alloc(64, 3).toString("base64") });
    // Ten bad signatures for this key from ten addresses: the owner's bot is not locked out.
    for (let i = 0; i < 10; i += 1)
      expect((await check(forger, "Balance")).error).toBe("EAPI:Invalid signature");
    expect((await check(good, "Balance")).allow).toBe(true);
    // Ten from one address lock that address out, for this key and every other.
    const forgerAddress = "192.0.2.77";
    for (let i = 0; i < 10; i += 1)
      expect((await check(forger, "Balance", {}, forgerAddress)).error).toBe("EAPI:Invalid signature");
    expect((await check(good, "Balance", {}, forgerAddress)).error).toBe("EGeneral:Temporary lockout");
    expect((await check(good, "Balance")).allow).toBe(true);
    h.clock.advance(15 * 60_000);
    expect((await check(good, "Balance", {}, forgerAddress)).allow).toBe(true);

    // An IPv6 attacker counts by its /64, whichever address of it each guess comes from.
    for (let i = 0; i < 10; i += 1)
      expect((await check(forger, "Balance", {}, `2001:db8:66:1::${(i + 1).toString(16)}`)).error).toBe(
        "EAPI:Invalid signature",
      );
    expect((await check(good, "Balance", {}, "2001:db8:66:1:ffff::1")).error).toBe(
      "EGeneral:Temporary lockout",
    );
    expect((await check(good, "Balance", {}, "2001:db8:66:2::1")).allow).toBe(true);

    // Ten unknown keys from one address: that address is locked out, for every key.
    const other = clientFor(await createKey({ name: "bystander", permissions: ["funds_query"] }));
    const attacker = "192.0.2.66";
    for (let i = 0; i < 10; i += 1) {
      const stranger = clientFor({ key: `unknown-${i}`, secret: key.secret });
      expect((await check(stranger, "Balance", {}, attacker)).error).toBe("EAPI:Invalid key");
    }
    expect((await check(other, "Balance", {}, attacker)).error).toBe("EGeneral:Temporary lockout");
    expect((await check(other, "Balance")).allow).toBe(true);

    // A used or a stale nonce needs no secret (a captured request, sent again or late): it counts against
    // where it comes from, never the key. Twenty copies from twenty addresses leave the key's bot working;
    // ten from one address lock that address out.
    const capturedKey = await createKey({ name: "captured", permissions: ["funds_query"] });
    const copy = (nonce: bigint) =>
      new KrakenClient({
        baseUrl: "http://unused.invalid",
        key: capturedKey.key,
        secret: capturedKey.secret,
        nonce: () => nonce,
      });
    expect((await check(copy(4n), "Balance")).allow).toBe(true);
    expect((await check(copy(5n), "Balance")).allow).toBe(true);
    for (let i = 0; i < 10; i += 1) {
      expect((await check(copy(5n), "Balance")).error).toBe("EAPI:Invalid nonce");
      expect((await check(copy(4n), "Balance")).error).toBe("EAPI:Invalid nonce");
    }
    expect((await check(clientFor(capturedKey), "Balance")).allow).toBe(true);
    const copier = "192.0.2.88";
    for (let i = 0; i < 10; i += 1)
      expect((await check(copy(5n), "Balance", {}, copier)).error).toBe("EAPI:Invalid nonce");
    expect((await check(clientFor(capturedKey), "Balance", {}, copier)).error).toBe(
      "EGeneral:Temporary lockout",
    );
    expect((await check(clientFor(capturedKey), "Balance")).allow).toBe(true);
  });

  it("forgets a source once its window is over and it is not locked, however many sources a flood names", async () => {
    const { createKey } = await owner();
    const key = await createKey({ name: "flooded", permissions: ["funds_query"] });
    const good = clientFor(key);
    const forger = clientFor({ key: key.key, secret: Buffer.alloc(64, 7).toString("base64") });
    const guess = async (ip: string) =>
      expect((await check(forger, "Balance", {}, ip)).error).toBe("EAPI:Invalid signature");
    const rows = async (pattern: string) =>
      (await h.db.selectFrom("api_lockouts").select("subject").where("subject", "like", pattern).execute())
        .length;
    // One guess from each of 30 addresses; the first of ten from `locker`, the other nine ten minutes on.
    const locker = "198.51.100.9";
    for (let i = 1; i <= 30; i += 1) await guess(`203.0.113.${i}`);
    await guess(locker);
    h.clock.advance(10 * 60_000);
    for (let i = 0; i < 9; i += 1) await guess(locker);
    expect((await check(good, "Balance", {}, locker)).error).toBe("EGeneral:Temporary lockout");
    expect(await rows("ip:203.0.113.%")).toBe(30);

    // Their windows are over: the 30 count nothing; `locker` is still locked for ten minutes.
    h.clock.advance(5 * 60_000 + 1);
    // A flood from new addresses: on SQLite the gateway's memory lets the old subjects go as it comes,
    // without waiting for housekeeping, and holds exactly those whose window is open or that are locked.
    for (let i = 1; i <= 60; i += 1) await guess(`100.64.7.${i}`);
    const state = h.services.gatewayState;
    if (state instanceof MemoryGatewayState) {
      const now = h.clock.now();
      const counting = await h.db
        .selectFrom("api_lockouts")
        .select("subject")
        .where((eb) => eb.or([eb("window_start", ">", now - 15 * 60_000), eb("locked_until", ">", now)]))
        .execute();
      expect(counting.length).toBeGreaterThanOrEqual(122);
      expect(state.lockoutSubjects).toBe(counting.length);
      // Operators see the same number.
      const metrics = await h.request("GET", "/metrics", { token: METRICS_TOKEN });
      expect(metrics.body).toContain(`portcullis_gateway_lockout_subjects ${counting.length}\n`);
    }
    // Housekeeping deletes their rows; the locked address keeps its own, and stays locked.
    await state.prune();
    expect(await rows("ip:203.0.113.%")).toBe(0);
    expect(await rows(`%${locker}`)).toBe(2);
    expect(await rows("ip:100.64.7.%")).toBe(60);
    expect((await check(good, "Balance", {}, locker)).error).toBe("EGeneral:Temporary lockout");
    h.clock.advance(10 * 60_000);
    await state.prune();
    expect(await rows(`%${locker}`)).toBe(0);
    expect((await check(good, "Balance", {}, locker)).allow).toBe(true);
  });

  it("asks the capability function: a restricted account, a product out of reach, the API in maintenance", async () => {
    const gb = await owner("GB");
    const client = clientFor(
      await gb.createKey({ name: "trader", permissions: ["funds_query", "trades_modify", "funds_earn"] }),
    );
    expect(
      (
        await check(client, "AddOrder", {
          pair: "XBTUSD",
          type: "buy",
          ordertype: "limit",
          price: "1",
          volume: "1",
        })
      ).allow,
    ).toBe(true);
    // Margin needs Intermediate verification (docs/behaviour.md §9 defaults): a starter's leveraged order is refused.
    expect(
      (
        await check(client, "AddOrder", {
          pair: "XBTUSD",
          type: "buy",
          ordertype: "limit",
          price: "1",
          volume: "1",
          leverage: "2",
        })
      ).error,
    ).toBe("EGeneral:Permission denied");
    const maintenance = await h.request("PUT", "/v1/admin/subsystems/api", {
      headers: operator,
      body: { status: "maintenance", message: "Upgrading" },
    });
    expect(maintenance.statusCode, maintenance.body).toBe(200);
    try {
      expect((await check(client, "Balance")).error).toBe("EService:Unavailable");
    } finally {
      const back = await h.request("PUT", "/v1/admin/subsystems/api", {
        headers: operator,
        body: { status: "operational" },
      });
      expect(back.statusCode, back.body).toBe(200);
    }
    expect((await check(client, "Balance")).allow).toBe(true);

    await h.services.storage.db
      .updateTable("accounts")
      .set({ disabled_at: h.clock.now() })
      .where("id", "=", gb.accountId)
      .execute();
    expect((await check(client, "Balance")).error).toBe("EAuth:Account temporary disabled");
  });

  it("requires the key's own second factor: a static password or a TOTP code, sent as otp", async () => {
    const { createKey } = await owner();
    const staticKey = await createKey({
      name: "static-2fa",
      permissions: ["funds_query"],
      otp: { type: "static", password: "correct-horse-battery" },
    });
    expect(staticKey.otp).toEqual({ type: "static" });
    expect((await check(clientFor(staticKey), "Balance")).error).toBe("EAPI:Invalid key");
    expect((await check(clientFor(staticKey, "wrong-password"), "Balance")).error).toBe("EAPI:Invalid key");
    expect((await check(clientFor(staticKey, "correct-horse-battery"), "Balance")).allow).toBe(true);

    const totpKey = await createKey({
      name: "totp-2fa",
      permissions: ["funds_query"],
      otp: { type: "totp" },
    });
    // Both kept sealed under the data key, bound to the key's row; never as given.
    const stored = await h.db
      .selectFrom("api_keys")
      .select(["id", "otp_sealed"])
      .where("id", "in", [staticKey.id, totpKey.id])
      .execute();
    for (const row of stored) expect(row.otp_sealed).toMatch(/^v1\.[0-9a-f]{8}\./);
    expect(JSON.stringify(stored)).not.toContain("correct-horse-battery");
    expect(JSON.stringify(stored)).not.toContain(totpKey.otp!.secret);
    const seed = base32Decode(totpKey.otp!.secret);
    expect((await check(clientFor(totpKey, "000000"), "Balance")).error).toBe("EAPI:Invalid key");
    const withCode = clientFor(totpKey, () => totpCode(seed, h.clock.now()));
    expect((await check(withCode, "Balance")).allow).toBe(true);
    // Each code once (RFC 6238 §5.2), however many requests carry it at the same time.
    expect((await check(withCode, "Balance")).error).toBe("EAPI:Invalid key");
    h.clock.advance(30_000);
    const parallel = await Promise.all(Array.from({ length: 20 }, () => check(withCode, "Balance")));
    expect(parallel.filter((r) => r.allow)).toHaveLength(1);
  });

  it("never writes the key, its secret, a signature or the key's password to the audit log", async () => {
    const { createKey } = await owner();
    const key = await createKey({
      name: "quiet",
      permissions: ["funds_query"],
      otp: { type: "static", password: "do-not-log-this-password" },
    });
    const client = clientFor(key, "do-not-log-this-password");
    const signed = client.sign("Balance");
    await check(client, "Balance");
    await check(clientFor(key, "a-wrong-password-also-secret"), "Balance");
    await check(clientFor({ key: key.key, secret: Buffer.alloc(64, 1).toString("base64") }), "Balance");
    const rows = await h.db.selectFrom("audit_log").select(["details", "actor", "user_agent"]).execute();
    const everything = JSON.stringify(rows);
    expect(everything).toContain("api_key:");
    for (const secret of [
      key.key,
      key.secret,
      signed.headers["API-Sign"],
      "do-not-log-this-password",
      "a-wrong-password-also-secret",
    ]) {
      expect(everything).not.toContain(secret);
    }
  });

  it("keeps history queries within the key's query window and tells the venue the window", async () => {
    const { createKey } = await owner();
    const from = Date.UTC(2026, 0, 1);
    const to = Date.UTC(2026, 5, 30);
    const client = clientFor(
      await createKey({
        name: "auditor",
        permissions: ["ledger_query"],
        queryFrom: new Date(from).toISOString(),
        queryTo: new Date(to).toISOString(),
      }),
    );
    const inside = await check(client, "Ledgers", { start: from / 1000 + 60, end: to / 1000 - 60 });
    expect(inside.allow).toBe(true);
    expect(inside.headers).toMatchObject({
      "x-portcullis-query-from": String(from / 1000),
      "x-portcullis-query-to": String(to / 1000),
    });
    expect((await check(client, "Ledgers", { start: from / 1000 - 1 })).error).toBe(
      "EGeneral:Permission denied",
    );
    expect((await check(client, "Ledgers", { end: to / 1000 + 1 })).error).toBe("EGeneral:Permission denied");
  });

  it("holds requests above the approval threshold until the owner approves them with a second factor", async () => {
    const trader = await owner();
    const key = await trader.createKey({
      name: "big-bot",
      permissions: ["trades_modify"],
      approvalThreshold: { USD: "1000", XBT: "2" },
    });
    const client = clientFor(key);
    const small = { pair: "XBTUSD", type: "buy", ordertype: "limit", price: "500", volume: "1.5" };
    const large = { ...small, volume: "2.5" };
    expect((await check(client, "AddOrder", small)).allow).toBe(true);
    const held = await check(client, "AddOrder", large);
    expect(held).toMatchObject({ allow: false, error: "EGeneral:Approval required" });
    const approvalId = held.approval!.id;
    // A market order moves its volume of the base asset: above the BTC threshold it is held too.
    expect(
      (await check(client, "AddOrder", { pair: "XBTUSD", type: "buy", ordertype: "market", volume: "2.1" }))
        .error,
    ).toBe("EGeneral:Approval required");

    const listed = await h.request("GET", "/v1/approvals", { token: trader.token() });
    const approval = listed.json().approvals.find((a: { id: string }) => a.id === approvalId);
    expect(approval.summary).toContain(
      'API key "big-bot" — AddOrder: pair XBTUSD; side buy; type limit; volume 2.5; price 500',
    );
    expect(approval.summary).toContain("BTC 2, USD 1000");
    // Resubmitting before the approval is confirmed does not pass.
    expect((await check(client, "AddOrder", { ...large, approval_id: approvalId })).error).toBe(
      "EGeneral:Invalid arguments",
    );
    const wrong = await h.request("POST", `/v1/approvals/${approvalId}/confirm`, {
      token: trader.token(),
      body: { totp: "000000" },
    });
    expect(wrong.statusCode).toBe(401);
    const confirmed = await h.request("POST", `/v1/approvals/${approvalId}/confirm`, {
      token: trader.token(),
      body: { totp: nextTotpCode(h, trader.secret) },
    });
    expect(confirmed.statusCode, confirmed.body).toBe(200);
    // The approval covers exactly the request that was held, once.
    expect((await check(client, "AddOrder", { ...large, volume: "9", approval_id: approvalId })).error).toBe(
      "EGeneral:Invalid arguments",
    );
    expect((await check(client, "AddOrder", { ...large, approval_id: approvalId })).allow).toBe(true);
    expect((await check(client, "AddOrder", { ...large, approval_id: approvalId })).error).toBe(
      "EGeneral:Invalid arguments",
    );
  });

  it("spends an approval once, whatever the number of parallel resubmissions", async () => {
    const trader = await owner();
    const client = clientFor(
      await trader.createKey({
        name: "withdrawer",
        permissions: ["funds_withdraw"],
        ipAllowlist: ["198.18.0.0/16"],
        approvalThreshold: { BTC: "1" },
      }),
    );
    const withdrawal = { asset: "XBT", key: "cold", amount: "2" };
    const held = await check(client, "Withdraw", withdrawal);
    expect(held.error).toBe("EGeneral:Approval required");
    await h.request("POST", `/v1/approvals/${held.approval!.id}/confirm`, {
      token: trader.token(),
      body: { totp: nextTotpCode(h, trader.secret) },
    });
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        check(client, "Withdraw", { ...withdrawal, approval_id: held.approval!.id }),
      ),
    );
    expect(results.filter((r) => r.allow)).toHaveLength(1);
  });

  it("lets an operator list and disable a key, through the admin API and the CLI, and tells the owner", async () => {
    const trader = await owner();
    const first = await trader.createKey({ name: "abused", permissions: ["funds_query"] });
    const second = await trader.createKey({ name: "also-abused", permissions: ["funds_query"] });
    const listed = await h.request("GET", `/v1/admin/accounts/${trader.accountId}/api-keys`, {
      headers: operator,
    });
    expect(listed.json().apiKeys.map((k: { name: string }) => k.name)).toEqual(["abused", "also-abused"]);
    expect(listed.body).not.toContain(first.secret);

    const disabled = await h.request("DELETE", `/v1/admin/api-keys/${first.id}`, { headers: operator });
    expect(disabled.json()).toEqual({ status: "disabled" });
    expect((await check(clientFor(first), "Balance")).error).toBe("EAPI:Invalid key");
    expect(
      (await h.request("DELETE", `/v1/admin/api-keys/${first.id}`, { headers: operator })).statusCode,
    ).toBe(404);
    await h.deliverMail();
    await h.smtp.waitFor(trader.user.email, /Support disabled API key "abused"/);
    expect(
      h.smtp.messages.some(
        (m) => m.to.includes(trader.user.email) && m.text.includes('support disabled API key "abused"'),
      ),
    ).toBe(true);
    const audit = await h.services.audit.list({
      events: ["api_key.disabled"],
      accountId: trader.accountId,
      limit: 5,
    });
    expect(audit[0]).toMatchObject({ actor: "operator", details: { keyId: first.id } });

    // The same from the command line, against the same database.
    const env = {
      ...process.env,
      PORTCULLIS_DATABASE_URL: h.storage.url,
      PORTCULLIS_DATA_DIR: h.storage.dataDir,
    };
    const cli = (...args: string[]) =>
      run(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { env });
    const lines = (await cli("api-keys", "list", trader.user.username)).stdout.trim().split("\n");
    expect(lines.map((line) => JSON.parse(line).name)).toEqual(["also-abused"]);
    expect((await cli("api-keys", "disable", second.id)).stdout).toContain(`API key ${second.id} disabled`);
    expect((await check(clientFor(second), "Balance")).error).toBe("EAPI:Invalid key");

    // Support removes a Global Settings Lock for an owner who lost everything (the 0-day case).
    await h.db
      .updateTable("accounts")
      .set({ global_lock_since: h.clock.now(), global_lock_delay_days: 7 })
      .where("id", "=", trader.accountId)
      .execute();
    expect((await cli("accounts", "remove-global-lock", trader.user.username)).stdout).toContain("removed");
    const account = await h.services.accounts.findById(trader.accountId);
    expect(account?.globalLock).toBeNull();

    // Disabling an account from the command line; enabling it again.
    expect((await cli("accounts", "disable", trader.user.username)).stdout).toContain("disabled");
    expect((await h.services.accounts.findById(trader.accountId))?.disabled).toBe(true);
    expect((await cli("accounts", "enable", trader.user.username)).stdout).toContain("enabled");
    expect((await h.services.accounts.findById(trader.accountId))?.disabled).toBe(false);
  });

  it("changes a key only after a step-up, and the change takes effect at once", async () => {
    const trader = await owner();
    const key = await trader.createKey({ name: "evolving", permissions: ["funds_query"] });
    const client = clientFor(key);
    expect((await check(client, "OpenOrders")).error).toBe("EGeneral:Permission denied");
    const direct = await h.request("PATCH", `/v1/api-keys/${key.id}`, {
      token: trader.token(),
      body: { permissions: ["funds_query", "trades_query_open"] },
    });
    expect(direct.json().error.code).toBe("step_up_required");
    expect(direct.json().error.action.summary).toContain("trades_query_open");
    const changed = await trader.change("PATCH", `/v1/api-keys/${key.id}`, {
      permissions: ["funds_query", "trades_query_open"],
      name: "evolved",
    });
    expect(changed.statusCode, changed.body).toBe(200);
    expect(changed.json()).toMatchObject({
      name: "evolved",
      permissions: ["funds_query", "trades_query_open"],
    });
    expect((await check(client, "OpenOrders")).allow).toBe(true);
    // The owner is told of both, by email (behaviour §12).
    await h.deliverMail();
    const told = h.smtp.messages.filter((m) => m.to.includes(trader.user.email)).map((m) => m.text);
    expect(told.some((text) => text.includes('created API key "evolving"'))).toBe(true);
    expect(told.some((text) => text.includes('changed API key "evolved"'))).toBe(true);
    const withdraw = await h.request("PATCH", `/v1/api-keys/${key.id}`, {
      token: trader.token(),
      body: { permissions: ["funds_withdraw"] },
    });
    expect(withdraw.statusCode).toBe(400);
    expect(withdraw.json().error.details[0].field).toBe("ipAllowlist");
  });
});
