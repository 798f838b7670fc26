import { createHash, createHmac } from "node:crypto";
import type { AddressInfo } from "node:net";
import ccxt from "ccxt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Account } from "../../src/accounts/accounts.js";
import { ApiApprovals } from "../../src/api-keys/approvals.js";
import type { Operation } from "../../src/api-keys/dialects/dialect.js";
import { krakenFutures } from "../../src/api-keys/dialects/kraken-futures.js";
import { kucoin } from "../../src/api-keys/dialects/kucoin.js";
import { type Movements, showDecimal, unknownField } from "../../src/api-keys/kraken-requests.js";
import type { Params } from "../../src/api-keys/request-body.js";
import { type Params as ClientParams, KrakenClient } from "../../src/client/kraken-client.js";
import { FakeClock } from "../../src/support/clock.js";
import { createKeyOwner } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness, SERVICE_TOKEN } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";
import { VenueUpstream } from "../helpers/venue-upstream.js";

/**
 * What an order spends, read by its type as the venue reads it, in the two path dialects (KuCoin, Kraken
 * Futures) and Kraken spot's viqc; and the approval id, which is text or refused, in every dialect.
 */

/** What a request moves, asset by asset, as text ("unknown" or the exact decimal). */
const shown = (movements: Movements | null) =>
  Object.fromEntries(
    [...(movements ?? new Map())].map(([asset, amount]) => [
      asset,
      amount === "unknown" ? amount : showDecimal(amount),
    ]),
  );

const op = (name: string, permission: string): Operation => ({ name, permission });
const KUCOIN_ORDER = op("POST /api/v1/orders", "spot");
const SEND_ORDER = op("POST /sendorder", "full");

/** Every KuCoin path that places an order: spot, test, hf, hf sync, hf test, stop and margin orders. */
const kucoinOrderPaths = [
  "POST /api/v1/orders",
  "POST /api/v1/orders/test",
  "POST /api/v1/hf/orders",
  "POST /api/v1/hf/orders/sync",
  "POST /api/v1/hf/orders/test",
  "POST /api/v1/stop-order",
  "POST /api/v1/margin/order",
  "POST /api/v3/hf/margin/order",
];

describe("KuCoin orders: what an order moves, by its type", () => {
  const buy = { clientOid: "c1", symbol: "BTC-USDT", side: "buy" };
  const moved = (params: Params, operation = KUCOIN_ORDER) => shown(kucoin.movements(operation, params));

  it("counts a limit buy (type limit, or none: KuCoin's default) as size × price", () => {
    expect(moved({ ...buy, type: "limit", size: "10", price: "60000" })).toEqual({
      BTC: "10",
      USDT: "600000",
    });
    expect(moved({ ...buy, size: "10", price: "60000" })).toEqual({ BTC: "10", USDT: "600000" });
    // Without a price nothing bounds it.
    expect(moved({ ...buy, type: "limit", size: "10" })).toEqual({ BTC: "10", USDT: "unknown" });
  });

  it("counts a market buy by its funds, or as unknown when it is sized in the base asset", () => {
    expect(moved({ ...buy, type: "market", size: "10" })).toEqual({ BTC: "10", USDT: "unknown" });
    expect(moved({ ...buy, type: "market", funds: "100" })).toEqual({ BTC: "unknown", USDT: "100" });
  });

  it("counts a sell's size of the base asset, unknown for a market sell of funds", () => {
    const sell = { ...buy, side: "sell" };
    expect(moved({ ...sell, type: "limit", size: "2", price: "1" })).toEqual({ BTC: "2" });
    expect(moved({ ...sell, type: "market", size: "2" })).toEqual({ BTC: "2" });
    expect(moved({ ...sell, type: "market", funds: "100" })).toEqual({ BTC: "unknown" });
  });

  it("counts a stop order as the order it becomes: stop-limit at its limit, stop-market unknown", () => {
    const stop = op("POST /api/v1/stop-order", "spot");
    const trigger = { stop: "entry", stopPrice: "1" };
    expect(moved({ ...buy, ...trigger, type: "limit", size: "10", price: "50" }, stop)).toEqual({
      BTC: "10",
      USDT: "500",
    });
    expect(moved({ ...buy, ...trigger, type: "market", size: "10" }, stop)).toEqual({
      BTC: "10",
      USDT: "unknown",
    });
  });

  it.each(kucoinOrderPaths)(
    "refuses on %s the fields the order's type does not read, and other types",
    (name) => {
      const operation = op(name, name.includes("margin") ? "margin" : "spot");
      const refused = (params: Params) => kucoin.unknownField(operation, { ...buy, ...params });
      // A market order reads no price: a dummy one made a 10 BTC market buy count as 0.1 USDT.
      expect(refused({ type: "market", size: "10", price: "0.01" })).toBe("price");
      // A limit order reads no funds: funds=1 made a 600,000 USDT limit buy count as 1 USDT.
      expect(refused({ type: "limit", size: "10", price: "60000", funds: "1" })).toBe("funds");
      expect(refused({ size: "10", price: "60000", funds: "1" })).toBe("funds");
      // Size or funds, not both: which one KuCoin reads is not told.
      expect(refused({ type: "market", size: "10", funds: "1" })).toBe("funds");
      for (const type of ["Market", "LIMIT", "stop", "limit ", "", 1, ["limit"], { limit: "x" }])
        expect(refused({ type, size: "1", price: "1" } as Params), JSON.stringify(type)).toBe("type");
      expect(refused({ type: "limit", size: "1", price: "1" })).toBeNull();
      expect(refused({ type: "market", size: "1" })).toBeNull();
      expect(refused({ type: "market", funds: "1" })).toBeNull();
    },
  );
});

