import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultSettings } from "../../src/config/settings.js";
import { Argon2idHasher, weaknessMessages } from "../../src/factors/password.js";
import { withStepUp } from "../helpers/factors.js";
import { Harness, type TestUser } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { engines } from "../helpers/storage.js";

// Each of these is on the source list of lists/breached-passwords.bin and on no short common list.
const BREACHED = {
  signUp: "ikhouvanjeomer12345",
  change: "gordolee85-mac2olli",
  reset: "14051997sergey",
  signIn: "zeus7169-ladidadi",
};

const SENTENCE = weaknessMessages.breached_password;

function expectBreachedRefusal(
  response: { statusCode: number; body: string; json(): unknown },
  field: "password" | "newPassword",
) {
  expect(response.statusCode, response.body).toBe(400);
  const { error } = response.json() as {
    error: { code: string; reasons: { code: string; message: string }[]; details: unknown };
  };
  expect(error.code).toBe("weak_password");
  expect(error.reasons).toEqual([{ code: "breached_password", message: SENTENCE }]);
  // The same sentence as the problem of the field, for a form to show beside it.
  expect(error.details).toEqual([{ field, message: SENTENCE }]);
}

describe.each(engines)(
  "passwords known from breaches on %s (docs/behaviour.md §1, ASVS 6.2.12)",
  (engine) => {
    let h: Harness;
    beforeAll(async () => {
      h = await Harness.create(engine);
    });
    afterAll(async () => {
      await h.close();
    });

    it("are refused at sign-up, with the reason and its sentence", async () => {
      const response = await h.signUp({
        email: `breach.${engine}@example.test`,
        username: `breach_${engine}`,
        password: BREACHED.signUp,
        country: "DE",
      });
      expectBreachedRefusal(response, "password");
      expect(SENTENCE).toMatch(/appeared in a data breach.*Choose another/);
      // Case is no disguise.
      expectBreachedRefusal(
        await h.signUp({
          email: `breach2.${engine}@example.test`,
          username: `breach2_${engine}`,
          password: BREACHED.signUp.toUpperCase(),
          country: "DE",
        }),
        "password",
      );
      expect(await h.services.accounts.findByUsername(`breach_${engine}`)).toBeNull();
    });

    it("are refused as a new password, with the reason and its sentence", async () => {
      const user = await h.createVerifiedUser();
      const token = await h.sessionToken(user);
      const { response } = await withStepUp(
        h,
        token,
        "POST",
        "/v1/security/password",
        { password: user.password },
        { body: { currentPassword: user.password, newPassword: BREACHED.change } },
      );
      expectBreachedRefusal(response, "newPassword");
      expect((await h.signIn(user.username, user.password)).statusCode).toBe(200);
    });

    it("are refused at a password reset, with the reason and its sentence, and the link stays usable", async () => {
      const user = await h.createVerifiedUser();
      await h.request("POST", "/v1/recovery/password", {
        body: { email: user.email, username: user.username, botCheck: await h.botCheck() },
      });
      await h.deliverMail();
      const token = linkToken(await h.smtp.waitFor(user.email, /Reset your password/), "/reset-password");
      const complete = (newPassword: string) =>
        h.request("POST", "/v1/recovery/password/complete", { body: { token, newPassword } });
      expectBreachedRefusal(await complete(BREACHED.reset), "newPassword");
      expect((await complete("a reset passphrase of my own 19")).statusCode).toBe(200);
    });

    describe("an account whose password was set before it was screened", () => {
      let user: TestUser;
      let accountId: string;
      beforeAll(async () => {
        user = await h.createVerifiedUser();
        accountId = await h.accountId(user);
        // As if set by an earlier version: the hash is written directly, past the rules.
        const hasher = new Argon2idHasher(defaultSettings.password);
        await h.services.accounts.updatePasswordHash(accountId, await hasher.hash(BREACHED.signIn));
        user.password = BREACHED.signIn;
      });

      it("signs in, and is marked, told and audited once", async () => {
        const before = (await h.services.accounts.findById(accountId))!;
        expect(before.passwordBreachedAt).toBeNull();
        const response = await h.signIn(user.username, user.password, { client: "app" });
        expect(response.statusCode, response.body).toBe(200);
        const { token, notices } = response.json() as { token: string; notices: { code: string }[] };
        expect(notices.map((n) => n.code)).toContain("password_breached");

        const session = (await h.request("GET", "/v1/session", { token })).json();
        expect(session.account.passwordBreached).toBe(true);

        const security = (await h.request("GET", "/v1/security", { token })).json();
        const password = security.checklist.find((item: { id: string }) => item.id === "password");
        expect(password).toMatchObject({ done: false, problem: "password_breached" });
        expect(password.message).toMatch(/data breach/);
        expect(security.level).toBe(security.checklist.filter((item: { done: boolean }) => item.done).length);

        // A second sign-in with the same password marks nothing new.
        expect((await h.signIn(user.username, user.password)).statusCode).toBe(200);
        const entries = await h.db
          .selectFrom("audit_log")
          .selectAll()
          .where("account_id", "=", accountId)
          .where("event", "=", "account.password_breached")
          .execute();
        expect(entries).toHaveLength(1);
        expect(entries[0]).toMatchObject({ outcome: "info", actor: "system" });
        // The audit entry names the finding, never the password.
        expect(JSON.stringify(entries)).not.toContain(BREACHED.signIn);

        const activity = (await h.request("GET", "/v1/activity", { token })).json() as {
          items: { what: string; result: string }[];
        };
        expect(activity.items.map((item) => `${item.what} — ${item.result}`)).toContain(
          "The password was found among passwords known from data breaches: change it — Noted",
        );
      });

      it("is cleared by changing the password to one of the owner's own", async () => {
        const token = await h.sessionToken(user);
        expect((await h.request("GET", "/v1/session", { token })).json().account.passwordBreached).toBe(true);
        const next = "my own unbreached passphrase 31";
        const { response, token: after } = await withStepUp(
          h,
          token,
          "POST",
          "/v1/security/password",
          { password: user.password },
          { body: { currentPassword: user.password, newPassword: next } },
        );
        expect(response.statusCode, response.body).toBe(200);
        user.password = next;
        expect(
          (await h.request("GET", "/v1/session", { token: after })).json().account.passwordBreached,
        ).toBe(false);
        const security = (await h.request("GET", "/v1/security", { token: after })).json();
        expect(security.checklist.find((item: { id: string }) => item.id === "password")).toEqual({
          id: "password",
          done: true,
          title: "A strong password",
        });
        const fresh = await h.signIn(user.username, user.password);
        expect(fresh.json().notices.map((n: { code: string }) => n.code)).not.toContain("password_breached");
        expect((await h.services.accounts.findById(accountId))!.passwordBreachedAt).toBeNull();
      });
    });
  },
);
