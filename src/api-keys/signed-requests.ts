import { randomInt, timingSafeEqual } from "node:crypto";
import { BlockList, isIPv4, isIPv6 } from "node:net";
import type { Kysely, Selectable } from "kysely";
import type { Account, AccountRepository } from "../accounts/accounts.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { CapabilityService } from "../capabilities/capability-service.js";
import type { Capability, CapabilityVector } from "../capabilities/evaluate.js";
import type { Product } from "../capabilities/policy.js";
import { krakenSignature } from "../client/kraken-client.js";
import type { DataKey } from "../crypto/data-key.js";
import { constantTimeEqual } from "../crypto/tokens.js";
import type { ApiKeysTable, Database } from "../db/schema.js";
import { matchTotp } from "../factors/totp.js";
import type { Clock } from "../support/clock.js";
import type { Metrics } from "../support/metrics.js";
import type { ApiApprovals } from "./approvals.js";
import { chargeCall } from "./call-counter.js";
import { type ApiLockout, lockoutSubjects } from "./lockout.js";
import { callCost, methodPermissions, type Permission } from "./permissions.js";

export type KrakenError =
  | "EAPI:Invalid key"
  | "EAPI:Invalid signature"
  | "EAPI:Invalid nonce"
  | "EAPI:Rate limit exceeded"
  | "EGeneral:Permission denied"
  | "EGeneral:Unknown method"
  | "EGeneral:Invalid arguments"
  | "EGeneral:Temporary lockout"
  | "EGeneral:Approval required"
  | "EAuth:Account temporary disabled"
  | "EService:Unavailable";

/** Refusals that count toward the temporary lockout: someone guessing keys, secrets or nonces. */
const guesses: KrakenError[] = ["EAPI:Invalid key", "EAPI:Invalid signature", "EAPI:Invalid nonce"];

export interface SignedRequest {
  /** The URI path, e.g. /0/private/Balance: it is part of what is signed. */
  path: string;
  apiKey: string | undefined;
  apiSign: string | undefined;
  /** The body exactly as sent (form-encoded or JSON): the signature covers it byte for byte. */
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
  /** The key's history window (epoch ms), for the venue to bound what it returns. */
  queryFrom: number | null;
  queryTo: number | null;
}

export type Verdict =
  | Allowed
  | {
      allow: false;
      error: KrakenError;
      keyId?: string;
      accountId?: string;
      /** With EGeneral:Approval required: what the owner approves, and until when it can be. */
      approval?: { id: string; expiresAt: string };
    };

const U64_MAX = 18446744073709551615n;
const pad = (n: bigint) => n.toString().padStart(20, "0");

/** The fields of a form-encoded or JSON body; null when it is neither. */
export function requestParams(body: string): Record<string, unknown> | null {
  const trimmed = body.trimStart();
  if (trimmed.startsWith("{")) {
    try {
      const parsed = JSON.parse(trimmed) as unknown;
      return parsed && typeof parsed === "object" && !Array.isArray(parsed)
        ? (parsed as Record<string, unknown>)
        : null;
    } catch {
      return null;
    }
  }
  return Object.fromEntries(new URLSearchParams(body));
}

/** The nonce of a request, as a u64; null when absent or malformed. */
export function nonceOf(params: Record<string, unknown>): bigint | null {
  const raw = params.nonce;
  const text = typeof raw === "number" && Number.isSafeInteger(raw) ? String(raw) : raw;
  if (typeof text !== "string" || !/^\d{1,20}$/.test(text)) return null;
  const value = BigInt(text);
  return value > 0n && value <= U64_MAX ? value : null;
}

function allowed(ip: string, cidrs: string[]): boolean {
  if (cidrs.length === 0) return true;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address, bits] = cidr.split("/") as [string, string | undefined];
    const type = isIPv6(address) ? "ipv6" : "ipv4";
    list.addSubnet(address, bits === undefined ? (type === "ipv4" ? 32 : 128) : Number(bits), type);
  }
  const address = ip.startsWith("::ffff:") && isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
  return list.check(address, isIPv6(address) ? "ipv6" : "ipv4");
}

/** Which product a method uses, beside the API itself: what the capability function must allow. */
function productOf(method: string, params: Record<string, unknown>): Product | null {
  if (["AddOrder", "AddOrderBatch", "EditOrder", "AmendOrder"].includes(method)) {
    const leverage = params.leverage;
    return leverage !== undefined && leverage !== "none" && leverage !== "" ? "margin" : "spot";
  }
  if (["Withdraw", "WalletTransfer"].includes(method)) return "withdraw.crypto";
  if (method.startsWith("Deposit")) return "deposit.crypto";
  if (method === "Stake" || method === "Unstake" || method.startsWith("Earn/")) return "staking";
  return null;
}

