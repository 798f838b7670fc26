import type { FastifyRequest } from "fastify";
import { Type } from "typebox";
import type { ChangeRequest } from "../../factors/factor-management.js";
import type { Services } from "../../services.js";
import { type Authenticated, caller, requestContext } from "../auth.js";
import { ActionIdHeader, Nullable, Open, Status } from "../schemas.js";
import type { App } from "../server.js";

/** A second factor added; the first one also brings the ten recovery codes, shown once. */
const FactorAdded = Type.Object({
  factorId: Type.String({ format: "uuid" }),
  recoveryCodes: Type.Optional(
    Type.Array(Type.String(), {
      description: "With the first factor only: ten single-use codes, shown once",
    }),
  ),
});

const EndOthers = Type.Optional(
  Type.Boolean({ description: "Also end every other session of this account" }),
);

/** The owner's setting-change request: who, which session, which confirmed action (X-Action-Id). */
export function changeRequest(
  request: FastifyRequest,
  services: Services,
): ChangeRequest & { auth: Authenticated } {
  const auth = caller(request);
  const header = request.headers["x-action-id"];
  return {
    auth,
    account: auth.account,
    sessionId: auth.session.id,
    actionId: typeof header === "string" ? header : undefined,
    context: requestContext(request, services.geo),
  };
}

export function registerSecurityRoutes(app: App, services: Services): void {
  const { factorManagement } = services;
  const session = { auth: "session" as const };

  app.get(
    "/v1/security/factors",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary: "The second factors enrolled on this account",
        response: {
          200: Type.Object({
            factors: Type.Array(
              Type.Object({
                id: Type.String(),
                type: Type.String({ description: "totp or webauthn" }),
                kind: Type.Union(
                  [Type.Literal("authenticator_app"), Type.Literal("security_key"), Type.Literal("passkey")],
                  {
                    description:
                      "authenticator_app; security_key (a WebAuthn authenticator that roams: USB, NFC, BLE or smart card); passkey (one that does not: kept on a device, or synced by its platform)",
                  },
                ),
                name: Type.String(),
                roaming: Type.Boolean(),
                synced: Type.Boolean({
                  description:
                    "Passkeys: backed up by their platform and usable on the owner's other devices",
                }),
                createdAt: Type.String(),
                lastUsedAt: Nullable(Type.String()),
              }),
            ),
          }),
        },
      },
    },
    async (request) => ({ factors: await factorManagement.list(caller(request).account) }),
  );

  app.post(
    "/v1/security/totp",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary: "Start adding an authenticator app (step-up required): the secret, otpauth URI and QR code",
        headers: ActionIdHeader,
        response: {
          200: Open({
            enrollmentId: Type.String({ format: "uuid" }),
            secret: Type.String({ description: "Base32, for typing into the app" }),
            otpauthUri: Type.String(),
            qrSvg: Type.String({ description: "The otpauth URI as a QR code (SVG markup)" }),
          }),
        },
      },
    },
    async (request) => factorManagement.startTotp(changeRequest(request, services)),
  );

  app.post(
    "/v1/security/totp/:enrollmentId/confirm",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary: "Finish adding an authenticator app with its first code",
        params: Type.Object({ enrollmentId: Type.String({ format: "uuid" }) }),
        body: Type.Object({
          code: Type.String({ minLength: 1, maxLength: 16 }),
          name: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
          endOtherSessions: EndOthers,
        }),
        response: { 200: FactorAdded },
      },
    },
    async (request) => {
      const { code, name, endOtherSessions = false } = request.body;
      return factorManagement.confirmTotp(
        changeRequest(request, services),
        request.params.enrollmentId,
        code,
        name,
        endOtherSessions,
      );
    },
  );

  app.post(
    "/v1/security/webauthn/options",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary: "Start adding a security key or passkey (step-up required): registration options",
        description:
          "?kind=passkey asks for a discoverable passkey on this device (platform authenticator, residentKey required) and is refused with 409 roaming_factor_required unless the account has an authenticator app or a security key; ?kind=security_key asks for a roaming key (not discoverable); without it the browser offers both. User verification is required.",
        headers: ActionIdHeader,
        querystring: Type.Object({
          kind: Type.Optional(Type.Union([Type.Literal("security_key"), Type.Literal("passkey")])),
        }),
        response: {
          200: Open(
            { challenge: Type.String() },
            "WebAuthn PublicKeyCredentialCreationOptionsJSON, for navigator.credentials.create()",
          ),
        },
      },
    },
    async (request) => factorManagement.webauthnOptions(changeRequest(request, services), request.query.kind),
  );

  app.post(
    "/v1/security/webauthn",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary: "Finish adding a security key or passkey with its registration response",
        body: Type.Object({
          response: Type.Object({}, { additionalProperties: true }),
          name: Type.String({ minLength: 1, maxLength: 64 }),
          endOtherSessions: EndOthers,
        }),
        response: { 200: FactorAdded },
      },
    },
    async (request) => {
      const { response, name, endOtherSessions = false } = request.body;
      return factorManagement.registerWebauthn(
        changeRequest(request, services),
        response as never,
        name,
        endOtherSessions,
      );
    },
  );

  app.delete(
    "/v1/security/factors/:factorId",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary: "Remove a second factor (step-up required)",
        params: Type.Object({ factorId: Type.String({ format: "uuid" }) }),
        querystring: Type.Object({ endOtherSessions: EndOthers }),
        headers: ActionIdHeader,
        response: { 200: Status("removed") },
      },
    },
    async (request) => {
      await factorManagement.remove(
        changeRequest(request, services),
        request.params.factorId,
        request.query.endOtherSessions ?? false,
      );
      return { status: "removed" as const };
    },
  );

  app.post(
    "/v1/security/recovery-codes",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary: "Create ten new recovery codes, replacing the old ones (step-up required); shown once",
        headers: ActionIdHeader,
        response: { 200: Type.Object({ codes: Type.Array(Type.String()) }) },
      },
    },
    async (request) => ({
      codes: await factorManagement.regenerateRecoveryCodes(changeRequest(request, services)),
    }),
  );
}
