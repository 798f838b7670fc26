import type { FastifyReply, FastifyRequest } from "fastify";
import { Type } from "typebox";
import type { Answer, Dialect, GatewayRequest } from "../../api-keys/dialects/dialect.js";
import { kraken, krakenAnswer } from "../../api-keys/dialects/kraken.js";
import { krakenFutures, krakenFuturesPublic } from "../../api-keys/dialects/kraken-futures.js";
import { kucoin, kucoinPublic } from "../../api-keys/dialects/kucoin.js";
import { BodyError, parseBody } from "../../api-keys/request-body.js";
import type { Allowed, Refused } from "../../api-keys/signed-requests.js";
import { counterPair } from "../../api-keys/trading-limiter.js";
import type { Services } from "../../services.js";
import type { Clock } from "../../support/clock.js";
import { plainAddress } from "../../support/network.js";
import type { ExchangeRefusal } from "../errors.js";
import { Open } from "../schemas.js";
import type { App } from "../server.js";
import { Upstream, type UpstreamAnswer } from "../upstream.js";

/** Kraken's envelope, for answers and errors alike; a proxied answer is the venue's own. */
const KrakenEnvelope = Open({
  error: Type.Array(Type.String(), { description: 'Kraken error strings, e.g. "EAPI:Invalid nonce"' }),
  result: Type.Optional(Type.Unknown()),
});
// Refusals are documented, not shaped by a schema: a proxied answer is the venue's, and one refused
// before the handler (a malformed URL, a body too large) is the exchange's (`exchangeRefusals`).
const KrakenRefusal = Type.Unknown({
  description:
    'Kraken\'s envelope, e.g. { "error": ["EAPI:Invalid nonce"], "result": {} }, 429 for the call counter and the lockout',
});
const krakenResponses = { 200: KrakenEnvelope, "4xx": KrakenRefusal, "5xx": KrakenRefusal };
/** KuCoin's and Kraken Futures' answers are the venue's, or the exchange's own error shape. */
const exchangeAnswer = Type.Unknown({
  description: "The venue's answer, or a refusal in the exchange's own shape",
});
const exchangeResponses = { 200: exchangeAnswer, "4xx": exchangeAnswer, "5xx": exchangeAnswer };

export { krakenStatus } from "../../api-keys/dialects/kraken.js";

/**
 * Kraken's public market-data methods the venue answers (Time and SystemStatus are answered here). The
 * upstream address is built from this name, never from the request's URL, so no path the client writes
 * can reach anything else on the venue's server.
 */
export const krakenPublicMethods = ["Assets", "AssetPairs", "Ticker", "OHLC", "Depth", "Trades", "Spread"];

