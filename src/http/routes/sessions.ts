import type { FastifyReply } from "fastify";
import { Type } from "typebox";
import type { Account } from "../../accounts/accounts.js";
import { eligibilitySummary } from "../../capabilities/capability-service.js";
import type { CapabilityVector } from "../../capabilities/evaluate.js";
import { freezeState } from "../../security/account-freeze.js";
import { isLocked } from "../../security/global-lock.js";
import type { Services } from "../../services.js";
import { describeSession, type Session, sessionEndsAt } from "../../sessions/sessions.js";
import { iso } from "../../support/clock.js";
import { notFound } from "../../support/problem.js";
import { type Authenticated, caller, clearSessionCookie, requestContext } from "../auth.js";
import { SessionSummary, Status } from "../schemas.js";
import type { App } from "../server.js";

const SessionListItem = Type.Object({
  id: Type.String(),
  client: Type.String(),
  aal: Type.Integer(),
  methods: Type.Array(Type.String()),
  ip: Type.String(),
  location: Type.Union([Type.String(), Type.Null()]),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  deviceId: Type.Union([Type.String(), Type.Null()]),
  authenticatedAt: Type.String(),
  createdAt: Type.String(),
  lastSeenAt: Type.String(),
  expiresAt: Type.String(),
  current: Type.Boolean(),
});

/**
 * GET /v1/session's answer as sent, for the session object the session cache holds: a client polling
 * its session gets the same bytes again and again, and building and serialising them was about a tenth of
 * a check's time. The text is reused only while everything it was made from is the same: the same
 * session and account objects (the cache replaces them when it reads the database again), the same
 * capability vector object (the memo hands out one object per input), the same idle deadline (a touch
 * moves it on the session object itself), and the same answers of the two clock-dependent fields.
 */
interface AnswerText {
  account: Account;
  vector: CapabilityVector;
  idleExpiresAt: number;
  locked: boolean;
  liftable: boolean | null;
  text: string;
}

/**
 * Sends JSON text already serialised, with Fastify's own content type for a JSON answer: given that type,
 * Fastify sends a string as it is.
 */
function sendSerialized(reply: FastifyReply, text: string): void {
  reply.type("application/json; charset=utf-8").send(text);
}

/** GET /v1/session's answer: the account, this session, and what the account may use now. */
function sessionAnswer({ account, session: current }: Authenticated, vector: CapabilityVector, now: number) {
  return {
    eligibility: eligibilitySummary(vector),
    account: {
      id: account.id,
      username: account.username,
      // docs/behaviour.md §7: the Global Settings Lock hides the email address.
      ...(isLocked(account, now) ? {} : { email: account.email }),
      tier: account.tier,
      country: account.country,
      region: account.region,
      frozen: freezeState(account, now),
      passwordBreached: account.passwordBreachedAt !== null,
    },
    session: {
      id: current.id,
      client: current.client,
      aal: current.aal,
      methods: current.methods,
      authenticatedAt: iso(current.authenticatedAt),
      expiresAt: sessionEndsAt(current),
    },
  };
}

