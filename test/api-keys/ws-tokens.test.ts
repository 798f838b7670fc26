import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness, SERVICE_TOKEN } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

const service = { authorization: `Bearer ${SERVICE_TOKEN}` };
const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };

describe.each(engines)("WebSocket tokens end with what the gateway refuses, on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  /** An account with a key holding the websocket permission, and a token issued to that key. */
  const owner = async (keyFields: Record<string, unknown> = {}) => {
    const user = await h.createVerifiedUser({ country: "GB" });
    const accountId = await h.accountId(user);
    const enrolled = await enrollTotp(h, await h.sessionToken(user, "pro"), { password: user.password });
    const { response } = await withStepUp(
      h,
      enrolled.token,
      "POST",
      "/v1/api-keys",
      { totp: nextTotpCode(h, enrolled.secret) },
      { body: { name: "socket", permissions: ["funds_query", "websocket"], ...keyFields } },
    );
    expect(response.statusCode, response.body).toBe(201);
    const keyId = (response.json() as { id: string }).id;
    const issue = async () => (await h.services.webSocketTokens.issue(keyId, accountId)).token;
    return { accountId, keyId, issue };
  };

  const redeem = (token: string) =>
    h.request("POST", "/v1/gateway/ws-token", { headers: service, body: { token } });

  it("redeems a token of a key the gateway serves, once, with its owner and permissions", async () => {
    const { accountId, keyId, issue } = await owner();
    const token = await issue();
    const first = await redeem(token);
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json()).toEqual({ accountId, keyId, permissions: ["funds_query", "websocket"] });
    expect((await redeem(token)).statusCode).toBe(404);
  });

  it("refuses a token whose key expired after it was issued", async () => {
    const { issue } = await owner({ validUntil: new Date(h.clock.now() + 5 * 60_000).toISOString() });
    const token = await issue();
    h.clock.advance(5 * 60_000 + 1);
    expect((await redeem(token)).statusCode).toBe(404);
  });

  it("refuses a token whose key was disabled after it was issued", async () => {
    const { keyId, issue } = await owner();
    const token = await issue();
    await h.db.updateTable("api_keys").set({ disabled_at: h.clock.now() }).where("id", "=", keyId).execute();
    expect((await redeem(token)).statusCode).toBe(404);
  });

  it("refuses a token whose key lost the websocket permission after it was issued", async () => {
    const { keyId, issue } = await owner();
    const token = await issue();
    await h.db
      .updateTable("api_keys")
      .set({ permissions: JSON.stringify(["funds_query"]) })
      .where("id", "=", keyId)
      .execute();
    expect((await redeem(token)).statusCode).toBe(404);
  });

  it("refuses a token whose account was frozen after it was issued, and keeps it spent once lifted", async () => {
    const { accountId, issue } = await owner();
    const token = await issue();
    await h.db
      .updateTable("accounts")
      .set({ frozen_at: h.clock.now() })
      .where("id", "=", accountId)
      .execute();
    expect((await redeem(token)).statusCode).toBe(404);
    await h.db.updateTable("accounts").set({ frozen_at: null }).where("id", "=", accountId).execute();
    expect((await redeem(token)).statusCode).toBe(404);
    expect((await redeem(await issue())).statusCode).toBe(200);
  });

  it("refuses a token whose account was restricted after it was issued", async () => {
    const { accountId, issue } = await owner();
    const token = await issue();
    await h.db
      .updateTable("accounts")
      .set({ disabled_at: h.clock.now() })
      .where("id", "=", accountId)
      .execute();
    expect((await redeem(token)).statusCode).toBe(404);
  });

  it("refuses tokens while the API is in maintenance, as the gateway refuses its requests", async () => {
    const { issue } = await owner();
    const token = await issue();
    const down = await h.request("PUT", "/v1/admin/subsystems/api", {
      headers: operator,
      body: { status: "maintenance", message: "Upgrading" },
    });
    expect(down.statusCode, down.body).toBe(200);
    try {
      expect((await redeem(token)).statusCode).toBe(404);
    } finally {
      const back = await h.request("PUT", "/v1/admin/subsystems/api", {
        headers: operator,
        body: { status: "operational" },
      });
      expect(back.statusCode, back.body).toBe(200);
    }
    expect((await redeem(await issue())).statusCode).toBe(200);
  });
});
