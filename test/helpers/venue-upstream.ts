import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import qs from "qs";
import { dialectAnswer } from "./dialect-venue.js";

export interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** The parameters as a venue's server reads them: by the Content-Type it receives (qs for forms). */
  params: Record<string, unknown> | null;
}

const assetPairs = {
  XXBTZUSD: {
    altname: "XBTUSD",
    wsname: "XBT/USD",
    aclass_base: "currency",
    base: "XXBT",
    aclass_quote: "currency",
    quote: "ZUSD",
    pair_decimals: 1,
    cost_decimals: 5,
    lot_decimals: 8,
    lot_multiplier: 1,
    leverage_buy: [2, 3, 4, 5],
    leverage_sell: [2, 3, 4, 5],
    fees: [[0, 0.4]],
    fees_maker: [[0, 0.25]],
    fee_volume_currency: "ZUSD",
    margin_call: 80,
    margin_stop: 40,
    ordermin: "0.0001",
    costmin: "0.5",
    tick_size: "0.1",
    status: "online",
  },
};
const assets = {
  XXBT: { aclass: "currency", altname: "XBT", decimals: 10, display_decimals: 5, status: "enabled" },
  ZUSD: { aclass: "currency", altname: "USD", decimals: 4, display_decimals: 2, status: "enabled" },
};

/**
 * The venue's own API, as small as the gateway's tests need and as strict as a real one: it parses what
 * it receives by the Content-Type it receives (a form with qs, as Express does, nested fields and all),
 * records every request, and answers Kraken's shapes for the methods ccxt calls.
 */
export class VenueUpstream {
  readonly seen: SeenRequest[] = [];
  private server: Server | null = null;
  private orderCounter = 0;
  url = "";

  async start(): Promise<void> {
    this.server = createServer((request, response) => {
      let body = "";
      request.setEncoding("utf8");
      request.on("data", (chunk: string) => {
        body += chunk;
      });
      request.on("end", () => {
        const type = (request.headers["content-type"] ?? "").split(";")[0]!.trim();
        let params: Record<string, unknown> | null = null;
        try {
          if (type === "application/json") params = JSON.parse(body) as Record<string, unknown>;
          else if (type === "application/x-www-form-urlencoded") params = qs.parse(body, { depth: 5 });
        } catch {
          params = null;
        }
        const path = request.url ?? "";
        this.seen.push({ method: request.method ?? "", path, headers: request.headers, body, params });
        response.setHeader("content-type", "application/json");
        const bare = path.split("?")[0]!;
        const answer = dialectAnswer(request.method ?? "", bare) ?? this.answer(bare, params);
        response.end(JSON.stringify(answer));
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private nextTxid(): string {
    this.orderCounter += 1;
    return `O${String(this.orderCounter).padStart(5, "0")}-ABCDE-FGHIJK`;
  }

  private answer(path: string, params: Record<string, unknown> | null): unknown {
    switch (path) {
      case "/0/public/AssetPairs":
        return { error: [], result: assetPairs };
      case "/0/public/Assets":
        return { error: [], result: assets };
      case "/0/public/Ticker":
        return { error: [], result: { XXBTZUSD: { c: ["50000.0", "0.1"] } } };
      case "/0/private/Balance":
        return { error: [], result: { XXBT: "1.2500000000", ZUSD: "3100.5000" } };
      case "/0/private/BalanceEx":
        return {
          error: [],
          result: {
            XXBT: { balance: "1.2500000000", hold_trade: "0.2500000000" },
            ZUSD: { balance: "3100.5000", hold_trade: "0" },
          },
        };
      case "/0/private/AddOrder":
        return {
          error: [],
          result: {
            descr: { order: `${params?.type} ${params?.volume} XBTUSD @ ${params?.ordertype}` },
            txid: [this.nextTxid()],
          },
        };
      case "/0/private/AddOrderBatch":
        return {
          error: [],
          result: {
            orders: ((params?.orders as unknown[]) ?? []).map(() => ({ txid: this.nextTxid(), descr: {} })),
          },
        };
      case "/0/private/CancelOrder":
        return { error: [], result: { count: 1 } };
      case "/0/private/OpenOrders":
        return {
          error: [],
          result: {
            open: {
              "O00001-ABCDE-FGHIJK": {
                refid: null,
                userref: 0,
                status: "open",
                opentm: 1_700_000_000.1,
                starttm: 0,
                expiretm: 0,
                descr: {
                  pair: "XBTUSD",
                  type: "buy",
                  ordertype: "limit",
                  price: "30000.0",
                  price2: "0",
                  leverage: "none",
                  order: "buy 0.01000000 XBTUSD @ limit 30000.0",
                  close: "",
                },
                vol: "0.01000000",
                vol_exec: "0.00000000",
                cost: "0.00000",
                fee: "0.00000",
                price: "0.00000",
                misc: "",
                oflags: "fciq",
              },
            },
          },
        };
      default:
        return { error: [], result: {} };
    }
  }

  /** What reached the venue at a path (without its query string). */
  at(path: string): SeenRequest[] {
    return this.seen.filter((request) => request.path.split("?")[0] === path);
  }

  async stop(): Promise<void> {
    if (!this.server?.listening) return;
    const server = this.server;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      // The gateway keeps its connections to the venue alive: a venue that goes down drops them too.
      server.closeAllConnections();
    });
  }
}
