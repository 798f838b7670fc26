import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { totpCode } from "../../src/factors/totp.js";
import { base32Decode, enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { Harness } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { engines } from "../helpers/storage.js";

const MASTER_KEY = "correct horse battery staple vault";

describe.each(engines)("one path for every owner setting change on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  /** A trader with an authenticator app (signed in from `ip`), optionally a Master Key and the lock on. */
  const secured = async (
    options: { lockDays?: number; masterKey?: boolean; client?: "app" | "pro"; ip?: string } = {},
  ) => {
    const user = await h.createVerifiedUser();
    const signedIn = await h.signIn(user.username, user.password, {
      client: options.client ?? "app",
      ip: options.ip,
    });
    const enrolled = await enrollTotp(h, signedIn.json().token, { password: user.password });
    let token = enrolled.token;
    const step = async (
      method: "POST" | "PUT" | "DELETE",
      url: string,
      body?: unknown,
      extra: Record<string, unknown> = {},
    ) => {
      const result = await withStepUp(
        h,
        token,
        method,
        url,
        { totp: nextTotpCode(h, enrolled.secret), ...extra },
        { ...(body === undefined ? {} : { body }), ...(options.ip ? { ip: options.ip } : {}) },
      );
      token = result.token;
      return result.response;
    };
    if (options.masterKey) {
      expect((await step("PUT", "/v1/security/master-key", { masterKey: MASTER_KEY })).statusCode).toBe(200);
    }
    if (options.lockDays !== undefined) {
      const locked = await step("POST", "/v1/security/global-lock", { unlockDelayDays: options.lockDays });
      expect(locked.statusCode, locked.body).toBe(200);
    }
    return {
      user,
      id: await h.accountId(user),
      secret: enrolled.secret,
      token: () => token,
      setToken: (next: string) => {
        token = next;
      },
      step,
    };
  };

  /** Another session of the same owner: password, then a code from the authenticator app. */
  const signInWithTotp = async (
    user: { username: string; password: string },
    secret: Uint8Array,
    client: "app" | "pro" = "app",
  ) => {
    const started = await h.signIn(user.username, user.password, { client });
    const done = await h.request("POST", `/v1/sign-in/${started.json().flowId}/totp`, {
      body: { code: nextTotpCode(h, secret) },
    });
    expect(done.statusCode, done.body).toBe(200);
    return done.json().token as string;
  };

  const mailTo = async (email: string) => {
    await h.deliverMail();
    return h.smtp.to(email);
  };

  it("refuses a password reset while the Global Settings Lock is on, and leaves the link unspent", async () => {
    const { user, token } = await secured({ lockDays: 0 });
    await h.request("POST", "/v1/recovery/password", {
      body: { email: user.email, username: user.username, botCheck: await h.botCheck() },
    });
    await h.deliverMail();
    const reset = await h.smtp.waitFor(user.email, /Reset your password/);
    const complete = await h.request("POST", "/v1/recovery/password/complete", {
      body: { token: linkToken(reset, "/reset-password"), newPassword: "an entirely new passphrase 77" },
    });
    expect(complete.statusCode, complete.body).toBe(403);
    expect(complete.json().error.code).toBe("settings_locked");
    // Nothing happened: the owner is still signed in, and the old password still works.
    expect((await h.request("GET", "/v1/session", { token: token() })).statusCode).toBe(200);
    expect((await h.signIn(user.username, user.password, { client: "app" })).statusCode).toBe(200);
  });

  it("refuses finishing an enrollment started before the lock, and drops pending enrollments with it", async () => {
    const { id, token, step } = await secured();
    const started = await step("POST", "/v1/security/totp");
    expect(started.statusCode).toBe(200);
    const { enrollmentId, secret } = started.json();
    const keyStarted = await step("POST", "/v1/security/webauthn/options");
    expect(keyStarted.statusCode).toBe(200);
    await step("POST", "/v1/security/global-lock", { unlockDelayDays: 1 });

    const pendingFactors = await h.db
      .selectFrom("second_factors")
      .select("id")
      .where("account_id", "=", id)
      .where("confirmed_at", "is", null)
      .execute();
    expect(pendingFactors).toEqual([]);
    const pendingKeys = await h.db
      .selectFrom("webauthn_challenges")
      .select("id")
      .where("account_id", "=", id)
      .where("purpose", "=", "register")
      .where("used_at", "is", null)
      .execute();
    expect(pendingKeys).toEqual([]);

    const confirm = await h.request("POST", `/v1/security/totp/${enrollmentId}/confirm`, {
      token: token(),
      body: { code: totpCode(base32Decode(secret), h.clock.now()), name: "Second phone" },
    });
    expect(confirm.statusCode, confirm.body).toBe(403);
    expect(confirm.json().error.code).toBe("settings_locked");
    const confirmed = await h.db
      .selectFrom("second_factors")
      .select("id")
      .where("account_id", "=", id)
      .where("confirmed_at", "is not", null)
      .execute();
    expect(confirmed).toHaveLength(1);
  });

  it("refuses confirming a withdrawal address from its email while the lock is on, and keeps the link", async () => {
    const { user, id, step } = await secured();
    const added = await step("POST", "/v1/withdrawal-addresses", {
      asset: "BTC",
      address: "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh",
      label: "Cold",
    });
    expect(added.statusCode).toBe(202);
    await h.deliverMail();
    const link = linkToken(
      await h.smtp.waitFor(user.email, /Confirm a new withdrawal address/),
      "/confirm-address",
    );
    await step("POST", "/v1/security/global-lock", { unlockDelayDays: 1 });
    const refused = await h.request("POST", "/v1/withdrawal-addresses/confirm", { body: { token: link } });
    expect(refused.statusCode, refused.body).toBe(403);
    expect(refused.json().error.code).toBe("settings_locked");
    const row = await h.db
      .selectFrom("withdrawal_addresses")
      .select("confirmed_at")
      .where("account_id", "=", id)
      .executeTakeFirstOrThrow();
    expect(row.confirmed_at).toBeNull();
  });

  it("lets only the session that confirmed a step-up spend it, also after that session rotates again", async () => {
    const { user, secret, token, setToken } = await secured();
    const other = await signInWithTotp(user, secret);
    const change = (code: string, as: string, actionId?: string) =>
      h.request("PUT", "/v1/security/anti-phishing-code", {
        token: as,
        body: { code },
        ...(actionId ? { headers: { "x-action-id": actionId } } : {}),
      });
    const asked = await change("blue-heron", token());
    const actionId = asked.json().error.actionId as string;
    const confirmed = await h.request("POST", `/v1/actions/${actionId}/confirm`, {
      token: token(),
      body: { totp: nextTotpCode(h, secret) },
    });
    expect(confirmed.statusCode).toBe(200);
    setToken(confirmed.json().token);

    // Another session of the same account holds the id, but did not confirm it.
    const stolen = await change("blue-heron", other, actionId);
    expect(stolen.statusCode, stolen.body).toBe(403);
    expect(stolen.json().error.code).toBe("step_up_required");

    // The confirming session steps up for something else (a second rotation): the first action moves along.
    const second = await change("grey-heron", token());
    const secondId = second.json().error.actionId as string;
    const again = await h.request("POST", `/v1/actions/${secondId}/confirm`, {
      token: token(),
      body: { totp: nextTotpCode(h, secret) },
    });
    setToken(again.json().token);
    expect((await change("blue-heron", token(), actionId)).statusCode).toBe(200);
    expect((await change("grey-heron", token(), secondId)).statusCode).toBe(200);
  });

  it("spends a confirmed step-up once, however many requests present it at the same time", async () => {
    const { secret, token } = await secured();
    const asked = await h.request("PUT", "/v1/security/anti-phishing-code", {
      token: token(),
      body: { code: "blue-heron" },
    });
    const actionId = asked.json().error.actionId as string;
    const confirmed = await h.request("POST", `/v1/actions/${actionId}/confirm`, {
      token: token(),
      body: { totp: nextTotpCode(h, secret) },
    });
    const next = confirmed.json().token as string;
    const answers = await Promise.all(
      Array.from({ length: 6 }, () =>
        h.request("PUT", "/v1/security/anti-phishing-code", {
          token: next,
          body: { code: "blue-heron" },
          headers: { "x-action-id": actionId },
        }),
      ),
    );
    expect(answers.filter((a) => a.statusCode === 200)).toHaveLength(1);
    expect(answers.filter((a) => a.statusCode === 403)).toHaveLength(5);
  });

  it("asks for a step-up before requesting an unlock of the lock, and before cancelling one", async () => {
    const { token, step } = await secured({ lockDays: 2 });
    const request = await h.request("POST", "/v1/security/global-lock/unlock", { token: token(), body: {} });
    expect(request.statusCode, request.body).toBe(403);
    expect(request.json().error.code).toBe("step_up_required");
    expect(request.json().error.action.required).toEqual(["second_factor"]);
    expect((await step("POST", "/v1/security/global-lock/unlock", {})).json().state).toBe("unlock_pending");
    const cancel = await h.request("DELETE", "/v1/security/global-lock/unlock", { token: token() });
    expect(cancel.statusCode, cancel.body).toBe(403);
    expect(cancel.json().error.code).toBe("step_up_required");
    expect((await step("DELETE", "/v1/security/global-lock/unlock")).statusCode).toBe(200);
  });

  it("names the API keys that still work after a password reset, with one single-use link that disables them all", async () => {
    const { user, id, step } = await secured({ client: "pro" });
    for (const name of ["Bot one", "Bot two"]) {
      const created = await step("POST", "/v1/api-keys", { name, permissions: ["funds_query"] });
      expect(created.statusCode, created.body).toBe(201);
    }
    await h.request("POST", "/v1/recovery/password", {
      body: { email: user.email, username: user.username, botCheck: await h.botCheck() },
    });
    await h.deliverMail();
    const reset = await h.smtp.waitFor(user.email, /Reset your password/);
    const done = await h.request("POST", "/v1/recovery/password/complete", {
      body: { token: linkToken(reset, "/reset-password"), newPassword: "an entirely new passphrase 77" },
    });
    expect(done.statusCode, done.body).toBe(200);
    const notice = (await mailTo(user.email)).find((m) => /API keys still work/.test(m.subject));
    expect(notice?.text).toContain('"Bot one", "Bot two"');
    const token = linkToken(notice!, "/disable-api-keys");
    // The link works once, however many times it is opened at the same moment.
    const opened = await Promise.all(
      Array.from({ length: 5 }, () => h.request("POST", "/v1/api-keys/disable", { body: { token } })),
    );
    const worked = opened.filter((r) => r.statusCode === 200);
    expect(worked.map((r) => r.json())).toEqual([{ status: "disabled", disabled: 2 }]);
    expect(opened.filter((r) => r.statusCode === 410)).toHaveLength(4);
    const left = await h.db
      .selectFrom("api_keys")
      .select("id")
      .where("account_id", "=", id)
      .where("disabled_at", "is", null)
      .execute();
    expect(left).toEqual([]);
    expect((await h.request("POST", "/v1/api-keys/disable", { body: { token } })).statusCode).toBe(410);
  });

  it("disables every key with one authenticated request, and names them after a disconnect-all", async () => {
    const { user, secret, token, step } = await secured({ client: "pro" });
    await step("POST", "/v1/api-keys", { name: "Kept bot", permissions: ["funds_query"] });
    const disconnected = await step("DELETE", "/v1/devices");
    expect(disconnected.statusCode, disconnected.body).toBe(200);
    const notice = (await mailTo(user.email)).find((m) => /API keys still work/.test(m.subject));
    expect(notice?.text).toContain('"Kept bot"');

    const again = await signInWithTotp(user, secret, "pro");
    const all = await h.request("DELETE", "/v1/api-keys", { token: again });
    expect(all.json()).toEqual({ status: "deleted", deleted: 1 });
    expect((await h.request("GET", "/v1/api-keys", { token: again })).json().apiKeys).toEqual([]);
    expect((await h.request("GET", "/v1/session", { token: token() })).statusCode).toBe(401);
  });

  it("lets a Master Key bypass session on a locked account unlock with the Master Key, then enroll", async () => {
    const { user } = await secured({ masterKey: true, lockDays: 3 });
    const started = await h.signIn(user.username, user.password, { client: "app" });
    const { flowId } = started.json();
    await h.request("POST", `/v1/sign-in/${flowId}/master-key`, { body: { masterKey: MASTER_KEY } });
    await h.deliverMail();
    const code = /^([A-Z2-9]{10})$/m.exec((await h.smtp.waitFor(user.email, /bypass code/)).text)![1]!;
    const done = await h.request("POST", `/v1/sign-in/${flowId}/bypass-code`, { body: { code } });
    const token = done.json().token as string;
    // Enrolling is refused under the lock; that alone would leave this session with nothing to do.
    const refused = await h.request("POST", "/v1/security/totp", { token });
    expect(refused.json().error.code).toBe("settings_locked");
    const waiting = await h.request("POST", "/v1/security/global-lock/unlock", { token, body: {} });
    expect(waiting.json().error.code).toBe("enrollment_required");
    const unlocked = await h.request("POST", "/v1/security/global-lock/unlock", {
      token,
      body: { masterKey: MASTER_KEY },
    });
    expect(unlocked.json(), unlocked.body).toEqual({ state: "unlocked" });
    const { token: after } = await enrollTotp(h, token, { password: user.password });
    expect((await h.request("GET", "/v1/capabilities", { token: after })).statusCode).toBe(200);
  });

  it("keeps a session's own location after a step-up, not the account's country", async () => {
    // 8.8.8.8 is placed in the United States; the account is registered in Germany.
    const { token, step } = await secured({ ip: "8.8.8.8" });
    const before = (await h.request("GET", "/v1/sessions", { token: token() })).json().sessions;
    const current = before.find((s: { current: boolean }) => s.current);
    expect(current.location).toMatch(/US$/);
    await step("PUT", "/v1/security/anti-phishing-code", { code: "blue-heron" });
    const after = (await h.request("GET", "/v1/sessions", { token: token() })).json().sessions;
    expect(after.find((s: { current: boolean }) => s.current).location).toBe(current.location);
  });

  it("sends one email for a Master Key unlock that worked, not also one about an attempt", async () => {
    const { user, token } = await secured({ masterKey: true, lockDays: 2 });
    await mailTo(user.email);
    const already = h.smtp.to(user.email).length;
    const unlocked = await h.request("POST", "/v1/security/global-lock/unlock", {
      token: token(),
      body: { masterKey: MASTER_KEY },
    });
    expect(unlocked.json()).toEqual({ state: "unlocked" });
    const fresh = (await mailTo(user.email)).slice(already);
    expect(fresh.map((m) => m.text).filter((t) => /unlock/.test(t))).toHaveLength(1);
    expect(fresh.some((m) => /tried/.test(m.text))).toBe(false);
    expect(fresh[0]?.text).toMatch(/unlocked the Global Settings Lock with the Master Key/);
  });

  it("asks for a step-up before disconnecting every device", async () => {
    const { token, step } = await secured();
    const bare = await h.request("DELETE", "/v1/devices", { token: token() });
    expect(bare.statusCode, bare.body).toBe(403);
    expect(bare.json().error.code).toBe("step_up_required");
    expect((await h.request("GET", "/v1/session", { token: token() })).statusCode).toBe(200);
    const done = await step("DELETE", "/v1/devices");
    expect(done.json()).toMatchObject({ status: "disconnected" });
    expect((await h.request("GET", "/v1/session", { token: token() })).statusCode).toBe(401);
  });

  it("writes a change, its email and its audit entry together, or none of them", async () => {
    const { id, step } = await secured();
    const outboxBefore = await h.db.selectFrom("outbox").select("id").where("account_id", "=", id).execute();
    // The audit entry cannot be written: the whole change must roll back with it.
    const original = h.services.audit.append.bind(h.services.audit);
    h.services.audit.append = async (event, context, trx) => {
      if (event.event === "security.anti_phishing_code_set") throw new Error("audit storage failed");
      return original(event, context, trx);
    };
    try {
      const failed = await step("PUT", "/v1/security/anti-phishing-code", { code: "blue-heron" });
      expect(failed.statusCode).toBe(500);
    } finally {
      h.services.audit.append = original;
    }
    const account = await h.services.accounts.findById(id);
    expect(account?.antiPhishingCode).toBeNull();
    const outboxAfter = await h.db.selectFrom("outbox").select("id").where("account_id", "=", id).execute();
    expect(outboxAfter).toHaveLength(outboxBefore.length);
  });
});
