import type { FastifyReply, FastifyRequest } from "fastify";
import { Type } from "typebox";
import type { Allowed, KrakenError } from "../../api-keys/signed-requests.js";
import type { Services } from "../../services.js";
import { Open } from "../schemas.js";
import type { App } from "../server.js";

/** HTTP statuses for Kraken's error strings: the body keeps Kraken's shape, the status says 4xx/5xx. */
const statusOf: Record<KrakenError, number> = {
  "EAPI:Invalid key": 401,
  "EAPI:Invalid signature": 401,
  "EAPI:Invalid nonce": 401,
  "EAPI:Rate limit exceeded": 429,
  "EGeneral:Permission denied": 403,
  "EGeneral:Unknown method": 404,
  "EGeneral:Invalid arguments": 400,
  "EGeneral:Temporary lockout": 429,
  "EGeneral:Approval required": 403,
  "EAuth:Account temporary disabled": 403,
  "EService:Unavailable": 503,
};

/** Kraken's envelope, for answers and errors alike; a proxied answer is the venue's own. */
const KrakenEnvelope = Open({
  error: Type.Array(Type.String(), { description: 'Kraken error strings, e.g. "EAPI:Invalid nonce"' }),
  result: Type.Optional(Type.Unknown()),
});
// Refusals are documented, not shaped by a schema: one refused before the handler (a malformed URL)
// answers in the API's own error shape, and a proxied answer is the venue's.
const KrakenRefusal = Type.Unknown({
  description:
    'Kraken\'s envelope, e.g. { "error": ["EAPI:Invalid nonce"], "result": {} }, 429 for the call counter and the lockout',
});
const krakenResponses = { 200: KrakenEnvelope, "4xx": KrakenRefusal, "5xx": KrakenRefusal };

function krakenError(reply: FastifyReply, error: KrakenError, result: Record<string, unknown> = {}) {
  return reply.status(statusOf[error]).send({ error: [error], result });
}

/** What the venue's upstream learns about the caller: who, with which key, allowed what. */
export function identityHeaders(verdict: Allowed): Record<string, string> {
  const headers: Record<string, string> = {
    "x-portcullis-account": verdict.accountId,
    "x-portcullis-key": verdict.keyId,
    "x-portcullis-permissions": verdict.permissions.join(","),
  };
  // The key's history window (SPEC §11 query_from/query_to), in Kraken's unix seconds, for the venue to
  // bound what it returns.
  if (verdict.queryFrom !== null)
    headers["x-portcullis-query-from"] = String(Math.floor(verdict.queryFrom / 1000));
  if (verdict.queryTo !== null) headers["x-portcullis-query-to"] = String(Math.floor(verdict.queryTo / 1000));
  return headers;
}

/**
 * The authenticating gateway (SPEC §11): Kraken-signed private requests are verified and passed to the
 * venue's upstream with the caller's identity; GetApiKeyInfo is answered here. The body is kept exactly
 * as sent (form-encoded or JSON), because the signature covers it byte for byte.
 */
export function registerGatewayRoutes(app: App, services: Services): void {
  const upstream = services.config.upstreamUrl;
  app.register(async (gateway) => {
    gateway.removeAllContentTypeParsers();
    gateway.addContentTypeParser("*", { parseAs: "string", bodyLimit: 64 * 1024 }, (_request, body, done) =>
      done(null, body),
    );

    // SPEC §11: public market data other than Time and SystemStatus (answered here) is the venue's.
    const passPublic = async (request: FastifyRequest, reply: FastifyReply) => {
      if (!upstream) return krakenError(reply, "EService:Unavailable");
      try {
        const answer = await fetch(new URL(request.url, upstream), {
          method: request.method,
          headers: { "content-type": request.headers["content-type"] ?? "application/x-www-form-urlencoded" },
          ...(request.method === "POST"
            ? { body: typeof request.body === "string" ? request.body : "" }
            : {}),
          signal: AbortSignal.timeout(10_000),
        });
        reply.status(answer.status).type(answer.headers.get("content-type") ?? "application/json");
        return reply.send(await answer.text());
      } catch {
        return krakenError(reply, "EService:Unavailable");
      }
    };
    gateway.get(
      "/0/public/*",
      {
        schema: {
          tags: ["gateway"],
          summary: "Public market data, from the venue",
          response: krakenResponses,
        },
      },
      passPublic,
    );
    gateway.post(
      "/0/public/*",
      {
        schema: {
          tags: ["gateway"],
          summary: "Public market data, from the venue",
          response: krakenResponses,
        },
      },
      passPublic,
    );

    gateway.post(
      "/0/private/*",
      {
        schema: {
          tags: ["gateway"],
          summary: "Kraken-compatible private API, verified and proxied to the venue",
          description:
            "Sign as Kraken does: API-Key, and API-Sign = base64(HMAC-SHA512(base64-decoded secret, path + SHA-256(nonce + body))). A request held above the key's approval threshold answers EGeneral:Approval required with result.approval_id; once the owner approves it, send it again with a new nonce and approval_id.",
          response: krakenResponses,
        },
      },
      async (request, reply) => {
        const path = request.url.split("?")[0]!;
        const body = typeof request.body === "string" ? request.body : "";
        const header = (name: string) => {
          const value = request.headers[name];
          return typeof value === "string" ? value : undefined;
        };
        const verdict = await services.signedRequests.verify({
          path,
          apiKey: header("api-key"),
          apiSign: header("api-sign"),
          body,
          ip: request.ip,
          userAgent: header("user-agent") ?? null,
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
        if (!upstream) return krakenError(reply, "EService:Unavailable");
        let answer: Response;
        try {
          answer = await fetch(new URL(path, upstream), {
            method: "POST",
            headers: {
              "content-type": header("content-type") ?? "application/x-www-form-urlencoded",
              ...identityHeaders(verdict),
            },
            body,
            signal: AbortSignal.timeout(10_000),
          });
        } catch {
          return krakenError(reply, "EService:Unavailable");
        }
        reply.status(answer.status).type(answer.headers.get("content-type") ?? "application/json");
        return reply.send(await answer.text());
      },
    );
  });
}
