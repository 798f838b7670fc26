import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KrakenClient } from "../../src/client/kraken-client.js";
import { hashToken } from "../../src/crypto/tokens.js";
import { totpCode } from "../../src/factors/totp.js";
import type { EmailMessage } from "../../src/notify/templates.js";
import { isSecurityEmail } from "../../src/notify/templates.js";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness, SERVICE_TOKEN } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { engines } from "../helpers/storage.js";

const HOUR = 3_600_000;
const MASTER_KEY = "correct horse battery staple vault";
const run = promisify(execFile);
const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };
const service = { authorization: `Bearer ${SERVICE_TOKEN}` };

const details = {
  at: "2026-01-01T00:00:00.000Z",
  ip: "203.0.113.10",
  location: null,
  browser: "Firefox on Linux",
};
/** One of each email that tells the owner about something done to the account. */
const securityEmails: EmailMessage[] = [
  { kind: "sign_up_email_taken", signInLink: "http://x/a", resetLink: "http://x/b" },
  { kind: "account_restricted", until: null, permanent: true, resetLink: "http://x/r", ...details },
  { kind: "approve_device", link: "http://x/d", ...details },
  { kind: "second_factor_failed", resetLink: "http://x/r", ...details },
  { kind: "new_sign_in", sessionsLink: "http://x/s", resetLink: "http://x/r", ...details },
  { kind: "recovery_code_used", remaining: 9, ...details },
  { kind: "security_change", change: 'created API key "bot"', ...details },
  { kind: "password_reset", link: "http://x/p", masterKeyRequired: false, ...details },
  { kind: "bypass_code", code: "123456", ...details },
  { kind: "api_keys_still_active", keys: ["bot"], link: "http://x/k", ...details },
  { kind: "email_change_requested", newEmail: "new@example.test", ...details },
  {
    kind: "email_changed",
    oldEmail: "a@example.test",
    newEmail: "b@example.test",
    holdUntil: details.at,
    ...details,
  },
  { kind: "account_unfrozen", by: "operator", ...details },
  {
    kind: "confirm_withdrawal_address",
    asset: "BTC",
    address: "bc1q",
    label: "Cold",
    link: "http://x/w",
    ...details,
  },
];

