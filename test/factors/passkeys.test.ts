import { randomBytes } from "node:crypto";
import type { PublicKeyCredentialRequestOptionsJSON } from "@simplewebauthn/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness, newUser, PUBLIC_URL, sessionCookie } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { SoftwareAuthenticator } from "../helpers/software-authenticator.js";
import { engines } from "../helpers/storage.js";

let ipCounter = 0;
const freshIp = () => {
  ipCounter += 1;
  return `198.18.${100 + (Math.floor(ipCounter / 250) % 100)}.${(ipCounter % 250) + 1}`;
};

/** A passkey kept on this device, as a laptop's or phone's built-in authenticator registers it. */
const devicePasskey = () =>
  new SoftwareAuthenticator(PUBLIC_URL, { attachment: "platform", transports: ["internal"] });

const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };

/**
 * Passkeys (docs/behaviour.md §2 and §6): a passkey kept on one device beside a roaming factor, user
 * verification at every registration and assertion, and "sign in with a passkey" without a username,
 * which goes through the password sign-in's own rules.
 */
describe.each(engines)("passkeys on %s (behaviour §2, §6)", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  /** A user with an authenticator app (the roaming factor) and a bearer token to go on with. */
  const userWithTotp = async () => {
    const user = await h.createVerifiedUser();
    const enrolled = await enrollTotp(h, await h.sessionToken(user), { password: user.password });
    return { user, secret: enrolled.secret, token: enrolled.token, accountId: await h.accountId(user) };
  };

  type Owner = Awaited<ReturnType<typeof userWithTotp>>;

  /** Adds a WebAuthn credential after a step-up with the authenticator app; returns the answer. */
  const addCredential = async (
    owner: Owner,
    authenticator: SoftwareAuthenticator,
    kind?: "passkey" | "security_key",
  ) => {
    const step = await withStepUp(
      h,
      owner.token,
      "POST",
      `/v1/security/webauthn/options${kind ? `?kind=${kind}` : ""}`,
      { totp: nextTotpCode(h, owner.secret) },
    );
    owner.token = step.token;
    expect(step.response.statusCode, step.response.body).toBe(200);
    const options = step.response.json();
    const response = await h.request("POST", "/v1/security/webauthn", {
      token: owner.token,
      body: { response: authenticator.register(options), name: kind === "passkey" ? "Laptop" : "Key" },
    });
    return { options, response };
  };

  const userWithPasskey = async () => {
    const owner = await userWithTotp();
    const passkey = devicePasskey();
    const added = await addCredential(owner, passkey, "passkey");
    expect(added.response.statusCode, added.response.body).toBe(200);
    return { ...owner, passkey, factorId: added.response.json().factorId as string };
  };

  const passkeyOptions = async (ip = freshIp()) => {
    const response = await h.request("POST", "/v1/sign-in/passkey/options", { ip });
    expect(response.statusCode, response.body).toBe(200);
    return response.json() as PublicKeyCredentialRequestOptionsJSON;
  };

  const signInWithPasskey = (
    response: unknown,
    options: { client?: "web" | "app"; ip?: string; headers?: Record<string, string> } = {},
  ) =>
    h.request("POST", "/v1/sign-in/passkey", {
      body: { response, ...(options.client ? { client: options.client } : {}) },
      ip: options.ip ?? freshIp(),
      headers: options.headers,
    });

  const sessionsOf = async (accountId: string) =>
    (await h.db.selectFrom("sessions").select("id").where("account_id", "=", accountId).execute()).length;

  it("adds a passkey kept on one device only beside an authenticator app or a security key, and says what each factor is", async () => {
    // No factor yet: refused before any confirmation is asked, with a sentence and a stable code.
    const user = await h.createVerifiedUser();
    const bare = await h.request("POST", "/v1/security/webauthn/options?kind=passkey", {
      token: await h.sessionToken(user),
    });
    expect(bare.statusCode).toBe(409);
    expect(bare.json().error).toMatchObject({
      code: "roaming_factor_required",
      message: expect.stringMatching(/^Add an authenticator app or a security key you carry first/),
    });

    const owner = await userWithTotp();
    const passkey = devicePasskey();
    const added = await addCredential(owner, passkey, "passkey");
    // Asked for as a discoverable passkey of this device, with user verification.
    expect(added.options.authenticatorSelection).toEqual({
      authenticatorAttachment: "platform",
      residentKey: "required",
      requireResidentKey: true,
      userVerification: "required",
    });
    expect(added.response.statusCode, added.response.body).toBe(200);
    expect(added.response.json().recoveryCodes).toBeUndefined();

    const synced = new SoftwareAuthenticator(PUBLIC_URL, {
      attachment: "platform",
      transports: ["internal", "hybrid"],
      backedUp: true,
    });
    expect((await addCredential(owner, synced, "passkey")).response.statusCode).toBe(200);
    const key = new SoftwareAuthenticator(PUBLIC_URL);
    const keyAdded = await addCredential(owner, key, "security_key");
    expect(keyAdded.options.authenticatorSelection).toEqual({
      authenticatorAttachment: "cross-platform",
      residentKey: "discouraged",
      requireResidentKey: false,
      userVerification: "required",
    });
    expect(keyAdded.response.statusCode).toBe(200);

    const factors = (await h.request("GET", "/v1/security/factors", { token: owner.token })).json().factors;
    expect(
      factors.map((f: { kind: string; synced: boolean; roaming: boolean }) => [f.kind, f.synced, f.roaming]),
    ).toEqual([
      ["authenticator_app", false, true],
      ["passkey", false, false],
      ["passkey", true, false],
      ["security_key", false, true],
    ]);
    const stored = await h.db
      .selectFrom("second_factors")
      .select(["credential_id", "device_type", "backed_up", "attachment", "transports"])
      .where("account_id", "=", owner.accountId)
      .where("type", "=", "webauthn")
      .orderBy("created_at")
      .execute();
    expect(stored.map((row) => [row.device_type, row.backed_up, row.attachment, row.transports])).toEqual([
      ["singleDevice", 0, "platform", '["internal"]'],
      ["multiDevice", 1, "platform", '["internal","hybrid"]'],
      ["singleDevice", 0, "cross-platform", '["usb"]'],
    ]);
    await h.deliverMail();
    await h.smtp.waitFor(owner.user.email, /^Added passkey "Laptop"$/);

    // The authenticator app can go (the security key still roams); then the key cannot, beside passkeys only.
    const [app, , , keyFactor] = factors as { id: string }[];
    const withoutApp = await withStepUp(h, owner.token, "DELETE", `/v1/security/factors/${app!.id}`, {
      totp: nextTotpCode(h, owner.secret),
    });
    expect(withoutApp.response.statusCode, withoutApp.response.body).toBe(200);
    const lastRoaming = await withStepUp(
      h,
      withoutApp.token,
      "DELETE",
      `/v1/security/factors/${keyFactor!.id}`,
      async (actionId, t) => ({
        webauthn: key.assert(
          (await h.request("POST", `/v1/actions/${actionId}/webauthn/options`, { token: t })).json(),
        ),
      }),
    );
    expect(lastRoaming.response.statusCode).toBe(409);
    expect(lastRoaming.response.json().error.code).toBe("roaming_factor_required");
  });

  it("requires user verification: a key that shows only presence is refused at registration, at sign-in and at a step-up", async () => {
    const owner = await userWithTotp();
    const careless = new SoftwareAuthenticator(PUBLIC_URL, {
      attachment: "cross-platform",
      transports: ["usb"],
      unverified: true,
    });
    const refused = await addCredential(owner, careless, "security_key");
    expect(refused.response.statusCode).toBe(400);
    expect(refused.response.json().error.code).toBe("invalid_webauthn_response");

    const passkey = devicePasskey();
    expect((await addCredential(owner, passkey, "passkey")).response.statusCode).toBe(200);
    const presenceOnly = { flags: 0x01 };

    // The second step after the password.
    const started = await h.signIn(owner.user.username, owner.user.password, {
      client: "app",
      ip: freshIp(),
    });
    const flowId = started.json().flowId as string;
    const stepOptions = (await h.request("POST", `/v1/sign-in/${flowId}/webauthn/options`)).json();
    expect(stepOptions.userVerification).toBe("required");
    const noUv = await h.request("POST", `/v1/sign-in/${flowId}/webauthn`, {
      body: { response: passkey.assert(stepOptions, presenceOnly) },
    });
    expect(noUv.statusCode).toBe(401);
    const again = (await h.request("POST", `/v1/sign-in/${flowId}/webauthn/options`)).json();
    const verified = await h.request("POST", `/v1/sign-in/${flowId}/webauthn`, {
      body: { response: passkey.assert(again) },
    });
    expect(verified.statusCode, verified.body).toBe(200);

    // Sign in with a passkey.
    const options = await passkeyOptions();
    expect(options.userVerification).toBe("required");
    expect(options.allowCredentials).toEqual([]);
    const passkeyNoUv = await signInWithPasskey(passkey.assert(options, presenceOnly));
    expect(passkeyNoUv.statusCode).toBe(401);
    expect(passkeyNoUv.json().error.code).toBe("passkey_not_accepted");

    // A step-up (and, through the same confirmation, any transaction).
    const token = verified.json().token as string;
    const actionId = (await h.request("POST", "/v1/security/recovery-codes", { token })).json().error
      .actionId as string;
    const actionOptions = (
      await h.request("POST", `/v1/actions/${actionId}/webauthn/options`, { token })
    ).json();
    expect(actionOptions.userVerification).toBe("required");
    const stepUpNoUv = await h.request("POST", `/v1/actions/${actionId}/confirm`, {
      token,
      body: { webauthn: passkey.assert(actionOptions, presenceOnly) },
    });
    expect(stepUpNoUv.statusCode).toBe(401);
  });

  it("signs in with a passkey and no username, to a session like a password and second factor give, and audits it", async () => {
    const owner = await userWithPasskey();
    const failuresBefore = await h.services.guard.status(owner.accountId);
    const options = await passkeyOptions();
    const response = await signInWithPasskey(owner.passkey.assert(options), {
      headers: { "user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0" },
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json()).toMatchObject({
      state: "authenticated",
      session: { aal: 2, methods: ["passkey"], client: "web" },
      notices: [],
    });
    // A browser gets the cookie, not the token.
    expect(response.json().token).toBeUndefined();
    const session = await h.request("GET", "/v1/session", { cookie: sessionCookie(response) });
    expect(session.statusCode, session.body).toBe(200);
    expect(session.json().account.username).toBe(owner.user.username);
    expect(failuresBefore.consecutiveFailures).toBe(0);

    // An app gets its token and a device id, as from POST /v1/sign-in.
    const app = await signInWithPasskey(owner.passkey.assert(await passkeyOptions()), { client: "app" });
    expect(app.statusCode, app.body).toBe(200);
    expect(app.json()).toMatchObject({ token: expect.any(String), deviceId: expect.any(String) });

    const audit = await h.services.audit.list({
      accountId: owner.accountId,
      events: ["sign_in.passkey", "sign_in.completed"],
      limit: 10,
    });
    expect(audit.filter((e) => e.event === "sign_in.passkey" && e.outcome === "success")).toHaveLength(2);
    expect(
      audit.filter(
        (e) => e.event === "sign_in.completed" && JSON.stringify(e.details.methods) === '["passkey"]',
      ),
    ).toHaveLength(2);
    // A device this account had not used: the owner hears of the sign-in.
    await h.deliverMail();
    await h.smtp.waitFor(owner.user.email, /^New sign-in to your account$/);
    const activity = await h.request("GET", "/v1/activity", { token: app.json().token });
    expect(JSON.stringify(activity.json())).toContain("Passkey accepted for signing in");
  });

  it("spends a passkey challenge once: one assertion sent ten times in parallel makes exactly one session", async () => {
    const owner = await userWithPasskey();
    const before = await sessionsOf(owner.accountId);
    // A counter of 0, as synced passkeys report: nothing but the spent challenge stops the copies.
    const assertion = owner.passkey.assertWithCount(await passkeyOptions(), 0);
    const ip = freshIp();
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => signInWithPasskey(assertion, { client: "app", ip })),
    );
    expect(answers.filter((r) => r.statusCode === 200)).toHaveLength(1);
    expect(answers.filter((r) => r.statusCode === 401)).toHaveLength(9);
    for (const refused of answers.filter((r) => r.statusCode === 401)) {
      expect(refused.json().error.code).toBe("passkey_not_accepted");
    }
    expect(await sessionsOf(owner.accountId)).toBe(before + 1);
    // Sent again later, still refused.
    expect((await signInWithPasskey(assertion)).statusCode).toBe(401);
    expect(await sessionsOf(owner.accountId)).toBe(before + 1);
  });

  it("refuses a credential of no account, one whose user handle names another account, and one whose factor was removed", async () => {
    const owner = await userWithPasskey();
    const other = await userWithPasskey();
    const stranger = devicePasskey();
    stranger.userHandle = Buffer.from(owner.accountId).toString("base64url");
    const unknown = await signInWithPasskey(stranger.assert(await passkeyOptions()));
    expect(unknown.statusCode).toBe(401);
    expect(unknown.json().error.code).toBe("passkey_not_accepted");

    const crossed = await signInWithPasskey(
      owner.passkey.assert(await passkeyOptions(), {
        userHandle: Buffer.from(other.accountId).toString("base64url"),
      }),
    );
    expect(crossed.statusCode).toBe(401);
    const withoutHandle = await signInWithPasskey(
      owner.passkey.assert(await passkeyOptions(), { userHandle: null }),
    );
    expect(withoutHandle.statusCode).toBe(401);
    // The same passkey with its own handle works: the refusals were for the handle alone.
    expect((await signInWithPasskey(owner.passkey.assert(await passkeyOptions()))).statusCode).toBe(200);

    const removed = await withStepUp(h, owner.token, "DELETE", `/v1/security/factors/${owner.factorId}`, {
      totp: nextTotpCode(h, owner.secret),
    });
    expect(removed.response.statusCode, removed.response.body).toBe(200);
    const gone = await signInWithPasskey(owner.passkey.assert(await passkeyOptions()));
    expect(gone.statusCode).toBe(401);
    expect(gone.json().error.code).toBe("passkey_not_accepted");
  });

  it("keeps the password sign-in's rules: a restricted or disabled account is refused, a frozen one gets only a session that sees the freeze", async () => {
    const owner = await userWithPasskey();
    for (let i = 0; i < 5; i += 1) {
      const wrong = await h.signIn(owner.user.username, "not the password at all", { ip: freshIp() });
      expect(wrong.statusCode).toBe(401);
    }
    expect((await h.services.guard.status(owner.accountId)).restricted).toBe(true);
    const restricted = await signInWithPasskey(owner.passkey.assert(await passkeyOptions()));
    expect(restricted.statusCode).toBe(401);
    expect(restricted.json().error.code).toBe("passkey_not_accepted");
    const refusals = await h.services.audit.list({
      accountId: owner.accountId,
      events: ["sign_in.passkey"],
      limit: 5,
    });
    expect(refusals[0]).toMatchObject({ outcome: "refused", details: { reason: "account_restricted" } });

    // Once the restriction has run out, the passkey works and the counter starts again.
    h.clock.advance(16 * 60_000);
    const after = await signInWithPasskey(owner.passkey.assert(await passkeyOptions()));
    expect(after.statusCode, after.body).toBe(200);
    expect((await h.services.guard.status(owner.accountId)).consecutiveFailures).toBe(0);

    // Frozen ("lock my account"): as with a password, the session sees the freeze and can do nothing else.
    await h.services.accounts.freeze(owner.accountId, h.clock.now(), h.db);
    const frozen = await signInWithPasskey(owner.passkey.assert(await passkeyOptions()), { client: "app" });
    expect(frozen.statusCode, frozen.body).toBe(200);
    const token = frozen.json().token as string;
    const session = await h.request("GET", "/v1/session", { token });
    expect(session.json().account.frozen).toMatchObject({ since: expect.any(String) });
    const keys = await h.request("GET", "/v1/api-keys", { token });
    expect(keys.statusCode).toBe(423);
    expect(keys.json().error.code).toBe("account_frozen");
    const lifted = await h.request("DELETE", `/v1/admin/accounts/${owner.accountId}/freeze`, {
      headers: operator,
    });
    expect(lifted.statusCode, lifted.body).toBe(200);

    // Disabled by support: refused like a wrong passkey, and audited as a refused sign-in.
    const disabled = await h.request("PUT", `/v1/admin/accounts/${owner.accountId}/disabled`, {
      headers: operator,
      body: { disabled: true },
    });
    expect(disabled.statusCode, disabled.body).toBe(200);
    const refused = await signInWithPasskey(owner.passkey.assert(await passkeyOptions()));
    expect(refused.statusCode).toBe(401);
    expect(refused.json().error.code).toBe("passkey_not_accepted");
    const entries = await h.services.audit.list({
      accountId: owner.accountId,
      events: ["sign_in.refused"],
      limit: 1,
    });
    expect(entries[0]).toMatchObject({ outcome: "refused", details: { reason: "account_disabled" } });
  });
});