describe("Kraken Futures orders: what a buy spends, by its orderType", () => {
  const order = { symbol: "PF_XBTUSD", side: "buy", size: "10" };
  const moved = (params: Params) => shown(krakenFutures.movements(SEND_ORDER, { ...order, ...params }));

  it.each(["lmt", "post", "ioc"])("counts a %s buy at its limitPrice", (orderType) => {
    expect(moved({ orderType, limitPrice: "100" })).toEqual({ BTC: "10", USD: "1000" });
    expect(moved({ orderType })).toEqual({ BTC: "10", USD: "unknown" });
  });

  it.each(["stp", "take_profit"])(
    "counts a %s buy at its limitPrice, a stop-market one as unknown",
    (orderType) => {
      // limitPrice is "the worst price at which the order can get filled"; without one it triggers a market order.
      expect(moved({ orderType, stopPrice: "70000", limitPrice: "50" })).toEqual({ BTC: "10", USD: "500" });
      expect(moved({ orderType, stopPrice: "70000" })).toEqual({ BTC: "10", USD: "unknown" });
      // A limit set relative to the trigger is not known until it fires.
      expect(
        moved({
          orderType,
          stopPrice: "70000",
          limitPrice: "50",
          limitPriceOffsetValue: "10",
          limitPriceOffsetUnit: "PERCENT",
        }),
      ).toEqual({ BTC: "10", USD: "unknown" });
    },
  );

  it.each(["mkt", "trailing_stop", "fok"])(
    "counts a %s buy as unknown whatever limitPrice it carries",
    (orderType) => {
      expect(moved({ orderType, limitPrice: "0.01" })).toEqual({ BTC: "10", USD: "unknown" });
    },
  );

  it("counts a sell's size only", () => {
    expect(moved({ orderType: "mkt", side: "sell" })).toEqual({ BTC: "10" });
  });

  it("refuses an orderType Kraken Futures does not document, spelt exactly", () => {
    for (const orderType of ["MKT", "Lmt", "limit", "market", "stop", "lmt ", "", ["lmt"], { lmt: "1" }])
      expect(
        krakenFutures.unknownField(SEND_ORDER, { ...order, orderType, limitPrice: "1" } as Params),
        JSON.stringify(orderType),
      ).toBe("orderType");
    expect(krakenFutures.unknownField(SEND_ORDER, { ...order, limitPrice: "1" })).toBe("orderType");
    for (const orderType of ["lmt", "post", "ioc", "mkt", "stp", "take_profit", "trailing_stop", "fok"])
      expect(krakenFutures.unknownField(SEND_ORDER, { ...order, orderType }), orderType).toBeNull();
  });

  it("reads a symbol that is not text as no market, without calling its toString", () => {
    const symbol = { toString: "PF_XBTUSD" } as unknown as string;
    expect(moved({ orderType: "lmt", limitPrice: "1", symbol })).toEqual({ "*": "unknown" });
  });
});

