import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Upstream } from "../../src/http/upstream.js";

/** A venue's server whose answer each test writes; it counts the connections it accepted. */
async function venue(answer: (request: IncomingMessage, response: ServerResponse) => void) {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server: Server = createServer((request, response) => {
    request.resume();
    request.on("end", () => answer(request, response));
  });
  server.on("connection", (socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe("the gateway's connections to the venue", () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });
  const track = <T extends { close(): Promise<void> }>(thing: T): T => {
    cleanup.push(() => thing.close());
    return thing;
  };

  it("passes the venue's status, content type and bytes back, and reuses its connections for calls in turn", async () => {
    const server = track(
      await venue((request, response) => {
        response.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
        response.end(`${request.method} ${request.url} ${request.headers["x-portcullis-key"]}`);
      }),
    );
    const upstream = track(new Upstream(server.origin));
    for (let i = 0; i < 20; i++) {
      const answer = await upstream.send({
        method: "POST",
        path: "/0/private/Balance",
        query: "a=1",
        headers: { "x-portcullis-key": "k1", "content-type": "application/x-www-form-urlencoded" },
        body: "nonce=1",
      });
      expect(answer).toEqual({
        status: 200,
        contentType: "text/plain; charset=utf-8",
        text: "POST /0/private/Balance?a=1 k1",
      });
    }
    // Kept alive: undici may open a second connection while the first is still being released after an
    // answer, and then uses the two in turn; never one a call.
    expect(server.connections()).toBeLessThanOrEqual(2);
  });

  it("does not follow a redirect: the caller gets the venue's own answer, and the other address is never asked", async () => {
    const elsewhere = track(await venue((_request, response) => response.end("followed")));
    const server = track(
      await venue((_request, response) => {
        response.writeHead(302, { location: `${elsewhere.origin}/steal` });
        response.end();
      }),
    );
    const upstream = track(new Upstream(server.origin));
    const answer = await upstream.send({ method: "GET", path: "/0/public/Ticker", query: "" });
    expect(answer.status).toBe(302);
    expect(elsewhere.connections()).toBe(0);
  });

  it("keeps the address on the configured origin whatever the path", async () => {
    const server = track(await venue((request, response) => response.end(request.url)));
    const upstream = track(new Upstream(`${server.origin}/`));
    const answer = await upstream.send({ method: "GET", path: "/api/v1/accounts", query: "currency=BTC" });
    expect(answer.text).toBe("/api/v1/accounts?currency=BTC");
  });

  it("rejects when the venue is not listening, does not answer in time, or stops half-way through", async () => {
    const closed = await venue(() => {});
    await closed.close();
    const timeouts = { answerMs: 300, connectMs: 300 };
    const refused = track(new Upstream(closed.origin, timeouts));
    await expect(refused.send({ method: "GET", path: "/0/public/Time", query: "" })).rejects.toThrow();

    const silent = track(await venue(() => {}));
    const waiting = track(new Upstream(silent.origin, timeouts));
    await expect(waiting.send({ method: "GET", path: "/0/public/Time", query: "" })).rejects.toThrow();

    const stalled = track(
      await venue((_request, response) => {
        response.writeHead(200, { "content-type": "application/json", "content-length": "100" });
        response.write('{"error":[');
      }),
    );
    const stalling = track(new Upstream(stalled.origin, timeouts));
    await expect(stalling.send({ method: "GET", path: "/0/public/Time", query: "" })).rejects.toThrow();
  });
});
