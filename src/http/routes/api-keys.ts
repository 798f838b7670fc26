import { Type } from "typebox";
import type { Services } from "../../services.js";
import { caller, requestContext } from "../auth.js";
import { ActionIdHeader } from "../schemas.js";
import type { App } from "../server.js";
import { changeRequest } from "./security.js";

export function registerApiKeyRoutes(app: App, services: Services): void {
  const { apiKeys, signedRequests, geo } = services;
  const session = { auth: "session" as const };

  app.get(
    "/v1/api-keys",
    {
      config: session,
      schema: { tags: ["api-keys"], summary: "This account's API keys (never their secrets)" },
    },
    async (request) => ({ apiKeys: await apiKeys.list(caller(request).account.id) }),
  );

  app.post(
    "/v1/api-keys",
    {
      config: session,
      schema: {
        tags: ["api-keys"],
        summary: "Create an API key (step-up, and the trading passcode when set); the secret is shown once",
        headers: ActionIdHeader,
        body: Type.Object({
          name: Type.String({ minLength: 1, maxLength: 64 }),
          permissions: Type.Array(Type.String({ maxLength: 32 }), { maxItems: 16 }),
          ipAllowlist: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 64 })),
          validUntil: Type.Optional(Type.String({ format: "date-time" })),
          queryFrom: Type.Optional(Type.String({ format: "date-time" })),
          queryTo: Type.Optional(Type.String({ format: "date-time" })),
          nonceWindow: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000_000 })),
        }),
      },
    },
    async (request, reply) => {
      const change = changeRequest(request, services);
      const created = await apiKeys.create(
        change.account,
        change.auth.session.client,
        change.actionId,
        request.body,
        change.context,
      );
      return reply.status(201).send(created);
    },
  );

  app.delete(
    "/v1/api-keys/:id",
    {
      config: session,
      schema: {
        tags: ["api-keys"],
        summary: "Delete an API key at once",
        params: Type.Object({ id: Type.String({ format: "uuid" }) }),
      },
    },
    async (request) => {
      await apiKeys.revoke(caller(request).account, request.params.id, requestContext(request, geo));
      return { status: "deleted" };
    },
  );

  app.post(
    "/v1/gateway/check",
    {
      config: { auth: "admin" },
      schema: {
        tags: ["gateway"],
        summary: "Verify a Kraken-signed request for a venue that runs its own proxy (ext_authz style)",
        body: Type.Object({
          path: Type.String({ minLength: 1, maxLength: 200, pattern: "^/0/private/[A-Za-z/]+$" }),
          headers: Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 1024 }), {
            maxProperties: 64,
          }),
          body: Type.String({ maxLength: 65536 }),
          ip: Type.String({ minLength: 2, maxLength: 64 }),
        }),
      },
    },
    async (request) => {
      const headers = Object.fromEntries(
        Object.entries(request.body.headers).map(([k, v]) => [k.toLowerCase(), v]),
      );
      const verdict = await signedRequests.verify({
        path: request.body.path,
        apiKey: headers["api-key"],
        apiSign: headers["api-sign"],
        body: request.body.body,
        ip: request.body.ip,
        userAgent: null,
      });
      return verdict.allow
        ? {
            allow: true,
            accountId: verdict.accountId,
            keyId: verdict.keyId,
            permissions: verdict.permissions,
          }
        : { allow: false, error: verdict.error };
    },
  );
}
