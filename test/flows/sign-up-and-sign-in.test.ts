import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Harness, newUser, sessionCookie } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { engines } from "../helpers/storage.js";

describe.each(engines)("sign-up and sign-in on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  it("takes a new trader from sign-up through the emailed link to a session and back out", async () => {
    const user = newUser({ country: "US", region: "US-NY" });
    const signUp = await h.signUp(user);
    expect(signUp.statusCode).toBe(202);
    expect(signUp.json()).toEqual({ status: "verification_sent" });

    // Before verification the correct password does not open a session.
    const early = await h.signIn(user.username, user.password);
    expect(early.statusCode).toBe(403);
    expect(early.json().error.code).toBe("email_not_verified");

    await h.deliverMail();
    const email = await h.smtp.waitFor(user.email, /Verify your email/);
    const token = linkToken(email, "/verify-email");
    const verify = await h.request("POST", "/v1/accounts/verify-email", { body: { token } });
    expect(verify.statusCode).toBe(200);
    const again = await h.request("POST", "/v1/accounts/verify-email", { body: { token } });
    expect(again.statusCode).toBe(410);
    expect(again.json().error.code).toBe("expired");

    const signIn = await h.signIn(user.username.toUpperCase(), user.password);
    expect(signIn.statusCode).toBe(200);
    const body = signIn.json();
    expect(body.state).toBe("authenticated");
    expect(body.session).toMatchObject({ client: "web", aal: 1, methods: ["password"] });
    expect(body.token).toBeUndefined();
    expect(body.notices.map((n: { code: string }) => n.code)).toContain("enable_two_factor");
    const setCookie = String(signIn.headers["set-cookie"]);
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Strict/);
    const cookie = sessionCookie(signIn);

    const me = await h.request("GET", "/v1/session", { cookie });
    expect(me.statusCode).toBe(200);
    expect(me.json().account).toMatchObject({
      username: user.username,
      country: "US",
      region: "US-NY",
      tier: "starter",
    });

    const flow = await h.request("GET", `/v1/sign-in/${body.flowId}`);
    expect(flow.json().state).toBe("authenticated");

    const signOut = await h.request("DELETE", "/v1/session", { cookie });
    expect(signOut.statusCode).toBe(200);
    const after = await h.request("GET", "/v1/session", { cookie });
    expect(after.statusCode).toBe(401);
    expect(after.json().error.code).toBe("unauthenticated");
  });
});
