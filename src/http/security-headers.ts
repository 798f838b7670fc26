import type { FastifyInstance } from "fastify";

/** The headers every answer carries, those written below the framework (`clientErrors`) too. */
export function everyAnswerHeaders(publicUrl: URL): Record<string, string> {
  return {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    ...(publicUrl.protocol === "https:"
      ? { "strict-transport-security": "max-age=31536000; includeSubDomains" }
      : {}),
  };
}

/**
 * Security headers, computed once. Every answer says nosniff, no-store (account data is never cached on
 * the way) and, behind https, HSTS. Pages additionally get the browser-facing policies @fastify/helmet
 * would send (CSP, framing, opener and resource policies): they protect documents, not JSON, and sending
 * them with every API answer cost a sixth of a session check's time in writing headers. helmet itself
 * rebuilt its middleware on every request, another 3–7%.
 */
export function registerSecurityHeaders(app: FastifyInstance, publicUrl: URL): void {
  const everyAnswer = everyAnswerHeaders(publicUrl);
  const pages: Record<string, string> = {
    // The portal is files from this origin only: no inline script, no eval, no third party. The ALTCHA
    // widget solves its proof of work in a worker file of its own (worker-src 'self'); the TOTP QR code is
    // an SVG the server made, shown as a data: image.
    "content-security-policy": [
      "default-src 'self'",
      "script-src 'self'",
      "worker-src 'self'",
      "style-src 'self'",
      "img-src 'self' data:",
      "connect-src 'self'",
      "frame-ancestors 'none'",
      "base-uri 'self'",
      "form-action 'self'",
      "object-src 'none'",
    ].join("; "),
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "origin-agent-cluster": "?1",
    "referrer-policy": "no-referrer",
    "x-dns-prefetch-control": "off",
    "x-frame-options": "DENY",
    "x-permitted-cross-domain-policies": "none",
  };
  // A callback hook, not an async one: it runs on every answer, and a promise per answer is measurable.
  app.addHook("onSend", (_request, reply, payload, done) => {
    // The portal's content-hashed assets are the one thing worth caching (src/http/routes/portal.ts).
    const immutable = String(reply.getHeader("cache-control") ?? "").includes("immutable");
    reply.headers(everyAnswer);
    if (immutable) reply.header("cache-control", "public, max-age=31536000, immutable");
    const type = reply.getHeader("content-type");
    if (typeof type === "string" && type.startsWith("text/html")) reply.headers(pages);
    done(null, payload);
  });
}
