/**
 * Every error code the API answers with, its HTTP status, and the sentence a person reads for it. The one
 * catalogue: `Problem` accepts only these codes, the error handler builds framework and validation errors
 * from it, and the portal takes its sentences from here (web/src/errors.ts), so a new code without a
 * sentence fails to compile rather than reaching someone as "Something went wrong".
 *
 * A thrown Problem may carry a more specific message (the hold's end, the tier needed); the sentence here
 * is what the code means in general. This module has no imports: the portal bundles it as it is.
 */
export const errorCodes = {
  invalid_request: { status: 400, message: "Some fields need attention." },
  invalid_json: { status: 400, message: "The request could not be read. Reload the page and try again." },
  bad_request: {
    status: 400,
    message: "The request could not be understood. Reload the page and try again.",
  },
  unsupported_media_type: {
    status: 415,
    message: "The request could not be read. Reload the page and try again.",
  },
  payload_too_large: { status: 413, message: "That is too much text for one request." },
  uri_too_long: { status: 414, message: "The address is too long." },
  headers_too_large: { status: 431, message: "The request's headers are too large." },
  request_timeout: { status: 408, message: "The request took too long to arrive. Try again." },
  weak_password: { status: 400, message: "Choose a stronger password." },
  bot_check_failed: {
    status: 400,
    message: "The automatic bot check did not pass. Wait for it to finish, then try again.",
  },
  invalid_token: { status: 400, message: "This link is not valid any more. Ask for a new one." },
  invalid_webauthn_response: {
    status: 400,
    message: "Your security key's answer could not be verified. Try again.",
  },
  master_key_required: { status: 400, message: "Enter your Master Key to continue." },
  invalid_credentials: { status: 401, message: "Invalid username or password." },
  unauthenticated: { status: 401, message: "Your session has ended. Sign in again to continue." },
  invalid_code: { status: 401, message: "That code is not right. Check it and try again." },
  passkey_not_accepted: {
    status: 401,
    message: "That passkey was not accepted. Try again, or sign in with your username and password.",
  },
  invalid_passcode: { status: 401, message: "That trading passcode is not right." },
  forbidden: { status: 403, message: "You may not do that." },
  settings_locked: {
    status: 403,
    message:
      "Your Global Settings Lock is on, so security settings cannot be changed. Unlock it in Security first.",
  },
  step_up_required: { status: 403, message: "Confirm this change with your second factor." },
  approval_network: {
    status: 403,
    message:
      "Approve this sign-in from the same network as the device that is signing in (the same Wi-Fi or mobile connection).",
  },
  enrollment_required: { status: 403, message: "Set up a new second factor before doing anything else." },
  not_eligible: { status: 403, message: "Your account cannot use this right now." },
  email_not_verified: {
    status: 403,
    message:
      "Confirm your email address first: open the link in the verification email. We have sent you a new one.",
  },
  not_found: { status: 404, message: "We could not find that. It may have been removed already." },
  conflict: {
    status: 409,
    message: "That conflicts with the current state. Reload the page to see the latest.",
  },
  roaming_factor_required: {
    status: 409,
    message:
      "Add an authenticator app or a security key you carry first: a passkey kept on one device cannot be your only way in.",
  },
  expired: { status: 410, message: "This has expired. Start again." },
  on_hold: { status: 423, message: "This is on hold after a recent security change." },
  account_frozen: {
    status: 423,
    message: "Your account is frozen: nothing can be changed or moved until the freeze is lifted.",
  },
  rate_limited: { status: 429, message: "Too many attempts. Wait a moment and try again." },
  internal_error: {
    status: 500,
    message: "Something went wrong on our side. It has been logged; try again shortly.",
  },
  unavailable: { status: 503, message: "The service is temporarily unavailable. Try again shortly." },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof errorCodes;

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(errorCodes, code);
}

/** One field's problem, as the API answers it in `details` and the portal shows it beside the input. */
export interface FieldProblem {
  field: string;
  message: string;
}

/**
 * How a field is named in a sentence. Fields not listed are named from their key ("ipAllowlist" becomes
 * "the IP allowlist" via the words of the key), which keeps new fields readable without an entry here.
 */
const fieldNames: Record<string, string> = {
  email: "your email address",
  newEmail: "the new email address",
  username: "your username",
  password: "your password",
  currentPassword: "your current password",
  newPassword: "a new password",
  country: "your country of residence",
  region: "your state or province",
  token: "the link's token",
  totp: "the code from your authenticator app",
  recoveryCode: "a recovery code",
  tradingPasscode: "your trading passcode",
  passcode: "a 6-digit trading passcode",
  masterKey: "your Master Key",
  code: "a code",
  label: "a label",
  address: "the address",
  asset: "the asset",
  amount: "the amount",
  name: "a name",
  botCheck: "the bot check",
};

