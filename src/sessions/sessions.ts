import type { Kysely, Selectable, Transaction } from "kysely";
import { type Account, toAccount } from "../accounts/accounts.js";
import type { Settings } from "../config/settings.js";
import { hashToken, mintToken, newId } from "../crypto/tokens.js";
import type { Database, SessionsTable } from "../db/schema.js";
import type { Clock } from "../support/clock.js";
import { iso } from "../support/clock.js";
import type { RequestContext } from "../support/request-context.js";
import type { Revocation, RevocationBus } from "./revocation.js";

export type ClientApp = "web" | "app" | "pro";

/** Who a session token speaks for: the session, its account, and what capability checks need of it. */
export interface Principal {
  session: Session;
  account: Account;
  security: { hasSecondFactor: boolean; restricted: boolean; holds: { kind: string; until: number }[] };
}

const CACHE_LIMIT = 10_000;

/** Whether a session has passed its absolute or its idle deadline. */
function timedOut(session: Session, now: number): boolean {
  return now >= session.expiresAt || now >= session.idleExpiresAt;
}

/** Whether a presented token could be one this service minted; no other is hashed or looked up. */
function plausibleToken(token: string): boolean {
  return token.length > 0 && token.length <= 128;
}
export const clientApps: readonly ClientApp[] = ["web", "app", "pro"];

export interface Session {
  id: string;
  accountId: string;
  client: ClientApp;
  aal: 1 | 2;
  methods: string[];
  authenticatedAt: number;
  steppedUpAt: number | null;
  deviceId: string | null;
  ip: string;
  country: string | null;
  city: string | null;
  userAgent: string | null;
  createdAt: number;
  lastSeenAt: number;
  expiresAt: number;
  idleExpiresAt: number;
  /** Opened with the Master Key bypass: nothing but enrolling a new second factor is allowed. */
  enrollmentRequired: boolean;
}

export interface IssueSession {
  accountId: string;
  client: ClientApp;
  methods: string[];
  deviceId: string | null;
  context: RequestContext;
  enrollmentRequired?: boolean;
}

export type EndReason =
  | "sign_out"
  | "ended_by_owner"
  | "ended_others"
  | "password_changed"
  | "superseded"
  | "device_removed"
  | "disconnect_all"
  | "account_disabled"
  | "account_frozen";

function toSession(row: Selectable<SessionsTable>): Session {
  return {
    id: row.id,
    accountId: row.account_id,
    client: row.client as ClientApp,
    aal: row.aal === 2 ? 2 : 1,
    methods: JSON.parse(row.methods) as string[],
    authenticatedAt: row.authenticated_at,
    steppedUpAt: row.stepped_up_at,
    deviceId: row.device_id,
    ip: row.ip,
    country: row.country,
    city: row.city,
    userAgent: row.user_agent,
    createdAt: row.created_at,
    lastSeenAt: row.last_seen_at,
    expiresAt: row.expires_at,
    idleExpiresAt: row.idle_expires_at,
    enrollmentRequired: row.enrollment_required === 1,
  };
}

/** Second-factor methods: a session that used one of these is AAL2 (NIST 800-63B). */
// The Master Key bypass is knowledge, like the password: it does not make a session AAL2. A passkey
// sign-in ("passkey") is a key the device holds, unlocked by user verification: both factors at once.
const secondFactorMethods = new Set(["totp", "webauthn", "recovery_code", "passkey"]);

/**
 * Sessions as rows (behaviour §5): the token is 256 random bits, only its SHA-256 is stored; idle and absolute
 * timeouts per client app are enforced here on every check.
 */
