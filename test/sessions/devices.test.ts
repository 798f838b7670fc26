import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { totpCode } from "../../src/factors/totp.js";
import { enrollTotp } from "../helpers/factors.js";
import { Harness, newUser, type TestUser } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { engines } from "../helpers/storage.js";

const MINUTE = 60_000;
const newDevice = () => randomBytes(32).toString("base64url");

describe.each(engines)("new sign-in emails on %s (behaviour §12)", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    // Without device approval, the email is what tells the owner of a device never seen before.
    h = await Harness.create(engine, { settings: { signIn: { deviceApproval: false } } });
  });
  afterAll(async () => {
    await h.close();
  });

  it("tells the owner of a sign-in from a device the account had not seen, once per device", async () => {
    const user = await h.createVerifiedUser();
    const device = newDevice();
    const from = async (cookie: string) =>
      h.request("POST", "/v1/sign-in", {
        body: { identifier: user.username, password: user.password, botCheck: await h.botCheck() },
        headers: {
          cookie: `portcullis_device=${cookie}`,
          "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
        },
      });
    const count = () =>
      h.smtp.messages.filter((m) => m.to.includes(user.email) && /New sign-in/.test(m.subject)).length;
    expect((await from(device)).statusCode).toBe(200);
    await h.deliverMail();
    const email = await h.smtp.waitFor(user.email, /New sign-in to your account/);
    expect(email.text).toContain("had not seen before");
    expect(email.text).toContain("/security/sessions");
    // The same browser again: known now, no email.
    expect((await from(device)).statusCode).toBe(200);
    await h.deliverMail();
    expect(count()).toBe(1);
  });
});

