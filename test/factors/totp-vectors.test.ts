import { generateSync } from "otplib";
import { describe, expect, it } from "vitest";
import { hotpCode, matchTotp, newTotpSecret, toBase32, totpCode } from "../../src/factors/totp.js";

const seeds = {
  SHA1: Buffer.from("12345678901234567890", "ascii"),
  SHA256: Buffer.from("12345678901234567890123456789012", "ascii"),
  SHA512: Buffer.from("1234567890123456789012345678901234567890123456789012345678901234", "ascii"),
};

// RFC 6238 Appendix B: 8 digits, X = 30, T0 = 0.
const appendixB: [number, string, string, string][] = [
  [59, "94287082", "46119246", "90693936"],
  [1111111109, "07081804", "68084774", "25091201"],
  [1111111111, "14050471", "67062674", "99943326"],
  [1234567890, "89005924", "91819424", "93441116"],
  [2000000000, "69279037", "90698825", "38618901"],
  [20000000000, "65353130", "77737706", "47863826"],
];

describe("TOTP through the server's own code path", () => {
  it.each(appendixB)("matches RFC 6238 Appendix B at T=%i", (seconds, sha1, sha256, sha512) => {
    const at = seconds * 1000;
    expect(totpCode(seeds.SHA1, at, { algorithm: "SHA1", digits: 8, periodSeconds: 30 })).toBe(sha1);
    expect(totpCode(seeds.SHA256, at, { algorithm: "SHA256", digits: 8, periodSeconds: 30 })).toBe(sha256);
    expect(totpCode(seeds.SHA512, at, { algorithm: "SHA512", digits: 8, periodSeconds: 30 })).toBe(sha512);
    // And the verifier accepts each vector at its own time.
    expect(matchTotp(seeds.SHA1, sha1, at, { algorithm: "SHA1", digits: 8, periodSeconds: 30 })).toEqual({
      step: Math.floor(seconds / 30),
    });
  });

  it("matches the RFC 4226 HOTP values for counts 0 to 9", () => {
    const expected = [
      "755224",
      "287082",
      "359152",
      "969429",
      "338314",
      "254676",
      "287922",
      "162583",
      "399871",
      "520489",
    ];
    const codes = expected.map((_, count) => hotpCode(seeds.SHA1, count, { algorithm: "SHA1", digits: 6 }));
    expect(codes).toEqual(expected);
  });

  it("accepts a code from an independent implementation (otplib)", () => {
    const secret = newTotpSecret();
    expect(secret.length).toBe(20);
    const code = generateSync({ secret: toBase32(secret) });
    expect(matchTotp(secret, code, Date.now())).toEqual({ step: Math.floor(Date.now() / 30_000) });
  });

  it("tells the clock drift for a code up to ten steps behind, and nothing for a future step or beyond", () => {
    const secret = newTotpSecret();
    const now = Date.parse("2026-06-01T12:00:10Z");
    expect(matchTotp(secret, totpCode(secret, now + 30_000), now)).toEqual({
      step: Math.floor(now / 30_000) + 1,
    });
    expect(matchTotp(secret, totpCode(secret, now - 60_000), now)).toEqual({ driftSeconds: -60 });
    expect(matchTotp(secret, totpCode(secret, now - 300_000), now)).toEqual({ driftSeconds: -300 });
    // A future step's code is valid later: it must look like any wrong code now.
    for (let steps = 2; steps <= 10; steps += 1) {
      expect(matchTotp(secret, totpCode(secret, now + steps * 30_000), now)).toBeNull();
    }
    expect(matchTotp(secret, totpCode(secret, now + 330_000), now)).toBeNull();
    expect(matchTotp(secret, "12345", now)).toBeNull();
    expect(matchTotp(secret, "abcdef", now)).toBeNull();
  });
});
