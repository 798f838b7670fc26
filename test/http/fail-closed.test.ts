import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Portcullis } from "../../src/app.js";
import { Harness, waitUntilReady } from "../helpers/harness.js";
import { portcullisBehindPostgresProxy } from "../helpers/postgres-behind-proxy.js";
import { redisUrl } from "../helpers/storage.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";

/** PostgreSQL disappears mid-run: every request that needs it answers 503 (fail closed), then recovers. */
describe("with PostgreSQL unreachable", () => {
  let proxy: TcpProxy;
  let app: Portcullis;
  let close: () => Promise<void>;

  beforeAll(async () => {
    ({ app, proxy, close } = await portcullisBehindPostgresProxy({
      settings: { signIn: { deviceApproval: false } },
    }));
  });

  afterAll(async () => {
    await close();
  });

  const request = (method: "GET" | "POST", url: string, body?: unknown, token?: string) =>
    app.http.inject({
      method,
      url,
      ...(body ? { payload: body as object } : {}),
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });

  it("answers 503 unavailable, never lets a request through, and recovers without a restart", async () => {
    const signUp = await request("POST", "/v1/accounts", {
      email: "outage@example.test",
      username: "outage_user",
      password: "violet tractor mango 42",
      country: "DE",
    });
    expect(signUp.statusCode).toBe(202);
    await app.services.accounts.markEmailVerified(
      (await app.services.accounts.findByUsername("outage_user"))!.id,
      Date.now(),
    );
    const signIn = await request("POST", "/v1/sign-in", {
      identifier: "outage_user",
      password: "violet tractor mango 42",
      client: "app",
    });
    const token = signIn.json().token as string;
    expect((await request("GET", "/v1/session", undefined, token)).statusCode).toBe(200);

    proxy.cut();
    const during = [
      await request("GET", "/v1/session", undefined, token),
      await request("POST", "/v1/sign-in", {
        identifier: "outage_user",
        password: "violet tractor mango 42",
      }),
      await request("POST", "/v1/sign-in", { identifier: "outage_user", password: "a wrong guess here" }),
      await request("GET", "/readyz"),
    ];
    for (const response of during) {
      expect(response.statusCode).toBe(503);
      expect(response.json().error.code).toBe("unavailable");
      expect(response.body).not.toMatch(/ECONN|at \/|node_modules/);
    }
    // The gateway fails closed too, each exchange's request answered in that exchange's own shape: its
    // clients parse nothing else.
    const signed = (url: string, method: "GET" | "POST", headers: Record<string, string>, body = "") =>
      app.http.inject({ method, url, headers, ...(body ? { payload: body } : {}) });
    const kraken = await signed(
      "/0/private/Balance",
      "POST",
      {
        "content-type": "application/x-www-form-urlencoded",
        "api-key": "a-key-the-database-would-know",
        "api-sign": Buffer.alloc(64, 7).toString("base64"),
      },
      "nonce=1",
    );
    expect(kraken.statusCode).toBe(503);
    expect(kraken.json()).toEqual({ error: ["EService:Unavailable"], result: {} });
    const kucoin = await signed("/api/v1/accounts", "GET", {
      "kc-api-key": "a-key-the-database-would-know",
      "kc-api-sign": "c2lnbmF0dXJl",
      "kc-api-timestamp": String(Date.now()),
      "kc-api-passphrase": "cGFzc3BocmFzZQ==",
      "kc-api-key-version": "2",
    });
    expect(kucoin.statusCode).toBe(503);
    expect(kucoin.json()).toMatchObject({ code: "503000" });
    const futures = await signed("/derivatives/api/v3/accounts", "GET", {
      apikey: "a-key-the-database-would-know",
      authent: "c2lnbmF0dXJl",
      nonce: String(Date.now()),
    });
    expect(futures.statusCode).toBe(503);
    expect(futures.json()).toMatchObject({ result: "error", error: "unavailable" });
    for (const response of [kraken, kucoin, futures])
      expect(response.body).not.toMatch(/ECONN|at \/|node_modules|"code":"unavailable"/);
    expect((await request("GET", "/healthz")).statusCode).toBe(200);

    proxy.restore();
    expect((await request("GET", "/readyz")).statusCode).toBe(200);
    expect((await request("GET", "/v1/session", undefined, token)).statusCode).toBe(200);
    const audit = await app.services.audit.verify();
    expect(audit.ok).toBe(true);
  });
});

/** Redis holds the shared counters; when it is gone, nothing is let through uncounted. */
describe("with Redis unreachable", () => {
  it("answers 503 on sign-in and recovers by itself", async () => {
    const target = new URL(redisUrl);
    const proxy = new TcpProxy(target.hostname, Number(target.port || 6379));
    await proxy.start();
    const h = await Harness.create("sqlite", {
      env: { PORTCULLIS_REDIS_URL: `redis://127.0.0.1:${proxy.port}`, PORTCULLIS_BOT_CHECK: "off" },
    });
    try {
      await waitUntilReady(h.services.redis!);
      const user = await h.createVerifiedUser();
      const signIn = () =>
        h.request("POST", "/v1/sign-in", { body: { identifier: user.username, password: user.password } });
      expect((await signIn()).statusCode).toBe(200);
      proxy.cut();
      const during = await signIn();
      expect(during.statusCode).toBe(503);
      expect(during.json().error.code).toBe("unavailable");
      expect((await h.request("GET", "/readyz")).statusCode).toBe(503);
      proxy.restore();
      // Recovered when the server itself says so: its readiness check asks Redis.
      const deadline = Date.now() + 10_000;
      while ((await h.request("GET", "/readyz")).statusCode !== 200) {
        if (Date.now() > deadline) throw new Error("Redis did not come back");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect((await signIn()).statusCode).toBe(200);
    } finally {
      await h.close();
      await proxy.stop();
    }
  });
});
