import type { Kysely } from "kysely";
import type { Account } from "../accounts/accounts.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { CapabilityService, SecurityInputs } from "../capabilities/capability-service.js";
import { type Capability, type Reason, tradingRefusal } from "../capabilities/evaluate.js";
import type { DataKey } from "../crypto/data-key.js";
import { constantTimeEqual } from "../crypto/tokens.js";
import type { Database } from "../db/schema.js";
import { matchTotp } from "../factors/totp.js";
import type { NewPlaces } from "../security/new-places.js";
import type { Clock } from "../support/clock.js";
import type { Metrics } from "../support/metrics.js";
import { addressSubject, plainAddress } from "../support/network.js";
import type { ApiApprovals } from "./approvals.js";
import type {
  Dialect,
  DialectName,
  GatewayRequest,
  KeyRow,
  Operation,
  ParsedRequest,
  Refusal,
} from "./dialects/dialect.js";
import { type GatewayCache, keyExpired } from "./gateway-cache.js";
import type { GatewayState } from "./gateway-state.js";
import { keySubject, sourceSubjects } from "./lockout.js";
import { BodyError, type ParamValue, type ParsedBody, text, withoutGatewayFields } from "./request-body.js";
import type { KnownOrder } from "./trading-limiter.js";

export type { GatewayRequest } from "./dialects/dialect.js";
export { type KrakenError, nonceOf } from "./dialects/kraken.js";

export interface Allowed {
  allow: true;
  dialect: DialectName;
  keyId: string;
  accountId: string;
  /** The key's permissions, in its dialect's names. */
  permissions: readonly string[];
  /** The operation by the dialect's table: Kraken's method name, or "METHOD /path/pattern". */
  method: string;
  /** What the venue receives: the parameters that were checked, serialised canonically. */
  body: ParsedBody;
  /** The query string the venue receives, re-serialised from the parse ("" when none). */
  query: string;
  /** The key's history window (epoch ms), for the venue to bound what it returns. */
  queryFrom: number | null;
  queryTo: number | null;
}

export interface Refused {
  allow: false;
  reason: Refusal;
  /** The exchange's own error code or string, and its answer as the client's library expects it. */
  error: string;
  status: number;
  answer: unknown;
  keyId?: string;
  accountId?: string;
  /** With an approval refusal: what the owner approves, and until when it can be. */
  approval?: { id: string; expiresAt: string };
}

export type Verdict = Allowed | Refused;

/** Refusals of signed requests that come in floods (a bot past its limit): audited in aggregate. */
const floods = new Set<Refusal>(["rate_limit", "order_rate_limit"]);

/** Which lockout a refusal counts toward: guesses before a valid signature, or a signer's mistakes after. */
type Counted = "source" | "key" | null;
type Decision =
  | Allowed
  | {
      allow: false;
      reason: Refusal;
      counted: Counted;
      /** The refusal came after a valid signature, from the key's holder. */
      signed?: boolean;
      keyId?: string;
      accountId?: string;
      approval?: { id: string; expiresAt: string };
    };

/** The pipeline's refusal for what the capability function said, by what refused it. */
function capabilityRefusal(reasons: Reason[]): Refusal {
  const codes = reasons.map((reason) => reason.code);
  // A frozen account ("lock my account") is refused as a restricted one is, in each exchange's words.
  if (codes.includes("account_frozen") || codes.includes("account_restricted")) return "account_restricted";
  const engine = reasons.find((reason) => reason.code === "subsystem_maintenance");
  if (engine && engine.code === "subsystem_maintenance") {
    if (engine.state === "cancel_only" && reasons.length === 1) return "cancel_only";
    if (engine.state === "post_only" && reasons.length === 1) return "post_only";
    return "unavailable";
  }
  return "product_refused";
}

