import type { IncomingMessage, ServerResponse } from "node:http";
import { isIP } from "node:net";
import fastifySwagger from "@fastify/swagger";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type RawServerDefault } from "fastify";
import type { Services } from "../services.js";
import { addressSubject } from "../support/network.js";
import { invalidRequest, problem } from "../support/problem.js";
import { type RouteAuth, registerAuth, requestContext } from "./auth.js";
import { registerCookies } from "./cookies.js";
import { clientErrors, frameworkErrors, registerErrorHandling } from "./errors.js";
import { registerInputHygiene } from "./input-hygiene.js";
import { requestLogger } from "./request-logger.js";
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
import { exchangeRefusals, registerGatewayRoutes } from "./routes/gateway.js";
import { registerLockAndRecoveryRoutes } from "./routes/lock-and-recovery.js";
import { registerPortalRoutes } from "./routes/portal.js";
import { registerPublicRoutes } from "./routes/public.js";
import { registerSecurityRoutes } from "./routes/security.js";
import { registerSessionRoutes } from "./routes/sessions.js";
import { registerSignInRoutes } from "./routes/sign-in.js";
import { ErrorResponse } from "./schemas.js";
import { everyAnswerHeaders, registerSecurityHeaders } from "./security-headers.js";

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

/** Who a refused request claimed to be, for its audit entry. */
function refusedActor(auth: RouteAuth | undefined, account: string | null): string {
  if (auth === "admin") return "operator";
  if (auth === "service" || auth === "metrics") return auth;
  return account ? "account" : "anonymous";
}

/** The error answer every route may give, for the OpenAPI document. */
const errorBody = {
  description: "An error: a stable code and a sentence for people",
  type: "object",
  properties: {
    error: {
      type: "object",
      properties: { code: { type: "string" }, message: { type: "string" } },
      required: ["code", "message"],
      additionalProperties: true,
    },
  },
  required: ["error"],
};
const errorResponses = { "4xx": errorBody, "5xx": errorBody };

export interface HttpOptions {
  logger: FastifyBaseLogger | false;
}

