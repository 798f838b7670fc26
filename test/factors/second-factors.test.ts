import { generateSync } from "otplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { totpCode } from "../../src/factors/totp.js";
import { enrollTotp, withStepUp } from "../helpers/factors.js";
import { Harness, PUBLIC_URL, type TestUser } from "../helpers/harness.js";
import { SoftwareAuthenticator } from "../helpers/software-authenticator.js";
import { engines } from "../helpers/storage.js";

let ipCounter = 0;
const freshIp = () => {
  ipCounter += 1;
  return `198.18.${Math.floor(ipCounter / 250) % 250}.${(ipCounter % 250) + 1}`;
};

describe.each(engines)("second factors on %s (behaviour §6)", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  /** Password step of a sign-in; expects the second-factor state. */
  const startSignIn = async (user: TestUser, client: "web" | "app" = "app") => {
    const response = await h.signIn(user.username, user.password, { client, ip: freshIp() });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json().state).toBe("second_factor");
    return response.json() as { flowId: string; factors: string[] };
  };

  const userWithTotp = async () => {
    const user = await h.createVerifiedUser();
    const enrolled = await enrollTotp(h, await h.sessionToken(user), { password: user.password });
    return { user, ...enrolled };
  };

  it("enrolls an authenticator app after a password step-up, and then sign-in needs its code", async () => {
    const user = await h.createVerifiedUser();
    const token = await h.sessionToken(user);
    const { secret, recoveryCodes, token: renewed } = await enrollTotp(h, token, { password: user.password });
    expect(secret.length).toBe(20);
    expect(recoveryCodes).toHaveLength(10);
    for (const code of recoveryCodes!) expect(code).toMatch(/^[0-9A-Z]{4}(-[0-9A-Z]{4}){3}$/);
    // The step-up renewed the session: the old token is dead, the new one works.
    expect((await h.request("GET", "/v1/session", { token })).statusCode).toBe(401);
    expect((await h.request("GET", "/v1/session", { token: renewed })).statusCode).toBe(200);
    await h.deliverMail();
    await h.smtp.waitFor(user.email, /^Added authenticator app$/);

    const flow = await startSignIn(user);
    expect(flow.factors).toEqual(["totp", "recovery_code"]);
    // Half a minute later (the enrollment spent this step), a code from an independent implementation.
    h.clock.advance(30_000);
    const code = generateSync({ secret: toBase32(secret), epoch: h.clock.now() / 1000 });
    const done = await h.request("POST", `/v1/sign-in/${flow.flowId}/totp`, { body: { code } });
    expect(done.statusCode, done.body).toBe(200);
    expect(done.json()).toMatchObject({
      state: "authenticated",
      session: { aal: 2, methods: ["password", "totp"] },
    });
    expect(done.json().notices).toEqual([]);
  });

  it("accepts a code once, even under 50 parallel submissions", async () => {
    const { user, secret } = await userWithTotp();
    const flows = [];
    for (let i = 0; i < 50; i += 1) flows.push(await startSignIn(user));
    const code = totpCode(secret, h.clock.now() + 30_000);
    const responses = await Promise.all(
      flows.map((flow) => h.request("POST", `/v1/sign-in/${flow.flowId}/totp`, { body: { code } })),
    );
    expect(responses.filter((r) => r.statusCode === 200)).toHaveLength(1);
    expect(responses.filter((r) => r.statusCode === 401)).toHaveLength(49);
    // 49 failed second steps, one email about them: a password holder cannot flood the owner's mailbox.
    await h.deliverMail();
    expect(h.smtp.to(user.email).filter((m) => /failed at the second step/.test(m.subject))).toHaveLength(1);
  });

  it("accepts the previous and the next step, and hints at a clock two steps behind but never at a future code", async () => {
    for (const offset of [-30_000, 30_000]) {
      const { user, secret } = await userWithTotp();
      h.clock.advance(120_000); // past the step the enrollment spent
      const flow = await startSignIn(user);
      const response = await h.request("POST", `/v1/sign-in/${flow.flowId}/totp`, {
        body: { code: totpCode(secret, h.clock.now() + offset) },
      });
      expect(response.statusCode, `offset ${offset}`).toBe(200);
    }
    const { user, secret } = await userWithTotp();
    h.clock.advance(120_000);
    const flow = await startSignIn(user);
    const behind = await h.request("POST", `/v1/sign-in/${flow.flowId}/totp`, {
      body: { code: totpCode(secret, h.clock.now() - 60_000) },
    });
    expect(behind.statusCode).toBe(401);
    expect(behind.json().error).toMatchObject({
      code: "invalid_code",
      hint: expect.stringMatching(/clock appears to be 60 seconds behind/),
    });
    // A guess that happens to be the code of a step two minutes ahead is answered exactly like a wrong
    // code: nothing singles it out to be sent again when its time comes.
    const futureCode = totpCode(secret, h.clock.now() + 120_000);
    const ahead = await h.request("POST", `/v1/sign-in/${flow.flowId}/totp`, { body: { code: futureCode } });
    let wrongCode = "000000";
    while ([-1, 0, 1, 2, 3, 4].some((s) => totpCode(secret, h.clock.now() + s * 30_000) === wrongCode)) {
      wrongCode = String(Number(wrongCode) + 1).padStart(6, "0");
    }
    const wrong = await h.request("POST", `/v1/sign-in/${flow.flowId}/totp`, { body: { code: wrongCode } });
    expect(ahead.statusCode).toBe(401);
    expect(ahead.json()).toEqual(wrong.json());
    expect(ahead.json().error.hint).toBeUndefined();
    const farOff = await h.request("POST", `/v1/sign-in/${flow.flowId}/totp`, {
      body: { code: totpCode(secret, h.clock.now() - 11 * 30_000) },
    });
    expect(farOff.json().error.hint).toBeUndefined();
    // The owner hears of a failed second factor after a correct password, once a quarter hour at most.
    await h.deliverMail();
    await h.smtp.waitFor(user.email, /failed at the second step/);
    expect(h.smtp.to(user.email).filter((m) => /failed at the second step/.test(m.subject))).toHaveLength(1);
  });

  it("counts wrong codes on the same per-account counter as passwords", async () => {
    const { user } = await userWithTotp();
    const flow = await startSignIn(user);
    for (let i = 0; i < 5; i += 1) {
      const wrong = await h.request("POST", `/v1/sign-in/${flow.flowId}/totp`, { body: { code: "000000" } });
      expect(wrong.statusCode).toBe(401);
    }
    expect((await h.signIn(user.username, user.password, { ip: freshIp() })).statusCode).toBe(401);
    expect((await h.services.guard.status(await h.accountId(user))).restricted).toBe(true);
  });

  it("signs in with a recovery code once; the second use fails and the owner is told", async () => {
    const { user, recoveryCodes } = await userWithTotp();
    const code = recoveryCodes![3]!;
    const first = await startSignIn(user);
    const ok = await h.request("POST", `/v1/sign-in/${first.flowId}/recovery-code`, {
      body: { code: code.toLowerCase().replace(/-/g, " ") },
    });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json().session.methods).toEqual(["password", "recovery_code"]);
    const second = await startSignIn(user);
    const again = await h.request("POST", `/v1/sign-in/${second.flowId}/recovery-code`, { body: { code } });
    expect(again.statusCode).toBe(401);
    await h.deliverMail();
    const email = await h.smtp.waitFor(user.email, /recovery code was used/);
    expect(email.text).toContain("9 unused codes remain");
  });

  it("spends a recovery code once under 20 parallel sign-ins, and new codes replace the old set", async () => {
    const { user, recoveryCodes, secret, token } = await userWithTotp();
    // Twenty sign-ins waiting at the second factor (started one by one: parallel password checks of one
    // account are capped at five in flight), then one recovery code sent to all of them at once.
    const flows: { flowId: string }[] = [];
    for (let i = 0; i < 20; i += 1) flows.push(await startSignIn(user));
    const code = recoveryCodes![0]!;
    const answers = await Promise.all(
      flows.map((flow) =>
        h.request("POST", `/v1/sign-in/${flow.flowId}/recovery-code`, { body: { code }, ip: freshIp() }),
      ),
    );
    expect(answers.filter((r) => r.statusCode === 200)).toHaveLength(1);
    expect(answers.filter((r) => r.statusCode === 401)).toHaveLength(19);

    // The 19 refusals restricted the account for 15 minutes (behaviour §4): let that pass.
    h.clock.advance(16 * 60_000);
    const regenerated = await withStepUp(h, token, "POST", "/v1/security/recovery-codes", {
      totp: totpCode(secret, h.clock.now()),
    });
    expect(regenerated.response.statusCode, regenerated.response.body).toBe(200);
    const fresh = regenerated.response.json().codes as string[];
    expect(fresh).toHaveLength(10);
    await h.deliverMail();
    await h.smtp.waitFor(user.email, /^Created new recovery codes$/);
    const told = h.smtp.to(user.email).map((m) => m.text);
    expect(
      told.some((text) => text.includes("created new recovery codes (the old ones no longer work)")),
    ).toBe(true);
    const old = await h.request("POST", `/v1/sign-in/${(await startSignIn(user)).flowId}/recovery-code`, {
      body: { code: recoveryCodes![5]! },
    });
    expect(old.statusCode).toBe(401);
    const next = await h.request("POST", `/v1/sign-in/${(await startSignIn(user)).flowId}/recovery-code`, {
      body: { code: fresh[0]! },
    });
    expect(next.statusCode, next.body).toBe(200);
  });

  it("lets a step-up action expire after 5 minutes, and spends a confirmed one once", async () => {
    const { secret, token } = await userWithTotp();
    const first = await h.request("POST", "/v1/security/recovery-codes", { token });
    expect(first.json().error.code).toBe("step_up_required");
    const stale = first.json().error.actionId as string;
    h.clock.advance(5 * 60_000 + 1_000);
    const late = await h.request("POST", `/v1/actions/${stale}/confirm`, {
      token,
      body: { totp: totpCode(secret, h.clock.now()) },
    });
    expect(late.statusCode).toBe(410);
    expect(late.json().error.code).toBe("expired");

    h.clock.advance(30_000);
    const done = await withStepUp(h, token, "POST", "/v1/security/recovery-codes", {
      totp: totpCode(secret, h.clock.now()),
    });
    expect(done.response.statusCode).toBe(200);
    // The very same request with the same, now spent, action id asks for a new confirmation.
    const again = await h.request("POST", "/v1/security/recovery-codes", {
      token: done.token,
      headers: { "x-action-id": done.actionId },
    });
    expect(again.statusCode).toBe(403);
    expect(again.json().error.code).toBe("step_up_required");
    expect(again.json().error.actionId).not.toBe(done.actionId);
  });

  it("keeps TOTP seeds sealed and recovery codes only as hashes", async () => {
    const { user, recoveryCodes } = await userWithTotp();
    const accountId = await h.accountId(user);
    const factor = await h.db
      .selectFrom("second_factors")
      .select("totp_secret")
      .where("account_id", "=", accountId)
      .executeTakeFirstOrThrow();
    expect(factor.totp_secret).toMatch(/^v1\.[0-9a-f]{8}\./);
    const codes = await h.db
      .selectFrom("recovery_codes")
      .select("code_hash")
      .where("account_id", "=", accountId)
      .execute();
    expect(codes).toHaveLength(10);
    const stored = JSON.stringify(codes);
    for (const code of recoveryCodes!) {
      expect(stored).not.toContain(code);
      expect(stored).not.toContain(code.replace(/-/g, ""));
    }
    for (const { code_hash } of codes) expect(code_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it("signs in with a security key, and refuses a replay, another origin and a cloned key's counter", async () => {
    const user = await h.createVerifiedUser();
    const key = new SoftwareAuthenticator(PUBLIC_URL);
    let token = await h.sessionToken(user);
    const options = await withStepUp(h, token, "POST", "/v1/security/webauthn/options", {
      password: user.password,
    });
    token = options.token;
    const registered = await h.request("POST", "/v1/security/webauthn", {
      token,
      body: { response: key.register(options.response.json()), name: "YubiKey" },
    });
    expect(registered.statusCode, registered.body).toBe(200);
    expect(registered.json().recoveryCodes).toHaveLength(10);

    const flow = await startSignIn(user);
    expect(flow.factors).toEqual(["webauthn", "recovery_code"]);
    const assertionOptions = (await h.request("POST", `/v1/sign-in/${flow.flowId}/webauthn/options`)).json();
    expect(assertionOptions.rpId).toBe("localhost");
    const wrongOrigin = await h.request("POST", `/v1/sign-in/${flow.flowId}/webauthn`, {
      body: { response: key.assert(assertionOptions, { origin: "https://evil.example" }) },
    });
    expect(wrongOrigin.statusCode).toBe(401);
    // That challenge is spent even though the answer was wrong: a fresh one is needed.
    const replayedChallenge = await h.request("POST", `/v1/sign-in/${flow.flowId}/webauthn`, {
      body: { response: key.assert(assertionOptions) },
    });
    expect(replayedChallenge.statusCode).toBe(401);
    const fresh = (await h.request("POST", `/v1/sign-in/${flow.flowId}/webauthn/options`)).json();
    const assertion = key.assert(fresh);
    const done = await h.request("POST", `/v1/sign-in/${flow.flowId}/webauthn`, {
      body: { response: assertion },
    });
    expect(done.statusCode, done.body).toBe(200);
    expect(done.json().session).toMatchObject({ aal: 2, methods: ["password", "webauthn"] });

    const cloned = await startSignIn(user);
    const clonedOptions = (await h.request("POST", `/v1/sign-in/${cloned.flowId}/webauthn/options`)).json();
    const stale = await h.request("POST", `/v1/sign-in/${cloned.flowId}/webauthn`, {
      body: { response: key.assertWithCount(clonedOptions, key.signCount) },
    });
    expect(stale.statusCode).toBe(401);
    const audit = await h.services.audit.list({
      accountId: await h.accountId(user),
      events: ["webauthn.counter_regression"],
      limit: 5,
    });
    expect(audit).toHaveLength(1);
  });

  it("refuses assertions of the wrong type, for another RP ID, without user presence, with an altered signature or an expired challenge — and audits each factor attempt", async () => {
    const user = await h.createVerifiedUser();
    const key = new SoftwareAuthenticator(PUBLIC_URL);
    const options = await withStepUp(h, await h.sessionToken(user), "POST", "/v1/security/webauthn/options", {
      password: user.password,
    });
    const registered = await h.request("POST", "/v1/security/webauthn", {
      token: options.token,
      body: { response: key.register(options.response.json()), name: "YubiKey" },
    });
    expect(registered.statusCode, registered.body).toBe(200);

    /** One sign-in answered with `tamper`; fewer than five per account between successes (behaviour §4). */
    const attempt = async (flowId: string, tamper: Parameters<SoftwareAuthenticator["assert"]>[1]) => {
      const challenge = (await h.request("POST", `/v1/sign-in/${flowId}/webauthn/options`)).json();
      return h.request("POST", `/v1/sign-in/${flowId}/webauthn`, {
        body: { response: key.assert(challenge, tamper) },
      });
    };
    const first = await startSignIn(user);
    expect((await attempt(first.flowId, { type: "webauthn.create" })).statusCode).toBe(401);
    expect((await attempt(first.flowId, { rpId: "evil.example" })).statusCode).toBe(401);
    expect((await attempt(first.flowId, { flags: 0x04 })).statusCode).toBe(401);
    expect((await attempt(first.flowId, {})).statusCode).toBe(200);

    const second = await startSignIn(user);
    expect((await attempt(second.flowId, { corruptSignature: true })).statusCode).toBe(401);
    const stale = (await h.request("POST", `/v1/sign-in/${second.flowId}/webauthn/options`)).json();
    h.clock.advance(5 * 60_000 + 1_000);
    const late = await h.request("POST", `/v1/sign-in/${second.flowId}/webauthn`, {
      body: { response: key.assert(stale) },
    });
    expect(late.statusCode).toBe(401);
    expect((await attempt(second.flowId, {})).statusCode).toBe(200);

    // Every second-factor attempt is in the audit log with its outcome (ASVS 16.3.1).
    const entries = await h.services.audit.list({
      accountId: await h.accountId(user),
      events: ["sign_in.webauthn"],
      limit: 20,
    });
    expect(entries.filter((e) => e.outcome === "failure")).toHaveLength(5);
    expect(entries.filter((e) => e.outcome === "success")).toHaveLength(2);
    expect(entries.every((e) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(e.at))).toBe(true);
  });

  it("keeps a credential id to one account", async () => {
    const key = new SoftwareAuthenticator(PUBLIC_URL);
    const register = async (user: TestUser) => {
      const step = await withStepUp(h, await h.sessionToken(user), "POST", "/v1/security/webauthn/options", {
        password: user.password,
      });
      return h.request("POST", "/v1/security/webauthn", {
        token: step.token,
        body: { response: key.register(step.response.json()), name: "Shared key" },
      });
    };
    expect((await register(await h.createVerifiedUser())).statusCode).toBe(200);
    const second = await register(await h.createVerifiedUser());
    expect(second.statusCode).toBe(409);
  });

  it("refuses a device-bound passkey as the first sign-in factor", async () => {
    const user = await h.createVerifiedUser();
    const passkey = new SoftwareAuthenticator(PUBLIC_URL, {
      attachment: "platform",
      transports: ["internal"],
    });
    const step = await withStepUp(h, await h.sessionToken(user), "POST", "/v1/security/webauthn/options", {
      password: user.password,
    });
    const response = await h.request("POST", "/v1/security/webauthn", {
      token: step.token,
      body: { response: passkey.register(step.response.json()), name: "This laptop" },
    });
    expect(response.statusCode).toBe(409);
    expect(response.json().error.code).toBe("roaming_factor_required");
  });

  it("decides roaming from the transports the authenticator reports, not from the browser's attachment label", async () => {
    const register = async (authenticator: SoftwareAuthenticator) => {
      const user = await h.createVerifiedUser();
      const step = await withStepUp(h, await h.sessionToken(user), "POST", "/v1/security/webauthn/options", {
        password: user.password,
      });
      return h.request("POST", "/v1/security/webauthn", {
        token: step.token,
        body: { response: authenticator.register(step.response.json()), name: "A key" },
      });
    };
    // A built-in authenticator whose browser calls it "cross-platform": still bound to this device.
    for (const transports of [["internal"], ["internal", "hybrid"], ["usb", "internal"], []]) {
      const claimed = await register(
        new SoftwareAuthenticator(PUBLIC_URL, { attachment: "cross-platform", transports }),
      );
      expect(claimed.statusCode, JSON.stringify(transports)).toBe(409);
      expect(claimed.json().error.code).toBe("roaming_factor_required");
    }
    // A USB or NFC key is roaming whatever label the browser puts on it.
    for (const transports of [["usb"], ["nfc", "usb"]]) {
      const key = await register(
        new SoftwareAuthenticator(PUBLIC_URL, { attachment: "platform", transports }),
      );
      expect(key.statusCode, JSON.stringify(transports)).toBe(200);
    }
  });

  it("removes a factor only after a fresh second factor, with an action bound to that factor", async () => {
    const { user, secret, token: start } = await userWithTotp();
    const key = new SoftwareAuthenticator(PUBLIC_URL);
    h.clock.advance(60_000);
    const options = await withStepUp(h, start, "POST", "/v1/security/webauthn/options", {
      totp: totpCode(secret, h.clock.now()),
    });
    const added = await h.request("POST", "/v1/security/webauthn", {
      token: options.token,
      body: { response: key.register(options.response.json()), name: "Backup key" },
    });
    expect(added.json().recoveryCodes).toBeUndefined();
    let token = options.token;
    const factors = (await h.request("GET", "/v1/security/factors", { token })).json().factors;
    expect(factors.map((f: { type: string }) => f.type)).toEqual(["totp", "webauthn"]);
    const [totpFactor, keyFactor] = factors;

    // Without step-up: refused, with an action to confirm.
    const bare = await h.request("DELETE", `/v1/security/factors/${keyFactor.id}`, { token });
    expect(bare.statusCode).toBe(403);
    expect(bare.json().error).toMatchObject({
      code: "step_up_required",
      action: { summary: 'Remove "Backup key"' },
    });
    // A wrong code does not confirm it.
    const wrong = await h.request("POST", `/v1/actions/${bare.json().error.actionId}/confirm`, {
      token,
      body: { totp: "000000" },
    });
    expect(wrong.statusCode).toBe(401);

    // Confirmed with the security key (its challenge bound to this action), the action removes exactly that factor.
    const removal = await withStepUp(
      h,
      token,
      "DELETE",
      `/v1/security/factors/${keyFactor.id}`,
      async (actionId, t) => {
        const assertionOptions = (
          await h.request("POST", `/v1/actions/${actionId}/webauthn/options`, { token: t })
        ).json();
        return { webauthn: key.assert(assertionOptions) };
      },
    );
    token = removal.token;
    expect(removal.response.statusCode, removal.response.body).toBe(200);
    const reused = await h.request("DELETE", `/v1/security/factors/${totpFactor.id}`, {
      token,
      headers: { "x-action-id": removal.actionId },
    });
    expect(reused.statusCode).toBe(403);
    expect(reused.json().error.code).toBe("step_up_required");
    expect((await h.request("GET", "/v1/security/factors", { token })).json().factors).toHaveLength(1);
    // The owner is told which factor went (behaviour §12).
    await h.deliverMail();
    await h.smtp.waitFor(user.email, /^Removed security key "Backup key"$/);
    expect(h.smtp.to(user.email).some((m) => m.text.includes('removed security key "Backup key"'))).toBe(
      true,
    );
  });

  it("does not let a security-key assertion made for one action confirm another", async () => {
    const user = await h.createVerifiedUser();
    const key = new SoftwareAuthenticator(PUBLIC_URL);
    const options = await withStepUp(h, await h.sessionToken(user), "POST", "/v1/security/webauthn/options", {
      password: user.password,
    });
    await h.request("POST", "/v1/security/webauthn", {
      token: options.token,
      body: { response: key.register(options.response.json()), name: "Key" },
    });
    const token = options.token;
    const first = (await h.request("POST", "/v1/security/recovery-codes", { token })).json().error.actionId;
    const second = (await h.request("POST", "/v1/security/recovery-codes", { token })).json().error.actionId;
    const forFirst = (await h.request("POST", `/v1/actions/${first}/webauthn/options`, { token })).json();
    const crossed = await h.request("POST", `/v1/actions/${second}/confirm`, {
      token,
      body: { webauthn: key.assert(forFirst) },
    });
    expect(crossed.statusCode).toBe(401);
  });

  it("cancels an action after five failed confirmations", async () => {
    const { token } = await userWithTotp();
    const actionId = (await h.request("POST", "/v1/security/recovery-codes", { token })).json().error
      .actionId;
    for (let i = 0; i < 5; i += 1) {
      await h.request("POST", `/v1/actions/${actionId}/confirm`, { token, body: { totp: "000000" } });
    }
    const after = await h.request("GET", `/v1/actions/${actionId}`, { token });
    expect(after.json().state).toBe("cancelled");
  });
});

function toBase32(secret: Uint8Array): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const byte of secret) bits += byte.toString(2).padStart(8, "0");
  return (bits.match(/.{1,5}/g) ?? [])
    .map((chunk) => alphabet[Number.parseInt(chunk.padEnd(5, "0"), 2)])
    .join("");
}
