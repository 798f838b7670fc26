import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { Harness } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";
import { until } from "../helpers/until.js";

/** The responses read from one connection, in order: status, headers (lower-case names) and body. */
function responses(text: string): { status: number; headers: Record<string, string>; body: string }[] {
  const found: { status: number; headers: Record<string, string>; body: string }[] = [];
  let rest = text;
  while (rest.startsWith("HTTP/1.1 ")) {
    const end = rest.indexOf("\r\n\r\n");
    const [statusLine, ...lines] = rest.slice(0, end).split("\r\n");
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers["content-length"]);
    found.push({
      status: Number(statusLine!.split(" ")[1]),
      headers,
      body: rest.slice(end + 4, end + 4 + length),
    });
    rest = rest.slice(end + 4 + length);
  }
  return found;
}

describe.each(engines)("a request arriving while the server drains, on %s", (engine) => {
  it("is turned away with 503 and Connection: close, in the API's shape or the exchange's", async () => {
    // The venue answers market data slowly, so a request is still in flight when the server starts to close.
    const venue = http.createServer((_request, response) => {
      setTimeout(() => {
        response.setHeader("content-type", "application/json");
        response.end('{"error":[],"result":{}}');
      }, 300);
    });
    await new Promise<void>((resolve) => venue.listen(0, "127.0.0.1", resolve));
    const venuePort = (venue.address() as AddressInfo).port;
    const h = await Harness.create(engine, {
      env: { PORTCULLIS_UPSTREAM_URL: `http://127.0.0.1:${venuePort}` },
    });
    try {
      await h.app.http.listen({ port: 0, host: "127.0.0.1" });
      const port = (h.app.http.server.address() as AddressInfo).port;
      const connect = async () => {
        const socket = net.connect(port, "127.0.0.1");
        const state = { text: "", ended: false };
        socket.setEncoding("utf8");
        socket.on("data", (chunk: string) => {
          state.text += chunk;
        });
        socket.on("close", () => {
          state.ended = true;
        });
        await new Promise((resolve) => socket.once("connect", resolve));
        return { socket, state };
      };
      const kraken = await connect();
      const api = await connect();
      const slow = "GET /0/public/Ticker?pair=XBTUSD HTTP/1.1\r\nHost: localhost\r\n\r\n";
      kraken.socket.write(slow);
      api.socket.write(slow);
      await sleep(100);
      const closed = h.app.close();
      await sleep(20);
      // Pipelined behind the requests still in flight, so they reach the server while it drains.
      kraken.socket.write(
        "POST /0/private/Balance HTTP/1.1\r\nHost: localhost\r\n" +
          "Content-Type: application/x-www-form-urlencoded\r\nAPI-Key: k\r\nAPI-Sign: s\r\nContent-Length: 7\r\n\r\nnonce=1",
      );
      api.socket.write("GET /v1/session HTTP/1.1\r\nHost: localhost\r\n\r\n");
      await closed;
      await until(() => kraken.state.ended && api.state.ended, "both connections to be closed");

      const [tickerAnswer, krakenRefusal] = responses(kraken.state.text);
      expect(tickerAnswer?.status).toBe(200);
      expect(krakenRefusal?.status).toBe(503);
      expect(krakenRefusal?.headers.connection).toBe("close");
      expect(JSON.parse(krakenRefusal!.body)).toEqual({ error: ["EService:Unavailable"], result: {} });

      const [, apiRefusal] = responses(api.state.text);
      expect(apiRefusal?.status).toBe(503);
      expect(apiRefusal?.headers.connection).toBe("close");
      expect(apiRefusal?.headers["retry-after"]).toBe("5");
      expect(JSON.parse(apiRefusal!.body).error).toMatchObject({ code: "unavailable" });
    } finally {
      await h.close().catch(() => {});
      venue.close();
    }
  });
});
