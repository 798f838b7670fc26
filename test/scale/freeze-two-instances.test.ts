import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KrakenClient } from "../../src/client/kraken-client.js";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness, SERVICE_TOKEN } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";

const service = { authorization: `Bearer ${SERVICE_TOKEN}` };
const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };

/**
 * "Lock my account" on two instances sharing PostgreSQL and Redis: a freeze made through one is honoured
 * by the other on the very next request, for the sessions and API keys both have cached.
 */
describe("a freeze across two instances on PostgreSQL + Redis", () => {
  let a: Harness;
  let b: Harness;
  beforeAll(async () => {
    a = await Harness.create("postgres", { redis: true });
    b = await a.twin();
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it("refuses every session and key of the account on the other instance on the next request", async () => {
    const user = await a.createVerifiedUser();
    const enrolled = await enrollTotp(a, await a.sessionToken(user, "pro"), { password: user.password });
    const created = await withStepUp(
      b,
      enrolled.token,
      "POST",
      "/v1/api-keys",
      { totp: nextTotpCode(a, enrolled.secret) },
      { body: { name: "cluster", permissions: ["funds_query"], nonceWindow: 1000 } },
    );
    expect(created.response.statusCode, created.response.body).toBe(201);
    const key = created.response.json() as { key: string; secret: string };
    const token = created.token;
    // A second session, signed in on the other instance.
    const started = await b.signIn(user.username, user.password, { client: "app" });
    expect(started.json().state, started.body).toBe("second_factor");
    const done = await b.request("POST", `/v1/sign-in/${started.json().flowId}/totp`, {
      body: { code: nextTotpCode(a, enrolled.secret) },
    });
    expect(done.statusCode, done.body).toBe(200);
    const other = done.json().token as string;
    const client = new KrakenClient({ baseUrl: "http://unused.invalid", key: key.key, secret: key.secret });
    const check = (instance: Harness) =>
      instance
        .request("POST", "/v1/gateway/check", {
          headers: service,
          body: { ...client.sign("Balance"), ip: "198.51.100.9" },
        })
        .then((r) => r.json() as { allow: boolean; error?: string });

    // Both instances have the sessions and the key in memory.
    for (const instance of [a, b]) {
      for (const session of [token, other]) {
        expect((await instance.request("GET", "/v1/session", { token: session })).statusCode).toBe(200);
      }
      expect((await check(instance)).allow).toBe(true);
    }

    await a.deliverMail();
    const keyEmail = a.smtp
      .to(user.email)
      .filter((m) => m.text.includes("cluster"))
      .at(-1);
    const frozen = await a.request("POST", "/v1/account-lock", {
      body: { token: linkToken(keyEmail!, "/lock-account") },
    });
    expect(frozen.statusCode, frozen.body).toBe(200);

    for (const session of [token, other]) {
      expect((await b.request("GET", "/v1/session", { token: session })).statusCode).toBe(401);
      expect((await a.request("GET", "/v1/session", { token: session })).statusCode).toBe(401);
    }
    expect(await check(b)).toEqual({ allow: false, error: "EAuth:Account temporary disabled" });
    expect(await check(a)).toEqual({ allow: false, error: "EAuth:Account temporary disabled" });

    // Lifted through one instance: the other lets the key through again on the next request.
    const lifted = await b.request("DELETE", `/v1/admin/accounts/${await a.accountId(user)}/freeze`, {
      headers: operator,
    });
    expect(lifted.statusCode, lifted.body).toBe(200);
    expect((await check(a)).allow).toBe(true);
  });
});
