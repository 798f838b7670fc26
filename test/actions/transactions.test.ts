import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness, PUBLIC_URL, SERVICE_TOKEN } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { SoftwareAuthenticator } from "../helpers/software-authenticator.js";
import { engines } from "../helpers/storage.js";

const run = promisify(execFile);
const HOUR = 3_600_000;
const service = { authorization: `Bearer ${SERVICE_TOKEN}` };
const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };
const ADDRESS = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh";

describe.each(engines)("funding and trading actions on %s (behaviour §8)", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  /** Time passes while the owner keeps using the session (app sessions end after 24 idle hours). */
  const pass = async (ms: number, token: string) => {
    for (let left = ms; left > 0; left -= 12 * HOUR) {
      h.clock.advance(Math.min(left, 12 * HOUR));
      expect((await h.request("GET", "/v1/session", { token })).statusCode).toBe(200);
    }
  };

  const nextCode = (secret: Uint8Array) => nextTotpCode(h, secret);

  /** A trader with an authenticator app and a BTC address that is confirmed and past its hold. */
  const trader = async () => {
    const user = await h.createVerifiedUser();
    const enrolled = await enrollTotp(h, await h.sessionToken(user), { password: user.password });
    let token = enrolled.token;
    const added = await withStepUp(
      h,
      token,
      "POST",
      "/v1/withdrawal-addresses",
      { totp: nextCode(enrolled.secret) },
      { body: { asset: "BTC", address: ADDRESS, label: "Cold wallet" } },
    );
    token = added.token;
    expect(added.response.statusCode, added.response.body).toBe(202);
    expect(added.response.json().state).toBe("pending_confirmation");
    await h.deliverMail();
    const email = await h.smtp.waitFor(user.email, /Confirm a new withdrawal address/);
    const confirmed = await h.request("POST", "/v1/withdrawal-addresses/confirm", {
      body: { token: linkToken(email, "/confirm-address") },
    });
    expect(confirmed.json()).toMatchObject({ state: "on_hold" });
    await pass(48 * HOUR, token);
    const addressId = added.response.json().id as string;
    return { user, secret: enrolled.secret, token, addressId };
  };

  const withdraw = (token: string, addressId: string, amount = "0.5") =>
    h.request("POST", "/v1/actions", {
      token,
      body: { type: "withdraw", params: { asset: "BTC", amount, addressId } },
    });
  const confirm = (token: string, id: string, body: Record<string, unknown>) =>
    h.request("POST", `/v1/actions/${id}/confirm`, { token, body });
  const redeem = (id: string) => h.request("POST", `/v1/actions/${id}/redeem`, { headers: service });

  it("asks a withdrawal for exactly the proofs the owner's settings require", async () => {
    const { secret, token: start, addressId } = await trader();
    let token = start;
    const created = await withdraw(token, addressId);
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json()).toMatchObject({
      type: "withdraw",
      // The owner confirms the whole destination, not an id: the address and its label are signed too.
      params: { asset: "BTC", amount: "0.5", addressId, address: ADDRESS, label: "Cold wallet" },
      summary: "Withdraw 0.5 BTC to bc1qxy2k…hx0wlh (Cold wallet)",
      state: "pending",
      required: ["second_factor"],
      digest: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    const id = created.json().id;
    expect((await confirm(token, id, {})).statusCode).toBe(400);
    expect((await confirm(token, id, { totp: "000000" })).json().error.code).toBe("invalid_code");
    const confirmed = await confirm(token, id, { totp: nextCode(secret) });
    expect(confirmed.statusCode, confirmed.body).toBe(200);
    expect(confirmed.json()).toMatchObject({
      state: "confirmed",
      grant: expect.stringMatching(/^[\w-]+\.[\w-]+\.[\w-]+$/),
    });
    // A transaction is no privilege change: the session token stays.
    expect(confirmed.json().token).toBeUndefined();

    // With a trading passcode set, a withdrawal needs it as well.
    const set = await withStepUp(
      h,
      token,
      "PUT",
      "/v1/security/trading-passcode",
      { totp: nextCode(secret) },
      {
        body: { passcode: "482916" },
      },
    );
    expect(set.response.statusCode, set.response.body).toBe(200);
    token = set.token;
    const second = (await withdraw(token, addressId, "0.25")).json();
    expect(second.required).toEqual(["second_factor", "trading_passcode"]);
    expect((await confirm(token, second.id, { totp: nextCode(secret) })).statusCode).toBe(400);
    const wrongPasscode = await confirm(token, second.id, {
      totp: nextCode(secret),
      tradingPasscode: "111111",
    });
    expect(wrongPasscode.json().error.code).toBe("invalid_passcode");
    const both = await confirm(token, second.id, { totp: nextCode(secret), tradingPasscode: "482916" });
    expect(both.json().state).toBe("confirmed");

    // Orders need the passcode; deposit addresses nothing, until funding 2FA is turned on.
    const order = await h.request("POST", "/v1/actions", {
      token,
      body: {
        type: "place_order",
        params: { pair: "BTC/USD", side: "buy", type: "limit", volume: "0.1", price: "50000" },
      },
    });
    expect(order.json()).toMatchObject({
      summary: "Buy 0.1 BTC at 50000 USD (limit)",
      required: ["trading_passcode"],
    });
    const deposit = await h.request("POST", "/v1/actions", {
      token,
      body: { type: "new_deposit_address", params: { asset: "ETH" } },
    });
    expect(deposit.json()).toMatchObject({ state: "confirmed", required: [], grant: expect.any(String) });
    const requirements = await withStepUp(
      h,
      token,
      "PUT",
      "/v1/security/requirements",
      { totp: nextCode(secret) },
      {
        body: { funding: true, trading: true },
      },
    );
    token = requirements.token;
    const guarded = await h.request("POST", "/v1/actions", {
      token,
      body: { type: "new_deposit_address", params: { asset: "ETH" } },
    });
    expect(guarded.json()).toMatchObject({ state: "pending", required: ["second_factor"] });
    const cancel = await h.request("POST", "/v1/actions", {
      token,
      body: { type: "cancel_order", params: { orderId: "O7ZAVX" } },
    });
    expect(cancel.json().required).toEqual(["second_factor"]);
  });

  it("binds the grant to the parameters: another amount is another action, redeemed once with its own", async () => {
    const { secret, token, addressId } = await trader();
    const half = (await withdraw(token, addressId, "0.5")).json();
    const more = (await withdraw(token, addressId, "0.6")).json();
    expect(half.digest).not.toBe(more.digest);
    const { grant } = (await confirm(token, half.id, { totp: nextCode(secret) })).json();
    const payload = JSON.parse(Buffer.from(grant.split(".")[1], "base64url").toString());
    expect(payload).toMatchObject({ act: { id: half.id, type: "withdraw", digest: half.digest } });
    expect(payload.exp - payload.iat).toBe(60);
    // The unconfirmed one cannot be redeemed; the confirmed one gives back exactly what was confirmed.
    expect((await redeem(more.id)).statusCode).toBe(409);
    const redeemed = await redeem(half.id);
    expect(redeemed.json()).toMatchObject({
      type: "withdraw",
      params: { asset: "BTC", amount: "0.5", addressId },
    });
  });

  it("redeems a grant exactly once under 50 parallel redeems, and not after 60 seconds", async () => {
    const { secret, token, addressId } = await trader();
    const action = (await withdraw(token, addressId)).json();
    await confirm(token, action.id, { totp: nextCode(secret) });
    const results = await Promise.all(Array.from({ length: 50 }, () => redeem(action.id)));
    expect(results.filter((r) => r.statusCode === 200)).toHaveLength(1);
    expect(results.filter((r) => r.statusCode === 409)).toHaveLength(49);

    const late = (await withdraw(token, addressId, "0.1")).json();
    await confirm(token, late.id, { totp: nextCode(secret) });
    h.clock.advance(60_000);
    const expired = await redeem(late.id);
    expect(expired.statusCode).toBe(410);
    expect(expired.json().error.code).toBe("expired");
    // Redeeming is for the venue's backend only.
    expect((await h.request("POST", `/v1/actions/${late.id}/redeem`, { token })).statusCode).toBe(401);
  });

  it("issues grants that verify against the JWKS in another process with jose alone", async () => {
    const { secret, token, addressId } = await trader();
    const action = (await withdraw(token, addressId)).json();
    const { grant } = (await confirm(token, action.id, { totp: nextCode(secret) })).json();
    const jwks = (await h.request("GET", "/.well-known/jwks.json")).json();
    expect(jwks.keys[0]).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig" });
    const script = `
      import { compactVerify, createLocalJWKSet } from "jose";
      const { payload, protectedHeader } = await compactVerify(process.env.GRANT, createLocalJWKSet(JSON.parse(process.env.JWKS)));
      console.log(JSON.stringify({ alg: protectedHeader.alg, ...JSON.parse(new TextDecoder().decode(payload)) }));`;
    const verify = (grantText: string) =>
      run(process.execPath, ["--input-type=module", "-e", script], {
        env: { ...process.env, GRANT: grantText, JWKS: JSON.stringify(jwks) },
      });
    const { stdout } = await verify(grant);
    expect(JSON.parse(stdout)).toMatchObject({
      alg: "EdDSA",
      sub: expect.any(String),
      act: { id: action.id, digest: action.digest },
    });
    const [header, body, signature] = grant.split(".");
    const forged = Buffer.from(
      JSON.stringify({
        ...JSON.parse(Buffer.from(body, "base64url").toString()),
        act: { id: action.id, type: "withdraw", digest: "0".repeat(64) },
      }),
    ).toString("base64url");
    await expect(verify(`${header}.${forged}.${signature}`)).rejects.toThrow();
  });

  it("does not let a security-key assertion made for one withdrawal confirm another", async () => {
    const user = await h.createVerifiedUser();
    const key = new SoftwareAuthenticator(PUBLIC_URL);
    const options = await withStepUp(h, await h.sessionToken(user), "POST", "/v1/security/webauthn/options", {
      password: user.password,
    });
    let token = options.token;
    await h.request("POST", "/v1/security/webauthn", {
      token,
      body: { response: key.register(options.response.json()), name: "Key" },
    });
    const assertWith = async (actionId: string, t: string) => ({
      webauthn: key.assert(
        (await h.request("POST", `/v1/actions/${actionId}/webauthn/options`, { token: t })).json(),
      ),
    });
    const added = await withStepUp(h, token, "POST", "/v1/withdrawal-addresses", assertWith, {
      body: { asset: "BTC", address: ADDRESS, label: "Ledger" },
    });
    token = added.token;
    await h.deliverMail();
    const email = h.smtp.to(user.email).find((m) => /Confirm a new withdrawal address/.test(m.subject))!;
    await h.request("POST", "/v1/withdrawal-addresses/confirm", {
      body: { token: linkToken(email, "/confirm-address") },
    });
    await pass(48 * HOUR, token);
    const addressId = added.response.json().id;
    const small = (await withdraw(token, addressId, "0.01")).json();
    const large = (await withdraw(token, addressId, "10")).json();
    const signedForSmall = await assertWith(small.id, token);
    const swapped = await confirm(token, large.id, signedForSmall);
    expect(swapped.statusCode).toBe(401);
    expect((await confirm(token, small.id, await assertWith(small.id, token))).json().state).toBe(
      "confirmed",
    );
    // Five failed confirmations cancel the large one.
    for (let i = 0; i < 4; i += 1) await confirm(token, large.id, { totp: "000000" });
    expect((await h.request("GET", `/v1/actions/${large.id}`, { token })).json().state).toBe("cancelled");
  });

  it("holds a new address until 48 hours after its confirmation", async () => {
    const user = await h.createVerifiedUser();
    const { secret, token: start } = await enrollTotp(h, await h.sessionToken(user), {
      password: user.password,
    });
    const added = await withStepUp(
      h,
      start,
      "POST",
      "/v1/withdrawal-addresses",
      { totp: nextCode(secret) },
      {
        body: { asset: "BTC", address: ADDRESS, label: "New" },
      },
    );
    const token = added.token;
    const addressId = added.response.json().id;
    expect((await withdraw(token, addressId)).statusCode).toBe(409);
    await h.deliverMail();
    const email = h.smtp.to(user.email).find((m) => /Confirm a new withdrawal address/.test(m.subject))!;
    await h.request("POST", "/v1/withdrawal-addresses/confirm", {
      body: { token: linkToken(email, "/confirm-address") },
    });
    const until = new Date(h.clock.now() + 48 * HOUR).toISOString();
    await pass(48 * HOUR - 1000, token);
    const early = await withdraw(token, addressId);
    expect(early.statusCode).toBe(423);
    expect(early.json().error).toMatchObject({ code: "on_hold", until });
    // A refusal by a hold is in the audit log, like any refused access (ASVS 16.3.2).
    const refused = await h.services.audit.list({ events: ["access.refused"], limit: 5 });
    expect(refused[0]).toMatchObject({ outcome: "refused", details: { code: "on_hold", method: "POST" } });
    h.clock.advance(1000);
    expect((await withdraw(token, addressId)).statusCode).toBe(201);
    const listed = (await h.request("GET", "/v1/withdrawal-addresses", { token })).json().addresses;
    expect(listed).toEqual([expect.objectContaining({ id: addressId, state: "active" })]);
  });

  it("refuses withdrawals in a funding.crypto maintenance window with its end, and at redeem if it began after", async () => {
    const { secret, token, addressId } = await trader();
    const confirmedEarlier = (await withdraw(token, addressId, "0.2")).json();
    await confirm(token, confirmedEarlier.id, { totp: nextCode(secret) });
    const endsAt = new Date(h.clock.now() + 2 * HOUR).toISOString();
    const window = await h.request("POST", "/v1/admin/maintenance", {
      headers: operator,
      body: {
        subsystem: "funding.crypto",
        state: "maintenance",
        startsAt: new Date(h.clock.now()).toISOString(),
        endsAt,
        message: "Node upgrade",
      },
    });
    expect(window.statusCode).toBe(201);
    const refused = await withdraw(token, addressId);
    expect(refused.statusCode).toBe(403);
    expect(refused.json().error).toMatchObject({
      code: "not_eligible",
      reasons: [
        expect.objectContaining({
          code: "subsystem_maintenance",
          subsystem: "funding.crypto",
          until: endsAt,
        }),
      ],
    });
    // The final check at redeem sees the window too.
    expect((await redeem(confirmedEarlier.id)).statusCode).toBe(403);
    await h.request("DELETE", `/v1/admin/maintenance/${window.json().id}`, { headers: operator });
    expect((await withdraw(token, addressId)).statusCode).toBe(201);
  });

  it("holds withdrawals 48 hours after a second factor is removed, and 24 hours after a passcode change", async () => {
    const { secret, token: start, addressId } = await trader();
    let token = start;
    const key = new SoftwareAuthenticator(PUBLIC_URL);
    const options = await withStepUp(h, token, "POST", "/v1/security/webauthn/options", {
      totp: nextCode(secret),
    });
    token = options.token;
    await h.request("POST", "/v1/security/webauthn", {
      token,
      body: { response: key.register(options.response.json()), name: "Spare" },
    });
    const keyId = (await h.request("GET", "/v1/security/factors", { token }))
      .json()
      .factors.find((f: { type: string }) => f.type === "webauthn").id;
    const removed = await withStepUp(h, token, "DELETE", `/v1/security/factors/${keyId}`, {
      totp: nextCode(secret),
    });
    token = removed.token;
    const held = await withdraw(token, addressId);
    expect(held.statusCode).toBe(423);
    expect(held.json().error.reasons[0]).toMatchObject({
      code: "security_hold",
      hold: "second_factor_removed",
    });
    const summary = (await h.request("GET", "/v1/session", { token })).json().eligibility;
    expect(summary.refused["withdraw.crypto"]).toEqual(["security_hold"]);
    await pass(48 * HOUR, token);
    expect((await withdraw(token, addressId)).statusCode).toBe(201);

    for (const passcode of ["482916", "570213"]) {
      const set = await withStepUp(
        h,
        token,
        "PUT",
        "/v1/security/trading-passcode",
        { totp: nextCode(secret) },
        { body: { passcode } },
      );
      token = set.token;
    }
    const afterChange = await withdraw(token, addressId);
    expect(afterChange.statusCode).toBe(423);
    expect(afterChange.json().error.reasons[0]).toMatchObject({ hold: "trading_passcode_changed" });
  });
});
