import { Type } from "typebox";
import type { Services } from "../../services.js";
import { notFound } from "../../support/problem.js";
import { caller, requestContext } from "../auth.js";
import { ActionIdHeader, ConfirmBody } from "../schemas.js";
import type { App } from "../server.js";
import { identityHeaders } from "./gateway.js";
import { changeRequest } from "./security.js";

const Time = Type.Union([Type.String({ format: "date-time" }), Type.Null()]);

/** A key's fields, all optional: POST requires name and permissions, PATCH changes what it names. */
const KeyFields = {
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  permissions: Type.Array(Type.String({ maxLength: 32 }), { maxItems: 16 }),
  ipAllowlist: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 64 })),
  validUntil: Type.Optional(Time),
  queryFrom: Type.Optional(Time),
  queryTo: Type.Optional(Time),
  nonceWindow: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000_000 })),
  otp: Type.Optional(
    Type.Union([
      Type.Object({ type: Type.Literal("static"), password: Type.String({ minLength: 1, maxLength: 256 }) }),
      Type.Object({ type: Type.Literal("totp") }),
      Type.Null(),
    ]),
  ),
  approvalThreshold: Type.Optional(
    Type.Union([
      Type.Record(
        Type.String({ minLength: 1, maxLength: 12 }),
        Type.String({ minLength: 1, maxLength: 40 }),
        {
          maxProperties: 32,
        },
      ),
      Type.Null(),
    ]),
  ),
};
const KeyParams = Type.Object({ id: Type.String({ format: "uuid" }) });

export function registerApiKeyRoutes(app: App, services: Services): void {
  const { apiKeys, signedRequests, webSocketTokens, geo } = services;
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
          ...KeyFields,
          name: Type.String({ minLength: 1, maxLength: 64 }),
          permissions: KeyFields.permissions,
        }),
      },
    },
    async (request, reply) => {
      const change = changeRequest(request, services);
      const created = await apiKeys.create(change, change.auth.session.client, request.body);
      return reply.status(201).send(created);
    },
  );

  app.patch(
    "/v1/api-keys/:id",
    {
      config: session,
      schema: {
        tags: ["api-keys"],
        summary:
          "Change a key's name, permissions or restrictions (step-up, and the trading passcode when set)",
        headers: ActionIdHeader,
        params: KeyParams,
        body: Type.Object(
          { ...KeyFields, permissions: Type.Optional(KeyFields.permissions) },
          { minProperties: 1 },
        ),
      },
    },
    async (request) => {
      const change = changeRequest(request, services);
      return apiKeys.update(change, request.params.id, request.body);
    },
  );

  app.get(
    "/v1/approvals",
    {
      config: session,
      schema: {
        tags: ["api-keys"],
        summary: "Signed requests held above a key's approval threshold, waiting for the owner",
      },
    },
    async (request) => ({ approvals: await services.approvals.pending(caller(request).account) }),
  );

  app.post(
    "/v1/approvals/:id/confirm",
    {
      config: session,
      schema: {
        tags: ["api-keys"],
        summary: "Approve a held request with a second factor; the bot then resubmits it with approval_id",
        params: KeyParams,
        body: ConfirmBody,
      },
    },
    async (request) => {
      const auth = caller(request);
      const { action } = await services.approvals.confirm(
        auth.account,
        auth.session,
        request.params.id,
        { ...request.body, webauthn: request.body.webauthn as never },
        requestContext(request, geo),
      );
      return { state: action.state, approval: action };
    },
  );

  app.delete(
    "/v1/api-keys/:id",
    {
      config: session,
      schema: {
        tags: ["api-keys"],
        summary: "Delete an API key at once",
        params: KeyParams,
      },
    },
    async (request) => {
      await apiKeys.revoke(changeRequest(request, services), request.params.id);
      return { status: "deleted" };
    },
  );

  app.delete(
    "/v1/api-keys",
    {
      config: session,
      schema: { tags: ["api-keys"], summary: "Delete every API key of this account at once" },
    },
    async (request) => ({
      status: "deleted",
      deleted: await apiKeys.revokeAll(changeRequest(request, services)),
    }),
  );

  app.post(
    "/v1/api-keys/disable",
    {
      schema: {
        tags: ["api-keys"],
        summary: "Disable every API key of the account with the single-use link from a security email",
        body: Type.Object({ token: Type.String({ minLength: 1, maxLength: 256 }) }),
      },
    },
    async (request) => ({
      status: "disabled",
      ...(await apiKeys.disableByLink(request.body.token, requestContext(request, geo))),
    }),
  );

  app.post(
    "/v1/gateway/check",
    {
      config: { auth: "admin" },
      schema: {
        tags: ["gateway"],
        summary: "Verify a Kraken-signed request for a venue that runs its own proxy (ext_authz style)",
        body: Type.Object({
          method: Type.Optional(Type.Literal("POST")),
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
        contentType: headers["content-type"],
        apiKey: headers["api-key"],
        apiSign: headers["api-sign"],
        body: request.body.body,
        ip: request.body.ip,
        userAgent: null,
      });
      // An allowed request names the body the venue must act on: the canonical form of exactly the
      // parameters that were checked, with its Content-Type (never the bytes as the client sent them).
      return verdict.allow
        ? {
            allow: true,
            accountId: verdict.accountId,
            keyId: verdict.keyId,
            permissions: verdict.permissions,
            headers: identityHeaders(verdict),
            forward: { contentType: verdict.body.contentType, body: verdict.body.canonical },
          }
        : { allow: false, error: verdict.error, ...(verdict.approval ? { approval: verdict.approval } : {}) };
    },
  );

  app.post(
    "/v1/gateway/ws-token",
    {
      config: { auth: "admin" },
      schema: {
        tags: ["gateway"],
        summary: "Whose WebSocket token this is (the venue's WebSocket server asks once per token)",
        body: Type.Object({ token: Type.String({ minLength: 1, maxLength: 128 }) }),
      },
    },
    async (request) => {
      const owner = await webSocketTokens.redeem(request.body.token);
      if (!owner) throw notFound("That token");
      return owner;
    },
  );
}
