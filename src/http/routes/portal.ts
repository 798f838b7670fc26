import fs from "node:fs";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { Services } from "../../services.js";
import type { App } from "../server.js";

/**
 * Where `npm run build` puts the portal (web/vite.config.ts). The same from src/ (tsx) and dist/ (built):
 * both are two folders below the repository root.
 */
export const portalDirectory = fileURLToPath(new URL("../../../dist/web/", import.meta.url));

/** Paths that belong to the API and operations: never answered with the portal's page. */
const reservedPrefixes = ["/v1/", "/0/", "/dev/", "/.well-known/"];
const reservedPaths = new Set(["/metrics", "/healthz", "/readyz", "/openapi.json", "/v1", "/0", "/dev"]);

function isReserved(path: string): boolean {
  return reservedPaths.has(path) || reservedPrefixes.some((prefix) => path.startsWith(prefix));
}

const notBuilt = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Portcullis</title></head>
<body><main><h1>The portal has not been built</h1><p>Run <code>npm run build</code> (or <code>npm start</code>), then reload this page. The API is available under /v1.</p></main></body></html>`;

/** The root's answer for clients that do not ask for HTML. */
export function welcome(origin: string, development: boolean): string {
  return [
    "Portcullis: the account-access layer of a trading venue.",
    "",
    `The web portal:       ${origin}/ (open it in a browser)`,
    `The HTTP API (v1):    ${origin}/v1/...`,
    `Its OpenAPI document: ${origin}/openapi.json`,
    `Status:               ${origin}/v1/status`,
    ...(development ? [`Emails (development): ${origin}/dev/mailbox`] : []),
    "",
  ].join("\n");
}

/**
 * The web portal (web/): hashed assets under /assets/ and, for every other page address a browser asks
 * for, the single page that routes in the browser. One wildcard route, registered last in find-my-way's
 * order of precedence, so every API route stays its own; API-looking paths and requests that do not
 * accept HTML get the API's JSON 404.
 */
export async function registerPortalRoutes(app: App, services: Services): Promise<void> {
  // sendFile only, no routes of its own: the one wildcard below decides what is a file.
  await app.register(fastifyStatic, { root: portalDirectory, serve: false });

  app.get("/*", { schema: { hide: true } }, async (request, reply) => {
    const path = request.url.split("?")[0]!;
    if (path.startsWith("/assets/")) {
      // File names carry a content hash: a new build is a new name, so browsers may keep these forever.
      return reply.sendFile(path.slice(1), { dotfiles: "deny", maxAge: "365d", immutable: true });
    }
    const acceptsHtml = (request.headers.accept ?? "").includes("text/html");
    // curl and other non-browser clients asking for the root learn where things are, in plain text.
    if (path === "/" && !acceptsHtml) {
      reply.type("text/plain; charset=utf-8");
      return welcome(services.config.publicUrl.origin, services.config.env === "development");
    }
    if (isReserved(path) || !acceptsHtml) return reply.callNotFound();
    // Read on each request: a rebuilt portal is served without restarting the server.
    const page = await fs.promises.readFile(`${portalDirectory}index.html`, "utf8").catch(() => null);
    reply.type("text/html; charset=utf-8");
    if (page === null) return reply.status(503).send(notBuilt);
    return page;
  });
}