/** The dialect a signed request's path belongs to (the check endpoint takes any dialect's request). */
export function dialectOfPath(path: string): Dialect | null {
  if (path.startsWith("/0/private/")) return kraken;
  if (/^\/api\/(v[123]|ua\/v1)\//.test(path)) return kucoin;
  if (path.startsWith("/derivatives/api/v3/")) return krakenFutures;
  return null;
}

/**
 * Errors on the gateway's paths, public ones included, answered as the exchange whose paths they are
 * answers them: a refused body, an address that does not decode, a method the route does not take, a
 * dependency down (503). Its clients parse that shape and nothing else.
 */
export function exchangeRefusals(clock: Clock): ExchangeRefusal {
  return (target, ip, reason) => {
    const path = target.split("?")[0]!;
    const dialect = path.startsWith("/0/") ? kraken : dialectOfPath(path);
    if (!dialect) return null;
    return dialect.refusal(reason, { ip: plainAddress(ip), now: clock.now() });
  };
}

/**
 * What the venue's upstream learns about the caller: who, with which key and dialect, allowed what (the
 * key's permissions in its own dialect's names).
 */
export function identityHeaders(verdict: Allowed): Record<string, string> {
  const headers: Record<string, string> = {
    "x-portcullis-account": verdict.accountId,
    "x-portcullis-key": verdict.keyId,
    "x-portcullis-dialect": verdict.dialect,
    "x-portcullis-permissions": verdict.permissions.join(","),
  };
  // The key's history window in unix seconds: the venue must bound what it returns by it, which matters
  // for the Query* methods that name records by id.
  if (verdict.queryFrom !== null)
    headers["x-portcullis-query-from"] = String(Math.floor(verdict.queryFrom / 1000));
  if (verdict.queryTo !== null) headers["x-portcullis-query-to"] = String(Math.floor(verdict.queryTo / 1000));
  return headers;
}

/** What the venue receives for an allowed request, whoever forwards it: this gateway or a venue's proxy. */
export interface Forward {
  method: string;
  path: string;
  /** The checked query, re-serialised ("" when none: the original query is never forwarded). */
  query: string;
  /** The checked body's canonical form and its type; null when none is forwarded (a GET never has one). */
  contentType: string | null;
  body: string | null;
}

/**
 * The request the venue receives for an allowed one, for the proxied path and the check endpoint's
 * answer alike: the method and path as sent, the query and body as checked, a body only when one was
 * sent and never on a GET.
 */
export function forwardOf(incoming: GatewayRequest, verdict: Allowed): Forward {
  const hasBody = incoming.body !== "" && incoming.method !== "GET";
  return {
    method: incoming.method,
    path: incoming.path,
    query: verdict.query,
    contentType: hasBody ? verdict.body.contentType : null,
    body: hasBody ? verdict.body.canonical : null,
  };
}

/** The txids of the orders the venue placed, from its AddOrder, AddOrderBatch or EditOrder answer. */
function placedTxids(method: string, answer: unknown): string[] {
  const result = (answer as { result?: Record<string, unknown> } | null)?.result;
  if (!result || typeof result !== "object") return [];
  if (method === "AddOrderBatch" && Array.isArray(result.orders)) {
    return result.orders
      .map((order: { txid?: unknown }) => order?.txid)
      .filter((t): t is string => typeof t === "string");
  }
  const txid = result.txid;
  if (typeof txid === "string") return [txid];
  return Array.isArray(txid) ? txid.filter((t): t is string => typeof t === "string") : [];
}

const header = (request: FastifyRequest, name: string) => {
  const value = request.headers[name];
  return typeof value === "string" ? value : undefined;
};

/** The request as it reached the gateway, every signed byte as sent. */
export function gatewayRequest(request: FastifyRequest): GatewayRequest {
  const at = request.url.indexOf("?");
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(request.headers))
    if (typeof value === "string") headers[name] = value;
  return {
    method: request.method.toUpperCase(),
    path: at === -1 ? request.url : request.url.slice(0, at),
    query: at === -1 ? "" : request.url.slice(at + 1),
    headers,
    body: typeof request.body === "string" ? request.body : "",
    ip: request.ip,
    userAgent: header(request, "user-agent") ?? null,
  };
}

/** Sends a refusal: a verdict's answer, or a dialect's answer written here. */
const send = (reply: FastifyReply, refused: Refused | Answer) =>
  reply.status(refused.status).send("answer" in refused ? refused.answer : refused.body);

/** Passes the venue's answer back as it came: its status, its content type, its bytes. */
const relay = (reply: FastifyReply, answer: UpstreamAnswer) =>
  reply.status(answer.status).type(answer.contentType).send(answer.text);

/**
 * The authenticating gateway: signed private requests of each dialect are verified by the one pipeline
 * and passed to the venue's upstream at the same path with the caller's identity; Kraken's
 * GetApiKeyInfo and GetWebSocketsToken are answered here. The body is read raw (signatures cover its
 * bytes), parsed once by the verifier, and the venue receives the canonical serialisation of exactly the
 * parameters that were checked, with only the identity headers the gateway writes.
 */
