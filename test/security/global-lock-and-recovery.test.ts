import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness, type TestUser } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { engines } from "../helpers/storage.js";

const DAY = 86_400_000;
const MASTER_KEY = "correct horse battery staple vault";
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

describe.each(engines)(
  "Master Key, Global Settings Lock and recovery on %s (behaviour §7, §13)",
  (engine) => {
    let h: Harness;
    beforeAll(async () => {
      h = await Harness.create(engine);
    });
    afterAll(async () => {
      await h.close();
    });

    const nextCode = (secret: Uint8Array) => nextTotpCode(h, secret);

    /** A trader with an authenticator app, a Master Key, a pending withdrawal address and (optionally) the lock on. */
    const secured = async (options: { lockDays?: number } = {}) => {
      const user = await h.createVerifiedUser();
      const enrolled = await enrollTotp(h, await h.sessionToken(user), { password: user.password });
      let token = enrolled.token;
      const step = async (method: "POST" | "PUT" | "DELETE", url: string, body?: unknown) => {
        const result = await withStepUp(
          h,
          token,
          method,
          url,
          { totp: nextCode(enrolled.secret) },
          body === undefined ? {} : { body },
        );
        token = result.token;
        return result.response;
      };
      expect((await step("PUT", "/v1/security/master-key", { masterKey: MASTER_KEY })).statusCode).toBe(200);
      const address = await step("POST", "/v1/withdrawal-addresses", {
        asset: "BTC",
        address: "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh",
        label: "Cold",
      });
      if (options.lockDays !== undefined) {
        const locked = await step("POST", "/v1/security/global-lock", { unlockDelayDays: options.lockDays });
        expect(locked.json()).toMatchObject({ enabled: true, unlockDelayDays: options.lockDays });
      }
      return {
        user,
        secret: enrolled.secret,
        factorId: enrolled.factorId,
        addressId: address.json().id as string,
        token: () => token,
        step,
      };
    };

    describe("with the lock on", () => {
      let account: Awaited<ReturnType<typeof secured>>;
      beforeAll(async () => {
        account = await secured({ lockDays: 2 });
      });
      const refusals: [string, "POST" | "PUT" | "DELETE", () => string, unknown][] = [
        [
          "a password change",
          "POST",
          () => "/v1/security/password",
          { currentPassword: "x", newPassword: "another long passphrase" },
        ],
        ["adding an authenticator app", "POST", () => "/v1/security/totp", undefined],
        ["adding a security key", "POST", () => "/v1/security/webauthn/options", undefined],
        ["removing a second factor", "DELETE", () => `/v1/security/factors/${account.factorId}`, undefined],
        ["new recovery codes", "POST", () => "/v1/security/recovery-codes", undefined],
        [
          "changing the Master Key",
          "PUT",
          () => "/v1/security/master-key",
          { masterKey: "another very long master key" },
        ],
        [
          "adding a withdrawal address",
          "POST",
          () => "/v1/withdrawal-addresses",
          { asset: "ETH", address: "0x52908400098527886E0F7030069857D2E4169EE7", label: "Hot" },
        ],
        [
          "removing a withdrawal address",
          "DELETE",
          () => `/v1/withdrawal-addresses/${account.addressId}`,
          undefined,
        ],
        ["the trading passcode", "PUT", () => "/v1/security/trading-passcode", { passcode: "482916" }],
        ["the anti-phishing code", "PUT", () => "/v1/security/anti-phishing-code", { code: "blue-heron" }],
        [
          "funding and trading 2FA",
          "PUT",
          () => "/v1/security/requirements",
          { funding: true, trading: true },
        ],
      ];
      it.each(refusals)("refuses %s with 403 settings_locked", async (_name, method, url, body) => {
        const response = await h.request(method, url(), {
          token: account.token(),
          ...(body === undefined ? {} : { body }),
        });
        expect(response.statusCode, response.body).toBe(403);
        expect(response.json().error.code).toBe("settings_locked");
      });

      it("refuses raising the verification level, but not lowering it", async () => {
        const id = await h.accountId(account.user);
        const raise = await h.request("PUT", `/v1/admin/accounts/${id}/verification`, {
          headers: admin,
          body: { tier: "pro" },
        });
        expect(raise.statusCode).toBe(403);
        expect(raise.json().error.code).toBe("settings_locked");
      });

      it("still lets the owner sign in and trade, and hides the security details and the email address", async () => {
        const order = await h.request("POST", "/v1/actions", {
          token: account.token(),
          body: {
            type: "place_order",
            params: { pair: "BTC/USD", side: "buy", type: "market", volume: "0.1" },
          },
        });
        expect(order.statusCode).toBe(201);
        const security = (await h.request("GET", "/v1/security", { token: account.token() })).json();
        expect(security).toMatchObject({ hidden: true, globalLock: { enabled: true, unlockDelayDays: 2 } });
        expect(security.secondFactors).toBeUndefined();
        const session = (await h.request("GET", "/v1/session", { token: account.token() })).json();
        expect(session.account.email).toBeUndefined();
      });
    });

    it("counts a wrong Master Key at unlock as a failure, emails the owner, and unlocks at once with the right one", async () => {
      const { user, token } = await secured({ lockDays: 2 });
      const id = await h.accountId(user);
      const wrong = await h.request("POST", "/v1/security/global-lock/unlock", {
        token: token(),
        body: { masterKey: "not the master key at all" },
      });
      expect(wrong.statusCode).toBe(401);
      expect((await h.services.guard.status(id)).consecutiveFailures).toBe(1);
      const right = await h.request("POST", "/v1/security/global-lock/unlock", {
        token: token(),
        body: { masterKey: MASTER_KEY },
      });
      expect(right.json()).toEqual({ state: "unlocked" });
      await h.deliverMail();
      // One email for the wrong Master Key, one for the unlock that worked (and no "attempt" for it).
      expect(
        h.smtp
          .to(user.email)
          .filter((m) => /unlock/i.test(m.subject))
          .map((m) => m.subject),
      ).toEqual([
        "Someone tried to unlock the Global Settings Lock with a wrong Master Key",
        "Unlocked the Global Settings Lock with the Master Key",
      ]);
    });

    it("completes an unlock request after exactly the waiting period, and a cancelled one never", async () => {
      const { token, step } = await secured({ lockDays: 3 });
      const requested = await step("POST", "/v1/security/global-lock/unlock", {});
      expect(requested.json()).toEqual({
        state: "unlock_pending",
        unlocksAt: new Date(h.clock.now() + 3 * DAY).toISOString(),
      });
      const change = () =>
        h.request("PUT", "/v1/security/anti-phishing-code", { token: token(), body: { code: "blue-heron" } });
      // Time passes while the app session is in use (it ends after 24 idle hours).
      const pass = async (ms: number) => {
        for (let left = ms; left > 0; left -= DAY / 2) {
          h.clock.advance(Math.min(left, DAY / 2));
          expect((await h.request("GET", "/v1/session", { token: token() })).statusCode).toBe(200);
        }
      };
      await pass(3 * DAY - 1000);
      expect((await change()).json().error.code).toBe("settings_locked");
      h.clock.advance(1000);
      expect((await change()).json().error.code).toBe("step_up_required");

      // Lock again, ask to unlock, cancel: still locked after the period.
      await step("POST", "/v1/security/global-lock", { unlockDelayDays: 1 });
      await step("POST", "/v1/security/global-lock/unlock", {});
      expect((await step("DELETE", "/v1/security/global-lock/unlock")).statusCode).toBe(200);
      await pass(DAY + 1000);
      expect((await change()).json().error.code).toBe("settings_locked");
    });

    it("leaves a 0-day lock without the Master Key to support", async () => {
      const user = await h.createVerifiedUser();
      const enrolled = await enrollTotp(h, await h.sessionToken(user), { password: user.password });
      const locked = await withStepUp(
        h,
        enrolled.token,
        "POST",
        "/v1/security/global-lock",
        { totp: nextCode(enrolled.secret) },
        {
          body: { unlockDelayDays: 0 },
        },
      );
      const token = locked.token;
      const unlock = await h.request("POST", "/v1/security/global-lock/unlock", { token, body: {} });
      expect(unlock.statusCode).toBe(403);
      expect(unlock.json().error.message).toMatch(/contact support/);
      const change = () =>
        h.request("PUT", "/v1/security/anti-phishing-code", { token, body: { code: "blue-heron" } });
      expect((await change()).json().error.code).toBe("settings_locked");
      const removed = await h.request("DELETE", `/v1/admin/accounts/${await h.accountId(user)}/global-lock`, {
        headers: admin,
      });
      expect(removed.statusCode).toBe(200);
      expect((await change()).json().error.code).toBe("step_up_required");
      const audit = await h.services.audit.list({
        accountId: await h.accountId(user),
        events: ["global_lock.removed"],
        limit: 1,
      });
      expect(audit[0]).toMatchObject({ actor: "operator" });
    });

    it("resets a password once by link, not after 2 hours, without signing in, ending every session and holding withdrawals", async () => {
      const user = await h.createVerifiedUser();
      const token = await h.sessionToken(user);
      const request = () =>
        h.request("POST", "/v1/recovery/password", {
          body: { email: user.email, username: user.username, botCheck: "" },
        });
      const withBot = async () =>
        h.request("POST", "/v1/recovery/password", {
          body: { email: user.email, username: user.username, botCheck: await h.botCheck() },
        });
      expect((await request()).statusCode).toBe(400);
      expect((await withBot()).statusCode).toBe(202);
      await h.deliverMail();
      const link = linkToken(await h.smtp.waitFor(user.email, /Reset your password/), "/reset-password");
      const complete = (t: string, extra = {}) =>
        h.request("POST", "/v1/recovery/password/complete", {
          body: { token: t, newPassword: "a fresh passphrase 2026", ...extra },
        });
      const done = await complete(link);
      expect(done.statusCode, done.body).toBe(200);
      expect(done.headers["set-cookie"]).toBeUndefined();
      expect((await complete(link)).statusCode).toBe(410);
      expect((await h.request("GET", "/v1/session", { token })).statusCode).toBe(401);
      const fresh = await h.signIn(user.username, "a fresh passphrase 2026", { client: "app" });
      expect(fresh.statusCode).toBe(200);
      const capabilities = (await h.request("GET", "/v1/capabilities", { token: fresh.json().token })).json()
        .products;
      expect(capabilities["withdraw.crypto"].reasons.map((r: { code: string }) => r.code)).toContain(
        "security_hold",
      );

      await withBot();
      await h.deliverMail();
      const later = h.smtp
        .to(user.email)
        .filter((m) => /Reset your password/.test(m.subject))
        .at(-1)!;
      h.clock.advance(2 * 3_600_000);
      expect((await complete(linkToken(later, "/reset-password"))).statusCode).toBe(410);
    });

    it("asks for the Master Key when one is set, spends the link on a wrong one, and works while restricted", async () => {
      const { user } = await secured();
      for (let i = 0; i < 5; i += 1)
        await h.signIn(user.username, "wrong wrong wrong", { ip: `192.0.2.${i + 40}` });
      expect((await h.services.guard.status(await h.accountId(user))).restricted).toBe(true);
      const ask = async () => {
        await h.request("POST", "/v1/recovery/password", {
          body: { email: user.email, username: user.username, botCheck: await h.botCheck() },
        });
        await h.deliverMail();
        return linkToken(
          h.smtp
            .to(user.email)
            .filter((m) => /Reset your password/.test(m.subject))
            .at(-1)!,
          "/reset-password",
        );
      };
      const complete = (t: string, extra = {}) =>
        h.request("POST", "/v1/recovery/password/complete", {
          body: { token: t, newPassword: "a fresh passphrase 2026", ...extra },
        });
      const first = await ask();
      expect(h.smtp.to(user.email).at(-1)!.text).toContain("You will need your Master Key");
      const missing = await complete(first);
      expect(missing.json().error.code).toBe("master_key_required");
      expect((await complete(first, { masterKey: "not it, sorry, not it" })).statusCode).toBe(401);
      expect((await complete(first, { masterKey: MASTER_KEY })).statusCode).toBe(410);
      expect((await complete(await ask(), { masterKey: MASTER_KEY })).statusCode).toBe(200);
      expect((await h.signIn(user.username, "a fresh passphrase 2026")).json().state).toBe("second_factor");
    });

    it("sends at most three reset emails an hour while answering the same", async () => {
      const user = await h.createVerifiedUser();
      const bodies = new Set<string>();
      for (let i = 0; i < 4; i += 1) {
        const response = await h.request("POST", "/v1/recovery/password", {
          body: { email: user.email, username: user.username, botCheck: await h.botCheck() },
        });
        expect(response.statusCode).toBe(202);
        bodies.add(response.body);
      }
      const unknown = await h.request("POST", "/v1/recovery/password", {
        body: { email: `nobody-${user.email}`, username: user.username, botCheck: await h.botCheck() },
      });
      bodies.add(unknown.body);
      expect(bodies.size).toBe(1);
      await h.deliverMail();
      expect(h.smtp.to(user.email).filter((m) => /Reset your password/.test(m.subject))).toHaveLength(3);
    });

    it("emails the username to the mailbox owner", async () => {
      const user = await h.createVerifiedUser();
      const response = await h.request("POST", "/v1/recovery/username", {
        body: { email: user.email, botCheck: await h.botCheck() },
      });
      expect(response.statusCode).toBe(202);
      await h.deliverMail();
      expect((await h.smtp.waitFor(user.email, /Your username/)).text).toContain(user.username);
    });

    it("bypasses a lost second factor with the Master Key and an emailed code, then requires a new factor", async () => {
      const { user } = await secured();
      const started = await h.signIn(user.username, user.password, { client: "app" });
      expect(started.json().factors).toEqual(["totp", "recovery_code", "master_key"]);
      const { flowId } = started.json();
      expect(
        (await h.request("POST", `/v1/sign-in/${flowId}/master-key`, { body: { masterKey: MASTER_KEY } }))
          .statusCode,
      ).toBe(202);
      await h.deliverMail();
      const code = /^([A-Z2-9]{10})$/m.exec((await h.smtp.waitFor(user.email, /bypass code/)).text)![1]!;
      expect(
        (await h.request("POST", `/v1/sign-in/${flowId}/bypass-code`, { body: { code: "AAAAAAAAAA" } }))
          .statusCode,
      ).toBe(401);
      const done = await h.request("POST", `/v1/sign-in/${flowId}/bypass-code`, {
        body: { code: code.toLowerCase() },
      });
      expect(done.json()).toMatchObject({
        state: "authenticated",
        session: { aal: 1, methods: ["password", "master_key", "bypass_code"] },
      });
      const token = done.json().token as string;
      const blocked = await h.request("GET", "/v1/capabilities", { token });
      expect(blocked.json().error.code).toBe("enrollment_required");
      expect((await h.request("GET", "/v1/security/factors", { token })).json().factors).toEqual([]);
      const { token: after } = await enrollTotp(h, token, { password: user.password });
      expect((await h.request("GET", "/v1/capabilities", { token: after })).statusCode).toBe(200);
    });

    it("puts the anti-phishing code in every email, and rates the account's security", async () => {
      const user = await h.createVerifiedUser();
      let token = await h.sessionToken(user);
      expect((await h.request("GET", "/v1/security", { token })).json()).toMatchObject({
        level: 1,
        secondFactors: [],
      });
      const enrolled = await enrollTotp(h, token, { password: user.password });
      token = enrolled.token;
      const step = async (method: "PUT" | "POST", url: string, body: unknown) => {
        const result = await withStepUp(h, token, method, url, { totp: nextCode(enrolled.secret) }, { body });
        token = result.token;
        expect(result.response.statusCode, result.response.body).toBe(200);
      };
      await step("PUT", "/v1/security/anti-phishing-code", { code: "purple-otter" });
      await step("PUT", "/v1/security/requirements", { funding: true, trading: true });
      await step("PUT", "/v1/security/master-key", { masterKey: MASTER_KEY });
      await step("POST", "/v1/security/global-lock", { unlockDelayDays: 7 });
      expect((await h.request("GET", "/v1/security", { token })).json().level).toBe(5);
      await h.deliverMail();
      const sent = h.smtp.to(user.email);
      const afterCode = sent.slice(sent.findIndex((m) => /anti-phishing/.test(m.text)));
      expect(afterCode.length).toBeGreaterThan(2);
      for (const email of afterCode) expect(email.text).toContain("Your anti-phishing code: purple-otter");
    });

    it("changes the password only with the current one, ending the other sessions", async () => {
      const user: TestUser = await h.createVerifiedUser();
      const other = await h.sessionToken(user);
      const token = await h.sessionToken(user);
      const wrongCurrent = await withStepUp(
        h,
        token,
        "POST",
        "/v1/security/password",
        { password: user.password },
        {
          body: { currentPassword: "not my password at all", newPassword: "a fresh passphrase 2026" },
        },
      );
      expect(wrongCurrent.response.statusCode).toBe(401);
      const changed = await withStepUp(
        h,
        wrongCurrent.token,
        "POST",
        "/v1/security/password",
        { password: user.password },
        {
          body: { currentPassword: user.password, newPassword: "a fresh passphrase 2026" },
        },
      );
      expect(changed.response.statusCode, changed.response.body).toBe(200);
      expect((await h.request("GET", "/v1/session", { token: other })).statusCode).toBe(401);
      expect((await h.request("GET", "/v1/session", { token: changed.token })).statusCode).toBe(200);
      // The owner is told (behaviour §12), with where the change came from.
      await h.deliverMail();
      const email = await h.smtp.waitFor(user.email, /^Changed the password$/);
      expect(email.text).toContain("changed the password (other sessions were ended)");
      expect(email.text).toContain("203.0.113.10");
      // A time to read, with its zone, not an ISO timestamp.
      expect(email.text).toMatch(/Time: \w+day,? \d{1,2} \w+ \d{4},? at \d{2}:\d{2} UTC/);
    });
  },
);
