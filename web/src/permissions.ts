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

export const describePermissions = (ids: readonly string[]): string =>
  ids.map((id) => permissionNames[id] ?? id).join(", ") || "No permissions";