/** Kraken's answer for a product the capability function refuses, by its first reason. */
function capabilityError(capability: Capability): KrakenError | null {
  if (capability.allowed) return null;
  const codes = capability.reasons.map((reason) => reason.code);
  if (codes.includes("account_restricted")) return "EAuth:Account temporary disabled";
  if (codes.includes("subsystem_maintenance")) return "EService:Unavailable";
  return "EGeneral:Permission denied";
}

/** History methods and the fields that bound them, checked against the key's query window. */
const historyMethods = ["ClosedOrders", "TradesHistory", "Ledgers", "AddExport"];

function outsideQueryWindow(row: Selectable<ApiKeysTable>, params: Record<string, unknown>): boolean {
  for (const field of ["start", "end", "starttm", "endtm"]) {
    const value = params[field];
    if (value === undefined || !/^\d{1,12}(\.\d+)?$/.test(String(value))) continue;
    const ms = Number(value) * 1000;
    if ((row.query_from !== null && ms < row.query_from) || (row.query_to !== null && ms > row.query_to))
      return true;
  }
  return false;
}

/**
 * Verifies a Kraken-signed private request (SPEC §11), in this order: the temporary lockout of the key
 * or IP; the key, its expiry and IP allowlist; the signature (constant-time); the nonce — claimed
 * atomically, so of any number of copies exactly one passes; the key's own second factor; the
 * permission the method needs; the capability function for the account; the key's history window; the
 * decaying call counter; and the approval threshold. The signature is checked before the nonce is
 * claimed: an unsigned request cannot use up a nonce. Every decision is counted and audited.
 */
