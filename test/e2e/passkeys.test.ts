import type { Browser, BrowserContext, CDPSession, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newUser } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";
import {
  accessibilityViolations,
  followEmailLink as followEmailLinkOf,
  launchBrowser,
  newPage,
  screenshot,
  screenshotDirectory,
  settled,
} from "./browser.js";
import { ensurePortalBuilt } from "./portal-build.js";
import { type PortalServer, startPortalServer } from "./portal-server.js";

/**
 * Passkeys in a real browser (Debian's Chromium, headless), with two of Chromium's virtual
 * authenticators: a roaming USB security key, then a passkey kept on this device (transport "internal",
 * discoverable). The passkey signs in without a username, from the username field's autofill
 * (conditional mediation) and from the "Sign in with a passkey" button. Each `it` continues where the
 * previous one left the account.
 */
describe.each(engines)("passkeys in Chromium on %s", (engine) => {
  let server: PortalServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let errors: string[];
  let cdp: CDPSession;
  let internalId = "";
  let usbId = "";
  const user = newUser();
  const shot = (target: Page, name: string) => screenshot(target, `${engine}-passkeys-${name}`);

  /** One of Chromium's virtual authenticators: it signs like a real one, user verification included. */
  async function addAuthenticator(transport: "usb" | "internal", hasResidentKey: boolean): Promise<string> {
    const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
      options: {
        protocol: "ctap2",
        transport,
        hasResidentKey,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });
    return authenticatorId;
  }

  const followEmailLink = (target: Page, subject: string, linkPath: string) =>
    followEmailLinkOf(target, server.url, user.email, subject, linkPath);

  async function expectDashboard(target: Page): Promise<void> {
    await target.waitForURL(`${server.url}/`);
    await target.getByRole("heading", { name: `Welcome, ${user.username}` }).waitFor();
  }

  /**
   * Chromium's virtual authenticator answers a request when it is made, if it simulates the person's
   * presence: a conditional (autofill) request too, without a focus or a pick from the autofill list.
   * With presence off, a request waits and the page can be looked at.
   */
  async function presence(enabled: boolean): Promise<void> {
    await cdp.send("WebAuthn.setAutomaticPresenceSimulation", { authenticatorId: internalId, enabled });
  }

  /** How the current session was signed in, as GET /v1/session says. */
  async function sessionMethods(target: Page): Promise<string[]> {
    return target.evaluate(async () => {
      const response = await fetch("/v1/session");
      return ((await response.json()) as { session: { methods: string[] } }).session.methods;
    });
  }

  async function signOut(target: Page): Promise<void> {
    await target.getByRole("button", { name: "Sign out" }).click();
    await target.waitForURL(/\/sign-in/);
  }

  const factorList = () => page.getByRole("list", { name: "Your second factors" });

  beforeAll(async () => {
    await ensurePortalBuilt();
    server = await startPortalServer(engine);
    browser = await launchBrowser();
    context = await browser.newContext({ baseURL: server.url });
    ({ page, errors } = await newPage(context));
    cdp = await context.newCDPSession(page);
    await cdp.send("WebAuthn.enable", { enableUI: false });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it("signs up and signs in with the password", async () => {
    await page.goto("/sign-up");
    await page.getByLabel("Email").fill(user.email);
    await page.getByLabel("Username").fill(user.username);
    await page.getByLabel("Password").fill(user.password);
    await page.getByLabel("Country of residence").fill("Germany");
    await page.getByText("Germany (DE)").waitFor();
    await page.getByRole("button", { name: "Create account" }).click();
    await page.getByRole("heading", { name: "Check your email" }).waitFor();
    await followEmailLink(page, "Verify your email address", "/verify-email");
    await page.getByText("Your email address is verified.").waitFor();

    await page.goto("/sign-in");
    // The username field offers passkeys in its autofill.
    await expect(page.getByLabel("Username").getAttribute("autocomplete")).resolves.toBe("username webauthn");
    await page.getByLabel("Username").fill(user.username);
    await page.getByLabel("Password").fill(user.password);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await expectDashboard(page);
  });

  it("adds a roaming security key first, and only then a passkey on this device", async () => {
    // A USB key without room for discoverable credentials: it stays a second factor after the password.
    usbId = await addAuthenticator("usb", false);
    await page.goto("/security#factors");
    await settled(page);
    // No factor yet: only an authenticator app is offered.
    await page.getByRole("button", { name: "Add authenticator app" }).waitFor();
    await expect(page.getByRole("button", { name: "Add passkey on this device" }).count()).resolves.toBe(0);
    // The portal offers no key before a first factor; the API refuses a passkey with a sentence of its own.
    const refused = await page.evaluate(async () => {
      const response = await fetch("/v1/security/webauthn/options?kind=passkey", {
        method: "POST",
        headers: { origin: location.origin },
      });
      return { status: response.status, body: await response.json() };
    });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe("roaming_factor_required");

    // First factor: an authenticator app is the portal's way in, then the USB key beside it.
    await page.getByRole("button", { name: "Add authenticator app" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByLabel("Your password").fill(user.password);
    await dialog.getByRole("button", { name: "Confirm" }).click();
    const secret = (await page.getByTestId("totp-secret").textContent())!.trim();
    const { Secret, TOTP } = await import("otpauth");
    const totp = new TOTP({ secret: Secret.fromBase32(secret), algorithm: "SHA1", digits: 6, period: 30 });
    const nextCode = () => {
      server.clock.advance(30_000);
      return totp.generate({ timestamp: server.clock.now() });
    };
    await page.getByLabel("Code from the app").fill(nextCode());
    await page.getByRole("button", { name: "Turn on", exact: true }).click();
    await page.getByRole("region", { name: "Recovery codes" }).waitFor();
    await page.getByRole("button", { name: "I have stored them" }).click();

    await page.getByLabel("Name for the key or passkey").fill("YubiKey");
    await page.getByRole("button", { name: "Add security key", exact: true }).click();
    await dialog.getByLabel("Code from your authenticator app").fill(nextCode());
    await dialog.getByRole("button", { name: "Confirm", exact: true }).click();
    await factorList().locator("strong", { hasText: "YubiKey" }).waitFor();

    // Now a passkey kept on this device: discoverable, so it can sign in without a username.
    internalId = await addAuthenticator("internal", true);
    await page.getByLabel("Name for the key or passkey").fill("This laptop");
    await page.getByRole("button", { name: "Add passkey on this device" }).click();
    await dialog.getByRole("button", { name: "Confirm with security key or passkey" }).click();
    await factorList().locator("strong", { hasText: "This laptop" }).waitFor();

    const rows = await factorList().locator("li").allTextContents();
    expect(rows).toHaveLength(3);
    expect(rows[0]).toMatch(/Authenticator app/);
    expect(rows[1]).toMatch(/YubiKey\s*Security key/);
    expect(rows[2]).toMatch(/This laptop\s*Passkey on one device/);
    const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId: internalId });
    expect(credentials).toHaveLength(1);
    expect(credentials[0]!.isResidentCredential).toBe(true);

    expect(await accessibilityViolations(page)).toEqual([]);
    await page.locator("#factors").scrollIntoViewIfNeeded();
    await shot(page, "security-desktop");
    await page.setViewportSize({ width: 390, height: 844 });
    await settled(page);
    await expect(page.evaluate(() => document.documentElement.scrollWidth)).resolves.toBeLessThanOrEqual(390);
    await shot(page, "security-phone");
    await page.screenshot({
      path: `${screenshotDirectory}/${engine}-passkeys-security-phone-top.png`,
      clip: { x: 0, y: 0, width: 390, height: 844 },
    });
    await page.setViewportSize({ width: 1280, height: 720 });
  });

  it("signs in with the passkey from the username field's autofill", async () => {
    // The security key is unplugged (with it attached, Chromium answers a request for discoverable
    // credentials with its "no credentials" at once). The passkey waits in the autofill.
    await cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId: usbId });
    await presence(false);
    await signOut(page);
    await settled(page);
    await page.waitForTimeout(500);
    expect(new URL(page.url()).pathname).toBe("/sign-in");
    // Nothing is said about a passkey nobody has asked for yet.
    await expect(page.getByRole("alert").count()).resolves.toBe(0);
    expect(await accessibilityViolations(page)).toEqual([]);
    await shot(page, "sign-in-desktop");
    await page.setViewportSize({ width: 390, height: 844 });
    await expect(page.evaluate(() => document.documentElement.scrollWidth)).resolves.toBeLessThanOrEqual(390);
    await shot(page, "sign-in-phone");
    await page.setViewportSize({ width: 1280, height: 720 });

    // A person focuses the username field and picks the passkey from its list. Chromium's virtual
    // authenticator needs neither: it answers the autofill request the page makes as it opens, once it
    // simulates presence again (a request made while it did not keeps waiting), so the page is reloaded.
    await presence(true);
    await page.reload();
    await expectDashboard(page);
    await expect(sessionMethods(page)).resolves.toEqual(["passkey"]);
  });

  it("signs in with the passkey from the button, and says so plainly when the passkey does not verify the person", async () => {
    // The device's passkey without its fingerprint or PIN: refused, in a sentence. It stops verifying the
    // person before the sign-in page opens, so the autofill request that page makes (whenever the
    // authenticator answers it) can never be the one that signs in.
    await presence(false);
    await cdp.send("WebAuthn.setUserVerified", { authenticatorId: internalId, isUserVerified: false });
    await signOut(page);
    await settled(page);
    await presence(true);
    await page.getByRole("button", { name: "Sign in with a passkey" }).click();
    const problem = page.getByRole("region", { name: "Sign in with a passkey" }).getByRole("alert");
    await problem.waitFor();
    await expect(problem.textContent()).resolves.toMatch(
      // Chromium itself refuses: the request requires user verification, which the authenticator failed.
      /^No passkey was used: the prompt was closed, timed out, or your device could not confirm it is you\./,
    );
    expect(new URL(page.url()).pathname).toBe("/sign-in");
    await shot(page, "sign-in-passkey-refused");

    await cdp.send("WebAuthn.setUserVerified", { authenticatorId: internalId, isUserVerified: true });
    await page.getByRole("button", { name: "Sign in with a passkey" }).click();
    await expectDashboard(page);
    await expect(sessionMethods(page)).resolves.toEqual(["passkey"]);
  });

  it("reported no script errors and no Content-Security-Policy violations", async () => {
    expect(errors).toEqual([]);
  });
});
