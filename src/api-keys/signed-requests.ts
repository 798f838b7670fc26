import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { BlockList, isIPv4, isIPv6 } from "node:net";
import type { Kysely } from "kysely";
import type { AuditLog } from "../audit/audit-log.js";
import type { DataKey } from "../crypto/data-key.js";
import type { Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";
import type { Metrics } from "../support/metrics.js";
import { methodPermissions, type Permission } from "./permissions.js";

export type KrakenError =
  | "EAPI:Invalid key"
  | "EAPI:Invalid signature"
  | "EAPI:Invalid nonce"
  | "EGeneral:Permission denied"
  | "EGeneral:Unknown method"
  | "EGeneral:Invalid arguments";

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

export type Verdict =
  | { allow: true; keyId: string; accountId: string; permissions: Permission[]; method: string }
  | { allow: false; error: KrakenError; keyId?: string; accountId?: string };

const U64_MAX = 18446744073709551615n;
const pad = (n: bigint) => n.toString().padStart(20, "0");

/** The nonce of a form-encoded or JSON body, as a u64; null when absent or malformed. */
export function nonceOf(body: string): bigint | null {
  let raw: unknown;
  const trimmed = body.trimStart();
  if (trimmed.startsWith("{")) {
    try {
      raw = (JSON.parse(trimmed) as { nonce?: unknown }).nonce;
    } catch {
      return null;
    }
  } else {
    raw = new URLSearchParams(body).get("nonce");
  }
  const text = typeof raw === "number" && Number.isSafeInteger(raw) ? String(raw) : raw;
  if (typeof text !== "string" || !/^\d{1,20}$/.test(text)) return null;
  const value = BigInt(text);
  return value > 0n && value <= U64_MAX ? value : null;
}

/** Kraken's API-Sign: base64(HMAC-SHA512(base64-decoded secret, path + SHA-256(nonce + body))). */
export function krakenSignature(secretBase64: string, path: string, nonce: string, body: string): string {
  const digest = createHash("sha256")
    .update(nonce + body)
    .digest();
  return createHmac("sha512", Buffer.from(secretBase64, "base64"))
    .update(path)
    .update(digest)
    .digest("base64");
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

/**
 * Verifies a Kraken-signed private request (SPEC §11): the key, its expiry and IP allowlist, the
 * signature (constant-time), then the nonce — claimed atomically, so of any number of copies exactly one
 * passes — and finally the permission the method needs. The signature is checked before the nonce is
 * claimed: an unsigned request cannot use up a nonce.
 */
export class SignedRequestVerifier {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dataKey: DataKey,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly metrics: Metrics,
  ) {}

  /** Every decision is counted and audited (SPEC §12: "every API-key use decision"), wherever it is asked for. */
  async verify(request: SignedRequest): Promise<Verdict> {
    const verdict = await this.decide(request);
    this.metrics.apiKeyDecisions.inc({ outcome: verdict.allow ? "allow" : verdict.error });
    await this.audit.append(
      {
        event: "api_key.request",
        outcome: verdict.allow ? "success" : "refused",
        accountId: verdict.accountId ?? null,
        actor: verdict.keyId ? `api_key:${verdict.keyId}` : "anonymous",
        details: verdict.allow ? { method: verdict.method } : { error: verdict.error, path: request.path },
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
    const refuse = (error: KrakenError): Verdict => ({
      allow: false,
      error,
      keyId: row.id,
      accountId: row.account_id,
    });
    const now = this.clock.now();
    if (row.valid_until !== null && row.valid_until <= now) return refuse("EAPI:Invalid key");
    if (!allowed(request.ip, JSON.parse(row.ip_allowlist) as string[]))
      return refuse("EGeneral:Permission denied");
    const nonce = nonceOf(request.body);
    if (nonce === null) return refuse("EAPI:Invalid nonce");
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
    if (!(method in methodPermissions)) return refuse("EGeneral:Unknown method");
    const keyPermissions = JSON.parse(row.permissions) as Permission[];
    const needed = methodPermissions[method];
    if (needed && !keyPermissions.includes(needed)) return refuse("EGeneral:Permission denied");
    await this.db.updateTable("api_keys").set({ last_used_at: now }).where("id", "=", row.id).execute();
    return { allow: true, keyId: row.id, accountId: row.account_id, permissions: keyPermissions, method };
  }

  /**
   * Nonces rise per key. With a window of 0 a nonce must exceed the highest seen (one conditional UPDATE);
   * with a window, one up to `window` below it is accepted once (a unique row), never twice.
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
    await this.db
      .deleteFrom("api_key_nonces")
      .where("key_id", "=", keyId)
      .where("nonce", "<=", pad(floor > 0n ? floor : 0n))
      .execute();
    return true;
  }
}
