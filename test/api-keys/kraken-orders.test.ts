import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  allPostOnly,
  assetsOverThreshold,
  movementsOf,
  productOf,
  showDecimal,
  unknownField,
} from "../../src/api-keys/kraken-requests.js";
import type { Params } from "../../src/api-keys/request-body.js";
import { type Params as ClientParams, KrakenClient } from "../../src/client/kraken-client.js";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { Harness, SERVICE_TOKEN } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

/** What migration 0009 writes for a key whose threshold was one number without a unit. */
const migrated = { USD: "1000", USDT: "1000", USDC: "1000" };

/** What a request moves, asset by asset, as text ("unknown" or the exact decimal). */
const moved = (method: string, params: Params) =>
  Object.fromEntries(
    [...movementsOf(method, params)!].map(([asset, amount]) => [
      asset,
      amount === "unknown" ? amount : showDecimal(amount),
    ]),
  );
const held = (method: string, params: Params, thresholds: Record<string, string> = migrated) =>
  assetsOverThreshold(movementsOf(method, params)!, thresholds);

describe("Kraken spot orders: what a buy spends when no limit bounds its price", () => {
  const buy = { pair: "XBTUSD", type: "buy", volume: "10" };

  it.each([
    ["market", { ordertype: "market" }],
    ["market with a dummy price", { ordertype: "market", price: "1" }],
    ["stop-loss with a trigger of 1", { ordertype: "stop-loss", price: "1" }],
    ["take-profit with a trigger of 1", { ordertype: "take-profit", price: "1" }],
    ["trailing-stop", { ordertype: "trailing-stop", price: "+1" }],
    [
      "trailing-stop-limit (price2 is an offset from a moving trigger)",
      { ordertype: "trailing-stop-limit", price: "+1", price2: "5" },
    ],
    ["settle-position", { ordertype: "settle-position", price: "1" }],
    ["a type Kraken does not have", { ordertype: "Limit", price: "1" }],
    ["no type at all, with a price", { price: "1" }],
  ])("holds a buy (%s): its quote amount is unknown", (_name, fields) => {
    expect(moved("AddOrder", { ...buy, ...fields }).USD).toBe("unknown");
    expect(held("AddOrder", { ...buy, ...fields })).toEqual(["USD"]);
  });

  it("counts limit-bearing buys at the limit price, from the field Kraken reads it in", () => {
    expect(moved("AddOrder", { ...buy, ordertype: "limit", price: "60" })).toEqual({ BTC: "10", USD: "600" });
    expect(moved("AddOrder", { ...buy, ordertype: "iceberg", price: "60", displayvol: "1" })).toEqual({
      BTC: "10",
      USD: "600",
    });
    // price is the trigger, price2 the limit: the limit is what the buy may pay, not the trigger.
    expect(
      moved("AddOrder", { ...buy, ordertype: "take-profit-limit", price: "100000", price2: "50" }),
    ).toEqual({ BTC: "10", USD: "500" });
    expect(moved("AddOrder", { ...buy, ordertype: "stop-loss-limit", price: "1", price2: "5000" })).toEqual({
      BTC: "10",
      USD: "50000",
    });
    // A stop-limit without its limit, or with a relative one, is bounded by nothing known here.
    expect(held("AddOrder", { ...buy, ordertype: "stop-loss-limit", price: "1" })).toEqual(["USD"]);
    expect(held("AddOrder", { ...buy, ordertype: "stop-loss-limit", price: "1", price2: "+1" })).toEqual([
      "USD",
    ]);
    expect(held("AddOrder", { ...buy, ordertype: "limit", price: "60" }, { USD: "600" })).toEqual([]);
  });

  it("reads a volume of zero (Kraken's whole position) as unknown", () => {
    const settle = { pair: "XBTUSD", type: "sell", ordertype: "settle-position", volume: "0", leverage: "2" };
    expect(held("AddOrder", settle, { BTC: "1" })).toEqual(["BTC"]);
  });

  it("reads viqc volume as the quote asset, its base amount unknown, on either side", () => {
    const viqc = { pair: "XBTUSD", ordertype: "market", volume: "5000", oflags: "viqc" };
    expect(moved("AddOrder", { ...viqc, type: "buy" })).toEqual({ USD: "5000", BTC: "unknown" });
    expect(moved("AddOrder", { ...viqc, type: "sell" })).toEqual({ USD: "5000", BTC: "unknown" });
    expect(held("AddOrder", { ...viqc, type: "sell" }, { BTC: "1000" })).toEqual(["BTC"]);
  });

  it("adds up a batch's orders, unknown when one of them is unbounded", () => {
    const batch: Params = {
      pair: "XBTUSD",
      orders: [
        { type: "buy", ordertype: "limit", price: "10", volume: "5" },
        { type: "buy", ordertype: "market", volume: "5" },
      ],
    };
    expect(moved("AddOrderBatch", batch)).toEqual({ BTC: "10", USD: "unknown" });
  });
});

