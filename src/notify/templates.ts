import { describeUserAgent } from "../support/user-agent.js";

/**
 * Every email Portcullis sends, as plain text plus a simple HTML rendering. Each carries the owner's
 * anti-phishing code when set (behaviour §12), so a forged email is recognisable by its absence.
 */
export interface RenderedEmail {
  subject: string;
  text: string;
  html: string;
}

export interface EmailFrame {
  antiPhishingCode: string | null;
  /** The single-use "lock my account" link, in every security email to the owner. */
  lockLink?: string | null;
}

export interface SecurityEventDetails {
  at: string;
  ip: string;
  /** The coarse place looked up from the IP (city and country at most). */
  location: string | null;
  /** A label from fixed words ("Chrome on Linux"), never the client's own User-Agent text. */
  browser: string;
}

/**
 * Time, IP, place and browser of the request behind a security email. Nothing in it is text the client
 * chose: the browser is reduced to a label, the place is our own lookup of the address.
 */
export function securityDetails(
  context: { ip: string; location: string | null; userAgent: string | null },
  atMs: number,
): SecurityEventDetails {
  return {
    at: new Date(atMs).toISOString(),
    ip: context.ip,
    location: context.location,
    browser: describeUserAgent(context.userAgent),
  };
}

export type EmailMessage =
  | { kind: "verify_email"; username: string; link: string }
  | { kind: "sign_up_email_taken"; signInLink: string; resetLink: string }
  | { kind: "sign_up_username_taken"; username: string; signUpLink: string }
  | ({
      kind: "account_restricted";
      until: string | null;
      permanent: boolean;
      resetLink: string;
    } & SecurityEventDetails)
  | ({ kind: "approve_device"; link: string } & SecurityEventDetails)
  | ({ kind: "second_factor_failed"; resetLink: string } & SecurityEventDetails)
  | ({ kind: "new_sign_in"; sessionsLink: string; resetLink: string } & SecurityEventDetails)
  | ({ kind: "recovery_code_used"; remaining: number } & SecurityEventDetails)
  | ({ kind: "security_change"; change: string } & SecurityEventDetails)
  | ({ kind: "password_reset"; link: string; masterKeyRequired: boolean } & SecurityEventDetails)
  | { kind: "username_reminder"; username: string; signInLink: string }
  | ({ kind: "bypass_code"; code: string } & SecurityEventDetails)
  /** After a reset or "disconnect all": the API keys that still work, and one link that disables them all. */
  | ({ kind: "api_keys_still_active"; keys: string[]; link: string } & SecurityEventDetails)
  /** To the new address: the link that makes it the account's address. */
  | ({ kind: "confirm_email_change"; username: string; link: string } & SecurityEventDetails)
  /** To the new address when another account already has it: nothing changes, and the asker is not told. */
  | ({ kind: "email_change_address_taken" } & SecurityEventDetails)
  /** To the current address, at once: someone asked to move the account to another address. */
  | ({ kind: "email_change_requested"; newEmail: string } & SecurityEventDetails)
  /** To both addresses once the change took effect. */
  | ({ kind: "email_changed"; oldEmail: string; newEmail: string; holdUntil: string } & SecurityEventDetails)
  | ({ kind: "account_frozen" } & SecurityEventDetails)
  /** A sign-in or API-key use from a country (or, for a known device, a network) the account was not used from. */
  | ({ kind: "new_place"; place: string; by: string } & SecurityEventDetails)
  | ({ kind: "account_unfrozen"; by: "owner" | "operator" } & SecurityEventDetails)
  | ({
      kind: "confirm_withdrawal_address";
      asset: string;
      address: string;
      label: string;
      link: string;
    } & SecurityEventDetails);

const escapeHtml = (value: string) =>
  value.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );

/**
 * A time a person reads without converting: "Sunday 29 November 2026 at 06:40 UTC". The server does not
 * know the reader's time zone, so it names the one it uses.
 */
export function readableTime(iso: string): string {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  const text = new Intl.DateTimeFormat("en-GB", {
    dateStyle: "full",
    timeStyle: "short",
    timeZone: "UTC",
  }).format(at);
  return `${text} UTC`;
}

/** "changed the password (other sessions were ended)" as a subject: "Changed the password". */
function changeSubject(change: string): string {
  const short = change.replace(/\s*\([^)]*\)$/, "").replace(/ on \d{4}-\d{2}-\d{2}T\S+$/, "");
  return short.charAt(0).toUpperCase() + short.slice(1);
}

function describeRequest(details: SecurityEventDetails): string[] {
  return [
    `Time: ${readableTime(details.at)}`,
    `IP address: ${details.ip}`,
    `Location: ${details.location ?? "unknown"}`,
    `Browser / app: ${details.browser}`,
  ];
}