export class SessionService {
  /** Token hash → the principal and when it was read. Every revocation empties the matching entries. */
  private readonly cache = new Map<
    string,
    { principal: Principal; cachedAt: number; generation: string | null }
  >();
  private readonly cacheTtlMs: number;
  private readonly bus: RevocationBus | null;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly settings: Settings["sessions"],
    options: { cacheTtlMs: number; bus: RevocationBus | null } = { cacheTtlMs: 0, bus: null },
  ) {
    this.cacheTtlMs = options.cacheTtlMs;
    this.bus = options.bus;
    this.bus?.subscribe((revocation) => this.forget(revocation));
  }

  timeouts(client: ClientApp) {
    return client === "web" ? this.settings.web : this.settings.app;
  }

  async issue(
    input: IssueSession,
    db: Kysely<Database> = this.db,
  ): Promise<{ token: string; session: Session }> {
    const token = mintToken();
    const now = this.clock.now();
    const { idleMs, absoluteMs } = this.timeouts(input.client);
    const row = {
      id: newId(),
      token_hash: hashToken(token),
      account_id: input.accountId,
      client: input.client,
      aal: input.methods.some((m) => secondFactorMethods.has(m)) ? 2 : 1,
      methods: JSON.stringify(input.methods),
      authenticated_at: now,
      stepped_up_at: null,
      device_id: input.deviceId,
      ip: input.context.ip,
      country: input.context.country,
      city: input.context.city,
      user_agent: input.context.userAgent,
      created_at: now,
      last_seen_at: now,
      idle_expires_at: Math.min(now + idleMs, now + absoluteMs),
      expires_at: now + absoluteMs,
      ended_at: null,
      end_reason: null,
      enrollment_required: input.enrollmentRequired ? 1 : 0,
    };
    await db.insertInto("sessions").values(row).execute();
    return { token, session: toSession(row) };
  }

  /**
   * The session for a token, or null when unknown, ended or timed out. Writes only when last-seen is
   * older than the touch interval, so most checks are a single indexed read.
   */
  async authenticate(token: string): Promise<Principal | null> {
    if (!plausibleToken(token)) return null;
    const tokenHash = hashToken(token);
    const now = this.clock.now();
    const answered = this.answeredFromCache(tokenHash, now);
    if (answered) return answered;
    const cached = this.cache.get(tokenHash);
    // With other instances, the revocation generation is read before the session: whatever is revoked
    // after this read raises it, and the next check then reads the session again.
    const generation = this.bus && this.cacheTtlMs > 0 ? await this.bus.generation() : null;
    const stillValid =
      cached !== undefined &&
      this.cachedWithinTtl(cached, now) &&
      (this.bus === null || (generation !== null && generation === cached.generation));
    let principal: Principal | null;
    if (stillValid) {
      principal = cached.principal;
    } else {
      principal = await this.loadPrincipal(tokenHash);
      if (principal && this.cacheTtlMs > 0 && (this.bus === null || generation !== null))
        this.remember(tokenHash, principal, now, generation);
      else this.cache.delete(tokenHash);
    }
    if (!principal) return null;
    const { session } = principal;
    if (timedOut(session, now)) return null;
    if (this.dueForTouch(session, now)) {
      const idleExpiresAt = Math.min(now + this.timeouts(session.client).idleMs, session.expiresAt);
      const touched = await this.db
        .updateTable("sessions")
        .set({ last_seen_at: now, idle_expires_at: idleExpiresAt })
        .where("id", "=", session.id)
        .where("ended_at", "is", null)
        .returning("id")
        .executeTakeFirst();
      if (!touched) {
        this.cache.delete(tokenHash);
        return null;
      }
      session.lastSeenAt = now;
      session.idleExpiresAt = idleExpiresAt;
    }
    return principal;
  }

  /**
   * What `authenticate` answers for a token when it needs neither the database nor the other instances:
   * one instance (no revocation bus), the session cached within its time to live, not timed out and not
   * due for a touch. Undefined otherwise: then `authenticate` decides. Lets a request whose session is
   * cached pass authentication without waiting for a promise: with GET /v1/session answering
   * synchronously as well, the server's CPU a session check went from about 70 µs to about 40.
   */
  cachedPrincipal(token: string): Principal | undefined {
    if (!plausibleToken(token)) return undefined;
    return this.answeredFromCache(hashToken(token), this.clock.now());
  }

  private answeredFromCache(tokenHash: string, now: number): Principal | undefined {
    if (this.bus !== null || this.cacheTtlMs <= 0) return undefined;
    const cached = this.cache.get(tokenHash);
    if (cached === undefined || !this.cachedWithinTtl(cached, now)) return undefined;
    const { session } = cached.principal;
    if (timedOut(session, now) || this.dueForTouch(session, now)) return undefined;
    return cached.principal;
  }

  private cachedWithinTtl(cached: { cachedAt: number }, now: number): boolean {
    return now - cached.cachedAt < this.cacheTtlMs;
  }

  /** Whether a check now moves the session's last-seen time and idle deadline on (a write). */
  private dueForTouch(session: Session, now: number): boolean {
    return now - session.lastSeenAt >= this.settings.touchIntervalMs;
  }

  /** The session with its account, in one query; null when unknown or ended. */
  private async loadPrincipal(tokenHash: string): Promise<Principal | null> {
    const row = await this.db
      .selectFrom("sessions as s")
      .innerJoin("accounts as a", "a.id", "s.account_id")
      .leftJoin("account_guards as g", "g.account_id", "s.account_id")
      .selectAll("s")
      .select([
        "a.email",
        "a.email_key",
        "a.username",
        "a.password_hash",
        // Aliased: selectAll("s") has the session's own country, which a bare "a.country" would overwrite.
        "a.country as account_country",
        "a.region",
        "a.tier",
        "a.email_verified_at",
        "a.email_sign_in",
        "a.anti_phishing_code",
        "a.disabled_at",
        "a.funding_2fa",
        "a.trading_2fa",
        "a.trading_passcode_hash",
        "a.master_key_hash",
        "a.global_lock_since",
        "a.global_lock_delay_days",
        "a.global_lock_unlocks_at",
        "a.frozen_at",
        "a.password_breached_at",
        "a.created_at as account_created_at",
        "g.permanently_restricted_at",
      ])
      // The hold that ends last, if any: enough for what a session shows (gates read every hold afresh).
      .select((eb) =>
        eb
          .selectFrom("security_holds as h")
          .select("h.until")
          .whereRef("h.account_id", "=", "s.account_id")
          .orderBy("h.until", "desc")
          .limit(1)
          .as("hold_until"),
      )
      .select((eb) =>
        eb
          .selectFrom("security_holds as h")
          .select("h.kind")
          .whereRef("h.account_id", "=", "s.account_id")
          .orderBy("h.until", "desc")
          .limit(1)
          .as("hold_kind"),
      )
      .select((eb) =>
        eb
          .exists(
            eb
              .selectFrom("second_factors as f")
              .select("f.id")
              .whereRef("f.account_id", "=", "s.account_id")
              .where("f.confirmed_at", "is not", null),
          )
          .as("has_second_factor"),
      )
      .where("s.token_hash", "=", tokenHash)
      .where("s.ended_at", "is", null)
      .executeTakeFirst();
    if (!row) return null;
    const account = toAccount({
      id: row.account_id,
      email: row.email,
      email_key: row.email_key,
      username: row.username,
      password_hash: row.password_hash,
      country: row.account_country,
      region: row.region,
      tier: row.tier,
      email_verified_at: row.email_verified_at,
      email_sign_in: row.email_sign_in,
      anti_phishing_code: row.anti_phishing_code,
      disabled_at: row.disabled_at,
      funding_2fa: row.funding_2fa,
      trading_2fa: row.trading_2fa,
      trading_passcode_hash: row.trading_passcode_hash,
      master_key_hash: row.master_key_hash,
      global_lock_since: row.global_lock_since,
      global_lock_delay_days: row.global_lock_delay_days,
      global_lock_unlocks_at: row.global_lock_unlocks_at,
      frozen_at: row.frozen_at,
      password_breached_at: row.password_breached_at,
      created_at: row.account_created_at,
    });
    return {
      session: toSession(row),
      account,
      security: {
        hasSecondFactor: Boolean(row.has_second_factor),
        restricted: account.disabled || row.permanently_restricted_at !== null,
        holds:
          row.hold_until !== null && row.hold_kind !== null
            ? [{ kind: row.hold_kind, until: Number(row.hold_until) }]
            : [],
      },
    };
  }

  private remember(tokenHash: string, principal: Principal, now: number, generation: string | null): void {
    if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(tokenHash, { principal, cachedAt: now, generation });
  }

  /**
   * The account changed (tier, jurisdiction, factors, restriction): sessions read before the change are
   * read again, here and on every instance.
   */
  async accountChanged(accountId: string): Promise<void> {
    await this.revoked({ accountId });
  }

  /** Forget cached sessions here, and tell the other instances to. */
  private async revoked(revocation: Revocation): Promise<void> {
    this.forget(revocation);
    await this.bus?.publish(revocation);
  }

  private forget({ accountId, sessionId }: Revocation): void {
    for (const [hash, entry] of this.cache) {
      const { session } = entry.principal;
      if (session.accountId === accountId && (sessionId === undefined || session.id === sessionId)) {
        this.cache.delete(hash);
      }
    }
  }

  /**
   * A new token for a privilege change (step-up, docs/behaviour.md §5): the session continues under a new id and token
   * with the added methods, and the old token dies at once. Null when the old session already ended.
   */
  async rotate(
    session: Session,
    addedMethods: string[],
    alongside?: (trx: Transaction<Database>, next: Session) => Promise<void>,
  ): Promise<{ token: string; session: Session } | null> {
    const rotated = await this.db.transaction().execute(async (trx) => {
      const next = await this.rotateWithin(trx, session, addedMethods);
      if (next) await alongside?.(trx, next.session);
      return next;
    });
    if (rotated) await this.revoked({ accountId: session.accountId, sessionId: session.id });
    return rotated;
  }

  /** The rotation's writes: `alongside` (what the step-up confirmed) commits with them or not at all. */
  private async rotateWithin(
    trx: Transaction<Database>,
    session: Session,
    addedMethods: string[],
  ): Promise<{ token: string; session: Session } | null> {
    await holdSessionsOf(trx, session.accountId);
    const now = this.clock.now();
    const ended = await trx
      .updateTable("sessions")
      .set({ ended_at: now, end_reason: "superseded" })
      .where("id", "=", session.id)
      .where("ended_at", "is", null)
      .returning("id")
      .executeTakeFirst();
    if (!ended) return null;
    const methods = [...new Set([...session.methods, ...addedMethods])];
    const token = mintToken();
    const { idleMs } = this.timeouts(session.client);
    const row = {
      id: newId(),
      token_hash: hashToken(token),
      account_id: session.accountId,
      client: session.client,
      aal: methods.some((m) => secondFactorMethods.has(m)) ? 2 : 1,
      methods: JSON.stringify(methods),
      authenticated_at: session.authenticatedAt,
      stepped_up_at: now,
      device_id: session.deviceId,
      ip: session.ip,
      country: session.country,
      city: session.city,
      user_agent: session.userAgent,
      created_at: now,
      last_seen_at: now,
      idle_expires_at: Math.min(now + idleMs, session.expiresAt),
      // The absolute limit counts from sign-in, not from the step-up.
      expires_at: session.expiresAt,
      ended_at: null,
      end_reason: null,
      enrollment_required: session.enrollmentRequired ? 1 : 0,
    };
    await trx.insertInto("sessions").values(row).execute();
    return { token, session: toSession(row) };
  }

  /**
   * A new second factor was enrolled: sessions opened by the Master Key bypass may do everything again.
   * Written in the enrollment's transaction; its caller tells the instances (accountChanged) after commit.
   */
  async clearEnrollmentRequired(accountId: string, trx: Transaction<Database>): Promise<void> {
    await trx
      .updateTable("sessions")
      .set({ enrollment_required: 0 })
      .where("account_id", "=", accountId)
      .where("enrollment_required", "=", 1)
      .execute();
  }

  /**
   * Ends every session of the account but `keepSessionId`, in the transaction of the change that asks for
   * it. The caller tells every instance (accountChanged) after the commit: telling them before would let
   * one read the still-live session again and cache it.
   */
  async endAllWithin(
    trx: Transaction<Database>,
    accountId: string,
    keepSessionId: string | null,
    reason: EndReason,
  ): Promise<number> {
    return (await this.endAllIn(trx, accountId, keepSessionId, reason)).length;
  }

  /** Ends the account's sessions but one (or all) in `trx`, holding them first; the ids of those ended. */
  private async endAllIn(
    trx: Transaction<Database>,
    accountId: string,
    keepSessionId: string | null,
    reason: EndReason,
  ): Promise<{ id: string }[]> {
    await holdSessionsOf(trx, accountId);
    let query = trx
      .updateTable("sessions")
      .set({ ended_at: this.clock.now(), end_reason: reason })
      .where("account_id", "=", accountId)
      .where("ended_at", "is", null);
    if (keepSessionId) query = query.where("id", "!=", keepSessionId);
    return query.returning("id").execute();
  }

  async endForDevice(accountId: string, deviceId: string, reason: EndReason): Promise<number> {
    const rows = await this.db
      .updateTable("sessions")
      .set({ ended_at: this.clock.now(), end_reason: reason })
      .where("account_id", "=", accountId)
      .where("device_id", "=", deviceId)
      .where("ended_at", "is", null)
      .returning("id")
      .execute();
    for (const row of rows) await this.revoked({ accountId, sessionId: row.id });
    return rows.length;
  }

  async listActive(accountId: string): Promise<Session[]> {
    const now = this.clock.now();
    const rows = await this.db
      .selectFrom("sessions")
      .selectAll()
      .where("account_id", "=", accountId)
      .where("ended_at", "is", null)
      .where("expires_at", ">", now)
      .where("idle_expires_at", ">", now)
      .orderBy("last_seen_at", "desc")
      .execute();
    return rows.map(toSession);
  }

  /** Ends one session of this account; false when it does not exist, belongs to someone else or already ended. */
  async end(accountId: string, sessionId: string, reason: EndReason): Promise<boolean> {
    const row = await this.db
      .updateTable("sessions")
      .set({ ended_at: this.clock.now(), end_reason: reason })
      .where("id", "=", sessionId)
      .where("account_id", "=", accountId)
      .where("ended_at", "is", null)
      .returning("id")
      .executeTakeFirst();
    if (row) await this.revoked({ accountId, sessionId });
    return row !== undefined;
  }

  /** Ends every session of the account except `keepSessionId` (none when null); returns how many ended. */
  async endAll(accountId: string, keepSessionId: string | null, reason: EndReason): Promise<number> {
    const ended = await this.db
      .transaction()
      .execute((trx) => this.endAllIn(trx, accountId, keepSessionId, reason));
    for (const row of ended) await this.revoked({ accountId, sessionId: row.id });
    return ended.length;
  }
}