describe("Kraken spot orders: the conditional close", () => {
  const sell = { pair: "XBTUSD", type: "sell", ordertype: "limit", price: "60000", volume: "10" };

  it("counts a buying close leg (its parent sells) like an order of its own type", () => {
    expect(moved("AddOrder", { ...sell, close: { ordertype: "limit", price: "1000000" } })).toEqual({
      BTC: "10",
      USD: "10000000",
    });
    expect(
      moved("AddOrder", { ...sell, close: { ordertype: "stop-loss-limit", price: "1", price2: "70" } }),
    ).toEqual({ BTC: "10", USD: "700" });
    for (const ordertype of ["stop-loss", "take-profit", "trailing-stop", "market"]) {
      expect(moved("AddOrder", { ...sell, close: { ordertype, price: "1" } }).USD).toBe("unknown");
    }
    expect(held("AddOrder", { ...sell, close: { ordertype: "stop-loss", price: "1" } })).toEqual(["USD"]);
  });

  it("counts the close of a batch's sell", () => {
    const { pair: _pair, ...order } = { ...sell, close: { ordertype: "take-profit", price: "1" } };
    expect(moved("AddOrderBatch", { pair: "XBTUSD", orders: [order] }).USD).toBe("unknown");
  });

  it("adds nothing of the quote asset for the selling close of a buy", () => {
    const buy = { ...sell, type: "buy", price: "10", volume: "1" };
    expect(moved("AddOrder", { ...buy, close: { ordertype: "stop-loss", price: "1" } })).toEqual({
      BTC: "1",
      USD: "10",
    });
  });
});

describe("Kraken spot orders: oflags, read one way", () => {
  const entry = { type: "sell", ordertype: "limit", price: "1", volume: "0.1" };
  const order = { ...entry, pair: "XBTUSD" };

  it.each([
    ["fcib, viqc"],
    ["VIQC"],
    ["Post"],
    ["post,post"],
    ["post,"],
    [""],
    [" post"],
    ["post,stop"],
    ["post;viqc"],
  ])("refuses oflags %j as invalid arguments", (oflags) => {
    expect(unknownField("AddOrder", { ...order, oflags })).toBe("oflags");
    expect(unknownField("EditOrder", { txid: "O1", pair: "XBTUSD", oflags })).toBe("oflags");
    expect(unknownField("AddOrderBatch", { pair: "XBTUSD", orders: [entry, { ...entry, oflags }] })).toBe(
      "orders[1].oflags",
    );
  });

  it("takes every list of Kraken's flags, and reads post and viqc from it the same way", () => {
    for (const oflags of ["post", "fcib,viqc", "viqc,fcib", "post,fciq,nompp", "fcib,fciq,nompp,post,viqc"]) {
      // viqc is a market order's flag (Kraken offers it on no other type).
      expect(unknownField("AddOrder", { ...order, ordertype: "market", oflags }), oflags).toBeNull();
    }
    expect(allPostOnly("AddOrder", { ...order, oflags: "fciq,post" })).toBe(true);
    expect(allPostOnly("AddOrder", { ...order, oflags: "fciq, post" })).toBe(false);
    expect(allPostOnly("AddOrder", { ...order, oflags: "POST" })).toBe(false);
    expect(
      moved("AddOrder", { ...order, type: "buy", ordertype: "market", oflags: "fcib,viqc", volume: "5" }),
    ).toEqual({
      USD: "5",
      BTC: "unknown",
    });
  });
});

describe("Kraken spot orders: asset_class", () => {
  const entry = { type: "buy", ordertype: "limit", price: "1", volume: "1" };
  const order = { ...entry, pair: "AAPLxUSD" };

  it("makes an order of tokenized assets (xStocks) the policy's stocks", () => {
    expect(productOf("AddOrder", { ...order, asset_class: "tokenized_asset" })).toBe("stocks");
    expect(productOf("EditOrder", { txid: "O1", pair: "AAPLxUSD", asset_class: "tokenized_asset" })).toBe(
      "stocks",
    );
    expect(
      productOf("AddOrderBatch", { pair: "AAPLxUSD", asset_class: "tokenized_asset", orders: [entry] }),
    ).toBe("stocks");
    expect(unknownField("AddOrder", { ...order, asset_class: "tokenized_asset" })).toBeNull();
    expect(productOf("AddOrder", order)).toBe("spot");
  });

  it.each([["spot"], ["margin"], ["TOKENIZED_ASSET"], ["tokenized_asset "], ["forex"], [""]])(
    "refuses asset_class %j",
    (asset_class) => {
      expect(unknownField("AddOrder", { ...order, asset_class })).toBe("asset_class");
      expect(unknownField("AddOrderBatch", { pair: "XBTUSD", asset_class, orders: [entry] })).toBe(
        "asset_class",
      );
    },
  );

  it("refuses a leveraged order of tokenized assets, which would be margin and stocks at once", () => {
    expect(unknownField("AddOrder", { ...order, asset_class: "tokenized_asset", leverage: "2" })).toBe(
      "leverage",
    );
    expect(
      unknownField("AddOrderBatch", {
        pair: "AAPLxUSD",
        asset_class: "tokenized_asset",
        orders: [entry, { ...entry, leverage: "2" }],
      }),
    ).toBe("leverage");
  });
});

