import { Type } from "typebox";
import type { Services } from "../../services.js";
import { iso } from "../../support/clock.js";
import { caller, requestContext, setSessionCookie } from "../auth.js";
import { ConfirmBody } from "../schemas.js";
import type { App } from "../server.js";

const ActionParams = Type.Object({ id: Type.String({ format: "uuid" }) });

export function registerActionRoutes(app: App, services: Services): void {
  const { actions } = services;
  const session = { auth: "session" as const };

  app.post(
    "/v1/actions",
    {
      config: session,
      schema: {
        tags: ["actions"],
        summary: "Start a funding or trading action; the answer says exactly what will be confirmed, and how",
        body: Type.Object({
          type: Type.String({ minLength: 1, maxLength: 32 }),
          params: Type.Record(Type.String({ maxLength: 32 }), Type.Unknown(), { maxProperties: 16 }),
        }),
      },
    },
    async (request, reply) => {
      const { account, session: current } = caller(request);
      const action = await services.transactions.create(
        account,
        current.client,
        request.body.type,
        request.body.params,
        requestContext(request, services.geo),
      );
      return reply.status(201).send(action);
    },
  );

  app.post(
    "/v1/actions/:id/redeem",
    {
      config: { auth: "service" },
      schema: {
        tags: ["actions"],
        summary: "The venue's backend redeems a confirmed action, exactly once, after a final check",
        params: ActionParams,
      },
    },
    async (request) => services.transactions.redeem(request.params.id, requestContext(request, services.geo)),
  );

  app.get(
    "/.well-known/jwks.json",
    { schema: { tags: ["public"], summary: "The public keys that sign action grants (EdDSA)" } },
    async (_request, reply) => {
      reply.header("cache-control", "public, max-age=300");
      return services.grants.jwks();
    },
  );

  app.get(
    "/v1/actions/:id",
    {
      config: session,
      schema: { tags: ["actions"], summary: "An action and what confirms it", params: ActionParams },
    },
    async (request) => actions.get(caller(request).account, request.params.id),
  );

  app.post(
    "/v1/actions/:id/webauthn/options",
    {
      config: session,
      schema: {
        tags: ["actions"],
        summary: "Assertion options whose challenge is bound to this action's digest",
        params: ActionParams,
      },
    },
    async (request) => actions.webauthnOptions(caller(request).account, request.params.id),
  );

  app.post(
    "/v1/actions/:id/confirm",
    {
      config: session,
      schema: {
        tags: ["actions"],
        summary: "Confirm an action with the proof it requires; a second factor renews the session token",
        params: ActionParams,
        body: ConfirmBody,
      },
    },
    async (request, reply) => {
      const auth = caller(request);
      const { action, rotated } = await actions.confirm(
        auth.account,
        auth.session,
        request.params.id,
        { ...request.body, webauthn: request.body.webauthn as never },
        requestContext(request, services.geo),
      );
      if (!rotated) return { state: action.state, action, ...(action.grant ? { grant: action.grant } : {}) };
      if (auth.via === "cookie")
        setSessionCookie(reply, services.config.publicUrl, rotated.token, rotated.session.expiresAt);
      return {
        state: action.state,
        action,
        session: {
          id: rotated.session.id,
          client: rotated.session.client,
          aal: rotated.session.aal,
          methods: rotated.session.methods,
          authenticatedAt: iso(rotated.session.authenticatedAt),
          expiresAt: iso(Math.min(rotated.session.expiresAt, rotated.session.idleExpiresAt)),
        },
        // The old token no longer works: a bearer client continues with this one.
        ...(auth.via === "bearer" ? { token: rotated.token } : {}),
      };
    },
  );
}