export class SignedRequestVerifier {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dataKey: DataKey,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly metrics: Metrics,
    private readonly accounts: AccountRepository,
    private readonly capabilities: CapabilityService,
    private readonly lockout: ApiLockout,
    private readonly approvals: ApiApprovals,
  ) {}

  async verify(request: SignedRequest): Promise<Verdict> {
    const subjects = lockoutSubjects(request.apiKey, request.ip);
    const verdict: Verdict = (await this.lockout.isLockedOut(subjects))
      ? { allow: false, error: "EGeneral:Temporary lockout" }
      : await this.decide(request);
    if (!verdict.allow && guesses.includes(verdict.error)) await this.lockout.recordFailure(subjects);
    this.metrics.apiKeyDecisions.inc({ outcome: verdict.allow ? "allow" : verdict.error });
    await this.audit.append(
      {
        event: "api_key.request",
        outcome: verdict.allow ? "success" : "refused",
        accountId: verdict.accountId ?? null,
        actor: verdict.keyId ? `api_key:${verdict.keyId}` : "anonymous",
        details: verdict.allow
          ? { method: verdict.method }
          : {
              error: verdict.error,
              path: request.path,
              ...(verdict.approval ? { approvalId: verdict.approval.id } : {}),
            },
      },
      { ip: request.ip, userAgent: request.userAgent, location: null, country: null, city: null },
    );
    return verdict;
  }

  private async decide(request: SignedRequest): Promise<Verdict> {
    const method = request.path.replace(/^\/0\/private\//, "");
    if (!request.apiKey || request.apiKey.length > 128) return { allow: false, error: "EAPI:Invalid key" };
    const row = await this.db
      .selectFrom("api_keys")
      .selectAll()
      .where("key", "=", request.apiKey)
      .where("disabled_at", "is", null)
      .executeTakeFirst();
    if (!row) return { allow: false, error: "EAPI:Invalid key" };
    const refuse = (error: KrakenError, approval?: { id: string; expiresAt: string }): Verdict => ({
      allow: false,
      error,
      keyId: row.id,
      accountId: row.account_id,
      ...(approval ? { approval } : {}),
    });
    const now = this.clock.now();
    if (row.valid_until !== null && row.valid_until <= now) return refuse("EAPI:Invalid key");
    if (!allowed(request.ip, JSON.parse(row.ip_allowlist) as string[]))
      return refuse("EGeneral:Permission denied");
    const params = requestParams(request.body);
    const nonce = params && nonceOf(params);
    if (!params || !nonce) return refuse("EAPI:Invalid nonce");
    const expected = Buffer.from(
      krakenSignature(
        this.dataKey.open(row.secret_sealed, row.id).toString("utf8"),
        request.path,
        nonce.toString(),
        request.body,
      ),
      "base64",
    );
    const given = Buffer.from(request.apiSign ?? "", "base64");
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      return refuse("EAPI:Invalid signature");
    if (!(await this.claimNonce(row.id, nonce, row.nonce_window))) return refuse("EAPI:Invalid nonce");
    if (!(await this.otpAccepted(row, params.otp, now))) return refuse("EAPI:Invalid key");

    if (!(method in methodPermissions)) return refuse("EGeneral:Unknown method");
    const keyPermissions = JSON.parse(row.permissions) as Permission[];
    const needed = methodPermissions[method];
    if (needed && !keyPermissions.includes(needed)) return refuse("EGeneral:Permission denied");

    const account = await this.accounts.findById(row.account_id);
    if (!account) return refuse("EAPI:Invalid key");
    const capabilityRefusal = await this.checkCapabilities(account, method, params);
    if (capabilityRefusal) return refuse(capabilityRefusal);
    if (historyMethods.includes(method) && outsideQueryWindow(row, params))
      return refuse("EGeneral:Permission denied");

    if (!(await chargeCall(this.db, row.id, account.tier, callCost(method), now)))
      return refuse("EAPI:Rate limit exceeded");

    const approval = await this.approvals.decide(account, row, method, params);
    if (approval.kind === "invalid") return refuse("EGeneral:Invalid arguments");
    if (approval.kind === "required") {
      const { id, expiresAt } = approval.approval;
      return refuse("EGeneral:Approval required", { id, expiresAt });
    }
    return {
      allow: true,
      keyId: row.id,
      accountId: row.account_id,
      permissions: keyPermissions,
      method,
      queryFrom: row.query_from,
      queryTo: row.query_to,
    };
  }

  /** The capability function decides for the API, and for the product the method uses (SPEC §9). */
  private async checkCapabilities(
    account: Account,
    method: string,
    params: Record<string, unknown>,
  ): Promise<KrakenError | null> {
    const vector: CapabilityVector = await this.capabilities.vector(account, "api");
    const product = productOf(method, params);
    return capabilityError(vector.api) ?? (product ? capabilityError(vector[product]) : null);
  }

  /**
   * The key's own second factor, sent as `otp`: a static password (constant-time) or a TOTP code within
   * one step either side, accepted once (RFC 6238 §5.2): the step is claimed by a conditional UPDATE, so
   * of parallel requests carrying one code exactly one passes. A bot that calls more often than every 30
   * seconds uses a static password.
   */
  private async otpAccepted(row: Selectable<ApiKeysTable>, otp: unknown, now: number): Promise<boolean> {
    if (row.otp_type === null || row.otp_sealed === null) return true;
    if (typeof otp !== "string" || otp.length === 0 || otp.length > 256) return false;
    const secret = this.dataKey.open(row.otp_sealed, `${row.id}:otp`);
    if (row.otp_type === "static") return constantTimeEqual(otp, secret.toString("utf8"));
    const match = matchTotp(new Uint8Array(secret), otp, now);
    if (match === null || !("step" in match)) return false;
    const claimed = await this.db
      .updateTable("api_keys")
      .set({ otp_last_step: match.step })
      .where("id", "=", row.id)
      .where((eb) => eb.or([eb("otp_last_step", "is", null), eb("otp_last_step", "<", match.step)]))
      .returning("id")
      .executeTakeFirst();
    return claimed !== undefined;
  }

  /**
   * Nonces rise per key. With a window of 0 a nonce must exceed the highest seen (one conditional UPDATE);
   * with a window, one up to `window` below it is accepted once (a unique row), never twice. Both are
   * exact across instances: the database decides.
   */
  private async claimNonce(keyId: string, nonce: bigint, window: number): Promise<boolean> {
    const padded = pad(nonce);
    if (window === 0) {
      const row = await this.db
        .updateTable("api_keys")
        .set({ last_nonce: padded })
        .where("id", "=", keyId)
        .where("last_nonce", "<", padded)
        .returning("id")
        .executeTakeFirst();
      return row !== undefined;
    }
    const { last_nonce } = await this.db
      .selectFrom("api_keys")
      .select("last_nonce")
      .where("id", "=", keyId)
      .executeTakeFirstOrThrow();
    const floor = BigInt(last_nonce) - BigInt(window);
    if (nonce <= floor) return false;
    const inserted = await this.db
      .insertInto("api_key_nonces")
      .values({ key_id: keyId, nonce: padded })
      .onConflict((oc) => oc.columns(["key_id", "nonce"]).doNothing())
      .returning("nonce")
      .executeTakeFirst();
    if (!inserted) return false;
    await this.db
      .updateTable("api_keys")
      .set({ last_nonce: padded })
      .where("id", "=", keyId)
      .where("last_nonce", "<", padded)
      .execute();
    // Rows at or below the floor can never be used again (the floor check refuses them first): clearing
    // them is housekeeping, done on one claim in 32 rather than on each.
    if (randomInt(32) === 0) {
      await this.db
        .deleteFrom("api_key_nonces")
        .where("key_id", "=", keyId)
        .where("nonce", "<=", pad(floor > 0n ? floor : 0n))
        .execute();
    }
    return true;
  }
}
