import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashToken } from "../../src/crypto/tokens.js";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness, PUBLIC_URL, sessionCookie, type TestUser } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

describe.each(engines)("sessions on %s (behaviour §5)", (engine) => {
  let h: Harness;
  let user: TestUser;
  beforeAll(async () => {
    h = await Harness.create(engine);
    user = await h.createVerifiedUser();
  });
  afterAll(async () => {
    await h.close();
  });

  it("stores only the SHA-256 of a 256-bit token", async () => {
    const token = await h.sessionToken(user);
    expect(Buffer.from(token, "base64url").length).toBe(32);
    const rows = await h.db.selectFrom("sessions").select(["token_hash"]).execute();
    expect(rows.some((r) => r.token_hash === token)).toBe(false);
    expect(rows.some((r) => r.token_hash === hashToken(token))).toBe(true);
  });

  it("gives apps a bearer token and browsers only a cookie", async () => {
    const app = await h.signIn(user.username, user.password, { client: "app" });
    expect(app.json().token).toEqual(expect.any(String));
    const me = await h.request("GET", "/v1/session", { token: app.json().token });
    expect(me.json().session).toMatchObject({ client: "app", aal: 1 });
    const web = await h.signIn(user.username, user.password);
    expect(web.json().token).toBeUndefined();
    expect((await h.request("GET", "/v1/session", { cookie: sessionCookie(web) })).statusCode).toBe(200);
  });

  it("ends a web session after 30 idle minutes, and activity keeps it alive", async () => {
    const cookie = sessionCookie(await h.signIn(user.username, user.password));
    h.clock.advance(29 * MINUTE);
    expect((await h.request("GET", "/v1/session", { cookie })).statusCode).toBe(200);
    h.clock.advance(29 * MINUTE);
    expect((await h.request("GET", "/v1/session", { cookie })).statusCode).toBe(200);
    h.clock.advance(31 * MINUTE);
    expect((await h.request("GET", "/v1/session", { cookie })).statusCode).toBe(401);
  });

  it("ends a web session 12 hours after sign-in however active it is", async () => {
    const cookie = sessionCookie(await h.signIn(user.username, user.password));
    for (let elapsed = 0; elapsed < 12 * HOUR - 20 * MINUTE; elapsed += 20 * MINUTE) {
      h.clock.advance(20 * MINUTE);
      expect((await h.request("GET", "/v1/session", { cookie })).statusCode).toBe(200);
    }
    h.clock.advance(20 * MINUTE);
    expect((await h.request("GET", "/v1/session", { cookie })).statusCode).toBe(401);
  });

  it("keeps app sessions for 24 idle hours and 30 days at most", async () => {
    const token = await h.sessionToken(user);
    h.clock.advance(23 * HOUR);
    expect((await h.request("GET", "/v1/session", { token })).statusCode).toBe(200);
    h.clock.advance(25 * HOUR);
    expect((await h.request("GET", "/v1/session", { token })).statusCode).toBe(401);
    const daily = await h.sessionToken(user);
    let elapsed = 0;
    while (elapsed + 23 * HOUR < 30 * 24 * HOUR) {
      h.clock.advance(23 * HOUR);
      elapsed += 23 * HOUR;
      expect((await h.request("GET", "/v1/session", { token: daily })).statusCode).toBe(200);
    }
    h.clock.advance(23 * HOUR);
    expect((await h.request("GET", "/v1/session", { token: daily })).statusCode).toBe(401);
  });

  it("lists sessions with 'this session', ends one, and ends all others", async () => {
    const other = await h.createVerifiedUser();
    const first = await h.sessionToken(other);
    const second = await h.sessionToken(other);
    const third = await h.sessionToken(other);
    const list = await h.request("GET", "/v1/sessions", { token: first });
    expect(list.statusCode).toBe(200);
    const sessions = list.json().sessions as { id: string; current: boolean; ip: string }[];
    expect(sessions).toHaveLength(3);
    expect(sessions.filter((s) => s.current)).toHaveLength(1);
    expect(sessions[0]?.ip).toBe("203.0.113.10");

    const secondId = (await h.request("GET", "/v1/session", { token: second })).json().session.id;
    expect((await h.request("DELETE", `/v1/sessions/${secondId}`, { token: first })).statusCode).toBe(200);
    expect((await h.request("GET", "/v1/session", { token: second })).statusCode).toBe(401);
    // Ending it again, or someone else's session, is not found.
    expect((await h.request("DELETE", `/v1/sessions/${secondId}`, { token: first })).statusCode).toBe(404);
    const stranger = await h.sessionToken(user);
    const firstId = (await h.request("GET", "/v1/session", { token: first })).json().session.id;
    expect((await h.request("DELETE", `/v1/sessions/${firstId}`, { token: stranger })).statusCode).toBe(404);

    const endOthers = await h.request("DELETE", "/v1/sessions", { token: first });
    expect(endOthers.json()).toMatchObject({ ended: 1 });
    expect((await h.request("GET", "/v1/session", { token: third })).statusCode).toBe(401);
    expect((await h.request("GET", "/v1/session", { token: first })).statusCode).toBe(200);
  });

  it("refuses a cookie-authenticated change without this site's Origin", async () => {
    const cookie = sessionCookie(await h.signIn(user.username, user.password));
    const noOrigin = await h.request("DELETE", "/v1/session", {
      headers: { cookie: `portcullis_session=${cookie}` },
    });
    expect(noOrigin.statusCode).toBe(403);
    const otherSite = await h.request("DELETE", "/v1/session", {
      headers: { cookie: `portcullis_session=${cookie}`, origin: "https://evil.example" },
    });
    expect(otherSite.statusCode).toBe(403);
    expect(otherSite.json().error).toMatchObject({ code: "forbidden", reason: "origin_mismatch" });
    const sameSite = await h.request("DELETE", "/v1/session", {
      headers: { cookie: `portcullis_session=${cookie}`, origin: PUBLIC_URL },
    });
    expect(sameSite.statusCode).toBe(200);
  });

  it("shows the owner's access history, newest first, with paging", async () => {
    const owner = await h.createVerifiedUser();
    await h.signIn(owner.username, "definitely not it");
    const token = await h.sessionToken(owner);
    const page = await h.request("GET", "/v1/activity", { token, query: { limit: "2" } });
    expect(page.statusCode).toBe(200);
    const { items, nextBefore } = page.json();
    expect(items).toHaveLength(2);
    expect(items[0].event).toBe("sign_in.completed");
    const rest = await h.request("GET", "/v1/activity", { token, query: { before: String(nextBefore) } });
    const events = rest
      .json()
      .items.map((i: { event: string; outcome: string }) => `${i.event}:${i.outcome}`);
    expect(events).toContain("sign_in.password:failure");
    expect(events).toContain("account.created:success");
  });

  it("lists every security change in words, and what each confirmation confirmed", async () => {
    const owner = await h.createVerifiedUser();
    let token = await h.sessionToken(owner);
    const enrolled = await enrollTotp(h, token, { password: owner.password });
    token = enrolled.token;
    // A wrong code first: failed proofs are shown, passed ones only through what they confirmed.
    const wrong = await h.request("POST", "/v1/security/password", {
      token,
      body: { currentPassword: owner.password, newPassword: "a new and long enough passphrase" },
    });
    const actionId = wrong.json().error.actionId as string;
    expect(
      (await h.request("POST", `/v1/actions/${actionId}/confirm`, { token, body: { totp: "000000" } })).json()
        .error.code,
    ).toBe("invalid_code");
    const changed = await withStepUp(
      h,
      token,
      "POST",
      "/v1/security/password",
      { totp: nextTotpCode(h, enrolled.secret) },
      { body: { currentPassword: owner.password, newPassword: "a new and long enough passphrase" } },
    );
    expect(changed.response.statusCode, changed.response.body).toBe(200);
    const locked = await withStepUp(
      h,
      changed.token,
      "POST",
      "/v1/security/global-lock",
      { totp: nextTotpCode(h, enrolled.secret) },
      { body: { unlockDelayDays: 3 } },
    );
    expect(locked.response.statusCode, locked.response.body).toBe(200);

    const { items } = (await h.request("GET", "/v1/activity", { token: locked.token })).json() as {
      items: { event: string; what: string; result: string }[];
    };
    const lines = items.map((item) => `${item.what} — ${item.result}`);
    expect(lines).toEqual(
      expect.arrayContaining([
        "Turned on the Global Settings Lock (3-day unlock wait) — Done",
        "Confirmed turning on the Global Settings Lock with authenticator code — Done",
        "Changed the password (other sessions were ended) — Done",
        "Confirmed a password change with authenticator code — Done",
        "Authenticator code refused while confirming a change — Failed: wrong",
        "Confirmed adding an authenticator app with password — Done",
      ]),
    );
    // The passed proofs are not listed twice.
    expect(items.filter((item) => item.event === "step_up.totp" && item.result === "Done")).toEqual([]);
  });
});

