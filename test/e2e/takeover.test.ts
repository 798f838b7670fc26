import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KrakenClient } from "../../src/client/kraken-client.js";
import { newUser } from "../helpers/harness.js";
import { type CapturedEmail, SmtpCapture } from "../helpers/smtp.js";
import { engines } from "../helpers/storage.js";
import {
  accessibilityViolations,
  launchBrowser,
  newPage,
  nextTotpCode as nextTotpCodeOf,
  screenshot,
  settled,
} from "./browser.js";
import { ensurePortalBuilt } from "./portal-build.js";
import { type PortalServer, startPortalServer } from "./portal-server.js";

const HOUR = 3_600_000;
/** Where the owner is, as the offline GeoLite2 database places it: Bracknell, GB. */
const HOME = "81.2.69.142";
/** Another address of the owner's network (the same /24). */
const HOME_NEIGHBOUR = "81.2.69.77";
/** A phishing site's server in another country (Kristinehamn, SE). */
const ELSEWHERE = "89.160.20.112";
const MASTER_KEY = "kettle lantern orchard 1987 granite";

/**
 * "When someone else gets in", in Chromium against a real listening Portcullis whose mail goes to a real
 * SMTP server in this process: the email change with its notice and confirmation link, device approval
 * from the right and the wrong network and "This wasn't me", the lock link of a security email opened
 * without signing in, what a frozen account's session sees, and lifting the freeze a day later. Each
 * browser context stands for one device; the server trusts the loopback proxy, so each names its own
 * client address in X-Forwarded-For. The steps build on each other, as the owner's day would.
 */
