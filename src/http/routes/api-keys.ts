import { Type } from "typebox";
import type { Services } from "../../services.js";
import { caller, requestContext } from "../auth.js";
import { ActionIdHeader, ActionView, ApiKeyView, ConfirmBody, Open, Status } from "../schemas.js";
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
  approvalThreshold: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 40 }), Type.Null()])),
};
const KeyParams = Type.Object({ id: Type.String({ format: "uuid" }) });

export function registerApiKeyRoutes(app: App, services: Services): void {
  const { apiKeys, signedRequests, geo } = services;
  const session = { auth: "session" as const };

  app.get(
    "/v1/api-keys",
    {
      config: session,
      schema: {
        tags: ["api-keys"],
        summary: "This account's API keys (never their secrets)",
        response: { 200: Type.Object({ apiKeys: Type.Array(ApiKeyView) }) },
      },
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
        response: {
          201: Open({
            ...ApiKeyView.properties,
            secret: Type.String({ description: "Base64; shown this once, never again" }),
          }),
        },
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
        response: { 200: ApiKeyView },
      },
    },
    async (request) => {
      const change = changeRequest(request, services);
      return apiKeys.update(change.account, request.params.id, change.actionId, request.body, change.context);
    },
  );

  app.get(
    "/v1/approvals",
    {
      config: session,
      schema: {
        tags: ["api-keys"],
        summary: "Signed requests held above a key's approval threshold, waiting for the owner",
        response: { 200: Type.Object({ approvals: Type.Array(ActionView) }) },
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
        response: { 200: Type.Object({ state: Type.String(), approval: ActionView }) },
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
        response: { 200: Status("deleted") },
      },
    },
    async (request) => {
      await apiKeys.revoke(caller(request).account, request.params.id, requestContext(request, geo));
      return { status: "deleted" as const };
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
          method: Type.Optional(Type.Literal("POST")),
          path: Type.String({ minLength: 1, maxLength: 200, pattern: "^/0/private/[A-Za-z/]+$" }),
          headers: Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 1024 }), {
            maxProperties: 64,
          }),
          body: Type.String({ maxLength: 65536 }),
          ip: Type.String({ minLength: 2, maxLength: 64 }),
        }),
        response: {
          200: Open({
            allow: Type.Boolean(),
            accountId: Type.Optional(Type.String()),
            keyId: Type.Optional(Type.String()),
            permissions: Type.Optional(Type.Array(Type.String())),
            headers: Type.Optional(
              Type.Record(Type.String(), Type.String(), {
                description: "The identity headers to forward to the venue (X-Portcullis-Account, …)",
              }),
            ),
            error: Type.Optional(Type.String({ description: "Kraken's error string when refused" })),
            approval: Type.Optional(Open({ id: Type.String(), expiresAt: Type.String() })),
          }),
        },
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
            headers: identityHeaders(verdict),
          }
        : { allow: false, error: verdict.error, ...(verdict.approval ? { approval: verdict.approval } : {}) };
    },
  );
}