describe("Kraken spot: viqc on market orders only", () => {
  const order = { pair: "XBTUSD", type: "buy", volume: "10", price: "1" };

  it.each(["limit", "iceberg", "stop-loss", "stop-loss-limit", "take-profit", "trailing-stop", undefined])(
    "refuses viqc on ordertype %s",
    (ordertype) => {
      const typed = ordertype === undefined ? order : { ...order, ordertype };
      expect(unknownField("AddOrder", { ...typed, oflags: "viqc" })).toBe("oflags");
      expect(unknownField("AddOrder", { ...typed, oflags: "fcib,viqc" })).toBe("oflags");
      const { pair: _pair, ...entry } = typed;
      expect(
        unknownField("AddOrderBatch", {
          pair: "XBTUSD",
          orders: [
            { ...entry, ordertype: "market", oflags: "viqc" },
            { ...entry, oflags: "viqc" },
          ],
        }),
      ).toBe("orders[1].oflags");
    },
  );

  it("takes viqc on a market order, and refuses it on an edit, whose type is not sent", () => {
    expect(unknownField("AddOrder", { ...order, ordertype: "market", oflags: "fciq,viqc" })).toBeNull();
    expect(unknownField("EditOrder", { txid: "O1", pair: "XBTUSD", oflags: "viqc" })).toBe("oflags");
    expect(unknownField("AddOrder", { ...order, ordertype: "limit", oflags: "post" })).toBeNull();
  });
});

describe("approval_id: text, or refused in every dialect", () => {
  const notText: unknown[] = [{ toString: "x" }, {}, ["a"], 5, true];
  const kucoinOrder = {
    clientOid: "c1",
    symbol: "BTC-USDT",
    side: "buy",
    type: "limit",
    size: "1",
    price: "1",
  };
  const futuresOrder = { orderType: "lmt", symbol: "PF_XBTUSD", side: "buy", size: "1", limitPrice: "1" };

  it.each(notText)("refuses approval_id %j on every operation", (approval_id) => {
    const withId = (params: Params) => ({ ...params, approval_id }) as Params;
    expect(kucoin.unknownField(KUCOIN_ORDER, withId(kucoinOrder))).toBe("approval_id");
    expect(kucoin.unknownField(op("GET /api/v1/accounts", "general"), withId({}))).toBe("approval_id");
    expect(krakenFutures.unknownField(SEND_ORDER, withId(futuresOrder))).toBe("approval_id");
    // editorder lists no fields, and what it moves is unknown: the id is read there too.
    expect(krakenFutures.unknownField(op("POST /editorder", "full"), withId({ orderId: "o" }))).toBe(
      "approval_id",
    );
    expect(unknownField("AddOrder", withId({ pair: "XBTUSD", type: "buy", ordertype: "limit" }))).toBe(
      "approval_id",
    );
  });

  it("takes an approval_id that is text", () => {
    expect(kucoin.unknownField(KUCOIN_ORDER, { ...kucoinOrder, approval_id: "a1" })).toBeNull();
    expect(krakenFutures.unknownField(SEND_ORDER, { ...futuresOrder, approval_id: "a1" })).toBeNull();
  });

  it("never hands an approval_id that is not a scalar to String(): the decision is invalid", async () => {
    // No database is reached: an id that is no text names no approval.
    const approvals = new ApiApprovals(undefined as never, new FakeClock(), undefined as never);
    const decision = await approvals.decide(
      { id: "account" } as Account,
      { id: "key", name: "bot", approval_threshold: JSON.stringify({ USDT: "1" }) },
      "POST /api/v1/orders",
      { ...kucoinOrder, size: "10", approval_id: { toString: "x" } } as Params,
      { movements: (params) => kucoin.movements(KUCOIN_ORDER, params), describe: () => "order" },
    );
    expect(decision).toEqual({ kind: "invalid" });
  });
});

const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };
const service = { authorization: `Bearer ${SERVICE_TOKEN}` };

interface Key {
  id: string;
  key: string;
  secret: string;
}

