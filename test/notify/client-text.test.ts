import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeUserAgent } from "../../src/support/user-agent.js";
import { Harness } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

/** What an attacker would put in their User-Agent to be read under the owner's anti-phishing code. */
const hostile =
  "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36 URGENT: your account is compromised, call +1-555-0100 or visit https://evil.example/support";

describe("user-agent labels", () => {
  it.each([
    [
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
      "Chrome on Windows",
    ],
    [
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
      "Edge on Windows",
    ],
    ["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"],
    [
      "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
      "Safari on macOS",
    ],
    [
      "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0 Mobile/15E148 Safari/604.1",
      "Chrome on iOS",
    ],
    [
      "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
      "Safari on iOS",
    ],
    [
      "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0 Mobile Safari/537.36",
      "Samsung Internet on Android",
    ],
    [
      "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
      "Chrome on ChromeOS",
    ],
    [
      "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/126.0 Safari/537.36 OPR/111.0",
      "Opera on Windows",
    ],
    [
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/142.0.0.0 Safari/537.36",
      "Headless Chrome on Linux",
    ],
    ["curl/8.5.0", "unknown browser"],
    ["Please call +1-555-0100", "unknown browser"],
    ["", "unknown browser"],
    [null, "unknown browser"],
    ["Something (Linux) odd", "unknown browser on Linux"],
    [hostile, "Chrome on Linux"],
  ])("%s → %s", (userAgent, label) => {
    expect(describeUserAgent(userAgent)).toBe(label);
  });
});

describe.each(engines)("security emails carry no client-supplied text on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine, { settings: { signIn: { deviceApproval: true } } });
  });
  afterAll(async () => {
    await h.close();
  });

  const signIn = async (identifier: string, password: string) =>
    h.request("POST", "/v1/sign-in", {
      body: { identifier, password, botCheck: await h.botCheck() },
      headers: {
        "user-agent": hostile,
        cookie: `portcullis_device=${randomBytes(32).toString("base64url")}`,
      },
    });

  const expectClean = (email: { text: string; raw: string }) => {
    expect(email.text).toContain("Browser / app: Chrome on Linux");
    // The whole message, HTML part included (quoted-printable soft breaks joined).
    for (const part of [email.text, email.raw.replace(/=\r?\n/g, "")]) {
      expect(part).not.toMatch(/URGENT|555-0100|evil\.example|Mozilla/);
    }
  };

  it("names the browser of a new device by a label in the approval email", async () => {
    const user = await h.createVerifiedUser();
    const started = await signIn(user.username, user.password);
    expect(started.json().state).toBe("device_approval");
    await h.deliverMail();
    const email = await h.smtp.waitFor(user.email, /Approve sign-in/);
    expectClean(email);
    expect(email.text).toContain("(Chrome on Linux)");
  });

  it("names the browser of the last attempt by a label in the restriction email", async () => {
    const user = await h.createVerifiedUser();
    for (let i = 0; i < 5; i += 1) await signIn(user.username, "not the password at all");
    await h.deliverMail();
    const email = await h.smtp.waitFor(user.email, /restricted/);
    expectClean(email);
  });
});
