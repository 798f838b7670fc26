import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Harness, newUser } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { engines } from "../helpers/storage.js";

describe.each(engines)("the email outbox on %s (behaviour §12)", (engine) => {
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

  it("keeps what to send sealed, never a link in clear, and clears it once sent", async () => {
    const user = await h.createVerifiedUser();
    await h.request("POST", "/v1/recovery/password", {
      body: { email: user.email, username: user.username, botCheck: await h.botCheck() },
    });
    const rowsOf = () => h.db.selectFrom("outbox").selectAll().where("recipient", "=", user.email).execute();
    const [queued] = (await rowsOf()).filter((row) => row.kind === "password_reset");
    expect(queued?.payload).toMatch(/^v1\./);
    // Nothing a copy of the database shows says where the link goes or what it carries.
    expect(JSON.stringify(queued)).not.toMatch(/reset-password|token=|anti-phishing/i);

    await h.deliverMail();
    const email = await h.smtp.waitFor(user.email, /Reset your password/);
    const token = linkToken(email, "/reset-password");
    expect(token.length).toBeGreaterThan(20);
    const sent = (await rowsOf()).find((row) => row.id === queued!.id)!;
    expect(sent.sent_at).not.toBeNull();
    expect(sent.payload).toBeNull();
    const everything = JSON.stringify(await h.db.selectFrom("outbox").selectAll().execute());
    expect(everything).not.toContain(token);
  });

  it("does not open a payload moved to another row", async () => {
    const users = [newUser(), newUser()];
    for (const user of users) await h.signUp(user);
    const [a, b] = await h.db.selectFrom("outbox").selectAll().orderBy("created_at").execute();
    await h.db.updateTable("outbox").set({ payload: a!.payload }).where("id", "=", b!.id).execute();
    await h.deliverMail();
    await h.smtp.waitFor(a!.recipient, /Verify/);
    const moved = await h.db
      .selectFrom("outbox")
      .selectAll()
      .where("id", "=", b!.id)
      .executeTakeFirstOrThrow();
    expect(moved.sent_at).toBeNull();
    expect(moved.last_error).toBeTruthy();
    expect(h.smtp.to(b!.recipient)).toHaveLength(0);
  });

  it("still delivers rows written before sealing, then clears them", async () => {
    await h.db
      .insertInto("outbox")
      .values({
        id: "legacy-row",
        account_id: null,
        kind: "username_reminder",
        recipient: "legacy@example.test",
        payload: `plain:${JSON.stringify({ subject: "Your username", text: "Your username is: ada", html: "<p>ada</p>" })}`,
        created_at: h.clock.now(),
        next_attempt_at: h.clock.now(),
      })
      .execute();
    expect(await h.deliverMail()).toBe(1);
    const email = await h.smtp.waitFor("legacy@example.test", /Your username/);
    expect(email.text).toContain("Your username is: ada");
    const row = await h.db
      .selectFrom("outbox")
      .selectAll()
      .where("id", "=", "legacy-row")
      .executeTakeFirstOrThrow();
    expect(row.payload).toBeNull();
  });

  it("deletes sent rows after 30 days and keeps unsent ones", async () => {
    const sentUser = newUser();
    await h.signUp(sentUser);
    await h.deliverMail();
    const port = h.smtp.port;
    await h.smtp.stop();
    const unsentUser = newUser();
    await h.signUp(unsentUser);
    h.clock.advance(30 * 24 * 3_600_000 - 1000);
    expect(await h.services.outbox.purgeSent()).toBe(0);
    h.clock.advance(2000);
    expect(await h.services.outbox.purgeSent()).toBe(1);
    const left = await h.db.selectFrom("outbox").select("recipient").execute();
    expect(left.map((row) => row.recipient)).toEqual([unsentUser.email]);
    await h.smtp.start(port);
  });
});
