import { createHash, createHmac } from "node:crypto";
import type { AddressInfo } from "node:net";
import ccxt from "ccxt";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { otherSpellings } from "../helpers/base64-spellings.js";
import { rawRequest } from "../helpers/dialect-requests.js";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness, SERVICE_TOKEN } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";
import { VenueUpstream } from "../helpers/venue-upstream.js";

const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };
const service = { authorization: `Bearer ${SERVICE_TOKEN}` };
const FORM = "application/x-www-form-urlencoded";

/** Kraken's API-Sign, written from Kraken's documentation (not the project's code). */
function krakenSign(secret: string, path: string, nonce: string, body: string): string {
  const digest = createHash("sha256")
    .update(nonce + body)
    .digest();
  return createHmac("sha512", Buffer.from(secret, "base64"))
    .update(Buffer.concat([Buffer.from(path), digest]))
    .digest("base64");
}

interface Answer {
  status: number;
  json: { error: string[]; result: Record<string, unknown> };
}

describe.each(engines)("the gateway against hostile requests on %s", (engine) => {
  let h: Harness;
  const upstream = new VenueUpstream();
  let port = 0;
  let addressCounter = 0;
  /** Each request from its own address (through the trusted loopback proxy): lockouts stay out of the way. */
  const nextAddress = () => `198.51.${Math.floor(addressCounter / 250)}.${(addressCounter++ % 250) + 1}`;
  let nonceCounter = BigInt(Date.now()) * 1000n;
  const nextNonce = () => {
    nonceCounter += 1n;
    return String(nonceCounter);
  };

  beforeAll(async () => {
    await upstream.start();
    h = await Harness.create(engine, {
      env: { PORTCULLIS_UPSTREAM_URL: upstream.url, PORTCULLIS_TRUSTED_PROXIES: "127.0.0.1/32" },
    });
    await h.app.http.listen({ port: 0, host: "127.0.0.1" });
    port = (h.app.http.server.address() as AddressInfo).port;
    await createKeys();
  });
  afterAll(async () => {
    await h.close();
    await upstream.stop();
  });

  /** A raw HTTP request: the path goes on the wire exactly as written (fetch would resolve "..") */
  const raw = (
    method: string,
    path: string,
    headers: Record<string, string>,
    body = "",
    address = nextAddress(),
  ): Promise<Answer> => rawRequest<Answer["json"]>(port, method, path, headers, body, address);

  interface Key {
    id: string;
    key: string;
    secret: string;
  }

  const owner = async (tier?: "intermediate" | "pro") => {
    const user = await h.createVerifiedUser({ country: "GB" });
    const accountId = await h.accountId(user);
    if (tier)
      await h.request("PUT", `/v1/admin/accounts/${accountId}/verification`, {
        headers: operator,
        body: { tier },
      });
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
    const createKey = async (body: Record<string, unknown>): Promise<Key> => {
      const response = await change("POST", "/v1/api-keys", body);
      expect(response.statusCode, response.body).toBe(201);
      return response.json();
    };
    return { accountId, change, createKey, token: () => token, secret: enrolled.secret };
  };

  /** Sends a Kraken-signed private request with a body exactly as given, signed over exactly that body. */
  const signed = (
    key: Key,
    method: string,
    body: string,
    options: { contentType?: string | null; nonce?: string; path?: string; address?: string } = {},
  ) => {
    const nonce = options.nonce ?? /nonce"?[=:]"?(\d+)/.exec(body)?.[1] ?? "";
    const path = options.path ?? `/0/private/${method}`;
    const headers: Record<string, string> = {
      "API-Key": key.key,
      "API-Sign": krakenSign(key.secret, path, nonce, body),
    };
    if (options.contentType !== null) headers["content-type"] = options.contentType ?? FORM;
    return raw("POST", path, headers, body, options.address);
  };
  const form = (key: Key, method: string, fields: Record<string, string>) => {
    const body = new URLSearchParams({ nonce: nextNonce(), ...fields }).toString();
    return signed(key, method, body);
  };

  let keys: { trader: Key; withdrawer: Key; starter: Key };
  let trader: Awaited<ReturnType<typeof owner>>;
  const createKeys = async () => {
    trader = await owner("intermediate");
    const starter = await owner();
    keys = {
      trader: await trader.createKey({
        name: "trader",
        permissions: [
          "funds_query",
          "trades_modify",
          "trades_close",
          "trades_query_open",
          "trades_query_closed",
          "ledger_query",
          "websocket",
        ],
        approvalThreshold: { BTC: "1", USD: "1000" },
      }),
      withdrawer: await trader.createKey({
        name: "withdrawer",
        permissions: ["funds_withdraw"],
        ipAllowlist: ["198.51.0.0/16"],
        approvalThreshold: { BTC: "1000" },
      }),
      starter: await starter.createKey({ name: "starter", permissions: ["trades_modify"] }),
    };
  };

  describe("refused before any handler", () => {
    const krakenShape = (error: string) => ({ error: [error], result: {} });
    it.each([
      [
        "a body over 64 KiB",
        "POST",
        "/0/private/Balance",
        { "content-type": FORM },
        `nonce=1&pad=${"a".repeat(70_000)}`,
        400,
        krakenShape("EGeneral:Invalid arguments"),
      ],
      [
        "an address that does not decode",
        "POST",
        "/0/private/Bal%zzance",
        { "content-type": FORM },
        "nonce=1",
        400,
        krakenShape("EGeneral:Invalid arguments"),
      ],
      [
        "a public address that does not decode",
        "GET",
        "/0/public/Tick%zzer",
        {},
        "",
        400,
        krakenShape("EGeneral:Invalid arguments"),
      ],
      [
        "a method the route does not take",
        "GET",
        "/0/private/Balance",
        {},
        "",
        404,
        krakenShape("EGeneral:Unknown method"),
      ],
      [
        "another site's Origin",
        "POST",
        "/0/private/Balance",
        { "content-type": FORM, origin: "https://evil.example" },
        "nonce=1",
        403,
        krakenShape("EGeneral:Permission denied"),
      ],
      [
        "a NUL byte in the body",
        "POST",
        "/0/private/Balance",
        { "content-type": FORM },
        "nonce=1&note=a\u0000b",
        400,
        krakenShape("EGeneral:Invalid arguments"),
      ],
      [
        "KuCoin: a body over 64 KiB",
        "POST",
        "/api/v1/orders",
        { "content-type": "application/json" },
        `{"pad":"${"a".repeat(70_000)}"}`,
        400,
        { code: "400100" },
      ],
      [
        "KuCoin: an address that does not decode",
        "GET",
        "/api/v1/acc%zzounts",
        {},
        "",
        400,
        { code: "400100" },
      ],
      [
        "Kraken Futures: a body over 64 KiB",
        "POST",
        "/derivatives/api/v3/sendorder",
        { "content-type": FORM },
        `pad=${"a".repeat(70_000)}`,
        400,
        { result: "error", error: "invalidArgument" },
      ],
    ] as const)(
      "answers %s in the exchange's own shape, and nothing reaches the venue",
      async (_, method, path, headers, body, status, shape) => {
        const before = upstream.seen.length;
        const answer = await raw(method, path, { ...headers }, body);
        expect(answer.status).toBe(status);
        expect(answer.json).toMatchObject(shape);
        expect(JSON.stringify(answer.json)).not.toContain('"code":"invalid_request"');
        expect(upstream.seen.length).toBe(before);
      },
    );
  });

  describe("public pass-through by name", () => {
    it.each([
      "/0/public/../private/Withdraw",
      "/0/public/%2e%2e/private/Withdraw",
      "/0/public/%2E%2E/private/Withdraw",
      "/0/public/Ticker/../../private/Withdraw",
      "/0/public/.%2e/private/Withdraw",
      "/0/public/..%2fprivate%2fWithdraw",
      "/0/public/Ticker%2f..%2f..%2fprivate%2fWithdraw",
      "/0/public/Withdraw",
      "/0/public/",
      "/0/public/ticker",
    ])("answers %s with Kraken's Unknown method, and nothing reaches the venue", async (path) => {
      const before = upstream.seen.length;
      for (const method of ["GET", "POST"]) {
        const answer = await raw(method, path, { "content-type": FORM }, "asset=XBT&amount=1&key=x");
        expect(answer.status).toBe(404);
        expect(answer.json).toEqual({ error: ["EGeneral:Unknown method"], result: {} });
      }
      expect(upstream.seen.length).toBe(before);
    });

    it("passes a listed method to the venue at its own name, the query re-serialised, and refuses repeats", async () => {
      const answer = await raw("GET", "/0/public/Ticker?pair=XBTUSD", {});
      expect(answer.status).toBe(200);
      expect(upstream.at("/0/public/Ticker").at(-1)!.path).toBe("/0/public/Ticker?pair=XBTUSD");
      const repeated = await raw("GET", "/0/public/Ticker?pair=XBTUSD&pair=ETHUSD", {});
      expect(repeated).toMatchObject({ status: 400, json: { error: ["EGeneral:Invalid arguments"] } });
    });

    it("never lets a private path through a private route's traversal either", async () => {
      const answer = await signed(keys.trader, "Balance", `nonce=${nextNonce()}`, {
        path: "/0/private/Balance/../Withdraw",
      });
      expect(answer.json.error).toEqual(["EGeneral:Unknown method"]);
      expect(upstream.at("/0/private/Withdraw")).toHaveLength(0);
    });
  });

  describe("one parse, one truth", () => {
    it.each([
      [
        "JSON sent as a form",
        FORM,
        (n: string) =>
          JSON.stringify({
            nonce: n,
            ordertype: "limit",
            volume: "0.1",
            pair: "XBTUSD",
            type: "buy",
            price: "1",
          }),
      ],
      [
        "a form sent as JSON",
        "application/json",
        (n: string) => `nonce=${n}&ordertype=market&volume=1000&leverage=5`,
      ],
      [
        "no Content-Type",
        null,
        (n: string) => `nonce=${n}&ordertype=limit&volume=0.1&pair=XBTUSD&type=buy&price=1`,
      ],
      [
        "text/plain",
        "text/plain",
        (n: string) => `nonce=${n}&ordertype=limit&volume=0.1&pair=XBTUSD&type=buy&price=1`,
      ],
      [
        "a repeated form field",
        FORM,
        (n: string) => `nonce=${n}&pair=XBTUSD&type=buy&ordertype=limit&price=1&volume=500&volume=0.0001`,
      ],
      [
        "a repeated nested field",
        FORM,
        (n: string) =>
          `nonce=${n}&pair=XBTUSD&type=buy&ordertype=limit&price=1&volume=0.1&close[price]=1&close[price]=2`,
      ],
      [
        "a field both plain and nested",
        FORM,
        (n: string) =>
          `nonce=${n}&pair=XBTUSD&type=buy&ordertype=limit&price=1&volume=0.1&close=1&close[price]=2`,
      ],
      [
        "a repeated JSON key",
        "application/json",
        (n: string) =>
          `{"nonce":"${n}","pair":"XBTUSD","type":"buy","ordertype":"limit","price":"1","volume":"500","volume":"0.0001"}`,
      ],
      [
        "a repeated nonce",
        FORM,
        (n: string) => `nonce=${n}&nonce=${n}1&pair=XBTUSD&type=buy&ordertype=limit&price=1&volume=0.1`,
      ],
      ["a JSON array", "application/json", (n: string) => `[{"nonce":"${n}"}]`],
      ["a JSON null field", "application/json", (n: string) => `{"nonce":"${n}","volume":null}`],
      ["a prototype key", "application/json", (n: string) => `{"nonce":"${n}","__proto__":{"volume":"9"}}`],
      ["a prototype field", FORM, (n: string) => `nonce=${n}&__proto__[volume]=9`],
      [
        "a gap in a list",
        FORM,
        (n: string) => `nonce=${n}&pair=XBTUSD&orders[0][volume]=1&orders[2][volume]=1`,
      ],
      [
        "an unknown order field",
        FORM,
        (n: string) => `nonce=${n}&pair=XBTUSD&type=buy&ordertype=limit&price=1&volume=0.1&volum=1000`,
      ],
      ["nesting too deep", FORM, (n: string) => `nonce=${n}&a[b][c][d][e]=1`],
    ])(
      "refuses %s with EGeneral:Invalid arguments, and the venue sees nothing",
      async (_name, contentType, build) => {
        const before = upstream.seen.length;
        const answer = await signed(keys.trader, "AddOrder", build(nextNonce()), { contentType });
        expect(answer.status).toBe(400);
        expect(answer.json.error).toEqual(["EGeneral:Invalid arguments"]);
        expect(upstream.seen.length).toBe(before);
      },
    );

    it("forwards the parameters it checked, with the matching Content-Type, and without credentials", async () => {
      const body = `nonce=${nextNonce()}&pair=XBTUSD&type=buy&ordertype=limit&price=100&volume=0.5&close[ordertype]=limit&close[price]=120&otp=ignored`;
      const answer = await signed(keys.trader, "AddOrder", body, { contentType: `${FORM}; charset=utf-8` });
      expect(answer.status, JSON.stringify(answer.json)).toBe(200);
      const seen = upstream.at("/0/private/AddOrder").at(-1)!;
      expect(seen.headers["content-type"]).toBe(FORM);
      expect(seen.headers["api-key"]).toBeUndefined();
      expect(seen.headers["api-sign"]).toBeUndefined();
      expect(seen.params).toMatchObject({
        pair: "XBTUSD",
        type: "buy",
        ordertype: "limit",
        price: "100",
        volume: "0.5",
        close: { ordertype: "limit", price: "120" },
      });
      expect(seen.params).not.toHaveProperty("otp");
    });

    it("never forwards an X-Portcullis header the client sent", async () => {
      const nonce = nextNonce();
      const body = `nonce=${nonce}`;
      const path = "/0/private/Balance";
      await raw(
        "POST",
        path,
        {
          "content-type": FORM,
          "API-Key": keys.trader.key,
          "API-Sign": krakenSign(keys.trader.secret, path, nonce, body),
          "X-Portcullis-Account": "someone-else",
          "X-Portcullis-Permissions": "funds_withdraw",
        },
        body,
      );
      const seen = upstream.at(path).at(-1)!;
      expect(seen.headers["x-portcullis-account"]).toBe(trader.accountId);
      expect(seen.headers["x-portcullis-permissions"]).not.toContain("funds_withdraw");
    });

    it("accepts a nonce with leading zeros, signed over exactly the string sent", async () => {
      const nonce = `000${nextNonce()}`;
      const answer = await signed(keys.trader, "Balance", `nonce=${nonce}`);
      expect(answer.status, JSON.stringify(answer.json)).toBe(200);
    });

    it("reads API-Sign in one spelling only: the same bytes in another base64 spelling are a bad signature", async () => {
      const path = "/0/private/Balance";
      // Each spelling on a request of its own: a refused one must leave its nonce unspent.
      for (let index = 0; index < 7; index++) {
        const body = `nonce=${nextNonce()}`;
        const signature = krakenSign(keys.trader.secret, path, body.slice(6), body);
        const spelling = otherSpellings(signature)[index];
        if (spelling === undefined) continue; // no + or / to spell URL-safe in this one
        const headers = { "API-Key": keys.trader.key, "API-Sign": spelling, "content-type": FORM };
        const refused = await raw("POST", path, headers, body);
        expect(refused.json.error, spelling).toEqual(["EAPI:Invalid signature"]);
        // The same request as it is meant to be spelled is still good: the refusal spent nothing.
        const allowed = await raw("POST", path, { ...headers, "API-Sign": signature }, body);
        expect(allowed.status, JSON.stringify(allowed.json)).toBe(200);
      }
    });

    it("agrees with the venue on every body it forwards (generated forms and JSON)", async () => {
      const name = fc.constantFrom("userref", "cl_ord_id", "displayvol", "timeinforce", "starttm", "oflags");
      const value = fc.string({ minLength: 0, maxLength: 12 });
      await fc.assert(
        fc.asyncProperty(fc.dictionary(name, value, { maxKeys: 4 }), fc.boolean(), async (extra, json) => {
          const fields = {
            pair: "XBTUSD",
            type: "sell",
            ordertype: "limit",
            price: "1",
            volume: "0.1",
            ...extra,
          };
          const nonce = nextNonce();
          const body = json
            ? JSON.stringify({ nonce, ...fields })
            : new URLSearchParams({ nonce, ...fields }).toString();
          const before = upstream.seen.length;
          const answer = await signed(keys.trader, "AddOrder", body, {
            contentType: json ? "application/json" : FORM,
          });
          if (answer.status !== 200) return answer.status === 400 && upstream.seen.length === before;
          const seen = upstream.seen.at(-1)!;
          expect(seen.params).toEqual({ nonce, ...fields });
          return true;
        }),
        { numRuns: 30 },
      );
    });
  });

  describe("approvals that cannot be dodged", () => {
    const held = async (key: Key, method: string, fields: Record<string, string>) => {
      const answer = await form(key, method, fields);
      return answer.json.error[0] === "EGeneral:Approval required";
    };
    it.each([
      [
        "a market buy with a dummy price",
        { pair: "XBTUSD", type: "buy", ordertype: "market", volume: "5", price: "0.01" },
      ],
      [
        "a stop-loss with a tiny trigger",
        { pair: "XBTUSD", type: "buy", ordertype: "stop-loss", volume: "5", price: "0.01" },
      ],
      [
        "a limit sell far below the market",
        { pair: "XBTUSD", type: "sell", ordertype: "limit", volume: "5", price: "0.01" },
      ],
      [
        "a limit buy worth more than the USD threshold",
        { pair: "XBTUSD", type: "buy", ordertype: "limit", volume: "0.5", price: "5000" },
      ],
      [
        "a stop-limit buy with its limit in price2",
        {
          pair: "XBTUSD",
          type: "buy",
          ordertype: "stop-loss-limit",
          volume: "0.5",
          price: "1",
          price2: "5000",
        },
      ],
      [
        "a market buy of quote volume (viqc)",
        { pair: "XBTUSD", type: "buy", ordertype: "market", volume: "5000", oflags: "viqc" },
      ],
      ["a legacy pair name", { pair: "XXBTZUSD", type: "sell", ordertype: "limit", volume: "5", price: "1" }],
      ["a slash pair", { pair: "BTC/USD", type: "sell", ordertype: "limit", volume: "5", price: "1" }],
      [
        "a pair the gateway cannot split",
        { pair: "WEIRDPAIR", type: "sell", ordertype: "limit", volume: "0.0001", price: "1" },
      ],
      [
        "a relative price on a buy",
        { pair: "XBTUSD", type: "buy", ordertype: "limit", volume: "0.1", price: "+5%" },
      ],
    ])("holds %s", async (_name, fields) => {
      expect(await held(keys.trader, "AddOrder", fields)).toBe(true);
    });

    it("lets what stays under every threshold through", async () => {
      expect(
        await held(keys.trader, "AddOrder", {
          pair: "XBTUSD",
          type: "buy",
          ordertype: "limit",
          volume: "0.5",
          price: "1000",
        }),
      ).toBe(false);
      expect(
        await held(keys.trader, "AddOrder", {
          pair: "ETHEUR",
          type: "sell",
          ordertype: "market",
          volume: "50",
        }),
      ).toBe(false);
    });

    it("adds a batch up per asset across its orders", async () => {
      const orders = (volume: string) =>
        `orders[0][type]=sell&orders[0][ordertype]=limit&orders[0][price]=1&orders[0][volume]=${volume}&orders[1][type]=sell&orders[1][ordertype]=limit&orders[1][price]=1&orders[1][volume]=${volume}`;
      const small = await signed(
        keys.trader,
        "AddOrderBatch",
        `nonce=${nextNonce()}&pair=XBTUSD&${orders("0.4")}`,
      );
      expect(small.json.error).toEqual([]);
      const large = await signed(
        keys.trader,
        "AddOrderBatch",
        `nonce=${nextNonce()}&pair=XBTUSD&${orders("0.6")}`,
      );
      expect(large.json.error).toEqual(["EGeneral:Approval required"]);
    });

    it("holds a withdrawal by its own asset: 999 BTC is not under a threshold of 1000 USD", async () => {
      const address = "198.51.7.7";
      const body = `nonce=${nextNonce()}&asset=XBT&key=cold&amount=999`;
      const withdrawalKey = await trader.createKey({
        name: "withdraw-usd",
        permissions: ["funds_withdraw"],
        ipAllowlist: ["198.51.0.0/16"],
        approvalThreshold: { USD: "1000", BTC: "1" },
      });
      const answer = await signed(withdrawalKey, "Withdraw", body, { address });
      expect(answer.json.error).toEqual(["EGeneral:Approval required"]);
      const under = await signed(
        keys.withdrawer,
        "Withdraw",
        `nonce=${nextNonce()}&asset=XBT&key=cold&amount=999`,
        { address },
      );
      expect(under.json.error).toEqual([]);
    });

    it("shows the owner every semantic field in full, ahead of anything else", async () => {
      const padding = "x".repeat(400);
      const answer = await form(keys.trader, "AddOrder", {
        userref: "1",
        cl_ord_id: padding,
        pair: "XBTUSD",
        type: "buy",
        ordertype: "limit",
        price: "1",
        volume: "123456.78901234",
      });
      const id = answer.json.result.approval_id as string;
      const listed = await h.request("GET", "/v1/approvals", { token: trader.token() });
      const summary = listed.json().approvals.find((a: { id: string }) => a.id === id).summary as string;
      expect(summary.indexOf("volume 123456.78901234")).toBeGreaterThan(-1);
      expect(summary.indexOf("volume 123456.78901234")).toBeLessThan(summary.indexOf(padding));
      expect(summary).toContain(padding);
    });
  });

  describe("products and engine modes", () => {
    it("treats leverage anywhere in a batch as margin", async () => {
      const body = `nonce=${nextNonce()}&pair=XBTUSD&orders[0][type]=sell&orders[0][ordertype]=limit&orders[0][price]=1&orders[0][volume]=0.1&orders[1][type]=sell&orders[1][ordertype]=limit&orders[1][price]=1&orders[1][volume]=0.1&orders[1][leverage]=5`;
      const answer = await signed(keys.starter, "AddOrderBatch", body);
      expect(answer.json.error).toEqual(["EGeneral:Permission denied"]);
      const json = JSON.stringify({
        nonce: nextNonce(),
        pair: "XBTUSD",
        orders: [{ type: "sell", ordertype: "limit", price: "1", volume: "0.1", leverage: "5" }],
      });
      expect(
        (await signed(keys.starter, "AddOrderBatch", json, { contentType: "application/json" })).json.error,
      ).toEqual(["EGeneral:Permission denied"]);
    });

    it("lets cancels through a cancel-only market and only post-only orders through a post-only one", async () => {
      const setEngine = (status: string) =>
        h.request("PUT", "/v1/admin/subsystems/spot_engine", { headers: operator, body: { status } });
      const order = { pair: "XBTUSD", type: "sell", ordertype: "limit", price: "1", volume: "0.1" };
      try {
        await setEngine("cancel_only");
        expect((await form(keys.trader, "CancelOrder", { txid: "OABCDE-FGHIJ-KLMNOP" })).json.error).toEqual(
          [],
        );
        expect((await form(keys.trader, "AddOrder", order)).json.error).toEqual([
          "EService:Market in cancel_only mode",
        ]);
        await setEngine("post_only");
        expect((await form(keys.trader, "AddOrder", order)).json.error).toEqual([
          "EService:Market in post_only mode",
        ]);
        expect((await form(keys.trader, "AddOrder", { ...order, oflags: "fciq,post" })).json.error).toEqual(
          [],
        );
      } finally {
        await setEngine("operational");
      }
    });
  });

  describe("nonces and history windows", () => {
    it("never reopens a used or refused nonce when the key's window is widened", async () => {
      const key = await trader.createKey({ name: "widened", permissions: ["funds_query"] });
      const base = BigInt(nextNonce()) + 1_000_000n;
      expect((await signed(key, "Balance", `nonce=${base}`)).json.error).toEqual([]);
      expect((await signed(key, "Balance", `nonce=${base - 10n}`)).json.error).toEqual([
        "EAPI:Invalid nonce",
      ]);
      const widened = await trader.change("PATCH", `/v1/api-keys/${key.id}`, { nonceWindow: 1_000 });
      expect(widened.statusCode, widened.body).toBe(200);
      expect((await signed(key, "Balance", `nonce=${base}`)).json.error).toEqual(["EAPI:Invalid nonce"]);
      expect((await signed(key, "Balance", `nonce=${base - 10n}`)).json.error).toEqual([
        "EAPI:Invalid nonce",
      ]);
      // Nonces above the highest seen still work, and within the window below the next highest once each.
      expect((await signed(key, "Balance", `nonce=${base + 100n}`)).json.error).toEqual([]);
      expect((await signed(key, "Balance", `nonce=${base + 50n}`)).json.error).toEqual([]);
      expect((await signed(key, "Balance", `nonce=${base + 50n}`)).json.error).toEqual([
        "EAPI:Invalid nonce",
      ]);
    });

    it("bounds every history call of a windowed key: missing bounds are set, others refused", async () => {
      const from = Date.UTC(2026, 0, 1);
      const to = Date.UTC(2026, 5, 1);
      const key = await trader.createKey({
        name: "windowed",
        permissions: ["trades_query_closed", "ledger_query"],
        queryFrom: new Date(from).toISOString(),
        queryTo: new Date(to).toISOString(),
      });
      for (const method of ["ClosedOrders", "TradesHistory", "Ledgers"]) {
        expect((await form(key, method, {})).json.error).toEqual([]);
        const seen = upstream.at(`/0/private/${method}`).at(-1)!;
        expect(seen.params).toMatchObject({ start: String(from / 1000), end: String(to / 1000) });
        expect((await form(key, method, { start: "OABCDE-FGHIJ-KLMNOP" })).json.error).toEqual([
          "EGeneral:Invalid arguments",
        ]);
        expect((await form(key, method, { start: "abc" })).json.error).toEqual([
          "EGeneral:Invalid arguments",
        ]);
        expect((await form(key, method, { start: String(from / 1000 - 1) })).json.error).toEqual([
          "EGeneral:Permission denied",
        ]);
      }
      expect((await form(key, "QueryOrders", { txid: "OABCDE-FGHIJ-KLMNOP" })).json.error).toEqual([]);
      const query = upstream.at("/0/private/QueryOrders").at(-1)!;
      expect(query.headers["x-portcullis-query-from"]).toBe(String(from / 1000));
      expect(query.headers["x-portcullis-query-to"]).toBe(String(to / 1000));
    });
  });

  describe("Kraken's trading limiter", () => {
    it("gives order entry its own per-pair room: a pro market maker's 100 orders pass where the REST counter would refuse", async () => {
      const maker = await owner("pro");
      const key = await maker.createKey({
        name: "maker",
        permissions: ["trades_modify", "trades_close", "funds_query"],
      });
      const kraken = new ccxt.kraken({
        enableRateLimit: false,
        apiKey: key.key,
        secret: key.secret,
        urls: { api: { public: `http://127.0.0.1:${port}`, private: `http://127.0.0.1:${port}` } },
      });
      // ccxt's nonce is the millisecond: two calls answered within one would share it. A bot this fast
      // counts its nonces (microseconds, rising by one).
      let nonce = Date.now() * 1000;
      kraken.nonce = () => ++nonce;
      const results = [];
      for (let i = 0; i < 100; i += 1) {
        results.push(
          await kraken
            .privatePostAddOrder({
              pair: "XBTUSD",
              type: "buy",
              ordertype: "limit",
              price: "100",
              volume: "0.01",
            })
            .then(
              () => "ok",
              (error: Error) => error.message,
            ),
        );
      }
      expect(results.filter((r) => r === "ok")).toHaveLength(100);
      // The REST counter was not touched: 20 other calls still pass.
      for (let i = 0; i < 20; i += 1) await kraken.privatePostBalance();
    });

    it("refuses past the tier's ceiling with EOrder:Rate limit exceeded, and charges a quick cancel Kraken's penalty", async () => {
      // A window lets the parallel requests arrive in any order.
      const key = await trader.createKey({
        name: "fast",
        permissions: ["trades_modify", "trades_close"],
        nonceWindow: 1_000_000,
      });
      const order = { pair: "ETHUSD", type: "sell", ordertype: "limit", price: "1", volume: "0.01" };
      // Intermediate: ceiling 125. The venue's AddOrder answer tells the gateway each order's txid.
      const placed = await form(key, "AddOrder", order);
      const txid = (placed.json.result.txid as string[])[0]!;
      // A cancel within 5 s costs 8; 117 more orders fill the counter to 126 > 125 at the last.
      expect((await form(key, "CancelOrder", { txid })).json.error).toEqual([]);
      const answers = await Promise.all(Array.from({ length: 117 }, () => form(key, "AddOrder", order)));
      const refused = answers.filter((a) => a.json.error[0] === "EOrder:Rate limit exceeded");
      expect(
        answers.filter((a) => a.json.error.length > 0 && a.json.error[0] !== "EOrder:Rate limit exceeded"),
      ).toEqual([]);
      expect(refused.length).toBeGreaterThanOrEqual(1);
      expect(refused.length).toBeLessThanOrEqual(3);
      expect(refused[0]!.status).toBe(429);
      // Another pair has its own counter.
      expect((await form(key, "AddOrder", { ...order, pair: "XBTUSD" })).json.error).toEqual([]);
    });
  });

  describe("ccxt's kraken class, unchanged", () => {
    it("creates limit and market orders, cancels, lists open orders and fetches the balance", async () => {
      const key = await trader.createKey({
        name: "ccxt-full",
        permissions: ["funds_query", "trades_modify", "trades_close", "trades_query_open"],
      });
      const kraken = new ccxt.kraken({
        enableRateLimit: false,
        apiKey: key.key,
        secret: key.secret,
        urls: { api: { public: `http://127.0.0.1:${port}`, private: `http://127.0.0.1:${port}` } },
      });
      await kraken.loadMarkets();
      const limit = await kraken.createOrder("BTC/USD", "limit", "buy", 0.01, 30000);
      expect(limit.id).toMatch(/^O/);
      const market = await kraken.createOrder("BTC/USD", "market", "sell", 0.01);
      expect(market.id).toMatch(/^O/);
      await kraken.cancelOrder(limit.id as string, "BTC/USD");
      expect(upstream.at("/0/private/CancelOrder").at(-1)!.params).toMatchObject({ txid: limit.id });
      const open = await kraken.fetchOpenOrders("BTC/USD");
      expect(open.length).toBeGreaterThan(0);
      const balance = await kraken.fetchBalance();
      expect(balance.BTC?.total).toBeGreaterThan(0);
    });

    it("gets a WebSocket token that the venue's WebSocket server can redeem once", async () => {
      const key = await trader.createKey({ name: "websocket", permissions: ["websocket"] });
      const kraken = new ccxt.kraken({
        enableRateLimit: false,
        apiKey: key.key,
        secret: key.secret,
        urls: { api: { public: `http://127.0.0.1:${port}`, private: `http://127.0.0.1:${port}` } },
      });
      const answer = (await kraken.privatePostGetWebSocketsToken()) as {
        result: { token: string; expires: number };
      };
      expect(answer.result.expires).toBe(900);
      const redeem = () =>
        h.request("POST", "/v1/gateway/ws-token", { headers: service, body: { token: answer.result.token } });
      const results = await Promise.all(Array.from({ length: 20 }, redeem));
      const ok = results.filter((r) => r.statusCode === 200);
      expect(ok).toHaveLength(1);
      expect(ok[0]!.json()).toMatchObject({
        accountId: trader.accountId,
        keyId: key.id,
        permissions: ["websocket"],
      });
      expect(results.filter((r) => r.statusCode === 404)).toHaveLength(19);
      const unknown = await h.request("POST", "/v1/gateway/ws-token", {
        headers: service,
        body: { token: "nope" },
      });
      expect(unknown.statusCode).toBe(404);
      // Without the websocket permission there is no token.
      const withdrawer = await form(keys.withdrawer, "GetWebSocketsToken", {});
      expect(withdrawer.json.error).toEqual(["EGeneral:Permission denied"]);
    });

    it("expires a WebSocket token 15 minutes after it was issued", async () => {
      const answer = await form(keys.trader, "GetWebSocketsToken", {});
      h.clock.advance(15 * 60_000 + 1);
      const late = await h.request("POST", "/v1/gateway/ws-token", {
        headers: service,
        body: { token: answer.json.result.token as string },
      });
      expect(late.statusCode).toBe(404);
    });
  });
});