describe("session cookies behind https", () => {
  it("use the __Host- prefix and Secure", async () => {
    const h = await Harness.create("sqlite", { env: { PORTCULLIS_PUBLIC_URL: "https://portal.example" } });
    try {
      const user = await h.createVerifiedUser();
      const response = await h.signIn(user.username, user.password);
      const cookies = [response.headers["set-cookie"] ?? []].flat();
      const cookie = cookies.find((c) => c.startsWith("__Host-portcullis_session=")) ?? "";
      expect(cookie).toMatch(/^__Host-portcullis_session=/);
      expect(cookies.some((c) => /^__Host-portcullis_device=.*; Secure/.test(c))).toBe(true);
      expect(cookie).toMatch(/; Secure/);
      expect(cookie).toMatch(/; Path=\//);
      expect(cookie).toMatch(/; HttpOnly/);
      expect(cookie).toMatch(/; SameSite=Strict/);
      expect(cookie).not.toMatch(/Domain=/);
    } finally {
      await h.close();
    }
  });
});

describe.each(engines)("an account disabled by an operator on %s (behaviour §14)", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });
  const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };

  it("ends every session at once, answers sign-in like a wrong password, and can be enabled again", async () => {
    const user = await h.createVerifiedUser();
    const accountId = await h.accountId(user);
    const token = await h.sessionToken(user);
    // Read (and cached) before the account is disabled.
    expect((await h.request("GET", "/v1/session", { token })).statusCode).toBe(200);
    const disabled = await h.request("PUT", `/v1/admin/accounts/${accountId}/disabled`, {
      headers: operator,
      body: { disabled: true },
    });
    expect(disabled.json()).toEqual({ status: "disabled" });
    expect((await h.request("GET", "/v1/session", { token })).statusCode).toBe(401);
    const ended = await h.db
      .selectFrom("sessions")
      .select("end_reason")
      .where("account_id", "=", accountId)
      .execute();
    expect(ended.map((s) => s.end_reason)).toEqual(["account_disabled"]);
    const refused = await h.signIn(user.username, user.password);
    const wrong = await h.signIn(user.username, "not the password at all");
    expect(refused.statusCode).toBe(401);
    expect(refused.body).toBe(wrong.body);
    const audit = await h.services.audit.list({ events: ["account.disabled"], accountId, limit: 1 });
    expect(audit[0]).toMatchObject({ actor: "operator", details: { sessionsEnded: 1 } });

    await h.request("PUT", `/v1/admin/accounts/${accountId}/disabled`, {
      headers: operator,
      body: { disabled: false },
    });
    expect((await h.signIn(user.username, user.password)).statusCode).toBe(200);
    const missing = await h.request(
      "PUT",
      "/v1/admin/accounts/7d444840-9dc0-11d1-b245-5ffdce74fad2/disabled",
      {
        headers: operator,
        body: { disabled: true },
      },
    );
    expect(missing.statusCode).toBe(404);
  });
});
