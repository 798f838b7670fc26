import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { constantTimeMatcher } from "../crypto/tokens.js";
import type { Principal, SessionService } from "../sessions/sessions.js";
import type { GeoLocator } from "../support/geo.js";
import { describePlace } from "../support/geo.js";
import { accountFrozen, forbidden, Problem, unauthenticated } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import { requestCookie } from "./cookies.js";

/**
 * Who may call a route. "session": a signed-in account. The other three are bearer tokens, one per holder,
 * so each can do only its own job: "admin" the operators (/v1/admin), "service" the venue's backend
 * (redeeming grants, checking gateway requests and WebSocket tokens), "metrics" the scraper (GET /metrics).
 */
export type RouteAuth = "none" | "session" | TokenAuth;
export type TokenAuth = "admin" | "service" | "metrics";

export interface Authenticated extends Principal {
  token: string;
  via: "cookie" | "bearer";
}

declare module "fastify" {
  interface FastifyContextConfig {
    /** Who may call the route; routes without it are public. */
    auth?: RouteAuth;
  }
  interface FastifyRequest {
    authenticated: Authenticated | null;
  }
}

export interface AuthOptions {
  sessions: SessionService;
  publicUrl: URL;
  adminToken: string | undefined;
  serviceToken: string | undefined;
  metricsToken: string | undefined;
}

/** Whether the route is one of the token-holder kinds (not a person's session). */
export function isTokenAuth(auth: RouteAuth | undefined): auth is TokenAuth {
  return auth === "admin" || auth === "service" || auth === "metrics";
}

const unsafeMethods = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** What a session that must enroll a new second factor may still do. */
const enrollmentRoutes = new Set([
  "GET /v1/session",
  "DELETE /v1/session",
  "GET /v1/security",
  "GET /v1/security/factors",
  "POST /v1/security/totp",
  "POST /v1/security/totp/:enrollmentId/confirm",
  "POST /v1/security/webauthn/options",
  "POST /v1/security/webauthn",
  // On a locked account enrolling is refused: the bypass session unlocks with the Master Key it proved.
  "POST /v1/security/global-lock/unlock",
  "GET /v1/actions/:id",
  "POST /v1/actions/:id/confirm",
  "POST /v1/actions/:id/webauthn/options",
]);

/**
 * What a session of a frozen account may do: see the freeze (its account and capabilities), sign out, and lift it with
 * the Master Key and a step-up. Everything else answers 423 account_frozen.
 */
const frozenRoutes = new Set([
  "GET /v1/session",
  "GET /v1/capabilities",
  "DELETE /v1/session",
  "POST /v1/security/account-lock/lift",
  "GET /v1/actions/:id",
  "POST /v1/actions/:id/confirm",
  "POST /v1/actions/:id/webauthn/options",
]);

/** `__Host-` and Secure whenever the public URL is https (behaviour §5); browsers refuse both on plain http. */
export function sessionCookieName(publicUrl: URL): string {
  return publicUrl.protocol === "https:" ? "__Host-portcullis_session" : "portcullis_session";
}

export function setSessionCookie(
  reply: FastifyReply,
  publicUrl: URL,
  token: string,
  expiresAt: number,
): void {
  reply.setCookie(sessionCookieName(publicUrl), token, {
    path: "/",
    httpOnly: true,
    sameSite: "strict",
    secure: publicUrl.protocol === "https:",
    expires: new Date(expiresAt),
  });
}

export function clearSessionCookie(reply: FastifyReply, publicUrl: URL): void {
  reply.clearCookie(sessionCookieName(publicUrl), {
    path: "/",
    httpOnly: true,
    sameSite: "strict",
    secure: publicUrl.protocol === "https:",
  });
}

function bearerToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (!header) return null;
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  return match ? match[1]! : null;
}

/**
 * Authentication before the body is even parsed: `config.auth` on a route says who may call it. Browser
 * sessions on state-changing requests must also prove same origin (behaviour §5), which with SameSite=Strict
 * cookies closes cross-site request forgery.
 */
