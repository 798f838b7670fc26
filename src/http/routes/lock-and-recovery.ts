import { Type } from "typebox";
import { securityOverview } from "../../security/overview.js";
import type { Services } from "../../services.js";
import { Problem } from "../../support/problem.js";
import { caller, requestContext } from "../auth.js";
import { ActionIdHeader, LockState, Open, Status } from "../schemas.js";
import type { App } from "../server.js";
import { changeRequest } from "./security.js";

export function registerLockAndRecoveryRoutes(app: App, services: Services): void {
  const { securitySettings, globalLock, recovery, geo } = services;
  const session = { auth: "session" as const };

  app.get(
    "/v1/security",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary: "The security overview: level, checklist and settings",
        response: {
          200: Open(
            {
              level: Type.Integer({ minimum: 0, maximum: 5, description: "Security level: items done" }),
              checklist: Type.Array(
                Open({
                  id: Type.String(),
                  done: Type.Boolean(),
                  title: Type.String(),
                  problem: Type.Optional(
                    Type.String({ description: "Why a done item counts as not done: password_breached" }),
                  ),
                  message: Type.Optional(Type.String({ description: "What to do about the problem" })),
                }),
              ),
              globalLock: LockState,
              hidden: Type.Optional(
                Type.Boolean({
                  description: "true while the Global Settings Lock is on: details are hidden",
                }),
              ),
              secondFactors: Type.Optional(Type.Array(Open({}))),
              masterKey: Type.Optional(Open({ set: Type.Boolean() })),
              tradingPasscode: Type.Optional(Open({ set: Type.Boolean() })),
              antiPhishingCode: Type.Optional(Open({ set: Type.Boolean() })),
              requirements: Type.Optional(
                Open({ signIn: Type.Boolean(), funding: Type.Boolean(), trading: Type.Boolean() }),
              ),
              holds: Type.Optional(
                Type.Array(Open({ kind: Type.String(), until: Type.String({ format: "date-time" }) })),
              ),
            },
            "Without the details (hidden: true) while the Global Settings Lock is on",
          ),
        },
      },
    },
    async (request) => {
      const { account } = caller(request);
      const [factors, holds] = await Promise.all([
        services.factorManagement.list(account),
        services.holds.active(account.id),
      ]);
      return securityOverview(account, factors, globalLock.state(account), holds);
    },
  );

  app.post(
    "/v1/security/password",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary: "Change the password (step-up and the current password); other sessions end",
        headers: ActionIdHeader,
        body: Type.Object({
          currentPassword: Type.String({ minLength: 1, maxLength: 1024 }),
          newPassword: Type.String({ minLength: 1, maxLength: 1024 }),
        }),
        response: { 200: Status("updated") },
      },
    },
    async (request) => {
      const change = changeRequest(request, services);
      await securitySettings.changePassword(change, request.body);
      return { status: "updated" as const };
    },
  );

  app.put(
    "/v1/security/master-key",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary: "Set or change the Master Key (step-up; refused while the Global Settings Lock is on)",
        headers: ActionIdHeader,
        body: Type.Object({ masterKey: Type.String({ minLength: 1, maxLength: 1024 }) }),
        response: { 200: Status("updated") },
      },
    },
    async (request) => {
      const change = changeRequest(request, services);
      await securitySettings.setMasterKey(change, request.body.masterKey);
      return { status: "updated" as const };
    },
  );

  app.put(
    "/v1/security/anti-phishing-code",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary: "Set the code shown in every email (step-up)",
        headers: ActionIdHeader,
        body: Type.Object({ code: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: { 200: Status("updated") },
      },
    },
    async (request) => {
      const change = changeRequest(request, services);
      await securitySettings.setAntiPhishingCode(change, request.body.code);
      return { status: "updated" as const };
    },
  );

  app.post(
    "/v1/security/global-lock",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary: "Turn on the Global Settings Lock with an unlock waiting period (step-up)",
        headers: ActionIdHeader,
        body: Type.Object({ unlockDelayDays: Type.Integer({ minimum: 0, maximum: 30 }) }),
        response: { 200: LockState },
      },
    },
    async (request) => {
      const change = changeRequest(request, services);
      return globalLock.lock(change, request.body.unlockDelayDays);
    },
  );

  app.post(
    "/v1/security/global-lock/unlock",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary:
          "Unlock at once with the Master Key, or ask to unlock after the waiting period (step-up required)",
        headers: ActionIdHeader,
        body: Type.Optional(
          Type.Object({ masterKey: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })) }),
        ),
        response: {
          200: Type.Object({
            state: Type.String({ description: "unlocked, or unlock_pending until unlocksAt" }),
            unlocksAt: Type.Optional(Type.String({ format: "date-time" })),
          }),
        },
      },
    },
    async (request) => {
      const change = changeRequest(request, services);
      const masterKey = request.body?.masterKey;
      // A session opened with the Master Key bypass may unlock with the Master Key, nothing else here.
      if (change.auth.session.enrollmentRequired && masterKey === undefined) {
        throw new Problem(
          403,
          "enrollment_required",
          "Unlock with your Master Key, or set up a new second factor before anything else.",
        );
      }
      return globalLock.unlock(change, masterKey);
    },
  );

  app.delete(
    "/v1/security/global-lock/unlock",
    {
      config: session,
      schema: {
        tags: ["security"],
        summary: "Cancel a pending unlock (step-up required)",
        headers: ActionIdHeader,
        response: { 200: Status("cancelled") },
      },
    },
    async (request) => {
      await globalLock.cancelUnlock(changeRequest(request, services));
      return { status: "cancelled" as const };
    },
  );

  app.delete(
    "/v1/admin/accounts/:id/global-lock",
    {
      config: { auth: "admin" },
      schema: {
        tags: ["admin"],
        summary: "Support removes a Global Settings Lock (the 0-day case without a Master Key); audited",
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: { 200: Status("removed") },
      },
    },
    async (request) => {
      await globalLock.remove(request.params.id, requestContext(request, geo));
      return { status: "removed" as const };
    },
  );

  const Email = Type.String({ minLength: 3, maxLength: 254 });
  const BotCheck = Type.Optional(Type.String({ maxLength: 8192 }));

  app.post(
    "/v1/recovery/password",
    {
      schema: {
        tags: ["recovery"],
        summary: "Ask for a password reset link; the answer is the same whether or not the account exists",
        body: Type.Object({
          email: Email,
          username: Type.String({ minLength: 1, maxLength: 64 }),
          botCheck: BotCheck,
        }),
        response: { 202: Status("accepted", "The same answer whether or not the account exists") },
      },
    },
    async (request, reply) =>
      reply.status(202).send(await recovery.requestPasswordReset(request.body, requestContext(request, geo))),
  );

  app.post(
    "/v1/recovery/password/complete",
    {
      schema: {
        tags: ["recovery"],
        summary:
          "Set a new password with the emailed link (and the Master Key when set); no session is opened",
        body: Type.Object({
          token: Type.String({ minLength: 1, maxLength: 256 }),
          newPassword: Type.String({ minLength: 1, maxLength: 1024 }),
          masterKey: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
        }),
        response: { 200: Status("password_reset") },
      },
    },
    async (request) => recovery.completePasswordReset(request.body, requestContext(request, geo)),
  );

  app.post(
    "/v1/recovery/username",
    {
      schema: {
        tags: ["recovery"],
        summary: "Email the username to the account's address; the answer is the same either way",
        body: Type.Object({ email: Email, botCheck: BotCheck }),
        response: { 202: Status("accepted", "The same answer whether or not the account exists") },
      },
    },
    async (request, reply) =>
      reply.status(202).send(await recovery.requestUsername(request.body, requestContext(request, geo))),
  );
}
