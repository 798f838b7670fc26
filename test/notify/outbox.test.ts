import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Harness, newUser } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { engines } from "../helpers/storage.js";

describe.each(engines)("the email outbox on %s (SPEC §12)", (engine) => {
  let h: Harness;
  beforeEach(async () => {
    h = await Harness.create(engine);
  });
  afterEach(async () => {
    await h.close();
  });

  it("keeps mail while SMTP is down, retries with backoff, and delivers when it is back", async () => {
    const port = h.smtp.port;
    await h.smtp.stop();
    const user = newUser();
    expect((await h.signUp(user)).statusCode).toBe(202);

    expect(await h.deliverMail()).toBe(0);
    const [row] = await h.db.selectFrom("outbox").selectAll().where("recipient", "=", user.email).execute();
    expect(row).toMatchObject({ attempts: 1, sent_at: null });
    expect(row?.last_error).toBeTruthy();
    const firstRetry = row!.next_attempt_at - h.clock.now();
    expect(firstRetry).toBe(5000);

    // Not due yet: nothing is attempted.
    expect(await h.deliverMail()).toBe(0);
    h.clock.advance(firstRetry);
    expect(await h.deliverMail()).toBe(0);
    const [second] = await h.db
      .selectFrom("outbox")
      .selectAll()
      .where("recipient", "=", user.email)
      .execute();
    expect(second?.attempts).toBe(2);
    expect(second!.next_attempt_at - h.clock.now()).toBe(10_000);

    await h.smtp.start(port);
    h.clock.advance(10_000);
    expect(await h.deliverMail()).toBe(1);
    const email = await h.smtp.waitFor(user.email, /Verify your email/);
    const verify = await h.request("POST", "/v1/accounts/verify-email", {
      body: { token: linkToken(email, "/verify-email") },
    });
    expect(verify.statusCode).toBe(200);
    expect(await h.services.outbox.pending()).toBe(0);
  });

  it("sends each message once even when several workers run at the same time", async () => {
    const users = Array.from({ length: 5 }, () => newUser());
    for (const user of users) await h.signUp(user);
    const sent = await Promise.all([h.deliverMail(), h.deliverMail(), h.deliverMail()]);
    expect(sent.reduce((a, b) => a + b, 0)).toBe(5);
    for (const user of users) await h.smtp.waitFor(user.email, /Verify/);
    expect(h.smtp.messages.length).toBe(5);
  });

  it("tells the mailbox owner, not the caller, that the email or username is taken", async () => {
    const existing = await h.createVerifiedUser();
    const sameEmail = await h.signUp(newUser({ email: existing.email }));
    const sameUsername = newUser({ username: existing.username });
    const sameName = await h.signUp(sameUsername);
    const fresh = await h.signUp(newUser());
    for (const response of [sameEmail, sameName, fresh]) {
      expect(response.statusCode).toBe(202);
      expect(response.json()).toEqual({ status: "verification_sent" });
    }
    await h.deliverMail();
    await h.smtp.waitFor(existing.email, /Someone tried to sign up/);
    await h.smtp.waitFor(sameUsername.email, /Choose another username/);
  });
});
