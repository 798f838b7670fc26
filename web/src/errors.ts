import { errorCodes, type FieldProblem } from "../../src/support/error-codes.js";
import { ApiError } from "./api.js";

/** Sentences for what goes wrong in the browser itself; these codes never come from the server. */
export const portalOnlyMessages: Record<string, string> = {
  network: "We could not reach Portcullis. Check your connection and try again.",
  webauthn_cancelled: "The security key prompt was closed before it finished.",
  passkey_cancelled:
    "No passkey was used: the prompt was closed, timed out, or your device could not confirm it is you. Try again, or sign in with your username and password.",
  passkey_unavailable:
    "This browser could not use a passkey here. Sign in with your username and password instead.",
};

/**
 * A clear sentence for every error code: the server's catalogue (src/support/error-codes.ts) is the one
 * source, bundled as it is, plus the portal's own codes. The server's message is often more specific (it
 * names the hold's end, the tier needed), so it follows the general sentence when it adds something.
 */
const messages: Record<string, string> = {
  ...Object.fromEntries(Object.entries(errorCodes).map(([code, entry]) => [code, entry.message])),
  ...portalOnlyMessages,
};

const weakPasswordReasons: Record<string, string> = {
  too_short: "It must be at least 12 characters long.",
  too_long: "It must be at most 256 characters long.",
  common_password: "It is on a list of commonly used passwords.",
  breached_password:
    "This password has appeared in a data breach, so attackers try it first. Choose another one that you do not use anywhere else.",
  contains_username: "It must not contain your username.",
  contains_email: "It must not contain the first part of your email address.",
};

/** The per-field problems of an invalid request, keyed by field name, for showing beside the inputs. */
export function fieldProblems(error: unknown): Map<string, string> {
  const problems = new Map<string, string>();
  if (!(error instanceof ApiError) || !Array.isArray(error.body.details)) return problems;
  for (const detail of error.body.details as FieldProblem[]) {
    if (
      typeof detail?.field === "string" &&
      typeof detail.message === "string" &&
      !problems.has(detail.field)
    )
      problems.set(detail.field, detail.message);
  }
  return problems;
}

/**
 * The sentence for an error. `shownBesideFields` are the fields whose problems the form already shows
 * next to their inputs; the rest are listed here so nothing the server said is lost.
 */
export function humanMessage(error: unknown, shownBesideFields: ReadonlySet<string> = new Set()): string {
  if (!(error instanceof ApiError)) {
    if (error instanceof Error && error.name === "NotAllowedError") return messages.webauthn_cancelled!;
    return error instanceof Error ? error.message : String(error);
  }
  const { code, message } = error.body;
  // "Reload the page to see the latest" is for a conflict the server did not explain; when it did
  // ("turn on two-factor authentication first"), its sentence is the whole answer.
  if (code === "conflict" && message && message !== messages.conflict) return message;
  const general = messages[code] ?? "Something went wrong. Try again.";
  const parts = [general];
  const fields = [...fieldProblems(error)].filter(([field]) => !shownBesideFields.has(field));
  if (code === "weak_password" && Array.isArray(error.body.reasons)) {
    // The reasons stand beside the password field when the form shows it; otherwise they are listed here.
    const besideField = [...fieldProblems(error).keys()].some((field) => shownBesideFields.has(field));
    if (!besideField) {
      for (const reason of error.body.reasons as { code?: string; message?: string }[]) {
        parts.push((reason.code && weakPasswordReasons[reason.code]) ?? reason.message ?? "");
      }
    }
  } else if (fieldProblems(error).size > 0) {
    for (const [, sentence] of fields) parts.push(sentence);
    if (fields.length === 0 && code !== "invalid_request" && message !== general) parts.push(message);
  } else if (code === "not_eligible" && Array.isArray(error.body.reasons)) {
    for (const reason of error.body.reasons as { message: string }[]) parts.push(reason.message);
  } else if (typeof error.body.hint === "string") {
    parts.push(error.body.hint);
  } else if (message && message !== general && code !== "invalid_credentials") {
    parts.push(message);
  }
  if (code === "rate_limited" && error.retryAfter) parts.push(`Try again in ${error.retryAfter} seconds.`);
  return parts.filter(Boolean).join(" ");
}

export const knownErrorCodes = Object.keys(messages);
