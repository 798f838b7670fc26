import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KrakenClient } from "../../src/client/kraken-client.js";
import { newUser } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";
import {
  accessibilityViolations,
  addSecurityKey,
  followEmailLink as followEmailLinkOf,
  launchBrowser,
  newPage,
  nextTotpCode as nextTotpCodeOf,
  screenshot,
  settled,
  type VirtualAuthenticator,
} from "./browser.js";
import { ensurePortalBuilt } from "./portal-build.js";
import { type PortalServer, startPortalServer } from "./portal-server.js";

/**
 * The portal in a real browser (Debian's Chromium, headless) against a real listening Portcullis: a
 * trader's path from sign-up to a confirmed withdrawal. The steps build on each other, as a person's
 * would: each `it` continues where the previous one left the account.
 */
describe.each(engines)("the portal in Chromium on %s", (engine) => {
  let server: PortalServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let errors: string[];
  let securityKey: VirtualAuthenticator;
  let totpSecret = "";
  const user = newUser();
  const shot = (target: Page, name: string) => screenshot(target, `${engine}-${name}`);

  const nextTotpCode = () => nextTotpCodeOf(server.clock, totpSecret);

  const followEmailLink = (target: Page, subject: string, linkPath: string) =>
    followEmailLinkOf(target, server.url, user.email, subject, linkPath);

  async function signInWithPassword(target: Page): Promise<void> {
    await target.goto("/sign-in");
    await target.getByLabel("Username").fill(user.username);
    await target.getByLabel("Password").fill(user.password);
    await target.getByRole("button", { name: "Sign in", exact: true }).click();
  }

  async function signOut(target: Page): Promise<void> {
    await target.getByRole("button", { name: "Sign out" }).click();
    await target.waitForURL(/\/sign-in/);
  }

  async function expectDashboard(target: Page): Promise<void> {
    await target.waitForURL(`${server.url}/`);
    await target.getByRole("heading", { name: `Welcome, ${user.username}` }).waitFor();
  }

  beforeAll(async () => {
    await ensurePortalBuilt();
    server = await startPortalServer(engine);
    browser = await launchBrowser();
    context = await browser.newContext({ baseURL: server.url });
    ({ page, errors } = await newPage(context));
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  /** The problem shown beside a field, found through the field's own description (aria-describedby). */
  async function problemBeside(target: Page, label: string): Promise<string | null> {
    const field = target.getByLabel(label, { exact: true });
    if ((await field.getAttribute("aria-invalid")) !== "true") return null;
    const ids = (await field.getAttribute("aria-describedby"))?.split(" ") ?? [];
    return target.locator(`[id="${ids[0]}"]`).textContent();
  }

  it("shows every field's problem beside it at once on sign-up", async () => {
    await page.goto("/sign-up");
    await page.getByLabel("Username").fill("x");
    await page.getByRole("button", { name: "Create account" }).click();
    await page.locator(".field-error").first().waitFor();
    await expect(problemBeside(page, "Email")).resolves.toBe("Enter your email address.");
    await expect(problemBeside(page, "Password")).resolves.toBe("Enter your password.");
    await expect(problemBeside(page, "Country of residence")).resolves.toBe(
      "Choose your country from the list.",
    );
    // No schema wording anywhere on the page.
    await expect(page.locator("main").textContent()).resolves.not.toMatch(/must NOT|must have required/);
    await shot(page, "sign-up-errors");
  });

  it("signs up, with the country chosen by name and the bot check solved in the browser", async () => {
    await page.goto("/sign-up");
    await page.getByLabel("Email").fill(user.email);
    await page.getByLabel("Username").fill(user.username);
    await page.getByLabel("Password").fill(user.password);
    // A state is asked for in the US, by name too.
    await page.getByLabel("Country of residence").fill("United States");
    await page.getByText("United States (US)").waitFor();
    await page.getByLabel("State").fill("New York");
    await page.getByText("New York (US-NY)").waitFor();
    // Typing "Germany" picks DE, with no stop at "Ge" (Georgia) on the way.
    await page.getByLabel("Country of residence").fill("Germany");
    await page.getByText("Germany (DE)").waitFor();
    await expect(page.getByLabel("State").count()).resolves.toBe(0);
    await shot(page, "sign-up");
    await page.getByRole("button", { name: "Create account" }).click();
    await page.getByRole("heading", { name: "Check your email" }).waitFor();

    await followEmailLink(page, "Verify your email address", "/verify-email");
    await page.getByText("Your email address is verified.").waitFor();
  });

  it("signs in with the password and sees the capability vector as eligibility notices", async () => {
    await signInWithPassword(page);
    await expectDashboard(page);
    await settled(page);
    // A new starter account in Germany: margin needs a higher tier; withdrawals need a second factor.
    await page.getByText("Margin: needs Intermediate verification").waitFor();
    await page.getByText("Crypto withdrawals: turn on two-factor authentication first").waitFor();
    await expect(page.getByText("Security level").first().isVisible()).resolves.toBe(true);
  });

  it("shows field problems beside the fields in the security centre", async () => {
    await page.goto("/security");
    await settled(page);
    await shot(page, "security-overview");
    await page.getByRole("button", { name: "Set Trading passcode" }).click();
    await page.getByLabel("Trading passcode", { exact: true }).fill("4829");
    await page.getByLabel("Trading passcode, again").fill("4830");
    await page.getByRole("button", { name: "Set trading passcode" }).click();
    await expect(problemBeside(page, "Trading passcode, again")).resolves.toBe(
      "This does not match the Trading passcode above.",
    );
    await page.getByLabel("Trading passcode, again").fill("4829");
    await page.getByRole("button", { name: "Set trading passcode" }).click();
    // The server's answer, beside the field it names, before any confirmation is asked for.
    await page.getByText("The trading passcode is 6 digits.").first().waitFor();
    await expect(problemBeside(page, "Trading passcode")).resolves.toBe("The trading passcode is 6 digits.");
    await expect(problemBeside(page, "Trading passcode, again")).resolves.toBeNull();
    await shot(page, "security-field-errors");
    // Without a second factor, a security key cannot be the first one: its form is not offered.
    await page.getByRole("button", { name: "Set up Two-factor authentication" }).click();
    await expect(page.getByLabel("Name for the key or passkey").count()).resolves.toBe(0);
  });

  it("enrolls an authenticator app (step-up with the password), then signs in again with its code", async () => {
    await page.goto("/security#factors");
    await settled(page);
    await page.getByRole("button", { name: "Add authenticator app" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByRole("heading", { name: "Add an authenticator app" }).waitFor();
    // The code field of the proof asked for has the focus.
    await expect(page.evaluate(() => document.activeElement?.getAttribute("name"))).resolves.toBe("password");
    // A wrong password here is about this confirmation, not a failed sign-in.
    await dialog.getByLabel("Your password").fill("not my password at all");
    await dialog.getByRole("button", { name: "Confirm" }).click();
    await dialog.getByText("That password is not right.").waitFor();
    await expect(dialog.textContent()).resolves.not.toContain("Invalid username or password");
    await dialog.getByLabel("Your password").fill(user.password);
    await dialog.getByRole("button", { name: "Confirm" }).click();

    totpSecret = (await page.getByTestId("totp-secret").textContent())!.trim();
    expect(totpSecret).toMatch(/^[A-Z2-7]+=*$/);
    await page.getByLabel("Code from the app").fill(nextTotpCode());
    await shot(page, "security-enroll-totp");
    await page.getByRole("button", { name: "Turn on", exact: true }).click();
    await page.getByRole("region", { name: "Recovery codes" }).waitFor();
    await page.getByRole("button", { name: "I have stored them" }).click();
    await page
      .getByRole("list", { name: "Your second factors" })
      .locator("strong", { hasText: "Authenticator app" })
      .waitFor();

    await signOut(page);
    await signInWithPassword(page);
    await page.getByLabel("Code from your authenticator app").fill(nextTotpCode());
    await page.getByRole("button", { name: "Continue" }).click();
    await expectDashboard(page);
  });

  it("adds a passkey with Chromium's virtual authenticator and signs in with it", async () => {
    securityKey = await addSecurityKey(page);
    await page.goto("/security#factors");
    await settled(page);
    await page.getByLabel("Name for the key or passkey").fill("USB key");
    await page.getByRole("button", { name: "Add security key", exact: true }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByLabel("Code from your authenticator app").fill(nextTotpCode());
    await dialog.getByRole("button", { name: "Confirm", exact: true }).click();
    await page
      .getByRole("list", { name: "Your second factors" })
      .locator("strong", { hasText: "USB key" })
      .waitFor();
    await shot(page, "security");

    await signOut(page);
    await signInWithPassword(page);
    await page.getByRole("radio", { name: "Security key or passkey" }).check();
    await page.getByRole("button", { name: "Use security key or passkey" }).click();
    await expectDashboard(page);
    await settled(page);
    await shot(page, "dashboard");
  });

  it("confirms a withdrawal with the passkey, in a dialog that shows exactly what is signed", async () => {
    await page.goto("/addresses");
    await settled(page);
    await page.getByLabel("Asset").fill("BTC");
    await page.getByLabel("Address", { exact: true }).fill("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq");
    await page.getByLabel("Label").fill("Cold wallet");
    await page.getByRole("button", { name: "Add address" }).click();
    await page
      .getByRole("dialog")
      .getByRole("button", { name: "Confirm with security key or passkey" })
      .click();
    await page.getByText("Added. Confirm it from the email we sent you.").waitFor();

    await followEmailLink(page, "Confirm a new withdrawal address", "/confirm-address");
    // Opening the link confirms nothing (a mail scanner opens links too); the click does.
    await page.getByRole("button", { name: "Confirm this address" }).waitFor();
    await expect(page.getByText(/is confirmed/).count()).resolves.toBe(0);
    await page.getByRole("button", { name: "Confirm this address" }).click();
    await page.getByText(/Cold wallet \(BTC\) is confirmed/).waitFor();
    // New addresses wait 48 hours (covered by the address-book tests); this one is ready now.
    await server.storage.storage.db
      .updateTable("withdrawal_addresses")
      .set({ usable_from: server.clock.now() - 1000 })
      .execute();

    await page.goto("/demo/withdraw");
    await settled(page);
    await page.getByLabel("Amount").fill("0.5");
    // On a phone, as most confirmations are made.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByRole("button", { name: "Withdraw" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByRole("heading", { name: /^Withdraw 0\.5 BTC to bc1qar/ }).waitFor();
    // The whole destination address and its label, the amount with its asset.
    const signed = dialog.getByRole("definition");
    await expect(
      signed
        .filter({ hasText: /^bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq$/ })
        .first()
        .isVisible(),
    ).resolves.toBe(true);
    await expect(
      signed
        .filter({ hasText: /^Cold wallet$/ })
        .first()
        .isVisible(),
    ).resolves.toBe(true);
    await expect(signed.filter({ hasText: /^0\.5 BTC$/ }).isVisible()).resolves.toBe(true);
    // No ids, type names, nulls or digest outside "Technical details".
    const outside = await dialog.evaluate((element) => {
      const copy = element.cloneNode(true) as HTMLElement;
      copy.querySelector("details")?.remove();
      return copy.textContent ?? "";
    });
    expect(outside).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-/);
    expect(outside).not.toMatch(/[0-9a-f]{64}/);
    expect(outside).not.toMatch(/\bnull\b|\bwithdraw\b|addressId/);
    // The Confirm button is on screen without scrolling, at 390 × 844.
    const confirmBox = await dialog.getByRole("button", { name: "Confirm", exact: true }).boundingBox();
    expect(confirmBox).not.toBeNull();
    expect(confirmBox!.y + confirmBox!.height).toBeLessThanOrEqual(844);
    expect(confirmBox!.y).toBeGreaterThanOrEqual(0);
    await shot(page, "confirm-withdrawal-phone");
    await dialog.getByText("Technical details").click();
    await expect(signed.filter({ hasText: /^[0-9a-f]{64}$/ }).isVisible()).resolves.toBe(true);
    await page.setViewportSize({ width: 1280, height: 720 });
    await shot(page, "confirm-withdrawal");
    await dialog.getByRole("button", { name: "Confirm with security key or passkey" }).click();
    const grant = (await page.getByTestId("grant").textContent())!.trim();
    expect(grant.split(".")).toHaveLength(3);
    const claims = JSON.parse(Buffer.from(grant.split(".")[1]!, "base64url").toString("utf8"));
    expect(JSON.stringify(claims)).toContain("withdraw");
  });

  it("creates an API key after a step-up, shows its secret once, and approves a held order", async () => {
    await page.goto("/api-keys");
    await settled(page);
    await page.getByLabel("Name").fill("market-maker");
    await page.getByLabel("Create and modify orders").check();
    await page.getByLabel("Approval thresholds").fill("USD 100");
    await page.getByRole("button", { name: "Create key" }).click();
    const stepUp = page.getByRole("dialog");
    await stepUp
      .getByText(/Create API key "market-maker"/)
      .first()
      .waitFor();
    await stepUp.getByRole("button", { name: "Confirm with security key or passkey" }).click();
    const secret = (await page.getByTestId("api-secret").textContent())!.trim();
    const key = (await page.locator("dd.mono").first().textContent())!.trim();
    expect(Buffer.from(secret, "base64")).toHaveLength(64);

    // A bot signs an order above the threshold exactly as a Kraken client would: it is held.
    const bot = new KrakenClient({ baseUrl: server.url, key, secret });
    const order = { pair: "XBTUSD", type: "buy", ordertype: "limit", price: "100", volume: "2" };
    const held = await bot.private("AddOrder", order);
    expect(held.error).toEqual(["EGeneral:Approval required"]);
    const approvalId = (held.result as { approval_id: string }).approval_id;

    await page.getByRole("button", { name: "I have copied it" }).click();
    await page.goto("/api-keys");
    await settled(page);
    const waiting = page.getByRole("list", { name: "Waiting for approval" });
    await waiting.getByText(/API key "market-maker" — AddOrder/).waitFor();
    await shot(page, "api-key-approval");
    await waiting.getByRole("button", { name: "Approve" }).click();
    await page
      .getByRole("dialog")
      .getByRole("button", { name: "Confirm with security key or passkey" })
      .click();
    await page.getByText("Nothing is waiting for approval.").waitFor();

    // Resubmitted with the approval id, the order passes every check and goes on to the venue's upstream
    // (none in this test: 503), once; a second resubmission is refused.
    const approved = await bot.private("AddOrder", { ...order, approval_id: approvalId });
    expect(approved.error).toEqual(["EService:Unavailable"]);
    const again = await bot.private("AddOrder", { ...order, approval_id: approvalId });
    expect(again.error).toEqual(["EGeneral:Invalid arguments"]);
  });

  it("changes the password, confirmed with the passkey", async () => {
    await page.goto("/security");
    await settled(page);
    await page.getByRole("button", { name: "Change Password" }).click();
    const next = `${user.password} and more`;
    await page.getByLabel("Current password").fill(user.password);
    await page.getByLabel("New password").fill(next);
    await page.getByRole("button", { name: "Change password" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByText("Your other sessions will be signed out.").waitFor();
    await dialog.getByRole("button", { name: "Confirm with security key or passkey" }).click();
    await page.getByText("Password changed. Your other sessions have ended.").waitFor();
    user.password = next;
  });

  it("turns on the Global Settings Lock and sees a setting change refused", async () => {
    await page.goto("/security");
    await settled(page);
    await page.getByRole("button", { name: "Turn on Global Settings Lock" }).click();
    await page.getByLabel("Unlock waiting period (days)").fill("2");
    await page.getByRole("button", { name: "Turn on the lock" }).click();
    await page
      .getByRole("dialog")
      .getByRole("button", { name: "Confirm with security key or passkey" })
      .click();
    await page.getByText("Your Global Settings Lock is on: security settings are hidden").waitFor();

    // The pages the lock blocks say so before anything is filled in.
    for (const [path, what] of [
      ["/addresses", "withdrawal addresses"],
      ["/api-keys", "API keys"],
    ] as const) {
      await page.goto(path);
      await settled(page);
      await page.getByText(`Your Global Settings Lock is on, so ${what} cannot be changed.`).waitFor();
    }
    await expect(page.getByRole("button", { name: "Create key" }).isDisabled()).resolves.toBe(true);
    await shot(page, "api-keys-locked");

    // The activity log has both changes, in words, with what each confirmation confirmed.
    await page.goto("/security");
    await settled(page);
    const activity = page.locator("table.activity");
    await activity.getByText("Turned on the Global Settings Lock (2-day unlock wait)").waitFor();
    await activity.getByText("Changed the password (other sessions were ended)").waitFor();
    await activity.getByText("Confirmed a password change with security key or passkey").first().waitFor();
    await shot(page, "security-activity");

    await page.getByRole("button", { name: "Unlock Global Settings Lock" }).click();
    await page.getByRole("button", { name: "Request unlock" }).click();
    // Asking for an unlock is itself confirmed with a second factor.
    await page
      .getByRole("dialog")
      .getByRole("button", { name: "Confirm with security key or passkey" })
      .click();
    await page.getByText(/Unlock requested: the lock comes off in/).waitFor();
    await shot(page, "security-locked");
  });

  it("approves a new device from the emailed link, then ends that session from the first browser", async () => {
    const other = await browser.newContext({ baseURL: server.url });
    const { page: phone, errors: phoneErrors } = await newPage(other);
    await signInWithPassword(phone);
    await phone.getByRole("radio", { name: "Authenticator app" }).check();
    await phone.getByLabel("Code from your authenticator app").fill(nextTotpCode());
    await phone.getByRole("button", { name: "Continue" }).click();
    await phone.getByRole("heading", { name: "Approve this device" }).waitFor();
    await shot(phone, "device-approval");

    await followEmailLink(page, "Approve sign-in from a new device", "/approve-device");
    await page.getByRole("button", { name: "Approve this device" }).click();
    await page.getByText("Approved.").waitFor();
    await expectDashboard(phone);

    await page.goto("/security");
    await settled(page);
    const sessions = page.getByRole("list", { name: "Active sessions" }).getByRole("listitem");
    await expect(sessions.count()).resolves.toBe(2);
    await page.getByRole("button", { name: /^End session/ }).click();
    await page.waitForFunction(
      () => document.querySelectorAll('[aria-label="Active sessions"] > li').length === 1,
    );

    await phone.goto("/security");
    await phone.waitForURL(/\/sign-in/);
    expect(phoneErrors).toEqual([]);
    await other.close();
  });

  it("signs in with the keyboard alone", async () => {
    await signOut(page);
    await page.goto("/sign-in");
    await page.getByLabel("Username").waitFor();
    // The username field has focus when the page opens; everything after is typed or tabbed.
    await expect(page.evaluate(() => document.activeElement?.getAttribute("name"))).resolves.toBe(
      "identifier",
    );
    await page.keyboard.type(user.username);
    await page.keyboard.press("Tab");
    await page.keyboard.type(user.password);
    await page.keyboard.press("Enter");
    await page.getByLabel("Code from your authenticator app").waitFor();
    await expect(page.evaluate(() => document.activeElement?.getAttribute("name"))).resolves.toBe("code");
    await page.keyboard.type(nextTotpCode());
    await page.keyboard.press("Enter");
    await expectDashboard(page);
  });

  it("has no serious accessibility violations on the main pages, and fits a phone's width", async () => {
    const pages = ["/", "/security", "/addresses", "/api-keys", "/status", "/demo/withdraw"];
    for (const path of pages) {
      await page.goto(path);
      await settled(page);
      expect(await accessibilityViolations(page), path).toEqual([]);
    }
    await shot(page, "status");
    await page.goto("/api-keys");
    await settled(page);
    await shot(page, "api-keys");

    const visitor = await browser.newContext({ baseURL: server.url });
    const { page: signedOut, errors: visitorErrors } = await newPage(visitor);
    for (const path of ["/sign-in", "/sign-up", "/forgot-password", "/forgot-username", "/status"]) {
      await signedOut.goto(path);
      await settled(signedOut);
      expect(await accessibilityViolations(signedOut), path).toEqual([]);
    }
    await signedOut.goto("/sign-in");
    await settled(signedOut);
    await shot(signedOut, "sign-in");

    // After repeated failures the page says sign-in may be paused, whether or not the account exists.
    for (let attempt = 0; attempt < 3; attempt += 1) {
      await signedOut.getByLabel("Username").fill(user.username);
      await signedOut.getByLabel("Password").fill("not the password");
      await signedOut.getByRole("button", { name: "Sign in", exact: true }).click();
      await signedOut.getByText("Invalid username or password.").waitFor();
      await signedOut.waitForFunction(() => !document.querySelector("button[type=submit]:disabled"));
    }
    await signedOut.getByText(/signing in to an account is paused for a while/).waitFor();
    await signedOut.getByText(/check your email/).waitFor();
    expect(await accessibilityViolations(signedOut), "sign-in, paused").toEqual([]);
    await shot(signedOut, "sign-in-paused");
    expect(visitorErrors).toEqual([]);
    await visitor.close();

    await page.setViewportSize({ width: 390, height: 844 });
    for (const path of ["/", "/security"]) {
      await page.goto(path);
      await settled(page);
      await expect(page.evaluate(() => document.documentElement.scrollWidth)).resolves.toBeLessThanOrEqual(
        390,
      );
    }
    // Every main page at a phone's width and at a desktop's, to look at.
    const mainPages: [string, string][] = [
      ["/", "dashboard"],
      ["/security", "security"],
      ["/addresses", "addresses"],
      ["/api-keys", "api-keys"],
      ["/status", "status"],
      ["/demo/withdraw", "withdraw-demo"],
    ];
    for (const [path, name] of mainPages) {
      await page.goto(path);
      await settled(page);
      await shot(page, `phone-${name}`);
    }
    await page.getByRole("button", { name: "Menu" }).click();
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Security" }).waitFor();
    await shot(page, "phone-menu");
    await page.setViewportSize({ width: 1280, height: 720 });
    for (const [path, name] of mainPages) {
      await page.goto(path);
      await settled(page);
      await shot(page, `desktop-${name}`);
    }
  });

  it("reported no script errors and no Content-Security-Policy violations", async () => {
    await securityKey?.remove();
    expect(errors).toEqual([]);
  });
});
