import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashToken } from "../../src/crypto/tokens.js";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { Harness, newUser, type TestUser } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { engines } from "../helpers/storage.js";

const HOUR = 3_600_000;

describe.each(engines)("changing the account's email address on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  /** A trader with an authenticator app, and a way to make step-up changes with it. */
  const trader = async () => {
    const user = await h.createVerifiedUser();
    const enrolled = await enrollTotp(h, await h.sessionToken(user), { password: user.password });
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
    return { user, accountId: await h.accountId(user), step, token: () => token };
  };

  /** Asks for the change, delivers the mail and returns the confirmation token from the new address. */
  const askFor = async (owner: Awaited<ReturnType<typeof trader>>, newEmail: string) => {
    const asked = await owner.step("POST", "/v1/security/email", { newEmail });
    expect(asked.statusCode, asked.body).toBe(202);
    await h.deliverMail();
    const confirmation = await h.smtp.waitFor(newEmail, /Confirm your new email address/);
    return linkToken(confirmation, "/confirm-email");
  };

  it("takes effect when the new address confirms, tells the old one at once, and holds withdrawals 72 hours", async () => {
    const owner = await trader();
    const newEmail = newUser().email;
    const mailBefore = h.smtp.messages.length;
    const asked = await owner.step("POST", "/v1/security/email", { newEmail });
    expect(asked.statusCode, asked.body).toBe(202);
    expect(asked.json()).toEqual({ status: "confirmation_sent" });
    await h.deliverMail();
    // The old address hears of it at once, with the lock link; nothing has changed yet.
    const notice = await h.smtp.waitFor(owner.user.email, /asked to change your account's email address/);
    expect(notice.text).toContain(newEmail);
    expect(linkToken(notice, "/lock-account")).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect((await h.services.accounts.findById(owner.accountId))!.email).toBe(owner.user.email);
    const confirmation = await h.smtp.waitFor(newEmail, /Confirm your new email address/);
    const token = linkToken(confirmation, "/confirm-email");
    expect(h.smtp.messages.length).toBeGreaterThan(mailBefore);

    // Stored hashed, never in clear.
    const stored = await h.db
      .selectFrom("one_time_tokens")
      .select(["token_hash", "expires_at", "created_at"])
      .where("purpose", "=", "confirm_email")
      .where("account_id", "=", owner.accountId)
      .execute();
    expect(stored).toHaveLength(1);
    expect(stored[0]!.token_hash).toBe(hashToken(token));
    expect(Number(stored[0]!.expires_at) - Number(stored[0]!.created_at)).toBe(24 * HOUR);

    const confirmed = await h.request("POST", "/v1/security/email/confirm", { body: { token } });
    expect(confirmed.statusCode, confirmed.body).toBe(200);
    expect(confirmed.json()).toEqual({
      status: "changed",
      email: newEmail,
      holdUntil: new Date(h.clock.now() + 72 * HOUR).toISOString(),
    });
    expect((await h.services.accounts.findById(owner.accountId))!.email).toBe(newEmail);
    const holds = await h.services.holds.active(owner.accountId);
    expect(holds).toEqual([{ kind: "email_changed", until: h.clock.now() + 72 * HOUR }]);
    const capabilities = await h.request("GET", "/v1/capabilities", { token: owner.token() });
    expect(capabilities.json().products["withdraw.crypto"].reasons).toContainEqual(
      expect.objectContaining({ code: "security_hold", hold: "email_changed" }),
    );

    await h.deliverMail();
    for (const address of [owner.user.email, newEmail]) {
      const changed = await h.smtp.waitFor(address, /email address changed/);
      expect(changed.text).toContain(`from ${owner.user.email} to ${newEmail}`);
      expect(linkToken(changed, "/lock-account")).toBeTruthy();
    }
    // Single use.
    const again = await h.request("POST", "/v1/security/email/confirm", { body: { token } });
    expect(again.statusCode).toBe(410);
    const audit = await h.db
      .selectFrom("audit_log")
      .select("event")
      .where("account_id", "=", owner.accountId)
      .where("event", "like", "security.email_%")
      .execute();
    expect(audit.map((row) => row.event).sort()).toEqual([
      "security.email_change_requested",
      "security.email_changed",
    ]);
  });

  it("lets exactly one of ten parallel uses of the confirmation link through", async () => {
    const owner = await trader();
    const newEmail = newUser().email;
    const token = await askFor(owner, newEmail);
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => h.request("POST", "/v1/security/email/confirm", { body: { token } })),
    );
    expect(answers.filter((r) => r.statusCode === 200)).toHaveLength(1);
    expect(answers.filter((r) => r.statusCode === 410)).toHaveLength(9);
    const holds = await h.services.holds.active(owner.accountId);
    expect(holds).toHaveLength(1);
  });

  it("refuses a link older than 24 hours, and one replaced by a newer request", async () => {
    const owner = await trader();
    const first = await askFor(owner, newUser().email);
    const secondAddress = newUser().email;
    const second = await askFor(owner, secondAddress);
    const replaced = await h.request("POST", "/v1/security/email/confirm", { body: { token: first } });
    expect(replaced.statusCode).toBe(410);
    h.clock.advance(24 * HOUR);
    const late = await h.request("POST", "/v1/security/email/confirm", { body: { token: second } });
    expect(late.statusCode).toBe(410);
    expect(late.json().error.code).toBe("expired");
    expect((await h.services.accounts.findById(owner.accountId))!.email).toBe(owner.user.email);
  });

  it("answers the same for an address another account has, and changes nothing", async () => {
    const other: TestUser = await h.createVerifiedUser();
    const owner = await trader();
    const free = await owner.step("POST", "/v1/security/email", { newEmail: newUser().email });
    const taken = await owner.step("POST", "/v1/security/email", { newEmail: other.email.toUpperCase() });
    expect(taken.statusCode).toBe(free.statusCode);
    expect(taken.json()).toEqual(free.json());
    await h.deliverMail();
    // The owner of the taken address is told, with no link; the asker's account is unchanged.
    const told = await h.smtp.waitFor(other.email, /move an account to your email address/);
    expect(told.text).not.toMatch(/confirm-email/);
    expect((await h.services.accounts.findById(owner.accountId))!.email).toBe(owner.user.email);
    expect((await h.services.accounts.findById(await h.accountId(other)))!.email).toBe(other.email);
    const pending = await h.db
      .selectFrom("one_time_tokens")
      .select("token_hash")
      .where("purpose", "=", "confirm_email")
      .where("account_id", "=", owner.accountId)
      .where("used_at", "is", null)
      .execute();
    expect(pending).toHaveLength(0);
  });

  it("refuses a confirmation when another account took the address meanwhile", async () => {
    const owner = await trader();
    const wanted = newUser();
    const token = await askFor(owner, wanted.email);
    await h.createVerifiedUser({ email: wanted.email });
    const confirmed = await h.request("POST", "/v1/security/email/confirm", { body: { token } });
    expect(confirmed.statusCode, confirmed.body).toBe(409);
    expect((await h.services.accounts.findById(owner.accountId))!.email).toBe(owner.user.email);
  });

  it("is refused under the Global Settings Lock, asked for or confirmed", async () => {
    const owner = await trader();
    const token = await askFor(owner, newUser().email);
    const locked = await owner.step("POST", "/v1/security/global-lock", { unlockDelayDays: 1 });
    expect(locked.statusCode, locked.body).toBe(200);
    const asked = await h.request("POST", "/v1/security/email", {
      token: owner.token(),
      body: { newEmail: newUser().email },
    });
    expect(asked.statusCode, asked.body).toBe(403);
    expect(asked.json().error.code).toBe("settings_locked");
    const confirmed = await h.request("POST", "/v1/security/email/confirm", { body: { token } });
    expect(confirmed.statusCode, confirmed.body).toBe(403);
    expect(confirmed.json().error.code).toBe("settings_locked");
    expect((await h.services.accounts.findById(owner.accountId))!.email).toBe(owner.user.email);
  });

  it("needs a second factor on the account, and a well-formed address", async () => {
    const user = await h.createVerifiedUser();
    const token = await h.sessionToken(user);
    const noFactor = await h.request("POST", "/v1/security/email", {
      token,
      body: { newEmail: newUser().email },
    });
    expect(noFactor.statusCode, noFactor.body).toBe(409);
    const bad = await h.request("POST", "/v1/security/email", {
      token,
      body: { newEmail: "not an address" },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.details[0].field).toBe("newEmail");
    const badToken = await h.request("POST", "/v1/security/email/confirm", { body: { token: "nope" } });
    expect(badToken.statusCode).toBe(400);
  });
});
