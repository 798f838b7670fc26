import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KrakenClient } from "../../src/client/kraken-client.js";
import { createKeyOwner } from "../helpers/factors.js";
import { Harness, SERVICE_TOKEN, type TestUser } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { engines } from "../helpers/storage.js";

const DAY = 86_400_000;
const service = { authorization: `Bearer ${SERVICE_TOKEN}` };
/** Addresses the offline GeoLite2 database places. */
const GB = "81.2.69.142"; // Bracknell, GB
const GB_ELSEWHERE = "2.125.160.216"; // Plymouth, GB: another /24
const SE = "89.160.20.112"; // Kristinehamn, SE
const DE = "85.214.132.117";
const CN = "175.16.199.10";

describe.each(engines)("new-place alerts on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  const newPlaceEmails = (user: TestUser) =>
    h.smtp.to(user.email).filter((m) => /used from a new place/.test(m.subject));

  /** An app sign-in with a device id of its own, from `ip`. */
  const signIn = async (user: TestUser, deviceId: string, ip: string) => {
    const response = await h.request("POST", "/v1/sign-in", {
      body: {
        identifier: user.username,
        password: user.password,
        client: "app",
        deviceId,
        botCheck: await h.botCheck(),
      },
      ip,
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json().state).toBe("authenticated");
  };

  it("emails the owner once about a sign-in from a new country, with the place and the lock link", async () => {
    const user = await h.createVerifiedUser();
    const device = randomBytes(16).toString("hex");
    // The first sign-in of the device sends the new-device email, which names the place: nothing more.
    await signIn(user, device, GB);
    await signIn(user, device, GB);
    await h.deliverMail();
    expect(newPlaceEmails(user)).toHaveLength(0);

    await signIn(user, device, SE);
    await h.deliverMail();
    const alert = await h.smtp.waitFor(user.email, /used from a new place/);
    expect(alert.text).toContain("Kristinehamn, SE");
    expect(alert.text).toContain(`IP address: ${SE}`);
    expect(linkToken(alert, "/lock-account")).toBeTruthy();

    // Five sign-ins from another new country at once: one email.
    await Promise.all(Array.from({ length: 5 }, () => signIn(user, device, DE)));
    // The same places again, the next day too: known now.
    h.clock.advance(DAY);
    await signIn(user, device, SE);
    await signIn(user, device, DE);
    await h.deliverMail();
    const alerts = newPlaceEmails(user);
    expect(alerts).toHaveLength(2);
    expect(alerts[1]!.text).toContain("DE");
  });

  it("emails the owner about a known device signing in from a new network in a known country", async () => {
    const user = await h.createVerifiedUser();
    const device = randomBytes(16).toString("hex");
    await signIn(user, device, GB);
    await signIn(user, device, GB_ELSEWHERE);
    await h.deliverMail();
    const alert = await h.smtp.waitFor(user.email, /used from a new place/);
    expect(alert.text).toContain("the network 2.125.160.0/24 (Plymouth, GB)");
    await signIn(user, device, GB_ELSEWHERE);
    await h.deliverMail();
    expect(newPlaceEmails(user)).toHaveLength(1);
  });

  it("emails the owner once when an API key is used from a new country", async () => {
    const { user, key } = await createKeyOwner(h, {
      name: "bot",
      permissions: ["funds_query"],
      nonceWindow: 1000,
    });
    const client = new KrakenClient({ baseUrl: "http://unused.invalid", key: key.key, secret: key.secret });
    const use = async (ip: string, nonce?: bigint) => {
      const verdict = await h.request("POST", "/v1/gateway/check", {
        headers: service,
        body: { ...client.sign("Balance", {}, nonce), ip },
      });
      expect(verdict.json().allow, verdict.body).toBe(true);
    };
    // The account's first country is only recorded.
    await use(GB);
    await use(SE);
    h.clock.advance(60_000);
    // Consecutive nonces: six microsecond nonces signed on a busy machine can span more than the window.
    const first = BigInt(Date.now() + 1) * 1000n;
    await Promise.all(Array.from({ length: 6 }, (_, i) => use(CN, first + BigInt(i))));
    await h.deliverMail();
    const alerts = newPlaceEmails(user);
    expect(alerts).toHaveLength(2);
    expect(alerts[0]!.text).toContain(`by the API key with id ${key.id}`);
    // The country is read from the sentence naming the place ("used from Kristinehamn, SE, where …"):
    // the rest of an email holds random tokens, in which "SE" or "CN" can occur anywhere.
    const country = (text: string) => /used from (?:[^,]*, )?([A-Z]{2}), where/.exec(text)?.[1] ?? "?";
    expect(alerts.map((m) => country(m.text))).toEqual(["SE", "CN"]);
  });
});
