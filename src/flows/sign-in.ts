import type { Kysely } from "kysely";
import type { Account, AccountRepository } from "../accounts/accounts.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Settings } from "../config/settings.js";
import { newId } from "../crypto/tokens.js";
import type { Database } from "../db/schema.js";
import type { PasswordHasher } from "../factors/password.js";
import type { Outbox } from "../notify/outbox.js";
import type { AttemptGuard, FailureOutcome } from "../protection/attempt-guard.js";
import type { BotCheck, FailureSignals } from "../protection/bot-check.js";
import type { RateLimiter } from "../protection/rate-limiter.js";
import type { ClientApp, Session, SessionService } from "../sessions/sessions.js";
import type { Clock } from "../support/clock.js";
import { iso } from "../support/clock.js";
import type { Metrics } from "../support/metrics.js";
import { expired, invalidCredentials, notFound, Problem, rateLimited } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import type { OneTimeTokens } from "./one-time-tokens.js";

/**
 * The sign-in flow of SPEC §2 as an explicit state machine. A flow is created by a correct password and
 * can only move forward along `transitions`; each move is a conditional UPDATE on the expected state, so
 * a step cannot be skipped, repeated or raced.
 */
export type FlowState = "password_verified" | "second_factor" | "device_approval" | "authenticated";

const transitions: Record<FlowState, readonly FlowState[]> = {
  password_verified: ["second_factor", "device_approval", "authenticated"],
  second_factor: ["device_approval", "authenticated"],
  device_approval: ["authenticated"],
  authenticated: [],
};

export interface SignInInput {
  identifier: string;
  password: string;
  botCheck?: string | undefined;
  client: ClientApp;
  deviceId: string | null;
}

export interface Notice {
  code: string;
  message: string;
}

export type SignInResult =
  | { state: "authenticated"; flowId: string; session: Session; token: string; notices: Notice[] }
  | { state: "second_factor"; flowId: string; factors: string[] }
  | { state: "device_approval"; flowId: string };

export interface FlowView {
  flowId: string;
  state: FlowState;
  expiresAt: string;
  factors?: string[];
}

export interface SignInDependencies {
  db: Kysely<Database>;
  accounts: AccountRepository;
  hasher: PasswordHasher;
  guard: AttemptGuard;
  sessions: SessionService;
  tokens: OneTimeTokens;
  outbox: Outbox;
  audit: AuditLog;
  botCheck: BotCheck;
  signals: FailureSignals;
  limiter: RateLimiter;
  metrics: Metrics;
  clock: Clock;
  settings: Settings;
  publicUrl: URL;
}

const enableTwoFactorNotice: Notice = {
  code: "enable_two_factor",
  message:
    "Protect your account: turn on two-factor authentication with an authenticator app or a security key.",
};

export class SignInService {
  constructor(private readonly deps: SignInDependencies) {}

  async start(input: SignInInput, context: RequestContext): Promise<SignInResult> {
    const { deps } = this;
    const identifier = input.identifier.trim().toLowerCase();
    const { protection } = deps.settings;
    for (const [key, limit] of [
      [`sign-in:ip:${context.ip}`, protection.ipLimit],
      [`sign-in:ip-id:${context.ip}:${identifier}`, protection.ipIdentifierLimit],
    ] as const) {
      const decision = await deps.limiter.hit(key, limit);
      if (!decision.allowed) {
        deps.metrics.attempts.inc({ factor: "password", outcome: "rate_limited" });
        throw rateLimited(decision.retryAfterSeconds);
      }
    }
    await deps.botCheck.check(input.botCheck, context.ip, identifier);

    const account = await deps.accounts.findBySignInIdentifier(identifier);
    if (!account) {
      // SPEC §2: the Argon2 work is done for unknown identifiers too, so timing tells nothing.
      await deps.hasher.verifyDummy(input.password);
      await this.recordFailedPassword(null, "unknown_identifier", context, identifier);
      throw invalidCredentials();
    }
    const reservation = await deps.guard.reserve(account.id);
    if (!reservation) {
      await deps.hasher.verifyDummy(input.password);
      await this.recordFailedPassword(account.id, "account_restricted", context, identifier, "refused");
      throw invalidCredentials();
    }
    const correct = await deps.hasher.verify(account.passwordHash, input.password);
    if (!correct) {
      const outcome = await deps.guard.recordFailure(reservation);
      await this.recordFailedPassword(account.id, "wrong_password", context, identifier);
      await this.notifyRestriction(account, outcome, context);
      throw invalidCredentials();
    }
    await deps.guard.release(reservation);
    if (account.disabled) {
      await this.recordFailedPassword(account.id, "account_disabled", context, identifier, "refused");
      throw invalidCredentials();
    }
    if (!account.emailVerified) {
      await deps.audit.append(
        {
          event: "sign_in.password",
          outcome: "refused",
          accountId: account.id,
          details: { reason: "email_not_verified" },
        },
        context,
      );
      await this.resendVerification(account);
      throw new Problem(
        403,
        "email_not_verified",
        "Confirm your email address first. We have sent you a new verification link.",
      );
    }
    if (deps.hasher.needsRehash(account.passwordHash)) {
      await deps.accounts.updatePasswordHash(account.id, await deps.hasher.hash(input.password));
    }
    deps.metrics.attempts.inc({ factor: "password", outcome: "success" });
    await deps.audit.append(
      { event: "sign_in.password", outcome: "success", accountId: account.id },
      context,
    );

    const flowId = newId();
    const now = deps.clock.now();
    const next: FlowState = "authenticated";
    await deps.db
      .insertInto("sign_in_flows")
      .values({
        id: flowId,
        account_id: account.id,
        state: "password_verified",
        client: input.client,
        methods: JSON.stringify(["password"]),
        factors: JSON.stringify([]),
        device_id: input.deviceId,
        ip: context.ip,
        user_agent: context.userAgent,
        created_at: now,
        expires_at: now + deps.settings.signIn.flowTtlMs,
      })
      .execute();
    return this.advance(flowId, "password_verified", next, context);
  }

