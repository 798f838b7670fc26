import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultSettings } from "../../src/config/settings.js";
import { Argon2idHasher, passwordWeaknesses } from "../../src/factors/password.js";
import { Harness, newUser } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

const rules = defaultSettings.password;

describe("the password rules (docs/behaviour.md §1, ASVS 6.2)", () => {
  it.each([
    ["short", "eleven char", ["too_short"]],
    ["common", "qwerty123456", ["common_password"]],
    ["common with a suffix", "iloveyou2024!", ["common_password"]],
    ["containing the username", "xx trader_bob xx", ["contains_username"]],
    ["containing the email's local part", "bobby.tables is my name", ["contains_email"]],
    ["too long", "a".repeat(257), ["too_long"]],
  ])("refuses a %s password with the reason", (_name, password, reasons) => {
    expect(
      passwordWeaknesses(password, { username: "trader_bob", email: "bobby.tables@example.com" }, rules),
    ).toEqual(reasons);
  });

  it.each([
    ["a passphrase", "correct horse battery staple"],
    ["exactly 12 characters", "k9#mQ2!vLp7z"],
    ["256 code points of emoji", "🔐".repeat(256)],
    ["any script", "пароль-для-биржи-2026"],
    ["spaces only between words, no composition rules", "all lowercase words here"],
  ])("accepts %s", (_name, password) => {
    expect(passwordWeaknesses(password, { username: "trader_bob", email: "bob@example.com" }, rules)).toEqual(
      [],
    );
  });

  it("counts code points, not UTF-16 units, and does not truncate", async () => {
    expect(passwordWeaknesses("🔐".repeat(11), {}, rules)).toEqual(["too_short"]);
    const hasher = new Argon2idHasher(rules);
    const long = `${"x".repeat(200)}-tail-one`;
    const hash = await hasher.hash(long);
    expect(await hasher.verify(hash, `${"x".repeat(200)}-tail-two`)).toBe(false);
    expect(hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
  });

  it("treats NFKC-equivalent spellings as the same password", async () => {
    const hasher = new Argon2idHasher(rules);
    const hash = await hasher.hash("ｆｕｌｌｗｉｄｔｈ password");
    expect(await hasher.verify(hash, "fullwidth password")).toBe(true);
  });

  it("knows when a stored hash was made with older parameters", () => {
    const hasher = new Argon2idHasher(rules);
    expect(hasher.needsRehash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA")).toBe(false);
    expect(hasher.needsRehash("$argon2id$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaA")).toBe(true);
    expect(hasher.needsRehash("$2b$10$abcdefghijklmnopqrstuv")).toBe(true);
  });
});

describe.each(engines)("passwords at sign-up and sign-in on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  it("refuses a weak password at sign-up with every reason", async () => {
    const user = newUser({ username: `b_${Math.random().toString(36).slice(2, 7)}` });
    const response = await h.signUp({ ...user, password: user.username });
    expect(response.statusCode).toBe(400);
    const { error } = response.json();
    expect(error.code).toBe("weak_password");
    expect(error.reasons.map((r: { code: string }) => r.code)).toEqual(
      expect.arrayContaining(["too_short", "contains_username"]),
    );
    expect(error.reasons[0].message).toEqual(expect.any(String));
  });

  it("re-hashes at sign-in when the parameters changed", async () => {
    const user = await h.createVerifiedUser();
    const id = await h.accountId(user);
    const old = new Argon2idHasher({ ...rules, memoryCostKib: 8192, timeCost: 3 });
    await h.services.accounts.updatePasswordHash(id, await old.hash(user.password));
    expect((await h.signIn(user.username, user.password)).statusCode).toBe(200);
    const account = await h.services.accounts.findById(id);
    expect(account?.passwordHash).toMatch(/\$m=19456,t=2,p=1\$/);
    expect((await h.signIn(user.username, user.password)).statusCode).toBe(200);
  });

  it("signs in by email only when the account opted in", async () => {
    const user = await h.createVerifiedUser();
    expect((await h.signIn(user.email, user.password)).statusCode).toBe(401);
    await h.db
      .updateTable("accounts")
      .set({ email_sign_in: 1 })
      .where("id", "=", await h.accountId(user))
      .execute();
    expect((await h.signIn(user.email.toUpperCase(), user.password)).statusCode).toBe(200);
  });
});
