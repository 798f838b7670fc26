/**
 * The venue's answers in KuCoin's and Kraken Futures' shapes, for the paths ccxt's `kucoin` and
 * `krakenfutures` classes call (loadMarkets, fetchBalance, createOrder, cancelOrder).
 */
const now = () => new Date().toISOString();
const kucoinOk = (data: unknown) => ({ code: "200000", data });

const chain = (name: string) => ({
  chainName: name,
  chainId: name.toLowerCase(),
  withdrawalMinSize: "0.001",
  depositMinSize: "0.0001",
  withdrawFeeRate: "0",
  withdrawalMinFee: "0.0005",
  isWithdrawEnabled: true,
  isDepositEnabled: true,
  confirms: 2,
  preConfirms: 1,
  contractAddress: "",
});

let kucoinOrders = 0;

export function dialectAnswer(method: string, path: string): unknown | undefined {
  if (path === "/api/v2/symbols" || path === "/api/v1/symbols")
    return kucoinOk([
      {
        symbol: "BTC-USDT",
        name: "BTC-USDT",
        baseCurrency: "BTC",
        quoteCurrency: "USDT",
        feeCurrency: "USDT",
        market: "USDS",
        baseMinSize: "0.00001",
        quoteMinSize: "0.1",
        baseMaxSize: "10000000000",
        quoteMaxSize: "99999999",
        baseIncrement: "0.00000001",
        quoteIncrement: "0.000001",
        priceIncrement: "0.1",
        priceLimitRate: "0.1",
        minFunds: "0.1",
        isMarginEnabled: true,
        enableTrading: true,
      },
    ]);
  if (path === "/api/v3/currencies" || path === "/api/v1/currencies")
    return kucoinOk(
      ["BTC", "USDT"].map((currency) => ({
        currency,
        name: currency,
        fullName: currency,
        precision: 8,
        confirms: null,
        contractAddress: null,
        isMarginEnabled: true,
        isDebitEnabled: true,
        chains: [chain(currency)],
      })),
    );
  if (path === "/api/v1/timestamp") return kucoinOk(Date.now());
  if (path === "/api/v1/hf/accounts/opened") return kucoinOk(false);
  if (path === "/api/ua/v1/account/mode") return kucoinOk({ selfAccountMode: "CLASSIC" });
  if (path === "/api/v1/accounts")
    return kucoinOk([
      { id: "a1", currency: "BTC", type: "trade", balance: "1.25", available: "1", holds: "0.25" },
      { id: "a2", currency: "USDT", type: "trade", balance: "3100.5", available: "3100.5", holds: "0" },
    ]);
  if (method === "POST" && (path === "/api/v1/orders" || path === "/api/v1/hf/orders")) {
    kucoinOrders += 1;
    return kucoinOk({ orderId: `67a1b2c3d4e5f60000${String(kucoinOrders).padStart(6, "0")}` });
  }
  if (method === "DELETE" && path.startsWith("/api/v1/orders/"))
    return kucoinOk({ cancelledOrderIds: [path.slice("/api/v1/orders/".length)] });
  if (method === "DELETE" && path.startsWith("/api/v1/hf/orders/"))
    return kucoinOk({ orderId: path.slice("/api/v1/hf/orders/".length) });
  if (path === "/api/v3/margin/symbols") return kucoinOk({ timestamp: Date.now(), items: [] });
  if (path.startsWith("/api/")) return kucoinOk(path.endsWith("s") ? [] : {});

  if (path === "/derivatives/api/v3/instruments")
    return {
      result: "success",
      serverTime: now(),
      instruments: [
        {
          symbol: "PF_XBTUSD",
          type: "flexible_futures",
          underlying: "rr_xbtusd",
          tickSize: 1,
          contractSize: 1,
          tradeable: true,
          impactMidSize: 1,
          maxPositionSize: 1_000_000,
          openingDate: "2022-01-01T00:00:00.000Z",
          marginLevels: [{ numNonContractUnits: 0, initialMargin: 0.02, maintenanceMargin: 0.01 }],
          fundingRateCoefficient: 8,
          maxRelativeFundingRate: 0.001,
          contractValueTradePrecision: 4,
          postOnly: false,
          feeScheduleUid: "eef90775-995b-4596-9257-0917f6134766",
          retailMarginLevels: [],
          category: "",
          tags: [],
          base: "BTC",
          quote: "USD",
        },
      ],
    };
  if (path === "/derivatives/api/v3/accounts")
    return {
      result: "success",
      serverTime: now(),
      accounts: {
        flex: {
          type: "multiCollateralMarginAccount",
          currencies: { USD: { quantity: 1000, value: 1000, collateral: 1000, available: 1000 } },
          initialMargin: 0,
          availableMargin: 1000,
          balanceValue: 1000,
          portfolioValue: 1000,
          collateralValue: 1000,
          pnl: 0,
          unrealizedFunding: 0,
          totalUnrealized: 0,
        },
      },
    };
  if (path === "/derivatives/api/v3/sendorder")
    return {
      result: "success",
      serverTime: now(),
      sendStatus: {
        order_id: "179f9af8-e45e-469d-b3e9-2fd4675cb7d0",
        status: "placed",
        receivedTime: now(),
        orderEvents: [
          {
            uid: "614a5298-0071-450f-83c6-0617ce8c6bc4",
            order: {
              orderId: "179f9af8-e45e-469d-b3e9-2fd4675cb7d0",
              cliOrdId: null,
              type: "lmt",
              symbol: "PF_XBTUSD",
              side: "buy",
              quantity: 1,
              filled: 0,
              limitPrice: 30000,
              reduceOnly: false,
              timestamp: now(),
              lastUpdateTimestamp: now(),
            },
            reducedQuantity: null,
            type: "PLACE",
          },
        ],
      },
    };
  if (path.startsWith("/derivatives/")) return { result: "success", serverTime: now() };
  return undefined;
}
