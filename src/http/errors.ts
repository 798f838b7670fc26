import { type ServerResponse, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { isDependencyFailure } from "../support/db-errors.js";
import { type SchemaIssue, validationDetails } from "../support/error-codes.js";
import { Problem, problem } from "../support/problem.js";
import { isTokenAuth } from "./auth.js";

/**
 * The refusals an exchange's own clients understand, for errors on the gateway's paths: a Kraken, KuCoin or
 * Kraken Futures client parses its exchange's error shape, not this API's.
 */
export type ExchangeReason =
  | "invalid_key"
  | "permission"
  | "unknown_method"
  | "invalid_arguments"
  | "rate_limit"
  | "unavailable";

/**
 * A refusal in the exchange's own shape for a request to `target` (its path, and any query) on one of the
 * gateway's paths; null for any other path.
 */
export type ExchangeRefusal = (
  target: string,
  ip: string,
  reason: ExchangeReason,
) => { status: number; body: unknown } | null;

/** What an exchange's client is told for an error of this API's status. */
function exchangeReason(status: number): ExchangeReason {
  if (status === 401) return "invalid_key";
  if (status === 403) return "permission";
  if (status === 404 || status === 405) return "unknown_method";
  if (status === 429) return "rate_limit";
  if (status >= 500) return "unavailable";
  return "invalid_arguments";
}

/**
 * The answer to `problem` for a request to `target` (null when it is unknown): in this API's shape, or on
 * the gateway's paths in the exchange's own.
 */
function answerTo(
  problem: Problem,
  target: string | null,
  ip: string,
  exchange?: ExchangeRefusal,
): { status: number; body: unknown } {
  const refusal = target === null ? null : exchange?.(target, ip, exchangeReason(problem.status));
  return (
    refusal ?? {
      status: problem.status,
      body: { error: { code: problem.code, message: problem.message, ...problem.details } },
    }
  );
}

/** Answers `problem`: in this API's shape, or on the gateway's paths in the exchange's own. */
function send(reply: FastifyReply, problem: Problem, exchange?: ExchangeRefusal) {
  for (const [name, value] of Object.entries(problem.headers)) reply.header(name, value);
  const { status, body } = answerTo(problem, reply.request.url, reply.request.ip, exchange);
  return reply.status(status).type("application/json; charset=utf-8").send(body);
}

/** Maps framework errors to their client-side codes by Fastify's error code. */
const frameworkProblems: Record<string, (error: FastifyError) => Problem> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: () =>
    problem("unsupported_media_type", "Send the body as application/json."),
  FST_ERR_CTP_BODY_TOO_LARGE: () => problem("payload_too_large", "The request body is too large."),
  FST_ERR_CTP_EMPTY_JSON_BODY: () =>
    problem("invalid_request", "The request body is empty.", {
      details: [{ field: "body", message: "Send the request's fields as a JSON object." }],
    }),
  FST_ERR_CTP_INVALID_JSON_BODY: () => problem("invalid_json", "The request body is not valid JSON."),
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: () => problem("invalid_request", "The Content-Length header is wrong."),
};

/**
 * Errors raised by the router itself (undecodable URL, overlong parameter), answered in the same shape as
 * every other error: this API's, or on the gateway's paths the exchange's.
 */
export function frameworkErrors(exchange?: ExchangeRefusal) {
  return (error: FastifyError, _request: FastifyRequest, reply: FastifyReply) => {
    if (error.code === "FST_ERR_MAX_PARAM_LENGTH") return send(reply, problem("uri_too_long"), exchange);
    return send(reply, problem("invalid_request", "The address could not be decoded."), exchange);
  };
}

/**
 * The request target of a request Node's HTTP parser refused, from its request line, if the bytes it kept
 * begin with one.
 */
function rawTarget(raw: unknown): string | null {
  if (!Buffer.isBuffer(raw)) return null;
  // A request line is a method, one space, the target, one space; nothing the parser kept past 8 KiB is read.
  const match = /^[A-Z]{1,20} (\/[^ \r\n]{0,8000}) /.exec(raw.subarray(0, 8192).toString("latin1"));
  return match ? match[1]! : null;
}

/**
 * What Node's HTTP parser refuses before there is a request to route (headers over its limit, a request
 * that is not HTTP, one that took too long to arrive) answered in the same shape as every other error:
 * this API's, or on the gateway's paths the exchange's. The path is read from the request line when the
 * bytes the parser failed on still hold it, or from the request itself when it was dispatched and its
 * body was still arriving; headers that overflowed across several packets, and headers that took too
 * long, leave neither, and are answered in this API's shape. The connection is closed after the answer:
 * what follows on it cannot be trusted to start a request.
 */
