import { Type } from "typebox";
import type { Services } from "../../services.js";
import { requestContext } from "../auth.js";
import { deviceKeyFor, presentedDeviceKey } from "../device-key.js";
import type { App } from "../server.js";

export function registerAccountRoutes(app: App, services: Services): void {
  app.post(
    "/v1/accounts",
    {
      schema: {
        tags: ["sign-up"],
        summary: "Sign up; the answer is the same whether or not the email or username exists",
        body: Type.Object({
          email: Type.String({ minLength: 1, maxLength: 254 }),
          username: Type.String({ minLength: 1, maxLength: 64 }),
          // Length in code points is checked by the password rules; this bound only stops abuse.
          password: Type.String({ minLength: 1, maxLength: 1024 }),
          country: Type.String({ minLength: 2, maxLength: 2 }),
          region: Type.Optional(Type.String({ maxLength: 6 })),
          botCheck: Type.Optional(Type.String({ maxLength: 8192 })),
        }),
        response: { 202: Type.Object({ status: Type.Literal("verification_sent") }) },
      },
    },
    async (request, reply) => {
      // The browser gets its device cookie now, but it is remembered only if it also verifies the email.
      deviceKeyFor(request, reply, services.config.publicUrl, "web", undefined);
      const result = await services.signUp.signUp(request.body, requestContext(request, services.geo));
      return reply.status(202).send(result);
    },
  );

  app.post(
    "/v1/accounts/verify-email",
    {
      schema: {
        tags: ["sign-up"],
        summary: "Confirm an email address with the token from the verification link",
        body: Type.Object({ token: Type.String({ minLength: 1, maxLength: 256 }) }),
        response: { 200: Type.Object({ status: Type.Literal("verified") }) },
      },
    },
    async (request, reply) => {
      // The browser or app that opens the link is the one that proved the mailbox: it becomes known.
      const { publicUrl } = services.config;
      const key =
        presentedDeviceKey(request, publicUrl) ??
        deviceKeyFor(request, reply, publicUrl, "web", undefined).key;
      await services.signUp.verifyEmail(request.body.token, requestContext(request, services.geo), { key });
      return { status: "verified" as const };
    },
  );
}
