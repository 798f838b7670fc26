import { Type } from "typebox";
import type { Services } from "../../services.js";
import { notFound } from "../../support/problem.js";
import { caller, clearSessionCookie, requestContext } from "../auth.js";
import { ActionIdHeader, Nullable, Open } from "../schemas.js";
import type { App } from "../server.js";
import { changeRequest } from "./security.js";

export function registerDeviceRoutes(app: App, services: Services): void {
  const { devices, sessions, audit, geo } = services;
  const session = { auth: "session" as const };

  app.get(
    "/v1/devices",
    {
      config: session,
      schema: {
        tags: ["sessions"],
        summary: "The devices this account has approved",
        response: {
          200: Type.Object({
            devices: Type.Array(
              Open({
                id: Type.String({ format: "uuid" }),
                label: Nullable(Type.String({ description: "e.g. Chrome on macOS" })),
                ip: Nullable(Type.String()),
                location: Nullable(Type.String()),
                createdAt: Type.String({ format: "date-time" }),
                lastSeenAt: Type.String({ format: "date-time" }),
                current: Type.Boolean({ description: "The device of this session" }),
              }),
            ),
          }),
        },
      },
    },
    async (request) => {
      const { account, session: current } = caller(request);
      const list = await devices.list(account.id);
      return { devices: list.map((d) => ({ ...d, current: d.id === current.deviceId })) };
    },
  );

  app.delete(
    "/v1/devices/:id",
    {
      config: session,
      schema: {
        tags: ["sessions"],
        summary: "Forget a device and end its sessions; its next sign-in needs approval again",
        params: Type.Object({ id: Type.String({ format: "uuid" }) }),
        response: {
          200: Type.Object({ status: Type.Literal("removed"), endedSessions: Type.Integer() }),
        },
      },
    },
    async (request, reply) => {
      const { account, session: current } = caller(request);
      if (!(await devices.remove(account.id, request.params.id))) throw notFound("That device");
      const ended = await sessions.endForDevice(account.id, request.params.id, "device_removed");
      await audit.append(
        {
          event: "device.removed",
          outcome: "success",
          accountId: account.id,
          details: { deviceId: request.params.id, ended },
        },
        requestContext(request, geo),
      );
      if (current.deviceId === request.params.id) clearSessionCookie(reply, services.config.publicUrl);
      return { status: "removed" as const, endedSessions: ended };
    },
  );

  app.delete(
    "/v1/devices",
    {
      config: session,
      schema: {
        tags: ["sessions"],
        summary: "Disconnect all (step-up required): forget every device and end every session, this one too",
        headers: ActionIdHeader,
        response: {
          200: Type.Object({
            status: Type.Literal("disconnected"),
            removedDevices: Type.Integer(),
            endedSessions: Type.Integer(),
          }),
        },
      },
    },
    async (request, reply) => {
      const done = await services.disconnectAll.run(changeRequest(request, services));
      clearSessionCookie(reply, services.config.publicUrl);
      return { status: "disconnected" as const, ...done };
    },
  );
}