export function clientErrors(everyAnswer: Record<string, string>, exchange?: ExchangeRefusal) {
  return (error: NodeJS.ErrnoException & { rawPacket?: unknown }, socket: Socket): void => {
    if (error.code === "ECONNRESET" || socket.destroyed) return;
    // An answer still open on this connection belongs either to the refused request itself, when the
    // request was dispatched and its body was still arriving (a bad chunk, a body that took too long),
    // or to a request pipelined before the refused one.
    const open = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    const inFlight = open && !open.writableFinished ? open : null;
    const ownRequest = inFlight !== null && !inFlight.req.complete;
    if (ownRequest && inFlight.headersSent) {
      // Its answer has begun: nothing can be added to it.
      socket.destroy();
      return;
    }
    const refused =
      error.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? problem("request_timeout")
        : error.code === "HPE_HEADER_OVERFLOW"
          ? problem("headers_too_large")
          : problem("bad_request", "The request is not a valid HTTP request.");
    const target = ownRequest ? (inFlight.req.url ?? null) : rawTarget(error.rawPacket);
    const answered = answerTo(refused, target, socket.remoteAddress ?? "", exchange);
    const status = answered.status;
    const body = JSON.stringify(answered.body);
    const headers = {
      ...everyAnswer,
      ...refused.headers,
      "content-type": "application/json; charset=utf-8",
      "content-length": String(Buffer.byteLength(body)),
      connection: "close",
    };
    const answer = () => {
      if (socket.writable) {
        const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
        socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\n${lines.join("")}\r\n${body}`);
      }
      socket.destroySoon();
    };
    // A request pipelined before the refused one is answered first, so answers keep the requests' order.
    if (inFlight && !ownRequest) inFlight.once("close", answer);
    else answer();
  };
}

/** Writes a refused request to the audit log (ASVS 16.3.2); must not throw. */
export type RefusalRecorder = (problem: Problem, request: FastifyRequest) => Promise<void>;

/**
 * Failed authorization worth an audit entry: every 403 but the step-up request (the normal way a change
 * asks for confirmation), a 423 hold, and a refused operator, service or metrics token. A missing or
 * expired session (401 on the account routes) is the ordinary signed-out case and is not recorded.
 */
function isRecordedRefusal(problem: Problem, request: FastifyRequest): boolean {
  if (problem.status === 403) return problem.code !== "step_up_required";
  if (problem.status === 423) return true;
  return problem.status === 401 && isTokenAuth(request.routeOptions.config?.auth);
}

/**
 * The one place errors become responses: a Problem keeps its status and code; validation and parsing
 * failures become 4xx; an unreachable dependency becomes 503; anything else is our bug, logged, and
 * answered 500 without internals.
 */
export function registerErrorHandling(
  app: FastifyInstance,
  refusals?: RefusalRecorder,
  exchange?: ExchangeRefusal,
): void {
  app.setErrorHandler(async (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    if (error instanceof Problem) {
      if (refusals && isRecordedRefusal(error, request)) await refusals(error, request);
      return send(reply, error, exchange);
    }
    if (error.validation) {
      const details = validationDetails(error.validation as SchemaIssue[], error.validationContext);
      return send(reply, problem("invalid_request", undefined, { details }), exchange);
    }
    const framework = error.code ? frameworkProblems[error.code] : undefined;
    if (framework) return send(reply, framework(error), exchange);
    if (error instanceof SyntaxError || (error.statusCode === 400 && /JSON/i.test(error.message))) {
      return send(reply, problem("invalid_json", "The request body is not valid JSON."), exchange);
    }
    if (isDependencyFailure(error)) {
      request.log.warn({ err: { message: error.message, code: error.code } }, "dependency unavailable");
      return send(reply, problem("unavailable", undefined, {}, { "retry-after": "5" }), exchange);
    }
    if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
      return send(
        reply,
        new Problem(error.statusCode, "bad_request", "The request could not be understood."),
        exchange,
      );
    }
    request.log.error({ err: error }, "unhandled error");
    return send(reply, problem("internal_error"), exchange);
  });

  app.setNotFoundHandler((_request, reply) =>
    send(reply, problem("not_found", "There is nothing at this address."), exchange),
  );
}
