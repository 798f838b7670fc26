import { afterEach, describe, expect, it } from "vitest";
import { Harness, newUser } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

const setups = engines.flatMap((engine) => [
  { engine, redis: false, name: `${engine}` },
  { engine, redis: true, name: `${engine} with Redis counters` },
]);

describe.each(setups)("per-IP rate limits on $name (behaviour §4)", ({ engine, redis }) => {
  let h: Harness;
  afterEach(async () => {
    await h?.close();
  });

  it("answers 429 with Retry-After past the per-IP+identifier limit, and opens again in the next window", async () => {
    h = await Harness.create(engine, {
      redis,
      env: { PORTCULLIS_BOT_CHECK: "off" },
      settings: {
        protection: { ipIdentifierLimit: { max: 3, windowMs: 60_000 }, failuresBeforeRestriction: 50 },
      },
    });
    const user = await h.createVerifiedUser();
    const attempt = (ip = "192.0.2.7") =>
      h.request("POST", "/v1/sign-in", {
        body: { identifier: user.username, password: "wrong password!!" },
        ip,
      });
    h.clock.set(Math.ceil(h.clock.now() / 60_000) * 60_000);
    for (let i = 0; i < 3; i += 1) expect((await attempt()).statusCode).toBe(401);
    const limited = await attempt();
    expect(limited.statusCode).toBe(429);
    expect(limited.json().error.code).toBe("rate_limited");
    expect(limited.headers["retry-after"]).toBe("60");
    // Another address is not affected; the account counter still is the real protection.
    expect((await attempt("192.0.2.8")).statusCode).toBe(401);
    h.clock.advance(60_000);
    expect((await attempt()).statusCode).toBe(401);
  });

  it("limits sign-ups per IP", async () => {
    h = await Harness.create(engine, {
      redis,
      env: { PORTCULLIS_BOT_CHECK: "off" },
      settings: { protection: { signUpIpLimit: { max: 2, windowMs: 3_600_000 } } },
    });
    for (let i = 0; i < 2; i += 1) {
      expect((await h.request("POST", "/v1/accounts", { body: newUser() })).statusCode).toBe(202);
    }
    const limited = await h.request("POST", "/v1/accounts", { body: newUser() });
    expect(limited.statusCode).toBe(429);
    expect(Number(limited.headers["retry-after"])).toBeGreaterThan(0);
  });

  it("counts every IPv6 address of one /64 as one address, for sign-in, sign-up and recovery", async () => {
    h = await Harness.create(engine, {
      redis,
      env: { PORTCULLIS_BOT_CHECK: "off" },
      settings: {
        protection: {
          ipLimit: { max: 3, windowMs: 60_000 },
          signUpIpLimit: { max: 2, windowMs: 3_600_000 },
          failuresBeforeRestriction: 50,
        },
      },
    });
    const user = await h.createVerifiedUser();
    h.clock.set(Math.ceil(h.clock.now() / 60_000) * 60_000);
    // One subscriber's /64, a fresh address for every request.
    const address = (n: number) => `2001:db8:1234:5678:${n.toString(16)}::1`;
    const signIn = (ip: string) =>
      h.request("POST", "/v1/sign-in", {
        body: { identifier: user.username, password: "wrong password!!" },
        ip,
      });
    for (let i = 0; i < 3; i += 1) expect((await signIn(address(i))).statusCode).toBe(401);
    expect((await signIn(address(99))).statusCode).toBe(429);
    // The next /64 is someone else.
    expect((await signIn("2001:db8:1234:5679::1")).statusCode).toBe(401);

    for (let i = 0; i < 2; i += 1) {
      const created = await h.request("POST", "/v1/accounts", { body: newUser(), ip: address(10 + i) });
      expect(created.statusCode).toBe(202);
    }
    expect((await h.request("POST", "/v1/accounts", { body: newUser(), ip: address(20) })).statusCode).toBe(
      429,
    );

    const forgot = (ip: string) =>
      h.request("POST", "/v1/recovery/password", {
        body: { email: user.email, username: user.username },
        ip,
      });
    for (let i = 0; i < 2; i += 1) expect((await forgot(address(30 + i))).statusCode).toBe(202);
    expect((await forgot(address(40))).statusCode).toBe(429);
  });

  it("believes X-Forwarded-For only from a trusted proxy", async () => {
    h = await Harness.create(engine, {
      redis,
      env: { PORTCULLIS_BOT_CHECK: "off", PORTCULLIS_TRUSTED_PROXIES: "10.0.0.0/8" },
    });
    const user = await h.createVerifiedUser();
    const signIn = (ip: string, forwardedFor: string) =>
      h.request("POST", "/v1/sign-in", {
        body: { identifier: user.username, password: user.password, client: "app" },
        ip,
        headers: { "x-forwarded-for": forwardedFor },
      });
    const viaProxy = await signIn("10.1.2.3", "81.2.69.160");
    const direct = await signIn("203.0.113.50", "81.2.69.160");
    const sessions = await h.request("GET", "/v1/sessions", { token: viaProxy.json().token });
    const ips = sessions
      .json()
      .sessions.map((s: { ip: string }) => s.ip)
      .sort();
    expect(ips).toEqual(["203.0.113.50", "81.2.69.160"]);
    const located = sessions.json().sessions.find((s: { ip: string }) => s.ip === "81.2.69.160");
    expect(located.location).toMatch(/GB$/);
    expect(direct.statusCode).toBe(200);
    // What the trusted proxy forwards is the address every limit counts: anything but an IP address is
    // refused, not counted as an address of its own (a proxy writing "unknown", a port, a name).
    for (const forwarded of [
      "unknown",
      "81.2.69.160:443",
      "client.example",
      "999.1.1.1",
      "81.2.69.160, nonsense",
    ]) {
      const refused = await signIn("10.1.2.3", forwarded);
      expect(refused.statusCode, forwarded).toBe(400);
      expect(refused.json().error).toMatchObject({
        code: "invalid_request",
        details: [{ field: "x-forwarded-for" }],
      });
    }
    // The client's own spoofed entries to the left of what the proxy appended are not believed, nor refused.
    expect((await signIn("10.1.2.3", "nonsense, 81.2.69.160")).statusCode).toBe(200);
    expect((await signIn("10.1.2.3", "::ffff:81.2.69.160")).statusCode).toBe(200);
  });
});
