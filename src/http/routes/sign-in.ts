import type { FastifyReply } from "fastify";
import { Type } from "typebox";
import type { Proof } from "../../factors/proofs.js";
import type { FlowView, SignInResult } from "../../flows/sign-in.js";
import type { Services } from "../../services.js";
import { describeSession } from "../../sessions/sessions.js";
import { requestContext, setSessionCookie } from "../auth.js";
import { deviceKeyFor, presentedDeviceKey } from "../device-key.js";
import { Client, Notice, Open, SessionSummary, Status } from "../schemas.js";
import type { App } from "../server.js";

const SignInResponse = Type.Object({
  state: Type.String({
    description:
      "second_factor (prove one of factors), device_approval (waiting for the emailed link), device_approved (poll once more to collect the session) or authenticated",
  }),
  flowId: Type.String(),
  factors: Type.Optional(Type.Array(Type.String())),
  session: Type.Optional(SessionSummary),
  token: Type.Optional(Type.String()),
  deviceId: Type.Optional(
    Type.String({
      description:
        "Apps only, when the sign-in named no device id: keep it, send it as deviceId on every later sign-in and as X-Device-Id when polling GET /v1/sign-in/{flowId}",
    }),
  ),
  notices: Type.Optional(Type.Array(Notice)),
  expiresAt: Type.Optional(Type.String()),
});

const FlowParams = Type.Object({ flowId: Type.String({ format: "uuid" }) });
const Code = Type.Object({ code: Type.String({ minLength: 1, maxLength: 64 }) });
const WebAuthnResponse = Type.Object({ response: Type.Object({}, { additionalProperties: true }) });

/** Browsers get the session as a cookie; apps (client app/pro) also get the token to send as a bearer. */
export function signInResponse(result: SignInResult | FlowView, reply: FastifyReply, services: Services) {
  if (result.state !== "authenticated" || !("session" in result)) return result;
  const { session, token } = result;
  setSessionCookie(reply, services.config.publicUrl, token, session.expiresAt);
  const summary = describeSession(session, session.id);
  return {
    state: result.state,
    flowId: result.flowId,
    session: {
      id: summary.id,
      client: summary.client,
      aal: summary.aal,
      methods: summary.methods,
      authenticatedAt: summary.authenticatedAt,
      expiresAt: summary.expiresAt,
    },
    ...(session.client === "web" ? {} : { token }),
    notices: result.notices,
  };
}

