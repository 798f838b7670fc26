import type { Action } from "./api.js";
import { describePermissions } from "./permissions.js";

/** One line of what is being confirmed; `long` values (addresses) get a whole line and wrap. */
export interface SummaryRow {
  label: string;
  value: string;
  long?: boolean;
}

export interface ActionSummary {
  rows: SummaryRow[];
  /** What happens because of it that a person should know before confirming. */
  warning?: string;
}

const text = (value: unknown): string | undefined =>
  typeof value === "string" && value !== "" ? value : typeof value === "number" ? String(value) : undefined;

const list = (value: unknown): string[] =>
  Array.isArray(value) ? value.filter((item): item is string => typeof item === "string") : [];

const onOff = (value: unknown) => (value ? "On" : "Off");

function when(value: unknown): string | undefined {
  const iso = text(value);
  if (!iso) return undefined;
  return new Date(iso).toLocaleString(undefined, {
    dateStyle: "medium",
    timeStyle: "short",
    timeZoneName: "short",
  });
}

/** Per-asset limits ({"BTC": "0.5"}) or a single one, as "0.5 BTC, 10000 USD". */
function threshold(value: unknown): string | undefined {
  if (value && typeof value === "object")
    return Object.entries(value as Record<string, unknown>)
      .map(([asset, amount]) => `${String(amount)} ${asset}`)
      .join(", ");
  return text(value);
}

function rows(...entries: [string, string | undefined, boolean?][]): SummaryRow[] {
  return entries
    .filter((entry): entry is [string, string, boolean?] => entry[1] !== undefined)
    .map(([label, value, long]) => ({ label, value, ...(long ? { long } : {}) }));
}

function apiKeyRows(p: Record<string, unknown>): SummaryRow[] {
  const window =
    p.queryFrom || p.queryTo
      ? `${when(p.queryFrom) ?? "the beginning"} to ${when(p.queryTo) ?? "now"}`
      : undefined;
  const otp = p.otp === "totp" ? "Authenticator code" : p.otp === "static" ? "Password" : undefined;
  return rows(
    ["Name", text(p.name)],
    ["Permissions", describePermissions(list(p.permissions))],
    ["IP allowlist", list(p.ipAllowlist).join(", ") || "Any address"],
    ["Valid until", when(p.validUntil) ?? "No end date"],
    ["Query window", window],
    ["Nonce window", p.nonceWindow ? String(p.nonceWindow) : undefined],
    ["Key's own 2FA", otp],
    ["Needs approval above", threshold(p.approvalThreshold)],
  );
}

/**
 * What an action does, in words, from its parameters: the readable part of the confirmation dialog.
 * Ids, the type and the digest are shown only under "Technical details".
 */
export function summarise(action: Action): ActionSummary {
  const p = action.params;
  switch (action.type) {
    case "withdraw":
      return {
        rows: rows(
          ["Amount", `${text(p.amount) ?? "?"} ${text(p.asset) ?? ""}`.trim()],
          ["Network", text(p.network)],
          ["To", text(p.label)],
          ["Address", text(p.address), true],
        ),
      };
    case "add_withdrawal_address":
      return {
        rows: rows(["Asset", text(p.asset)], ["Label", text(p.label)], ["Address", text(p.address), true]),
        warning: "We will email you a link to confirm the address; it can be used after a hold that follows.",
      };
    case "remove_withdrawal_address":
      return {
        rows: rows(["Asset", text(p.asset)], ["Label", text(p.label)], ["Address", text(p.address), true]),
      };
    case "transfer_futures":
      return { rows: rows(["Amount", `${text(p.amount)} ${text(p.asset)}`], ["To", "Futures wallet"]) };
    case "new_deposit_address":
      return { rows: rows(["Asset", text(p.asset)]) };
    case "place_order":
      return {
        rows: rows(
          ["Pair", text(p.pair)],
          ["Side", p.side === "sell" ? "Sell" : "Buy"],
          ["Order type", p.type === "limit" ? "Limit" : "Market"],
          ["Volume", text(p.volume)],
          ["Price", text(p.price)],
        ),
      };
    case "create_api_key":
    case "update_api_key":
      return { rows: apiKeyRows(p) };
    case "remove_factor":
      return {
        rows: [],
        warning:
          "Removing a second factor holds withdrawals for 48 hours, so that someone who took over your account cannot empty it at once.",
      };
    case "enable_global_lock":
      return {
        rows: rows(["Unlocking without the Master Key waits", `${text(p.unlockDelayDays) ?? "?"} days`]),
        warning: "While the lock is on, no security setting can be changed.",
      };
    case "set_requirements":
      return { rows: rows(["Funding 2FA", onOff(p.funding)], ["Trading 2FA", onOff(p.trading)]) };
    case "set_trading_passcode":
      return action.summary.startsWith("Change")
        ? { rows: [], warning: "Changing the passcode holds withdrawals for 24 hours." }
        : { rows: [] };
    case "change_password":
      return { rows: [], warning: "Your other sessions will be signed out." };
    case "regenerate_recovery_codes":
      return { rows: [], warning: "Your current recovery codes stop working." };
    default:
      return { rows: [] };
  }
}
