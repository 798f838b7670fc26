import type { AuditEntry } from "./audit-log.js";

/**
 * The owner's activity log: which audit events it shows and how each reads. Every security-relevant
 * event is here (sign-ins, proofs, every setting change, the lock, API keys, addresses), in a sentence
 * that says what happened — a confirmation names what it confirmed, a change what changed.
 */
export const activityEvents = [
  "account.created",
  "account.email_verified",
  "account.restricted",
  "account.restriction_lifted",
  "account.password_breached",
  "sign_in.password",
  "sign_in.totp",
  "sign_in.webauthn",
  "sign_in.passkey",
  "sign_in.recovery_code",
  "sign_in.refused",
  "sign_in.completed",
  "sign_in.second_factor_reset",
  "step_up.password",
  "step_up.totp",
  "step_up.webauthn",
  "step_up.recovery_code",
  "step_up.trading_passcode",
  "action.password",
  "action.totp",
  "action.webauthn",
  "action.recovery_code",
  "action.trading_passcode",
  "action.confirmed",
  "change_password.password",
  "unlock.master_key",
  "recovery.password_reset",
  "recovery.master_key",
  "device.approved",
  "device.removed",
  "device.disconnect_all",
  "session.ended",
  "session.ended_others",
  "factor.added",
  "factor.removed",
  "recovery_codes.regenerated",
  "security.password_changed",
  "security.master_key_set",
  "security.trading_passcode_set",
  "security.requirements_set",
  "security.anti_phishing_code_set",
  "global_lock.enabled",
  "global_lock.unlock_requested",
  "global_lock.unlock_cancelled",
  "global_lock.unlocked",
  "global_lock.removed",
  "api_key.created",
  "api_key.updated",
  "api_key.revoked",
  "api_key.disabled",
  "withdrawal_address.added",
  "withdrawal_address.confirmed",
  "withdrawal_address.removed",
];

/**
 * A proof that passed is shown through the confirmation it served ("Confirmed a password change with an
 * authenticator code"), not again on its own; a proof that failed is shown, since it may be someone else.
 */
export const activityShownOnlyWhenNotPassed = activityEvents.filter((event) =>
  /^(step_up|action|change_password)\.(?!confirmed$)/.test(event),
);

const proofWords: Record<string, string> = {
  password: "password",
  totp: "authenticator code",
  webauthn: "security key or passkey",
  passkey: "passkey",
  recovery_code: "recovery code",
  trading_passcode: "trading passcode",
  master_key: "Master Key",
};

/** What a confirmed action was, as the object of "Confirmed …". */
const actionWords: Record<string, string> = {
  withdraw: "a withdrawal",
  new_deposit_address: "a new deposit address",
  transfer_futures: "a transfer to the futures wallet",
  place_order: "an order",
  cancel_order: "cancelling an order",
  add_totp: "adding an authenticator app",
  add_webauthn: "adding a security key or passkey",
  remove_factor: "removing a second factor",
  regenerate_recovery_codes: "new recovery codes",
  create_api_key: "a new API key",
  update_api_key: "a change to an API key",
  enable_global_lock: "turning on the Global Settings Lock",
  set_requirements: "a change to the 2FA settings",
  set_trading_passcode: "the trading passcode",
  change_password: "a password change",
  set_master_key: "the Master Key",
  set_anti_phishing_code: "the anti-phishing code",
  add_withdrawal_address: "a new withdrawal address",
  remove_withdrawal_address: "removing a withdrawal address",
  api_request: "an API request above a key's approval threshold",
};

const stageWords: Record<string, string> = {
  sign_in: "signing in",
  step_up: "confirming a change",
  action: "confirming a transaction",
  change_password: "changing the password",
  unlock: "unlocking the Global Settings Lock",
  recovery: "resetting the password",
};

const plain: Record<string, string> = {
  "account.created": "Created the account",
  "account.email_verified": "Verified the email address",
  "account.restricted": "Sign-in was paused after repeated failed attempts",
  "account.restriction_lifted": "Sign-in was resumed by support",
  "account.password_breached": "The password was found among passwords known from data breaches: change it",
  "sign_in.refused": "Sign-in refused",
  "sign_in.completed": "Signed in",
  "sign_in.second_factor_reset": "Second factors were reset through account recovery",
  "recovery.password_reset": "Reset the password through account recovery",
  "device.approved": "Approved a new device",
  "device.removed": "Removed a device",
  "device.disconnect_all": "Disconnected all devices",
  "session.ended": "Ended a session",
  "session.ended_others": "Ended all other sessions",
  "global_lock.removed": "The Global Settings Lock was removed by support",
  "api_key.created": "Created an API key",
  "api_key.updated": "Changed an API key",
  "api_key.revoked": "Deleted an API key",
  "api_key.disabled": "An API key was disabled",
  "withdrawal_address.confirmed": "Confirmed a withdrawal address from the emailed link",
  "withdrawal_address.removed": "Removed a withdrawal address",
};

const reasonWords: Record<string, string> = {
  wrong: "wrong",
  account_restricted: "sign-in is paused",
  unknown_identifier: "unknown username or email",
  account_disabled: "account disabled",
  email_not_verified: "email address not verified yet",
};

const sentence = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);

/** The sentence for one entry of the activity log. */
export function describeActivity(entry: Pick<AuditEntry, "event" | "outcome" | "details">): string {
  const { event, details } = entry;
  if (typeof details.change === "string") return sentence(details.change);
  if (event === "action.confirmed") {
    const what = actionWords[String(details.type)] ?? "a change";
    const methods = Array.isArray(details.methods)
      ? details.methods.map((method) => proofWords[String(method)] ?? String(method))
      : [];
    return methods.length ? `Confirmed ${what} with ${methods.join(" and ")}` : `Confirmed ${what}`;
  }
  if (event === "withdrawal_address.added") {
    return typeof details.asset === "string"
      ? `Added a ${details.asset} withdrawal address`
      : "Added a withdrawal address";
  }
  const known = plain[event];
  if (known) return known;
  const [stage = "", proof = ""] = event.split(".");
  const proofName = proofWords[proof] ?? proof;
  const stageName = stageWords[stage] ?? stage;
  return entry.outcome === "success"
    ? `${sentence(proofName)} accepted for ${stageName}`
    : `${sentence(proofName)} refused while ${stageName}`;
}

/** The result column: what happened, and why when it did not work. */
export function describeOutcome(entry: Pick<AuditEntry, "outcome" | "details">): string {
  if (entry.outcome === "success") return "Done";
  // Something the system noticed (a pause after failed attempts, a breached password): not a failure.
  if (entry.outcome === "info") return "Noted";
  const reason = typeof entry.details.reason === "string" ? reasonWords[entry.details.reason] : undefined;
  const head = entry.outcome === "refused" ? "Refused" : "Failed";
  return reason ? `${head}: ${reason}` : head;
}