describe.each(engines)("'lock my account' on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  /** A trader with an authenticator app, a Master Key and an API key; the lock link of their last email. */
  const secured = async () => {
    const user = await h.createVerifiedUser();
    const enrolled = await enrollTotp(h, await h.sessionToken(user, "pro"), { password: user.password });
    let token = enrolled.token;
    const step = async (method: "POST" | "PUT" | "DELETE", url: string, body?: unknown) => {
      const result = await withStepUp(
        h,
        token,
        method,
        url,
        { totp: nextTotpCode(h, enrolled.secret) },
        body === undefined ? {} : { body },
      );
      token = result.token;
      return result.response;
    };
    expect((await step("PUT", "/v1/security/master-key", { masterKey: MASTER_KEY })).statusCode).toBe(200);
    const created = await step("POST", "/v1/api-keys", {
      name: "bot",
      permissions: ["funds_query"],
      nonceWindow: 1000,
    });
    expect(created.statusCode, created.body).toBe(201);
    const key = created.json() as { id: string; key: string; secret: string };
    await h.deliverMail();
    const keyEmail = h.smtp
      .to(user.email)
      .filter((m) => /^Created API key "bot"/.test(m.subject))
      .at(-1);
    expect(keyEmail, "the new API key's email").toBeDefined();
    const client = new KrakenClient({ baseUrl: "http://unused.invalid", key: key.key, secret: key.secret });
    return {
      user,
      accountId: await h.accountId(user),
      secret: enrolled.secret,
      token: () => token,
      step,
      lockToken: linkToken(keyEmail!, "/lock-account"),
      gateway: async () =>
        (
          await h.request("POST", "/v1/gateway/check", {
            headers: service,
            body: { ...client.sign("Balance"), ip: "198.51.100.7" },
          })
        ).json() as { allow: boolean; error?: string },
    };
  };

  /** Signs in with the password and a TOTP code; returns the session token. */
  const signIn = async (user: { username: string; password: string }, secret: Uint8Array) => {
    const started = await h.signIn(user.username, user.password, { client: "pro" });
    expect(started.json().state, started.body).toBe("second_factor");
    h.clock.advance(30_000);
    const done = await h.request("POST", `/v1/sign-in/${started.json().flowId}/totp`, {
      body: { code: totpCode(secret, h.clock.now()) },
    });
    expect(done.statusCode, done.body).toBe(200);
    return done.json().token as string;
  };

  it("puts a single-use, 7-day lock link in every security email, and each link freezes the account", async () => {
    const owner = await secured();
    const account = (await h.services.accounts.findById(owner.accountId))!;
    for (const message of securityEmails) {
      expect(isSecurityEmail(message.kind), message.kind).toBe(true);
      await h.services.outbox.notify(account, message);
    }
    await h.deliverMail();
    const texts = h.smtp.to(owner.user.email).slice(-securityEmails.length);
    expect(texts.map((m) => m.subject)).toHaveLength(securityEmails.length);
    for (const [i, email] of texts.entries()) {
      const token = linkToken(email, "/lock-account");
      const row = await h.db
        .selectFrom("one_time_tokens")
        .select(["purpose", "expires_at", "created_at"])
        .where("token_hash", "=", hashToken(token))
        .executeTakeFirstOrThrow();
      expect(row.purpose).toBe("lock_account");
      expect(Number(row.expires_at) - Number(row.created_at)).toBe(7 * 24 * HOUR);
      const frozen = await h.request("POST", "/v1/account-lock", { body: { token } });
      expect(frozen.statusCode, `${securityEmails[i]!.kind}: ${frozen.body}`).toBe(200);
      expect((await h.services.accounts.findById(owner.accountId))!.frozenAt).not.toBeNull();
      const lifted = await h.request("DELETE", `/v1/admin/accounts/${owner.accountId}/freeze`, {
        headers: operator,
      });
      expect(lifted.statusCode, lifted.body).toBe(200);
    }
    // The freeze's own notice and mail that only helps the reader carry none.
    expect(isSecurityEmail("account_frozen")).toBe(false);
    expect(isSecurityEmail("verify_email")).toBe(false);
  });

  it("freezes at once: sessions and keys refused on the next request, every change answered 423", async () => {
    const owner = await secured();
    expect((await owner.gateway()).allow).toBe(true);
    expect((await h.request("GET", "/v1/session", { token: owner.token() })).statusCode).toBe(200);

    const frozen = await h.request("POST", "/v1/account-lock", { body: { token: owner.lockToken } });
    expect(frozen.statusCode, frozen.body).toBe(200);
    expect(frozen.json()).toMatchObject({ status: "frozen", liftableAt: expect.any(String) });

    expect((await h.request("GET", "/v1/session", { token: owner.token() })).statusCode).toBe(401);
    expect(await owner.gateway()).toEqual({ allow: false, error: "EAuth:Account temporary disabled" });
    // Single use.
    const again = await h.request("POST", "/v1/account-lock", { body: { token: owner.lockToken } });
    expect(again.statusCode).toBe(410);

    await h.deliverMail();
    await h.smtp.waitFor(owner.user.email, /Your account is frozen/);

    // Signing in works, to a session that sees the freeze and can do nothing else.
    const token = await signIn(owner.user, owner.secret);
    const session = await h.request("GET", "/v1/session", { token });
    expect(session.statusCode, session.body).toBe(200);
    expect(session.json().account.frozen).toMatchObject({ since: expect.any(String) });
    expect(session.json().eligibility.refused.api).toContain("account_frozen");
    const capabilities = await h.request("GET", "/v1/capabilities", { token });
    expect(capabilities.json().products["withdraw.crypto"].reasons).toContainEqual(
      expect.objectContaining({ code: "account_frozen" }),
    );
    for (const [method, url, body] of [
      ["POST", "/v1/api-keys", { name: "x", permissions: ["funds_query"] }],
      [
        "POST",
        "/v1/withdrawal-addresses",
        { asset: "BTC", address: "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh", label: "x" },
      ],
      ["POST", "/v1/security/email", { newEmail: "elsewhere@example.test" }],
      ["PUT", "/v1/security/anti-phishing-code", { code: "hello" }],
      ["GET", "/v1/sessions", undefined],
      ["GET", "/v1/api-keys", undefined],
    ] as const) {
      const refused = await h.request(method, url, { token, body });
      expect(refused.statusCode, `${method} ${url}: ${refused.body}`).toBe(423);
      expect(refused.json().error.code).toBe("account_frozen");
    }
    // The service-level path refuses too, whatever reaches it.
    const account = (await h.services.accounts.findById(owner.accountId))!;
    await expect(
      h.services.capabilities.assertAllowed(account, "web", "withdraw.crypto"),
    ).rejects.toMatchObject({ status: 423, code: "account_frozen" });
    const audit = await h.db
      .selectFrom("audit_log")
      .select("event")
      .where("account_id", "=", owner.accountId)
      .where("event", "=", "account.frozen")
      .execute();
    expect(audit).toHaveLength(1);
  });

  it("cancels the changes pending in emailed links when the account is frozen: they stay dead once it is lifted", async () => {
    const owner = await secured();
    const added = await owner.step("POST", "/v1/withdrawal-addresses", {
      asset: "BTC",
      address: "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh",
      label: "Cold",
    });
    expect(added.statusCode, added.body).toBe(202);
    const newEmail = `moved.${owner.accountId.slice(0, 8)}@example.test`;
    expect((await owner.step("POST", "/v1/security/email", { newEmail })).statusCode).toBe(202);
    await h.deliverMail();
    const addressToken = linkToken(
      await h.smtp.waitFor(owner.user.email, /Confirm a new withdrawal address/),
      "/confirm-address",
    );
    const emailToken = linkToken(await h.smtp.waitFor(newEmail, /Confirm your new email/), "/confirm-email");

    expect(
      (await h.request("POST", "/v1/account-lock", { body: { token: owner.lockToken } })).statusCode,
    ).toBe(200);
    for (const [url, token] of [
      ["/v1/withdrawal-addresses/confirm", addressToken],
      ["/v1/security/email/confirm", emailToken],
    ] as const) {
      const refused = await h.request("POST", url, { body: { token } });
      expect(refused.statusCode, `${url}: ${refused.body}`).toBe(410);
      expect(refused.json().error.code).toBe("expired");
    }
    expect((await h.services.accounts.findById(owner.accountId))!.email).toBe(owner.user.email);

    // Whoever asked for them may be the one the owner froze the account against: once the freeze is
    // lifted, the links are still dead, and the owner asks again for what they want.
    await h.request("DELETE", `/v1/admin/accounts/${owner.accountId}/freeze`, { headers: operator });
    for (const [url, token] of [
      ["/v1/withdrawal-addresses/confirm", addressToken],
      ["/v1/security/email/confirm", emailToken],
    ] as const) {
      const dead = await h.request("POST", url, { body: { token } });
      expect(dead.statusCode, `${url}: ${dead.body}`).toBe(410);
    }
    expect((await h.services.accounts.findById(owner.accountId))!.email).toBe(owner.user.email);
  });

  it("lets exactly one of ten parallel uses of a lock link freeze, and refuses an expired link", async () => {
    const owner = await secured();
    const answers = await Promise.all(
      Array.from({ length: 10 }, () =>
        h.request("POST", "/v1/account-lock", { body: { token: owner.lockToken } }),
      ),
    );
    expect(answers.filter((r) => r.statusCode === 200)).toHaveLength(1);
    expect(answers.filter((r) => r.statusCode === 410)).toHaveLength(9);
    const frozenEvents = await h.db
      .selectFrom("audit_log")
      .select("event")
      .where("account_id", "=", owner.accountId)
      .where("event", "=", "account.frozen")
      .execute();
    expect(frozenEvents).toHaveLength(1);

    const other = await secured();
    h.clock.advance(7 * 24 * HOUR);
    const late = await h.request("POST", "/v1/account-lock", { body: { token: other.lockToken } });
    expect(late.statusCode).toBe(410);
    expect((await h.services.accounts.findById(other.accountId))!.frozenAt).toBeNull();
  });

  it("is lifted by the owner with the Master Key and a second factor, only after 24 hours", async () => {
    const owner = await secured();
    expect(
      (await h.request("POST", "/v1/account-lock", { body: { token: owner.lockToken } })).statusCode,
    ).toBe(200);
    let token = await signIn(owner.user, owner.secret);
    const early = await h.request("POST", "/v1/security/account-lock/lift", {
      token,
      body: { masterKey: MASTER_KEY },
    });
    expect(early.statusCode, early.body).toBe(423);
    expect(early.json().error).toMatchObject({ code: "account_frozen", liftableAt: expect.any(String) });

    h.clock.advance(24 * HOUR);
    token = await signIn(owner.user, owner.secret);
    const wrong = await withStepUp(
      h,
      token,
      "POST",
      "/v1/security/account-lock/lift",
      { totp: nextTotpCode(h, owner.secret) },
      { body: { masterKey: "not the master key at all, sorry" } },
    );
    expect(wrong.response.statusCode, wrong.response.body).toBe(401);
    expect((await h.services.accounts.findById(owner.accountId))!.frozenAt).not.toBeNull();
    const lifted = await withStepUp(
      h,
      wrong.token,
      "POST",
      "/v1/security/account-lock/lift",
      { totp: nextTotpCode(h, owner.secret) },
      { body: { masterKey: MASTER_KEY } },
    );
    expect(lifted.response.statusCode, lifted.response.body).toBe(200);
    expect(lifted.response.json()).toEqual({ status: "lifted" });
    expect((await h.services.accounts.findById(owner.accountId))!.frozenAt).toBeNull();
    expect((await h.request("GET", "/v1/api-keys", { token: lifted.token })).statusCode).toBe(200);
    expect((await owner.gateway()).allow).toBe(true);
    await h.deliverMail();
    const told = await h.smtp.waitFor(owner.user.email, /freeze on your account was lifted/);
    expect(told.text).toContain("Master Key and second factor");
    // A wrong Master Key is reported as an unlock attempt, with the lock link.
    const attempt = h.smtp
      .to(owner.user.email)
      .find((m) => m.text.includes("lift the freeze on your account with a wrong Master Key"));
    expect(attempt && linkToken(attempt, "/lock-account")).toBeTruthy();
  });

  it("is lifted by an operator through the admin API and the owner is told; audited", async () => {
    const owner = await secured();
    expect(
      (await h.request("POST", "/v1/account-lock", { body: { token: owner.lockToken } })).statusCode,
    ).toBe(200);
    const lifted = await h.request("DELETE", `/v1/admin/accounts/${owner.accountId}/freeze`, {
      headers: operator,
    });
    expect(lifted.statusCode, lifted.body).toBe(200);
    expect((await owner.gateway()).allow).toBe(true);
    const twice = await h.request("DELETE", `/v1/admin/accounts/${owner.accountId}/freeze`, {
      headers: operator,
    });
    expect(twice.statusCode).toBe(409);
    const unknown = await h.request("DELETE", "/v1/admin/accounts/no-such-account/freeze", {
      headers: operator,
    });
    expect(unknown.statusCode).toBe(404);
    const entry = await h.db
      .selectFrom("audit_log")
      .select(["event", "actor"])
      .where("account_id", "=", owner.accountId)
      .where("event", "=", "account.unfrozen")
      .executeTakeFirstOrThrow();
    expect(entry.actor).toBe("operator");
    await h.deliverMail();
    await h.smtp.waitFor(owner.user.email, /freeze on your account was lifted/);

    // The same from the command line, against the same database.
    const again = await secured();
    expect(
      (await h.request("POST", "/v1/account-lock", { body: { token: again.lockToken } })).statusCode,
    ).toBe(200);
    const env = {
      ...process.env,
      PORTCULLIS_DATABASE_URL: h.storage.url,
      PORTCULLIS_DATA_DIR: h.storage.dataDir,
    };
    const cli = await run(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", "accounts", "unfreeze", again.user.username],
      { env },
    );
    expect(cli.stdout).toContain(`freeze lifted for ${again.user.username}`);
    expect((await h.services.accounts.findById(again.accountId))!.frozenAt).toBeNull();
    expect((await again.gateway()).allow).toBe(true);
  });
});
