import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KrakenClient } from "../../src/client/kraken-client.js";
import { redactedLogPaths } from "../../src/http/server.js";
import { withStepUp } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness, METRICS_TOKEN, SERVICE_TOKEN, sessionCookie } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

describe.each(engines)("operations endpoints on %s (behaviour §14)", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  it("answers health, readiness and metrics", async () => {
    expect((await h.request("GET", "/healthz")).json()).toEqual({ status: "ok" });
    expect((await h.request("GET", "/readyz")).json()).toEqual({ status: "ready" });
    const user = await h.createVerifiedUser();
    await h.signIn(user.username, "wrong password, sorry");
    await h.signIn(user.username, user.password);
    const metrics = await h.request("GET", "/metrics", { token: METRICS_TOKEN });
    expect(metrics.headers["content-type"]).toMatch(/text\/plain/);
    expect(metrics.body).toMatch(/portcullis_auth_attempts_total\{factor="password",outcome="failure"\} 1/);
    expect(metrics.body).toMatch(/portcullis_auth_attempts_total\{factor="password",outcome="success"\} 1/);
    expect(metrics.body).toMatch(/portcullis_http_request_duration_seconds_bucket/);
  });

  it("keeps /metrics behind the metrics token: anonymous, session, operator and service tokens get 401", async () => {
    const user = await h.createVerifiedUser();
    const session = await h.sessionToken(user);
    for (const token of [undefined, session, ADMIN_TOKEN, SERVICE_TOKEN]) {
      const refused = await h.request("GET", "/metrics", { token });
      expect(refused.statusCode).toBe(401);
      expect(refused.body).not.toMatch(/portcullis_auth_attempts_total/);
    }
    expect((await h.request("GET", "/metrics", { token: METRICS_TOKEN })).statusCode).toBe(200);
  });

  it("gives each token only its own routes: the operator token cannot redeem or check, the service token cannot administer", async () => {
    const uuid = "7d444840-9dc0-11d1-b245-5ffdce74fad2";
    const asOperator = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
    const asService = { headers: { authorization: `Bearer ${SERVICE_TOKEN}` } };
    const check = { method: "POST", path: "/0/private/Balance", headers: {}, body: "", ip: "192.0.2.1" };
    expect((await h.request("POST", `/v1/actions/${uuid}/redeem`, asOperator)).statusCode).toBe(401);
    expect((await h.request("POST", "/v1/gateway/check", { ...asOperator, body: check })).statusCode).toBe(
      401,
    );
    expect((await h.request("POST", "/v1/admin/audit/verify", asService)).statusCode).toBe(401);
    expect(
      (await h.request("GET", "/v1/admin/accounts", { ...asService, query: { query: "x" } })).statusCode,
    ).toBe(401);
    // With the right token each gets past authentication.
    expect((await h.request("POST", `/v1/actions/${uuid}/redeem`, asService)).statusCode).toBe(404);
    expect((await h.request("POST", "/v1/gateway/check", { ...asService, body: check })).statusCode).not.toBe(
      401,
    );
    expect((await h.request("POST", "/v1/admin/audit/verify", asOperator)).statusCode).toBe(200);
  });

  it("publishes an OpenAPI document generated from the route schemas", async () => {
    const doc = (await h.request("GET", "/openapi.json")).json();
    expect(doc.openapi).toMatch(/^3\./);
    for (const path of [
      "/v1/accounts",
      "/v1/sign-in",
      "/v1/session",
      "/v1/sessions",
      "/v1/admin/audit/verify",
    ]) {
      expect(Object.keys(doc.paths)).toContain(path);
    }
    expect(doc.paths["/v1/sign-in"].post.requestBody.content["application/json"].schema.required).toEqual(
      expect.arrayContaining(["identifier", "password"]),
    );
  });

  it("keeps the admin API behind the operator token", async () => {
    expect((await h.request("POST", "/v1/admin/audit/verify")).statusCode).toBe(401);
    const wrong = await h.request("POST", "/v1/admin/audit/verify", {
      headers: { authorization: `Bearer ${ADMIN_TOKEN.replace(/.$/, "x")}` },
    });
    expect(wrong.statusCode).toBe(401);
    const user = await h.createVerifiedUser();
    const token = await h.sessionToken(user);
    expect((await h.request("POST", "/v1/admin/audit/verify", { token })).statusCode).toBe(401);
    const search = await h.request("GET", "/v1/admin/accounts", {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      query: { query: user.username },
    });
    expect(search.json().accounts).toEqual([
      expect.objectContaining({ username: user.username, emailVerified: true, restriction: null }),
    ]);
  });
});

describe("the admin API without an operator token", () => {
  it("is off", async () => {
    const h = await Harness.create("sqlite", { env: { PORTCULLIS_ADMIN_TOKEN: "" } });
    try {
      const response = await h.request("POST", "/v1/admin/audit/verify", {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      expect(response.statusCode).toBe(403);
    } finally {
      await h.close();
    }
  });
});

describe("logs", () => {
  it("never contain a password, session token, cookie or bot-check answer", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const logger = pino({ level: "trace", redact: { paths: redactedLogPaths, censor: "[redacted]" } }, sink);
    const h = await Harness.create("sqlite", { logger });
    try {
      const user = await h.createVerifiedUser();
      const botCheck = await h.botCheck();
      const signIn = await h.request("POST", "/v1/sign-in", {
        body: { identifier: user.username, password: user.password, botCheck, client: "app" },
      });
      const token = signIn.json().token as string;
      await h.request("GET", "/v1/session", { token });
      const web = await h.signIn(user.username, user.password);
      await h.request("GET", "/v1/sessions", { cookie: sessionCookie(web) });
      await h.request("POST", "/v1/sign-in", { body: { identifier: user.username, password: "bad {json" } });
      // An API key, and a Kraken-signed request with it (headers API-Key and API-Sign).
      const created = await withStepUp(
        h,
        await h.sessionToken(user, "pro"),
        "POST",
        "/v1/api-keys",
        { password: user.password },
        {
          body: {
            name: "logged",
            permissions: ["funds_query"],
            otp: { type: "static", password: "key-password-9" },
          },
        },
      );
      const apiKey = created.response.json() as { key: string; secret: string };
      const signed = new KrakenClient({
        baseUrl: "http://unused.invalid",
        key: apiKey.key,
        secret: apiKey.secret,
        otp: "key-password-9",
      }).sign("Balance");
      await h.request("POST", signed.path, { headers: signed.headers, body: signed.body });
      const requestLogs = lines.join("");
      expect(lines.length).toBeGreaterThan(5);
      // Request logs carry no headers or bodies; anything that does log them is censored.
      logger.info(
        { req: { headers: { authorization: `Bearer ${token}`, cookie: "portcullis_session=abc" } } },
        "probe",
      );
      expect(lines.at(-1)).toContain('"authorization":"[redacted]"');
      expect(lines.at(-1)).toContain('"cookie":"[redacted]"');
      for (const secret of [
        user.password,
        token,
        sessionCookie(web),
        botCheck.slice(0, 40),
        apiKey.key,
        apiKey.secret,
        signed.headers["API-Sign"],
        "key-password-9",
      ]) {
        expect(requestLogs).not.toContain(secret);
        expect(lines.join("")).not.toContain(secret);
      }
    } finally {
      await h.close();
    }
  });
});
