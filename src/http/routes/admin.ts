import { Type } from "typebox";
import type { Services } from "../../services.js";
import { iso } from "../../support/clock.js";
import { notFound } from "../../support/problem.js";
import { requestContext } from "../auth.js";
import type { App } from "../server.js";

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
      },
    },
    async (request) => {
      const lifted = await services.guard.lift(request.params.id);
      if (!lifted) throw notFound("That account");
      await services.audit.append(
        {
          event: "account.restriction_lifted",
          outcome: "success",
          accountId: request.params.id,
          actor: "operator",
        },
        requestContext(request, services.geo),
      );
      return { status: "lifted" };
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
        summary: "Check the audit log's hash chain end to end",
        response: {
          200: Type.Object({
            ok: Type.Boolean(),
            checked: Type.Integer(),
            firstBadEntry: Type.Optional(Type.Object({ seq: Type.Integer(), reason: Type.String() })),
          }),
        },
      },
    },
    async () => services.audit.verify(),
  );
}