describe.each(engines)("passkey sign-in and device approval on %s (behaviour §2 step 3)", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine, { settings: { signIn: { deviceApproval: true } } });
  });
  afterAll(async () => {
    await h.close();
  });

  const deviceCookie = (device: string) => ({ cookie: `portcullis_device=${device}` });

  it("holds a passkey sign-in from a new device for the emailed approval, and lets a known device in", async () => {
    // The browser that signs up and verifies is known; an app naming the same device id is that device.
    const known = randomBytes(32).toString("base64url");
    const user = newUser();
    const signedUp = await h.request("POST", "/v1/accounts", {
      body: { ...user, botCheck: await h.botCheck() },
      headers: deviceCookie(known),
      ip: "198.18.200.1",
    });
    expect(signedUp.statusCode).toBe(202);
    await h.deliverMail();
    const verifyEmail = await h.smtp.waitFor(user.email, /Verify your email/);
    await h.request("POST", "/v1/accounts/verify-email", {
      body: { token: linkToken(verifyEmail, "/verify-email") },
      headers: deviceCookie(known),
    });
    const signedIn = await h.request("POST", "/v1/sign-in", {
      body: {
        identifier: user.username,
        password: user.password,
        botCheck: await h.botCheck(),
        client: "app",
        deviceId: known,
      },
    });
    expect(signedIn.json().state, signedIn.body).toBe("authenticated");

    // A roaming factor, then a passkey on this device (confirmed with the authenticator app).
    const enrolled = await enrollTotp(h, signedIn.json().token, { password: user.password });
    const passkey = devicePasskey();
    const step = await withStepUp(h, enrolled.token, "POST", "/v1/security/webauthn/options?kind=passkey", {
      totp: nextTotpCode(h, enrolled.secret),
    });
    const added = await h.request("POST", "/v1/security/webauthn", {
      token: step.token,
      body: { response: passkey.register(step.response.json()), name: "Laptop" },
    });
    expect(added.statusCode, added.body).toBe(200);

    const options = async () => (await h.request("POST", "/v1/sign-in/passkey/options")).json();
    const stranger = randomBytes(32).toString("base64url");
    const held = await h.request("POST", "/v1/sign-in/passkey", {
      body: { response: passkey.assert(await options()) },
      headers: deviceCookie(stranger),
    });
    expect(held.statusCode, held.body).toBe(200);
    expect(held.json().state).toBe("device_approval");
    expect(String(held.headers["set-cookie"] ?? "")).not.toContain("portcullis_session");
    await h.deliverMail();
    await h.smtp.waitFor(user.email, /Approve sign-in/);
    expect(h.smtp.to(user.email).filter((m) => /Approve sign-in/.test(m.subject))).toHaveLength(1);

    const welcome = await h.request("POST", "/v1/sign-in/passkey", {
      body: { response: passkey.assert(await options()) },
      headers: deviceCookie(known),
    });
    expect(welcome.statusCode, welcome.body).toBe(200);
    expect(welcome.json()).toMatchObject({ state: "authenticated", session: { methods: ["passkey"] } });
  });
});
