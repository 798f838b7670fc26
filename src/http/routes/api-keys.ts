import { Type } from "typebox";
import type { Services } from "../../services.js";
import { canonicalAddress } from "../../support/network.js";
import { invalidRequest, notFound } from "../../support/problem.js";
import { caller, requestContext } from "../auth.js";
import { ActionIdHeader, ActionView, ApiKeyView, ConfirmBody, Open, Status } from "../schemas.js";
import type { App } from "../server.js";
import { dialectOfPath, forwardOf, identityHeaders } from "./gateway.js";
import { changeRequest } from "./security.js";

const Time = Type.Union([Type.String({ format: "date-time" }), Type.Null()]);

/** A key's fields, all optional: POST requires name and permissions, PATCH changes what it names. */
const KeyFields = {
  dialect: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
  passphrase: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
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
        response: { 200: ApiKeyView },
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
      await apiKeys.revoke(changeRequest(request, services), request.params.id);
      return { status: "deleted" as const };
    },
  );

  app.delete(
    "/v1/api-keys",
    {
      config: session,
      schema: {
        tags: ["api-keys"],
        summary: "Delete every API key of this account at once",
        response: {
          200: Type.Object({
            status: Type.Literal("deleted"),
            deleted: Type.Integer({ description: "How many keys" }),
          }),
        },
      },
    },
    async (request) => ({
      status: "deleted" as const,
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
        response: { 200: Type.Object({ status: Type.Literal("disabled"), disabled: Type.Integer() }) },
      },
    },
    async (request) => ({
      status: "disabled" as const,
      ...(await apiKeys.disableByLink(request.body.token, requestContext(request, geo))),
    }),
  );

  app.post(
    "/v1/gateway/check",
    {
      config: { auth: "service" },
      schema: {
        tags: ["gateway"],
        summary:
          "Verify a signed request of any dialect (Kraken, KuCoin, Kraken Futures) for a venue that runs its own proxy (ext_authz style)",
        body: Type.Object({
          method: Type.Optional(Type.Union(["GET", "POST", "PUT", "DELETE"].map((m) => Type.Literal(m)))),
          // The path as sent, with its query string when it has one (KuCoin and Kraken Futures sign it).
          path: Type.String({
            minLength: 1,
            maxLength: 2048,
            pattern: "^(/0/private/[A-Za-z/]+|/api/(v[123]|ua/v1)/[^\\s#]+|/derivatives/api/v3/[^\\s#]+)$",
          }),
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
      // The address every per-source rule counts and every audit entry records: an IP address in its one
      // spelling (::FFFF:192.0.2.1 is 192.0.2.1), or nothing. A zone id (%eth0) names the proxy's own
      // interface, not the client: refused rather than guessed at.
      const ip = canonicalAddress(request.body.ip);
      if (ip === null) {
        throw invalidRequest("The client's address is not an IP address.", [
          {
            field: "ip",
            message: request.body.ip.includes("%")
              ? "Give the address the request came from without a zone id (%…)."
              : "Give the address the request came from, IPv4 or IPv6.",
          },
        ]);
      }
      const headers = lowerCaseHeaders(request.body.headers);
      const at = request.body.path.indexOf("?");
      const path = at === -1 ? request.body.path : request.body.path.slice(0, at);
      const dialect = dialectOfPath(path);
      if (!dialect) throw invalidRequest("The path is not a signed request of any dialect.", []);
      const incoming = {
        method: request.body.method ?? "POST",
        path,
        query: at === -1 ? "" : request.body.path.slice(at + 1),
        headers,
        body: request.body.body,
        ip,
        userAgent: null,
      };
      const verdict = await signedRequests.verify(dialect, incoming);
      // An allowed request names what the venue must act on, exactly as this gateway's own proxy sends it
      // (forwardOf): the method and path, and the canonical form of exactly the query and body that were
      // checked — never the bytes as the client sent them; an empty query means "send none".
      return verdict.allow
        ? {
            allow: true,
            dialect: verdict.dialect,
            accountId: verdict.accountId,
            keyId: verdict.keyId,
            permissions: [...verdict.permissions],
            headers: identityHeaders(verdict),
            forward: forwardOf(incoming, verdict),
          }
        : { allow: false, error: verdict.error, ...(verdict.approval ? { approval: verdict.approval } : {}) };
    },
  );

  app.post(
    "/v1/gateway/ws-token",
    {
      config: { auth: "service" },
      schema: {
        tags: ["gateway"],
        summary: "Whose WebSocket token this is (the venue's WebSocket server asks once per token)",
        body: Type.Object({ token: Type.String({ minLength: 1, maxLength: 128 }) }),
        response: {
          200: Type.Object({
            accountId: Type.String(),
            keyId: Type.String(),
            permissions: Type.Array(Type.String(), { description: "In the key's dialect's names" }),
          }),
        },
      },
    },
    async (request) => {
      const owner = await webSocketTokens.redeem(request.body.token);
      if (!owner) throw notFound("That token");
      return owner;
    },
  );
}

/**
 * The forwarded headers by lower-case name, as HTTP compares them. Two that differ only in case would
 * leave the signature checked against one and the request acted on with the other: refused.
 */
function lowerCaseHeaders(forwarded: Record<string, string>): Record<string, string> {
  const headers: Record<string, string> = Object.create(null);
  for (const name in forwarded) {
    const lower = name.toLowerCase();
    if (Object.hasOwn(headers, lower)) {
      throw invalidRequest(`The header ${lower} is given more than once.`, [
        { field: `headers.${lower}`, message: "This header is given more than once." },
      ]);
    }
    headers[lower] = forwarded[name]!;
  }
  return headers;
}
