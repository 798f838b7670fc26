import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";

/** A random token for links, sessions and flows: 256 bits from the CSPRNG, URL-safe. */
export function mintToken(bytes = 32): string {
  return randomBytes(bytes).toString("base64url");
}

export function newId(): string {
  return randomUUID();
}

/** Tokens are stored only as their SHA-256, so a copy of the database cannot be replayed. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

export function sha256Hex(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Constant-time string equality: both sides are hashed first so length differences leak nothing either. */
export function constantTimeEqual(a: string, b: string): boolean {
  return constantTimeMatcher(b)(a);
}

/**
 * A secret compared on every request (an operator or service token): its digest is taken once, and each
 * presented value is hashed and compared in constant time, as `constantTimeEqual` does.
 */
export function constantTimeMatcher(expected: string): (presented: string) => boolean {
  const digest = createHash("sha256").update(expected, "utf8").digest();
  return (presented) => timingSafeEqual(createHash("sha256").update(presented, "utf8").digest(), digest);
}
