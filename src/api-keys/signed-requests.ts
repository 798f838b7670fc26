import { timingSafeEqual } from "node:crypto";
import { BlockList, isIPv6 } from "node:net";
import type { Kysely, Selectable } from "kysely";
import type { Account } from "../accounts/accounts.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { CapabilityService, SecurityInputs } from "../capabilities/capability-service.js";
import {
  type Capability,
  type Reason,
  type TradingIntent,
  tradingRefusal,
} from "../capabilities/evaluate.js";
import { krakenSignatureBytes } from "../client/kraken-client.js";
import type { DataKey } from "../crypto/data-key.js";
import { constantTimeEqual } from "../crypto/tokens.js";
import type { ApiKeysTable, Database } from "../db/schema.js";
import { matchTotp } from "../factors/totp.js";
import type { NewPlaces } from "../security/new-places.js";
import type { Clock } from "../support/clock.js";
import type { Metrics } from "../support/metrics.js";
import { plainAddress } from "../support/network.js";
import type { ApiApprovals } from "./approvals.js";
import type { GatewayCache } from "./gateway-cache.js";
import type { GatewayState } from "./gateway-state.js";
import { allPostOnly, cancelMethods, orderEntryMethods, productOf, unknownField } from "./kraken-requests.js";
import { keySubject, sourceSubjects } from "./lockout.js";
import { callCost, methodPermissions, type Permission } from "./permissions.js";
import {
  BodyError,
  type ParsedBody,
  parseBody,
  text,
  withoutGatewayFields,
  withParams,
} from "./request-body.js";
import { type KnownOrder, tradingCharges, tradingMethods } from "./trading-limiter.js";

export type KrakenError =
  | "EAPI:Invalid key"
  | "EAPI:Invalid signature"
  | "EAPI:Invalid nonce"
  | "EAPI:Rate limit exceeded"
  | "EOrder:Rate limit exceeded"
  | "EGeneral:Permission denied"
  | "EGeneral:Unknown method"
  | "EGeneral:Invalid arguments"
  | "EGeneral:Temporary lockout"
  | "EGeneral:Approval required"
  | "EAuth:Account temporary disabled"
  | "EService:Market in cancel_only mode"
  | "EService:Market in post_only mode"
  | "EService:Unavailable";

export interface SignedRequest {
  /** The URI path exactly as sent, e.g. /0/private/Balance: it is part of what is signed. */
  path: string;
  /** The request's Content-Type header: the body is parsed as what it declares, and only so. */
  contentType: string | undefined;
  apiKey: string | undefined;
  apiSign: string | undefined;
  /** The body exactly as sent: the signature covers it byte for byte. */
  body: string;
  ip: string;
  userAgent: string | null;
}

export interface Allowed {
  allow: true;
  keyId: string;
  accountId: string;
  permissions: Permission[];
  method: string;
  /** What the venue receives: the parameters that were checked, serialised canonically. */
  body: ParsedBody;
  /** The key's history window (epoch ms), for the venue to bound what it returns. */
  queryFrom: number | null;
  queryTo: number | null;
}

export type Refused = {
  allow: false;
  error: KrakenError;
  keyId?: string;
  accountId?: string;
  /** With EGeneral:Approval required: what the owner approves, and until when it can be. */
  approval?: { id: string; expiresAt: string };
};

export type Verdict = Allowed | Refused;

/** Which lockout a refusal counts toward: guesses before a valid signature, or a signer's mistakes after. */
type Counted = "source" | "key" | null;
type Decision = Allowed | (Refused & { counted?: Counted });

const U64_MAX = 18446744073709551615n;

/**
 * The nonce of a request as sent (the string is what the client signed, leading zeros and all) and its
 * value as a u64; null when absent or malformed.
 */
export function nonceOf(
  value: ParsedBody["params"][string] | undefined,
): { sent: string; value: bigint } | null {
  if (typeof value === "number" && !Number.isSafeInteger(value)) return null;
  const sent = text(value);
  if (sent === null || !/^\d{1,24}$/.test(sent)) return null;
  const parsed = BigInt(sent);
  return parsed > 0n && parsed <= U64_MAX ? { sent, value: parsed } : null;
}

function allowedAddress(ip: string, cidrs: string[]): boolean {
  if (cidrs.length === 0) return true;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address, bits] = cidr.split("/") as [string, string | undefined];
    const type = isIPv6(address) ? "ipv6" : "ipv4";
    list.addSubnet(address, bits === undefined ? (type === "ipv4" ? 32 : 128) : Number(bits), type);
  }
  const address = plainAddress(ip);
  return list.check(address, isIPv6(address) ? "ipv6" : "ipv4");
}

/** Kraken's answer for a refusal of the capability function, by what refused it. */
function capabilityError(reasons: Reason[]): KrakenError {
  const codes = reasons.map((reason) => reason.code);
  if (codes.includes("account_frozen") || codes.includes("account_restricted"))
    return "EAuth:Account temporary disabled";
  const engine = reasons.find((reason) => reason.code === "subsystem_maintenance");
  if (engine && engine.code === "subsystem_maintenance") {
    if (engine.state === "cancel_only" && reasons.length === 1) return "EService:Market in cancel_only mode";
    if (engine.state === "post_only" && reasons.length === 1) return "EService:Market in post_only mode";
    return "EService:Unavailable";
  }
  return "EGeneral:Permission denied";
}

