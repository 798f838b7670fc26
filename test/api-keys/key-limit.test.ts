import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { Harness } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

describe.each(engines)("the number of API keys an account holds on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine, { settings: { apiKeys: { maxPerAccount: 2 } } });
  });
  afterAll(async () => {
    await h.close();
  });

  it("refuses a key past the account's limit with a sentence, and takes one again once a key is deleted", async () => {
    const user = await h.createVerifiedUser();
    const enrolled = await enrollTotp(h, await h.sessionToken(user, "pro"), { password: user.password });
    let token = enrolled.token;
    const create = async (name: string) => {
      const first = await h.request("POST", "/v1/api-keys", {
        token,
        body: { name, permissions: ["funds_query"] },
      });
      if (first.statusCode !== 403) return first;
      const result = await withStepUp(
        h,
        token,
        "POST",
        "/v1/api-keys",
        { totp: nextTotpCode(h, enrolled.secret) },
        { body: { name, permissions: ["funds_query"] } },
      );
      token = result.token;
      return result.response;
    };
    const one = await create("one");
    expect(one.statusCode, one.body).toBe(201);
    expect((await create("two")).statusCode).toBe(201);
    const third = await create("three");
    expect(third.statusCode).toBe(409);
    expect(third.json().error.message).toBe(
      "An account holds at most 2 API keys. Delete one you no longer use first.",
    );
    const keys = (await h.request("GET", "/v1/api-keys", { token })).json().apiKeys as { id: string }[];
    expect(keys).toHaveLength(2);
    expect((await h.request("DELETE", `/v1/api-keys/${one.json().id}`, { token })).statusCode).toBe(200);
    expect((await create("three")).statusCode).toBe(201);
  });
});
