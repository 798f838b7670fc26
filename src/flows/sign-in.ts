import { randomBytes } from "node:crypto";
import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialRequestOptionsJSON,
} from "@simplewebauthn/server";
import type { Kysely, Selectable, Transaction } from "kysely";
import type { Account, AccountRepository } from "../accounts/accounts.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Settings } from "../config/settings.js";
import { newId } from "../crypto/tokens.js";
import type { Database, SignInFlowsTable } from "../db/schema.js";
import { isBreachedPassword } from "../factors/breached-passwords.js";
import type { PasswordHasher } from "../factors/password.js";
import { invalidCode, type Proof, type ProofVerifier } from "../factors/proofs.js";
import type { RecoveryCodes } from "../factors/recovery-codes.js";
import {
  type SecondFactorRepository,
  type SignInFactor,
  secondFactorNames,
} from "../factors/second-factors.js";
import type { WebAuthnFactor } from "../factors/webauthn-factor.js";
import type { Outbox } from "../notify/outbox.js";
import { securityDetails } from "../notify/templates.js";
import type { AccountProtection } from "../protection/account-protection.js";
import type { AttemptGuard } from "../protection/attempt-guard.js";
import type { BotCheck, FailureSignals } from "../protection/bot-check.js";
import type { RateLimiter } from "../protection/rate-limiter.js";
import { LOCK_LINK_TTL_MS } from "../security/account-freeze.js";
import type { SecurityHolds } from "../security/holds.js";
import type { NewPlaces } from "../security/new-places.js";
import { type DeviceService, deviceLabel } from "../sessions/devices.js";
import type { ClientApp, Session, SessionService } from "../sessions/sessions.js";
import type { Clock } from "../support/clock.js";
import { iso } from "../support/clock.js";
import { describePlace, type GeoLocator } from "../support/geo.js";
import type { Metrics } from "../support/metrics.js";
import { addressSubject, networkOf } from "../support/network.js";
import { expired, invalidCredentials, notFound, Problem, rateLimited } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import { advanceSecurityEpoch, type OneTimeTokens } from "./one-time-tokens.js";

/**
 * The sign-in flow of docs/behaviour.md §2 as an explicit state machine. A flow is created by a correct password and
 * can only move forward along `transitions`; each move is a conditional UPDATE on the expected state, so
 * a step cannot be skipped, repeated or raced.
 */
export type FlowState =
  | "password_verified"
  | "passkey_verified"
  | "second_factor"
  | "device_approval"
  | "device_approved"
  | "device_refused"
  | "authenticated";

const transitions: Record<FlowState, readonly FlowState[]> = {
  password_verified: ["second_factor", "device_approval", "authenticated"],
  // "Sign in with a passkey": the assertion with user verification was both factors at once.
  passkey_verified: ["device_approval", "authenticated"],
  second_factor: ["device_approval", "authenticated"],
  device_approval: ["device_approved", "device_refused"],
  device_approved: ["authenticated"],
  device_refused: [],
  authenticated: [],
};

export interface SignInInput {
  identifier: string;
  password: string;
  botCheck?: string | undefined;
  client: ClientApp;
  /** The browser's device cookie or the app's device id (raw; only its hash is kept). */
  deviceKey: string;
}

export interface PasskeySignInInput {
  response: AuthenticationResponseJSON;
  client: ClientApp;
  /** As in SignInInput: the browser's device cookie or the app's device id. */
  deviceKey: string;
}

export interface Notice {
  code: string;
  message: string;
}

export type SignInResult =
  | { state: "authenticated"; flowId: string; session: Session; token: string; notices: Notice[] }
  | { state: "second_factor"; flowId: string; factors: SignInFactor[] }
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
  protection: AccountProtection;
  guard: AttemptGuard;
  holds: SecurityHolds;
  proofs: ProofVerifier;
  factors: SecondFactorRepository;
  recoveryCodes: RecoveryCodes;
  webauthn: WebAuthnFactor;
  devices: DeviceService;
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
  places: NewPlaces;
  geo: GeoLocator;
  /** Where a device approval must come from to count (EnvConfig.approvalNetwork). */
  approvalNetwork: "network" | "country" | "off";
}

type FlowRow = Selectable<SignInFlowsTable>;

// Unambiguous characters for a code read from an email and typed by hand.
const BYPASS_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789";

