import { Writable } from "node:stream";
import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/app.js";
import { requestLogger } from "../../src/http/request-logger.js";

/** A Fastify app logging JSON lines into memory, with the request logger Portcullis gives its routes. */
function appLoggingAt(level: string) {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n")) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  const logger = createLogger(level, { destination });
  let children = 0;
  const child = logger.child.bind(logger);
  logger.child = ((...args: Parameters<typeof logger.child>) => {
    children += 1;
    return child(...args);
  }) as typeof logger.child;
  const app = Fastify({
    loggerInstance: logger,
    childLoggerFactory: requestLogger,
    disableRequestLogging: true,
  });
  app.get("/quiet", async (request) => {
    request.log.info({ note: "below the level when warn" }, "info line");
    return { ok: true };
  });
  app.get("/loud", async (request) => {
    request.log.warn({ req: { headers: { authorization: "Bearer secret-token" } } }, "warn line");
    request.log.error("error line");
    return { ok: true };
  });
  // Children made from here on: Fastify makes its own while starting.
  const ready = async () => {
    await app.ready();
    children = 0;
  };
  return { app, lines, children: () => children, ready };
}

describe("the request logger", () => {
  it("makes no child logger for a request that writes nothing at the level in force", async () => {
    const { app, lines, children, ready } = appLoggingAt("warn");
    await ready();
    for (let i = 0; i < 3; i += 1) expect((await app.inject({ url: "/quiet" })).statusCode).toBe(200);
    expect(lines).toEqual([]);
    expect(children()).toBe(0);
    await app.close();
  });

  it("writes each line with its request id, credentials censored, once something is logged", async () => {
    const { app, lines, children, ready } = appLoggingAt("info");
    await ready();
    expect((await app.inject({ url: "/quiet" })).statusCode).toBe(200);
    expect((await app.inject({ url: "/loud" })).statusCode).toBe(200);
    const [info, warn, error] = lines;
    expect(info).toMatchObject({ msg: "info line", note: "below the level when warn" });
    expect(warn).toMatchObject({ msg: "warn line", req: { headers: { authorization: "[redacted]" } } });
    expect(error).toMatchObject({ msg: "error line" });
    expect(typeof info!.reqId).toBe("string");
    expect(warn!.reqId).toBe(error!.reqId);
    expect(warn!.reqId).not.toBe(info!.reqId);
    expect(JSON.stringify(lines)).not.toContain("secret-token");
    // One child per request that wrote, made when it first wrote.
    expect(children()).toBe(2);
    await app.close();
  });
});
