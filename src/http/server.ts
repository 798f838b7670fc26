import type { IncomingMessage, ServerResponse } from "node:http";
import fastifyCookie from "@fastify/cookie";
import fastifySwagger from "@fastify/swagger";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type RawServerDefault } from "fastify";
import type { Services } from "../services.js";
import { registerAuth, requestContext } from "./auth.js";
import { frameworkError, registerErrorHandling } from "./errors.js";
import { registerInputHygiene } from "./input-hygiene.js";
import { registerAccountFreezeRoutes } from "./routes/account-freeze.js";
import { registerAccountRoutes } from "./routes/accounts.js";
import { registerActionRoutes } from "./routes/actions.js";
import { registerActivityRoutes } from "./routes/activity.js";
import { registerAdminRoutes } from "./routes/admin.js";
import { registerApiKeyRoutes } from "./routes/api-keys.js";
import { registerCapabilityRoutes } from "./routes/capabilities.js";
import { registerDevRoutes } from "./routes/dev.js";
import { registerDeviceRoutes } from "./routes/devices.js";
import { registerFundingRoutes } from "./routes/funding.js";
import { registerGatewayRoutes } from "./routes/gateway.js";
import { registerLockAndRecoveryRoutes } from "./routes/lock-and-recovery.js";
import { registerPortalRoutes } from "./routes/portal.js";
import { registerPublicRoutes } from "./routes/public.js";
import { registerSecurityRoutes } from "./routes/security.js";
import { registerSessionRoutes } from "./routes/sessions.js";
import { registerSignInRoutes } from "./routes/sign-in.js";
import { ErrorResponse } from "./schemas.js";
import { registerSecurityHeaders } from "./security-headers.js";

export type App = FastifyInstance<
  RawServerDefault,
  IncomingMessage,
  ServerResponse,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/** Never log a credential: these paths are censored in every log line (DESIGN "Secrets"). */
export const redactedLogPaths = [
  "req.headers.authorization",
  "req.headers.cookie",
  'req.headers["api-sign"]',
  'req.headers["api-key"]',
  'res.headers["set-cookie"]',
  "*.password",
  "*.newPassword",
  "*.currentPassword",
  "*.token",
  "*.secret",
  "*.code",
  "*.masterKey",
  "*.passcode",
  "*.botCheck",
];

export interface HttpOptions {
  logger: FastifyBaseLogger | false;
}

export async function buildHttpServer(services: Services, options: HttpOptions): Promise<App> {
  const { config } = services;
  const app = Fastify({
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    trustProxy: config.trustedProxies.length > 0 ? config.trustedProxies : false,
    bodyLimit: 64 * 1024,
    // Query strings and URLs with odd lengths are refused by the router, not the handlers.
    routerOptions: { maxParamLength: 200 },
    ajv: { customOptions: { allErrors: false, coerceTypes: "array", removeAdditional: false } },
    return503OnClosing: true,
    // URL decoding and parameter-length errors happen in the router, before the error handler.
    frameworkErrors: frameworkError,
  }).withTypeProvider<TypeBoxTypeProvider>();

  registerErrorHandling(app, async (problem, request) => {
    const account = request.authenticated?.account.id ?? null;
    await services.audit
      .append(
        {
          event: "access.refused",
          outcome: "refused",
          accountId: account,
          actor:
            request.routeOptions.config?.auth === "admin" ? "operator" : account ? "account" : "anonymous",
          details: { code: problem.code, method: request.method, route: request.routeOptions.url ?? null },
        },
        requestContext(request, services.geo),
      )
      // The refusal is answered whatever happens to its audit entry; an outage shows on /readyz.
      .catch((error: unknown) => request.log.warn({ err: error }, "could not audit a refused request"));
  });
  registerInputHygiene(app);
  await app.register(fastifyCookie);
  registerSecurityHeaders(app, config.publicUrl);
  await app.register(fastifySwagger, {
    openapi: {
      info: {
        title: "Portcullis API",
        version: "1",
        description: "The account-access layer of a trading venue. See API.md for the contract.",
      },
      components: {
        securitySchemes: {
          session: {
            type: "http",
            scheme: "bearer",
            description: "Session token (apps) or session cookie (browsers)",
          },
          operator: { type: "http", scheme: "bearer", description: "Operator token for /v1/admin" },
        },
      },
    },
  });
  app.addSchema(ErrorResponse);

  app.addHook("onResponse", async (request, reply) => {
    services.metrics.httpDuration.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? "unmatched",
        status: `${Math.floor(reply.statusCode / 100)}xx`,
      },
      reply.elapsedTime / 1000,
    );
  });

  registerAuth(app, {
    sessions: services.sessions,
    publicUrl: config.publicUrl,
    adminToken: config.adminToken,
  });
  registerPublicRoutes(app, services);
  registerAccountRoutes(app, services);
  registerSignInRoutes(app, services);
  registerSessionRoutes(app, services);
  registerActivityRoutes(app, services);
  registerSecurityRoutes(app, services);
  registerCapabilityRoutes(app, services);
  registerActionRoutes(app, services);
  registerFundingRoutes(app, services);
  registerApiKeyRoutes(app, services);
  registerGatewayRoutes(app, services);
  registerLockAndRecoveryRoutes(app, services);
  registerDeviceRoutes(app, services);
  registerAccountFreezeRoutes(app, services);
  registerAdminRoutes(app, services);
  registerDevRoutes(app, services);
  await registerPortalRoutes(app, services);
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  await app.ready();
  return app;
}
