import { Type } from "typebox";
import { describeWindow } from "../../capabilities/subsystems.js";
import type { Services } from "../../services.js";
import { caller } from "../auth.js";
import { MaintenanceWindow, Open } from "../schemas.js";
import type { App } from "../server.js";

const HOURS_72 = 72 * 3600_000;

/** Kraken's own format for rfc1123 in /0/public/Time: "Mon, 22 Jul 24 16:34:44 +0000". */
function krakenRfc1123(ms: number): string {
  const date = new Date(ms);
  const [weekday, day, month, year, time] = date.toUTCString().replace(",", "").split(" ");
  return `${weekday}, ${day} ${month} ${year!.slice(2)} ${time} +0000`;
}

export function registerCapabilityRoutes(app: App, services: Services): void {
  const { capabilities, subsystems, clock } = services;

  app.get(
    "/v1/capabilities",
    {
      config: { auth: "session" },
      schema: {
        tags: ["capabilities"],
        summary: "Which products this account may use right now, and why not",
        response: {
          200: Type.Object({
            products: Type.Record(
              Type.String(),
              Open(
                {
                  allowed: Type.Boolean(),
                  mode: Type.Optional(Type.Literal("post_only")),
                  reasons: Type.Optional(
                    Type.Array(
                      Open(
                        { code: Type.String(), message: Type.String() },
                        "tier_too_low, jurisdiction, client_app, subsystem_maintenance, security_hold, account_restricted or second_factor_required, with its details",
                      ),
                    ),
                  ),
                },
                "One product (spot, margin, futures, staking, stocks, withdraw.crypto, funding.wire, …)",
              ),
            ),
          }),
        },
      },
    },
    async (request) => {
      const { account, session, security } = caller(request);
      return { products: await capabilities.vector(account, session.client, security) };
    },
  );

  app.get(
    "/v1/status",
    {
      schema: {
        tags: ["public"],
        summary: "Subsystems and maintenance windows, open or to come",
        response: {
          200: Type.Object({
            subsystems: Type.Array(
              Type.Object({
                id: Type.String(),
                status: Type.String(),
                message: Type.Optional(Type.String()),
              }),
            ),
            maintenance: Type.Array(MaintenanceWindow),
          }),
        },
      },
    },
    async () => {
      const snapshot = await subsystems.snapshot();
      return {
        subsystems: Object.values(snapshot.states).map((s) => ({
          id: s.id,
          status: s.status,
          ...(s.message ? { message: s.message } : {}),
        })),
        maintenance: snapshot.windows.map(describeWindow),
      };
    },
  );

  app.get(
    "/0/public/Time",
    {
      schema: {
        tags: ["kraken"],
        summary: "Kraken-compatible server time",
        response: {
          200: Type.Object({
            error: Type.Array(Type.String()),
            result: Type.Object({ unixtime: Type.Integer(), rfc1123: Type.String() }),
          }),
        },
      },
    },
    async () => {
      const now = clock.now();
      return { error: [], result: { unixtime: Math.floor(now / 1000), rfc1123: krakenRfc1123(now) } };
    },
  );

  app.get(
    "/0/public/SystemStatus",
    {
      schema: {
        tags: ["kraken"],
        summary: "Kraken-compatible system status, with windows due within 72 hours",
        response: {
          200: Type.Object({
            error: Type.Array(Type.String()),
            result: Type.Object({
              status: Type.String({ description: "online, maintenance, cancel_only or post_only" }),
              timestamp: Type.String({ format: "date-time" }),
              maintenance: Type.Array(MaintenanceWindow),
            }),
          }),
        },
      },
    },
    async () => {
      const snapshot = await subsystems.snapshot();
      const api = snapshot.states.api?.status;
      const engine = snapshot.states.spot_engine?.status;
      const status =
        api === "maintenance" || api === "outage" || engine === "maintenance" || engine === "outage"
          ? "maintenance"
          : engine === "cancel_only" || engine === "post_only"
            ? engine
            : "online";
      return {
        error: [],
        result: {
          status,
          timestamp: new Date(snapshot.at).toISOString().replace(/\.\d{3}Z$/, "Z"),
          maintenance: snapshot.windows
            .filter((w) => w.startsAt <= snapshot.at + HOURS_72)
            .map(describeWindow),
        },
      };
    },
  );
}
