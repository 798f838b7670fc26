/**
 * Kraken's API key permissions, grouped and worded as its key settings page shows them (Funds, Orders &
 * trades, Data, WebSocket). The ids are the server's (src/api-keys/permissions.ts).
 */
export const permissionGroups: { title: string; permissions: Record<string, string> }[] = [
  {
    title: "Funds",
    permissions: {
      funds_query: "Query funds",
      funds_add: "Deposit funds",
      funds_withdraw: "Withdraw funds (needs an IP allowlist)",
      funds_earn: "Earn (staking)",
    },
  },
  {
    title: "Orders & trades",
    permissions: {
      trades_query_open: "Query open orders and trades",
      trades_query_closed: "Query closed orders and trades",
      trades_modify: "Create and modify orders",
      trades_close: "Cancel and close orders",
    },
  },
  {
    title: "Data",
    permissions: { ledger_query: "Query ledger entries", export_data: "Export data" },
  },
  {
    title: "WebSocket",
    permissions: { websocket: "Access WebSockets API" },
  },
];

export const permissionNames: Record<string, string> = Object.assign(
  {},
  ...permissionGroups.map((group) => group.permissions),
);

/** How a key signs, and which exchange's bots it serves; fixed when the key is created. */
export type Dialect = "kraken" | "kucoin" | "kraken_futures";
export const dialects: { value: Dialect; label: string }[] = [
  { value: "kraken", label: "Kraken (spot)" },
  { value: "kucoin", label: "KuCoin (spot and margin)" },
  { value: "kraken_futures", label: "Kraken Futures" },
];

/** Each dialect's permissions, grouped and worded as that exchange's own key settings page shows them. */
export const dialectPermissionGroups: Record<
  Dialect,
  { title: string; permissions: Record<string, string> }[]
> = {
  kraken: permissionGroups,
  kucoin: [
    {
      title: "Permissions",
      permissions: {
        general: "General",
        spot: "Spot Trading",
        margin: "Margin Trading",
        inner_transfer: "Inner Transfer",
        withdrawal: "Withdrawal (needs an IP allowlist)",
      },
    },
  ],
  kraken_futures: [
    {
      title: "Access",
      permissions: {
        read: "Read-only",
        full: "Full access",
        withdrawal: "Withdrawal (needs an IP allowlist)",
      },
    },
  ],
};

/** A key's permissions in its own dialect's words. */
export function dialectPermissionNames(dialect: string): Record<string, string> {
  const groups = dialectPermissionGroups[dialect as Dialect] ?? permissionGroups;
  return Object.assign({}, ...groups.map((group) => group.permissions));
}

/**
 * Approval thresholds as the owner writes them, "BTC 0.5, USD 10000", as the server takes them
 * ({"BTC": "0.5", "USD": "10000"}); null when the text is not of that form.
 */
export function parseThresholds(text: string): Record<string, string> | null {
  const thresholds: Record<string, string> = {};
  const entries = text
    .split(/[,;\n]/)
    .map((entry) => entry.trim())
    .filter(Boolean);
  for (const entry of entries) {
    const match = /^([A-Za-z0-9]{2,12})\s*[: =]\s*(\d+(?:\.\d+)?)$/.exec(entry);
    if (!match) return null;
    thresholds[match[1]!.toUpperCase()] = match[2]!;
  }
  return thresholds;
}

export const describePermissions = (ids: readonly string[]): string =>
  ids.map((id) => permissionNames[id] ?? id).join(", ") || "No permissions";
