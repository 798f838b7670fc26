import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CountingHasher } from "../helpers/counting-hasher.js";
import { ADMIN_TOKEN, Harness, newUser } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

const MINUTE = 60_000;

/** Each guess from its own address, as a botnet would send them: per-IP limits do not get in the way. */
let ipCounter = 0;
const freshIp = () => {
  ipCounter += 1;
  return `198.51.${Math.floor(ipCounter / 250) % 250}.${(ipCounter % 250) + 1}`;
};

describe.each(engines)("account restriction on %s (behaviour §4)", (engine) => {
  let h: Harness;
  const hasher = new CountingHasher();

  beforeAll(async () => {
    h = await Harness.create(engine, {
      hasher,
      // A smaller permanent limit keeps the test short; the mechanism is the same as at 100.
      settings: { protection: { failuresBeforePermanentRestriction: 15 } },
    });
  });
  afterAll(async () => {
    await h.close();
  });
  beforeEach(() => hasher.reset());

  const wrong = (username: string) => h.signIn(username, "not the password at all", { ip: freshIp() });
  const right = (username: string, password: string) => h.signIn(username, password, { ip: freshIp() });

  it("answers a wrong password, an unknown user and a restricted account identically", async () => {
    const user = await h.createVerifiedUser();
    const wrongPassword = await wrong(user.username);
    const unknownUser = await wrong(`nobody_${user.username}`);
    for (let i = 0; i < 4; i += 1) await wrong(user.username);
    const restricted = await right(user.username, user.password);

    for (const response of [wrongPassword, unknownUser, restricted]) {
      expect(response.statusCode).toBe(401);
      expect(response.json()).toEqual({
        error: { code: "invalid_credentials", message: "Invalid username or password." },
      });
      // Only the device cookie, the same for all three: no session.
      expect(String(response.headers["set-cookie"] ?? "")).not.toContain("portcullis_session");
    }
    // Equal timing by construction: every answer above did exactly one Argon2id verification.
    expect(hasher.realVerifications + hasher.dummyVerifications).toBe(7);
    expect(hasher.dummyVerifications).toBe(2);
  });

  it("checks at most 5 of 50 parallel wrong guesses and never records more failures than were sent", async () => {
    const user = await h.createVerifiedUser();
    const accountId = await h.accountId(user);
    const botChecks = await Promise.all(Array.from({ length: 50 }, () => h.botCheck()));
    const responses = await Promise.all(
      botChecks.map((botCheck) =>
        h.request("POST", "/v1/sign-in", {
          body: { identifier: user.username, password: "a parallel wrong guess", botCheck },
          ip: freshIp(),
        }),
      ),
    );
    expect(responses.every((r) => r.statusCode === 401)).toBe(true);
    expect(hasher.realVerifications).toBe(5);
    const guard = await h.db
      .selectFrom("account_guards")
      .selectAll()
      .where("account_id", "=", accountId)
      .executeTakeFirstOrThrow();
    expect(guard.consecutive_failures).toBe(5);
    expect(guard.restrictions).toBe(1);
    expect(guard.restricted_until).toBe(h.clock.now() + 15 * MINUTE);
  });

  it("lets at most 5 of 50 parallel guesses through even when the right password is among them", async () => {
    const user = await h.createVerifiedUser();
    const guesses = Array.from({ length: 50 }, (_, i) =>
      i === 49 ? user.password : `wrong guess number ${i}`,
    );
    const botChecks = await Promise.all(guesses.map(() => h.botCheck()));
    const responses = await Promise.all(
      guesses.map((password, i) =>
        h.request("POST", "/v1/sign-in", {
          body: { identifier: user.username, password, botCheck: botChecks[i] },
          ip: freshIp(),
        }),
      ),
    );
    expect(hasher.realVerifications).toBeLessThanOrEqual(5);
    expect(responses.filter((r) => r.statusCode === 200).length).toBeLessThanOrEqual(1);
  });

  it("restricts for 15 minutes, doubles the next restriction, lifts each by itself, and emails the owner", async () => {
    const user = await h.createVerifiedUser();
    for (let i = 0; i < 5; i += 1) expect((await wrong(user.username)).statusCode).toBe(401);
    expect((await right(user.username, user.password)).statusCode).toBe(401);

    await h.deliverMail();
    const email = await h.smtp.waitFor(user.email, /temporarily restricted/);
    expect(email.text).toContain("IP address:");
    expect(email.text).toContain("/forgot-password");

    h.clock.advance(15 * MINUTE - 1000);
    expect((await right(user.username, user.password)).statusCode).toBe(401);
    h.clock.advance(1000);
    // Lifted; five more failures restrict again, now for 30 minutes.
    for (let i = 0; i < 5; i += 1) expect((await wrong(user.username)).statusCode).toBe(401);
    h.clock.advance(30 * MINUTE - 1000);
    expect((await right(user.username, user.password)).statusCode).toBe(401);
    h.clock.advance(1000);
    expect((await right(user.username, user.password)).statusCode).toBe(200);

    // The success reset every count: five failures are needed again, and the next restriction is 15 minutes.
    for (let i = 0; i < 4; i += 1) await wrong(user.username);
    expect((await right(user.username, user.password)).statusCode).toBe(200);
    for (let i = 0; i < 5; i += 1) await wrong(user.username);
    h.clock.advance(15 * MINUTE);
    expect((await right(user.username, user.password)).statusCode).toBe(200);
  });

  it("restricts permanently after the consecutive-failure limit, until support lifts it", async () => {
    const user = await h.createVerifiedUser();
    const accountId = await h.accountId(user);
    for (let round = 0; round < 3; round += 1) {
      for (let i = 0; i < 5; i += 1) await wrong(user.username);
      h.clock.advance(24 * 60 * MINUTE);
    }
    expect((await right(user.username, user.password)).statusCode).toBe(401);
    const status = await h.services.guard.status(accountId);
    expect(status).toMatchObject({ restricted: true, permanent: true });
    await h.deliverMail();
    await h.smtp.waitFor(user.email, /has been restricted/);

    const lift = await h.request("DELETE", `/v1/admin/accounts/${accountId}/restriction`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(lift.statusCode).toBe(200);
    expect((await right(user.username, user.password)).statusCode).toBe(200);
    const audit = await h.services.audit.list({
      accountId,
      events: ["account.restriction_lifted"],
      limit: 5,
    });
    expect(audit[0]).toMatchObject({ actor: "operator", outcome: "success" });
  });

  it("does not let an unknown identifier create counters or restrict anyone", async () => {
    const ghost = newUser();
    for (let i = 0; i < 6; i += 1) expect((await wrong(ghost.username)).statusCode).toBe(401);
    expect(hasher.realVerifications).toBe(0);
    expect(hasher.dummyVerifications).toBe(6);
  });
});
