import { Type } from "typebox";
import type { Services } from "../../services.js";
import { caller, requestContext } from "../auth.js";
import { ActionIdHeader, Status, WithdrawalAddress } from "../schemas.js";
import type { App } from "../server.js";
import { changeRequest } from "./security.js";

export function registerFundingRoutes(app: App, services: Services): void {
  const { addresses, securitySettings, geo } = services;
  const session = { auth: "session" as const };

  app.put(
    "/v1/security/requirements",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary: "Funding 2FA and trading 2FA on or off (step-up required)",
        headers: ActionIdHeader,
        body: Type.Object({ funding: Type.Boolean(), trading: Type.Boolean() }),
        response: {
          200: Type.Object({
            status: Type.Literal("updated"),
            funding: Type.Boolean(),
            trading: Type.Boolean(),
          }),
        },
      },
    },
    async (request) => {
      const change = changeRequest(request, services);
      await securitySettings.setRequirements(change, request.body);
      return { status: "updated" as const, ...request.body };
    },
  );

  app.put(
    "/v1/security/trading-passcode",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary:
          "Set or change the 6-digit trading passcode (step-up required; a change holds withdrawals 24 h)",
        headers: ActionIdHeader,
        body: Type.Object({ passcode: Type.String({ minLength: 1, maxLength: 16 }) }),
        response: { 200: Status("updated") },
      },
    },
    async (request) => {
      const change = changeRequest(request, services);
      await securitySettings.setTradingPasscode(change, request.body.passcode);
      return { status: "updated" as const };
    },
  );

  app.get(
    "/v1/withdrawal-addresses",
    {
      config: session,
      schema: {
        tags: ["funding"],
        summary: "The withdrawal address book",
        response: { 200: Type.Object({ addresses: Type.Array(WithdrawalAddress) }) },
      },
    },
    async (request) => ({ addresses: await addresses.list(caller(request).account.id) }),
  );

  app.post(
    "/v1/withdrawal-addresses",
    {
      config: session,
      schema: {
        tags: ["funding"],
        summary: "Add an address (step-up required); it needs the emailed confirmation, then waits 48 h",
        headers: ActionIdHeader,
        body: Type.Object({
          asset: Type.String({ pattern: "^[A-Z0-9]{2,10}$" }),
          address: Type.String({ minLength: 8, maxLength: 128, pattern: "^[A-Za-z0-9:_.?=-]+$" }),
          label: Type.String({ minLength: 1, maxLength: 64 }),
        }),
        response: { 202: WithdrawalAddress },
      },
    },
    async (request, reply) => {
      const change = changeRequest(request, services);
      const address = await addresses.add(change, request.body);
      return reply.status(202).send(address);
    },
  );

  app.post(
    "/v1/withdrawal-addresses/confirm",
    {
      schema: {
        tags: ["funding"],
        summary: "Confirm a new address with the token from the emailed link",
        body: Type.Object({ token: Type.String({ minLength: 1, maxLength: 256 }) }),
        response: { 200: WithdrawalAddress },
      },
    },
    async (request) => addresses.confirm(request.body.token, requestContext(request, geo)),
  );

  app.delete(
    "/v1/withdrawal-addresses/:id",
    {
      config: session,
      schema: {
        tags: ["funding"],
        summary: "Remove an address (step-up required)",
        params: Type.Object({ id: Type.String({ format: "uuid" }) }),
        headers: ActionIdHeader,
        response: { 200: Status("removed") },
      },
    },
    async (request) => {
      const change = changeRequest(request, services);
      await addresses.remove(change, request.params.id);
      return { status: "removed" as const };
    },
  );
}
