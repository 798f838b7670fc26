import type { FastifyReply, FastifyRequest } from "fastify";
import { BodyError, parseBody } from "../../api-keys/request-body.js";
import type { Allowed, KrakenError } from "../../api-keys/signed-requests.js";
import { counterPair } from "../../api-keys/trading-limiter.js";
import type { Services } from "../../services.js";
import type { App } from "../server.js";

/** HTTP statuses for Kraken's error strings: the body keeps Kraken's shape, the status says 4xx/5xx. */
export const krakenStatus: Record<KrakenError, number> = {
  "EAPI:Invalid key": 401,
  "EAPI:Invalid signature": 401,
  "EAPI:Invalid nonce": 401,
  "EAPI:Rate limit exceeded": 429,
  "EOrder:Rate limit exceeded": 429,
  "EGeneral:Permission denied": 403,
  "EGeneral:Unknown method": 404,
  "EGeneral:Invalid arguments": 400,
  "EGeneral:Temporary lockout": 429,
  "EGeneral:Approval required": 403,
  "EAuth:Account temporary disabled": 403,
  "EService:Market in cancel_only mode": 403,
  "EService:Market in post_only mode": 403,
  "EService:Unavailable": 503,
};

function krakenError(reply: FastifyReply, error: KrakenError, result: Record<string, unknown> = {}) {
  return reply.status(krakenStatus[error]).send({ error: [error], result });
}

/**
 * Kraken's public market-data methods the venue answers (Time and SystemStatus are answered here). The
 * upstream address is built from this name, never from the request's URL, so no path the client writes
 * can reach anything else on the venue's server.
 */
export const krakenPublicMethods = ["Assets", "AssetPairs", "Ticker", "OHLC", "Depth", "Trades", "Spread"];

/** What the venue's upstream learns about the caller: who, with which key, allowed what. */
export function identityHeaders(verdict: Allowed): Record<string, string> {
  const headers: Record<string, string> = {
    "x-portcullis-account": verdict.accountId,
    "x-portcullis-key": verdict.keyId,
    "x-portcullis-permissions": verdict.permissions.join(","),
  };
  // The key's history window in Kraken's unix seconds: the venue must bound what it returns by it, which
  // matters for the Query* methods that name records by id.
  if (verdict.queryFrom !== null)
    headers["x-portcullis-query-from"] = String(Math.floor(verdict.queryFrom / 1000));
  if (verdict.queryTo !== null) headers["x-portcullis-query-to"] = String(Math.floor(verdict.queryTo / 1000));
  return headers;
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

/**
 * The authenticating gateway: Kraken-signed private requests are verified and passed to the venue's
 * upstream with the caller's identity; GetApiKeyInfo and GetWebSocketsToken are answered here. The body
 * is read raw (the signature covers its bytes), parsed once by the verifier, and the venue receives the
 * canonical serialisation of exactly the parameters that were checked.
 */
export function registerGatewayRoutes(app: App, services: Services): void {
  const upstream = services.config.upstreamUrl;
  const { metrics } = services;
  app.register(async (gateway) => {
    gateway.removeAllContentTypeParsers();
    gateway.addContentTypeParser("*", { parseAs: "string", bodyLimit: 64 * 1024 }, (_request, body, done) =>
      done(null, body),
    );

    const passPublic = async (request: FastifyRequest<{ Params: { "*": string } }>, reply: FastifyReply) => {
      const method = request.params["*"];
      if (!krakenPublicMethods.includes(method) || request.url.split("?")[0] !== `/0/public/${method}`) {
        metrics.gatewayPassThrough.inc({ dialect: "kraken", method: "unknown", outcome: "refused" });
        return krakenError(reply, "EGeneral:Unknown method");
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
        return krakenError(reply, "EGeneral:Invalid arguments");
      }
      if (!upstream) return krakenError(reply, "EService:Unavailable");
      const target = new URL(`/0/public/${method}`, upstream);
      target.search = query.toString();
      try {
        const answer = await fetch(target, {
          method: body ? "POST" : "GET",
          ...(body ? { headers: { "content-type": body.contentType }, body: body.canonical } : {}),
          signal: AbortSignal.timeout(10_000),
        });
        metrics.gatewayPassThrough.inc({ dialect: "kraken", method, outcome: String(answer.status) });
        reply.status(answer.status).type(answer.headers.get("content-type") ?? "application/json");
        return reply.send(await answer.text());
      } catch {
        metrics.gatewayPassThrough.inc({ dialect: "kraken", method, outcome: "unavailable" });
        return krakenError(reply, "EService:Unavailable");
      }
    };
    const publicSchema = {
      schema: { tags: ["gateway"], summary: "Kraken public market data, from the venue" },
    };
    gateway.get("/0/public/*", publicSchema, passPublic);
    gateway.post("/0/public/*", publicSchema, passPublic);

    gateway.post(
      "/0/private/*",
      {
        schema: {
          tags: ["gateway"],
          summary: "Kraken-compatible private API, verified and proxied to the venue",
        },
      },
      async (request, reply) => {
        const verdict = await services.signedRequests.verify({
          path: request.url.split("?")[0]!,
          contentType: header(request, "content-type"),
          apiKey: header(request, "api-key"),
          apiSign: header(request, "api-sign"),
          body: typeof request.body === "string" ? request.body : "",
          ip: request.ip,
          userAgent: header(request, "user-agent") ?? null,
        });
        if (!verdict.allow) {
          // A request over the key's approval threshold names what the owner approves in the portal.
          const held = verdict.approval
            ? { approval_id: verdict.approval.id, expires_at: verdict.approval.expiresAt }
            : {};
          return krakenError(reply, verdict.error, held);
        }

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
        if (!upstream) return krakenError(reply, "EService:Unavailable");
        let answer: Response;
        try {
          answer = await fetch(new URL(`/0/private/${verdict.method}`, upstream), {
            method: "POST",
            headers: { "content-type": verdict.body.contentType, ...identityHeaders(verdict) },
            body: verdict.body.canonical,
            signal: AbortSignal.timeout(10_000),
          });
        } catch {
          return krakenError(reply, "EService:Unavailable");
        }
        const text = await answer.text();
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
        reply.status(answer.status).type(answer.headers.get("content-type") ?? "application/json");
        return reply.send(text);
      },
    );
  });
}