export function registerSessionRoutes(app: App, services: Services): void {
  const session = { auth: "session" as const };
  const answerTexts = new WeakMap<Session, AnswerText>();

  app.get(
    "/v1/session",
    {
      config: session,
      schema: {
        tags: ["sessions"],
        summary: "The signed-in account and this session",
        response: {
          200: Type.Object({
            account: Type.Object({
              id: Type.String(),
              username: Type.String(),
              email: Type.Optional(Type.String()),
              tier: Type.String(),
              country: Type.String(),
              region: Type.Union([Type.String(), Type.Null()]),
              /** Set while "lock my account" keeps the account frozen: since when, and when the owner may lift it. */
              frozen: Type.Union([
                Type.Object({
                  since: Type.String(),
                  liftableAt: Type.String(),
                  liftable: Type.Boolean({ description: "Whether the owner may lift it now" }),
                }),
                Type.Null(),
              ]),
              /** docs/behaviour.md §1: a sign-in found the password on the breached list; change it. */
              passwordBreached: Type.Boolean({
                description:
                  "true when a sign-in found the password among those known from data breaches: the owner should change it",
              }),
            }),
            session: SessionSummary,
            eligibility: Type.Object({
              allowed: Type.Array(Type.String()),
              refused: Type.Record(Type.String(), Type.Array(Type.String())),
            }),
          }),
        },
      },
    },
    // Synchronous when the capability vector needs no read (the usual case): with the session answered
    // from the cache too, no promise stands between the request and its answer.
    (request, reply) => {
      const principal = caller(request);
      const { account, session: current, security } = principal;
      const vector = services.capabilities.cachedVector(account, current.client, security);
      if (!vector) {
        return services.capabilities
          .vector(account, current.client, security)
          .then((read) => sessionAnswer(principal, read, services.clock.now()));
      }
      const now = services.clock.now();
      const locked = isLocked(account, now);
      // Null for an account that is not frozen (nearly all): no strings are built then.
      const liftable = freezeState(account, now)?.liftable ?? null;
      let made = answerTexts.get(current);
      if (
        made === undefined ||
        made.account !== account ||
        made.vector !== vector ||
        made.idleExpiresAt !== current.idleExpiresAt ||
        made.locked !== locked ||
        made.liftable !== liftable
      ) {
        // The route's own serializer: the same bytes as an answer returned as an object.
        const text = reply.serialize(sessionAnswer(principal, vector, now)) as string;
        made = { account, vector, idleExpiresAt: current.idleExpiresAt, locked, liftable, text };
        answerTexts.set(current, made);
      }
      sendSerialized(reply, made.text);
      return;
    },
  );

  app.delete(
    "/v1/session",
    {
      config: session,
      schema: {
        tags: ["sessions"],
        summary: "Sign out: end this session",
        response: { 200: Status("signed_out") },
      },
    },
    async (request, reply) => {
      const { account, session: current } = caller(request);
      await services.sessions.end(account.id, current.id, "sign_out");
      await services.audit.append(
        {
          event: "session.ended",
          outcome: "success",
          accountId: account.id,
          details: { sessionId: current.id, reason: "sign_out" },
        },
        requestContext(request, services.geo),
      );
      clearSessionCookie(reply, services.config.publicUrl);
      return { status: "signed_out" as const };
    },
  );

  app.get(
    "/v1/sessions",
    {
      config: session,
      schema: {
        tags: ["sessions"],
        summary: "Every active session of this account",
        response: { 200: Type.Object({ sessions: Type.Array(SessionListItem) }) },
      },
    },
    async (request) => {
      const { account, session: current } = caller(request);
      const sessions = await services.sessions.listActive(account.id);
      return { sessions: sessions.map((s) => describeSession(s, current.id)) };
    },
  );

  app.delete(
    "/v1/sessions/:id",
    {
      config: session,
      schema: {
        tags: ["sessions"],
        summary: "End one session of this account",
        params: Type.Object({ id: Type.String({ format: "uuid" }) }),
        response: { 200: Status("ended") },
      },
    },
    async (request, reply) => {
      const { account, session: current } = caller(request);
      const ended = await services.sessions.end(account.id, request.params.id, "ended_by_owner");
      if (!ended) throw notFound("That session");
      await services.audit.append(
        {
          event: "session.ended",
          outcome: "success",
          accountId: account.id,
          details: { sessionId: request.params.id, reason: "ended_by_owner" },
        },
        requestContext(request, services.geo),
      );
      if (request.params.id === current.id) clearSessionCookie(reply, services.config.publicUrl);
      return { status: "ended" as const };
    },
  );

  app.delete(
    "/v1/sessions",
    {
      config: session,
      schema: {
        tags: ["sessions"],
        summary: "End every other session of this account",
        response: {
          200: Type.Object({
            status: Type.Literal("ended"),
            ended: Type.Integer({ description: "How many sessions ended" }),
          }),
        },
      },
    },
    async (request) => {
      const { account, session: current } = caller(request);
      const ended = await services.sessions.endAll(account.id, current.id, "ended_others");
      await services.audit.append(
        { event: "session.ended_others", outcome: "success", accountId: account.id, details: { ended } },
        requestContext(request, services.geo),
      );
      return { status: "ended" as const, ended };
    },
  );
}
