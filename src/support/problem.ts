import { type ErrorCode, errorCodes, type FieldProblem } from "./error-codes.js";

/**
 * The one error type services throw. The HTTP layer maps it to
 * `{"error": {"code", "message", ...details}}` with the status; the codes, their statuses and their
 * general sentences are catalogued in error-codes.ts, and only catalogued codes compile here.
 */
export class Problem extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "Problem";
  }
}

/** A Problem with the catalogue's status and, unless a more specific one is given, its sentence. */
export function problem(
  code: ErrorCode,
  message?: string,
  details: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Problem {
  const entry = errorCodes[code];
  return new Problem(entry.status, code, message ?? entry.message, details, headers);
}

export const invalidCredentials = () =>
  new Problem(401, "invalid_credentials", "Invalid username or password.");
export const unauthenticated = () => new Problem(401, "unauthenticated", "Sign in to continue.");
export const notFound = (what = "That") => new Problem(404, "not_found", `${what} was not found.`);
export const forbidden = (message = "You may not do that.") => new Problem(403, "forbidden", message);
export const expired = (message = "This link or flow has expired.") => new Problem(410, "expired", message);
export const rateLimited = (retryAfterSeconds: number) =>
  new Problem(
    429,
    "rate_limited",
    "Too many requests. Try again later.",
    { retryAfter: retryAfterSeconds },
    { "retry-after": String(retryAfterSeconds) },
  );
/** Each detail's message is a sentence a person reads beside the field it names. */
export const invalidRequest = (message: string, details: FieldProblem[] = []) =>
  new Problem(400, "invalid_request", message, { details });

/** A dependency (database, Redis) could not answer: refuse rather than guess (fail closed). */
export class DependencyUnavailable extends Problem {
  constructor(dependency: string) {
    super(
      503,
      "unavailable",
      "The service is temporarily unavailable. Try again shortly.",
      {},
      { "retry-after": "5" },
    );
    this.dependency = dependency;
  }
  dependency: string;
}

/** "Lock my account" froze the account: nothing that changes or moves anything is allowed until lifted. */
export const accountFrozen = () =>
  new Problem(
    423,
    "account_frozen",
    "This account is frozen because someone used the lock link in a security email. It can be lifted with the Master Key and a second factor 24 hours after it began, or by support.",
  );