/** History methods and the fields that bound them in time (unix seconds). */
const historyBounds: Record<string, [string, string]> = {
  ClosedOrders: ["start", "end"],
  TradesHistory: ["start", "end"],
  Ledgers: ["start", "end"],
  AddExport: ["starttm", "endtm"],
};
const TIME = /^\d{1,12}(\.\d{1,6})?$/;

/**
 * A windowed key's history request, bounded: a bound outside the window is refused; a missing bound is
 * set to the window's edge, so the venue is asked for nothing outside it; a bound that is not a time (an
 * order id, which Kraken also accepts) is refused for such a key, since it cannot be checked.
 */
function boundedHistory(
  row: Selectable<ApiKeysTable>,
  method: string,
  body: ParsedBody,
): ParsedBody | "outside" | "invalid" {
  const fields = historyBounds[method];
  if (!fields || (row.query_from === null && row.query_to === null)) return body;
  const [startField] = fields;
  const changes: Record<string, string> = {};
  for (const field of fields) {
    const value = body.params[field];
    if (value === undefined) {
      const edge = field === startField ? row.query_from : row.query_to;
      if (edge !== null)
        changes[field] = String(field === startField ? Math.floor(edge / 1000) : Math.ceil(edge / 1000));
      continue;
    }
    const raw = text(value);
    if (raw === null || !TIME.test(raw)) return "invalid";
    const ms = Number(raw) * 1000;
    if ((row.query_from !== null && ms < row.query_from) || (row.query_to !== null && ms > row.query_to))
      return "outside";
  }
  return Object.keys(changes).length > 0 ? withParams(body, changes) : body;
}

/** The methods whose refusals of a cancel-only market still let them through: cancels. */
function intentOf(method: string, body: ParsedBody): TradingIntent | null {
  if (cancelMethods.includes(method)) return { kind: "cancel" };
  if (orderEntryMethods.includes(method))
    return { kind: "order", postOnly: allPostOnly(method, body.params) };
  return null;
}