/** Sentences for a field whose value does not have the expected form (a pattern or format failed). */
const formMessages: Record<string, string> = {
  email: "Enter an email address such as name@example.com.",
  newEmail: "Enter an email address such as name@example.com.",
  passcode: "The trading passcode is 6 digits.",
  tradingPasscode: "The trading passcode is 6 digits.",
  totp: "Enter the 6-digit code from your authenticator app.",
  country: "Choose your country from the list.",
  region: "Choose your state or province from the list.",
  username: "Use 3 to 32 letters, digits, dots, dashes or underscores.",
};

function nameOf(field: string): string {
  const key = field.split(".").at(-1) ?? field;
  const known = fieldNames[key];
  if (known) return known;
  const words = key
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/[_-]+/g, " ")
    .toLowerCase()
    .replace(/\bip\b/g, "IP")
    .replace(/\bid\b/g, "ID");
  return `the ${words}`;
}

const sentenceStart = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);

/** An AJV error object as Fastify hands it to the error handler (the fields this module reads). */
export interface SchemaIssue {
  keyword?: string;
  instancePath?: string;
  params?: Record<string, unknown>;
}

function fieldOf(issue: SchemaIssue, context: string | undefined): string {
  const path = (issue.instancePath ?? "").replace(/^\//, "").replace(/\//g, ".");
  const params = issue.params ?? {};
  const extra = params.missingProperty ?? params.additionalProperty;
  const name = [path, typeof extra === "string" ? extra : undefined].filter(Boolean).join(".");
  return name || context || "body";
}

function sentenceFor(issue: SchemaIssue, field: string): string {
  const name = nameOf(field);
  const params = issue.params ?? {};
  const key = field.split(".").at(-1) ?? field;
  const limit = Number(params.limit);
  // A coded value (a country, a passcode) of the wrong length is best explained by what it should be.
  const form = formMessages[key];
  if (form && (issue.keyword === "maxLength" || (issue.keyword === "minLength" && limit > 1))) return form;
  switch (issue.keyword) {
    case "required":
      return `Enter ${name}.`;
    case "minLength":
      return limit <= 1 ? `Enter ${name}.` : `${sentenceStart(name)} must be at least ${limit} characters.`;
    case "maxLength":
      return `${sentenceStart(name)} must be at most ${limit} characters.`;
    case "pattern":
    case "format":
      return formMessages[key] ?? `${sentenceStart(name)} is not in the expected form.`;
    case "type":
      if (params.type === "integer" || params.type === "number")
        return `${sentenceStart(name)} must be a number.`;
      if (params.type === "boolean") return `${sentenceStart(name)} must be yes or no (true or false).`;
      if (params.type === "string") return `${sentenceStart(name)} must be text.`;
      return `${sentenceStart(name)} is not in the expected form.`;
    case "minimum":
      return `${sentenceStart(name)} must be at least ${limit}.`;
    case "exclusiveMinimum":
      return `${sentenceStart(name)} must be more than ${limit}.`;
    case "maximum":
      return `${sentenceStart(name)} must be at most ${limit}.`;
    case "exclusiveMaximum":
      return `${sentenceStart(name)} must be less than ${limit}.`;
    case "minItems":
      return `Choose at least ${limit} for ${name}.`;
    case "maxItems":
      return `Choose at most ${limit} for ${name}.`;
    case "uniqueItems":
      return `${sentenceStart(name)} lists the same value twice.`;
    case "minProperties":
      return `Add at least ${limit} entries to ${name}.`;
    case "maxProperties":
      return `${sentenceStart(name)} has more than ${limit} entries.`;
    case "additionalProperties":
      return `This request does not accept a field called "${key}".`;
    case "enum":
      return Array.isArray(params.allowedValues)
        ? `${sentenceStart(name)} must be one of: ${params.allowedValues.join(", ")}.`
        : `Choose one of the offered values for ${name}.`;
    default:
      return formMessages[key] ?? `${sentenceStart(name)} is not valid.`;
  }
}

/**
 * Schema errors as one sentence per field. With every error collected, a union (anyOf) reports each branch
 * that failed; a field's allowed constants are gathered into one "must be one of" sentence, and otherwise
 * the first sentence for a field is kept.
 */
export function validationDetails(issues: readonly SchemaIssue[], context?: string): FieldProblem[] {
  const byField = new Map<string, string>();
  const allowed = new Map<string, unknown[]>();
  for (const issue of issues) {
    const field = fieldOf(issue, context);
    if (issue.keyword === "const") {
      allowed.set(field, [...(allowed.get(field) ?? []), issue.params?.allowedValue]);
      continue;
    }
    if (issue.keyword === "anyOf" || issue.keyword === "oneOf") continue;
    if (!byField.has(field)) byField.set(field, sentenceFor(issue, field));
  }
  for (const [field, values] of allowed) {
    if (!byField.has(field)) {
      byField.set(field, `${sentenceStart(nameOf(field))} must be one of: ${values.join(", ")}.`);
    }
  }
  // A union whose branches all failed on type alone still names the field once.
  for (const issue of issues) {
    const field = fieldOf(issue, context);
    if (!byField.has(field)) byField.set(field, `${sentenceStart(nameOf(field))} is not valid.`);
  }
  return [...byField].map(([field, message]) => ({ field, message }));
}
