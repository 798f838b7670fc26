import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/app.js";
import { makeAddressesReady } from "../../src/cli/dev.js";
import { systemContext } from "../../src/support/request-context.js";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { Harness, PUBLIC_URL } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

const ADDRESS = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh";

describe("development logs", () => {
  it("are one readable line per entry when pretty, with credentials still censored", () => {
    let written = "";
    const destination = new Writable({
      write(chunk, _encoding, done) {
        written += String(chunk);
        done();
      },
    });
    const logger = createLogger("info", { pretty: true, destination });
    logger.info({ req: { headers: { authorization: "Bearer secret-token" } } }, "Portcullis is up");
    expect(written).toMatch(/INFO.*Portcullis is up/);
    expect(() => JSON.parse(written)).toThrow();
    expect(written).not.toContain("secret-token");
  });
});

describe.each(engines)("the first hour on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  it("answers a non-browser client at / in plain text, pointing to the portal and the OpenAPI document", async () => {
    const answer = await h.request("GET", "/", { headers: { accept: "*/*" } });
    expect(answer.statusCode).toBe(200);
    expect(answer.headers["content-type"]).toMatch(/^text\/plain/);
    expect(answer.body).toContain(`${PUBLIC_URL}/openapi.json`);
    expect(answer.body).toContain("web portal");
    expect(answer.body).toContain("/dev/mailbox");
    // A browser still gets the portal's page (or the page saying it is not built yet).
    const browser = await h.request("GET", "/", { headers: { accept: "text/html" } });
    expect(browser.headers["content-type"]).toMatch(/^text\/html/);
  });

  it("makes a new withdrawal address usable at once in development, and audits it", async () => {
    const user = await h.createVerifiedUser();
    const enrolled = await enrollTotp(h, await h.sessionToken(user), { password: user.password });
    const added = await withStepUp(
      h,
      enrolled.token,
      "POST",
      "/v1/withdrawal-addresses",
      { totp: nextTotpCode(h, enrolled.secret) },
      { body: { asset: "BTC", address: ADDRESS, label: "Cold wallet" } },
    );
    expect(added.response.statusCode, added.response.body).toBe(202);
    const addressId = added.response.json().id as string;
    const withdraw = () =>
      h.request("POST", "/v1/actions", {
        token: added.token,
        body: { type: "withdraw", params: { asset: "BTC", amount: "0.1", addressId } },
      });
    expect((await withdraw()).statusCode).not.toBe(201);

    const account = (await h.services.accounts.findByUsername(user.username))!;
    const changed = await makeAddressesReady(h.services, account.id, systemContext);
    expect(changed.map((row) => row.id)).toEqual([addressId]);
    const listed = (await h.request("GET", "/v1/withdrawal-addresses", { token: added.token })).json();
    expect(listed.addresses[0]).toMatchObject({ id: addressId, state: "active", address: ADDRESS });
    const action = await withdraw();
    expect(action.statusCode, action.body).toBe(201);
    expect(action.json().summary).toContain("Withdraw 0.1 BTC");
    // Nothing is left to make ready, and the change is in the audit log.
    expect(await makeAddressesReady(h.services, account.id, systemContext)).toEqual([]);
    const audit = await h.services.audit.list({ accountId: account.id, limit: 20 });
    expect(audit.map((entry) => entry.event)).toContain("withdrawal_address.made_ready");
  });

  it("refuses to skip an address's hold outside development", async () => {
    const production = { ...h.services, config: { ...h.services.config, env: "production" as const } };
    await expect(makeAddressesReady(production, "any-account", systemContext)).rejects.toMatchObject({
      status: 403,
    });
  });
});
