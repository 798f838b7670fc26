import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { Harness, newUser } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { engines } from "../helpers/storage.js";

const HOUR = 3_600_000;

let ipCounter = 0;
/** An address of its own for each request that is rate-limited per address (reset links, sign-ups). */
const freshIp = () => {
  ipCounter += 1;
  return `198.18.${200 + (Math.floor(ipCounter / 250) % 50)}.${(ipCounter % 250) + 1}`;
};

/**
 * Emailed single-use links and the events that must cancel them (docs/behaviour.md §5, §7): the account's
 * security epoch. A pending email change asked for by someone else, or a reset link sent to the old
 * mailbox, stops working when the owner changes the email, the password, disconnects every device, removes
 * a factor or freezes the account; the links that only take access away (lock the account) keep working.
 * Email verification revokes every other verification link, and only the verification that verifies makes
 * its device known. The email change's step-up covers the exact address that is mailed and stored.
 */
describe.each(engines)("emailed links cancelled by security events on %s", (engine) => {
  let h: Harness;
  /** Device approval on (the harness default is off), for the verification link's device. */
  let strict: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
    strict = await Harness.create(engine, { settings: { signIn: { deviceApproval: true } } });
  });
  afterAll(async () => {
    await h?.close();
    await strict?.close();
  });

  /** A trader with an authenticator app, and a way to make step-up changes from their own session. */
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
    return {
      user,
      accountId: await h.accountId(user),
      secret: enrolled.secret,
      factorId: enrolled.factorId,
      step,
      session: () => token,
    };
  };
  type Trader = Awaited<ReturnType<typeof trader>>;

  /** Someone with the password and one phished code opens a session and asks to move the account. */
  const hijackerAsksForEmailChange = async (owner: Trader) => {
    const started = await h.signIn(owner.user.username, owner.user.password, { client: "app" });
    const second = await h.request("POST", `/v1/sign-in/${started.json().flowId}/totp`, {
      body: { code: nextTotpCode(h, owner.secret) },
    });
    expect(second.statusCode, second.body).toBe(200);
    const evil = newUser().email;
    const asked = await withStepUp(
      h,
      second.json().token,
      "POST",
      "/v1/security/email",
      { totp: nextTotpCode(h, owner.secret) },
      { body: { newEmail: evil } },
    );
    expect(asked.response.statusCode, asked.response.body).toBe(202);
    await h.deliverMail();
    const confirmation = await h.smtp.waitFor(evil, /Confirm your new email address/);
    const notice = await h.smtp.waitFor(owner.user.email, /asked to change your account's email address/);
    return {
      evil,
      confirmToken: linkToken(confirmation, "/confirm-email"),
      lockToken: linkToken(notice, "/lock-account"),
    };
  };

  /** A reset link, as whoever reads the account's mailbox right now receives it. */
  const resetLink = async (email: string, username: string) => {
    const isReset = (m: { subject: string }) => /Reset your password/.test(m.subject);
    const before = h.smtp.to(email).filter(isReset).length;
    const asked = await h.request("POST", "/v1/recovery/password", {
      body: { email, username, botCheck: await h.botCheck() },
      ip: freshIp(),
    });
    expect(asked.statusCode, asked.body).toBe(202);
    await h.deliverMail();
    const mails = h.smtp.to(email).filter(isReset);
    expect(mails).toHaveLength(before + 1);
    return linkToken(mails.at(-1)!, "/reset-password");
  };

  const reset = (token: string, newPassword: string) =>
    h.request("POST", "/v1/recovery/password/complete", { body: { token, newPassword } });

  const events: [string, (owner: Trader, lockToken: string) => Promise<void>][] = [
    [
      "disconnects every device",
      async (owner) => {
        const done = await owner.step("DELETE", "/v1/devices");
        expect(done.statusCode, done.body).toBe(200);
      },
    ],
    [
      "changes the password",
      async (owner) => {
        const done = await owner.step("POST", "/v1/security/password", {
          currentPassword: owner.user.password,
          newPassword: "the owner's own new password 2024",
        });
        expect(done.statusCode, done.body).toBe(200);
      },
    ],
    [
      "removes a second factor",
      async (owner) => {
        const done = await owner.step("DELETE", `/v1/security/factors/${owner.factorId}`);
        expect(done.statusCode, done.body).toBe(200);
      },
    ],
    [
      "freezes the account with the lock link",
      async (_owner, lockToken) => {
        const done = await h.request("POST", "/v1/account-lock", { body: { token: lockToken } });
        expect(done.statusCode, done.body).toBe(200);
      },
    ],
  ];

  it.each(events)(
    "when the owner %s, a pending email change and reset link stop working",
    async (name, event) => {
      const owner = await trader();
      const pending = await hijackerAsksForEmailChange(owner);
      const resetToken = await resetLink(owner.user.email, owner.user.username);

      await event(owner, pending.lockToken);
      h.clock.advance(2 * HOUR - 60_000);

      const confirmed = await h.request("POST", "/v1/security/email/confirm", {
        body: { token: pending.confirmToken },
      });
      expect(confirmed.statusCode, confirmed.body).toBe(410);
      expect(confirmed.json().error.code).toBe("expired");
      expect((await h.services.accounts.findById(owner.accountId))!.email).toBe(owner.user.email);

      const reused = await reset(resetToken, "a password the thief chose 777");
      expect(reused.statusCode, reused.body).toBe(410);
      const thief = await h.signIn(owner.user.username, "a password the thief chose 777", { ip: freshIp() });
      expect(thief.statusCode, thief.body).toBe(401);

      if (!name.startsWith("freezes")) {
        // A link that only takes access away belongs to no epoch: the owner's lock link still freezes.
        const frozen = await h.request("POST", "/v1/account-lock", { body: { token: pending.lockToken } });
        expect(frozen.statusCode, frozen.body).toBe(200);
      }
    },
  );

  it("lets the email change's own link confirm it, which cancels a reset link sent to the old mailbox", async () => {
    const owner = await trader();
    const oldMailboxReset = await resetLink(owner.user.email, owner.user.username);
    const newEmail = newUser().email;
    const asked = await owner.step("POST", "/v1/security/email", { newEmail });
    expect(asked.statusCode, asked.body).toBe(202);
    await h.deliverMail();
    const confirmation = await h.smtp.waitFor(newEmail, /Confirm your new email address/);
    const confirmed = await h.request("POST", "/v1/security/email/confirm", {
      body: { token: linkToken(confirmation, "/confirm-email") },
    });
    expect(confirmed.statusCode, confirmed.body).toBe(200);
    expect((await h.services.accounts.findById(owner.accountId))!.email).toBe(newEmail);

    h.clock.advance(30 * 60_000);
    const stale = await reset(oldMailboxReset, "a password the thief chose 777");
    expect(stale.statusCode, stale.body).toBe(410);
    expect(stale.json().error.code).toBe("expired");
    // A link sent after the change, to the new address, works.
    const fresh = await reset(
      await resetLink(newEmail, owner.user.username),
      "the owner's reset password 2024",
    );
    expect(fresh.statusCode, fresh.body).toBe(200);
  });

  it("covers in the email change's step-up the exact address it mails and stores", async () => {
    const owner = await trader();
    const shown = newUser().email; // lower case
    const other = shown.replace(/^./, (c) => c.toUpperCase()).replace("@example", "@EXAMPLE");
    expect(other).not.toBe(shown);
    expect(other.toLowerCase()).toBe(shown);
    const asked = await h.request("POST", "/v1/security/email", {
      token: owner.session(),
      body: { newEmail: shown },
    });
    expect(asked.statusCode, asked.body).toBe(403);
    const action = asked.json().error.action as { id: string; summary: string };
    expect(action.summary).toBe(`Change your email address to ${shown}`);
    const confirm = await h.request("POST", `/v1/actions/${action.id}/confirm`, {
      token: owner.session(),
      body: { totp: nextTotpCode(h, owner.secret) },
    });
    expect(confirm.statusCode, confirm.body).toBe(200);
    const session = (confirm.json().token as string | undefined) ?? owner.session();
    const present = (newEmail: string) =>
      h.request("POST", "/v1/security/email", {
        token: session,
        body: { newEmail },
        headers: { "x-action-id": action.id },
      });

    // Another spelling is another action: the owner is asked again, and nothing is sent.
    const spelledOtherwise = await present(other);
    expect(spelledOtherwise.statusCode, spelledOtherwise.body).toBe(403);
    expect(spelledOtherwise.json().error.code).toBe("step_up_required");
    const pending = () =>
      h.db
        .selectFrom("one_time_tokens")
        .select("data")
        .where("purpose", "=", "confirm_email")
        .where("account_id", "=", owner.accountId)
        .where("used_at", "is", null)
        .execute();
    expect(await pending()).toEqual([]);

    // The spelling confirmed is the one mailed.
    const asConfirmed = await present(shown);
    expect(asConfirmed.statusCode, asConfirmed.body).toBe(202);
    expect((await pending()).map((l) => JSON.parse(l.data!).to)).toEqual([shown]);
  });

  describe("email verification", () => {
    /** Sign-up, then a sign-in before verifying (which sends a second link); returns both links. */
    const twoLinks = async () => {
      const user = newUser();
      const ip = freshIp();
      expect((await strict.signUp(user, ip)).statusCode).toBe(202);
      const early = await strict.signIn(user.username, user.password, { ip });
      expect(early.json().error?.code, early.body).toBe("email_not_verified");
      await strict.deliverMail();
      await strict.smtp.waitFor(user.email, /Verify your email/);
      const links = strict.smtp
        .to(user.email)
        .filter((m) => /Verify your email/.test(m.subject))
        .map((m) => linkToken(m, "/verify-email"));
      expect(links).toHaveLength(2);
      return { user, links };
    };
    const verify = (token: string, device: string, ip: string) =>
      strict.request("POST", "/v1/accounts/verify-email", {
        body: { token },
        headers: { "x-device-id": device },
        ip,
      });
    const appSignIn = async (user: { username: string; password: string }, device: string, ip: string) =>
      strict.request("POST", "/v1/sign-in", {
        body: {
          identifier: user.username,
          password: user.password,
          client: "app",
          deviceId: device,
          botCheck: await strict.botCheck(),
        },
        ip,
      });

    it("revokes every other verification link, so a leftover one cannot make another device known", async () => {
      const { user, links } = await twoLinks();
      const ownerDevice = `owner-device-${freshIp().replaceAll(".", "")}-aaaaaaaaaaaa`;
      const home = freshIp();
      const first = await verify(links[0]!, ownerDevice, home);
      expect(first.statusCode, first.body).toBe(200);

      strict.clock.advance(6 * HOUR);
      const intruderDevice = `intruder-device-${freshIp().replaceAll(".", "")}-bbbbbbbbbbbb`;
      const elsewhere = "192.0.2.66";
      const leftover = await verify(links[1]!, intruderDevice, elsewhere);
      expect(leftover.statusCode, leftover.body).toBe(410);

      const intruder = await appSignIn(user, intruderDevice, elsewhere);
      expect(intruder.json().state, intruder.body).toBe("device_approval");
      const owner = await appSignIn(user, ownerDevice, home);
      expect(owner.json().state, owner.body).toBe("authenticated");
    });

    it("of two links used at once, verifies with one and makes only its device known", async () => {
      const { user, links } = await twoLinks();
      const devices = links.map((_, i) => `racing-device-${i}-${freshIp().replaceAll(".", "")}-cccccccc`);
      const answers = await Promise.all(links.map((link, i) => verify(link, devices[i]!, freshIp())));
      expect(answers.map((a) => a.statusCode).sort()).toEqual([200, 410]);
      const accountId = (await strict.services.accounts.findByUsername(user.username))!.id;
      const known = await strict.db
        .selectFrom("devices")
        .select("key_hash")
        .where("account_id", "=", accountId)
        .execute();
      expect(known).toHaveLength(1);
      const winner = devices[answers.findIndex((a) => a.statusCode === 200)]!;
      expect(known[0]!.key_hash).toBe(strict.services.devices.keyHash(winner));
    });
  });
});
