import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultSettings } from "../../src/config/settings.js";
import { Argon2idHasher } from "../../src/factors/password.js";
import { newUser } from "../helpers/harness.js";
import {
  accessibilityViolations,
  followEmailLink as followEmailLinkOf,
  launchBrowser,
  newPage,
  screenshot,
  settled,
} from "./browser.js";
import { ensurePortalBuilt } from "./portal-build.js";
import { type PortalServer, startPortalServer } from "./portal-server.js";

/** On the source list of lists/breached-passwords.bin, on no short common list. */
const BREACHED = "ikhouvanjeomer12345";

const desktop = { width: 1280, height: 720 };
const phone = { width: 390, height: 844 };

/**
 * A password known from breaches in the portal (docs/behaviour.md §1): refused at sign-up with the reason
 * in words; and one set before screening lets its owner in, with a notice on every page that leads to the
 * security centre until it is changed. SQLite only: the server side runs on both engines in
 * test/flows/breached-passwords.test.ts.
 */
describe("a breached password in the portal, in Chromium", () => {
  let server: PortalServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let errors: string[];
  const user = newUser();

  const followEmailLink = (subject: string, linkPath: string) =>
    followEmailLinkOf(page, server.url, user.email, subject, linkPath);

  /** The problem shown beside a field, found through the field's own description (aria-describedby). */
  async function problemBeside(label: string): Promise<string | null> {
    const field = page.getByLabel(label, { exact: true });
    if ((await field.getAttribute("aria-invalid")) !== "true") return null;
    const ids = (await field.getAttribute("aria-describedby"))?.split(" ") ?? [];
    return page.locator(`[id="${ids[0]}"]`).textContent();
  }

  /** Desktop and phone screenshots of the page as it is now. */
  async function shots(name: string): Promise<void> {
    await screenshot(page, `breached-${name}-desktop`);
    await page.setViewportSize(phone);
    await screenshot(page, `breached-${name}-phone`);
    await page.setViewportSize(desktop);
  }

  beforeAll(async () => {
    await ensurePortalBuilt();
    server = await startPortalServer("sqlite");
    browser = await launchBrowser();
    context = await browser.newContext({ baseURL: server.url, viewport: desktop });
    ({ page, errors } = await newPage(context));
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it("refuses it at sign-up and says why, then takes a password of the owner's own", async () => {
    await page.goto("/sign-up");
    await page.getByLabel("Email").fill(user.email);
    await page.getByLabel("Username").fill(user.username);
    await page.getByLabel("Password").fill(BREACHED);
    await page.getByLabel("Country of residence").fill("Germany");
    await page.getByText("Germany (DE)").waitFor();
    await page.getByRole("button", { name: "Create account" }).click();
    // The reason stands beside the password field (read with it), the general sentence below the form.
    await page.locator(".field-error").first().waitFor();
    await expect(problemBeside("Password")).resolves.toBe(
      "This password has appeared in a data breach, so attackers try it first. Choose another one that you do not use anywhere else.",
    );
    await expect(page.getByRole("alert").textContent()).resolves.toBe("Choose a stronger password.");
    await shots("sign-up");
    expect(await accessibilityViolations(page)).toEqual([]);

    await page.getByLabel("Password").fill(user.password);
    await page.getByRole("button", { name: "Create account" }).click();
    await page.getByRole("heading", { name: "Check your email" }).waitFor();
    await followEmailLink("Verify your email address", "/verify-email");
    await page.getByText("Your email address is verified.").waitFor();
  });

  it("lets in an owner whose password was set before screening, and asks on every page to change it", async () => {
    // As if set by an earlier version: the hash is written directly, past the rules.
    const account = await server.app.services.accounts.findByUsername(user.username);
    const hasher = new Argon2idHasher(defaultSettings.password);
    await server.app.services.accounts.updatePasswordHash(account!.id, await hasher.hash(BREACHED));

    await page.goto("/sign-in");
    await page.getByLabel("Username").fill(user.username);
    await page.getByLabel("Password").fill(BREACHED);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.getByRole("heading", { name: `Welcome, ${user.username}` }).waitFor();
    await settled(page);
    const notice = page.getByRole("alert").filter({ hasText: "Change your password." });
    await notice.waitFor();
    // Once, not again among the sign-in notices.
    await expect(page.getByText(/appeared in a data breach/).count()).resolves.toBe(1);
    await page.getByRole("link", { name: "A strong password" }).waitFor();
    await shots("dashboard");
    expect(await accessibilityViolations(page)).toEqual([]);

    await notice.getByRole("link", { name: "Change it in the security centre" }).click();
    await page.waitForURL(/\/security#password$/);
    await settled(page);
    await page
      .getByText("Your password has appeared in a data breach. Change it to one you use nowhere else.")
      .waitFor();
    await shots("security");
    await page.getByLabel("Current password").fill(BREACHED);
    await page.getByLabel("New password").fill("a passphrase nobody else has 58");
    await page.getByRole("button", { name: "Change password" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByLabel("Your password").fill(BREACHED);
    await dialog.getByRole("button", { name: "Confirm" }).click();
    await page.getByText("Password changed. Your other sessions have ended.").waitFor();
    // The portal reads the session again after the change: the notice goes once that answer is in.
    await page.getByText("Change your password.").waitFor({ state: "detached" });
    await expect(page.locator("#password").textContent()).resolves.toContain("Set");
    expect(errors).toEqual([]);
  });
});