/** One answer for every refused "sign in with a passkey", whatever the reason, as for a wrong password. */
const passkeyNotAccepted = () =>
  new Problem(
    401,
    "passkey_not_accepted",
    "That passkey was not accepted. Try again, or sign in with your username and password.",
  );

const enableTwoFactorNotice: Notice = {
  code: "enable_two_factor",
  message:
    "Protect your account: turn on two-factor authentication with an authenticator app or a security key.",
};

const changeBreachedPasswordNotice: Notice = {
  code: "password_breached",
  message:
    "Your password has appeared in a data breach, so attackers may try it. Change it in Security to one you use nowhere else.",
};

export class SignInService {
  constructor(private readonly deps: SignInDependencies) {}

  /** Step 1: identifier, password and bot check. */
  async start(input: SignInInput, context: RequestContext): Promise<SignInResult> {
    const { deps } = this;
    const identifier = input.identifier.trim().toLowerCase();
    const { protection } = deps.settings;
    const subject = addressSubject(context.ip);
    await this.limit("password", [
      [`sign-in:ip:${subject}`, protection.ipLimit],
      [`sign-in:ip-id:${subject}:${identifier}`, protection.ipIdentifierLimit],
    ]);
    await deps.botCheck.check(input.botCheck, context.ip, identifier);

    // Looked up as typed (trimmed): the repository folds an email's A-Z only, so a look-alike spelling
    // (the Kelvin sign K lower-cases to k) reaches no other account. The limits above count it folded.
    const account = await deps.accounts.findBySignInIdentifier(input.identifier.trim());
    if (!account) {
      // docs/behaviour.md §2: the Argon2 work is done for unknown identifiers too, so timing tells nothing.
      await deps.hasher.verifyDummy(input.password);
      deps.metrics.attempts.inc({ factor: "password", outcome: "failure" });
      await deps.signals.record(context.ip, identifier);
      await deps.audit.append(
        { event: "sign_in.password", outcome: "failure", details: { reason: "unknown_identifier" } },
        context,
      );
      throw invalidCredentials();
    }
    const result = await deps.protection.attempt(
      account,
      { factor: "password", stage: "sign_in" },
      context,
      async () =>
        (await deps.hasher.verify(account.passwordHash, input.password))
          ? { ok: true, value: null }
          : { ok: false },
    );
    if (result.kind !== "passed") {
      if (result.kind === "restricted") await deps.hasher.verifyDummy(input.password);
      await deps.signals.record(context.ip, identifier);
      throw invalidCredentials();
    }
    await this.admit(account, context, invalidCredentials);
    if (deps.hasher.needsRehash(account.passwordHash)) {
      await deps.accounts.updatePasswordHash(account.id, await deps.hasher.hash(input.password));
    }
    // ASVS 6.2.12: a password set before it was on the breached list still signs in, and the owner is
    // asked to change it until they do. The password itself goes no further than this check.
    if (account.passwordBreachedAt === null && isBreachedPassword(input.password)) {
      await this.flagBreachedPassword(account, context);
    }

    const flow = await this.createFlow(account, "password_verified", "password", input, context);
    if (JSON.parse(flow.factors).length > 0) return this.advance(flow, "second_factor", context);
    return this.afterFactors(flow, context);
  }

