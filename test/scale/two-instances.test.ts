import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KrakenClient } from "../../src/client/kraken-client.js";
import { CountingHasher } from "../helpers/counting-hasher.js";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness, newUser, SERVICE_TOKEN } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";

const service = { authorization: `Bearer ${SERVICE_TOKEN}` };
const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };

/**
 * Two instances of one deployment — PostgreSQL and Redis shared, each instance with its own connection
 * pool, session cache and Redis connections — with requests dealt out in turn, as a round-robin load
 * balancer would. (SQLite is one server process by design: several instances need PostgreSQL.)
 */
describe("two instances on PostgreSQL + Redis behind a round-robin (behaviour §4, §5, §11)", () => {
  const hasher = new CountingHasher();
  let a: Harness;
  let b: Harness;
  let turn = 0;
  /** The next instance in turn. */
  const next = () => (turn++ % 2 === 0 ? a : b);
  let ipCounter = 0;
  const freshIp = () => `198.51.${Math.floor(ipCounter / 250)}.${(ipCounter++ % 250) + 1}`;

  beforeAll(async () => {
    a = await Harness.create("postgres", { redis: true, hasher });
    b = await a.twin();
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it("restricts an account exactly at the limit when 5 wrong passwords arrive in parallel on each instance", async () => {
    const user = await a.createVerifiedUser();
    const accountId = await a.accountId(user);
    const botChecks = await Promise.all(Array.from({ length: 10 }, () => next().botCheck()));
    hasher.reset();
    const responses = await Promise.all(
      botChecks.map((botCheck, i) =>
        (i % 2 === 0 ? a : b).request("POST", "/v1/sign-in", {
          body: { identifier: user.username, password: "a wrong guess, in parallel", botCheck },
          ip: freshIp(),
        }),
      ),
    );
    expect(responses.map((r) => r.statusCode)).toEqual(Array(10).fill(401));
    // Five real checks in all, whichever instance ran them; the sixth to tenth were refused unchecked.
    expect(hasher.realVerifications).toBe(5);
    const guard = await a.db
      .selectFrom("account_guards")
      .selectAll()
      .where("account_id", "=", accountId)
      .executeTakeFirstOrThrow();
    expect(guard.consecutive_failures).toBe(5);
    expect(guard.restrictions).toBe(1);
    // The right password is now refused on both instances.
    for (const instance of [a, b]) {
      const right = await instance.signIn(user.username, user.password, { ip: freshIp() });
      expect(right.statusCode).toBe(401);
    }
  });

  it("refuses on one instance the session ended on the other, on the very next request", async () => {
    const user = await a.createVerifiedUser();
    const token = await a.sessionToken(user);
    // Both instances read, and cache, the session.
    for (const instance of [a, b, a, b]) {
      expect((await instance.request("GET", "/v1/session", { token })).statusCode).toBe(200);
    }
    // B no longer hears published revocations: only the generation it reads from Redis can tell it.
    (b.services.sessions as unknown as { bus: { close(): void } }).bus.close();
    expect((await a.request("DELETE", "/v1/session", { token })).statusCode).toBe(200);
    expect((await b.request("GET", "/v1/session", { token })).statusCode).toBe(401);
    expect((await a.request("GET", "/v1/session", { token })).statusCode).toBe(401);
  });

  it("spends a single-use link once when it is opened on both instances at the same time", async () => {
    const user = newUser();
    expect((await a.signUp(user)).statusCode).toBe(202);
    await a.deliverMail();
    const token = linkToken(await a.smtp.waitFor(user.email, /Verify your email/), "/verify-email");
    const answers = await Promise.all(
      Array.from({ length: 20 }, () =>
        next().request("POST", "/v1/accounts/verify-email", { body: { token } }),
      ),
    );
    expect(answers.filter((r) => r.statusCode === 200)).toHaveLength(1);
    expect(answers.every((r) => r.statusCode < 500)).toBe(true);
  });

  describe("with an API key", () => {
    let key: { id: string; key: string; secret: string };
    let operated: { id: string; key: string; secret: string };
    let ownerToken = "";
    beforeAll(async () => {
      const user = await a.createVerifiedUser();
      const enrolled = await enrollTotp(a, await a.sessionToken(user, "pro"), { password: user.password });
      ownerToken = enrolled.token;
      // Each key a step-up of its own, on the instance named; the session rotates with every step-up.
      const createKey = async (instance: Harness, body: Record<string, unknown>) => {
        const created = await withStepUp(
          instance,
          ownerToken,
          "POST",
          "/v1/api-keys",
          { totp: nextTotpCode(a, enrolled.secret) },
          { body },
        );
        expect(created.response.statusCode, created.response.body).toBe(201);
        ownerToken = created.token;
        return created.response.json() as { id: string; key: string; secret: string };
      };
      key = await createKey(b, { name: "cluster", permissions: ["funds_query"], nonceWindow: 1000 });
      // A second key, for an operator to disable.
      operated = await createKey(a, { name: "operated", permissions: ["funds_query"] });
    });

    const check = (instance: Harness, signed: ReturnType<KrakenClient["sign"]>) =>
      instance
        .request("POST", "/v1/gateway/check", {
          headers: service,
          body: { path: signed.path, headers: signed.headers, body: signed.body, ip: freshIp() },
        })
        .then((r) => r.json() as { allow: boolean; error?: string });

    it("refuses on one instance a nonce used on the other", async () => {
      const client = new KrakenClient({ baseUrl: "http://unused.invalid", key: key.key, secret: key.secret });
      const signed = client.sign("Balance");
      expect((await check(a, signed)).allow).toBe(true);
      expect(await check(b, signed)).toEqual({ allow: false, error: "EAPI:Invalid nonce" });
      // And of 30 parallel copies of one request dealt to both instances, exactly one passes.
      const copy = client.sign("Balance");
      a.clock.advance(60_000); // let the call counter decay fully
      const results = await Promise.all(Array.from({ length: 30 }, () => check(next(), copy)));
      expect(results.filter((r) => r.allow)).toHaveLength(1);
    });

    it("keeps one call counter for the key across instances", async () => {
      // Past the temporary lockout the replayed copies above earned the key.
      a.clock.advance(16 * 60_000);
      // Consecutive nonces, all within the key's window of 1000 whatever order they arrive in (nonces
      // from the microsecond clock can be further apart than that when signing takes a while).
      let nonce = BigInt(Date.now()) * 1000n;
      const client = new KrakenClient({
        baseUrl: "http://unused.invalid",
        key: key.key,
        secret: key.secret,
        nonce: () => ++nonce,
      });
      const signed = Array.from({ length: 40 }, () => client.sign("Balance"));
      const results = await Promise.all(signed.map((s) => check(next(), s)));
      // Starter tier: a ceiling of 15 calls, wherever they arrive.
      expect(results.filter((r) => r.allow)).toHaveLength(15);
      expect(results.filter((r) => r.error === "EAPI:Rate limit exceeded")).toHaveLength(25);
    });

    it("lets exactly one of 40 parallel copies of one nonce through, across both instances", async () => {
      a.clock.advance(16 * 60_000);
      const client = new KrakenClient({ baseUrl: "http://unused.invalid", key: key.key, secret: key.secret });
      const copy = client.sign("Balance");
      const results = await Promise.all(Array.from({ length: 40 }, () => check(next(), copy)));
      expect(results.filter((r) => r.allow)).toHaveLength(1);
      expect(results.filter((r) => r.error === "EAPI:Invalid nonce").length).toBeGreaterThanOrEqual(9);
    });

    it("refuses on the other instance, on the very next request, a key an operator disabled on one", async () => {
      a.clock.advance(16 * 60_000);
      const client = new KrakenClient({
        baseUrl: "http://unused.invalid",
        key: operated.key,
        secret: operated.secret,
      });
      // Both instances have the key in memory now.
      expect((await check(a, client.sign("Balance"))).allow).toBe(true);
      expect((await check(b, client.sign("Balance"))).allow).toBe(true);
      const disabled = await a.request("DELETE", `/v1/admin/api-keys/${operated.id}`, { headers: operator });
      expect(disabled.statusCode, disabled.body).toBe(200);
      expect(await check(b, client.sign("Balance"))).toEqual({ allow: false, error: "EAPI:Invalid key" });
      expect(await check(a, client.sign("Balance"))).toEqual({ allow: false, error: "EAPI:Invalid key" });
    });

    it("refuses on the other instance, on the very next request, while an operator on one puts the API in maintenance", async () => {
      a.clock.advance(16 * 60_000);
      const client = new KrakenClient({
        baseUrl: "http://unused.invalid",
        key: key.key,
        secret: key.secret,
      });
      // Both instances have read the subsystems now (the fake clock stands still: their rows never age).
      expect((await check(a, client.sign("Balance"))).allow).toBe(true);
      expect((await check(b, client.sign("Balance"))).allow).toBe(true);
      const down = await a.request("PUT", "/v1/admin/subsystems/api", {
        headers: operator,
        body: { status: "maintenance", message: "Upgrading" },
      });
      expect(down.statusCode, down.body).toBe(200);
      try {
        expect(await check(b, client.sign("Balance"))).toEqual({
          allow: false,
          error: "EService:Unavailable",
        });
        expect(await check(a, client.sign("Balance"))).toEqual({
          allow: false,
          error: "EService:Unavailable",
        });
      } finally {
        const back = await a.request("PUT", "/v1/admin/subsystems/api", {
          headers: operator,
          body: { status: "operational" },
        });
        expect(back.statusCode, back.body).toBe(200);
      }
      expect((await check(b, client.sign("Balance"))).allow).toBe(true);
    });

    it("refuses on the other instance, on the very next request, a key deleted on one", async () => {
      a.clock.advance(16 * 60_000);
      const client = new KrakenClient({ baseUrl: "http://unused.invalid", key: key.key, secret: key.secret });
      // Both instances have the key in memory now.
      expect((await check(a, client.sign("Balance"))).allow).toBe(true);
      expect((await check(b, client.sign("Balance"))).allow).toBe(true);
      const deleted = await a.request("DELETE", `/v1/api-keys/${key.id}`, { token: ownerToken });
      expect(deleted.statusCode, deleted.body).toBe(200);
      expect(await check(b, client.sign("Balance"))).toEqual({ allow: false, error: "EAPI:Invalid key" });
      expect(await check(a, client.sign("Balance"))).toEqual({ allow: false, error: "EAPI:Invalid key" });
    });
  });

  it("audits on a chain per instance, and the chains verify together", async () => {
    // Both instances have answered requests by now: each wrote its entries to its own chain.
    const chains = [a.services.audit.chainId, b.services.audit.chainId];
    expect(chains.every((chain) => chain !== null && chain > 1)).toBe(true);
    expect(chains[0]).not.toBe(chains[1]);
    for (const chain of chains) {
      const entries = await a.db
        .selectFrom("audit_log")
        .select("seq")
        .where("chain_id", "=", chain!)
        .execute();
      expect(entries.length).toBeGreaterThan(0);
    }
    const verified = await b.services.audit.verify();
    expect(verified, JSON.stringify(verified)).toMatchObject({ ok: true, chains: 3 });
  });
});