describe.each(engines)("device approval on %s (docs/behaviour.md §2 step 3, §5)", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine, { settings: { signIn: { deviceApproval: true } } });
  });
  afterAll(async () => {
    await h.close();
  });

  const deviceCookie = (device: string) => ({ cookie: `portcullis_device=${device}` });

  /** Sign-up and verification from a browser holding `device`: that device is then known. */
  const signUpFrom = async (device: string, verifyFrom = device, user = newUser()): Promise<TestUser> => {
    const response = await h.request("POST", "/v1/accounts", {
      body: { ...user, botCheck: await h.botCheck() },
      headers: deviceCookie(device),
    });
    expect(response.statusCode).toBe(202);
    await h.deliverMail();
    const email = await h.smtp.waitFor(user.email, /Verify your email/);
    const verified = await h.request("POST", "/v1/accounts/verify-email", {
      body: { token: linkToken(email, "/verify-email") },
      headers: deviceCookie(verifyFrom),
    });
    expect(verified.statusCode).toBe(200);
    return user;
  };

  const signInFrom = async (user: TestUser, device: string, userAgent = "lightMyRequest") =>
    h.request("POST", "/v1/sign-in", {
      body: { identifier: user.username, password: user.password, botCheck: await h.botCheck() },
      headers: { ...deviceCookie(device), "user-agent": userAgent },
    });

  const poll = (flowId: string, device: string) =>
    h.request("GET", `/v1/sign-in/${flowId}`, { headers: deviceCookie(device) });

  const approvalToken = async (user: TestUser) => {
    await h.deliverMail();
    const emails = h.smtp.to(user.email).filter((m) => /Approve sign-in/.test(m.subject));
    expect(emails.length).toBeGreaterThan(0);
    return linkToken(emails.at(-1)!, "/approve-device");
  };

  it("knows the browser that signed up and verified, and asks nothing of it", async () => {
    const device = newDevice();
    const user = await signUpFrom(device);
    const response = await signInFrom(user, device);
    expect(response.json().state).toBe("authenticated");
  });

  it("does not trust a squatter's browser once the owner verifies the address the squatter signed up with", async () => {
    // Someone signs up with another person's address and keeps the password; the owner, seeing a
    // verification email, opens the link in their own browser.
    const squatter = newDevice();
    const owner = newDevice();
    const user = await signUpFrom(squatter, owner);
    const attempt = await signInFrom(user, squatter);
    expect(attempt.statusCode).toBe(200);
    expect(attempt.json().state).toBe("device_approval");
    await h.deliverMail();
    await h.smtp.waitFor(user.email, /Approve sign-in/);
    // The owner's browser, which proved the mailbox, is known.
    expect((await signInFrom(user, owner)).json().state).toBe("authenticated");
  });

  it("holds a new device until the emailed link is used, then only that device gets the session", async () => {
    const user = await signUpFrom(newDevice());
    const laptop = newDevice();
    const started = await signInFrom(user, laptop);
    expect(started.json()).toMatchObject({ state: "device_approval" });
    expect(String(started.headers["set-cookie"] ?? "")).not.toContain("portcullis_session");
    const { flowId } = started.json();
    expect((await poll(flowId, laptop)).json().state).toBe("device_approval");

    const token = await approvalToken(user);
    const email = h.smtp.to(user.email).at(-1)!;
    expect(email.text).toContain("IP address: 203.0.113.10");
    expect((await h.request("POST", "/v1/devices/approve", { body: { token } })).statusCode).toBe(200);

    // Someone else who learned the flow id gets nothing.
    const stranger = await poll(flowId, newDevice());
    expect(stranger.json()).toEqual(expect.objectContaining({ state: "device_approved" }));
    expect(String(stranger.headers["set-cookie"] ?? "")).not.toContain("portcullis_session");

    const collected = await poll(flowId, laptop);
    expect(collected.json()).toMatchObject({ state: "authenticated", session: { methods: ["password"] } });
    expect(String(collected.headers["set-cookie"])).toContain("portcullis_session=");
    // The flow is spent: polling again issues no second session.
    const again = await poll(flowId, laptop);
    expect(again.json().state).toBe("authenticated");
    expect(again.json().session).toBeUndefined();
    // The link works once.
    expect((await h.request("POST", "/v1/devices/approve", { body: { token } })).statusCode).toBe(410);
    // And the laptop is now known.
    expect((await signInFrom(user, laptop)).json().state).toBe("authenticated");
  });

  it("lets the link expire after 20 minutes", async () => {
    const user = await signUpFrom(newDevice());
    const phone = newDevice();
    expect((await signInFrom(user, phone)).json().state).toBe("device_approval");
    const token = await approvalToken(user);
    h.clock.advance(20 * MINUTE);
    const late = await h.request("POST", "/v1/devices/approve", { body: { token } });
    expect(late.statusCode).toBe(410);
    expect(late.json().error.code).toBe("expired");
    expect((await signInFrom(user, phone)).json().state).toBe("device_approval");
  });

  it("remembers a device approved after its sign-in expired, so the next sign-in goes through", async () => {
    const user = await signUpFrom(newDevice());
    const tablet = newDevice();
    const { flowId } = (await signInFrom(user, tablet)).json();
    const token = await approvalToken(user);
    h.clock.advance(15 * MINUTE);
    expect((await h.request("POST", "/v1/devices/approve", { body: { token } })).statusCode).toBe(200);
    expect((await poll(flowId, tablet)).statusCode).toBe(410);
    expect((await signInFrom(user, tablet)).json().state).toBe("authenticated");
  });

  it("gives an app without a device id one to keep, and completes its sign-in by polling with it", async () => {
    const user = await signUpFrom(newDevice());
    const started = await h.request("POST", "/v1/sign-in", {
      body: {
        identifier: user.username,
        password: user.password,
        client: "app",
        botCheck: await h.botCheck(),
      },
    });
    expect(started.json()).toMatchObject({ state: "device_approval", deviceId: expect.any(String) });
    const { flowId, deviceId } = started.json();
    await h.request("POST", "/v1/devices/approve", { body: { token: await approvalToken(user) } });
    const collected = await h.request("GET", `/v1/sign-in/${flowId}`, {
      headers: { "x-device-id": deviceId },
    });
    expect(collected.json()).toMatchObject({ state: "authenticated", token: expect.any(String) });
  });

  it("asks for the second factor first, then the device", async () => {
    const home = newDevice();
    const user = await signUpFrom(home);
    const signIn = await signInFrom(user, home);
    const { secret } = await enrollTotp(h, await sessionTokenFor(signIn), { password: user.password });
    h.clock.advance(30_000);
    const started = await signInFrom(user, newDevice());
    expect(started.json().state).toBe("second_factor");
    const second = await h.request("POST", `/v1/sign-in/${started.json().flowId}/totp`, {
      body: { code: totpCode(secret, h.clock.now()) },
    });
    expect(second.json().state).toBe("device_approval");
  });

  it("lists known devices, forgets one with its sessions, and disconnects all", async () => {
    const home = newDevice();
    const user = await signUpFrom(home);
    const homeSignIn = await signInFrom(user, home);
    const homeCookie = sessionCookieOf(homeSignIn);
    const work = newDevice();
    const firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    const { flowId } = (await signInFrom(user, work, firefox)).json();
    await h.request("POST", "/v1/devices/approve", { body: { token: await approvalToken(user) } });
    const workCookie = sessionCookieOf(await poll(flowId, work));

    const asHome = {
      headers: {
        cookie: `portcullis_session=${homeCookie}; portcullis_device=${home}`,
        origin: "http://localhost:3000",
      },
    };
    const listed = (await h.request("GET", "/v1/devices", asHome)).json().devices;
    expect(listed).toHaveLength(2);
    const workDevice = listed.find((d: { current: boolean }) => !d.current);
    expect(workDevice.label).toBe("Firefox on Linux");
    const forget = await h.request("DELETE", `/v1/devices/${workDevice.id}`, asHome);
    expect(forget.json()).toMatchObject({ status: "removed", endedSessions: 1 });
    expect((await h.request("GET", "/v1/session", { cookie: workCookie })).statusCode).toBe(401);
    expect((await signInFrom(user, work)).json().state).toBe("device_approval");

    // Disconnecting all is a step-up: one stolen session must not sign the owner out everywhere.
    const asked = await h.request("DELETE", "/v1/devices", asHome);
    expect(asked.json().error.code).toBe("step_up_required");
    const actionId = asked.json().error.actionId as string;
    const confirmed = await h.request("POST", `/v1/actions/${actionId}/confirm`, {
      ...asHome,
      body: { password: user.password },
    });
    const stepped = sessionCookieOf(confirmed);
    const disconnect = await h.request("DELETE", "/v1/devices", {
      headers: {
        ...asHome.headers,
        cookie: `portcullis_session=${stepped}; portcullis_device=${home}`,
        "x-action-id": actionId,
      },
    });
    expect(disconnect.json()).toMatchObject({ status: "disconnected", removedDevices: 1 });
    expect((await h.request("GET", "/v1/session", { cookie: stepped })).statusCode).toBe(401);
    expect((await signInFrom(user, home)).json().state).toBe("device_approval");
  });

  function sessionCookieOf(response: Awaited<ReturnType<typeof signInFrom>>): string {
    const cookie = response.cookies.find((c) => c.name === "portcullis_session");
    if (!cookie) throw new Error(`no session in ${response.body}`);
    return cookie.value;
  }

  /** A bearer token for the session a browser sign-in created (same session, read from its cookie). */
  async function sessionTokenFor(response: Awaited<ReturnType<typeof signInFrom>>): Promise<string> {
    return sessionCookieOf(response);
  }
});