  /**
   * "Sign in with a passkey", first half: assertion options without an account (no allowed credentials,
   * so the authenticator offers its discoverable ones), with user verification required. Limited per
   * address, as the password step is.
   */
  async passkeyOptions(context: RequestContext): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const subject = addressSubject(context.ip);
    await this.limit("passkey", [[`passkey-options:ip:${subject}`, this.deps.settings.protection.ipLimit]]);
    return this.deps.webauthn.discoverableOptions();
  }

  /**
   * "Sign in with a passkey", second half: the credential names the account (its id and the user handle
   * must agree), and the assertion — user verification required — replaces both the password and the
   * second factor. Everything after is the password sign-in's own: the per-address limit, the account's
   * attempt counter and restriction, the disabled and unverified refusals, then the device check, the
   * session, the audit entry and the new-device and new-place emails (afterFactors and complete).
   */
  async startWithPasskey(input: PasskeySignInInput, context: RequestContext): Promise<SignInResult> {
    const { deps } = this;
    const subject = addressSubject(context.ip);
    await this.limit("passkey", [[`sign-in:ip:${subject}`, deps.settings.protection.ipLimit]]);
    const found = await deps.webauthn.discover(input.response);
    const account = found ? await deps.accounts.findById(found.accountId) : null;
    if (!found || !account) {
      // A credential of no factor (never registered, or its factor removed): its challenge is spent too.
      await deps.webauthn.spendDiscoverableChallenge(input.response);
      deps.metrics.attempts.inc({ factor: "passkey", outcome: "failure" });
      await deps.signals.record(context.ip, null);
      await deps.audit.append(
        { event: "sign_in.passkey", outcome: "failure", details: { reason: "unknown_credential" } },
        context,
      );
      throw passkeyNotAccepted();
    }
    const result = await deps.proofs.verify(
      account,
      { kind: "passkey", response: input.response },
      "sign_in",
      context,
    );
    if (result.kind !== "passed") {
      await deps.signals.record(context.ip, account.username);
      throw passkeyNotAccepted();
    }
    await this.admit(account, context, passkeyNotAccepted);
    const flow = await this.createFlow(account, "passkey_verified", result.value, input, context);
    return this.afterFactors(flow, context);
  }

  /** Per-address (and per-identifier) limits: 429 with Retry-After once one is reached. */
  private async limit(
    factor: string,
    limits: (readonly [string, { max: number; windowMs: number }])[],
  ): Promise<void> {
    for (const [key, limit] of limits) {
      const decision = await this.deps.limiter.hit(key, limit);
      if (!decision.allowed) {
        this.deps.metrics.attempts.inc({ factor, outcome: "rate_limited" });
        throw rateLimited(decision.retryAfterSeconds);
      }
    }
  }

  /**
   * After the first proof passed: a disabled account is refused as the proof's own failure would be
   * (`refused`), an unverified one is told to confirm its email (and sent a fresh link).
   */
  private async admit(account: Account, context: RequestContext, refused: () => Problem): Promise<void> {
    const { deps } = this;
    const refuse = (reason: string) =>
      deps.audit.append(
        { event: "sign_in.refused", outcome: "refused", accountId: account.id, details: { reason } },
        context,
      );
    if (account.disabled) {
      await refuse("account_disabled");
      throw refused();
    }
    if (!account.emailVerified) {
      await refuse("email_not_verified");
      await this.resendVerification(account);
      throw new Problem(
        403,
        "email_not_verified",
        "Confirm your email address first. We have sent you a new verification link.",
      );
    }
  }

  private async createFlow(
    account: Account,
    state: "password_verified" | "passkey_verified",
    method: string,
    input: { client: ClientApp; deviceKey: string },
    context: RequestContext,
  ): Promise<FlowRow> {
    const { deps } = this;
    const factors = await this.signInFactors(account);
    const now = deps.clock.now();
    const flow: FlowRow = {
      id: newId(),
      account_id: account.id,
      state,
      client: input.client,
      methods: JSON.stringify([method]),
      factors: JSON.stringify(factors),
      device_id: deps.devices.keyHash(input.deviceKey),
      ip: context.ip,
      user_agent: context.userAgent,
      created_at: now,
      expires_at: now + deps.settings.signIn.flowTtlMs,
      completed_at: null,
      session_id: null,
    };
    await deps.db.insertInto("sign_in_flows").values(flow).execute();
    return flow;
  }

  /** Step 2: a second factor (TOTP code, recovery code or security-key assertion). */
  async proveSecondFactor(flowId: string, proof: Proof, context: RequestContext): Promise<SignInResult> {
    const { deps } = this;
    const flow = await this.loadInState(flowId, "second_factor");
    const account = await deps.accounts.findById(flow.account_id);
    if (!account) throw notFound("This sign-in");
    const result = await deps.proofs.verify(account, proof, "sign_in", context);
    if (result.kind !== "passed") {
      await this.notifyFailedSecondFactor(account, context);
      throw invalidCode(result.kind === "failed" ? result.hint : undefined);
    }
    const methods = [...(JSON.parse(flow.methods) as string[]), result.value];
    const updated = await deps.db
      .updateTable("sign_in_flows")
      .set({ methods: JSON.stringify(methods) })
      .where("id", "=", flow.id)
      .where("state", "=", "second_factor")
      .where("methods", "=", flow.methods)
      .returningAll()
      .executeTakeFirst();
    if (!updated) throw expired("This sign-in has already moved on. Start again.");
    return this.afterFactors(updated, context);
  }

  /**
   * docs/behaviour.md §7: a lost second factor is bypassed with the Master Key. The right Master Key sends a one-time
   * code by email; see `completeBypass`.
   */
  async startBypass(flowId: string, masterKey: string, context: RequestContext): Promise<void> {
    const { deps } = this;
    const flow = await this.loadInState(flowId, "second_factor");
    const account = await deps.accounts.findById(flow.account_id);
    if (!account?.masterKeyHash) throw new Problem(409, "conflict", "This account has no Master Key.");
    const result = await deps.proofs.verify(account, { kind: "master_key", masterKey }, "sign_in", context);
    if (result.kind !== "passed") {
      await this.notifyFailedSecondFactor(account, context);
      throw invalidCode();
    }
    const code = Array.from(randomBytes(10), (b) => BYPASS_ALPHABET[b % BYPASS_ALPHABET.length]).join("");
    await deps.tokens.issue("bypass_code", account.id, 15 * 60_000, { flowId }, undefined, code);
    await deps.outbox.notify(account, {
      kind: "bypass_code",
      code,
      ...securityDetails(context, deps.clock.now()),
    });
  }

  /**
   * The emailed code completes the sign-in without the lost factor: the old factors and recovery codes
   * are removed, withdrawals are held 48 hours, and the session may only enroll a new factor.
   */
  async completeBypass(flowId: string, code: string, context: RequestContext): Promise<SignInResult> {
    const { deps } = this;
    const flow = await this.loadInState(flowId, "second_factor");
    const account = await deps.accounts.findById(flow.account_id);
    if (!account) throw notFound("This sign-in");
    const result = await deps.protection.attempt(
      account,
      { factor: "bypass_code", stage: "sign_in" },
      context,
      async () => {
        try {
          const spent = await deps.tokens.consume("bypass_code", code.trim().toUpperCase());
          return spent.accountId === account.id && spent.data?.flowId === flowId
            ? { ok: true, value: null }
            : { ok: false };
        } catch {
          return { ok: false };
        }
      },
    );
    if (result.kind !== "passed") throw invalidCode();
    const methods = [...(JSON.parse(flow.methods) as string[]), "master_key", "bypass_code"];
    // One transaction: the old factors and codes gone, the hold, the audit entry and the flow moved on.
    const updated = await deps.db.transaction().execute(async (trx) => {
      const moved = await trx
        .updateTable("sign_in_flows")
        .set({ methods: JSON.stringify(methods) })
        .where("id", "=", flow.id)
        .where("state", "=", "second_factor")
        .returningAll()
        .executeTakeFirst();
      if (!moved) throw expired("This sign-in has already moved on. Start again.");
      await deps.factors.removeAll(account.id, trx);
      // As when a factor is removed: links emailed before stop working.
      await advanceSecurityEpoch(trx, account.id);
      await deps.recoveryCodes.clear(account.id, trx);
      await deps.holds.place(account.id, "second_factor_reset", trx);
      await deps.audit.append(
        { event: "sign_in.second_factor_reset", outcome: "success", accountId: account.id },
        context,
        trx,
      );
      return moved;
    });
    await deps.sessions.accountChanged(account.id);
    return this.afterFactors(updated, context);
  }

  /** Assertion options for a security key at step 2; the challenge belongs to this flow only. */
  async webauthnOptions(flowId: string) {
    const flow = await this.loadInState(flowId, "second_factor");
    if (!(JSON.parse(flow.factors) as string[]).includes("webauthn")) {
      throw new Problem(409, "conflict", "This account has no security key.");
    }
    return this.deps.webauthn.assertionOptions(flow.account_id, "sign_in", flow.id);
  }

  /** The sign-in an approval link is for, without spending the link. */
  private async approvalFlow(token: string): Promise<FlowRow> {
    const { accountId, data } = await this.deps.tokens.peek("approve_device", token);
    const flowId = typeof data?.flowId === "string" ? data.flowId : "";
    const flow = await this.deps.db
      .selectFrom("sign_in_flows")
      .selectAll()
      .where("id", "=", flowId)
      .executeTakeFirst();
    if (!flow?.device_id || flow.account_id !== accountId) throw notFound("This sign-in");
    return flow;
  }

  /**
   * Does an approval from `ip` count for a sign-in from `flowIp`? Addresses the offline database cannot
   * place (private, loopback) are compared by network in "country" mode too.
   */
  private approvalPlaceMatches(flowIp: string, ip: string): boolean {
    const mode = this.deps.approvalNetwork;
    if (mode === "off") return true;
    if (mode === "country") {
      const asked = this.deps.geo.locate(flowIp).country;
      const approving = this.deps.geo.locate(ip).country;
      if (asked && approving) return asked === approving;
    }
    return networkOf(flowIp) === networkOf(ip);
  }

  /** What the approval page shows: the device, its place and time, and whether this network may approve. */
  async approvalDetails(token: string, context: RequestContext) {
    const flow = await this.approvalFlow(token);
    return {
      device: deviceLabel(flow.user_agent),
      location: describePlace(this.deps.geo.locate(flow.ip)),
      ip: flow.ip,
      requestedAt: iso(flow.created_at),
      sameNetwork: this.approvalPlaceMatches(flow.ip, context.ip),
    };
  }

  /**
   * "This wasn't me" on the approval page: the link is spent, the waiting sign-in refused for good, and a
   * lock token handed back so the page can offer to freeze the account at once.
   */
  async refuseDevice(token: string, context: RequestContext): Promise<{ lockToken: string }> {
    const { deps } = this;
    const flow = await this.approvalFlow(token);
    return deps.db.transaction().execute(async (trx) => {
      await deps.tokens.consume("approve_device", token, trx);
      await trx
        .updateTable("sign_in_flows")
        .set({ state: "device_refused" })
        .where("id", "=", flow.id)
        .where("state", "=", "device_approval")
        .execute();
      const lockToken = await deps.tokens.issue("lock_account", flow.account_id, LOCK_LINK_TTL_MS, null, trx);
      await deps.audit.append(
        {
          event: "device.refused",
          outcome: "success",
          accountId: flow.account_id,
          details: { flowId: flow.id, device: deviceLabel(flow.user_agent) },
        },
        context,
        trx,
      );
      return { lockToken };
    });
  }

  /**
   * The link in the "Approve device" email: the device becomes known and the waiting sign-in may finish.
   * It counts only from the network of the device that asked (see approvalPlaceMatches), so a phishing
   * proxy that forwards the email cannot approve its own sign-in; refused, the link stays unspent.
   */
  async approveDevice(token: string, context: RequestContext): Promise<void> {
    const { deps } = this;
    const asked = await this.approvalFlow(token);
    if (!this.approvalPlaceMatches(asked.ip, context.ip)) {
      throw new Problem(
        403,
        "approval_network",
        'This approval was opened on a different network from the device that is signing in, so it does not count. Open the link on the same network (the same Wi-Fi or connection) as that device. If you are not signing in, choose "This wasn\'t me".',
      );
    }
    const { accountId, data } = await deps.tokens.consume("approve_device", token);
    const flowId = typeof data?.flowId === "string" ? data.flowId : "";
    const flow = asked.id === flowId && asked.account_id === accountId ? asked : null;
    if (!flow?.device_id) throw notFound("This sign-in");
    await deps.devices.remember(accountId, flow.device_id, {
      ip: flow.ip,
      location: null,
      userAgent: flow.user_agent,
    });
    await deps.audit.append(
      {
        event: "device.approved",
        outcome: "success",
        accountId,
        details: { flowId, device: deviceLabel(flow.user_agent) },
      },
      context,
    );
    // The flow may have expired meanwhile; the device stays known, so signing in again needs no approval.
    await deps.db
      .updateTable("sign_in_flows")
      .set({ state: "device_approved" })
      .where("id", "=", flowId)
      .where("state", "=", "device_approval")
      .where("expires_at", ">", deps.clock.now())
      .execute();
  }

  /**
   * The state of a flow. The device that started it (and only that device) collects its session here
   * once the device was approved: the browser's polling completes the sign-in.
   */
  async poll(
    flowId: string,
    deviceKey: string | undefined,
    context: RequestContext,
  ): Promise<FlowView | SignInResult> {
    const flow = await this.load(flowId);
    if (
      flow.state === "device_approved" &&
      deviceKey !== undefined &&
      flow.device_id === this.deps.devices.keyHash(deviceKey)
    ) {
      return this.advance(flow, "authenticated", context);
    }
    return {
      flowId: flow.id,
      state: flow.state as FlowState,
      expiresAt: iso(flow.expires_at),
      ...(flow.state === "second_factor" ? { factors: JSON.parse(flow.factors) as string[] } : {}),
    };
  }

  /** Step 3: a device never seen on this account waits for the emailed approval; a known one goes on. */
  private async afterFactors(flow: FlowRow, context: RequestContext): Promise<SignInResult> {
    const { deps } = this;
    if (!deps.settings.signIn.deviceApproval || !flow.device_id)
      return this.advance(flow, "authenticated", context);
    const known = await deps.devices.recognise(flow.account_id, flow.device_id, context);
    if (known) return this.advance(flow, "authenticated", context, known);
    const result = await this.advance(flow, "device_approval", context);
    const account = await deps.accounts.findById(flow.account_id);
    if (account) {
      const token = await deps.tokens.issue(
        "approve_device",
        account.id,
        deps.settings.signIn.deviceApprovalTtlMs,
        {
          flowId: flow.id,
        },
      );
      const link = new URL("/approve-device", deps.publicUrl);
      link.searchParams.set("token", token);
      await deps.outbox.notify(account, {
        kind: "approve_device",
        link: link.href,
        ...securityDetails(context, deps.clock.now()),
      });
    }
    return result;
  }

  /**
   * Moves a flow to `to` if it is still in the state it was read in. Reaching authenticated resets the
   * attempt counter and issues the session; the flow is then dead, so its id cannot mint a second one.
   */
  private async advance(
    flow: FlowRow,
    to: FlowState,
    context: RequestContext,
    knownDeviceId?: string,
  ): Promise<SignInResult> {
    const from = flow.state as FlowState;
    if (!transitions[from]?.includes(to)) {
      throw new Problem(409, "conflict", `A sign-in cannot go from ${from} to ${to}.`);
    }
    const { deps } = this;
    const now = deps.clock.now();
    const move = (db: Kysely<Database>) =>
      db
        .updateTable("sign_in_flows")
        .set({ state: to, ...(to === "authenticated" ? { completed_at: now } : {}) })
        .where("id", "=", flow.id)
        .where("state", "=", from)
        .where("expires_at", ">", now)
        .returningAll()
        .executeTakeFirst();
    if (to !== "authenticated") {
      const moved = await move(deps.db);
      if (!moved) throw expired("This sign-in has expired or already finished. Start again.");
      if (to === "second_factor") {
        return { state: to, flowId: flow.id, factors: JSON.parse(moved.factors) as SignInFactor[] };
      }
      if (to === "device_approval") return { state: to, flowId: flow.id };
      throw new Problem(409, "conflict", "This sign-in is waiting for its device approval.");
    }
    // Completion is one transaction: the flow spent, the counter reset, the device, the session, the
    // audit entry and the new-sign-in email — a crash leaves a sign-in whole or not begun.
    const completed = await deps.db
      .transaction()
      .execute((trx) => this.complete(trx, move, from, flow, context, now, knownDeviceId));
    deps.outbox.nudge();
    return completed;
  }

  private async complete(
    trx: Transaction<Database>,
    move: (db: Kysely<Database>) => Promise<FlowRow | undefined>,
    from: FlowState,
    flow: FlowRow,
    context: RequestContext,
    now: number,
    knownDeviceId: string | undefined,
  ): Promise<SignInResult> {
    const { deps } = this;
    const moved = await move(trx);
    if (!moved) throw expired("This sign-in has expired or already finished. Start again.");
    await deps.guard.recordSuccess(moved.account_id, trx);
    // docs/behaviour.md §12: the owner hears of a sign-in from a device the account had not seen — unless this very
    // sign-in already emailed a device approval, which said as much. One device write either way: a known
    // device is recognised (its last-seen updated), only an unknown one is remembered.
    let deviceId = knownDeviceId ?? null;
    let newDevice = false;
    if (deviceId === null && moved.device_id !== null) {
      deviceId = await deps.devices.recognise(moved.account_id, moved.device_id, context, trx);
      if (deviceId === null) {
        newDevice = from !== "device_approved";
        deviceId = await deps.devices.remember(moved.account_id, moved.device_id, context, trx);
      }
    } else if (deviceId === null) {
      newDevice = from !== "device_approved";
    }
    const methods = JSON.parse(moved.methods) as string[];
    const { token, session } = await deps.sessions.issue(
      {
        accountId: moved.account_id,
        client: moved.client as ClientApp,
        methods,
        deviceId,
        context,
        enrollmentRequired: methods.includes("bypass_code"),
      },
      trx,
    );
    await trx
      .updateTable("sign_in_flows")
      .set({ session_id: session.id })
      .where("id", "=", flow.id)
      .execute();
    const account = await deps.accounts.findById(moved.account_id, trx);
    if (newDevice && account) {
      await deps.outbox.notify(
        account,
        {
          kind: "new_sign_in",
          sessionsLink: new URL("/security/sessions", deps.publicUrl).href,
          resetLink: new URL("/forgot-password", deps.publicUrl).href,
          ...securityDetails(context, now),
        },
        trx,
      );
    }
    // A known device on a new network, or a sign-in from a new country: the owner hears of the place
    // (a new device's email above already names it).
    await deps.places.observe(
      {
        accountId: moved.account_id,
        context,
        by: "by a sign-in",
        deviceId,
        quiet: newDevice || from === "device_approved",
      },
      trx,
    );
    // Last: the audit chain head stays locked from here to the commit.
    await deps.audit.append(
      {
        event: "sign_in.completed",
        outcome: "success",
        accountId: moved.account_id,
        details: { sessionId: session.id, client: session.client, aal: session.aal, methods },
      },
      context,
      trx,
    );
    const notices = session.aal < 2 ? [enableTwoFactorNotice] : [];
    if (account?.passwordBreachedAt != null) notices.unshift(changeBreachedPasswordNotice);
    return { state: "authenticated", flowId: flow.id, session, token, notices };
  }

  /** Marks the account (once: a later sign-in with the same password adds nothing) and audits it. */
  private async flagBreachedPassword(account: Account, context: RequestContext): Promise<void> {
    const { deps } = this;
    const marked = await deps.db.transaction().execute(async (trx) => {
      if (!(await deps.accounts.markPasswordBreached(account.id, deps.clock.now(), trx))) return false;
      await deps.audit.append(
        {
          event: "account.password_breached",
          outcome: "info",
          accountId: account.id,
          actor: "system",
          details: { foundAt: "sign_in" },
        },
        context,
        trx,
      );
      return true;
    });
    // Sessions already open show the request to change it too.
    if (marked) await deps.sessions.accountChanged(account.id);
  }

  private async signInFactors(account: Account): Promise<SignInFactor[]> {
    const factors = secondFactorNames(await this.deps.factors.listConfirmed(account.id));
    if (factors.length > 0 && account.masterKeyHash) factors.push("master_key");
    return factors;
  }

  private async load(flowId: string): Promise<FlowRow> {
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

  private async loadInState(flowId: string, state: FlowState): Promise<FlowRow> {
    const flow = await this.load(flowId);
    if (flow.state !== state)
      throw new Problem(
        409,
        "conflict",
        `This sign-in is not waiting for that step (it is at ${flow.state}).`,
      );
    return flow;
  }

  /**
   * docs/behaviour.md §6: a failed second factor after a correct password tells the owner. At most one such email per
   * account per quarter hour, however many sign-ins an attacker holding the password opens.
   */
  private async notifyFailedSecondFactor(account: Account, context: RequestContext): Promise<void> {
    const { deps } = this;
    const notice = await deps.limiter.hit(`notice:second-factor-failed:${account.id}`, {
      max: 1,
      windowMs: 15 * 60_000,
    });
    if (!notice.allowed) return;
    await deps.outbox.notify(account, {
      kind: "second_factor_failed",
      resetLink: new URL("/forgot-password", deps.publicUrl).href,
      ...securityDetails(context, deps.clock.now()),
    });
  }

  /**
   * A correct password on an unverified account: send a fresh link, at most three an hour. Counted and
   * issued in one transaction holding the account's row, so sign-ins arriving together cannot pass the
   * count at once.
   */
  private async resendVerification(account: Account): Promise<void> {
    const { deps } = this;
    const sent = await deps.db.transaction().execute(async (trx) => {
      const now = deps.clock.now();
      await deps.accounts.holdForChange(account.id, now, { lock: false, freeze: false }, trx);
      if ((await deps.tokens.countIssuedSince("verify_email", account.id, now - 3_600_000, trx)) >= 3)
        return false;
      const token = await deps.tokens.issue(
        "verify_email",
        account.id,
        deps.settings.signUp.emailVerificationTtlMs,
        null,
        trx,
      );
      const link = new URL("/verify-email", deps.publicUrl);
      link.searchParams.set("token", token);
      await deps.outbox.notify(
        account,
        { kind: "verify_email", username: account.username, link: link.href },
        trx,
      );
      return true;
    });
    if (sent) deps.outbox.nudge();
  }
}
