import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GatewayRequest } from "../../src/api-keys/dialects/dialect.js";
import { krakenFutures } from "../../src/api-keys/dialects/kraken-futures.js";
import { kucoin } from "../../src/api-keys/dialects/kucoin.js";
import { operationTable, type PathOperation, parseQuery } from "../../src/api-keys/dialects/path-dialect.js";
import { Upstream } from "../../src/http/upstream.js";
import { VenueUpstream } from "../helpers/venue-upstream.js";

const entry = (httpMethod: string, pattern: string): PathOperation => ({
  name: `${httpMethod} ${pattern}`,
  httpMethod,
  pattern,
  permission: "read",
  product: null,
  kind: "read",
  weight: 1,
  pool: "test",
});

const request = (method: string, path: string): GatewayRequest => ({
  method,
  path,
  query: "",
  headers: {},
  body: "",
  ip: "192.0.2.1",
  userAgent: null,
});

/** Every spelling of a path the venue's URL parser or server could read as another path. */
const ambiguous = [
  "/things/.",
  "/things/..",
  "/things/%2e",
  "/things/%2E",
  "/things/.%2e",
  "/things/%2e%2E",
  "/things/a%2fb",
  "/things/a%2Fb",
  "/things/a%5cb",
  "/things/a\\b",
  "/things//",
  "/things/",
  "things/a",
];

describe("path matching shared by the path-based dialects", () => {
  it("matches no operation for a path with an empty, '.' or '..' segment or an encoded dot or slash", () => {
    const find = operationTable([entry("DELETE", "/things/{id}"), entry("DELETE", "/things")]);
    expect(find("DELETE", "/things/abc.1")?.name).toBe("DELETE /things/{id}");
    expect(find("DELETE", "/things")?.name).toBe("DELETE /things");
    for (const path of ambiguous) expect(find("DELETE", path), path).toBeNull();
  });

  it("holds for KuCoin and Kraken Futures alike", () => {
    for (const path of ["/api/v1/orders/.", "/api/v1/orders/..", "/api/v1/orders/%2e", "/api/v1/hf/orders/."])
      expect(kucoin.operation(request("DELETE", path)), path).toBeNull();
    expect(kucoin.operation(request("DELETE", "/api/v1/orders/67a1"))?.name).toBe(
      "DELETE /api/v1/orders/{orderId}",
    );
    for (const path of [
      "/derivatives/api/v3/./accounts",
      "/derivatives/api/v3/%2e/accounts",
      "/derivatives/api/v3//accounts",
    ])
      expect(krakenFutures.operation(request("GET", path)), path).toBeNull();
    expect(krakenFutures.operation(request("GET", "/derivatives/api/v3/accounts"))).not.toBeNull();
  });

  it("re-serialises a query without the gateway's own fields, which the checks still read", () => {
    const parsed = parseQuery("symbol=PF_XBTUSD&approval_id=abc&otp=123456&size=1");
    expect(parsed.params).toEqual({ symbol: "PF_XBTUSD", approval_id: "abc", otp: "123456", size: "1" });
    expect(parsed.canonical).toBe("symbol=PF_XBTUSD&size=1");
    expect(parseQuery("a=1&b=x%20y").canonical).toBe("a=1&b=x+y");
    expect(() => parseQuery("__proto__=x")).toThrow();
  });
});

describe("the upstream address", () => {
  const venue = new VenueUpstream();
  let upstream: Upstream;
  beforeAll(async () => {
    await venue.start();
    upstream = new Upstream(venue.url);
  });
  afterAll(async () => {
    await upstream.close();
    await venue.stop();
  });

  it("is exactly the path that was checked, or nothing is sent", async () => {
    const before = venue.seen.length;
    for (const path of [
      "/api/v1/orders/.",
      "/api/v1/orders/%2e",
      "/api/v1/x/../orders",
      "/a#b",
      "a/b",
      "//elsewhere/x",
    ])
      await expect(upstream.send({ method: "DELETE", path, query: "" }), path).rejects.toThrow();
    expect(venue.seen.length).toBe(before);
    await upstream.send({ method: "DELETE", path: "/api/v1/orders/67a1", query: "symbol=BTC-USDT" });
    expect(venue.seen.at(-1)).toMatchObject({
      method: "DELETE",
      path: "/api/v1/orders/67a1?symbol=BTC-USDT",
    });
  });
});
