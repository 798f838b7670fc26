import { Type } from "typebox";
import {
  activityEvents,
  activityShownOnlyWhenNotPassed,
  describeActivity,
  describeOutcome,
} from "../../audit/activity.js";
import type { Services } from "../../services.js";
import { caller } from "../auth.js";
import { Nullable, Open } from "../schemas.js";
import type { App } from "../server.js";

export function registerActivityRoutes(app: App, services: Services): void {
  app.get(
    "/v1/activity",
    {
      config: { auth: "session" },
      schema: {
        tags: ["security"],
        summary:
          "This account's access and security history, newest first: sign-ins, confirmations, every security setting change, API keys and addresses",
        querystring: Type.Object({
          before: Type.Optional(Type.Integer({ minimum: 1 })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
        }),
        response: {
          200: Open({
            items: Type.Array(
              Open({
                id: Type.Integer({ description: "The entry's sequence number; pass it as before to page" }),
                at: Type.String({ format: "date-time" }),
                event: Type.String({ description: "e.g. sign_in.completed, factor.added, session.ended" }),
                outcome: Type.String({ description: "success, failure, refused or info" }),
                ip: Nullable(Type.String()),
                location: Nullable(Type.String()),
                userAgent: Nullable(Type.String()),
                reason: Type.Optional(Type.String()),
              }),
            ),
            nextBefore: Type.Optional(
              Type.Integer({
                description: "Present when there may be older entries: the next page's before",
              }),
            ),
          }),
        },
      },
    },
    async (request) => {
      const { account } = caller(request);
      const limit = request.query.limit ?? 50;
      const entries = await services.audit.list({
        accountId: account.id,
        events: activityEvents,
        onlyUnsuccessful: activityShownOnlyWhenNotPassed,
        before: request.query.before,
        limit,
      });
      return {
        items: entries.map((entry) => ({
          id: entry.seq,
          at: entry.at,
          event: entry.event,
          outcome: entry.outcome,
          what: describeActivity(entry),
          result: describeOutcome(entry),
          ip: entry.ip,
          location: entry.location,
          userAgent: entry.userAgent,
          reason: typeof entry.details.reason === "string" ? entry.details.reason : undefined,
        })),
        nextBefore: entries.length === limit ? entries.at(-1)?.seq : undefined,
      };
    },
  );
}
