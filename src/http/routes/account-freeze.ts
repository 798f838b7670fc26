import { Type } from "typebox";
import type { Services } from "../../services.js";
import { requestContext } from "../auth.js";
import { ActionIdHeader, Open } from "../schemas.js";
import type { App } from "../server.js";
import { changeRequest } from "./security.js";

const TokenBody = Type.Object({ token: Type.String({ minLength: 1, maxLength: 256 }) });

/** "When someone else gets in": changing the email address, freezing the account and lifting the freeze. */
export function registerAccountFreezeRoutes(app: App, services: Services): void {
  const { emailChange, accountFreeze, signIn, geo } = services;
  const session = { auth: "session" as const };

  app.post(
    "/v1/security/email",
    {
      config: session,
      schema: {
        response: { 202: Open({}, "The outcome: a status, and when or what comes next where it applies") },
        tags: ["security"],
        summary:
          "Change the email address (step-up with a second factor): a confirmation link goes to the new address",
        headers: ActionIdHeader,
        body: Type.Object({ newEmail: Type.String({ minLength: 1, maxLength: 254 }) }),
      },
    },
    async (request, reply) => {
      const result = await emailChange.request(changeRequest(request, services), request.body.newEmail);
      return reply.status(202).send(result);
    },
  );

  app.post(
    "/v1/security/email/confirm",
    {
      schema: {
        response: { 200: Open({}, "The outcome: a status, and when or what comes next where it applies") },
        tags: ["security"],
        summary: "Make the new address the account's, with the single-use link sent to it (24 hours)",
        body: TokenBody,
      },
    },
    async (request) => emailChange.confirm(request.body.token, requestContext(request, geo)),
  );

  app.post(
    "/v1/account-lock",
    {
      schema: {
        response: { 200: Open({}, "The outcome: a status, and when or what comes next where it applies") },
        tags: ["security"],
        summary:
          "Freeze the account with the single-use lock link of a security email (7 days): sessions end, API keys stop",
        body: TokenBody,
      },
    },
    async (request) => accountFreeze.freeze(request.body.token, requestContext(request, geo)),
  );

  app.post(
    "/v1/security/account-lock/lift",
    {
      config: session,
      schema: {
        response: { 200: Open({}, "The outcome: a status, and when or what comes next where it applies") },
        tags: ["security"],
        summary: "Lift the freeze, 24 hours after it began, with the Master Key and a step-up",
        headers: ActionIdHeader,
        body: Type.Object({ masterKey: Type.String({ minLength: 1, maxLength: 1024 }) }),
      },
    },
    async (request) => accountFreeze.liftByOwner(changeRequest(request, services), request.body.masterKey),
  );

  app.post(
    "/v1/devices/approve/details",
    {
      schema: {
        response: { 200: Open({}, "The outcome: a status, and when or what comes next where it applies") },
        tags: ["sign-in"],
        summary:
          "What an approval link is for: the device, its place and time, and whether it may be approved from here",
        body: TokenBody,
      },
    },
    async (request) => signIn.approvalDetails(request.body.token, requestContext(request, geo)),
  );

  app.post(
    "/v1/devices/refuse",
    {
      schema: {
        response: { 200: Open({}, "The outcome: a status, and when or what comes next where it applies") },
        tags: ["sign-in"],
        summary: '"This wasn\'t me": refuse the waiting sign-in; answers a lock token to freeze the account',
        body: TokenBody,
      },
    },
    async (request) => ({
      status: "refused",
      ...(await signIn.refuseDevice(request.body.token, requestContext(request, geo))),
    }),
  );

  app.delete(
    "/v1/admin/accounts/:id/freeze",
    {
      config: { auth: "admin" },
      schema: {
        response: { 200: Open({}, "The outcome: a status, and when or what comes next where it applies") },
        tags: ["admin"],
        summary: "Lift a freeze at once (audited; the owner is told)",
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
      },
    },
    async (request) => {
      await accountFreeze.liftByOperator(request.params.id, requestContext(request, geo));
      return { status: "lifted" };
    },
  );
}