/**
 * Holds an account's sessions for the rest of the transaction, so that a rotation (which ends a session
 * and inserts its successor) and an "end all" happen one after the other: on PostgreSQL, an "end all"
 * whose statement began while a rotation was still open ended the old session only, and the successor,
 * committed after that statement's snapshot, lived on. The row held is the account's security epoch
 * (touched, not moved).
 */
async function holdSessionsOf(trx: Transaction<Database>, accountId: string): Promise<void> {
  await trx
    .insertInto("account_security_epochs")
    .values({ account_id: accountId, epoch: 0 })
    .onConflict((oc) =>
      oc.column("account_id").doUpdateSet((eb) => ({ epoch: eb.ref("account_security_epochs.epoch") })),
    )
    .execute();
}

/** When a session ends if nothing more happens: its absolute deadline or its idle one, whichever is first. */
export function sessionEndsAt(session: Pick<Session, "expiresAt" | "idleExpiresAt">): string {
  return iso(Math.min(session.expiresAt, session.idleExpiresAt));
}

export function describeSession(session: Session, currentSessionId: string | null) {
  return {
    id: session.id,
    client: session.client,
    aal: session.aal,
    methods: session.methods,
    ip: session.ip,
    location: session.city && session.country ? `${session.city}, ${session.country}` : session.country,
    userAgent: session.userAgent,
    deviceId: session.deviceId,
    authenticatedAt: iso(session.authenticatedAt),
    createdAt: iso(session.createdAt),
    lastSeenAt: iso(session.lastSeenAt),
    expiresAt: sessionEndsAt(session),
    current: session.id === currentSessionId,
  };
}