export function registerGatewayRoutes(app: App, services: Services): void {
  const upstream = services.config.upstreamUrl ? new Upstream(services.config.upstreamUrl) : null;
  const { metrics } = services;
  app.register(async (gateway) => {
    if (upstream) gateway.addHook("onClose", () => upstream.close());
    gateway.removeAllContentTypeParsers();
    gateway.addContentTypeParser("*", { parseAs: "string", bodyLimit: 64 * 1024 }, (_request, body, done) =>
      done(null, body),
    );

    const passPublic = async (request: FastifyRequest<{ Params: { "*": string } }>, reply: FastifyReply) => {
      const method = request.params["*"];
      if (!krakenPublicMethods.includes(method) || request.url.split("?")[0] !== `/0/public/${method}`) {
        metrics.gatewayPassThrough.inc({ dialect: "kraken", method: "unknown", outcome: "refused" });
        return send(reply, kraken.refusal("unknown_method", { ip: request.ip, now: 0 }));
      }
      // The query and a POST body are parsed once and forwarded re-serialised: a repeated field or a body
      // that is not what it declares never reaches the venue.
      const query = new URLSearchParams(request.url.split("?")[1] ?? "");
      const names = [...query.keys()];
      let body: { canonical: string; contentType: string } | null = null;
      try {
        if (new Set(names).size !== names.length || names.length > 32) throw new BodyError("query");
        if (request.method === "POST" && typeof request.body === "string" && request.body !== "")
          body = parseBody(header(request, "content-type"), request.body);
      } catch (error) {
        if (!(error instanceof BodyError)) throw error;
        metrics.gatewayPassThrough.inc({ dialect: "kraken", method, outcome: "refused" });
        return send(reply, krakenAnswer("EGeneral:Invalid arguments"));
      }
      if (!upstream) return send(reply, krakenAnswer("EService:Unavailable"));
      try {
        const answer = await upstream.send({
          method: body ? "POST" : "GET",
          path: `/0/public/${method}`,
          query: query.toString(),
          ...(body ? { headers: { "content-type": body.contentType }, body: body.canonical } : {}),
        });
        metrics.gatewayPassThrough.inc({ dialect: "kraken", method, outcome: String(answer.status) });
        return relay(reply, answer);
      } catch {
        metrics.gatewayPassThrough.inc({ dialect: "kraken", method, outcome: "unavailable" });
        return send(reply, krakenAnswer("EService:Unavailable"));
      }
    };
    const publicSchema = {
      schema: {
        tags: ["gateway"],
        summary: "Kraken public market data, from the venue",
        response: krakenResponses,
      },
    };
    gateway.get("/0/public/*", publicSchema, passPublic);
    gateway.post("/0/public/*", publicSchema, passPublic);

    /**
     * KuCoin's and Kraken Futures' public market data, by name from the dialect's allowlist: the upstream
     * address is the listed path, and the query is parsed once (a repeated name is refused) and
     * re-serialised.
     */
    const passPublicOf =
      (dialect: Dialect, listed: (path: string) => boolean) =>
      async (request: FastifyRequest, reply: FastifyReply) => {
        const incoming = gatewayRequest(request);
        if (!listed(incoming.path)) {
          metrics.gatewayPassThrough.inc({ dialect: dialect.name, method: "unknown", outcome: "refused" });
          return send(reply, dialect.refusal("unknown_method", { ip: request.ip, now: 0 }));
        }
        const query = new URLSearchParams(incoming.query);
        const names = [...query.keys()];
        if (new Set(names).size !== names.length || names.length > 32) {
          metrics.gatewayPassThrough.inc({
            dialect: dialect.name,
            method: incoming.path,
            outcome: "refused",
          });
          return send(reply, dialect.refusal("invalid_arguments", { ip: request.ip, now: 0 }));
        }
        if (!upstream) return send(reply, dialect.refusal("unavailable", { ip: request.ip, now: 0 }));
        try {
          const answer = await upstream.send({ method: "GET", path: incoming.path, query: query.toString() });
          metrics.gatewayPassThrough.inc({
            dialect: dialect.name,
            method: incoming.path,
            outcome: String(answer.status),
          });
          return relay(reply, answer);
        } catch {
          metrics.gatewayPassThrough.inc({
            dialect: dialect.name,
            method: incoming.path,
            outcome: "unavailable",
          });
          return send(reply, dialect.refusal("unavailable", { ip: request.ip, now: 0 }));
        }
      };

    /** A verified request of KuCoin or Kraken Futures, to the venue at its own path. */
    const passPrivate = (dialect: Dialect) => async (request: FastifyRequest, reply: FastifyReply) => {
      const incoming = gatewayRequest(request);
      const verdict = await services.signedRequests.verify(dialect, incoming);
      if (!verdict.allow) return send(reply, verdict);
      if (!upstream) return send(reply, dialect.refusal("unavailable", { ip: request.ip, now: 0 }));
      const forward = forwardOf(incoming, verdict);
      let answer: UpstreamAnswer;
      try {
        answer = await upstream.send({
          method: forward.method,
          path: forward.path,
          query: forward.query,
          headers: {
            ...(forward.contentType === null ? {} : { "content-type": forward.contentType }),
            ...identityHeaders(verdict),
          },
          ...(forward.body === null ? {} : { body: forward.body }),
        });
      } catch {
        return send(reply, dialect.refusal("unavailable", { ip: request.ip, now: 0 }));
      }
      return relay(reply, answer);
    };

    const kucoinPrivate = passPrivate(kucoin);
    const kucoinPublicPass = passPublicOf(kucoin, (path) => kucoinPublic(path));
    const kucoinRoute = async (request: FastifyRequest, reply: FastifyReply) =>
      request.method === "GET" && kucoinPublic(gatewayRequest(request).path)
        ? kucoinPublicPass(request, reply)
        : kucoinPrivate(request, reply);
    const futuresPrivate = passPrivate(krakenFutures);
    const futuresPublicPass = passPublicOf(krakenFutures, (path) => krakenFuturesPublic(path));
    const futuresRoute = async (request: FastifyRequest, reply: FastifyReply) =>
      request.method === "GET" && krakenFuturesPublic(gatewayRequest(request).path)
        ? futuresPublicPass(request, reply)
        : futuresPrivate(request, reply);
    for (const prefix of ["v1", "v2", "v3", "ua/v1"]) {
      gateway.route({
        method: ["GET", "POST", "DELETE", "PUT"],
        url: `/api/${prefix}/*`,
        schema: {
          tags: ["gateway"],
          summary:
            "KuCoin-compatible spot and margin API: public market data by name, private requests verified",
          response: exchangeResponses,
        },
        handler: kucoinRoute,
      });
    }
    gateway.route({
      method: ["GET", "POST", "DELETE", "PUT"],
      url: "/derivatives/api/v3/*",
      schema: {
        tags: ["gateway"],
        summary: "Kraken Futures-compatible API: public market data by name, private requests verified",
        response: exchangeResponses,
      },
      handler: futuresRoute,
    });

    gateway.post(
      "/0/private/*",
      {
        schema: {
          tags: ["gateway"],
          summary: "Kraken-compatible private API, verified and proxied to the venue",
          response: krakenResponses,
        },
      },
      async (request, reply) => {
        const verdict = await services.signedRequests.verify(kraken, gatewayRequest(request));
        if (!verdict.allow) return send(reply, verdict);

        if (verdict.method === "GetApiKeyInfo") {
          const key = (await services.apiKeys.list(verdict.accountId)).find((k) => k.id === verdict.keyId);
          return {
            error: [],
            result: {
              name: key?.name,
              permissions: verdict.permissions,
              validUntil: key?.validUntil ?? null,
            },
          };
        }
        if (verdict.method === "GetWebSocketsToken") {
          const { token, expires } = await services.webSocketTokens.issue(verdict.keyId, verdict.accountId);
          return { error: [], result: { token, expires } };
        }
        if (!upstream) return send(reply, krakenAnswer("EService:Unavailable"));
        let answer: UpstreamAnswer;
        try {
          answer = await upstream.send({
            method: "POST",
            path: `/0/private/${verdict.method}`,
            query: "",
            headers: { "content-type": verdict.body.contentType, ...identityHeaders(verdict) },
            body: verdict.body.canonical,
          });
        } catch {
          return send(reply, krakenAnswer("EService:Unavailable"));
        }
        const { text } = answer;
        if (["AddOrder", "AddOrderBatch", "EditOrder"].includes(verdict.method)) {
          // The placement time of each order, for Kraken's cancel penalty on the trading limiter.
          let parsed: unknown = null;
          try {
            parsed = JSON.parse(text);
          } catch {}
          const pair = verdict.body.params.pair;
          const txids = placedTxids(verdict.method, parsed);
          if (typeof pair === "string" && txids.length > 0)
            await services.signedRequests.recordPlacedOrders(verdict.keyId, counterPair(pair), txids);
        }
        return relay(reply, answer);
      },
    );
  });
}
