import type { AddressInfo } from "node:net";
import ccxt from "ccxt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DialectKey, futuresHeaders, kucoinHeaders, rawRequest } from "../helpers/dialect-requests.js";
import { createKeyOwner } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness, SERVICE_TOKEN } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";
import { VenueUpstream } from "../helpers/venue-upstream.js";

const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };
const service = { authorization: `Bearer ${SERVICE_TOKEN}` };

type Key = DialectKey;

const order = (fields: Record<string, unknown> = {}) =>
  JSON.stringify({
    clientOid: `o-${Math.random().toString(36).slice(2)}`,
    side: "buy",
    symbol: "BTC-USDT",
    type: "limit",
    price: "100",
    size: "0.001",
    ...fields,
  });

describe.each(engines)("KuCoin requests read as the venue reads them, on %s", (engine) => {
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

  /** A request over a socket, the path as written, from a new address each time. */
  const raw = (method: string, path: string, headers: Record<string, string>, body = "") =>
    rawRequest(port, method, path, headers, body, nextAddress());

  const kucoinCall = (key: Key, method: string, requestPath: string, body = "") =>
    raw(method, requestPath, kucoinHeaders(key, method, requestPath, body, h.clock.now()), body);

  /** A key of its own account, in a country and at a verification tier. */
  const keyOf = async (
    body: Record<string, unknown>,
    where: { country?: string; region?: string; tier?: "intermediate" | "pro" } = {},
  ): Promise<Key> => {
    const passphrase = "kucoin-passphrase";
    const created = await createKeyOwner(
      h,
      body.dialect === "kraken_futures" ? body : { dialect: "kucoin", passphrase, ...body },
      { country: where.country ?? "GB", ...(where.region ? { region: where.region } : {}) },
    );
    const tier = where.tier ?? "intermediate";
    const verified = await h.request("PUT", `/v1/admin/accounts/${created.accountId}/verification`, {
      headers: operator,
      body: { tier },
    });
    expect(verified.statusCode, verified.body).toBeLessThan(300);
    return { ...created.key, passphrase };
  };

  /** How many requests the venue received at a path (its query left out). */
  const reached = (path: string) => upstream.at(path).length;

  describe("tradeType: one reading for the permission and the product", () => {
    let spotKey: Key;
    let marginKey: Key;
    let usKey: Key;
    beforeAll(async () => {
      spotKey = await keyOf({ name: "spot", permissions: ["general", "spot"] });
      marginKey = await keyOf({ name: "margin", permissions: ["general", "spot", "margin"] });
      usKey = await keyOf(
        { name: "us", permissions: ["general", "spot", "margin"] },
        { country: "US", region: "US-CA" },
      );
    });

    it("needs the margin permission for cross and isolated margin on every spot order path, and cancel", async () => {
      for (const path of ["/api/v1/orders", "/api/v1/stop-order", "/api/v1/hf/orders", "/api/v1/orders/test"])
        for (const tradeType of ["MARGIN_TRADE", "MARGIN_ISOLATED_TRADE"]) {
          const before = reached(path);
          const refused = await kucoinCall(spotKey, "POST", path, order({ tradeType }));
          expect(refused, `${path} ${tradeType}`).toMatchObject({ status: 403, json: { code: "400007" } });
          expect(reached(path)).toBe(before);
          const allowed = await kucoinCall(marginKey, "POST", path, order({ tradeType }));
          expect(allowed.status, `${path} ${tradeType}`).toBe(200);
        }
      const cancel = "/api/v1/orders?symbol=BTC-USDT&tradeType=MARGIN_ISOLATED_TRADE";
      expect(await kucoinCall(spotKey, "DELETE", cancel)).toMatchObject({
        status: 403,
        json: { code: "400007" },
      });
      expect((await kucoinCall(marginKey, "DELETE", cancel)).status).toBe(200);
      // The spot value, or none, is spot.
      expect(
        (await kucoinCall(spotKey, "POST", "/api/v1/orders", order({ tradeType: "TRADE" }))).status,
      ).toBe(200);
      expect((await kucoinCall(spotKey, "POST", "/api/v1/orders", order())).status).toBe(200);
      expect(
        (await kucoinCall(spotKey, "DELETE", "/api/v1/orders?symbol=BTC-USDT&tradeType=TRADE")).status,
      ).toBe(200);
    });

    it("refuses isolated margin, as cross margin, to an account whose jurisdiction excludes margin", async () => {
      for (const path of ["/api/v1/orders", "/api/v1/stop-order"])
        for (const tradeType of ["MARGIN_TRADE", "MARGIN_ISOLATED_TRADE"]) {
          const refused = await kucoinCall(usKey, "POST", path, order({ tradeType }));
          expect(refused, `${path} ${tradeType}`).toMatchObject({ status: 403, json: { code: "400301" } });
        }
      expect((await kucoinCall(usKey, "POST", "/api/v1/orders", order())).status).toBe(200);
    });

    it("refuses any other tradeType as invalid arguments, in KuCoin's shape", async () => {
      const before = reached("/api/v1/orders");
      for (const tradeType of ["margin_trade", "MARGIN_V2_TRADE", "SPOT", "", 1, true, ["MARGIN_TRADE"]]) {
        const refused = await kucoinCall(marginKey, "POST", "/api/v1/orders", order({ tradeType }));
        expect(refused, JSON.stringify(tradeType)).toMatchObject({ status: 400, json: { code: "400100" } });
        expect(typeof refused.json.msg).toBe("string");
      }
      const cancel = await kucoinCall(marginKey, "DELETE", "/api/v1/orders?symbol=BTC-USDT&tradeType=MARGIN");
      expect(cancel).toMatchObject({ status: 400, json: { code: "400100" } });
      expect(reached("/api/v1/orders")).toBe(before);
    });
  });

  describe("money-moving operations: the venue's amount field, and only the venue's fields", () => {
    let key: Key;
    beforeAll(async () => {
      key = await keyOf({
        name: "borrower",
        permissions: ["general", "spot", "margin", "inner_transfer"],
        approvalThreshold: { BTC: "0.5" },
      });
    });

    it("holds a borrow or repay by its size, and refuses a field KuCoin does not document", async () => {
      for (const path of ["/api/v3/margin/borrow", "/api/v3/margin/repay"]) {
        const before = reached(path);
        const sneaky = JSON.stringify({ currency: "BTC", size: "100", amount: "0.001" });
        expect(await kucoinCall(key, "POST", path, sneaky), path).toMatchObject({
          status: 400,
          json: { code: "400100" },
        });
        const big = await kucoinCall(key, "POST", path, JSON.stringify({ currency: "BTC", size: "100" }));
        expect(big, path).toMatchObject({ status: 403, json: { code: "400007" } });
        expect((big.json.data as { approval_id?: string }).approval_id).toEqual(expect.any(String));
        expect(reached(path)).toBe(before);
      }
      const small = JSON.stringify({
        currency: "BTC",
        size: "0.1",
        timeInForce: "FOK",
        symbol: "BTC-USDT",
        isIsolated: true,
        isHf: false,
      });
      expect((await kucoinCall(key, "POST", "/api/v3/margin/borrow", small)).status).toBe(200);
      expect(upstream.at("/api/v3/margin/borrow").at(-1)!.params).toEqual(JSON.parse(small));
    });

    it("takes only KuCoin's documented fields on a flex (universal) transfer between the account's own accounts, measured by its amount", async () => {
      const path = "/api/v3/accounts/universal-transfer";
      const transfer = {
        clientOid: "t-1",
        currency: "BTC",
        amount: "0.1",
        type: "INTERNAL",
        fromAccountType: "MAIN",
        toAccountType: "TRADE",
      };
      const before = reached(path);
      // Only between the account's own accounts: a sub-account's user is another owner.
      for (const extra of [
        { size: "0.001" },
        { from: "main" },
        { tradeType: "TRADE" },
        { type: "PARENT_TO_SUB", toUserId: "62f2ab1e" },
        { type: "SUB_TO_PARENT", fromUserId: "62f2ab1e" },
        { type: "internal" },
        { type: undefined },
      ]) {
        const refused = await kucoinCall(key, "POST", path, JSON.stringify({ ...transfer, ...extra }));
        expect(refused, JSON.stringify(extra)).toMatchObject({ status: 400, json: { code: "400100" } });
      }
      const held = await kucoinCall(key, "POST", path, JSON.stringify({ ...transfer, amount: "2" }));
      expect(held).toMatchObject({ status: 403, json: { code: "400007" } });
      expect(reached(path)).toBe(before);
      expect((await kucoinCall(key, "POST", path, JSON.stringify(transfer))).status).toBe(200);
    });

    it("still takes what ccxt's kucoin sends to borrow, repay and transfer", async () => {
      const kucoin = new ccxt.kucoin({
        enableRateLimit: false,
        apiKey: key.key,
        secret: key.secret,
        password: key.passphrase,
      });
      const api = kucoin.urls.api as Record<string, string>;
      for (const name of Object.keys(api)) api[name] = `http://127.0.0.1:${port}`;
      let tick = 0;
      kucoin.nonce = () => h.clock.now() + tick++;
      await kucoin.loadMarkets();
      await kucoin.borrowCrossMargin("BTC", 0.1);
      await kucoin.borrowIsolatedMargin("BTC/USDT", "BTC", 0.1);
      await kucoin.repayCrossMargin("BTC", 0.1);
      await kucoin.repayIsolatedMargin("BTC/USDT", "BTC", 0.1);
      await kucoin.transfer("BTC", 0.1, "main", "trade");
      expect(upstream.at("/api/v3/margin/borrow").at(-1)!.params).toMatchObject({
        currency: "BTC",
        size: "0.1",
        symbol: "BTC-USDT",
        isIsolated: true,
      });
      expect(upstream.at("/api/v3/margin/repay").at(-1)!.params).toMatchObject({
        currency: "BTC",
        size: "0.1",
      });
      expect(upstream.at("/api/v3/accounts/universal-transfer").at(-1)!.params).toMatchObject({
        currency: "BTC",
        amount: "0.1",
        fromAccountType: "MAIN",
        toAccountType: "TRADE",
      });
    });
  });

  describe("paths and parameters as the venue reads them", () => {
    let key: Key;
    beforeAll(async () => {
      key = await keyOf({ name: "paths", permissions: ["general", "spot"] });
    });

    it("names no operation by a path with an empty, '.' or '..' segment or an encoded dot or slash", async () => {
      const before = upstream.seen.length;
      for (const [method, path] of [
        ["DELETE", "/api/v1/orders/.?symbol=BTC-USDT"],
        ["DELETE", "/api/v1/orders/%2e?symbol=BTC-USDT"],
        ["DELETE", "/api/v1/orders/%2E%2e"],
        ["DELETE", "/api/v1/hf/orders/."],
        ["DELETE", "/api/v3/hf/margin/orders/."],
        ["DELETE", "/api/v1/withdrawals/."],
        ["DELETE", "/api/v1/orders/a%2Fb"],
        ["DELETE", "/api/v1/orders/a%2fb"],
        ["GET", "/api/v1/accounts/."],
        ["GET", "/api/v1/orders/.."],
        ["GET", "/api/v1//accounts"],
        ["GET", "/api/v1/accounts/"],
      ] as const) {
        const refused = await kucoinCall(key, method, path);
        expect(refused, `${method} ${path}`).toMatchObject({ status: 404, json: { code: "404000" } });
      }
      expect(upstream.seen.length).toBe(before);
      // An order id with dots in it is still an order id.
      expect((await kucoinCall(key, "DELETE", "/api/v1/orders/67a1.b2")).status).toBe(200);
      expect(upstream.seen.at(-1)!.path).toBe("/api/v1/orders/67a1.b2");
    });

    it("refuses a POST or PUT with a query string: KuCoin reads only their body", async () => {
      const before = reached("/api/v1/orders");
      for (const query of ["postOnly=true", "tradeType=TRADE", "x=1"]) {
        const refused = await kucoinCall(key, "POST", `/api/v1/orders?${query}`, order());
        expect(refused, query).toMatchObject({ status: 400, json: { code: "400100" } });
      }
      expect(reached("/api/v1/orders")).toBe(before);
      expect((await kucoinCall(key, "POST", "/api/v1/orders", order({ postOnly: true }))).status).toBe(200);
    });

    it("never forwards approval_id from a query string, in any dialect, nor tells a proxy to", async () => {
      const read = await kucoinCall(key, "GET", "/api/v1/accounts?approval_id=abc&type=trade");
      expect(read.status).toBe(200);
      expect(upstream.at("/api/v1/accounts").at(-1)!.path).toBe("/api/v1/accounts?type=trade");
      const only = await kucoinCall(key, "GET", "/api/v1/accounts?approval_id=abc");
      expect(only.status).toBe(200);
      expect(upstream.at("/api/v1/accounts").at(-1)!.path).toBe("/api/v1/accounts");

      const requestPath = "/api/v1/accounts?type=main&approval_id=abc";
      const checked = await h.request("POST", "/v1/gateway/check", {
        headers: service,
        body: {
          method: "GET",
          path: requestPath,
          headers: kucoinHeaders(key, "GET", requestPath, "", h.clock.now() + 1),
          body: "",
          ip: nextAddress(),
        },
      });
      expect(checked.json()).toMatchObject({ allow: true, forward: { query: "type=main" } });
      // A query of the gateway's own fields only: the answer still names the query to send (none), so a
      // proxy cannot fall back on the original; and a GET's body is none, as this gateway forwards it.
      const onlyGatewayFields = "/api/v1/accounts?approval_id=abc";
      const bare = await h.request("POST", "/v1/gateway/check", {
        headers: service,
        body: {
          method: "GET",
          path: onlyGatewayFields,
          headers: kucoinHeaders(key, "GET", onlyGatewayFields, "", h.clock.now() + 2),
          body: "",
          ip: nextAddress(),
        },
      });
      expect(bare.json().forward).toEqual({
        method: "GET",
        path: "/api/v1/accounts",
        query: "",
        contentType: null,
        body: null,
      });

      const futures = await keyOf(
        { name: "futures", dialect: "kraken_futures", permissions: ["full"] },
        {
          country: "DE",
        },
      );
      const postData = "approval_id=abc&symbol=PF_XBTUSD";
      const answer = await raw(
        "GET",
        `/derivatives/api/v3/openorders?${postData}`,
        futuresHeaders(futures, "/api/v3/openorders", postData),
      );
      expect(answer.status, JSON.stringify(answer.json)).toBe(200);
      expect(upstream.at("/derivatives/api/v3/openorders").at(-1)!.path).toBe(
        "/derivatives/api/v3/openorders?symbol=PF_XBTUSD",
      );
    });
  });
});
