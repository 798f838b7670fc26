/**
 * The baselines for `npm run bench`: a server that answers one route with fixed bytes, as fast as this
 * machine serves HTTP, started by bench/run.ts in its own process. The bytes are the body Portcullis
 * answers for the request being compared (read from BENCH_BODY_FILE), so both put the same bytes on the
 * wire; also the stand-in for the venue behind the gateway.
 *
 *   BENCH_SERVER        "node" (node:http, nothing else) or "fastify" (a bare Fastify 5 route)
 *   BENCH_METHOD        GET or POST (a POST's body is read, and for Fastify parsed as JSON, before answering)
 *   BENCH_PATH          the route (the node server answers every path)
 *   BENCH_BODY_FILE     the answer's bytes
 *   BENCH_CONTENT_TYPE  the answer's Content-Type
 */
import fs from "node:fs";
import http from "node:http";
import Fastify from "fastify";

const port = Number(process.env.BENCH_PORT);
if (!Number.isInteger(port) || port <= 0) throw new Error("BENCH_PORT must be a port number");
const kind = process.env.BENCH_SERVER ?? "fastify";
const method = process.env.BENCH_METHOD === "POST" ? "POST" : "GET";
const route = process.env.BENCH_PATH ?? "/";
const body = process.env.BENCH_BODY_FILE
  ? fs.readFileSync(process.env.BENCH_BODY_FILE)
  : Buffer.from(JSON.stringify({ status: "ok", service: "baseline" }));
const contentType = process.env.BENCH_CONTENT_TYPE ?? "application/json; charset=utf-8";

let close: () => Promise<void>;
if (kind === "node") {
  const server = http.createServer((request, response) => {
    // The request body is read to its end, as any server acting on a POST does.
    request.on("data", () => {});
    request.on("end", () => {
      response.writeHead(200, { "content-type": contentType, "content-length": body.length });
      response.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  close = () => new Promise((resolve) => server.close(() => resolve()));
} else {
  const app = Fastify({ logger: false });
  app.route({ method, url: route, handler: (_request, reply) => reply.type(contentType).send(body) });
  await app.listen({ host: "127.0.0.1", port });
  close = () => app.close();
}

const stop = () => void close().then(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