function body(message: EmailMessage): { subject: string; lines: string[] } {
  switch (message.kind) {
    case "verify_email":
      return {
        subject: "Verify your email address",
        lines: [
          `Welcome, ${message.username}.`,
          "Confirm this email address to finish creating your account:",
          message.link,
          "The link works once and expires in 24 hours. If you did not sign up, ignore this email.",
        ],
      };
    case "sign_up_email_taken":
      return {
        subject: "Someone tried to sign up with your email address",
        lines: [
          "Someone tried to create an account with this email address, but you already have one.",
          `Sign in: ${message.signInLink}`,
          `Forgot your password? ${message.resetLink}`,
          "If this was not you, no action is needed: no new account was created.",
        ],
      };
    case "sign_up_username_taken":
      return {
        subject: "Choose another username",
        lines: [
          `Someone signed up with this email address, but the username "${message.username}" is already taken.`,
          `Sign up again with another username: ${message.signUpLink}`,
          "If this was not you, ignore this email: no account was created.",
        ],
      };
    case "account_restricted":
      return {
        subject: message.permanent
          ? "Your account has been restricted"
          : "Your account is temporarily restricted after failed sign-in attempts",
        lines: [
          message.permanent
            ? "After 100 failed sign-in attempts in a row, your account has been restricted until you reset your password (with your Master Key, if you set one) or contact support."
            : `After repeated failed sign-in attempts, sign-in to your account is restricted until ${message.until ? readableTime(message.until) : "further notice"}.`,
          "The last attempt:",
          ...describeRequest(message),
          "If this was you, wait and try again. If it was not, your password may be known to someone else:",
          `reset it now: ${message.resetLink}`,
          "Password reset works even while the account is restricted.",
        ],
      };
    case "approve_device":
      return {
        subject: "Approve sign-in from a new device",
        lines: [
          `Someone signed in to your account with your password (${message.browser}), from a device we have not seen before.`,
          ...describeRequest(message),
          "If this was you, approve the device (the link works once, for 20 minutes):",
          message.link,
          "If this was not you, do not click the link: change your password now, and turn on two-factor authentication.",
        ],
      };
    case "second_factor_failed":
      return {
        subject: "A sign-in failed at the second step",
        lines: [
          "Someone entered your correct password, then a wrong two-factor code or security key.",
          ...describeRequest(message),
          "If this was you, no action is needed. If it was not, your password is known to someone else:",
          `change it now: ${message.resetLink}`,
        ],
      };
    case "new_sign_in":
      return {
        subject: "New sign-in to your account",
        lines: [
          "Your account was signed in to from a device it had not seen before.",
          ...describeRequest(message),
          `If this was you, no action is needed. If it was not, end that session at ${message.sessionsLink}`,
          `and change your password now: ${message.resetLink}`,
        ],
      };
    case "recovery_code_used":
      return {
        subject: "A recovery code was used on your account",
        lines: [
          `A recovery code was used to confirm a sign-in or a change. ${message.remaining} unused codes remain.`,
          ...describeRequest(message),
          "If this was not you, contact support at once. Generate new codes in Security when few remain.",
        ],
      };
    case "confirm_withdrawal_address":
      return {
        subject: "Confirm a new withdrawal address",
        lines: [
          `A ${message.asset} withdrawal address was added to your account: ${message.address} (${message.label}).`,
          ...describeRequest(message),
          "If this was you, confirm it (the link works once, for 24 hours). It can be used 48 hours after you confirm:",
          message.link,
          "If this was not you, do not click the link and contact support at once: your account may be compromised.",
        ],
      };
    case "password_reset":
      return {
        subject: "Reset your password",
        lines: [
          "Someone asked to reset the password of your account.",
          ...describeRequest(message),
          "To choose a new password, open this link (it works once, for 2 hours):",
          message.link,
          ...(message.masterKeyRequired ? ["You will need your Master Key."] : []),
          "Resetting ends every session and holds withdrawals for 24 hours. If this was not you, ignore this email.",
        ],
      };
    case "username_reminder":
      return {
        subject: "Your username",
        lines: [`Your username is: ${message.username}`, `Sign in: ${message.signInLink}`],
      };
    case "bypass_code":
      return {
        subject: "Your two-factor bypass code",
        lines: [
          "Your Master Key was used to sign in without your second factor. Your sign-in code:",
          message.code,
          ...describeRequest(message),
          "It works once, for 15 minutes. After signing in you must set up a new second factor.",
          "If this was not you, your password and Master Key are known to someone else: contact support at once.",
        ],
      };
    case "api_keys_still_active":
      return {
        subject: "Your API keys still work",
        lines: [
          `Signing every device out does not stop API keys. These ${message.keys.length} keys of your account still work: ${message.keys.map((name) => `"${name}"`).join(", ")}.`,
          "If you did not create them all, or want them stopped, disable every one of them with this link (it works once, for 7 days):",
          message.link,
          ...describeRequest(message),
        ],
      };
    case "confirm_email_change":
      return {
        subject: "Confirm your new email address",
        lines: [
          `The owner of the account "${message.username}" asked to use this address from now on.`,
          ...describeRequest(message),
          "To make it the account's address, open this link (it works once, for 24 hours):",
          message.link,
          "If this was not you, ignore this email: nothing changes.",
        ],
      };
    case "email_change_address_taken":
      return {
        subject: "Someone tried to move an account to your email address",
        lines: [
          "Someone asked to move another account to this email address, which already belongs to an account. Nothing changed.",
          ...describeRequest(message),
          "If this was you, choose another address for the other account. If it was not, no action is needed.",
        ],
      };
    case "email_change_requested":
      return {
        subject: "Someone asked to change your account's email address",
        lines: [
          `Someone signed in to your account asked to change its email address to ${message.newEmail}.`,
          ...describeRequest(message),
          "Nothing changes until the new address confirms it. Once it does, withdrawals wait 72 hours.",
        ],
      };
    case "email_changed":
      return {
        subject: "Your account's email address changed",
        lines: [
          `The email address of your account changed from ${message.oldEmail} to ${message.newEmail}.`,
          ...describeRequest(message),
          `Withdrawals are on hold until ${message.holdUntil}.`,
        ],
      };
    case "new_place":
      return {
        subject: "Your account was used from a new place",
        lines: [
          `Your account was used from ${message.place}, where it had not been used before, ${message.by}.`,
          ...describeRequest(message),
          "If this was you, no action is needed.",
        ],
      };
    case "account_frozen":
      return {
        subject: "Your account is frozen",
        lines: [
          "Your account was frozen with the lock link from one of our security emails. Every session ended, API keys stopped working, and no withdrawal, new address, API key or setting change is allowed.",
          ...describeRequest(message),
          "To lift the freeze, sign in after 24 hours and confirm with your Master Key and your second factor, or contact support.",
        ],
      };
    case "account_unfrozen":
      return {
        subject: "The freeze on your account was lifted",
        lines: [
          message.by === "owner"
            ? "The freeze on your account was lifted with your Master Key and second factor."
            : "Support lifted the freeze on your account.",
          ...describeRequest(message),
          "Sessions and API keys work again. If this was not you or your request, lock the account again:",
        ],
      };
    case "security_change":
      return {
        // The subject says what happened, so a list of these emails reads as a log.
        subject: changeSubject(message.change),
        lines: [
          `Change: ${message.change.replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z/g, readableTime)}.`,
          ...describeRequest(message),
          "If you did not make this change, contact support at once.",
        ],
      };
  }
}