export async function buildHttpServer(services: Services, options: HttpOptions): Promise<App> {
  const { config } = services;
  // Errors on the gateway's paths answer in the exchange's own shape (see `exchangeRefusals`).
  const exchange = exchangeRefusals(services.clock);
  const app = Fastify({
    ...(options.logger
      ? { loggerInstance: options.logger, childLoggerFactory: requestLogger }
      : { logger: false }),
    trustProxy: config.trustedProxies.length > 0 ? config.trustedProxies : false,
    bodyLimit: 64 * 1024,
    // A request trickling in (slowloris, a body a byte at a time) is answered 408 and its connection
    // closed; Fastify's default is no limit at all on the whole request.
    requestTimeout: services.settings.http.requestTimeoutMs,
    http: {
      headersTimeout: services.settings.http.headersTimeoutMs,
      connectionsCheckingInterval: services.settings.http.timeoutCheckMs,
    },
    // Query strings and URLs with odd lengths are refused by the router, not the handlers.
    routerOptions: { maxParamLength: 200 },
    // Every schema error at once, so a form can mark all its fields in one answer (bodies are capped at 64 KiB).
    ajv: { customOptions: { allErrors: true, coerceTypes: "array", removeAdditional: false } },
    // Turned away by our own hook below instead, so the answer is in the one error shape.
    return503OnClosing: false,
    // URL decoding and parameter-length errors happen in the router, before the error handler.
    frameworkErrors: frameworkErrors(exchange),
    // What Node's HTTP parser refuses (headers too large, not HTTP) gets the same shapes too.
    clientErrorHandler: clientErrors(everyAnswerHeaders(config.publicUrl), exchange),
  }).withTypeProvider<TypeBoxTypeProvider>();

  registerErrorHandling(
    app,
    async (problem, request) => {
      const account = request.authenticated?.account.id ?? null;
      const actor = refusedActor(request.routeOptions.config?.auth, account);
      const event = {
        event: "access.refused",
        outcome: "refused" as const,
        accountId: account,
        actor,
        details: { code: problem.code, method: request.method, route: request.routeOptions.url ?? null },
      };
      const context = requestContext(request, services.geo);
      // Nobody authenticated it: anyone can send these by the thousand, so they are counted per source
      // (the address, an IPv6 one by its /64) and minute, one audit entry each, not one per request.
      const written = account
        ? services.audit.append(event, context)
        : services.audit.appendAggregated(
            `access.refused|${actor}|${addressSubject(request.ip)}|${problem.code}`,
            event,
            context,
          );
      // The refusal is answered whatever happens to its audit entry; an outage shows on /readyz.
      await written.then(
        () => undefined,
        (error: unknown) => request.log.warn({ err: error }, "could not audit a refused request"),
      );
    },
    exchange,
  );
  // While the server drains (close()), a request still arriving on a kept-alive or pipelined connection is
  // turned away with 503 and Connection: close, so its client goes to another instance: in the API's error
  // shape, and on the gateway's paths in the exchange's (Fastify's own 503 has a body of its own).
  let draining = false;
  app.addHook("preClose", (done) => {
    draining = true;
    done();
  });
  app.addHook("onRequest", (_request, reply, done) => {
    if (!draining) return done();
    reply.header("connection", "close");
    done(problem("unavailable", undefined, {}, { "retry-after": "5" }));
  });
  if (config.trustedProxies.length > 0) {
    // Behind trusted proxies the client's address is the one the nearest of them reported; every
    // per-address limit, lockout, place and audit entry is keyed by it, so one that is not an IP address
    // (a proxy writing "unknown", a port, a name) is refused rather than counted as an address of its own.
    app.addHook("onRequest", (request, _reply, done) => {
      // isIP takes an IPv4 address written as IPv6 (::ffff:192.0.2.1) as the IPv6 address it also is.
      if (isIP(request.ip) !== 0) return done();
      done(
        invalidRequest("The client's address, as the proxy forwarded it, is not an IP address.", [
          { field: "x-forwarded-for", message: "The proxy must forward the client's IPv4 or IPv6 address." },
        ]),
      );
    });
  }
  registerInputHygiene(app);
  await registerCookies(app);
  registerSecurityHeaders(app, config.publicUrl);
  await app.register(fastifySwagger, {
    // Documents the one error shape beside each route's own answers; serialisation is not affected.
    transform: ({ schema, url }) => {
      // Kraken-compatible paths document their own refusals, in Kraken's envelope.
      if (!schema || schema.hide || url.startsWith("/0/")) return { schema, url };
      const own = (schema.response ?? {}) as Record<string, unknown>;
      return { schema: { ...schema, response: { ...errorResponses, ...own } }, url };
    },
    openapi: {
      info: {
        title: "Portcullis API",
        version: "1",
        description:
          "The account-access layer of a trading venue. The contract in prose is docs/http-api.md in the repository. Errors answer { error: { code, message } } with a 4xx or 5xx status.",
      },
      components: {
        securitySchemes: {
          session: {
            type: "http",
            scheme: "bearer",
            description: "Session token (apps) or session cookie (browsers)",
          },
          operator: { type: "http", scheme: "bearer", description: "Operator token for /v1/admin" },
          service: {
            type: "http",
            scheme: "bearer",
            description: "The venue backend's service token: grant redemption and gateway checks",
          },
          metrics: {
            type: "http",
            scheme: "bearer",
            description: "The metrics scraper's token for /metrics",
          },
        },
      },
    },
  });
  app.addSchema(ErrorResponse);

  app.addHook("onResponse", (request, reply, done) => {
    services.metrics.observeHttp(
      request.method,
      request.routeOptions.url ?? "unmatched",
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
    done();
  });

  registerAuth(app, {
    sessions: services.sessions,
    publicUrl: config.publicUrl,
    adminToken: config.adminToken,
    serviceToken: config.serviceToken,
    metricsToken: config.metricsToken,
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
