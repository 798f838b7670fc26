import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { krakenSignature } from "../../src/client/kraken-client.js";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { Harness, SERVICE_TOKEN } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

const service = { authorization: `Bearer ${SERVICE_TOKEN}` };

describe.each(engines)("API keys and Kraken-signed requests on %s (behaviour §11)", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  const nextCode = (secret: Uint8Array) => nextTotpCode(h, secret);

  const owner = async () => {
    const user = await h.createVerifiedUser();
    // API keys are offered on the website and in Pro, not in the simple app (behaviour §9).
    const enrolled = await enrollTotp(h, await h.sessionToken(user, "pro"), { password: user.password });
    let token = enrolled.token;
    const create = async (body: Record<string, unknown>) => {
      const result = await withStepUp(
        h,
        token,
        "POST",
        "/v1/api-keys",
        { totp: nextCode(enrolled.secret) },
        { body },
      );
      token = result.token;
      return result.response;
    };
    return { user, secret: enrolled.secret, token: () => token, create };
  };

  let nonceCounter = BigInt(Date.now()) * 1000n;
  const nextNonce = () => {
    nonceCounter += 1n;
    return nonceCounter.toString();
  };

  // Each request from its own address in 203.0.113.0/24, so one test's refusals never lock out another's.
  let ipCounter = 0;
  const nextIp = () => `203.0.113.${(ipCounter++ % 254) + 1}`;

  /** A request signed exactly as Kraken clients sign it, checked through the venue's check endpoint. */
  const check = (
    key: { key: string; secret: string },
    method: string,
    options: { nonce?: string; ip?: string; secret?: string } = {},
  ) => {
    const nonce = options.nonce ?? nextNonce();
    const path = `/0/private/${method}`;
    const body = `nonce=${nonce}&asset=XBT`;
    return h.request("POST", "/v1/gateway/check", {
      headers: service,
      body: {
        path,
        headers: {
          "Content-Type": "application/x-www-form-urlencoded",
          "API-Key": key.key,
          "API-Sign": krakenSignature(options.secret ?? key.secret, path, nonce, body),
        },
        body,
        ip: options.ip ?? nextIp(),
      },
    });
  };

  it("creates a key only after a step-up, shows the secret once, and keeps it sealed", async () => {
    const { create, token } = await owner();
    const created = await create({ name: "Trading bot", permissions: ["funds_query", "trades_modify"] });
    expect(created.statusCode, created.body).toBe(201);
    const key = created.json();
    expect(Buffer.from(key.secret, "base64")).toHaveLength(64);
    expect(key.key).toHaveLength(56);
    const listed = (await h.request("GET", "/v1/api-keys", { token: token() })).json().apiKeys;
    expect(listed).toEqual([
      expect.objectContaining({
        id: key.id,
        name: "Trading bot",
        permissions: ["funds_query", "trades_modify"],
      }),
    ]);
    expect(JSON.stringify(listed)).not.toContain(key.secret);
    const row = await h.db
      .selectFrom("api_keys")
      .select("secret_sealed")
      .where("id", "=", key.id)
      .executeTakeFirstOrThrow();
    expect(row.secret_sealed).not.toContain(key.secret);
    expect((await create({ name: "Trading bot", permissions: [] })).statusCode).toBe(409);
  });

  it("checks what a key may be created with", async () => {
    const { create } = await owner();
    const refusals = [
      { name: "w", permissions: ["funds_withdraw"] },
      { name: "bad cidr", permissions: ["funds_query"], ipAllowlist: ["10.0.0.0/33"] },
      { name: "unknown", permissions: ["moon"] },
      { name: "past", permissions: [], validUntil: "2000-01-01T00:00:00Z" },
      { name: "", permissions: [] },
    ];
    for (const body of refusals) {
      const response = await h.request("POST", "/v1/api-keys", { token: (await owner()).token(), body });
      expect(response.statusCode, JSON.stringify(body)).toBe(400);
    }
    const withdrawing = await create({
      name: "withdrawer",
      permissions: ["funds_withdraw"],
      ipAllowlist: ["203.0.113.0/24", "2001:db8::/32"],
    });
    expect(withdrawing.statusCode).toBe(201);
  });

  it("accepts a correctly signed request once, and refuses a wrong secret, a replay, a missing permission, another IP and an expired key", async () => {
    const { create } = await owner();
    const key = (
      await create({ name: "reader", permissions: ["funds_query"], ipAllowlist: ["203.0.113.0/24"] })
    ).json();
    const ok = await check(key, "Balance");
    expect(ok.json()).toMatchObject({ allow: true, keyId: key.id, permissions: ["funds_query"] });
    const wrongSecret = await check(key, "Balance", { secret: Buffer.alloc(64, 7).toString("base64") });
    expect(wrongSecret.json()).toEqual({ allow: false, error: "EAPI:Invalid signature" });
    const nonce = nextNonce();
    expect((await check(key, "Balance", { nonce })).json().allow).toBe(true);
    expect((await check(key, "Balance", { nonce })).json()).toEqual({
      allow: false,
      error: "EAPI:Invalid nonce",
    });
    expect((await check(key, "AddOrder")).json()).toEqual({
      allow: false,
      error: "EGeneral:Permission denied",
    });
    expect((await check(key, "Balance", { ip: "198.51.100.1" })).json()).toEqual({
      allow: false,
      error: "EGeneral:Permission denied",
    });
    expect((await check(key, "NoSuchMethod")).json()).toEqual({
      allow: false,
      error: "EGeneral:Unknown method",
    });
    expect((await check({ key: "A".repeat(56), secret: key.secret }, "Balance")).json()).toEqual({
      allow: false,
      error: "EAPI:Invalid key",
    });

    const expiring = (
      await create({
        name: "short-lived",
        permissions: ["funds_query"],
        validUntil: new Date(h.clock.now() + 60_000).toISOString(),
      })
    ).json();
    expect((await check(expiring, "Balance")).json().allow).toBe(true);
    h.clock.advance(60_000);
    expect((await check(expiring, "Balance")).json()).toEqual({ allow: false, error: "EAPI:Invalid key" });
  });

  it("refuses a checked request naming one header twice in different case, before using either", async () => {
    const { create } = await owner();
    const key = (await create({ name: "reader", permissions: ["funds_query"] })).json();
    const nonce = nextNonce();
    const path = "/0/private/Balance";
    const body = `nonce=${nonce}&asset=XBT`;
    const headers = {
      "Content-Type": "application/x-www-form-urlencoded",
      "API-Key": key.key,
      "API-Sign": Buffer.alloc(64, 1).toString("base64"),
      "api-sign": krakenSignature(key.secret, path, nonce, body),
    };
    const response = await h.request("POST", "/v1/gateway/check", {
      headers: service,
      body: { path, headers, body, ip: nextIp() },
    });
    expect(response.statusCode, response.body).toBe(400);
    expect(response.json().error).toMatchObject({
      code: "invalid_request",
      message: "The header api-sign is given more than once.",
    });
    // The nonce was not spent: the same request with the header once is allowed.
    const { "API-Sign": _, ...once } = headers;
    const allowed = await h.request("POST", "/v1/gateway/check", {
      headers: service,
      body: { path, headers: once, body, ip: nextIp() },
    });
    expect(allowed.json()).toMatchObject({ allow: true, keyId: key.id });
  });

  it("refuses a checked request whose client address is not an IP address, before using the request", async () => {
    const { create } = await owner();
    const key = (await create({ name: "addressed", permissions: ["funds_query"] })).json();
    const nonce = nextNonce();
    const path = "/0/private/Balance";
    const body = `nonce=${nonce}`;
    const form = { "Content-Type": "application/x-www-form-urlencoded" };
    const headers = {
      ...form,
      "API-Key": key.key,
      "API-Sign": krakenSignature(key.secret, path, nonce, body),
    };
    const hostile = [
      "xx",
      "unknown",
      "203.0.113",
      "256.1.1.1",
      "203.0.113.7 ",
      " 203.0.113.7",
      "203.0.113.7:443",
      "203.0.113.0/24",
      "::ffff:999.0.0.1",
      "2001:db8:::1",
      "203.0.113.7, 198.51.100.1",
      "localhost",
    ];
    for (const ip of hostile) {
      const response = await h.request("POST", "/v1/gateway/check", {
        headers: service,
        body: { path, headers, body, ip },
      });
      expect(response.statusCode, `${JSON.stringify(ip)}: ${response.body}`).toBe(400);
      expect(response.json().error).toMatchObject({
        code: "invalid_request",
        message: "The client's address is not an IP address.",
        details: [{ field: "ip", message: "Give the address the request came from, IPv4 or IPv6." }],
      });
    }
    // None of them spent the nonce: the same request from a real address is allowed, in either family.
    const allowed = await h.request("POST", "/v1/gateway/check", {
      headers: service,
      body: { path, headers, body, ip: `::ffff:${nextIp()}` },
    });
    expect(allowed.json(), allowed.body).toMatchObject({ allow: true, keyId: key.id });
    const nonce6 = nextNonce();
    const body6 = `nonce=${nonce6}`;
    const six = await h.request("POST", "/v1/gateway/check", {
      headers: service,
      body: {
        path,
        headers: {
          ...form,
          "API-Key": key.key,
          "API-Sign": krakenSignature(key.secret, path, nonce6, body6),
        },
        body: body6,
        ip: "2001:db8::7",
      },
    });
    expect(six.json(), six.body).toMatchObject({ allow: true, keyId: key.id });
  });

  it("lets exactly one of 50 parallel copies of a signed request through", async () => {
    const { create } = await owner();
    const key = (await create({ name: "racer", permissions: ["funds_query"] })).json();
    const nonce = nextNonce();
    const results = await Promise.all(Array.from({ length: 50 }, () => check(key, "Balance", { nonce })));
    expect(results.filter((r) => r.json().allow === true)).toHaveLength(1);
    // The replays are refused; after ten bad nonces the key is also locked out for a while (behaviour §11).
    const errors = results.filter((r) => r.json().allow === false).map((r) => r.json().error);
    expect(errors).toHaveLength(49);
    expect(errors.filter((e) => e !== "EAPI:Invalid nonce" && e !== "EGeneral:Temporary lockout")).toEqual(
      [],
    );
    expect(errors.filter((e) => e === "EAPI:Invalid nonce").length).toBeGreaterThanOrEqual(10);
  });

  it("accepts out-of-order nonces within the key's window, each once", async () => {
    const { create } = await owner();
    const key = (await create({ name: "windowed", permissions: ["funds_query"], nonceWindow: 1000 })).json();
    const high = nextNonce();
    nonceCounter += 5000n;
    expect((await check(key, "Balance", { nonce: (BigInt(high) + 2000n).toString() })).json().allow).toBe(
      true,
    );
    expect((await check(key, "Balance", { nonce: (BigInt(high) + 1500n).toString() })).json().allow).toBe(
      true,
    );
    expect((await check(key, "Balance", { nonce: (BigInt(high) + 1500n).toString() })).json().error).toBe(
      "EAPI:Invalid nonce",
    );
    expect((await check(key, "Balance", { nonce: high })).json().error).toBe("EAPI:Invalid nonce");
  });

  it("refuses keys to the Global Settings Lock, asks the trading passcode when set, and deletes at once", async () => {
    const { create, token, secret } = await owner();
    const key = (await create({ name: "first", permissions: ["funds_query"] })).json();
    const passcode = await withStepUp(
      h,
      token(),
      "PUT",
      "/v1/security/trading-passcode",
      { totp: nextCode(secret) },
      { body: { passcode: "482916" } },
    );
    const withPasscode = await h.request("POST", "/v1/api-keys", {
      token: passcode.token,
      body: { name: "second", permissions: [] },
    });
    expect(withPasscode.json().error.action.required).toEqual(["second_factor", "trading_passcode"]);
    const locked = await withStepUp(
      h,
      passcode.token,
      "POST",
      "/v1/security/global-lock",
      { totp: nextCode(secret) },
      { body: { unlockDelayDays: 1 } },
    );
    const refused = await h.request("POST", "/v1/api-keys", {
      token: locked.token,
      body: { name: "third", permissions: [] },
    });
    expect(refused.json().error.code).toBe("settings_locked");
    expect((await h.request("DELETE", `/v1/api-keys/${key.id}`, { token: locked.token })).statusCode).toBe(
      200,
    );
    expect((await check(key, "Balance")).json()).toEqual({ allow: false, error: "EAPI:Invalid key" });
  });
});
