/** Kraken's API key permissions (behaviour §11). */
export const permissions = [
  "funds_query",
  "funds_add",
  "funds_withdraw",
  "funds_earn",
  "trades_query_open",
  "trades_query_closed",
  "trades_modify",
  "trades_close",
  "ledger_query",
  "export_data",
  "websocket",
] as const;
export type Permission = (typeof permissions)[number];

/**
 * Which permission each private method needs, as Kraken maps them. A method not listed is refused: new
 * upstream methods are opened deliberately, never by default. GetApiKeyInfo needs none.
 */
export const methodPermissions: Record<string, Permission | null> = {
  GetApiKeyInfo: null,
  Balance: "funds_query",
  BalanceEx: "funds_query",
  TradeBalance: "funds_query",
  TradeVolume: "funds_query",
  OpenOrders: "trades_query_open",
  OpenPositions: "trades_query_open",
  ClosedOrders: "trades_query_closed",
  QueryOrders: "trades_query_closed",
  TradesHistory: "trades_query_closed",
  QueryTrades: "trades_query_closed",
  Ledgers: "ledger_query",
  QueryLedgers: "ledger_query",
  AddExport: "export_data",
  ExportStatus: "export_data",
  RetrieveExport: "export_data",
  RemoveExport: "export_data",
  AddOrder: "trades_modify",
  AddOrderBatch: "trades_modify",
  EditOrder: "trades_modify",
  AmendOrder: "trades_modify",
  CancelOrder: "trades_close",
  CancelAll: "trades_close",
  CancelAllOrdersAfter: "trades_close",
  CancelOrderBatch: "trades_close",
  DepositMethods: "funds_add",
  DepositAddresses: "funds_add",
  DepositStatus: "funds_add",
  WithdrawMethods: "funds_withdraw",
  WithdrawAddresses: "funds_withdraw",
  WithdrawInfo: "funds_withdraw",
  Withdraw: "funds_withdraw",
  WithdrawStatus: "funds_withdraw",
  WithdrawCancel: "funds_withdraw",
  WalletTransfer: "funds_withdraw",
  Stake: "funds_earn",
  Unstake: "funds_earn",
  "Earn/Allocate": "funds_earn",
  "Earn/Deallocate": "funds_earn",
  "Earn/Strategies": "funds_earn",
  "Earn/Allocations": "funds_earn",
  GetWebSocketsToken: "websocket",
};

/** Ledger and trade-history calls cost 2 on Kraken's counter, the rest 1 (behaviour §11). */
export function callCost(method: string): number {
  return ["Ledgers", "QueryLedgers", "TradesHistory", "QueryTrades"].includes(method) ? 2 : 1;
}
