import { hash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";

/** A random token for links, sessions and flows: 256 bits from the CSPRNG, URL-safe. */
export function mintToken(bytes = 32): string {
  return randomBytes(bytes).toString("base64url");
}

export function newId(): string {
  return randomUUID();
}

/** Tokens are stored only as their SHA-256, so a copy of the database cannot be replayed. */
export function hashToken(token: string): string {
  // The one-shot form: no Hash object per call, and it runs on every authenticated request.
  return hash("sha256", token, "hex");
}

export function sha256Hex(data: string | Buffer): string {
  return hash("sha256", data, "hex");
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
  const digest = hash("sha256", expected, "buffer");
  return (presented) => timingSafeEqual(hash("sha256", presented, "buffer"), digest);
}
