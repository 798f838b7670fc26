import { Type } from "typebox";
import type { Services } from "../../services.js";
import { caller } from "../auth.js";
import { Nullable, Open } from "../schemas.js";
import type { App } from "../server.js";

/** The owner's access history (SPEC §12): sign-ins, attempts and session events, with device and place. */
export const activityEvents = [
  "sign_in.password",
  "sign_in.totp",
  "sign_in.webauthn",
  "sign_in.recovery_code",
  "sign_in.refused",
  "sign_in.completed",
  "step_up.password",
  "step_up.totp",
  "step_up.webauthn",
  "step_up.recovery_code",
  "device.approved",
  "device.removed",
  "device.disconnect_all",
  "factor.added",
  "factor.removed",
  "recovery_codes.regenerated",
  "account.restricted",
  "account.created",
  "account.email_verified",
  "session.ended",
  "session.ended_others",
];

export function registerActivityRoutes(app: App, services: Services): void {
  app.get(
    "/v1/activity",
    {
      config: { auth: "session" },
      schema: {
        tags: ["security"],
        summary: "This account's access history, newest first",
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
                outcome: Type.String({ description: "success, failure or refused" }),
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
        before: request.query.before,
        limit,
      });
      return {
        items: entries.map((entry) => ({
          id: entry.seq,
          at: entry.at,
          event: entry.event,
          outcome: entry.outcome,
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
