import net, { type AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Harness } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  json: unknown;
  /** Every byte the server sent before it closed the connection. */
  text: string;
}

/** Writes `chunks` to a new connection, a pause between them, and reads until the server closes it. */
async function exchange(port: number, chunks: string[]): Promise<RawAnswer> {
  const socket = net.connect(port, "127.0.0.1");
  let text = "";
  socket.setEncoding("latin1");
  socket.on("data", (chunk: string) => {
    text += chunk;
  });
  socket.on("error", () => {});
  const closed = new Promise((resolve) => socket.once("close", resolve));
  await new Promise((resolve) => socket.once("connect", resolve));
  for (const chunk of chunks) {
    if (socket.destroyed) break;
    socket.write(chunk);
    await sleep(20);
  }
  await closed;
  // The last answer on the connection: the one to the request the parser refused.
  const start = text.lastIndexOf("HTTP/1.1 ");
  const end = text.indexOf("\r\n\r\n", start);
  const [statusLine, ...lines] = text.slice(start, end).split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  const body = text.slice(end + 4);
  return { status: Number(statusLine!.split(" ")[1]), headers, json: JSON.parse(body), text };
}

const overflowing = `x-filler: ${"a".repeat(20_000)}\r\n`;
const api = (code: string) => ({ error: { code, message: expect.stringMatching(/^[A-Z].*\.$/) } });
const kraken = { error: ["EGeneral:Invalid arguments"], result: {} };

describe.each(engines)("requests Node's HTTP parser refuses, on %s", (engine) => {
  let h: Harness;
  let port: number;
  beforeAll(async () => {
    h = await Harness.create(engine);
    await h.app.http.listen({ port: 0, host: "127.0.0.1" });
    port = (h.app.http.server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await h.close();
  });

  it.each([
    [
      "headers over the limit",
      `GET /v1/session HTTP/1.1\r\nhost: a\r\n${overflowing}\r\n`,
      431,
      api("headers_too_large"),
    ],
    [
      "a header name with a space",
      "GET /v1/session HTTP/1.1\r\nhost: a\r\nbad name: 1\r\n\r\n",
      400,
      api("bad_request"),
    ],
    [
      "both Content-Length and Transfer-Encoding (a smuggling attempt)",
      "POST /v1/sign-in HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\nabc",
      400,
      api("bad_request"),
    ],
    [
      "a request line with spaces in the target",
      "GET /v1/se ssion HTTP/1.1\r\nhost: a\r\n\r\n",
      400,
      api("bad_request"),
    ],
    ["something that is not HTTP", "HELLO THERE\r\n\r\n", 400, api("bad_request")],
    [
      "a NUL byte in a header value",
      "GET /v1/session HTTP/1.1\r\nhost: a\r\nx-a: b\u0000c\r\n\r\n",
      400,
      api("bad_request"),
    ],
    [
      "a chunked body with a chunk size that is not hexadecimal",
      "POST /v1/sign-in HTTP/1.1\r\nhost: a\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n",
      400,
      api("bad_request"),
    ],
    [
      "Kraken: a chunked body with a chunk size that is not hexadecimal",
      "POST /0/private/Balance HTTP/1.1\r\nhost: a\r\ncontent-type: application/x-www-form-urlencoded\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nnonce=1\r\n",
      400,
      kraken,
    ],
    [
      "Kraken: headers over the limit",
      `POST /0/private/Balance HTTP/1.1\r\nhost: a\r\n${overflowing}\r\n`,
      400,
      kraken,
    ],
    [
      "Kraken: a header name with a space",
      "POST /0/private/Balance HTTP/1.1\r\nbad name: 1\r\n\r\n",
      400,
      kraken,
    ],
    [
      "Kraken public: a header name with a space",
      "GET /0/public/Time HTTP/1.1\r\nbad name: 1\r\n\r\n",
      400,
      kraken,
    ],
    [
      "KuCoin: headers over the limit",
      `GET /api/v1/accounts?type=trade HTTP/1.1\r\nhost: a\r\n${overflowing}\r\n`,
      400,
      { code: "400100", msg: expect.any(String) },
    ],
    [
      "Kraken Futures: a header name with a space",
      "POST /derivatives/api/v3/sendorder HTTP/1.1\r\nbad name: 1\r\n\r\n",
      400,
      { result: "error", error: "invalidArgument" },
    ],
  ])(
    "answers %s in the one error shape for its path, and closes the connection",
    async (_, request, status, shape) => {
      const answer = await exchange(port, [request]);
      expect(answer.status).toBe(status);
      expect(answer.json).toMatchObject(shape);
      expect(answer.headers["content-type"]).toBe("application/json; charset=utf-8");
      expect(answer.headers["x-content-type-options"]).toBe("nosniff");
      expect(answer.headers["cache-control"]).toBe("no-store");
      expect(answer.headers.connection).toBe("close");
      expect(answer.text).not.toMatch(/statusCode|Client Error|stack/);
    },
  );

  it("answers the good request before a bad one pipelined behind it, then refuses the bad one", async () => {
    const answer = await exchange(port, [
      "GET /healthz HTTP/1.1\r\nhost: a\r\n\r\nGET /v1/session HTTP/1.1\r\nbad name: 1\r\n\r\n",
    ]);
    expect(answer.text.startsWith("HTTP/1.1 200 ")).toBe(true);
    expect(answer.status).toBe(400);
    expect(answer.json).toEqual(api("bad_request"));
  });

  it("still serves the next connection as usual", async () => {
    const response = await fetch(`http://127.0.0.1:${port}/v1/session`);
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ error: { code: "unauthenticated" } });
  });
});

describe.each(engines)("a request that takes too long to arrive, on %s", (engine) => {
  let h: Harness;
  let port: number;
  beforeAll(async () => {
    // The server's own timeouts, shortened.
    h = await Harness.create(engine, {
      settings: { http: { headersTimeoutMs: 300, requestTimeoutMs: 300, timeoutCheckMs: 50 } },
    });
    await h.app.http.listen({ port: 0, host: "127.0.0.1" });
    port = (h.app.http.server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await h.close();
  });

  it.each([
    ["headers", ["GET /v1/session HTTP/1.1\r\n", "host: a\r\n"], 408, api("request_timeout")],
    [
      "a body",
      [
        "POST /v1/sign-in HTTP/1.1\r\nhost: a\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n{",
      ],
      408,
      api("request_timeout"),
    ],
    [
      "Kraken: a body",
      [
        "POST /0/private/Balance HTTP/1.1\r\nhost: a\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 40\r\n\r\nnonce=1",
      ],
      400,
      kraken,
    ],
  ])(
    "answers %s trickling in with a refusal in its path's shape, and closes the connection",
    async (_, chunks, status, shape) => {
      const answer = await exchange(port, chunks);
      expect(answer.status).toBe(status);
      expect(answer.json).toMatchObject(shape);
      expect(answer.headers.connection).toBe("close");
    },
  );
});
