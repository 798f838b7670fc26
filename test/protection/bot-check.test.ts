import { solveChallenge } from "altcha-lib";
import { deriveKey } from "altcha-lib/algorithms/sha";
import { afterEach, describe, expect, it } from "vitest";
import { Harness, newUser } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

describe.each(engines)("the bot check on %s (behaviour §3)", (engine) => {
  let h: Harness;
  afterEach(async () => {
    await h?.close();
  });

  it("in 'always' mode, sign-up and sign-in need a solved challenge, and each solution works once", async () => {
    h = await Harness.create(engine);
    const user = newUser();
    const without = await h.request("POST", "/v1/accounts", { body: user });
    expect(without.statusCode).toBe(400);
    expect(without.json().error.code).toBe("bot_check_failed");
    const garbage = await h.request("POST", "/v1/sign-in", {
      body: { identifier: "someone", password: "x", botCheck: "bm90IGpzb24=" },
    });
    expect(garbage.json().error.code).toBe("bot_check_failed");

    const solved = await h.botCheck();
    const first = await h.request("POST", "/v1/accounts", { body: { ...user, botCheck: solved } });
    expect(first.statusCode).toBe(202);
    const replay = await h.request("POST", "/v1/accounts", { body: { ...newUser(), botCheck: solved } });
    expect(replay.statusCode).toBe(400);
    expect(replay.json().error.message).toMatch(/already used/);
  });

  it("accepts one of 20 parallel submissions of the same solution", async () => {
    h = await Harness.create(engine);
    const solved = await h.botCheck();
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        h.request("POST", "/v1/sign-in", {
          body: { identifier: `nobody${i}`, password: "whatever it is", botCheck: solved },
          ip: `192.0.2.${i + 1}`,
        }),
      ),
    );
    const passedBotCheck = responses.filter((r) => r.json().error.code === "invalid_credentials");
    expect(passedBotCheck).toHaveLength(1);
  });

  it("refuses a tampered challenge and an answer older than 5 minutes", async () => {
    h = await Harness.create(engine);
    const solved = JSON.parse(Buffer.from(await h.botCheck(), "base64").toString());
    solved.challenge.parameters.data.expiresAt += 3_600_000;
    const tampered = Buffer.from(JSON.stringify(solved)).toString("base64");
    const response = await h.request("POST", "/v1/sign-in", {
      body: { identifier: "someone", password: "whatever it is", botCheck: tampered },
    });
    expect(response.json().error.code).toBe("bot_check_failed");

    const stale = await h.botCheck();
    h.clock.advance(5 * 60_000);
    const late = await h.request("POST", "/v1/sign-in", {
      body: { identifier: "someone", password: "whatever it is", botCheck: stale },
    });
    expect(late.json().error).toMatchObject({
      code: "bot_check_failed",
      message: expect.stringMatching(/expired/),
    });
  });

  it("in 'adaptive' mode, asks only after failures from the address or for the identifier", async () => {
    h = await Harness.create(engine, { env: { PORTCULLIS_BOT_CHECK: "adaptive" } });
    const user = await h.createVerifiedUser();
    const attempt = (ip: string, password = "not my password!") =>
      h.request("POST", "/v1/sign-in", { body: { identifier: user.username, password }, ip });
    expect((await attempt("192.0.2.1", user.password)).statusCode).toBe(200);
    for (let i = 0; i < 3; i += 1) expect((await attempt(`192.0.2.${10 + i}`)).statusCode).toBe(401);
    // Three failures for this identifier: now every address needs a bot check for it.
    const next = await attempt("192.0.2.99", user.password);
    expect(next.statusCode).toBe(400);
    expect(next.json().error.code).toBe("bot_check_failed");
    const solved = await h.botCheck();
    const withCheck = await h.request("POST", "/v1/sign-in", {
      body: { identifier: user.username, password: user.password, botCheck: solved },
      ip: "192.0.2.99",
    });
    expect(withCheck.statusCode).toBe(200);
  });

  it("in 'adaptive' mode, counts failures from anywhere in one IPv6 /64 as one address", async () => {
    h = await Harness.create(engine, { env: { PORTCULLIS_BOT_CHECK: "adaptive" } });
    const user = await h.createVerifiedUser();
    const attempt = (ip: string, identifier: string, password = "not my password!") =>
      h.request("POST", "/v1/sign-in", { body: { identifier, password }, ip });
    // Three failures, each from a new address of the same /64 and for a different name.
    for (let i = 0; i < 3; i += 1) {
      expect((await attempt(`2001:db8:aa:bb:${i + 1}::9`, `nobody_${i}_${user.username}`)).statusCode).toBe(
        401,
      );
    }
    const next = await attempt("2001:db8:aa:bb:ffff::1", user.username, user.password);
    expect(next.statusCode).toBe(400);
    expect(next.json().error.code).toBe("bot_check_failed");
    // Another /64 is not suspected.
    expect((await attempt("2001:db8:aa:bc::1", user.username, user.password)).statusCode).toBe(200);
  });

  it("in 'off' mode, needs none", async () => {
    h = await Harness.create(engine, { env: { PORTCULLIS_BOT_CHECK: "off" } });
    const response = await h.request("POST", "/v1/accounts", { body: newUser() });
    expect(response.statusCode).toBe(202);
  });

  it("raises the difficulty while failures across the venue are high", async () => {
    h = await Harness.create(engine, {
      settings: {
        botCheck: { minCounter: 100, maxCounter: 200, attackFailureRate: 5, attackDifficultyFactor: 4 },
      },
    });
    const before = await h.services.botCheck.createChallenge();
    for (let i = 0; i < 5; i += 1)
      await h.signIn(`ghost${i}`, "wrong wrong wrong", { ip: `192.0.2.${i + 1}` });
    const after = await h.services.botCheck.createChallenge();
    const work = async (challenge: typeof before) =>
      (await solveChallenge({ challenge, deriveKey }))!.counter;
    expect(await work(before)).toBeLessThanOrEqual(200);
    expect(await work(after)).toBeGreaterThanOrEqual(400);
  });
});
