import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { emailKey } from "../../src/accounts/accounts.js";
import { emailError } from "../../src/accounts/validation.js";
import { Harness, newUser } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

/**
 * An address is accepted only when it is unambiguous: printable ASCII once trimmed. Otherwise a look-alike
 * spelling (a different mailbox) takes the key of the plain address: "\u212Aim@…" (KELVIN SIGN) lower-cases
 * to "kim@…", so the real owner's sign-up found the address taken and its emails went to the look-alike.
 */
const PLAIN = "Use an email address written in plain letters, digits and the usual symbols.";

const nonAscii = (key: string) => [...key].some((c) => (c.codePointAt(0) ?? 0) > 0x7e);

/** Each spelling is refused, and its key (for a lookup that skipped validation) is not the plain one's. */
const refused: [string, string, string][] = [
  ["Kelvin sign K", "\u212Aim.victim@example.test", "kim.victim@example.test"],
  ["Kelvin sign K in the domain", "kim@e\u212Aample.test", "kim@ekample.test"],
  ["dotted capital I", "\u0130van@example.test", "ivan@example.test"],
  ["dotless small i", "\u0131van@example.test", "ivan@example.test"],
  ["Angstrom sign", "\u212Bsa@example.test", "\u00e5sa@example.test"],
  ["fullwidth letters", "\uff4b\uff49\uff4d@example.test", "kim@example.test"],
  ["fullwidth domain", "kim@\uff45xample.test", "kim@example.test"],
  ["fullwidth at sign", "kim\uff20example.test", "kim@example.test"],
  ["zero-width space", "ki\u200bm@example.test", "kim@example.test"],
  ["zero-width joiner", "kim\u200d@example.test", "kim@example.test"],
  ["zero-width no-break space inside", "kim@exam\ufeffple.test", "kim@example.test"],
  ["soft hyphen", "ki\u00adm@example.test", "kim@example.test"],
  ["combining acute accent", "ki\u0301m@example.test", "kim@example.test"],
  ["precomposed accented letter", "k\u00edm@example.test", "kim@example.test"],
  ["right-to-left override", "\u202emik@example.test", "kim@example.test"],
  ["no-break space inside", "kim\u00a0victim@example.test", "kimvictim@example.test"],
  ["Cyrillic look-alike", "\u043a\u0456m@example.test", "kim@example.test"],
  ["international domain not in xn-- form", "kim@b\u00fccher.example", "kim@bucher.example"],
];

/** Accepted: the trimmed address validates and its key is its ASCII lower-case. */
const accepted: [string, string, string][] = [
  ["plain", "kim.victim@example.test", "kim.victim@example.test"],
  ["upper-case ASCII", "KIM.Victim@Example.TEST", "kim.victim@example.test"],
  ["leading and trailing spaces", "  kim.victim@example.test \t", "kim.victim@example.test"],
  ["leading and trailing no-break spaces", "\u00a0kim.victim@example.test\u3000", "kim.victim@example.test"],
  ["international domain in its xn-- form", "kim@xn--bcher-kva.example", "kim@xn--bcher-kva.example"],
  ["usual symbols", "o'neil+tag_1.x-y@sub.example.test", "o'neil+tag_1.x-y@sub.example.test"],
];

describe("email addresses", () => {
  it.each(refused)("refuses a %s, with a sentence, and keys it apart", (_, spelling, plain) => {
    expect(emailError(spelling.trim())).toEqual({ field: "email", message: PLAIN });
    expect(emailKey(spelling)).not.toBe(emailKey(plain));
    expect(nonAscii(emailKey(spelling))).toBe(true);
  });

  it.each(accepted)("accepts %s, keyed by its ASCII lower-case", (_, spelling, key) => {
    expect(emailError(spelling.trim())).toBeNull();
    expect(emailKey(spelling)).toBe(key);
  });

  it("still refuses malformed ASCII with the usual sentence", () => {
    for (const spelling of ["kim victim@example.test", "kim@example", "kim", "a@b@example.test"]) {
      expect(emailError(spelling)).toEqual({ field: "email", message: "Enter a valid email address." });
    }
  });
});