  async view(flowId: string): Promise<FlowView> {
    const flow = await this.load(flowId);
    return {
      flowId: flow.id,
      state: flow.state as FlowState,
      expiresAt: iso(flow.expires_at),
      ...(flow.state === "second_factor" ? { factors: JSON.parse(flow.factors) as string[] } : {}),
    };
  }

  /**
   * Moves a flow from `from` to `to`. When `to` is authenticated, the attempt counter resets and the
   * session is issued; the flow is then dead, so its id cannot mint a second session.
   */
  private async advance(
    flowId: string,
    from: FlowState,
    to: FlowState,
    context: RequestContext,
  ): Promise<SignInResult> {
    if (!transitions[from].includes(to)) {
      throw new Problem(409, "conflict", `A sign-in cannot go from ${from} to ${to}.`);
    }
    const { deps } = this;
    const now = deps.clock.now();
    const moved = await deps.db
      .updateTable("sign_in_flows")
      .set({ state: to, ...(to === "authenticated" ? { completed_at: now } : {}) })
      .where("id", "=", flowId)
      .where("state", "=", from)
      .where("expires_at", ">", now)
      .returningAll()
      .executeTakeFirst();
    if (!moved) throw expired("This sign-in has expired or already finished. Start again.");
    if (to === "second_factor") return { state: to, flowId, factors: JSON.parse(moved.factors) as string[] };
    if (to === "device_approval") return { state: to, flowId };
    if (to === "password_verified") throw new Problem(409, "conflict", "A sign-in cannot go back.");
    await deps.guard.recordSuccess(moved.account_id);
    const methods = JSON.parse(moved.methods) as string[];
    const { token, session } = await deps.sessions.issue({
      accountId: moved.account_id,
      client: moved.client as ClientApp,
      methods,
      deviceId: moved.device_id,
      context,
    });
    await deps.db
      .updateTable("sign_in_flows")
      .set({ session_id: session.id })
      .where("id", "=", flowId)
      .execute();
    await deps.audit.append(
      {
        event: "sign_in.completed",
        outcome: "success",
        accountId: moved.account_id,
        details: { sessionId: session.id, client: session.client, aal: session.aal, methods },
      },
      context,
    );
    const notices = session.aal < 2 ? [enableTwoFactorNotice] : [];
    return { state: "authenticated", flowId, session, token, notices };
  }

  private async load(flowId: string) {
    const flow = await this.deps.db
      .selectFrom("sign_in_flows")
      .selectAll()
      .where("id", "=", flowId)
      .executeTakeFirst();
    if (!flow) throw notFound("This sign-in");
    if (flow.expires_at <= this.deps.clock.now() && flow.state !== "authenticated") {
      throw expired("This sign-in has expired. Start again.");
    }
    return flow;
  }

  private async recordFailedPassword(
    accountId: string | null,
    reason: string,
    context: RequestContext,
    identifier: string,
    outcome: "failure" | "refused" = "failure",
  ): Promise<void> {
    const { deps } = this;
    deps.metrics.attempts.inc({ factor: "password", outcome });
    await deps.signals.record(context.ip, identifier);
    await deps.audit.append({ event: "sign_in.password", outcome, accountId, details: { reason } }, context);
  }

  private async notifyRestriction(
    account: Account,
    outcome: FailureOutcome,
    context: RequestContext,
  ): Promise<void> {
    if (outcome.kind === "counted") return;
    const { deps } = this;
    const permanent = outcome.kind === "permanently_restricted";
    const until = outcome.kind === "restricted" ? iso(outcome.until) : null;
    deps.metrics.restrictions.inc({ kind: permanent ? "permanent" : "temporary" });
    await deps.audit.append(
      {
        event: "account.restricted",
        outcome: "info",
        accountId: account.id,
        actor: "system",
        details: { permanent, until },
      },
      context,
    );
    await deps.outbox.enqueue(
      { email: account.email, accountId: account.id, antiPhishingCode: account.antiPhishingCode },
      {
        kind: "account_restricted",
        permanent,
        until,
        resetLink: new URL("/forgot-password", deps.publicUrl).href,
        at: iso(deps.clock.now()),
        ip: context.ip,
        location: context.location,
        userAgent: context.userAgent,
      },
    );
  }

  /** A correct password on an unverified account: send a fresh link, at most three an hour. */
  private async resendVerification(account: Account): Promise<void> {
    const { deps } = this;
    const hourAgo = deps.clock.now() - 3_600_000;
    if ((await deps.tokens.countIssuedSince("verify_email", account.id, hourAgo)) >= 3) return;
    const token = await deps.tokens.issue(
      "verify_email",
      account.id,
      deps.settings.signUp.emailVerificationTtlMs,
    );
    const link = new URL("/verify-email", deps.publicUrl);
    link.searchParams.set("token", token);
    await deps.outbox.enqueue(
      { email: account.email, accountId: account.id, antiPhishingCode: account.antiPhishingCode },
      { kind: "verify_email", username: account.username, link: link.href },
    );
  }
}