/**
 * Verifies a Kraken-signed private request, in this order: the method is one Kraken has (by name, from
 * the path as sent); the temporary lockout of the source; the key, its expiry and IP allowlist; the body,
 * parsed once by its declared Content-Type; the signature over the bytes as sent (constant-time); the
 * key's own lockout; the nonce, claimed atomically above a floor that never moves down; the key's own
 * second factor; unknown fields of money-moving methods; the permission the method needs; the capability
 * function for the account and for every order the request enters (leverage anywhere makes it margin,
 * the engine's cancel_only/post_only modes); the key's history window; Kraken's trading limiter for
 * order events and the REST call counter for everything else; and the approval thresholds. Every
 * decision is counted and audited; what is allowed carries the canonical body the venue receives.
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

  async verify(request: SignedRequest): Promise<Verdict> {
    const decision = await this.decide(request);
    const { counted, ...verdict } = decision as Refused & { counted?: Counted };
    if (counted === "source") await this.state.recordFailure(sourceSubjects(request.apiKey, request.ip));
    if (counted === "key" && verdict.keyId) await this.state.recordFailure([keySubject(verdict.keyId)]);
    const result = verdict as Verdict;
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
    this.metrics.apiKeyDecisions.inc({ outcome: result.allow ? "allow" : result.error });
    await this.audit.append(
      {
        event: "api_key.request",
        outcome: result.allow ? "success" : "refused",
        accountId: result.accountId ?? null,
        actor: result.keyId ? `api_key:${result.keyId}` : "anonymous",
        details: result.allow
          ? { method: result.method }
          : {
              error: result.error,
              path: request.path.slice(0, 200),
              ...(result.approval ? { approvalId: result.approval.id } : {}),
            },
      },
      context,
    );
    return result;
  }

  private async decide(request: SignedRequest): Promise<Decision> {
    const method = request.path.startsWith("/0/private/") ? request.path.slice("/0/private/".length) : "";
    if (!Object.hasOwn(methodPermissions, method)) return { allow: false, error: "EGeneral:Unknown method" };

    const apiKey = request.apiKey && request.apiKey.length <= 128 ? request.apiKey : undefined;
    const source = sourceSubjects(apiKey, request.ip);
    await this.cache.refresh();
    const cached = apiKey ? await this.cache.key(apiKey) : null;
    const row = cached?.row;
    const locked = await this.state.lockedOut(row ? [...source, keySubject(row.id)] : source);
    if (source.some((subject) => locked.has(subject)))
      return { allow: false, error: "EGeneral:Temporary lockout", ...(row ? { keyId: row.id } : {}) };
    if (!cached || !row) return { allow: false, error: "EAPI:Invalid key", counted: "source" };

    const refuse = (
      error: KrakenError,
      counted: Counted = null,
      approval?: Refused["approval"],
    ): Decision => ({
      allow: false,
      error,
      keyId: row.id,
      accountId: row.account_id,
      counted,
      ...(approval ? { approval } : {}),
    });
    const now = this.clock.now();
    if (row.valid_until !== null && row.valid_until <= now) return refuse("EAPI:Invalid key", "source");
    if (!allowedAddress(request.ip, JSON.parse(row.ip_allowlist) as string[]))
      return refuse("EGeneral:Permission denied");

    let body: ParsedBody;
    try {
      body = parseBody(request.contentType, request.body);
    } catch (error) {
      if (error instanceof BodyError) return refuse("EGeneral:Invalid arguments");
      throw error;
    }
    const nonce = nonceOf(body.params.nonce);
    if (!nonce) return refuse("EAPI:Invalid nonce", "source");
    const expected = krakenSignatureBytes(cached.hmacKey, request.path, nonce.sent, request.body);
    const given = Buffer.from(request.apiSign ?? "", "base64");
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      return refuse("EAPI:Invalid signature", "source");

    // From here on the sender holds the key's secret.
    if (locked.has(keySubject(row.id))) return refuse("EGeneral:Temporary lockout");
    if (!(await this.state.claimNonce(row.id, nonce.value, row.nonce_window)))
      return refuse("EAPI:Invalid nonce", "key");
    if (!(await this.otpAccepted(row, body.params.otp, now))) return refuse("EAPI:Invalid key", "key");

    const keyPermissions = JSON.parse(row.permissions) as Permission[];
    const needed = methodPermissions[method];
    if (needed && !keyPermissions.includes(needed)) return refuse("EGeneral:Permission denied");
    if (unknownField(method, body.params) !== null) return refuse("EGeneral:Invalid arguments");

    const gate = await this.cache.gateInputs(row.account_id);
    if (!gate) return refuse("EAPI:Invalid key");
    const { account } = gate;
    const capabilityRefusal = await this.checkCapabilities(account, gate.security, method, body);
    if (capabilityRefusal) return refuse(capabilityRefusal);

    const bounded = boundedHistory(row, method, body);
    if (bounded === "outside") return refuse("EGeneral:Permission denied");
    if (bounded === "invalid") return refuse("EGeneral:Invalid arguments");
    body = bounded;

    const limit = await this.chargeLimits(row.id, account, method, body, now);
    if (limit) return refuse(limit);

    const approval = await this.approvals.decide(account, row, method, body.params);
    if (approval.kind === "invalid") return refuse("EGeneral:Invalid arguments");
    if (approval.kind === "required") {
      const { id, expiresAt } = approval.approval;
      return refuse("EGeneral:Approval required", null, { id, expiresAt });
    }
    return {
      allow: true,
      keyId: row.id,
      accountId: row.account_id,
      permissions: keyPermissions,
      method,
      body: withoutGatewayFields(body),
      queryFrom: row.query_from,
      queryTo: row.query_to,
    };
  }

  /**
   * The capability function decides for the API, and for the product the request uses (any leveraged
   * order makes it margin), with the engine's modes applied to orders and cancels as Kraken applies them.
   */
  private async checkCapabilities(
    account: Account,
    security: SecurityInputs,
    method: string,
    body: ParsedBody,
  ): Promise<KrakenError | null> {
    const vector = await this.capabilities.vector(account, "api", security);
    if (!vector.api.allowed) return capabilityError(vector.api.reasons);
    const product = productOf(method, body.params);
    if (!product) return null;
    const capability: Capability = vector[product];
    const intent = intentOf(method, body);
    const reasons = intent
      ? tradingRefusal(capability, intent)
      : capability.allowed
        ? null
        : capability.reasons;
    return reasons ? capabilityError(reasons) : null;
  }

  /**
   * Order events go to Kraken's per-pair trading limiter; everything else, and cancels of orders the
   * gateway never saw placed, to the REST call counter.
   */
  private async chargeLimits(
    keyId: string,
    account: Account,
    method: string,
    body: ParsedBody,
    now: number,
  ): Promise<KrakenError | null> {
    if (!tradingMethods.includes(method)) {
      return (await this.state.chargeCalls(keyId, account.tier, callCost(method), now))
        ? null
        : "EAPI:Rate limit exceeded";
    }
    const { charges, unknownOrders } = await tradingCharges(method, body.params, now, (txids) =>
      this.knownOrders(keyId, txids),
    );
    for (const charge of charges) {
      if (!(await this.state.chargeTrading(keyId, account.tier, charge, now)))
        return "EOrder:Rate limit exceeded";
    }
    if (unknownOrders > 0 && !(await this.state.chargeCalls(keyId, account.tier, unknownOrders, now)))
      return "EAPI:Rate limit exceeded";
    return null;
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
  private async otpAccepted(
    row: Selectable<ApiKeysTable>,
    value: ParsedBody["params"][string] | undefined,
    now: number,
  ): Promise<boolean> {
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
