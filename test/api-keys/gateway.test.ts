import type { AddressInfo } from "node:net";
import ccxt from "ccxt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KrakenClient } from "../../src/client/kraken-client.js";
import { totpCode } from "../../src/factors/totp.js";
import { enrollTotp, withStepUp } from "../helpers/factors.js";
import { Harness } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";
import { VenueUpstream } from "../helpers/venue-upstream.js";

describe.each(engines)("the authenticating gateway on %s (behaviour §11)", (engine) => {
  let h: Harness;
  const upstream = new VenueUpstream();
  let base = "";
  beforeAll(async () => {
    await upstream.start();
    h = await Harness.create(engine, { env: { PORTCULLIS_UPSTREAM_URL: upstream.url } });
    await h.app.http.listen({ port: 0, host: "127.0.0.1" });
    base = `http://127.0.0.1:${(h.app.http.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await h.close();
    await upstream.stop();
  });

  const keyFor = async (body: Record<string, unknown>) => {
    const user = await h.createVerifiedUser();
    const enrolled = await enrollTotp(h, await h.sessionToken(user, "pro"), { password: user.password });
    h.clock.advance(30_000);
    const created = await withStepUp(
      h,
      enrolled.token,
      "POST",
      "/v1/api-keys",
      { totp: totpCode(enrolled.secret, h.clock.now()) },
      { body },
    );
    expect(created.response.statusCode, created.response.body).toBe(201);
    return { key: created.response.json(), accountId: await h.accountId(user) };
  };

  it("lets ccxt's kraken class fetch the balance through the gateway, passing the caller's identity on", async () => {
    const { key, accountId } = await keyFor({ name: "ccxt", permissions: ["funds_query"] });
    const kraken = new ccxt.kraken({
      apiKey: key.key,
      secret: key.secret,
      urls: { api: { public: base, private: base } },
    });
    const balance = await kraken.fetchBalance();
    expect(balance.total).toMatchObject({ BTC: 1.25, USD: 3100.5 });
    expect(balance.free).toMatchObject({ BTC: 1, USD: 3100.5 });
    const forwarded = upstream.seen.find((s) => s.path === "/0/private/BalanceEx")!;
    expect(forwarded.headers).toMatchObject({
      "x-portcullis-account": accountId,
      "x-portcullis-key": key.id,
      "x-portcullis-permissions": "funds_query",
    });
    expect(forwarded.body).toMatch(/^nonce=\d+$/);
    expect(forwarded.headers["api-sign"]).toBeUndefined();

    const info = await kraken.privatePostGetApiKeyInfo();
    expect(info).toMatchObject({ error: [], result: { name: "ccxt", permissions: ["funds_query"] } });

    const impostor = new ccxt.kraken({
      enableRateLimit: false,
      apiKey: key.key,
      secret: Buffer.alloc(64, 9).toString("base64"),
      urls: { api: { public: base, private: base } },
    });
    await expect(impostor.fetchBalance()).rejects.toThrow(/Invalid signature/);
    await expect(
      kraken.privatePostAddOrder({ pair: "XBTUSD", type: "buy", ordertype: "market", volume: "1" }),
    ).rejects.toThrow(/Permission denied/);
  });

  it("answers the repository's own client over HTTP: rate limit 429, approvals with their id", async () => {
    const { key } = await keyFor({
      name: "own-client",
      permissions: ["funds_query", "trades_modify"],
      approvalThreshold: { USD: "100" },
    });
    const client = new KrakenClient({ baseUrl: base, key: key.key, secret: key.secret, json: true });
    const held = await client.private("AddOrder", {
      pair: "XBTUSD",
      type: "buy",
      ordertype: "limit",
      price: "100",
      volume: "2",
    });
    expect(held.status).toBe(403);
    expect(held.error).toEqual(["EGeneral:Approval required"]);
    expect(held.result).toMatchObject({ approval_id: expect.any(String), expires_at: expect.any(String) });
    expect(upstream.seen.some((s) => s.body.includes('"volume":"2"'))).toBe(false);
    let answer = await client.private("Balance");
    while (answer.error.length === 0) answer = await client.private("Balance");
    expect(answer).toMatchObject({ status: 429, error: ["EAPI:Rate limit exceeded"] });
  });

  it("takes the key and signature from the headers only, never from the query string", async () => {
    const { key } = await keyFor({ name: "query-string", permissions: ["funds_query"] });
    const signed = new KrakenClient({ baseUrl: base, key: key.key, secret: key.secret }).sign("Balance");
    const query = new URLSearchParams({ "API-Key": key.key, "API-Sign": signed.headers["API-Sign"] });
    const response = await fetch(`${base}${signed.path}?${query}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: signed.body,
    });
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: ["EAPI:Invalid key"], result: {} });
  });

  it("answers 503 EService:Unavailable in Kraken's shape once the venue is down, and the public paths alike", async () => {
    const { key } = await keyFor({ name: "venue-down", permissions: ["funds_query"] });
    const client = new KrakenClient({ baseUrl: base, key: key.key, secret: key.secret, json: true });
    await expect(client.private("Balance")).resolves.toMatchObject({ status: 200, error: [] });
    await upstream.stop();
    await expect(client.private("Balance")).resolves.toMatchObject({
      status: 503,
      error: ["EService:Unavailable"],
    });
    const ticker = await fetch(`${base}/0/public/Ticker?pair=XBTUSD`);
    expect(ticker.status).toBe(503);
    expect(await ticker.json()).toEqual({ error: ["EService:Unavailable"], result: {} });
  });

  it("answers refused requests in Kraken's shape with a 4xx status", async () => {
    const response = await fetch(`${base}/0/private/Balance`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "API-Key": "nope", "API-Sign": "nope" },
      body: "nonce=1",
    });
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: ["EAPI:Invalid key"], result: {} });
  });
});