/**
 * The emails that tell the owner about something done to their account: each carries a "lock my account"
 * link. Not the ones that only help the reader (verification, reminders), the ones to an address that is
 * not yet the account's, and the freeze's own notice (the account is frozen already).
 */
const securityKinds: ReadonlySet<EmailMessage["kind"]> = new Set<EmailMessage["kind"]>([
  "sign_up_email_taken",
  "account_restricted",
  "approve_device",
  "second_factor_failed",
  "new_sign_in",
  "recovery_code_used",
  "security_change",
  "password_reset",
  "bypass_code",
  "api_keys_still_active",
  "email_change_requested",
  "email_changed",
  "account_unfrozen",
  "new_place",
  "confirm_withdrawal_address",
]);

export function isSecurityEmail(kind: EmailMessage["kind"]): boolean {
  return securityKinds.has(kind);
}

export function renderEmail(message: EmailMessage, frame: EmailFrame): RenderedEmail {
  const rendered = body(message);
  const { subject } = rendered;
  const lines = frame.lockLink
    ? [
        ...rendered.lines,
        "",
        "If someone else may be in your account, lock it now: every session and API key stops, and nothing can be changed or withdrawn until it is lifted. The link works once, for 7 days, without signing in:",
        frame.lockLink,
      ]
    : rendered.lines;
  const preamble = frame.antiPhishingCode ? [`Your anti-phishing code: ${frame.antiPhishingCode}`, ""] : [];
  const footer = ["", "— Portcullis security. We never ask for your password, 2FA codes or Master Key."];
  const text = [...preamble, ...lines, ...footer].join("\n");
  const html = [...preamble, ...lines, ...footer]
    .map((line) => {
      const escaped = escapeHtml(line);
      return /^https?:\/\/\S+$/.test(line)
        ? `<p><a href="${escaped}">${escaped}</a></p>`
        : `<p>${escaped}</p>`;
    })
    .join("\n");
  return { subject, text, html: `<!doctype html><html><body>${html}</body></html>` };
}
