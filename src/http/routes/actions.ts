import { Type } from "typebox";
import type { Services } from "../../services.js";
import { sessionEndsAt } from "../../sessions/sessions.js";
import { iso } from "../../support/clock.js";
import { caller, requestContext, setSessionCookie } from "../auth.js";
import { ActionView, ConfirmBody, Open, SessionSummary } from "../schemas.js";
import type { App } from "../server.js";

const ActionParams = Type.Object({ id: Type.String({ format: "uuid" }) });

/** What each funding or trading action takes; the server checks and normalises them (one place: src/actions/transactions.ts). */
const actionTypesDescription = [
  'The action and its parameters (all strings; amounts are decimal strings such as "0.5"):',
  "- withdraw: asset (e.g. BTC), amount, addressId (the id of an active address in the withdrawal address book: confirmed by email and 48 hours old)",
  "- new_deposit_address: asset",
  "- transfer_futures: asset (e.g. USD), amount — to the futures wallet",
  "- place_order: pair as BASE/QUOTE (e.g. BTC/USD), side (buy or sell), type (market or limit), volume, price (limit orders only)",
  "- cancel_order: orderId",
  "Unknown parameters are dropped, so the digest covers exactly what is shown.",
].join("\n");

/** The answer of a confirmation: the action, and the renewed session when a second factor was proved. */
const ConfirmResponse = Open({
  state: Type.String({ description: "confirmed once every required proof is given" }),
  action: ActionView,
  grant: Type.Optional(Type.String({ description: "For funding and trading actions: the grant to redeem" })),
  session: Type.Optional(SessionSummary),
  token: Type.Optional(
    Type.String({ description: "Bearer clients: the renewed session token; the old one no longer works" }),
  ),
});

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
        description: actionTypesDescription,
        body: Type.Object(
          {
            type: Type.String({
              minLength: 1,
              maxLength: 32,
              description: "withdraw, new_deposit_address, transfer_futures, place_order or cancel_order",
            }),
            params: Type.Record(Type.String({ maxLength: 32 }), Type.Unknown(), { maxProperties: 16 }),
          },
          {
            examples: [
              {
                type: "withdraw",
                params: { asset: "BTC", amount: "0.5", addressId: "0b7c1a2e-6f0d-4c1e-9a52-3f1d2b8e4c77" },
              },
              {
                type: "place_order",
                params: { pair: "BTC/USD", side: "buy", type: "limit", volume: "0.01", price: "65000" },
              },
            ],
          },
        ),
        response: { 201: ActionView },
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
        response: {
          200: Open({
            type: Type.String(),
            params: Type.Record(Type.String(), Type.Unknown()),
            accountId: Type.String(),
            grantId: Type.Unknown({ description: "The grant's unique id (jti)" }),
            redeemedAt: Type.String({ format: "date-time" }),
          }),
        },
      },
    },
    async (request) => services.transactions.redeem(request.params.id, requestContext(request, services.geo)),
  );

  app.get(
    "/.well-known/jwks.json",
    {
      schema: {
        tags: ["public"],
        summary: "The public keys that sign action grants (EdDSA)",
        response: { 200: Type.Object({ keys: Type.Array(Open({}, "A JSON Web Key (OKP, Ed25519)")) }) },
      },
    },
    async (_request, reply) => {
      reply.header("cache-control", "public, max-age=300");
      return services.grants.jwks();
    },
  );

  app.get(
    "/v1/actions/:id",
    {
      config: session,
      schema: {
        tags: ["actions"],
        summary: "An action and what confirms it",
        params: ActionParams,
        response: { 200: ActionView },
      },
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
        response: {
          200: Open(
            { challenge: Type.String() },
            "WebAuthn PublicKeyCredentialRequestOptionsJSON, for navigator.credentials.get()",
          ),
        },
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
        response: { 200: ConfirmResponse },
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
          expiresAt: sessionEndsAt(rotated.session),
        },
        // The old token no longer works: a bearer client continues with this one.
        ...(auth.via === "bearer" ? { token: rotated.token } : {}),
      };
    },
  );
}
