import { Type } from "typebox";
import { describeWindow } from "../../capabilities/subsystems.js";
import type { Services } from "../../services.js";
import { iso } from "../../support/clock.js";
import { notFound } from "../../support/problem.js";

import { requestContext } from "../auth.js";
import { ApiKeyView, MaintenanceWindow, Nullable, Open, Status } from "../schemas.js";
import type { App } from "../server.js";

/** A problem the audit check found: the chain, and the position and global seq when it is one entry. */
const badEntry = Type.Object({
  chain: Type.Integer(),
  position: Type.Optional(Type.Integer()),
  seq: Type.Optional(Type.Integer()),
  reason: Type.String(),
});

export function registerAdminRoutes(app: App, services: Services): void {
  const admin = { auth: "admin" as const };

  app.get(
    "/v1/admin/accounts",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        summary: "Find accounts by id, username or email",
        querystring: Type.Object({ query: Type.String({ minLength: 1, maxLength: 254 }) }),
        response: {
          200: Type.Object({
            accounts: Type.Array(
              Open({
                id: Type.String(),
                username: Type.String(),
                email: Type.String(),
                emailVerified: Type.Boolean(),
                tier: Type.String(),
                country: Type.String(),
                region: Nullable(Type.String()),
                createdAt: Type.String({ format: "date-time" }),
                restriction: Nullable(
                  Open({ permanent: Type.Boolean(), until: Nullable(Type.String({ format: "date-time" })) }),
                ),
              }),
            ),
          }),
        },
      },
    },
    async (request) => {
      const accounts = await services.accounts.search(request.query.query);
      return {
        accounts: await Promise.all(
          accounts.map(async (account) => {
            const status = await services.guard.status(account.id);
            return {
              id: account.id,
              username: account.username,
              email: account.email,
              emailVerified: account.emailVerified,
              tier: account.tier,
              country: account.country,
              region: account.region,
              createdAt: iso(account.createdAt),
              restriction: status.restricted
                ? { permanent: status.permanent, until: status.until ? iso(status.until) : null }
                : null,
            };
          }),
        ),
      };
    },
  );

  app.delete(
    "/v1/admin/accounts/:id/restriction",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        summary: "Lift an account's restriction (audited)",
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: { 200: Status("lifted") },
      },
    },
    async (request) => {
      await services.admin.liftRestriction(request.params.id, requestContext(request, services.geo));
      return { status: "lifted" as const };
    },
  );

  const AccountParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

  app.put(
    "/v1/admin/accounts/:id/disabled",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        summary: "Disable an account (every session ends at once) or enable it again (audited)",
        params: AccountParams,
        body: Type.Object({ disabled: Type.Boolean() }),
        response: {
          200: Type.Object({ status: Type.Union([Type.Literal("disabled"), Type.Literal("enabled")]) }),
        },
      },
    },
    async (request) => {
      await services.admin.setDisabled(
        request.params.id,
        request.body.disabled,
        requestContext(request, services.geo),
      );
      return { status: request.body.disabled ? ("disabled" as const) : ("enabled" as const) };
    },
  );

  app.get(
    "/v1/admin/accounts/:id/api-keys",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        summary: "An account's API keys (never their secrets)",
        params: Type.Object({ id: Type.String({ format: "uuid" }) }),
        response: { 200: Type.Object({ apiKeys: Type.Array(ApiKeyView) }) },
      },
    },
    async (request) => {
      const account = await services.accounts.findById(request.params.id);
      if (!account) throw notFound("That account");
      return { apiKeys: await services.apiKeys.list(account.id) };
    },
  );

  app.delete(
    "/v1/admin/api-keys/:id",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        summary: "Disable an API key at once (audited; the owner is told)",
        params: Type.Object({ id: Type.String({ format: "uuid" }) }),
        response: { 200: Status("disabled") },
      },
    },
    async (request) => {
      await services.apiKeys.disableByOperator(request.params.id, requestContext(request, services.geo));
      return { status: "disabled" as const };
    },
  );

  app.put(
    "/v1/admin/accounts/:id/verification",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        summary: "Set an account's verification tier (operators or the KYC provider)",
        params: AccountParams,
        body: Type.Object({ tier: Type.String({ minLength: 1, maxLength: 32 }) }),
        response: { 200: Type.Object({ status: Type.Literal("updated"), tier: Type.String() }) },
      },
    },
    async (request) => {
      await services.admin.setTier(
        request.params.id,
        request.body.tier,
        requestContext(request, services.geo),
      );
      return { status: "updated" as const, tier: request.body.tier };
    },
  );

  app.put(
    "/v1/admin/accounts/:id/jurisdiction",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        summary: "Set an account's country and, for the US and Canada, region",
        params: AccountParams,
        body: Type.Object({
          country: Type.String({ minLength: 2, maxLength: 2 }),
          region: Type.Optional(Type.String({ minLength: 1, maxLength: 6 })),
        }),
        response: {
          200: Type.Object({
            status: Type.Literal("updated"),
            country: Type.String(),
            region: Nullable(Type.String()),
          }),
        },
      },
    },
    async (request) => {
      const { country, region } = request.body;
      await services.admin.setJurisdiction(
        request.params.id,
        country,
        region ?? null,
        requestContext(request, services.geo),
      );
      return { status: "updated" as const, country, region: region ?? null };
    },
  );

  app.put(
    "/v1/admin/subsystems/:id",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        summary: "Set a subsystem's status (windows override it while open)",
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 32 }) }),
        body: Type.Object({
          status: Type.String({ minLength: 1, maxLength: 32 }),
          message: Type.Optional(Type.String({ maxLength: 500 })),
        }),
        response: { 200: Status("updated") },
      },
    },
    async (request) => {
      const { status, message } = request.body;
      await services.admin.setSubsystemStatus(
        request.params.id,
        status,
        message ?? null,
        requestContext(request, services.geo),
      );
      return { status: "updated" as const };
    },
  );

  app.post(
    "/v1/admin/maintenance",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        summary: "Schedule a maintenance window; it takes effect and ends by itself",
        body: Type.Object({
          subsystem: Type.String({ minLength: 1, maxLength: 32 }),
          state: Type.String({ minLength: 1, maxLength: 32 }),
          startsAt: Type.String({ format: "date-time" }),
          endsAt: Type.String({ format: "date-time" }),
          message: Type.String({ minLength: 1, maxLength: 500 }),
        }),
        response: { 201: MaintenanceWindow },
      },
    },
    async (request, reply) => {
      const { subsystem, state, startsAt, endsAt, message } = request.body;
      const window = await services.admin.scheduleMaintenance(
        { subsystem, state, startsAt: Date.parse(startsAt), endsAt: Date.parse(endsAt), message },
        requestContext(request, services.geo),
      );
      return reply.status(201).send(describeWindow(window));
    },
  );

  app.delete(
    "/v1/admin/maintenance/:id",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        summary: "Cancel a maintenance window",
        params: Type.Object({ id: Type.String({ format: "uuid" }) }),
        response: { 200: Status("cancelled") },
      },
    },
    async (request) => {
      await services.admin.cancelMaintenance(request.params.id, requestContext(request, services.geo));
      return { status: "cancelled" as const };
    },
  );

  app.get(
    "/v1/admin/audit",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        summary: "Read the audit log, newest first",
        querystring: Type.Object({
          account: Type.Optional(Type.String({ maxLength: 64 })),
          before: Type.Optional(Type.Integer({ minimum: 1 })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
        }),
        response: {
          200: Type.Object({
            entries: Type.Array(
              Open({
                seq: Type.Integer(),
                at: Type.String({ format: "date-time" }),
                accountId: Nullable(Type.String()),
                actor: Type.String(),
                ip: Nullable(Type.String()),
                location: Nullable(Type.String()),
                userAgent: Nullable(Type.String()),
                event: Type.String(),
                outcome: Type.String(),
                details: Type.Record(Type.String(), Type.Unknown()),
              }),
            ),
            nextBefore: Type.Optional(Type.Integer()),
          }),
        },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 100;
      const entries = await services.audit.list({
        accountId: request.query.account,
        before: request.query.before,
        limit,
      });
      return { entries, nextBefore: entries.length === limit ? entries.at(-1)?.seq : undefined };
    },
  );

  app.post(
    "/v1/admin/audit/verify",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        summary: "Check every chain of the audit log end to end, and how the chains fit together",
        response: {
          200: Type.Object({
            ok: Type.Boolean(),
            checked: Type.Integer(),
            chains: Type.Integer(),
            firstBadEntry: Type.Optional(badEntry),
            badChains: Type.Optional(Type.Array(badEntry)),
          }),
        },
      },
    },
    async () => services.audit.verify(),
  );
}