export function registerAuth(app: FastifyInstance, options: AuthOptions): void {
  const cookieName = sessionCookieName(options.publicUrl);
  const origin = options.publicUrl.origin;
  app.decorateRequest("authenticated", null);
  const tokens: Record<TokenAuth, { token: string | undefined; disabled: string }> = {
    admin: { token: options.adminToken, disabled: "The admin API is not enabled on this server." },
    service: {
      token: options.serviceToken,
      disabled: "The service API is not enabled on this server (no PORTCULLIS_SERVICE_TOKEN).",
    },
    metrics: {
      token: options.metricsToken,
      disabled: "Metrics are not enabled on this server (no PORTCULLIS_METRICS_TOKEN).",
    },
  };
  const matchers: Partial<Record<TokenAuth, (presented: string) => boolean>> = Object.fromEntries(
    Object.entries(tokens).flatMap(([auth, { token }]) =>
      token ? [[auth, constantTimeMatcher(token)]] : [],
    ),
  );

  /** Origin and token checks are synchronous; only a session needs a lookup. */
  const checkOriginAndToken = (request: FastifyRequest): "session" | "done" => {
    const requestOrigin = request.headers.origin;
    // A browser announcing another origin never gets to change anything, signed in or not.
    if (unsafeMethods.has(request.method) && requestOrigin !== undefined && requestOrigin !== origin) {
      throw new Problem(403, "forbidden", "This request came from another site and was refused.", {
        reason: "origin_mismatch",
      });
    }
    const auth = request.routeOptions.config?.auth ?? "none";
    if (auth === "none") return "done";
    if (isTokenAuth(auth)) {
      const expected = tokens[auth];
      if (!expected.token) throw forbidden(expected.disabled);
      const token = bearerToken(request);
      if (!token || !matchers[auth]!(token)) throw unauthenticated();
      return "done";
    }
    return "session";
  };

  // A callback hook: the gateway's checks, public routes and sessions answered from the cache pass
  // without a promise of their own.
  app.addHook("onRequest", (request, _reply, done) => {
    let presented: PresentedSession;
    try {
      if (checkOriginAndToken(request) === "done") {
        done();
        return;
      }
      presented = presentedSession(request);
      const cached = options.sessions.cachedPrincipal(presented.token);
      if (cached) {
        admit(request, presented, cached);
        done();
        return;
      }
    } catch (error) {
      done(error as Error);
      return;
    }
    options.sessions
      .authenticate(presented.token)
      .then((principal) => admit(request, presented, principal))
      .then(() => done(), done);
  });

  /** The session token a request presents: a bearer token, else the session cookie. */
  const presentedSession = (request: FastifyRequest): PresentedSession => {
    const bearer = bearerToken(request);
    const token = bearer ?? requestCookie(request, cookieName);
    if (!token) throw unauthenticated();
    return { token, via: bearer ? "bearer" : "cookie" };
  };

  /** The rules a session's request must pass once its principal is known; throws the refusal. */
  const admit = (request: FastifyRequest, presented: PresentedSession, principal: Principal | null): void => {
    if (!principal || principal.account.disabled) throw unauthenticated();
    const requestOrigin = request.headers.origin;
    if (presented.via === "cookie" && unsafeMethods.has(request.method) && requestOrigin !== origin) {
      throw new Problem(
        403,
        "forbidden",
        "Browser requests that change something must come from this site.",
        {
          reason: "origin_required",
        },
      );
    }
    // A frozen account's session (only ones opened after the freeze: it ended the others) sees the freeze.
    if (
      principal.account.frozenAt !== null &&
      !frozenRoutes.has(`${request.method} ${request.routeOptions.url}`)
    ) {
      throw accountFrozen();
    }
    // A session opened with the Master Key bypass may only enroll a new second factor (behaviour §7).
    if (
      principal.session.enrollmentRequired &&
      !enrollmentRoutes.has(`${request.method} ${request.routeOptions.url}`)
    ) {
      throw new Problem(403, "enrollment_required", "Set up a new second factor before anything else.");
    }
    request.authenticated = {
      session: principal.session,
      account: principal.account,
      security: principal.security,
      token: presented.token,
      via: presented.via,
    };
  };
}

interface PresentedSession {
  token: string;
  via: Authenticated["via"];
}

/** The authenticated caller of a `config.auth: "session"` route. */
export function caller(request: FastifyRequest): Authenticated {
  if (!request.authenticated) throw unauthenticated();
  return request.authenticated;
}

export function requestContext(request: FastifyRequest, geo: GeoLocator): RequestContext {
  const place = geo.locate(request.ip);
  const userAgent = request.headers["user-agent"];
  return {
    ip: request.ip,
    userAgent: userAgent ? userAgent.slice(0, 512) : null,
    location: describePlace(place),
    country: place.country,
    city: place.city,
  };
}
