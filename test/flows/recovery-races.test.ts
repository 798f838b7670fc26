import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Account } from "../../src/accounts/accounts.js";
import { CountingHasher } from "../helpers/counting-hasher.js";
import { withStepUp } from "../helpers/factors.js";
import { Harness, newUser, type TestUser } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { engines } from "../helpers/storage.js";

const MASTER_KEY = "correct horse battery staple vault";
const NEW_PASSWORD = "a fresh passphrase 2026";
const HOUR = 3_600_000;

/** The counting hasher, counting the hashes it makes too (the work a reset does before the key check). */
class HashCountingHasher extends CountingHasher {
  hashes = 0;
  override hash(password: string): Promise<string> {
    this.hashes += 1;
    return super.hash(password);
  }
  override reset(): void {
    super.reset();
    this.hashes = 0;
  }
}

/**
 * Recovery under parallel requests (docs/behaviour.md §4, §13): a password-reset link buys exactly one
 * Master Key check however many requests carry it at once, a right and a wrong key cost the same work,
 * and "three links an hour" (and three verification links an hour) hold when the requests arrive together.
 */
describe.each(engines)("recovery under parallel requests on %s", (engine) => {
  let h: Harness;
  const hasher = new HashCountingHasher();
  let addresses = 0;
  /** Each test from addresses of its own, clear of the per-address limits the others used. */
  const nextIp = () => {
    addresses += 1;
    return `198.18.${addresses >> 8}.${addresses & 255}`;
  };

  beforeAll(async () => {
    h = await Harness.create(engine, { hasher });
  });
  afterAll(async () => {
    await h.close();
  });

  const withMasterKey = async (): Promise<TestUser> => {
    const user = await h.createVerifiedUser();
    const token = await h.sessionToken(user);
    const set = await withStepUp(
      h,
      token,
      "PUT",
      "/v1/security/master-key",
      { password: user.password },
      { body: { masterKey: MASTER_KEY } },
    );
    expect(set.response.statusCode, set.response.body).toBe(200);
    return user;
  };

  const resetLink = async (user: TestUser): Promise<string> => {
    const asked = await h.request("POST", "/v1/recovery/password", {
      body: { email: user.email, username: user.username, botCheck: await h.botCheck() },
      ip: nextIp(),
    });
    expect(asked.statusCode).toBe(202);
    await h.deliverMail();
    const mail = h.smtp
      .to(user.email)
      .filter((m) => /Reset your password/.test(m.subject))
      .at(-1);
    expect(mail, "a reset email").toBeDefined();
    return linkToken(mail!, "/reset-password");
  };

  const complete = (token: string, extra: Record<string, unknown> = {}) =>
    h.request("POST", "/v1/recovery/password/complete", {
      body: { token, newPassword: NEW_PASSWORD, ...extra },
      ip: nextIp(),
    });

  /** Twelve requests at once with one link: eleven wrong keys and the right one, last. */
  const race = async (link: string) => {
    hasher.reset();
    const keys = Array.from({ length: 12 }, (_, i) =>
      i === 11 ? MASTER_KEY : `wrong master key guess ${i}`,
    );
    const responses = await Promise.all(keys.map((masterKey) => complete(link, { masterKey })));
    return responses.map((r) => r.statusCode);
  };

  const linksIssued = async (accountId: string, purpose: "reset_password" | "verify_email") => {
    const row = await h.db
      .selectFrom("one_time_tokens")
      .select((eb) => eb.fn.countAll<number>().as("count"))
      .where("account_id", "=", accountId)
      .where("purpose", "=", purpose)
      .where("created_at", ">", h.clock.now() - HOUR)
      .executeTakeFirstOrThrow();
    return Number(row.count);
  };

  it("checks the Master Key exactly once for a link sent by many requests at once", async () => {
    const user = await withMasterKey();
    const accountId = await h.accountId(user);
    const link = await resetLink(user);
    const statuses = await race(link);
    // One request spent the link and had its key checked; every other one found it spent.
    expect(hasher.realVerifications).toBe(1);
    expect(statuses.filter((s) => s === 410)).toHaveLength(11);
    expect(statuses.filter((s) => s !== 410)).toHaveLength(1);
    const checks = await h.services.audit.list({
      accountId,
      events: ["password_reset.master_key"],
      limit: 50,
    });
    expect(checks).toHaveLength(1);
    // And the link is spent, whatever that one check found.
    expect((await complete(link, { masterKey: MASTER_KEY })).statusCode).toBe(410);
  });

  it("checks the Master Key exactly once per link while the account is restricted, and the reset still works", async () => {
    const user = await withMasterKey();
    const accountId = await h.accountId(user);
    for (let i = 0; i < 5; i += 1) await h.signIn(user.username, `wrong password ${i}`, { ip: nextIp() });
    expect((await h.services.guard.status(accountId)).restricted).toBe(true);
    const statuses = await race(await resetLink(user));
    expect(hasher.realVerifications).toBe(1);
    expect(statuses.filter((s) => s === 410)).toHaveLength(11);
    // Sequentially too: one link, one check — a wrong key spends it, the right one then finds it spent.
    const link = await resetLink(user);
    hasher.reset();
    expect((await complete(link, { masterKey: "wrong master key, once more" })).statusCode).toBe(401);
    expect((await complete(link, { masterKey: MASTER_KEY })).statusCode).toBe(410);
    expect(hasher.realVerifications).toBe(1);
    const fresh = await complete(await resetLink(user), { masterKey: MASTER_KEY });
    expect(fresh.statusCode, fresh.body).toBe(200);
    expect((await h.services.guard.status(accountId)).restricted).toBe(false);
  });

  it("does the same hashing work for a wrong Master Key as for the right one", async () => {
    const user = await withMasterKey();
    const wrongLink = await resetLink(user);
    const rightLink = await resetLink(user);
    hasher.reset();
    expect((await complete(wrongLink, { masterKey: "not the master key at all" })).statusCode).toBe(401);
    const wrongWork = { hashes: hasher.hashes, verifications: hasher.realVerifications };
    hasher.reset();
    const right = await complete(rightLink, { masterKey: MASTER_KEY });
    expect(right.statusCode, right.body).toBe(200);
    const rightWork = { hashes: hasher.hashes, verifications: hasher.realVerifications };
    expect(wrongWork).toEqual({ hashes: 1, verifications: 1 });
    expect(rightWork).toEqual(wrongWork);
  });

  it("leaves the link unspent when the new password is refused, before the Master Key is asked", async () => {
    const user = await withMasterKey();
    const link = await resetLink(user);
    hasher.reset();
    const weak = await complete(link, { masterKey: "a wrong one, never checked", newPassword: "short" });
    expect(weak.statusCode).toBe(400);
    expect(weak.json().error.code).toBe("weak_password");
    expect(hasher.realVerifications).toBe(0);
    const missing = await complete(link);
    expect(missing.json().error.code).toBe("master_key_required");
    const done = await complete(link, { masterKey: MASTER_KEY });
    expect(done.statusCode, done.body).toBe(200);
  });

  it("issues at most three reset links an hour however many requests arrive at once", async () => {
    const user = await h.createVerifiedUser();
    const accountId = await h.accountId(user);
    const checks = await Promise.all(Array.from({ length: 12 }, () => h.botCheck()));
    const responses = await Promise.all(
      checks.map((botCheck, i) =>
        h.request("POST", "/v1/recovery/password", {
          body: { email: user.email, username: user.username, botCheck },
          ip: `198.18.200.${i + 1}`,
        }),
      ),
    );
    expect(responses.map((r) => r.statusCode)).toEqual(Array(12).fill(202));
    expect(await linksIssued(accountId, "reset_password")).toBe(3);
    await h.deliverMail();
    expect(h.smtp.to(user.email).filter((m) => /Reset your password/.test(m.subject))).toHaveLength(3);
    const refused = await h.services.audit.list({
      accountId,
      events: ["recovery.password_requested"],
      limit: 50,
    });
    expect(refused.filter((e) => e.outcome === "refused")).toHaveLength(9);
  });

  it("sends at most three verification links an hour however many sign-ins arrive at once", async () => {
    const user = newUser();
    expect((await h.signUp(user, nextIp())).statusCode).toBe(202);
    const accountId = await h.accountId(user);
    expect(await linksIssued(accountId, "verify_email")).toBe(1);
    // Five at once: as many correct-password attempts as the account's counter lets run together.
    const checks = await Promise.all(Array.from({ length: 5 }, () => h.botCheck()));
    const responses = await Promise.all(
      checks.map((botCheck, i) =>
        h.request("POST", "/v1/sign-in", {
          body: { identifier: user.username, password: user.password, botCheck },
          ip: `198.18.201.${i + 1}`,
        }),
      ),
    );
    expect(responses.map((r) => r.json().error?.code)).toEqual(Array(5).fill("email_not_verified"));
    expect(await linksIssued(accountId, "verify_email")).toBe(3);
  });

  it("counts and issues a verification link as one step, however many resends run at once", async () => {
    const user = newUser();
    expect((await h.signUp(user, nextIp())).statusCode).toBe(202);
    const accountId = await h.accountId(user);
    const account = (await h.services.accounts.findById(accountId))!;
    // The resend a correct password on an unverified account triggers, called directly: through HTTP the
    // attempt counter lets only five sign-ins of one account run together, and their Argon2 work spreads
    // them out, so the race this closes shows only now and then there.
    const signIn = h.services.signIn as unknown as { resendVerification(account: Account): Promise<void> };
    await Promise.all(Array.from({ length: 12 }, () => signIn.resendVerification(account)));
    expect(await linksIssued(accountId, "verify_email")).toBe(3);
  });
});
