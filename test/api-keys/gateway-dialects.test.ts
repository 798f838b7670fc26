import type { AddressInfo } from "node:net";
import ccxt from "ccxt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DatabaseGatewayState } from "../../src/api-keys/gateway-state.js";
import { ApiLockout } from "../../src/api-keys/lockout.js";
import { otherSpellings } from "../helpers/base64-spellings.js";
import {
  type DialectKey,
  futuresHeaders,
  kucoinHeaders,
  type RawAnswer,
  rawRequest,
} from "../helpers/dialect-requests.js";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness, SERVICE_TOKEN } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";
import { VenueUpstream } from "../helpers/venue-upstream.js";

const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };
const service = { authorization: `Bearer ${SERVICE_TOKEN}` };

type Key = DialectKey;
type Answer = RawAnswer;

describe.each(engines)("KuCoin and Kraken Futures clients through the gateway on %s", (engine) => {
  let h: Harness;
  const upstream = new VenueUpstream();
  let port = 0;
  let addressCounter = 0;
  const nextAddress = () => `203.0.${Math.floor(addressCounter / 250)}.${(addressCounter++ % 250) + 1}`;

  beforeAll(async () => {
    await upstream.start();
    h = await Harness.create(engine, {
      env: { PORTCULLIS_UPSTREAM_URL: upstream.url, PORTCULLIS_TRUSTED_PROXIES: "127.0.0.1/32" },
    });
    await h.app.http.listen({ port: 0, host: "127.0.0.1" });
    port = (h.app.http.server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await h.close();
    await upstream.stop();
  });

  const raw = (
    method: string,
    path: string,
    headers: Record<string, string>,
    body = "",
    address = nextAddress(),
  ): Promise<Answer> => rawRequest(port, method, path, headers, body, address);

  const owner = async (country: string, tier?: "intermediate" | "pro", region?: string) => {
    const user = await h.createVerifiedUser({ country, ...(region ? { region } : {}) });
    const accountId = await h.accountId(user);
    if (tier)
      await h.request("PUT", `/v1/admin/accounts/${accountId}/verification`, {
        headers: operator,
        body: { tier },
      });
    const enrolled = await enrollTotp(h, await h.sessionToken(user, "pro"), { password: user.password });
    let token = enrolled.token;
    const create = async (body: Record<string, unknown>) => {
      const result = await withStepUp(
        h,
        token,
        "POST",
        "/v1/api-keys",
        { totp: nextTotpCode(h, enrolled.secret) },
        { body },
      );
      token = result.token;
      return result.response;
    };
    const createKey = async (body: Record<string, unknown>): Promise<Key> => {
      const response = await create(body);
      expect(response.statusCode, response.body).toBe(201);
      return { ...response.json(), passphrase: (body.passphrase as string | undefined) ?? "" };
    };
    /** A key refused for what it asks: the settings are checked before any step-up is asked. */
    const refused = (body: Record<string, unknown>) => h.request("POST", "/v1/api-keys", { token, body });
    return { accountId, create, createKey, refused };
  };

  /** A KuCoin request signed by the documentation's signer, at the gateway's (fake) time. */
  const kucoinCall = (
    key: Key,
    method: string,
    requestPath: string,
    body = "",
    options: { timestamp?: number; address?: string; version?: string } = {},
  ) =>
    raw(
      method,
      requestPath,
      kucoinHeaders(key, method, requestPath, body, options.timestamp ?? h.clock.now(), options.version),
      body,
      options.address,
    );

  describe("keys of a dialect", () => {
    it("refuses an unknown dialect, another dialect's permission, a KuCoin key without a passphrase", async () => {
      const { create, refused } = await owner("DE");
      for (const body of [
        { name: "odd", dialect: "binance", permissions: ["general"] },
        { name: "mixed", dialect: "kucoin", passphrase: "kucoin-pass", permissions: ["funds_query"] },
        { name: "mixed2", dialect: "kraken_futures", permissions: ["general"] },
        { name: "mixed3", permissions: ["read"] },
        { name: "nopass", dialect: "kucoin", permissions: ["general"] },
        { name: "draw", dialect: "kucoin", passphrase: "kucoin-pass", permissions: ["withdrawal"] },
        { name: "draw2", dialect: "kraken_futures", permissions: ["withdrawal"] },
      ]) {
        const response = await refused(body);
        expect(response.statusCode, JSON.stringify(body)).toBe(400);
        expect(response.json().error.code).toBe("invalid_request");
      }
      const listed = await create({
        name: "ok",
        dialect: "kucoin",
        passphrase: "kucoin-pass",
        permissions: ["general"],
      });
      expect(listed.statusCode).toBe(201);
      expect(listed.json()).toMatchObject({ dialect: "kucoin", permissions: ["general"] });
      expect(JSON.stringify(listed.json())).not.toContain("kucoin-pass");
    });
  });

  describe("KuCoin", () => {
    let trader: Awaited<ReturnType<typeof owner>>;
    let key: Key;
    beforeAll(async () => {
      trader = await owner("GB", "intermediate");
      key = await trader.createKey({
        name: "kucoin-bot",
        dialect: "kucoin",
        passphrase: "my-kucoin-passphrase",
        permissions: ["general", "spot"],
      });
    });

    it("runs ccxt's kucoin (key version 2): loadMarkets, fetchBalance, createOrder, cancelOrder", async () => {
      const kucoin = new ccxt.kucoin({
        enableRateLimit: false,
        apiKey: key.key,
        secret: key.secret,
        password: key.passphrase,
      });
      // Every API family ccxt knows for KuCoin, pointed at the gateway.
      const api = kucoin.urls.api as Record<string, string>;
      for (const name of Object.keys(api)) api[name] = `http://127.0.0.1:${port}`;
      // ccxt signs with its own clock: let it read the gateway's fake one, a millisecond apart each time.
      let tick = 0;
      kucoin.nonce = () => h.clock.now() + tick++;
      await kucoin.loadMarkets();
      const balance = await kucoin.fetchBalance();
      expect(balance.BTC?.total).toBe(1.25);
      const order = await kucoin.createOrder("BTC/USDT", "limit", "buy", 0.01, 30000);
      expect(order.id).toMatch(/^67a1/);
      await kucoin.cancelOrder(order.id as string, "BTC/USDT");

      const placed = upstream.seen
        .filter((r) => r.method === "POST" && r.path.startsWith("/api/v1/"))
        .at(-1)!;
      expect(placed.params).toMatchObject({ symbol: "BTC-USDT", side: "buy", size: "0.01", price: "30000" });
      expect(placed.headers["x-portcullis-dialect"]).toBe("kucoin");
      expect(placed.headers["x-portcullis-permissions"]).toBe("general,spot");
      for (const seen of upstream.seen.filter((r) => r.path.startsWith("/api/")))
        expect(Object.keys(seen.headers).filter((name) => name.startsWith("kc-api"))).toEqual([]);
    });

    it("accepts the documentation's signer and forwards the path and query, without credentials or client X-Portcullis headers", async () => {
      const answer = await raw("GET", "/api/v1/accounts?currency=BTC&type=trade", {
        ...kucoinHeaders(key, "GET", "/api/v1/accounts?currency=BTC&type=trade", "", h.clock.now()),
        "X-Portcullis-Account": "someone-else",
        "X-Portcullis-Dialect": "kraken",
      });
      expect(answer.status, JSON.stringify(answer.json)).toBe(200);
      expect(answer.json.code).toBe("200000");
      const seen = upstream.at("/api/v1/accounts").at(-1)!;
      expect(seen.path).toBe("/api/v1/accounts?currency=BTC&type=trade");
      expect(seen.headers["x-portcullis-account"]).toBe(trader.accountId);
      expect(seen.headers["x-portcullis-dialect"]).toBe("kucoin");
    });

    it("refuses in KuCoin's codes: missing headers, version 1, stale timestamp, wrong passphrase and signature, unlisted path", async () => {
      const path = "/api/v1/accounts";
      const missing = await raw("GET", path, { "KC-API-KEY": key.key });
      expect(missing).toMatchObject({ status: 401, json: { code: "400001" } });
      const v1 = await kucoinCall(key, "GET", path, "", { version: "1" });
      expect(v1).toMatchObject({ status: 401, json: { code: "400008" } });
      const stale = await kucoinCall(key, "GET", path, "", { timestamp: h.clock.now() - 5_001 });
      expect(stale).toMatchObject({ status: 401, json: { code: "400002" } });
      expect(typeof stale.json.msg).toBe("string");
      const wrongPassphrase = await kucoinCall({ ...key, passphrase: "not-the-passphrase" }, "GET", path);
      expect(wrongPassphrase).toMatchObject({ status: 401, json: { code: "400004" } });
      const forged = await kucoinCall({ ...key, secret: `${key.secret}x` }, "GET", path);
      expect(forged.status).toBe(401);
      expect(["400004", "400005"]).toContain(forged.json.code);
      // A signature over another path is not a signature over this one.
      const headers = kucoinHeaders(key, "GET", "/api/v1/accounts?type=main", "", h.clock.now());
      expect(await raw("GET", "/api/v1/accounts?type=trade", headers)).toMatchObject({
        status: 401,
        json: { code: "400005" },
      });
      const unknownKey = await kucoinCall({ ...key, key: "no-such-key" }, "GET", path);
      expect(unknownKey).toMatchObject({ status: 401, json: { code: "400003" } });
      const unlisted = await kucoinCall(key, "GET", "/api/v1/sub/user");
      expect(unlisted).toMatchObject({ status: 404, json: { code: "404000" } });
    });

    /** A small limit buy, told apart from other orders by its client order id. */
    const limitOrder = (clientOid: string) =>
      JSON.stringify({
        clientOid,
        side: "buy",
        symbol: "BTC-USDT",
        type: "limit",
        price: "100",
        size: "0.001",
      });

    it("accepts a signature once: of 20 parallel copies exactly one passes", async () => {
      const body = limitOrder("replay-1");
      const headers = kucoinHeaders(key, "POST", "/api/v1/orders", body, h.clock.now());
      const before = upstream.at("/api/v1/orders").length;
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => raw("POST", "/api/v1/orders", headers, body)),
      );
      expect(answers.filter((a) => a.status === 200)).toHaveLength(1);
      for (const refused of answers.filter((a) => a.status !== 200))
        expect(refused).toMatchObject({ status: 401, json: { code: "400005" } });
      expect(upstream.at("/api/v1/orders").length).toBe(before + 1);
    });

    it("accepts a signature once however it is spelled: the same bytes written another way are refused", async () => {
      const body = limitOrder("spelled-1");
      const headers = kucoinHeaders(key, "POST", "/api/v1/orders", body, h.clock.now());
      const before = upstream.at("/api/v1/orders").length;
      expect((await raw("POST", "/api/v1/orders", headers, body)).status).toBe(200);
      for (const spelling of otherSpellings(headers["KC-API-SIGN"]!)) {
        const again = await raw("POST", "/api/v1/orders", { ...headers, "KC-API-SIGN": spelling }, body);
        expect(again, spelling).toMatchObject({ status: 401, json: { code: "400005" } });
      }
      // The passphrase is read the same way: one spelling only.
      for (const spelling of otherSpellings(headers["KC-API-PASSPHRASE"]!)) {
        const fresh = kucoinHeaders(key, "GET", "/api/v1/accounts", "", h.clock.now());
        const refused = await raw("GET", "/api/v1/accounts", { ...fresh, "KC-API-PASSPHRASE": spelling });
        expect(refused, spelling).toMatchObject({ status: 401, json: { code: "400004" } });
      }
      expect(upstream.at("/api/v1/orders").length).toBe(before + 1);
    });

    it("refuses an address outside the allowlist (naming it), a missing permission, and margin for a starter account", async () => {
      const fenced = await trader.createKey({
        name: "fenced",
        dialect: "kucoin",
        passphrase: "fenced-passphrase",
        permissions: ["general", "withdrawal"],
        ipAllowlist: ["192.0.2.0/24"],
      });
      const outside = await kucoinCall(fenced, "GET", "/api/v1/accounts", "", { address: "198.51.100.9" });
      expect(outside).toMatchObject({ status: 403, json: { code: "400006" } });
      expect(outside.json.msg).toContain("198.51.100.9");
      const inside = await kucoinCall(fenced, "GET", "/api/v1/accounts", "", { address: "192.0.2.9" });
      expect(inside.status).toBe(200);

      const order = JSON.stringify({
        clientOid: "p-1",
        side: "buy",
        symbol: "BTC-USDT",
        type: "limit",
        price: "1",
        size: "1",
      });
      const denied = await kucoinCall(fenced, "POST", "/api/v1/orders", order, { address: "192.0.2.10" });
      expect(denied).toMatchObject({ status: 403, json: { code: "400007" } });

      const starter = await owner("GB");
      const marginKey = await starter.createKey({
        name: "margin",
        dialect: "kucoin",
        passphrase: "margin-passphrase",
        permissions: ["general", "spot", "margin"],
      });
      const margin = JSON.stringify({
        clientOid: "m-1",
        side: "buy",
        symbol: "BTC-USDT",
        type: "limit",
        price: "1",
        size: "1",
      });
      const refused = await kucoinCall(marginKey, "POST", "/api/v1/margin/order", margin);
      expect(refused).toMatchObject({ status: 403, json: { code: "400301" } });
      // A spot order that trades on margin is a margin order.
      const viaSpot = JSON.stringify({
        clientOid: "m-2",
        side: "buy",
        symbol: "BTC-USDT",
        type: "limit",
        price: "1",
        size: "1",
        tradeType: "MARGIN_TRADE",
      });
      expect((await kucoinCall(marginKey, "POST", "/api/v1/orders", viaSpot)).json.code).toBe("400301");
      expect(
        (await kucoinCall(marginKey, "POST", "/api/v1/orders", order.replace("p-1", "s-1"))).status,
      ).toBe(200);
    });

    it("locks out an address after ten bad signatures, in KuCoin's rate-limit code", async () => {
      const address = "203.0.113.200";
      for (let i = 0; i < 10; i += 1) {
        const forged = await kucoinCall({ ...key, secret: "wrong" }, "GET", "/api/v1/accounts", "", {
          address,
        });
        expect(forged.status).toBe(401);
      }
      const locked = await kucoinCall(key, "GET", "/api/v1/accounts", "", { address });
      expect(locked).toMatchObject({ status: 429, json: { code: "429000" } });
      expect((await kucoinCall(key, "GET", "/api/v1/accounts?x=1")).status).toBe(200);
    });

    it("charges each request's weight to the key's pool: 2000 a 30-second window for management reads", async () => {
      const budgeted = await trader.createKey({
        name: "budget",
        dialect: "kucoin",
        passphrase: "budget-passphrase",
        permissions: ["general"],
      });
      // GET /api/v2/user-info weighs 20: a hundred fill the management pool, the next is refused.
      const start = h.clock.now();
      for (let i = 0; i < 100; i += 1) {
        const answer = await kucoinCall(budgeted, "GET", "/api/v2/user-info", "", { timestamp: start - i });
        expect(answer.status).toBe(200);
      }
      const over = await kucoinCall(budgeted, "GET", "/api/v2/user-info", "", { timestamp: start - 100 });
      expect(over).toMatchObject({ status: 429, json: { code: "429000" } });
      // The spot pool is its own.
      expect((await kucoinCall(budgeted, "GET", "/api/v1/hf/orders/active?symbol=BTC-USDT")).status).toBe(
        200,
      );
      h.clock.advance(30_000);
      expect((await kucoinCall(budgeted, "GET", "/api/v2/user-info")).status).toBe(200);
    });

    it("never lets parallel charges pass a pool's budget", async () => {
      const state = new DatabaseGatewayState(h.db, new ApiLockout(h.db, h.clock));
      const now = h.clock.now();
      const results = await Promise.all(
        Array.from({ length: 30 }, () =>
          state.chargeWeight(key.id, "test-pool", 3, { limit: 30, windowMs: 30_000 }, now),
        ),
      );
      expect(results.filter(Boolean)).toHaveLength(10);
      expect(
        await state.chargeWeight(key.id, "test-pool", 3, { limit: 30, windowMs: 30_000 }, now + 30_000),
      ).toBe(true);
    });

    it("answers the check endpoint for a KuCoin request", async () => {
      const requestPath = "/api/v1/accounts?type=trade";
      const response = await h.request("POST", "/v1/gateway/check", {
        headers: service,
        body: {
          method: "GET",
          path: requestPath,
          headers: kucoinHeaders(key, "GET", requestPath, "", h.clock.now() + 1),
          body: "",
          ip: nextAddress(),
        },
      });
      expect(response.statusCode, response.body).toBe(200);
      expect(response.json()).toMatchObject({
        allow: true,
        dialect: "kucoin",
        headers: { "x-portcullis-dialect": "kucoin", "x-portcullis-permissions": "general,spot" },
        forward: { query: "type=trade" },
      });
    });
  });

  describe("Kraken Futures", () => {
    let trader: Awaited<ReturnType<typeof owner>>;
    /** Signs without a Nonce, as ccxt does. */
    let key: Key;
    /** Signs with a Nonce: a key that has sent one sends one always. */
    let nonceKey: Key;
    let shiftedKey: Key;
    let noncelessKey: Key;
    let nonce = BigInt(Date.now()) * 1000n;
    const nextNonce = () => String(++nonce);
    beforeAll(async () => {
      trader = await owner("DE", "intermediate");
      key = await trader.createKey({ name: "futures-bot", dialect: "kraken_futures", permissions: ["full"] });
      nonceKey = await trader.createKey({
        name: "futures-nonce-bot",
        dialect: "kraken_futures",
        permissions: ["full"],
      });
      shiftedKey = await trader.createKey({
        name: "shifted",
        dialect: "kraken_futures",
        permissions: ["full"],
      });
      noncelessKey = await trader.createKey({
        name: "nonceless",
        dialect: "kraken_futures",
        permissions: ["full"],
      });
    });

    const futuresCall = (
      k: Key,
      method: string,
      endpoint: string,
      postData = "",
      options: { nonce?: string; inQuery?: boolean; address?: string } = {},
    ) => {
      const inQuery = options.inQuery ?? true;
      const path = `/derivatives/api/v3${endpoint}${inQuery && postData ? `?${postData}` : ""}`;
      return raw(
        method,
        path,
        futuresHeaders(k, `/api/v3${endpoint}`, postData, options.nonce),
        inQuery ? "" : postData,
        options.address,
      );
    };

    it("runs ccxt's krakenfutures: loadMarkets, fetchBalance (accounts) and createOrder", async () => {
      const futures = new ccxt.krakenfutures({
        enableRateLimit: false,
        apiKey: key.key,
        secret: key.secret,
        urls: {
          api: {
            public: `http://127.0.0.1:${port}/derivatives/api/`,
            private: `http://127.0.0.1:${port}/derivatives/api/`,
            charts: `http://127.0.0.1:${port}/api/charts/`,
            history: `http://127.0.0.1:${port}/api/history/`,
          },
        },
      });
      await futures.loadMarkets();
      const balance = await futures.fetchBalance();
      expect(balance.info.result).toBe("success");
      const order = await futures.createOrder("BTC/USD:USD", "limit", "buy", 1, 30000);
      expect(order.id).toBe("179f9af8-e45e-469d-b3e9-2fd4675cb7d0");
      const sent = upstream.at("/derivatives/api/v3/sendorder").at(-1)!;
      expect(sent.path).toContain("symbol=PF_XBTUSD");
      expect(sent.headers["x-portcullis-dialect"]).toBe("kraken_futures");
      expect(sent.headers["x-portcullis-permissions"]).toBe("full");
      expect(sent.headers.apikey).toBeUndefined();
      expect(sent.headers.authent).toBeUndefined();
    });

    it("accepts the documentation's signer with a Nonce, in the body or the query, and refuses a repeated or lower one", async () => {
      const first = nextNonce();
      expect((await futuresCall(nonceKey, "GET", "/openpositions", "", { nonce: first })).status).toBe(200);
      const again = await futuresCall(nonceKey, "GET", "/openpositions", "", { nonce: first });
      expect(again).toMatchObject({ status: 401, json: { result: "error", error: "nonceDuplicate" } });
      expect(typeof again.json.serverTime).toBe("string");
      const lower = await futuresCall(nonceKey, "GET", "/openpositions", "", {
        nonce: String(BigInt(first) - 10n),
      });
      expect(lower).toMatchObject({ status: 401, json: { error: "nonceBelowThreshold" } });
      const order = "orderType=lmt&symbol=PF_XBTUSD&side=buy&size=1&limitPrice=100";
      const inBody = await futuresCall(nonceKey, "POST", "/sendorder", order, {
        nonce: nextNonce(),
        inQuery: false,
      });
      expect(inBody.status).toBe(200);
      expect(upstream.at("/derivatives/api/v3/sendorder").at(-1)!.params).toMatchObject({
        symbol: "PF_XBTUSD",
        size: "1",
      });
      const wrong = await futuresCall(
        { ...nonceKey, secret: Buffer.alloc(64, 1).toString("base64") },
        "GET",
        "/accounts",
      );
      expect(wrong).toMatchObject({ status: 401, json: { error: "authenticationError" } });
    });

    it("accepts a nonce-less or a Nonce request once: of 20 parallel copies exactly one passes", async () => {
      const order = "orderType=lmt&symbol=PF_XBTUSD&side=sell&size=1&limitPrice=99999&cliOrdId=replay-20";
      for (const [signer, nonceHeader] of [
        [key, ""],
        [nonceKey, nextNonce()],
      ] as const) {
        const path = `/derivatives/api/v3/sendorder?${order}`;
        const headers = futuresHeaders(signer, "/api/v3/sendorder", order, nonceHeader);
        const answers = await Promise.all(Array.from({ length: 20 }, () => raw("POST", path, headers)));
        expect(answers.filter((a) => a.status === 200)).toHaveLength(1);
        for (const refused of answers.filter((a) => a.status !== 200))
          expect(refused.json.error).toBe("nonceDuplicate");
      }
    });

    it("accepts a nonce-less request once however its Authent is spelled: the same bytes written another way are refused", async () => {
      const order = "orderType=lmt&symbol=PF_XBTUSD&side=sell&size=1&limitPrice=99999&cliOrdId=spelled-1";
      const path = `/derivatives/api/v3/sendorder?${order}`;
      const headers = futuresHeaders(key, "/api/v3/sendorder", order);
      const before = upstream.at("/derivatives/api/v3/sendorder").length;
      expect((await raw("POST", path, headers)).status).toBe(200);
      for (const spelling of otherSpellings(headers.Authent!)) {
        const again = await raw("POST", path, { ...headers, Authent: spelling });
        expect(again, spelling).toMatchObject({ status: 401, json: { error: "authenticationError" } });
      }
      expect(upstream.at("/derivatives/api/v3/sendorder").length).toBe(before + 1);
    });

    it("refuses an address outside the allowlist, a read key's order, a US account's request, and locks out", async () => {
      const reader = await trader.createKey({
        name: "reader",
        dialect: "kraken_futures",
        permissions: ["read"],
        ipAllowlist: ["192.0.2.0/24"],
      });
      const outside = await futuresCall(reader, "GET", "/accounts", "", { address: "198.51.100.3" });
      expect(outside).toMatchObject({ status: 403, json: { error: "permissionDenied" } });
      expect((await futuresCall(reader, "GET", "/accounts", "", { address: "192.0.2.3" })).status).toBe(200);
      const order = "orderType=lmt&symbol=PF_XBTUSD&side=buy&size=1&limitPrice=1";
      const denied = await futuresCall(reader, "POST", "/sendorder", order, { address: "192.0.2.4" });
      expect(denied).toMatchObject({ status: 403, json: { error: "permissionDenied" } });
      // A full key reads too: access levels include the ones below.
      expect((await futuresCall(key, "GET", "/openorders")).status).toBe(200);

      const us = await owner("US", "pro", "US-CA");
      const usKey = await us.createKey({ name: "us", dialect: "kraken_futures", permissions: ["read"] });
      const refused = await futuresCall(usKey, "GET", "/accounts");
      expect(refused).toMatchObject({ status: 403, json: { result: "error", error: "accountNotEligible" } });

      const address = "203.0.113.201";
      const forger = { ...key, secret: Buffer.alloc(64, 2).toString("base64") };
      for (let i = 0; i < 10; i += 1)
        expect((await futuresCall(forger, "GET", "/accounts", "", { address })).status).toBe(401);
      const locked = await futuresCall(key, "GET", "/fills", "", { address });
      expect(locked).toMatchObject({ status: 429, json: { error: "apiLimitExceeded" } });
    });

    it("answers the check endpoint for a Kraken Futures request, refusals in its shape", async () => {
      const order = "orderType=lmt&symbol=PF_XBTUSD&side=buy&size=2&limitPrice=10";
      const check = (headers: Record<string, string>) =>
        h.request("POST", "/v1/gateway/check", {
          headers: service,
          body: {
            method: "POST",
            path: `/derivatives/api/v3/sendorder?${order}`,
            headers,
            body: "",
            ip: nextAddress(),
          },
        });
      const nonceHeader = nextNonce();
      const allowed = await check(futuresHeaders(nonceKey, "/api/v3/sendorder", order, nonceHeader));
      expect(allowed.json()).toMatchObject({
        allow: true,
        dialect: "kraken_futures",
        permissions: ["full"],
        forward: { query: order },
      });
      expect((await check(futuresHeaders(nonceKey, "/api/v3/sendorder", order, nonceHeader))).json()).toEqual(
        {
          allow: false,
          error: "nonceDuplicate",
        },
      );
    });

    it("never takes a key of another dialect", async () => {
      const krakenKey = await trader.createKey({ name: "spot-only", permissions: ["funds_query"] });
      const answer = await futuresCall({ ...krakenKey, passphrase: "" }, "GET", "/accounts");
      expect(answer).toMatchObject({ status: 401, json: { error: "authenticationError" } });
      const asKucoin = await kucoinCall({ ...krakenKey, passphrase: "whatever1" }, "GET", "/api/v1/accounts");
      expect(asKucoin).toMatchObject({ status: 401, json: { code: "400003" } });
    });

    it("passes public market data by name only", async () => {
      expect((await raw("GET", "/derivatives/api/v3/tickers", {})).status).toBe(200);
      const secretPath = await raw("GET", "/derivatives/api/v3/../v3/accounts", {});
      expect(secretPath.status).toBeGreaterThanOrEqual(400);
      expect((await raw("GET", "/api/v2/symbols", {})).json.code).toBe("200000");
    });

    /**
     * A captured request with digits moved across the join the Authent signs (postData + Nonce +
     * endpointPath): the same signature, a different request. Sent on one key, from one address.
     */
    const shifted = (k: Key, postData: string, nonceHeader: string, moved: number) => {
      const headers = futuresHeaders(k, "/api/v3/sendorder", postData, nonceHeader);
      const into = postData.slice(0, -moved);
      const intoNonce = { ...headers, Nonce: postData.slice(-moved) + nonceHeader };
      return {
        original: () => raw("POST", `/derivatives/api/v3/sendorder?${postData}`, headers),
        /** The parameters' last digits moved to the front of the Nonce: a higher Nonce. */
        intoNonce: () => raw("POST", `/derivatives/api/v3/sendorder?${into}`, intoNonce),
        /** The Nonce moved onto the last parameter, sent without one. */
        outOfNonce: () => {
          const { Nonce: _, ...withoutNonce } = headers;
          return raw("POST", `/derivatives/api/v3/sendorder?${postData}${nonceHeader}`, withoutNonce);
        },
      };
    };

    it("refuses a nonce-less request's Authent on a Nonce request and a read's on a write, while a poller repeats its read", async () => {
      const bot = noncelessKey;
      const before = upstream.at("/derivatives/api/v3/sendorder").length;
      const order = "orderType=lmt&symbol=PF_XBTUSD&side=sell&size=1&limitPrice=64123";
      const copy = shifted(bot, order, "", 1);
      expect((await copy.original()).status).toBe(200);
      expect(await copy.intoNonce()).toMatchObject({ status: 401, json: { error: "nonceDuplicate" } });
      expect(upstream.at("/derivatives/api/v3/sendorder").length).toBe(before + 1);

      // ccxt's fetchLeverage: GET /leveragepreferences?symbol=…, which signs PUT ?symbol=… (cross margin) too.
      const query = "symbol=PF_XBTUSD";
      const headers = futuresHeaders(bot, "/api/v3/leveragepreferences", query);
      const read = () => raw("GET", `/derivatives/api/v3/leveragepreferences?${query}`, headers);
      expect((await read()).status).toBe(200);
      expect(await read()).toMatchObject({ status: 401, json: { error: "nonceDuplicate" } });
      h.clock.advance(6_000);
      expect((await read()).status).toBe(200);
      h.clock.advance(6_000);
      const write = await raw("PUT", `/derivatives/api/v3/leveragepreferences?${query}`, headers);
      expect(write).toMatchObject({ status: 401, json: { error: "nonceDuplicate" } });
      expect(
        upstream.at("/derivatives/api/v3/leveragepreferences").filter((r) => r.method === "PUT"),
      ).toEqual([]);
    });

    // Last: it moves the clock a day on, past the sessions that create keys.
    it("refuses a captured request with digits moved between its parameters and its Nonce, then and a day later", async () => {
      const bot = shiftedKey;
      const orders = () => upstream.at("/derivatives/api/v3/sendorder").length;
      const before = orders();
      const order = "orderType=lmt&symbol=PF_XBTUSD&side=sell&size=1&limitPrice=64123";
      const oneDigit = shifted(bot, order, nextNonce(), 1);
      const twoDigits = shifted(bot, order, nextNonce(), 2);
      expect((await oneDigit.original()).status).toBe(200);
      expect((await twoDigits.original()).status).toBe(200);
      for (const copy of [oneDigit, twoDigits]) {
        expect(await copy.intoNonce()).toMatchObject({ status: 401, json: { error: "nonceDuplicate" } });
        expect(await copy.outOfNonce()).toMatchObject({ status: 401, json: { error: "nonceDuplicate" } });
      }
      // A day later the Authent is forgotten (each copy claims it again): the length of the key's Nonces
      // refuses the one, its use of Nonces the other.
      h.clock.advance(25 * 3_600_000);
      expect(await oneDigit.intoNonce()).toMatchObject({
        status: 401,
        json: { error: "nonceBelowThreshold" },
      });
      expect(await twoDigits.outOfNonce()).toMatchObject({
        status: 401,
        json: { error: "nonceBelowThreshold" },
      });
      const withoutNonce = await futuresCall(bot, "GET", "/accounts");
      expect(withoutNonce).toMatchObject({ status: 401, json: { error: "nonceBelowThreshold" } });
      // None of it locked the key out or spent its nonces: the bot's next request passes.
      expect((await futuresCall(bot, "GET", "/accounts", "", { nonce: nextNonce() })).status).toBe(200);
      expect(orders()).toBe(before + 2);
    });
  });
});
