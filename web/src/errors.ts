import { ApiError } from "./api.js";

/**
 * A clear sentence for every error code the API answers with (API.md "Conventions"). The server's own
 * message is usually more specific (it names the field, the hold's end, the tier needed), so it follows
 * the general sentence when it says something the sentence does not.
 */
const messages: Record<string, string> = {
  network: "We could not reach Portcullis. Check your connection and try again.",
  invalid_request: "Some fields need attention.",
  invalid_json: "The request could not be read. Reload the page and try again.",
  bad_request: "The request could not be understood. Reload the page and try again.",
  unsupported_media_type: "The request could not be read. Reload the page and try again.",
  payload_too_large: "That is too much text for one request.",
  uri_too_long: "The address is too long.",
  invalid_credentials: "Invalid username or password.",
  unauthenticated: "Your session has ended. Sign in again to continue.",
  forbidden: "You may not do that.",
  settings_locked:
    "Your Global Settings Lock is on, so security settings cannot be changed. Unlock it in Security first.",
  step_up_required: "Confirm this change with your second factor.",
  enrollment_required: "Set up a new second factor before doing anything else.",
  not_eligible: "Your account cannot use this right now.",
  not_found: "We could not find that. It may have been removed already.",
  conflict: "That conflicts with the current state. Reload the page to see the latest.",
  expired: "This has expired. Start again.",
  on_hold: "This is on hold after a recent security change.",
  rate_limited: "Too many attempts. Wait a moment and try again.",
  unavailable: "The service is temporarily unavailable. Try again shortly.",
  internal_error: "Something went wrong on our side. It has been logged; try again shortly.",
  weak_password: "Choose a stronger password.",
  bot_check_failed: "The automatic bot check did not pass. Wait for it to finish, then try again.",
  invalid_code: "That code is not right. Check it and try again.",
  invalid_passcode: "That trading passcode is not right.",
  invalid_token: "This link is not valid any more. Ask for a new one.",
  invalid_webauthn_response: "Your security key's answer could not be verified. Try again.",
  roaming_factor_required:
    "Your first second factor must be one you can carry with you: an authenticator app or a roaming security key.",
  master_key_required: "Enter your Master Key to continue.",
  webauthn_cancelled: "The security key prompt was closed before it finished.",
};

const weakPasswordReasons: Record<string, string> = {
  too_short: "It must be at least 12 characters long.",
  too_long: "It must be at most 256 characters long.",
  common_password: "It is on a list of commonly used passwords.",
  contains_username: "It must not contain your username.",
  contains_email: "It must not contain the first part of your email address.",
};

export function humanMessage(error: unknown): string {
  if (!(error instanceof ApiError)) {
    if (error instanceof Error && error.name === "NotAllowedError") return messages.webauthn_cancelled!;
    return error instanceof Error ? error.message : String(error);
  }
  const { code, message } = error.body;
  const general = messages[code] ?? "Something went wrong. Try again.";
  const parts = [general];
  if (code === "weak_password" && Array.isArray(error.body.reasons)) {
    for (const reason of error.body.reasons as { code?: string; message?: string }[]) {
      parts.push((reason.code && weakPasswordReasons[reason.code]) ?? reason.message ?? "");
    }
  } else if (code === "invalid_request" && Array.isArray(error.body.details)) {
    const fields = (error.body.details as { field: string; message: string }[]).map(
      (detail) => `${detail.field}: ${detail.message}`,
    );
    parts.push(message !== general && !fields.length ? message : fields.join("; "));
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