export function registerSignInRoutes(app: App, services: Services): void {
  const { signIn, geo } = services;
  const publicUrl = services.config.publicUrl;

  app.post(
    "/v1/sign-in",
    {
      schema: {
        tags: ["sign-in"],
        summary: "Start a sign-in with identifier and password",
        body: Type.Object({
          identifier: Type.String({ minLength: 1, maxLength: 254 }),
          password: Type.String({ minLength: 1, maxLength: 1024 }),
          botCheck: Type.Optional(Type.String({ maxLength: 8192 })),
          client: Type.Optional(Client),
          deviceId: Type.Optional(
            Type.String({
              minLength: 16,
              maxLength: 128,
              pattern: "^[A-Za-z0-9_-]+$",
              description:
                "Apps (client app or pro): the device id received from an earlier sign-in; without it the answer carries a new one to keep. Browsers use the device cookie instead.",
            }),
          ),
        }),
        response: { 200: SignInResponse },
      },
    },
    async (request, reply) => {
      const { identifier, password, botCheck, client = "web", deviceId } = request.body;
      const device = deviceKeyFor(request, reply, publicUrl, client, deviceId);
      const result = await signIn.start(
        { identifier, password, botCheck, client, deviceKey: device.key },
        requestContext(request, geo),
      );
      const body = signInResponse(result, reply, services);
      // An app that sent no device id keeps this one and sends it back (X-Device-Id) from now on.
      return client !== "web" && device.issued ? { ...body, deviceId: device.key } : body;
    },
  );

  app.post(
    "/v1/sign-in/passkey/options",
    {
      schema: {
        tags: ["sign-in"],
        summary: "Sign in with a passkey, without a username: assertion options",
        description:
          "No account yet: allowCredentials is empty, so the authenticator offers the passkeys it holds for this site, and userVerification is required. The challenge is spent by the first assertion that signs it, and expires after 5 minutes. Browsers may use these options for passkey autofill (mediation: conditional).",
        response: {
          200: Open(
            { challenge: Type.String() },
            "WebAuthn PublicKeyCredentialRequestOptionsJSON, for navigator.credentials.get()",
          ),
        },
      },
    },
    async (request, reply) => {
      reply.header("cache-control", "no-store");
      return signIn.passkeyOptions(requestContext(request, geo));
    },
  );

  app.post(
    "/v1/sign-in/passkey",
    {
      schema: {
        tags: ["sign-in"],
        summary: "Sign in with a passkey: the assertion finds the account and counts as both factors",
        description:
          "The credential id and the user handle name the account. An assertion with user verification is both sign-in factors; the device check, restrictions and audit are those of a password sign-in, so the answer is authenticated or device_approval. Every refusal answers 401 passkey_not_accepted.",
        body: Type.Object({
          response: Type.Object({}, { additionalProperties: true }),
          client: Type.Optional(Client),
          deviceId: Type.Optional(
            Type.String({
              minLength: 16,
              maxLength: 128,
              pattern: "^[A-Za-z0-9_-]+$",
              description: "Apps: as for POST /v1/sign-in",
            }),
          ),
        }),
        response: { 200: SignInResponse },
      },
    },
    async (request, reply) => {
      const { response, client = "web", deviceId } = request.body;
      const device = deviceKeyFor(request, reply, publicUrl, client, deviceId);
      const result = await signIn.startWithPasskey(
        { response: response as never, client, deviceKey: device.key },
        requestContext(request, geo),
      );
      const body = signInResponse(result, reply, services);
      return client !== "web" && device.issued ? { ...body, deviceId: device.key } : body;
    },
  );

  const secondFactor = (
    path: string,
    summary: string,
    proofOf: (body: { code: string }, flowId: string) => Proof,
  ) =>
    app.post(
      `/v1/sign-in/:flowId/${path}`,
      {
        schema: {
          tags: ["sign-in"],
          summary,
          params: FlowParams,
          body: Code,
          response: { 200: SignInResponse },
        },
      },
      async (request, reply) => {
        const result = await signIn.proveSecondFactor(
          request.params.flowId,
          proofOf(request.body, request.params.flowId),
          requestContext(request, geo),
        );
        return signInResponse(result, reply, services);
      },
    );
  secondFactor("totp", "Second step: a code from the authenticator app", (body) => ({
    kind: "totp",
    code: body.code,
  }));
  secondFactor("recovery-code", "Second step: a recovery code (each works once)", (body) => ({
    kind: "recovery_code",
    code: body.code,
  }));

  app.post(
    "/v1/sign-in/:flowId/master-key",
    {
      schema: {
        tags: ["sign-in"],
        summary: "Second step without the lost factor: the Master Key sends a one-time code by email",
        params: FlowParams,
        body: Type.Object({ masterKey: Type.String({ minLength: 1, maxLength: 1024 }) }),
        response: { 202: Status("bypass_code_sent") },
      },
    },
    async (request, reply) => {
      await signIn.startBypass(request.params.flowId, request.body.masterKey, requestContext(request, geo));
      return reply.status(202).send({ status: "bypass_code_sent" as const });
    },
  );

  app.post(
    "/v1/sign-in/:flowId/bypass-code",
    {
      schema: {
        tags: ["sign-in"],
        summary: "The emailed code: signs in, resets the lost factors, and requires a new one",
        params: FlowParams,
        body: Code,
        response: { 200: SignInResponse },
      },
    },
    async (request, reply) => {
      const result = await signIn.completeBypass(
        request.params.flowId,
        request.body.code,
        requestContext(request, geo),
      );
      return signInResponse(result, reply, services);
    },
  );

  app.post(
    "/v1/sign-in/:flowId/webauthn/options",
    {
      schema: {
        tags: ["sign-in"],
        summary: "Second step: assertion options for a security key",
        params: FlowParams,
        response: {
          200: Open(
            { challenge: Type.String() },
            "WebAuthn PublicKeyCredentialRequestOptionsJSON, for navigator.credentials.get()",
          ),
        },
      },
    },
    async (request) => signIn.webauthnOptions(request.params.flowId),
  );

  app.post(
    "/v1/sign-in/:flowId/webauthn",
    {
      schema: {
        tags: ["sign-in"],
        summary: "Second step: a security key's assertion",
        params: FlowParams,
        body: WebAuthnResponse,
        response: { 200: SignInResponse },
      },
    },
    async (request, reply) => {
      const result = await signIn.proveSecondFactor(
        request.params.flowId,
        {
          kind: "webauthn",
          response: request.body.response as never,
          purpose: "sign_in",
          subject: request.params.flowId,
        },
        requestContext(request, geo),
      );
      return signInResponse(result, reply, services);
    },
  );

  app.get(
    "/v1/sign-in/:flowId",
    {
      schema: {
        tags: ["sign-in"],
        summary:
          "The state of a sign-in; once the device is approved, the device that started it receives its session here",
        description:
          "While the state is device_approval, poll this until the emailed link is opened. A browser presents its device cookie; an app sends the device id it signed in with (its own, or the deviceId the sign-in answered) as X-Device-Id. Only that device receives the session (and, for apps, the token).",
        params: FlowParams,
        headers: Type.Object({
          "x-device-id": Type.Optional(
            Type.String({ description: "Apps: the device id the sign-in was started with" }),
          ),
        }),
        response: { 200: SignInResponse },
      },
    },
    async (request, reply) => {
      reply.header("cache-control", "no-store");
      const result = await signIn.poll(
        request.params.flowId,
        presentedDeviceKey(request, publicUrl),
        requestContext(request, geo),
      );
      return signInResponse(result, reply, services);
    },
  );

  app.post(
    "/v1/devices/approve",
    {
      schema: {
        tags: ["sign-in"],
        summary: "Approve a new device with the token from the emailed link",
        body: Type.Object({ token: Type.String({ minLength: 1, maxLength: 256 }) }),
        response: { 200: Status("approved") },
      },
    },
    async (request) => {
      await signIn.approveDevice(request.body.token, requestContext(request, geo));
      return { status: "approved" as const };
    },
  );
}
