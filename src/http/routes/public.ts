import { sql } from "kysely";
import type { Services } from "../../services.js";
import { Open } from "../schemas.js";
import type { App } from "../server.js";

export function registerPublicRoutes(app: App, services: Services): void {
  app.get(
    "/v1/bot-check",
    {
      schema: {
        tags: ["public"],
        summary: "An ALTCHA proof-of-work challenge for sign-up, sign-in and recovery",
        description:
          "Solve it (the altcha widget or altcha-lib's solver) and send the base64 payload as botCheck.",
        response: { 200: Open({}, "An ALTCHA challenge, signed and with its expiry inside") },
      },
    },
    async (_request, reply) => {
      reply.header("cache-control", "no-store");
      return services.botCheck.createChallenge();
    },
  );

  app.get("/healthz", { schema: { tags: ["operations"], hide: true } }, async () => ({ status: "ok" }));

  app.get("/readyz", { schema: { tags: ["operations"], hide: true } }, async (_request, reply) => {
    try {
      await sql`select 1`.execute(services.storage.db);
    } catch {
      return reply
        .status(503)
        .send({ error: { code: "unavailable", message: "The database is not reachable." } });
    }
    // Asked, not read off the client's state: a connection just dropped can still say "ready".
    if (services.redis) {
      const answered = await services.redis.ping().then(
        () => true,
        () => false,
      );
      if (!answered)
        return reply.status(503).send({ error: { code: "unavailable", message: "Redis is not reachable." } });
    }
    return { status: "ready" };
  });

  // Behind its own token: the counters tell which usernames exist and which passwords were right on a
  // disabled account, which the uniform 401 of sign-in hides.
  app.get(
    "/metrics",
    { config: { auth: "metrics" }, schema: { tags: ["operations"], hide: true } },
    async (_request, reply) => {
      reply.type(services.metrics.registry.contentType);
      return services.metrics.registry.metrics();
    },
  );
}
