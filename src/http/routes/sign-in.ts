import type { FastifyReply } from "fastify";
import { Type } from "typebox";
import type { SignInResult } from "../../flows/sign-in.js";
import type { Services } from "../../services.js";
import { describeSession } from "../../sessions/sessions.js";
import { requestContext, setSessionCookie } from "../auth.js";
import { Client, Notice, SessionSummary } from "../schemas.js";
import type { App } from "../server.js";

const SignInResponse = Type.Object({
  state: Type.String(),
  flowId: Type.String(),
  factors: Type.Optional(Type.Array(Type.String())),
  session: Type.Optional(SessionSummary),
  token: Type.Optional(Type.String()),
  notices: Type.Optional(Type.Array(Notice)),
});

/** Browsers get the session as a cookie; apps (client app/pro) also get the token to send as a bearer. */
export function signInResponse(result: SignInResult, reply: FastifyReply, services: Services) {
  if (result.state !== "authenticated") return result;
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
          deviceId: Type.Optional(Type.String({ minLength: 16, maxLength: 128 })),
        }),
        response: { 200: SignInResponse },
      },
    },
    async (request, reply) => {
      const { identifier, password, botCheck, client = "web", deviceId } = request.body;
      const result = await services.signIn.start(
        { identifier, password, botCheck, client, deviceId: deviceId ?? null },
        requestContext(request, services.geo),
      );
      return signInResponse(result, reply, services);
    },
  );

  app.get(
    "/v1/sign-in/:flowId",
    {
      schema: {
        tags: ["sign-in"],
        summary: "The state of a sign-in flow (polled while a device approval is pending)",
        params: Type.Object({ flowId: Type.String({ format: "uuid" }) }),
        response: {
          200: Type.Object({
            flowId: Type.String(),
            state: Type.String(),
            expiresAt: Type.String(),
            factors: Type.Optional(Type.Array(Type.String())),
          }),
        },
      },
    },
    async (request) => services.signIn.view(request.params.flowId),
  );
}
