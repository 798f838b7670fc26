import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KrakenClient } from "../../src/client/kraken-client.js";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

const service = { authorization: `Bearer ${ADMIN_TOKEN}` };

describe.each(engines)("the gateway's in-memory keys and accounts on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  let ipCounter = 0;
  const check = async (client: KrakenClient) => {
    const signed = client.sign("Balance");
    const response = await h.request("POST", "/v1/gateway/check", {
      headers: service,
      body: { path: signed.path, headers: signed.headers, body: signed.body, ip: `198.18.7.${++ipCounter}` },
    });
    return response.json() as { allow: boolean; error?: string };
  };

  const keyOwner = async () => {
    const user = await h.createVerifiedUser({ country: "GB" });
    const enrolled = await enrollTotp(h, await h.sessionToken(user, "pro"), { password: user.password });
    const created = await withStepUp(
      h,
      enrolled.token,
      "POST",
      "/v1/api-keys",
      { totp: nextTotpCode(h, enrolled.secret) },
      { body: { name: "cached", permissions: ["funds_query"] } },
    );
    expect(created.response.statusCode, created.response.body).toBe(201);
    const key = created.response.json() as { id: string; key: string; secret: string };
    const client = new KrakenClient({ baseUrl: "http://unused.invalid", key: key.key, secret: key.secret });
    return { key, client, accountId: await h.accountId(user) };
  };

  it("sees a change made behind its back (another process, the CLI) on the very next request", async () => {
    const { key, client } = await keyOwner();
    expect((await check(client)).allow).toBe(true);
    // As another process would: straight to the database, nothing in this process is told.
    await h.app.services.storage.db
      .updateTable("api_keys")
      .set({ permissions: JSON.stringify(["trades_modify"]) })
      .where("id", "=", key.id)
      .execute();
    expect(await check(client)).toEqual({ allow: false, error: "EGeneral:Permission denied" });
    await h.app.services.storage.db
      .updateTable("api_keys")
      .set({ disabled_at: Date.now() })
      .where("id", "=", key.id)
      .execute();
    expect(await check(client)).toEqual({ allow: false, error: "EAPI:Invalid key" });
  });

  it("refuses a disabled account's keys on the very next request", async () => {
    const { client, accountId } = await keyOwner();
    expect((await check(client)).allow).toBe(true);
    const disabled = await h.request("PUT", `/v1/admin/accounts/${accountId}/disabled`, {
      headers: service,
      body: { disabled: true },
    });
    expect(disabled.statusCode, disabled.body).toBe(200);
    expect(await check(client)).toEqual({ allow: false, error: "EAuth:Account temporary disabled" });
  });
});