describe.each(engines)("a look-alike email address on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  it("refuses the Kelvin spelling at sign-up with a readable 400; the real owner then signs up", async () => {
    const squat = await h.signUp(newUser({ email: "\u212Aim.victim@example.test" }), "198.51.100.9");
    expect(squat.statusCode).toBe(400);
    const { error } = squat.json();
    expect(error.code).toBe("invalid_request");
    expect(error.details).toEqual([{ field: "email", message: PLAIN }]);

    const owner = newUser({ email: "kim.victim@example.test" });
    const signUp = await h.signUp(owner, "198.51.100.10");
    expect(signUp.statusCode).toBe(202);
    await h.deliverMail();
    expect((await h.smtp.waitFor(owner.email, /Verify your email/)).to).toEqual([owner.email]);
    expect(h.smtp.messages.filter((m) => m.to.some((to) => !/victim/.test(to) || /\u212A/.test(to)))).toEqual(
      [],
    );
    const rows = await h.db
      .selectFrom("accounts")
      .select(["email", "email_key", "username"])
      .where("email_key", "like", "%victim%")
      .execute();
    expect(rows).toEqual([
      { email: "kim.victim@example.test", email_key: "kim.victim@example.test", username: owner.username },
    ]);
  });

  it("finds no ASCII account by a look-alike spelling: recovery, sign-in by email, repository", async () => {
    const owner = await h.createVerifiedUser({ email: "kate.owner@example.test" });
    await h.db
      .updateTable("accounts")
      .set({ email_sign_in: 1 })
      .where("username", "=", owner.username)
      .execute();
    const kelvin = "\u212Aate.owner@example.test";

    const reminder = await h.request("POST", "/v1/recovery/username", {
      body: { email: kelvin, botCheck: await h.botCheck() },
    });
    expect(reminder.statusCode).toBe(400);
    expect(reminder.json().error.details).toEqual([{ field: "email", message: PLAIN }]);

    expect(await h.services.accounts.findByEmail(kelvin)).toBeNull();
    expect((await h.services.accounts.findByEmail(" KATE.Owner@example.test "))?.username).toBe(
      owner.username,
    );
    // The sign-in flow hands the repository a lower-cased identifier (src/flows/sign-in.ts); the
    // repository itself does not match a look-alike spelling.
    expect(await h.services.accounts.findBySignInIdentifier(kelvin)).toBeNull();
    expect((await h.services.accounts.findBySignInIdentifier("KATE.OWNER@example.test"))?.username).toBe(
      owner.username,
    );
  });

  it("keeps an account stored earlier under a look-alike spelling working by username, not by the plain address", async () => {
    // What the old key made of "\u212Aen.legacy@…": the row keeps "ken.legacy@…" as its key.
    const legacy = await h.createVerifiedUser({ email: "ken.legacy@example.test" });
    const kelvin = "\u212Aen.legacy@example.test";
    await h.db
      .updateTable("accounts")
      .set({ email: kelvin })
      .where("username", "=", legacy.username)
      .execute();

    expect((await h.signIn(legacy.username, legacy.password)).statusCode).toBe(200);
    expect(await h.services.accounts.findByEmail("ken.legacy@example.test")).toBeNull();
    await h.deliverMail();
    const before = h.smtp.messages.length;
    const reminder = await h.request("POST", "/v1/recovery/username", {
      body: { email: "ken.legacy@example.test", botCheck: await h.botCheck() },
    });
    expect(reminder.statusCode).toBe(202);
    await h.deliverMail();
    expect(h.smtp.messages.slice(before)).toEqual([]);

    // It can still move to a plain address, which frees the key it held.
    const id = await h.accountId(legacy);
    expect(await h.services.accounts.changeEmail(id, kelvin, "ken.moved@example.test", h.db)).toBe(true);
    expect((await h.services.accounts.findByEmail("ken.moved@example.test"))?.id).toBe(id);
  });
});
