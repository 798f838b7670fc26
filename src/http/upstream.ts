import { Agent, request } from "undici";

/** The venue's answer as the gateway passes it back: its status, its content type and its text. */
export interface UpstreamAnswer {
  status: number;
  contentType: string;
  text: string;
}

export interface UpstreamRequest {
  /** As the caller sent it: the routes take GET, POST, PUT and DELETE. */
  method: string;
  /** The path on the venue's server, written by the gateway (a method's name, or a listed path). */
  path: string;
  /** The query, already re-serialised from what was checked; "" for none. */
  query: string;
  headers?: Record<string, string>;
  /** The canonical body that was checked; none for a GET. */
  body?: string;
}

/**
 * How long the venue may take to start its answer, and may then pause between two parts of it, before the
 * caller is told it is unavailable. Two timers the pool keeps per connection, not one per request: an
 * `AbortSignal.timeout` for each request cost about 18 µs of CPU.
 */
const ANSWER_TIMEOUT_MS = 10_000;
/** How long a connection to the venue may take to open. */
const CONNECT_TIMEOUT_MS = 5_000;
/** Idle connections to the venue are kept this long, so that a bot's next call reuses one. */
const KEEP_ALIVE_MS = 30_000;

/**
 * The gateway's connections to the venue's upstream: one pool of kept-alive connections per instance.
 *
 * A proxied request used to go through the global `fetch`, which costs about 400 µs of CPU on the event
 * loop for each request (its WHATWG streams, headers and abort signal), against about 70 µs for undici's
 * `request` on kept-alive connections; on the proxied path that was the gateway's largest cost. Redirects
 * are not followed: the venue's answer, whatever its status, goes back to the caller as it is.
 */
export class Upstream {
  private readonly agent: Agent;
  /** The configured origin as `new URL` writes it, to compare each address with. */
  private readonly venueOrigin: string;

  constructor(
    private readonly origin: string,
    timeouts: { answerMs: number; connectMs: number } = {
      answerMs: ANSWER_TIMEOUT_MS,
      connectMs: CONNECT_TIMEOUT_MS,
    },
  ) {
    this.venueOrigin = new URL(origin).origin;
    this.agent = new Agent({
      keepAliveTimeout: KEEP_ALIVE_MS,
      headersTimeout: timeouts.answerMs,
      bodyTimeout: timeouts.answerMs,
      connect: { timeout: timeouts.connectMs },
    });
  }

  /** Sends one request; rejects when the venue cannot be reached or does not answer in time. */
  async send(outgoing: UpstreamRequest): Promise<UpstreamAnswer> {
    // The address is the configured origin with the gateway's path, exactly: the dialects refuse empty,
    // "." and ".." segments and encoded dots and slashes before a path gets here, and should `new URL`
    // still resolve, encode or cut the path into another (or leave the origin), nothing is sent.
    const target = new URL(outgoing.path, this.origin);
    if (target.pathname !== outgoing.path || target.origin !== this.venueOrigin)
      throw new Error("the upstream address would not be the path that was checked");
    target.search = outgoing.query;
    const answer = await request(target, {
      dispatcher: this.agent,
      method: outgoing.method,
      headers: outgoing.headers ?? {},
      body: outgoing.body,
    });
    const text = await answer.body.text();
    const contentType = answer.headers["content-type"];
    return {
      status: answer.statusCode,
      contentType: typeof contentType === "string" ? contentType : "application/json",
      text,
    };
  }

  /** Closes the kept-alive connections (the server's shutdown). */
  close(): Promise<void> {
    return this.agent.close();
  }
}
