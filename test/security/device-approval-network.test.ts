import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Harness, type TestUser } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { engines } from "../helpers/storage.js";

/** Every request arrives through this reverse proxy, which names the client in X-Forwarded-For. */
const PROXY = "10.0.0.7";
const HOME = "81.2.69.142"; // Bracknell, GB
const HOME_NEIGHBOUR = "81.2.69.77"; // the same /24
const PHISHING_PROXY = "89.160.20.112"; // Kristinehamn, SE
const HOME_V6 = "2a02:ec0:1:2::10";
const HOME_V6_NEIGHBOUR = "2a02:ec0:1:ffff::99"; // the same /48
const ELSEWHERE_IN_GB = "2.125.160.216";

describe.each(engines)("network-bound device approval on %s", (engine) => {
  let h: Harness;
  let loose: Harness;
  beforeAll(async () => {
    const options = {
      settings: { signIn: { deviceApproval: true } },
      env: { PORTCULLIS_TRUSTED_PROXIES: PROXY },
    };
    h = await Harness.create(engine, options);
    loose = await Harness.create(engine, {
      ...options,
      env: { ...options.env, PORTCULLIS_DEVICE_APPROVAL_NETWORK: "country" },
    });
  });
  afterAll(async () => {
    await h?.close();
    await loose?.close();
  });

  const via = (client: string) => ({ ip: PROXY, headers: { "x-forwarded-for": client } });

  /** A sign-in from a new browser at `client`; returns the flow and the emailed approval token. */
  const waitingSignIn = async (app: Harness, user: TestUser, client: string) => {
    const device = randomBytes(24).toString("base64url");
    const started = await app.request("POST", "/v1/sign-in", {
      body: { identifier: user.username, password: user.password, botCheck: await app.botCheck() },
      ...via(client),
      headers: {
        ...via(client).headers,
        cookie: `portcullis_device=${device}`,
        "user-agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) Firefox/140.0",
      },
    });
    expect(started.json().state, started.body).toBe("device_approval");
    await app.deliverMail();
    const email = app.smtp.to(user.email).filter((m) => /Approve sign-in/.test(m.subject));
    return {
      flowId: started.json().flowId as string,
      device,
      token: linkToken(email.at(-1)!, "/approve-device"),
    };
  };
  const poll = (app: Harness, flowId: string, device: string, client: string) =>
    app.request("GET", `/v1/sign-in/${flowId}`, {
      ...via(client),
      headers: { ...via(client).headers, cookie: `portcullis_device=${device}` },
    });

  it("counts an approval only from the network of the device that asked, and says why otherwise", async () => {
    const user = await h.createVerifiedUser();
    const waiting = await waitingSignIn(h, user, HOME);

    const details = await h.request("POST", "/v1/devices/approve/details", {
      body: { token: waiting.token },
      ...via(PHISHING_PROXY),
    });
    expect(details.statusCode, details.body).toBe(200);
    expect(details.json()).toMatchObject({
      device: expect.stringContaining("Firefox"),
      location: "Bracknell, GB",
      ip: HOME,
      requestedAt: expect.any(String),
      sameNetwork: false,
    });
    const refused = await h.request("POST", "/v1/devices/approve", {
      body: { token: waiting.token },
      ...via(PHISHING_PROXY),
    });
    expect(refused.statusCode, refused.body).toBe(403);
    expect(refused.json().error.code).toBe("approval_network");
    expect(refused.json().error.message).toMatch(/same network/);
    expect((await poll(h, waiting.flowId, waiting.device, HOME)).json().state).toBe("device_approval");

    // From the same /24 the link (left unspent) counts, and the waiting browser gets its session.
    const sameNetwork = await h.request("POST", "/v1/devices/approve/details", {
      body: { token: waiting.token },
      ...via(HOME_NEIGHBOUR),
    });
    expect(sameNetwork.json().sameNetwork).toBe(true);
    const approved = await h.request("POST", "/v1/devices/approve", {
      body: { token: waiting.token },
      ...via(HOME_NEIGHBOUR),
    });
    expect(approved.statusCode, approved.body).toBe(200);
    const done = await poll(h, waiting.flowId, waiting.device, HOME);
    expect(done.json().state).toBe("authenticated");
  });

  it("compares IPv6 addresses by their /48", async () => {
    const user = await h.createVerifiedUser();
    const waiting = await waitingSignIn(h, user, HOME_V6);
    const far = await h.request("POST", "/v1/devices/approve", {
      body: { token: waiting.token },
      ...via("2a02:ec0:2::1"),
    });
    expect(far.statusCode).toBe(403);
    const near = await h.request("POST", "/v1/devices/approve", {
      body: { token: waiting.token },
      ...via(HOME_V6_NEIGHBOUR),
    });
    expect(near.statusCode, near.body).toBe(200);
  });

  it("'This wasn't me' refuses the sign-in for good and hands back a lock token", async () => {
    const user = await h.createVerifiedUser();
    const waiting = await waitingSignIn(h, user, HOME);
    const refused = await h.request("POST", "/v1/devices/refuse", {
      body: { token: waiting.token },
      ...via(PHISHING_PROXY),
    });
    expect(refused.statusCode, refused.body).toBe(200);
    const { lockToken } = refused.json() as { lockToken: string };
    expect((await poll(h, waiting.flowId, waiting.device, HOME)).json().state).toBe("device_refused");
    // The link is spent: it cannot approve afterwards, from anywhere.
    const late = await h.request("POST", "/v1/devices/approve", {
      body: { token: waiting.token },
      ...via(HOME),
    });
    expect(late.statusCode).toBe(410);
    const frozen = await h.request("POST", "/v1/account-lock", { body: { token: lockToken } });
    expect(frozen.statusCode, frozen.body).toBe(200);
  });

  it("can be set to the same country instead", async () => {
    const user = await loose.createVerifiedUser();
    const abroad = await waitingSignIn(loose, user, HOME);
    const fromSweden = await loose.request("POST", "/v1/devices/approve", {
      body: { token: abroad.token },
      ...via(PHISHING_PROXY),
    });
    expect(fromSweden.statusCode).toBe(403);
    const fromGb = await loose.request("POST", "/v1/devices/approve", {
      body: { token: abroad.token },
      ...via(ELSEWHERE_IN_GB),
    });
    expect(fromGb.statusCode, fromGb.body).toBe(200);
  });
});