describe.each(engines)("order spend and approval ids through the gateway on %s", (engine) => {
  let h: Harness;
  const upstream = new VenueUpstream();
  let port = 0;
  beforeAll(async () => {
    await upstream.start();
    h = await Harness.create(engine, { env: { PORTCULLIS_UPSTREAM_URL: upstream.url } });
    await h.app.http.listen({ port: 0, host: "127.0.0.1" });
    port = (h.app.http.server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await h.close();
    await upstream.stop();
  });

  let ipCounter = 0;
  const nextIp = () => `198.19.${Math.floor(ipCounter / 250)}.${(ipCounter++ % 250) + 1}`;
  let serial = 0;

  /** A key of its own account at the intermediate tier. */
  const keyOf = async (body: Record<string, unknown>, country = "GB"): Promise<Key> => {
    const created = await createKeyOwner(h, body, { country });
    const verified = await h.request("PUT", `/v1/admin/accounts/${created.accountId}/verification`, {
      headers: operator,
      body: { tier: "intermediate" },
    });
    expect(verified.statusCode, verified.body).toBeLessThan(300);
    return created.key;
  };

  /** The venue's verdict on a signed request (allow, or the dialect's error), from the check endpoint. */
  const check = async (path: string, headers: Record<string, string>, body: string) => {
    const response = await h.request("POST", "/v1/gateway/check", {
      headers: service,
      body: { method: "POST", path, headers, body, ip: nextIp() },
    });
    expect(response.statusCode, response.body).toBe(200);
    const verdict = response.json() as { allow: boolean; error?: string };
    return verdict.allow ? "allowed" : verdict.error;
  };

  describe("KuCoin", () => {
    const passphrase = "kucoin-passphrase";
    let key: Key;
    beforeAll(async () => {
      key = await keyOf({
        name: "kucoin-spend",
        dialect: "kucoin",
        passphrase,
        permissions: ["general", "spot"],
        approvalThreshold: { USDT: "1000" },
      });
    });

    const kucoinCheck = (path: string, fields: Record<string, unknown>) => {
      const body = JSON.stringify({ clientOid: `s-${++serial}`, symbol: "BTC-USDT", side: "buy", ...fields });
      const ts = String(h.clock.now());
      return check(
        path,
        {
          "KC-API-KEY": key.key,
          "KC-API-SIGN": createHmac("sha256", key.secret).update(`${ts}POST${path}${body}`).digest("base64"),
          "KC-API-TIMESTAMP": ts,
          "KC-API-PASSPHRASE": createHmac("sha256", key.secret).update(passphrase).digest("base64"),
          "KC-API-KEY-VERSION": "2",
          "Content-Type": "application/json",
        },
        body,
      );
    };

    it("refuses a market buy with a dummy price and a limit buy with funds, on every order path", async () => {
      for (const path of ["/api/v1/orders", "/api/v1/hf/orders", "/api/v1/stop-order"]) {
        const stop = path === "/api/v1/stop-order" ? { stop: "entry", stopPrice: "1" } : {};
        expect(await kucoinCheck(path, { ...stop, type: "market", size: "10", price: "0.01" }), path).toBe(
          "400100",
        );
        expect(
          await kucoinCheck(path, { ...stop, type: "limit", size: "10", price: "60000", funds: "1" }),
          path,
        ).toBe("400100");
        expect(await kucoinCheck(path, { ...stop, type: "Market", funds: "1" }), path).toBe("400100");
        expect(await kucoinCheck(path, { ...stop, type: "market", size: "10" }), path).toBe("400007");
        expect(await kucoinCheck(path, { ...stop, type: "market", funds: "2000" }), path).toBe("400007");
        expect(await kucoinCheck(path, { ...stop, type: "market", funds: "10" }), path).toBe("allowed");
        expect(await kucoinCheck(path, { ...stop, type: "limit", size: "10", price: "60000" }), path).toBe(
          "400007",
        );
        expect(await kucoinCheck(path, { ...stop, type: "limit", size: "0.01", price: "30000" }), path).toBe(
          "allowed",
        );
      }
    });

    it("still takes what ccxt's kucoin sends for limit and market buys and sells", async () => {
      const trader = await keyOf({
        name: "kucoin-ccxt",
        dialect: "kucoin",
        passphrase,
        permissions: ["general", "spot"],
        approvalThreshold: { USDT: "1000" },
      });
      const client = new ccxt.kucoin({
        enableRateLimit: false,
        apiKey: trader.key,
        secret: trader.secret,
        password: passphrase,
      });
      const api = client.urls.api as Record<string, string>;
      for (const name of Object.keys(api)) api[name] = `http://127.0.0.1:${port}`;
      let tick = 0;
      client.nonce = () => h.clock.now() + tick++;
      await client.loadMarkets();
      const placed = () => upstream.at("/api/v1/orders").at(-1)!.params;
      await client.createOrder("BTC/USDT", "limit", "buy", 0.01, 30000);
      expect(placed()).toMatchObject({ type: "limit", side: "buy", size: "0.01", price: "30000" });
      await client.createOrder("BTC/USDT", "limit", "sell", 0.01, 30000);
      expect(placed()).toMatchObject({ type: "limit", side: "sell", size: "0.01", price: "30000" });
      await client.createOrder("BTC/USDT", "market", "buy", 0, undefined, { cost: 10 });
      expect(placed()).toMatchObject({ type: "market", side: "buy", funds: "10" });
      expect(placed()).not.toHaveProperty("price");
      await client.createOrder("BTC/USDT", "market", "sell", 0.01);
      expect(placed()).toMatchObject({ type: "market", side: "sell", size: "0.01" });
      // A market buy sized in BTC spends an amount of USDT nobody can tell: held, not sent.
      const before = upstream.at("/api/v1/orders").length;
      await expect(client.createOrder("BTC/USDT", "market", "buy", 0.01)).rejects.toThrow();
      expect(upstream.at("/api/v1/orders").length).toBe(before);
    });

    it("answers an approval_id that is not text as invalid arguments, and audits it", async () => {
      const count = async () =>
        Number(
          (
            await h.db
              .selectFrom("audit_log")
              .select((eb) => eb.fn.countAll().as("n"))
              .executeTakeFirstOrThrow()
          ).n,
        );
      const before = await count();
      for (const approval_id of [{ toString: "x" }, ["x"], 7])
        expect(
          await kucoinCheck("/api/v1/orders", { type: "limit", size: "10", price: "1", approval_id }),
          JSON.stringify(approval_id),
        ).toBe("400100");
      expect(await count()).toBeGreaterThanOrEqual(before + 3);
    });
  });

  describe("Kraken Futures", () => {
    let key: Key;
    beforeAll(async () => {
      key = await keyOf(
        {
          name: "futures-spend",
          dialect: "kraken_futures",
          permissions: ["full"],
          approvalThreshold: { USD: "1000" },
        },
        "DE",
      );
    });

    const futuresCheck = (fields: Record<string, string>) => {
      const postData = new URLSearchParams({
        symbol: "PF_XBTUSD",
        side: "buy",
        size: "10",
        cliOrdId: `s-${++serial}`,
        ...fields,
      }).toString();
      const digest = createHash("sha256").update(`${postData}/api/v3/sendorder`).digest();
      return check(
        "/derivatives/api/v3/sendorder",
        {
          APIKey: key.key,
          Authent: createHmac("sha512", Buffer.from(key.secret, "base64")).update(digest).digest("base64"),
          "Content-Type": "application/x-www-form-urlencoded",
        },
        postData,
      );
    };

    it("holds a buy whose limitPrice its type does not read, and refuses an undocumented orderType", async () => {
      const held = "approvalRequired";
      expect(
        await futuresCheck({
          orderType: "trailing_stop",
          limitPrice: "0.01",
          trailingStopMaxDeviation: "1",
          trailingStopDeviationUnit: "PERCENT",
        }),
      ).toBe(held);
      expect(await futuresCheck({ orderType: "mkt", limitPrice: "0.01" })).toBe(held);
      expect(await futuresCheck({ orderType: "stp", stopPrice: "60000" })).toBe(held);
      expect(await futuresCheck({ orderType: "fok", limitPrice: "0.01" })).toBe(held);
      expect(await futuresCheck({ orderType: "MKT", limitPrice: "0.01" })).toBe("invalidArgument");
      expect(await futuresCheck({ orderType: "limit", limitPrice: "0.01" })).toBe("invalidArgument");
      // A stop-limit is bounded by its limitPrice, the worst price it fills at.
      expect(await futuresCheck({ orderType: "stp", stopPrice: "60000", limitPrice: "50" })).toBe("allowed");
      expect(await futuresCheck({ orderType: "take_profit", stopPrice: "1", limitPrice: "60000" })).toBe(
        held,
      );
      expect(await futuresCheck({ orderType: "lmt", limitPrice: "100" })).toBe("allowed");
    });
  });

  describe("Kraken spot", () => {
    let client: KrakenClient;
    beforeAll(async () => {
      const key = await keyOf({
        name: "kraken-spend",
        permissions: ["trades_modify"],
        approvalThreshold: { USD: "1000" },
      });
      client = new KrakenClient({ baseUrl: "http://unused.invalid", key: key.key, secret: key.secret });
    });

    const krakenCheck = (params: ClientParams) => {
      const signed = client.sign("AddOrder", { pair: "XBTUSD", type: "buy", ...params });
      return check(signed.path, signed.headers, signed.body);
    };

    it("refuses viqc on a limit order, and counts it on a market order", async () => {
      expect(await krakenCheck({ ordertype: "limit", price: "1", volume: "10", oflags: "viqc" })).toBe(
        "EGeneral:Invalid arguments",
      );
      expect(await krakenCheck({ ordertype: "market", volume: "500", oflags: "viqc" })).toBe("allowed");
      expect(await krakenCheck({ ordertype: "market", volume: "5000", oflags: "viqc" })).toBe(
        "EGeneral:Approval required",
      );
    });
  });
});
