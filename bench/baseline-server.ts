/**
 * The baseline for `npm run bench`: a bare Fastify 5 server with one GET route returning a small JSON
 * object, as fast as this machine serves HTTP. Started by bench/run.ts in its own process.
 */
import Fastify from "fastify";

const port = Number(process.env.BENCH_PORT);
if (!Number.isInteger(port) || port <= 0) throw new Error("BENCH_PORT must be a port number");

const app = Fastify({ logger: false });
app.get("/", async () => ({ status: "ok", service: "baseline" }));
await app.listen({ host: "127.0.0.1", port });

const stop = () => void app.close().then(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
