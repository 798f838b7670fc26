import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { totpCode } from "../../src/factors/totp.js";
import { base32Decode, enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { Harness, PUBLIC_URL } from "../helpers/harness.js";
import { SoftwareAuthenticator } from "../helpers/software-authenticator.js";
import { engines } from "../helpers/storage.js";

/**
 * Removing factors in parallel (docs/behaviour.md §6): "the last roaming factor cannot be removed while
 * other factors remain", and recovery codes go with the last factor, even when each removal is sent at
 * the same moment with its own confirmed step-up. The rule is decided inside the removal's transaction,
 * with the account's row held, so the second removal sees the first.
 */
describe.each(engines)("removing second factors in parallel on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  /** An owner with two authenticator apps ("Phone", "Tablet"), and the session and secret to go on with. */
  const twoApps = async () => {
    const user = await h.createVerifiedUser();
    const first = await enrollTotp(h, await h.sessionToken(user), { password: user.password });
    const owner = { user, secret: first.secret, token: first.token, accountId: await h.accountId(user) };
    const start = await withStepUp(h, owner.token, "POST", "/v1/security/totp", {
      totp: nextTotpCode(h, owner.secret),
    });
    owner.token = start.token;
    expect(start.response.statusCode, start.response.body).toBe(200);
    const tablet = base32Decode(start.response.json().secret);
    const confirmed = await h.request(
      "POST",
      `/v1/security/totp/${start.response.json().enrollmentId}/confirm`,
      {
        token: owner.token,
        body: { code: totpCode(tablet, h.clock.now()), name: "Tablet" },
      },
    );
    expect(confirmed.statusCode, confirmed.body).toBe(200);
    return owner;
  };
  type Owner = Awaited<ReturnType<typeof twoApps>>;

  const factors = async (owner: Owner) => {
    const listed = await h.request("GET", "/v1/security/factors", { token: owner.token });
    expect(listed.statusCode, listed.body).toBe(200);
    const body = listed.json();
    return (body.factors ?? body) as { id: string; name: string; kind: string; roaming: boolean }[];
  };

  /** One confirmed step-up per removal, then every removal sent at once. */
  const removeAtOnce = async (owner: Owner, ids: string[]) => {
    const actions: string[] = [];
    for (const id of ids) {
      const asked = await h.request("DELETE", `/v1/security/factors/${id}`, { token: owner.token });
      expect(asked.statusCode, asked.body).toBe(403);
      const actionId = asked.json().error.actionId as string;
      const confirmed = await h.request("POST", `/v1/actions/${actionId}/confirm`, {
        token: owner.token,
        body: { totp: nextTotpCode(h, owner.secret) },
      });
      expect(confirmed.statusCode, confirmed.body).toBe(200);
      owner.token = (confirmed.json().token as string | undefined) ?? owner.token;
      actions.push(actionId);
    }
    return Promise.all(
      ids.map((id, i) =>
        h.request("DELETE", `/v1/security/factors/${id}`, {
          token: owner.token,
          headers: { "x-action-id": actions[i]! },
        }),
      ),
    );
  };

  it("keeps a roaming factor beside a passkey when both authenticator apps are removed at once", async () => {
    const owner = await twoApps();
    const options = await withStepUp(h, owner.token, "POST", "/v1/security/webauthn/options?kind=passkey", {
      totp: nextTotpCode(h, owner.secret),
    });
    owner.token = options.token;
    expect(options.response.statusCode, options.response.body).toBe(200);
    const laptop = new SoftwareAuthenticator(PUBLIC_URL, {
      attachment: "platform",
      transports: ["internal"],
    });
    const registered = await h.request("POST", "/v1/security/webauthn", {
      token: owner.token,
      body: { response: laptop.register(options.response.json()), name: "Laptop passkey" },
    });
    expect(registered.statusCode, registered.body).toBe(200);
    const before = await factors(owner);
    const apps = before.filter((f) => f.kind === "authenticator_app").map((f) => f.id);
    expect(apps).toHaveLength(2);

    const answers = await removeAtOnce(owner, apps);
    expect(answers.map((a) => a.statusCode).sort()).toEqual([200, 409]);
    expect(answers.find((a) => a.statusCode === 409)!.json().error.code).toBe("roaming_factor_required");
    const left = await factors(owner);
    expect(left.map((f) => f.kind).sort()).toEqual(["authenticator_app", "passkey"]);
    expect(left.some((f) => f.roaming)).toBe(true);
  });

  it("clears the recovery codes when the last two factors are removed at once", async () => {
    const owner = await twoApps();
    const codes = () =>
      h.db
        .selectFrom("recovery_codes")
        .select("account_id")
        .where("account_id", "=", owner.accountId)
        .execute();
    expect((await codes()).length).toBeGreaterThan(0);
    const apps = (await factors(owner)).map((f) => f.id);
    expect(apps).toHaveLength(2);

    const answers = await removeAtOnce(owner, apps);
    expect(answers.map((a) => a.statusCode)).toEqual([200, 200]);
    expect(await factors(owner)).toEqual([]);
    expect(await codes()).toEqual([]);
  });
});
