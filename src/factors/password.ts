import { hash, verify } from "@node-rs/argon2";
import { dictionary } from "@zxcvbn-ts/language-common";
import type { Settings } from "../config/settings.js";
import { mintToken } from "../crypto/tokens.js";
import { Problem } from "../support/problem.js";
import { isBreachedPassword } from "./breached-passwords.js";

export type PasswordWeakness =
  | "too_short"
  | "too_long"
  | "common_password"
  | "breached_password"
  | "contains_username"
  | "contains_email";

export const weaknessMessages: Record<PasswordWeakness, string> = {
  too_short: "Use at least 12 characters. A few unrelated words make a strong, memorable password.",
  too_long: "Use at most 256 characters.",
  common_password: "This password is on a list of commonly used passwords. Choose one that is your own.",
  breached_password:
    "This password has appeared in a data breach, so attackers try it first. Choose another one that you do not use anywhere else.",
  contains_username: "Do not include your username in your password.",
  contains_email: "Do not include your email address in your password.",
};

/**
 * The answer to a password that breaks the rules: every reason with its code and sentence, and the
 * sentences again as the problem of the field the password was sent in, so a form shows them beside it.
 */
export function weakPassword(weaknesses: PasswordWeakness[], field: "password" | "newPassword"): Problem {
  return new Problem(400, "weak_password", "Choose a stronger password.", {
    reasons: weaknesses.map((code) => ({ code, message: weaknessMessages[code] })),
    details: [{ field, message: weaknesses.map((code) => weaknessMessages[code]).join(" ") }],
  });
}

// @node-rs/argon2's Algorithm is a const enum, which isolated modules cannot read; 2 is its Argon2id.
const ARGON2ID = 2;

const commonPasswords = new Set((dictionary["passwords-common"] as string[]).map((p) => p.toLowerCase()));

/** NFKC, so the same password typed on different keyboards and platforms hashes the same (NIST 800-63B). */
export function normalizePassword(password: string): string {
  return password.normalize("NFKC");
}

/**
 * The password rules of docs/behaviour.md §1: length in code points, no composition rules, no truncation, a
 * blocklist, the passwords known from breaches (ASVS 6.2.12) and context words, each failure with its reason.
 */
export function passwordWeaknesses(
  password: string,
  context: { username?: string; email?: string },
  settings: Settings["password"],
): PasswordWeakness[] {
  const normalized = normalizePassword(password);
  const length = [...normalized].length;
  const reasons: PasswordWeakness[] = [];
  if (length < settings.minLength) reasons.push("too_short");
  if (length > settings.maxCodePoints) reasons.push("too_long");
  const lower = normalized.toLowerCase();
  // A listed password with digits or symbols stuck on the end ("iloveyou2024!") is as guessable as the listed one.
  const stem = lower.replace(/[\d\W_]+$/u, "");
  if (commonPasswords.has(lower) || (stem.length >= 6 && commonPasswords.has(stem)))
    reasons.push("common_password");
  // The short list's sentence already says it all; the breached list is looked up only past it.
  else if (isBreachedPassword(normalized)) reasons.push("breached_password");
  const username = context.username?.toLowerCase();
  if (username && username.length >= 3 && lower.includes(username)) reasons.push("contains_username");
  const localPart = context.email?.split("@")[0]?.toLowerCase();
  if (localPart && localPart.length >= 3 && lower.includes(localPart)) reasons.push("contains_email");
  return reasons;
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(passwordHash: string, password: string): Promise<boolean>;
  /** True when the stored hash was made with other parameters: rehash on the next successful sign-in. */
  needsRehash(passwordHash: string): boolean;
  /** Do the same work as a real verification, for an account that does not exist (equal timing). */
  verifyDummy(password: string): Promise<void>;
}

/** Argon2id in PHC format, computed on libuv's thread pool by @node-rs/argon2. */
export class Argon2idHasher implements PasswordHasher {
  private dummyHash: Promise<string> | null = null;
  private readonly parameterTag: string;

  constructor(private readonly settings: Settings["password"]) {
    this.parameterTag = `$m=${settings.memoryCostKib},t=${settings.timeCost},p=${settings.parallelism}$`;
  }

  hash(password: string): Promise<string> {
    return hash(normalizePassword(password), {
      algorithm: ARGON2ID,
      memoryCost: this.settings.memoryCostKib,
      timeCost: this.settings.timeCost,
      parallelism: this.settings.parallelism,
    });
  }

  async verify(passwordHash: string, password: string): Promise<boolean> {
    try {
      return await verify(passwordHash, normalizePassword(password));
    } catch {
      return false;
    }
  }

  needsRehash(passwordHash: string): boolean {
    return !passwordHash.startsWith("$argon2id$") || !passwordHash.includes(this.parameterTag);
  }

  async verifyDummy(password: string): Promise<void> {
    this.dummyHash ??= this.hash(mintToken());
    await this.verify(await this.dummyHash, password);
  }
}