describe("Kraken spot orders: edits name an order the gateway cannot see", () => {
  it("holds an EditOrder for every threshold: the pair sent need not be the order's", () => {
    // An order placed on XBTUSD, edited with another pair named: its BTC would not be counted as BTC.
    const edit = { txid: "OABCDE-12345-FGHIJK", pair: "DOGEUSD", volume: "1000", price: "1" };
    expect(held("EditOrder", edit, { BTC: "1" })).toEqual(["BTC"]);
    expect(held("EditOrder", { ...edit, pair: "XBTUSD", volume: "0.1" }, { BTC: "1" })).toEqual(["BTC"]);
    expect(held("AmendOrder", { txid: "OABCDE-12345-FGHIJK", order_qty: "1" }, { BTC: "1" })).toEqual([
      "BTC",
    ]);
  });
});

const service = { authorization: `Bearer ${SERVICE_TOKEN}` };

describe.each(engines)("Kraken spot order checks through the gateway on %s", (engine) => {
  let h: Harness;
  let policyDir: string;
  beforeAll(async () => {
    // Stocks offered through the API to US accounts only, so the stocks policy, not spot's, is visible.
    policyDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-policy-"));
    const policy = path.join(policyDir, "policy.yaml");
    fs.writeFileSync(
      policy,
      [
        "products:",
        "  stocks:",
        "    minTier: starter",
        "    onlyCountries: [US]",
        "    clients: [web, app, pro, api]",
        "    subsystems: [spot_engine]",
        "    requires: []",
        "",
      ].join("\n"),
    );
    h = await Harness.create(engine, { env: { PORTCULLIS_POLICY: policy } });
  });
  afterAll(async () => {
    await h.close();
    fs.rmSync(policyDir, { recursive: true, force: true });
  });

  let ipCounter = 0;
  const nextIp = () => `198.18.${Math.floor(ipCounter / 250)}.${(ipCounter++ % 250) + 1}`;

  const keyFor = async (country: string, body: Record<string, unknown>) => {
    const user = await h.createVerifiedUser(country === "US" ? { country, region: "US-CA" } : { country });
    const enrolled = await enrollTotp(h, await h.sessionToken(user, "pro"), { password: user.password });
    const { response } = await withStepUp(
      h,
      enrolled.token,
      "POST",
      "/v1/api-keys",
      { totp: nextTotpCode(h, enrolled.secret) },
      { body },
    );
    expect(response.statusCode, response.body).toBe(201);
    const key = response.json() as { key: string; secret: string };
    return new KrakenClient({ baseUrl: "http://unused.invalid", key: key.key, secret: key.secret });
  };

  const check = async (client: KrakenClient, method: string, params: ClientParams) => {
    const signed = client.sign(method, params);
    const response = await h.request("POST", "/v1/gateway/check", {
      headers: service,
      body: { method: "POST", path: signed.path, headers: signed.headers, body: signed.body, ip: nextIp() },
    });
    expect(response.statusCode, response.body).toBe(200);
    return response.json() as { allow: boolean; error?: string };
  };

  it("holds a market buy and a stop-loss buy under a migrated quote threshold, and refuses loose oflags", async () => {
    const client = await keyFor("GB", {
      name: "migrated",
      permissions: ["trades_modify"],
      approvalThreshold: migrated,
    });
    const order = { pair: "XBTUSD", type: "buy", volume: "10" };
    expect(await check(client, "AddOrder", { ...order, ordertype: "market" })).toMatchObject({
      allow: false,
      error: "EGeneral:Approval required",
    });
    expect(await check(client, "AddOrder", { ...order, ordertype: "stop-loss", price: "1" })).toMatchObject({
      allow: false,
      error: "EGeneral:Approval required",
    });
    expect(
      await check(client, "AddOrder", {
        ...order,
        ordertype: "market",
        volume: "5000",
        oflags: "fcib, viqc",
      }),
    ).toMatchObject({ allow: false, error: "EGeneral:Invalid arguments" });
    expect((await check(client, "AddOrder", { ...order, ordertype: "limit", price: "10" })).allow).toBe(true);
  });

  it("decides an order of tokenized assets by the stocks policy, and refuses other asset classes", async () => {
    const order = { pair: "AAPLxUSD", type: "buy", ordertype: "limit", price: "1", volume: "1" };
    const gb = await keyFor("GB", { name: "gb", permissions: ["trades_modify"] });
    expect((await check(gb, "AddOrder", order)).allow).toBe(true);
    expect(await check(gb, "AddOrder", { ...order, asset_class: "tokenized_asset" })).toMatchObject({
      allow: false,
      error: "EGeneral:Permission denied",
    });
    expect(await check(gb, "AddOrder", { ...order, asset_class: "spot" })).toMatchObject({
      allow: false,
      error: "EGeneral:Invalid arguments",
    });
    const us = await keyFor("US", { name: "us", permissions: ["trades_modify"] });
    expect((await check(us, "AddOrder", { ...order, asset_class: "tokenized_asset" })).allow).toBe(true);
  });
});
