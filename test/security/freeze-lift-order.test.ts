import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CountingHasher } from "../helpers/counting-hasher.js";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { Harness } from "../helpers/harness.js";
import { linkToken } from "../helpers/smtp.js";
import { engines } from "../helpers/storage.js";

const HOUR = 3_600_000;
const MASTER_KEY = "correct horse battery staple vault";
const LIFT = "/v1/security/account-lock/lift";

/**
 * Lifting a freeze (docs/behaviour.md §7) asks for the step-up first and the Master Key second: an
 * X-Action-Id that is not a confirmed step-up of this session for the lift gets a step-up demanded, and
 * the Master Key is neither checked nor counted.
 */
describe.each(engines)("the order of proofs when lifting a freeze on %s", (engine) => {
  let h: Harness;
  const hasher = new CountingHasher();
  beforeAll(async () => {
    h = await Harness.create(engine, { hasher });
  });
  afterAll(async () => {
    await h.close();
  });

  /** A trader with an authenticator app and a Master Key, frozen 24 hours ago, signed in again. */
  const frozenOwner = async () => {
    const user = await h.createVerifiedUser();
    const enrolled = await enrollTotp(h, await h.sessionToken(user, "pro"), { password: user.password });
    const set = await withStepUp(
      h,
      enrolled.token,
      "PUT",
      "/v1/security/master-key",
      { totp: nextTotpCode(h, enrolled.secret) },
      { body: { masterKey: MASTER_KEY } },
    );
    expect(set.response.statusCode, set.response.body).toBe(200);
    await h.deliverMail();
    const email = h.smtp
      .to(user.email)
      .filter((m) => m.text.includes("/lock-account"))
      .at(-1);
    expect(email, "a security email with a lock link").toBeDefined();
    const frozen = await h.request("POST", "/v1/account-lock", {
      body: { token: linkToken(email!, "/lock-account") },
    });
    expect(frozen.statusCode, frozen.body).toBe(200);
    h.clock.advance(24 * HOUR);
    const started = await h.signIn(user.username, user.password, { client: "pro" });
    expect(started.json().state, started.body).toBe("second_factor");
    const done = await h.request("POST", `/v1/sign-in/${started.json().flowId}/totp`, {
      body: { code: nextTotpCode(h, enrolled.secret) },
    });
    expect(done.statusCode, done.body).toBe(200);
    return {
      accountId: await h.accountId(user),
      secret: enrolled.secret,
      token: done.json().token as string,
    };
  };

  const isFrozen = async (accountId: string) =>
    (await h.services.accounts.findById(accountId))!.frozenAt !== null;

  it("demands the step-up, without checking the Master Key, for an action id that is not a confirmed step-up", async () => {
    const owner = await frozenOwner();
    const failuresBefore = (await h.services.guard.status(owner.accountId)).consecutiveFailures;
    hasher.reset();
    for (const masterKey of ["not the master key at all, sorry", MASTER_KEY]) {
      const response = await h.request("POST", LIFT, {
        token: owner.token,
        body: { masterKey },
        headers: { "x-action-id": randomUUID() },
      });
      expect(response.statusCode, response.body).toBe(403);
      expect(response.json().error.code).toBe("step_up_required");
    }
    expect(hasher.realVerifications).toBe(0);
    expect((await h.services.guard.status(owner.accountId)).consecutiveFailures).toBe(failuresBefore);
    expect(
      await h.services.audit.list({
        accountId: owner.accountId,
        events: ["lift_freeze.master_key"],
        limit: 5,
      }),
    ).toEqual([]);
    expect(await isFrozen(owner.accountId)).toBe(true);
  });

  it("does not check the Master Key with a lift step-up that was asked for but not confirmed", async () => {
    const owner = await frozenOwner();
    // A lift action asked for but not confirmed.
    const asked = await h.request("POST", LIFT, { token: owner.token, body: { masterKey: MASTER_KEY } });
    expect(asked.json().error.code).toBe("step_up_required");
    hasher.reset();
    const unconfirmed = await h.request("POST", LIFT, {
      token: owner.token,
      body: { masterKey: "not the master key at all, sorry" },
      headers: { "x-action-id": asked.json().error.actionId },
    });
    expect(unconfirmed.json().error.code).toBe("step_up_required");
    expect(hasher.realVerifications).toBe(0);
    expect(await isFrozen(owner.accountId)).toBe(true);
  });

  it("checks the Master Key after a confirmed step-up, and lifts with the right one", async () => {
    const owner = await frozenOwner();
    hasher.reset();
    const wrong = await withStepUp(
      h,
      owner.token,
      "POST",
      LIFT,
      { totp: nextTotpCode(h, owner.secret) },
      { body: { masterKey: "not the master key at all, sorry" } },
    );
    expect(wrong.response.statusCode, wrong.response.body).toBe(401);
    expect(hasher.realVerifications).toBe(1);
    expect((await h.services.guard.status(owner.accountId)).consecutiveFailures).toBe(1);
    const lifted = await withStepUp(
      h,
      wrong.token,
      "POST",
      LIFT,
      { totp: nextTotpCode(h, owner.secret) },
      { body: { masterKey: MASTER_KEY } },
    );
    expect(lifted.response.statusCode, lifted.response.body).toBe(200);
    expect(await isFrozen(owner.accountId)).toBe(false);
  });
});