describe.each(engines)("taking an account back in Chromium on %s", (engine) => {
  const smtp = new SmtpCapture();
  let server: PortalServer;
  let browser: Browser;
  let home: BrowserContext;
  let page: Page;
  let errors: string[];
  let totpSecret = "";
  let apiKey: { key: string; secret: string };
  const user = newUser();
  const oldEmail = user.email;
  const newEmail = user.email.replace("trader.", "moved.");
  const shot = (target: Page, name: string) => screenshot(target, `${engine}-${name}`);

  beforeAll(async () => {
    await ensurePortalBuilt();
    await smtp.start();
    server = await startPortalServer(engine, {
      env: { PORTCULLIS_SMTP_URL: smtp.url, PORTCULLIS_TRUSTED_PROXIES: "127.0.0.1" },
    });
    browser = await launchBrowser();
    home = await device(HOME);
    ({ page, errors } = await newPage(home));
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await smtp.stop();
  });

  /** A browser of its own (cookies, device cookie) at a client address of its own. */
  async function device(clientAddress: string): Promise<BrowserContext> {
    const context = await browser.newContext({ baseURL: server.url });
    await context.setExtraHTTPHeaders({ "x-forwarded-for": clientAddress });
    return context;
  }

  const nextTotpCode = () => nextTotpCodeOf(server.clock, totpSecret);

  /** The newest email to `address` with this subject that arrived after the first `after` messages. */
  async function emailAfter(after: number, address: string, subject: RegExp): Promise<CapturedEmail> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const found = smtp.messages
        .slice(after)
        .filter((m) => m.to.includes(address) && subject.test(m.subject));
      if (found.length > 0) return found.at(-1)!;
      if (Date.now() > deadline)
        throw new Error(
          `no email to ${address} matching ${subject} (got: ${smtp.messages.map((m) => m.subject).join("; ")})`,
        );
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** The link to `path` in an email's text, as the owner would click it. */
  function linkIn(email: CapturedEmail, path: string): string {
    const match = new RegExp(`https?://[^\\s>]+${path}\\?token=[A-Za-z0-9_-]+`).exec(email.text);
    if (!match) throw new Error(`no ${path} link in "${email.subject}":\n${email.text}`);
    return match[0];
  }

  /** The page at a desktop's width and at a phone's, where nothing may scroll sideways. */
  async function shotBoth(target: Page, name: string): Promise<void> {
    await target.setViewportSize({ width: 1280, height: 720 });
    await shot(target, `desktop-${name}`);
    await target.setViewportSize({ width: 390, height: 844 });
    await expect(
      target.evaluate(() => document.documentElement.scrollWidth),
      `${name} scrolls sideways on a phone`,
    ).resolves.toBeLessThanOrEqual(390);
    await shot(target, `phone-${name}`);
    await target.setViewportSize({ width: 1280, height: 720 });
  }

  async function signIn(target: Page): Promise<void> {
    await target.goto("/sign-in");
    await target.getByLabel("Username").fill(user.username);
    await target.getByLabel("Password").fill(user.password);
    await target.getByRole("button", { name: "Sign in", exact: true }).click();
    await target.getByLabel("Code from your authenticator app").fill(nextTotpCode());
    await target.getByRole("button", { name: "Continue" }).click();
  }

  /** Confirms the open step-up dialog with the next authenticator code. */
  async function confirmWithCode(target: Page, summary: RegExp): Promise<void> {
    const dialog = target.getByRole("dialog");
    await dialog.getByText(summary).first().waitFor();
    await dialog.getByLabel("Code from your authenticator app").fill(nextTotpCode());
    await dialog.getByRole("button", { name: "Confirm", exact: true }).click();
    await dialog.waitFor({ state: "detached" });
  }

  it("signs up and sets up an authenticator app, a Master Key and an API key", async () => {
    await page.goto("/sign-up");
    await page.getByLabel("Email").fill(user.email);
    await page.getByLabel("Username").fill(user.username);
    await page.getByLabel("Password").fill(user.password);
    await page.getByLabel("Country of residence").fill("Germany");
    await page.getByText("Germany (DE)").waitFor();
    await page.getByRole("button", { name: "Create account" }).click();
    await page.getByRole("heading", { name: "Check your email" }).waitFor();
    await page.goto(linkIn(await emailAfter(0, user.email, /Verify your email/), "/verify-email"));
    await page.getByText("Your email address is verified.").waitFor();

    await page.goto("/sign-in");
    await page.getByLabel("Username").fill(user.username);
    await page.getByLabel("Password").fill(user.password);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.getByRole("heading", { name: `Welcome, ${user.username}` }).waitFor();

    await page.goto("/security#factors");
    await settled(page);
    await page.getByRole("button", { name: "Add authenticator app" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByLabel("Your password").fill(user.password);
    await dialog.getByRole("button", { name: "Confirm" }).click();
    totpSecret = (await page.getByTestId("totp-secret").textContent())!.trim();
    await page.getByLabel("Code from the app").fill(nextTotpCode());
    await page.getByRole("button", { name: "Turn on", exact: true }).click();
    await page.getByRole("button", { name: "I have stored them" }).click();

    // A new document: the panel named by the address's #fragment opens when the page loads.
    await page.goto("/");
    await page.goto("/security#masterKey");
    await settled(page);
    await page.getByLabel("Master Key", { exact: true }).fill(MASTER_KEY);
    await page.getByLabel("Master Key, again").fill(MASTER_KEY);
    await page.getByRole("button", { name: "Set Master Key" }).click();
    await confirmWithCode(page, /Master Key/);
    await page.getByText("Master Key saved.").waitFor();

    await page.goto("/api-keys");
    await settled(page);
    await page.getByLabel("Name").fill("balance-bot");
    await page.getByLabel("Query funds").check();
    await page.getByRole("button", { name: "Create key" }).click();
    await confirmWithCode(page, /Create API key "balance-bot"/);
    apiKey = {
      secret: (await page.getByTestId("api-secret").textContent())!.trim(),
      key: (await page.locator("dd.mono").first().textContent())!.trim(),
    };
    await page.getByRole("button", { name: "I have copied it" }).click();
    // No venue behind this server: a key that passes every check is answered "unavailable".
    const bot = new KrakenClient({ baseUrl: server.url, ...apiKey });
    await expect(bot.private("Balance", {})).resolves.toMatchObject({ error: ["EService:Unavailable"] });
  });

  it("changes the email address with a second factor; the old address is told, the new one confirms", async () => {
    const before = smtp.messages.length;
    await page.goto("/security");
    await settled(page);
    await page.getByRole("button", { name: "Change Email address" }).click();
    // Refusals are sentences beside the field, before any confirmation is asked for.
    const refusals: [string, string][] = [
      ["not an address", "Enter a valid email address."],
      [oldEmail.toUpperCase(), "That is already your email address."],
    ];
    for (const [typed, sentence] of refusals) {
      await page.getByLabel("New email address").fill(typed);
      await page.getByRole("button", { name: "Change email address" }).click();
      await page.locator(".field-error", { hasText: sentence }).waitFor();
      await expect(page.getByRole("dialog").count()).resolves.toBe(0);
    }
    await page.getByLabel("New email address").fill(newEmail);
    await shotBoth(page, "email-change");
    await page.getByRole("button", { name: "Change email address" }).click();
    await confirmWithCode(page, new RegExp(`Change your email address to ${newEmail}`));
    await page.getByText(`We sent a link to ${newEmail}`).waitFor();

    const notice = await emailAfter(before, oldEmail, /change your account's email address/);
    expect(notice.text).toContain(newEmail);
    expect(linkIn(notice, "/lock-account")).toBeTruthy();
    const confirmation = await emailAfter(before, newEmail, /Confirm your new email address/);
    await page.goto(linkIn(confirmation, "/confirm-email"));
    await page.getByRole("button", { name: "Use this address" }).waitFor();
    await shotBoth(page, "confirm-email");
    await page.getByRole("button", { name: "Use this address" }).click();
    await page.getByText(`Your account's email address is now ${newEmail}.`).waitFor();
    await page.getByText(/Withdrawals are on hold until .* \(72 hours\)/).waitFor();
    await shotBoth(page, "confirm-email-done");
    await emailAfter(before, oldEmail, /email address changed/);

    await page.goto("/security");
    await settled(page);
    await page.getByText(/Withdrawals are on hold after a recent security change until/).waitFor();
  });

  it("approves a new device only from its own network, in plain words, and 'This wasn't me' offers the lock", async () => {
    const laptop = await device(HOME);
    const { page: waiting, errors: waitingErrors } = await newPage(laptop);
    let before = smtp.messages.length;
    await signIn(waiting);
    await waiting.getByRole("heading", { name: "Approve this device" }).waitFor();
    const link = linkIn(
      await emailAfter(before, newEmail, /Approve sign-in from a new device/),
      "/approve-device",
    );

    // Opened where the phishing site is: the page explains, and the approval button does not count.
    const abroad = await device(ELSEWHERE);
    const { page: far, errors: farErrors } = await newPage(abroad);
    await far.goto(link);
    await far.getByText("Headless Chrome on Linux").waitFor();
    await far.getByText(/different network/).waitFor();
    await expect(far.getByText("Bracknell, GB").first().isVisible()).resolves.toBe(true);
    await expect(far.getByRole("button", { name: "Approve this device" }).isDisabled()).resolves.toBe(true);
    expect(await accessibilityViolations(far), "approval from another network").toEqual([]);
    await shotBoth(far, "approve-device-other-network");

    // On the owner's own network the same link approves, and the waiting browser signs in.
    const phone = await device(HOME_NEIGHBOUR);
    const { page: near, errors: nearErrors } = await newPage(phone);
    await near.goto(link);
    await near.getByRole("button", { name: "Approve this device" }).waitFor();
    await expect(near.getByText(/different network/).count()).resolves.toBe(0);
    await shotBoth(near, "approve-device");
    await near.getByRole("button", { name: "Approve this device" }).click();
    await near.getByRole("heading", { name: "Device approved" }).waitFor();
    await near.getByText("Approved.").waitFor();
    await waiting.getByRole("heading", { name: `Welcome, ${user.username}` }).waitFor();

    // Someone else with the password: the owner refuses from the email, and is offered the lock.
    const stranger = await device(HOME);
    const { page: intruder, errors: intruderErrors } = await newPage(stranger);
    before = smtp.messages.length;
    await signIn(intruder);
    await intruder.getByRole("heading", { name: "Approve this device" }).waitFor();
    const second = linkIn(
      await emailAfter(before, newEmail, /Approve sign-in from a new device/),
      "/approve-device",
    );
    await near.goto(second);
    await near.getByRole("button", { name: "This wasn't me" }).click();
    await near.getByRole("heading", { name: "Sign-in refused" }).waitFor();
    await near.getByText("Nobody can finish that sign-in now.").waitFor();
    await near.getByRole("button", { name: "Lock my account" }).waitFor();
    await near.getByRole("link", { name: "Choose a new password" }).waitFor();
    expect(await accessibilityViolations(near), "after 'This wasn't me'").toEqual([]);
    await shotBoth(near, "approve-device-refused");
    await intruder.getByText(/This sign-in was refused/).waitFor();
    // The lock it offers is the confirmation page; nothing is frozen before its button is pressed.
    await near.getByRole("button", { name: "Lock my account" }).click();
    await near.waitForURL(/\/lock-account\?token=/);
    await near.getByRole("button", { name: "Lock my account now" }).waitFor();

    expect([...waitingErrors, ...farErrors, ...nearErrors, ...intruderErrors]).toEqual([]);
    await laptop.close();
    await abroad.close();
    await phone.close();
    await stranger.close();
  });

  it("locks the account from the lock link of a security email, without signing in", async () => {
    const notice = smtp.messages.find(
      (m) => m.to.includes(oldEmail) && /change your account's email/.test(m.subject),
    )!;
    const visitor = await device(ELSEWHERE);
    const { page: lock, errors: lockErrors } = await newPage(visitor);
    await lock.goto(linkIn(notice, "/lock-account"));
    await lock.getByRole("heading", { name: "Lock your account" }).waitFor();
    expect(await accessibilityViolations(lock), "lock confirmation").toEqual([]);
    await shotBoth(lock, "lock-account");
    const before = smtp.messages.length;
    await lock.getByRole("button", { name: "Lock my account now" }).click();
    await lock.getByRole("heading", { name: "Your account is frozen" }).waitFor();
    await lock.getByText(/Every session has ended and your API keys have stopped working/).waitFor();
    expect(await accessibilityViolations(lock), "lock done").toEqual([]);
    await shotBoth(lock, "lock-account-done");
    await emailAfter(before, newEmail, /Your account is frozen/);
    expect(lockErrors).toEqual([]);
    await visitor.close();

    // The API key stops at once, in the words a Kraken client knows.
    const bot = new KrakenClient({ baseUrl: server.url, ...apiKey });
    await expect(bot.private("Balance", {})).resolves.toMatchObject({
      error: ["EAuth:Account temporary disabled"],
    });
  });

  it("shows the signed-in browser, on its next step, that the account is frozen, and nothing else works", async () => {
    // The freeze ended this browser's session: its next step says so, and signing in shows the freeze.
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Dashboard" }).click();
    await page.waitForURL(/\/sign-in/);
    await page.getByText(/session has ended/).waitFor();
    await shot(page, "desktop-sign-in-session-ended");
    await signIn(page);
    await page.getByRole("heading", { name: "Your account is frozen" }).waitFor();
    await settled(page);
    expect(await accessibilityViolations(page), "frozen").toEqual([]);
    await shotBoth(page, "frozen");
    await page.goto("/security");
    await page.getByRole("heading", { name: "Your account is frozen" }).waitFor();
    const refused = await page.request.get("/v1/security");
    expect(refused.status()).toBe(423);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("account_frozen");
    await expect(page.getByLabel("Master Key").count()).resolves.toBe(0);
  });

  it("lifts the freeze a day later with the Master Key and the authenticator app, and emails the owner", async () => {
    server.clock.advance(24 * HOUR);
    const before = smtp.messages.length;
    await signIn(page);
    await page.getByRole("heading", { name: "Your account is frozen" }).waitFor();
    await page.getByRole("heading", { name: "Lift the freeze" }).waitFor();
    expect(await accessibilityViolations(page), "frozen, liftable").toEqual([]);
    await shotBoth(page, "frozen-liftable");
    await page.getByLabel("Master Key").fill(MASTER_KEY);
    await page.getByRole("button", { name: "Lift the freeze" }).click();
    await confirmWithCode(page, /Lift the freeze/);
    await page.getByRole("heading", { name: "The freeze is lifted" }).waitFor();
    await shotBoth(page, "frozen-lifted");
    await emailAfter(before, newEmail, /freeze on your account was lifted/);
    await page.goto("/");
    await page.getByRole("heading", { name: `Welcome, ${user.username}` }).waitFor();
    const bot = new KrakenClient({ baseUrl: server.url, ...apiKey });
    await expect(bot.private("Balance", {})).resolves.toMatchObject({ error: ["EService:Unavailable"] });
    expect(errors).toEqual([]);
  });
});
