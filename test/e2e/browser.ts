import fs from "node:fs";
import path from "node:path";
import { Secret, TOTP } from "otpauth";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";

/** Debian's Chromium, installed by the system package manager; the tests never download a browser. */
export const chromiumPath = process.env.PORTCULLIS_TEST_CHROMIUM ?? "/usr/bin/chromium";

export const screenshotDirectory = path.resolve(import.meta.dirname, "../../build/screenshots");

export async function launchBrowser(): Promise<Browser> {
  if (!fs.existsSync(chromiumPath)) {
    throw new Error(`Chromium is missing at ${chromiumPath}: install it with "apt-get install -y chromium"`);
  }
  // Playwright gives every launch a fresh temporary profile (--user-data-dir) of its own.
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // localhost is the origin WebAuthn sees; make sure it is the IPv4 address the server listens on.
      "--host-resolver-rules=MAP localhost 127.0.0.1",
    ],
  });
}

/** Errors the page itself reports: script errors and Content-Security-Policy violations fail a test. */
export function watchPageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    const text = message.text();
    // An answer of 401 or 404 is how the API says "signed out" or "nothing here"; the page handles it.
    if (message.type() === "error" && !text.startsWith("Failed to load resource")) errors.push(text);
  });
  return errors;
}

export interface VirtualAuthenticator {
  id: string;
  remove(): Promise<void>;
}

/** A roaming security key (USB, CTAP2) simulated by Chromium itself, which signs like a real one. */
export async function addSecurityKey(page: Page): Promise<VirtualAuthenticator> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("WebAuthn.enable", { enableUI: false });
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "usb",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return {
    id: authenticatorId,
    remove: async () => {
      await cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId });
    },
  };
}

export async function screenshot(page: Page, name: string): Promise<string> {
  fs.mkdirSync(screenshotDirectory, { recursive: true });
  const file = path.join(screenshotDirectory, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

const axeSource = fs.readFileSync(
  path.resolve(import.meta.dirname, "../../node_modules/axe-core/axe.min.js"),
  "utf8",
);

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: unknown[] }[];
}

/**
 * axe-core's WCAG checks on the page as it is now. It is evaluated through the DevTools protocol, which
 * the page's CSP (script-src 'self') does not apply to, so the policy stays as strict as in production.
 */
export async function accessibilityViolations(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const axe = (
      globalThis as unknown as { axe: { run(context: Document, options: unknown): Promise<unknown> } }
    ).axe;
    const result = (await axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] },
    })) as { violations: AxeViolation[] };
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => ({ target: n.target })),
    }));
  });
  return violations.filter((v) => v.impact === "serious" || v.impact === "critical");
}

export async function newPage(context: BrowserContext): Promise<{ page: Page; errors: string[] }> {
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  return { page, errors: watchPageErrors(page) };
}

/** Waits until the page has its heading and nothing on it is loading. */
export async function settled(target: Page): Promise<void> {
  await target.locator("main h1").waitFor();
  await target.waitForFunction(() => document.querySelectorAll('[aria-busy="true"]').length === 0);
}

/**
 * Waits for an email to `address` with this subject in the development mailbox of the server at
 * `serverUrl`, opens the mailbox page and follows the email's link to `linkPath`.
 */
export async function followEmailLink(
  target: Page,
  serverUrl: string,
  address: string,
  subject: string,
  linkPath: string,
): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const { messages } = (await (await fetch(`${serverUrl}/dev/mailbox.json`)).json()) as {
      messages: { to: string; subject: string }[];
    };
    if (messages.some((m) => m.to.includes(address) && m.subject === subject)) break;
    if (Date.now() > deadline) throw new Error(`no email "${subject}" for ${address}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await target.goto("/dev/mailbox");
  const email = target.locator("article", { hasText: subject }).filter({ hasText: address }).first();
  await email.locator(`a[href*="${linkPath}"]`).first().click();
  await target.waitForURL(new RegExp(linkPath));
}

/** The next authenticator-app code: the clock moves on a step first, since each code is accepted once. */
export function nextTotpCode(
  clock: { advance(ms: number): void; now(): number },
  secretBase32: string,
): string {
  clock.advance(30_000);
  const totp = new TOTP({
    secret: Secret.fromBase32(secretBase32),
    algorithm: "SHA1",
    digits: 6,
    period: 30,
  });
  return totp.generate({ timestamp: clock.now() });
}
