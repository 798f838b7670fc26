import type { FastifyReply, FastifyRequest } from "fastify";
import type { KrakenError } from "../../api-keys/signed-requests.js";
import type { Services } from "../../services.js";
import type { App } from "../server.js";

/** HTTP statuses for Kraken's error strings: the body keeps Kraken's shape, the status says 4xx/5xx. */
const statusOf: Record<KrakenError | "EService:Unavailable", number> = {
  "EAPI:Invalid key": 401,
  "EAPI:Invalid signature": 401,
  "EAPI:Invalid nonce": 401,
  "EGeneral:Permission denied": 403,
  "EGeneral:Unknown method": 404,
  "EGeneral:Invalid arguments": 400,
  "EService:Unavailable": 503,
};

function krakenError(reply: FastifyReply, error: keyof typeof statusOf) {
  return reply.status(statusOf[error]).send({ error: [error], result: {} });
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
      { schema: { tags: ["gateway"], summary: "Public market data, from the venue" } },
      passPublic,
    );
    gateway.post(
      "/0/public/*",
      { schema: { tags: ["gateway"], summary: "Public market data, from the venue" } },
      passPublic,
    );

    gateway.post(
      "/0/private/*",
      {
        schema: {
          tags: ["gateway"],
          summary: "Kraken-compatible private API, verified and proxied to the venue",
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
        if (!verdict.allow) return krakenError(reply, verdict.error);

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
              "x-portcullis-account": verdict.accountId,
              "x-portcullis-key": verdict.keyId,
              "x-portcullis-permissions": verdict.permissions.join(","),
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