/**
 * The one pipeline for every dialect's signed requests, in this order: the operation is one the dialect
 * lists (by the method and path as sent); the credential headers the dialect always needs are present;
 * the temporary lockout of the source; the key (of this dialect), its expiry and IP allowlist; the one
 * parse of query and body; the dialect's authentication (signature over the bytes as sent,
 * constant-time; timestamp; passphrase); the key's own lockout; the claim that makes the request
 * single-use (a nonce, a signature); the key's own second factor where the dialect has one; the
 * permission the operation needs; unknown fields of money-moving operations; the capability function
 * for the account and for the product the request uses (with the engine's cancel_only/post_only modes);
 * the key's history window; the dialect's rate limits; and the approval thresholds. Failures before a
 * valid signature count against the source, and so do claims refused after it (a captured copy is
 * validly signed); a wrong key otp counts against the key. Every decision is counted and
 * audited; what is allowed carries the canonical query and body the venue receives. A dialect only reads
 * its credentials and writes its answers.
 */
export class SignedRequestVerifier {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dataKey: DataKey,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly metrics: Metrics,
    private readonly cache: GatewayCache,
    private readonly capabilities: CapabilityService,
    private readonly state: GatewayState,
    private readonly approvals: ApiApprovals,
    private readonly places: NewPlaces | null = null,
  ) {}

  async verify(dialect: Dialect, request: GatewayRequest): Promise<Verdict> {
    const decision = await this.decide(dialect, request);
    let result: Verdict;
    if (decision.allow) result = decision;
    else {
      const { counted } = decision;
      if (counted === "source")
        await this.state.recordFailure(sourceSubjects(dialect.apiKey(request), request.ip));
      if (counted === "key" && decision.keyId) await this.state.recordFailure([keySubject(decision.keyId)]);
      const answer = dialect.refusal(decision.reason, {
        ip: plainAddress(request.ip),
        now: this.clock.now(),
        ...(decision.approval ? { approval: decision.approval } : {}),
      });
      // Written out field by field (a spread with fields after it is V8's slow path), absent ones left out.
      const refused: Refused = {
        allow: false,
        reason: decision.reason,
        error: answer.error,
        status: answer.status,
        answer: answer.body,
      };
      if (decision.keyId !== undefined) refused.keyId = decision.keyId;
      if (decision.accountId !== undefined) refused.accountId = decision.accountId;
      if (decision.approval !== undefined) refused.approval = decision.approval;
      result = refused;
    }
    this.metrics.countDecision(result.allow ? "allow" : result.error);
    const context = {
      ip: request.ip,
      userAgent: request.userAgent,
      location: null,
      country: null,
      city: null,
    };
    // A key used from a country the account was not used from: the owner is told once.
    if (result.allow) {
      await this.places?.observe({
        accountId: result.accountId,
        context,
        by: `by the API key with id ${result.keyId}`,
      });
    }
    const dialectDetail = dialect.name === "kraken" ? {} : { dialect: dialect.name };
    // Nobody proved who they are, or a key's holder keeps calling past its rate limit: a flood of these
    // costs one audit entry per source, key, error and minute, not one per request.
    const flood = !decision.allow && (!decision.signed || floods.has(decision.reason));
    if (flood && !result.allow) {
      // A signed request spent its nonce: the count resolves once it and the nonce are committed, so the
      // nonce is durable before the answer, as an audit entry would make it.
      await this.audit.appendAggregated(
        `api_key.refused|${addressSubject(request.ip)}|${dialect.name}|${result.error}|${result.keyId ?? "-"}`,
        {
          event: "api_key.request",
          outcome: "refused",
          accountId: result.accountId ?? null,
          actor: decision.signed && result.keyId ? `api_key:${result.keyId}` : "anonymous",
          details: {
            error: result.error,
            path: request.path.slice(0, 200),
            ...dialectDetail,
            ...(result.keyId ? { keyId: result.keyId } : {}),
          },
        },
        context,
      );
      return result;
    }
    await this.audit.append(
      {
        event: "api_key.request",
        outcome: result.allow ? "success" : "refused",
        accountId: result.accountId ?? null,
        actor: result.keyId ? `api_key:${result.keyId}` : "anonymous",
        details: result.allow
          ? { method: result.method, ...dialectDetail }
          : {
              error: result.error,
              path: request.path.slice(0, 200),
              ...dialectDetail,
              ...(result.approval ? { approvalId: result.approval.id } : {}),
            },
      },
      context,
    );
    return result;
  }

  private async decide(dialect: Dialect, request: GatewayRequest): Promise<Decision> {
    const operation = dialect.operation(request);
    if (!operation) return { allow: false, reason: "unknown_method", counted: null };
    if (!dialect.credentialsPresent(request))
      return { allow: false, reason: "missing_credentials", counted: null };

    const sent = dialect.apiKey(request);
    const apiKey = sent && sent.length <= 128 ? sent : undefined;
    const source = sourceSubjects(apiKey, request.ip);
    await this.cache.refresh();
    const cached = apiKey ? await this.cache.key(apiKey) : null;
    // A key signs in its own dialect only: a Kraken key's string sent with KuCoin headers is no key.
    const row = cached && cached.row.dialect === dialect.name ? cached.row : undefined;
    const locked = await this.state.lockedOut(row ? [...source, keySubject(row.id)] : source);
    if (source.some((subject) => locked.has(subject)))
      return { allow: false, reason: "lockout", counted: null, ...(row ? { keyId: row.id } : {}) };
    if (!cached || !row) return { allow: false, reason: "invalid_key", counted: "source" };

    let signed = false;
    const refuse = (
      reason: Refusal,
      counted: Counted = null,
      approval?: { id: string; expiresAt: string },
    ): Decision => {
      const decision: Decision = {
        allow: false,
        reason,
        keyId: row.id,
        accountId: row.account_id,
        counted,
        signed,
      };
      if (approval) decision.approval = approval;
      return decision;
    };
    const now = this.clock.now();
    if (keyExpired(row, now)) return refuse("invalid_key", "source");
    if (!cached.allowsAddress(request.ip)) return refuse("ip");

    let parsed: ParsedRequest;
    try {
      parsed = dialect.parse(request, operation);
    } catch (error) {
      if (error instanceof BodyError) return refuse("invalid_arguments");
      throw error;
    }
    const secrets = { secret: cached.secret, passphrase: cached.passphrase };
    const unauthenticated = dialect.authenticate(request, parsed, secrets, now);
    if (unauthenticated) return refuse(unauthenticated, "source");

    // From here on the sender holds the key's secret.
    signed = true;
    if (locked.has(keySubject(row.id))) return refuse("lockout");
    // A used or stale nonce, or a signature already accepted, proves only that the sender saw a request
    // the key signed, not that it holds the secret (a captured request, sent again or an old one sent
    // late): it counts against where it comes from, so nobody holding a copy can lock the key out.
    const unclaimed = await dialect.claim(this.state, row, request, parsed, now);
    if (unclaimed) return refuse(unclaimed, "source");
    if (dialect.keyOtp && !(await this.otpAccepted(row, parsed.params.otp, now)))
      return refuse("invalid_key", "key");

    const keyPermissions = cached.permissions;
    const needed = dialect.permission(operation, parsed.params);
    if (needed && !dialect.grants(keyPermissions, needed)) return refuse("permission");
    if (dialect.unknownField(operation, parsed.params) !== null) return refuse("invalid_arguments");

    const gate = await this.cache.gateInputs(row.account_id);
    if (!gate) return refuse("invalid_key");
    const { account } = gate;
    const refusedByCapabilities = await this.checkCapabilities(
      dialect,
      account,
      gate.security,
      operation,
      parsed,
    );
    if (refusedByCapabilities) return refuse(refusedByCapabilities);

    const bounded = dialect.bound(row, operation, parsed);
    if (bounded === "outside") return refuse("permission");
    if (bounded === "invalid") return refuse("invalid_arguments");
    parsed = bounded;

    const limit = await dialect.charge({
      state: this.state,
      row,
      account,
      operation,
      parsed,
      now,
      knownOrders: (txids) => this.knownOrders(row.id, txids),
    });
    if (limit) return refuse(limit);

    const approval = await this.approvals.decide(account, row, operation.name, parsed.params, {
      movements: (params) => dialect.movements(operation, params),
      describe: (params) => dialect.describe(operation, params),
    });
    if (approval.kind === "invalid") return refuse("invalid_arguments");
    if (approval.kind === "required") {
      const { id, expiresAt } = approval.approval;
      return refuse("approval_required", null, { id, expiresAt });
    }
    return {
      allow: true,
      dialect: dialect.name,
      keyId: row.id,
      accountId: row.account_id,
      permissions: keyPermissions,
      method: operation.name,
      body: withoutGatewayFields(parsed.body),
      query: parsed.query,
      queryFrom: row.query_from,
      queryTo: row.query_to,
    };
  }

  /**
   * The capability function decides for the API, and for the product the request uses, with the
   * engine's modes applied to orders and cancels as Kraken applies them.
   */
  private async checkCapabilities(
    dialect: Dialect,
    account: Account,
    security: SecurityInputs,
    operation: Operation,
    parsed: ParsedRequest,
  ): Promise<Refusal | null> {
    const product = dialect.product(operation, parsed.params);
    const vector = await this.capabilities.products(
      account,
      "api",
      product ? ["api", product] : ["api"],
      security,
    );
    if (!vector.api.allowed) return capabilityRefusal(vector.api.reasons);
    if (!product) return null;
    const capability: Capability = vector[product]!;
    const intent = dialect.intent(operation, parsed.params);
    const reasons = intent
      ? tradingRefusal(capability, intent)
      : capability.allowed
        ? null
        : capability.reasons;
    return reasons ? capabilityRefusal(reasons) : null;
  }

  private async knownOrders(keyId: string, txids: string[]): Promise<Map<string, KnownOrder>> {
    if (txids.length === 0) return new Map();
    const rows = await this.db
      .selectFrom("api_orders")
      .select(["txid", "pair", "placed_at"])
      .where("key_id", "=", keyId)
      .where("txid", "in", txids.slice(0, 100))
      .execute();
    return new Map(rows.map((row) => [row.txid, { pair: row.pair, placedAt: row.placed_at }]));
  }

  /** Remembers orders the venue placed for a key (from its AddOrder answers), for the cancel penalty. */
  async recordPlacedOrders(keyId: string, pair: string, txids: string[]): Promise<void> {
    const now = this.clock.now();
    const rows = txids
      .filter((txid) => /^[A-Za-z0-9_-]{1,64}$/.test(txid))
      .slice(0, 100)
      .map((txid) => ({ key_id: keyId, txid, pair, placed_at: now }));
    if (rows.length === 0) return;
    await this.db
      .insertInto("api_orders")
      .values(rows)
      .onConflict((oc) => oc.columns(["key_id", "txid"]).doNothing())
      .execute();
  }

  /**
   * The key's own second factor, sent as `otp`: a static password (constant-time) or a TOTP code within
   * one step either side, accepted once (RFC 6238 §5.2): the step is claimed by a conditional UPDATE, so
   * of parallel requests carrying one code exactly one passes. A bot that calls more often than every 30
   * seconds uses a static password.
   */
  private async otpAccepted(row: KeyRow, value: ParamValue | undefined, now: number): Promise<boolean> {
    if (row.otp_type === null || row.otp_sealed === null) return true;
    const otp = text(value);
    if (otp === null || otp.length === 0 || otp.length > 256) return false;
    const secret = this.dataKey.open(row.otp_sealed, `${row.id}:otp`);
    if (row.otp_type === "static") return constantTimeEqual(otp, secret.toString("utf8"));
    const match = matchTotp(new Uint8Array(secret), otp, now);
    if (match === null || !("step" in match)) return false;
    return this.state.claimOtpStep(row.id, match.step);
  }
}
