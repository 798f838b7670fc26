import { randomBytes } from "node:crypto";
import type { Kysely, Selectable, Transaction } from "kysely";
import type { AccountRepository } from "../accounts/accounts.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { CapabilityService } from "../capabilities/capability-service.js";
import type { ClientName } from "../capabilities/policy.js";
import { isCidr } from "../config/env.js";
import type { Settings } from "../config/settings.js";
import type { DataKey } from "../crypto/data-key.js";
import { newId } from "../crypto/tokens.js";
import type { ApiKeysTable, Database } from "../db/schema.js";
import { newTotpSecret, otpauthUri, toBase32 } from "../factors/totp.js";
import type { OneTimeTokens } from "../flows/one-time-tokens.js";
import type { Outbox } from "../notify/outbox.js";
import type { EmailMessage } from "../notify/templates.js";
import { securityDetails } from "../notify/templates.js";
import type { ChangeRequest, SettingChanges } from "../security/setting-changes.js";
import type { Clock } from "../support/clock.js";
import { iso } from "../support/clock.js";
import { isUniqueViolation } from "../support/db-errors.js";
import { cidrWidth } from "../support/network.js";
import { invalidRequest, notFound, Problem } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import { thresholdsOf } from "./approvals.js";
import { type DialectName, dialectNames, isDialectName } from "./dialects/dialect.js";
import { dialects } from "./dialects/index.js";
import { ASSET_CODE, normaliseAsset, parseDecimal, type Thresholds } from "./kraken-requests.js";

/** How long the "disable all your API keys" link in a reset or "disconnect all" email works. */
const DISABLE_LINK_TTL_MS = 7 * 86_400_000;

export type KeyOtp = { type: "static"; password: string } | { type: "totp" };

/** What a key is created with, or changed to (PATCH: absent fields keep their value, null clears). */
export interface ApiKeyInput {
  /** How the key signs, fixed at creation: kraken (the default), kucoin or kraken_futures. */
  dialect?: string;
  /** A KuCoin key's passphrase, chosen by the owner (kept sealed). */
  passphrase?: string;
  name?: string;
  permissions?: string[];
  ipAllowlist?: string[];
  validUntil?: string | null;
  queryFrom?: string | null;
  queryTo?: string | null;
  nonceWindow?: number;
  otp?: KeyOtp | null;
  /** Per asset: a request moving more of an asset than its threshold is held for the owner's approval. */
  approvalThreshold?: Record<string, string> | null;
}

/** A key's restrictions, checked and normalised: what is stored and what the owner confirms. */
interface KeySettings {
  dialect: DialectName;
  name: string;
  permissions: string[];
  ipAllowlist: string[];
  validUntil: number | null;
  queryFrom: number | null;
  queryTo: number | null;
  nonceWindow: number;
  approvalThreshold: Thresholds | null;
}

function describe(row: Selectable<ApiKeysTable>, lastUsedAt: number | null = null) {
  const lastUsed = Math.max(row.last_used_at ?? 0, lastUsedAt ?? 0);
  return {
    id: row.id,
    name: row.name,
    key: row.key,
    dialect: row.dialect,
    permissions: JSON.parse(row.permissions) as string[],
    ipAllowlist: JSON.parse(row.ip_allowlist) as string[],
    validUntil: row.valid_until === null ? null : iso(row.valid_until),
    queryFrom: row.query_from === null ? null : iso(row.query_from),
    queryTo: row.query_to === null ? null : iso(row.query_to),
    nonceWindow: row.nonce_window,
    otp: row.otp_type,
    approvalThreshold: row.approval_threshold === null ? null : thresholdsOf(row.approval_threshold),
    createdAt: iso(row.created_at),
    lastUsedAt: lastUsed === 0 ? null : iso(lastUsed),
  };
}

function time(field: string, value: string | null): number | null {
  if (value === null) return null;
  const ms = Date.parse(value);
  if (Number.isNaN(ms))
    throw invalidRequest(`${field} must be an ISO-8601 time.`, [
      { field, message: "Enter a date and time, for example 2027-01-31T12:00:00Z." },
    ]);
  return ms;
}

/** The widest ranges a withdrawing key's allowlist may name: an IPv4 /16, an IPv6 /32. */
const MIN_IPV4_PREFIX = 16;
const MIN_IPV6_PREFIX = 32;

/**
 * Whether an allowlist entry is narrow enough for a key that can withdraw, by the addresses it admits: an
 * IPv6 entry inside ::ffff:0:0/96 counts as the IPv4 range it maps, and one containing that block (::/1)
 * admits every IPv4 address.
 */
function narrowEnough(cidr: string): boolean {
  const width = cidrWidth(cidr);
  if (width === null) return false;
  return (
    (width.ipv4 === null || width.ipv4 >= MIN_IPV4_PREFIX) &&
    (width.ipv6 === null || width.ipv6 >= MIN_IPV6_PREFIX)
  );
}

// The detail is the full sentence: the portal shows it beside the field (the hint is for the API reference).
const fieldError = (field: string, message: string, _hint: string) =>
  invalidRequest(message, [{ field, message }]);

/**
 * Thresholds per asset, e.g. {"BTC": "0.5", "USD": "10000"}: codes as the gateway names assets (XBT and
 * XXBT are BTC), amounts positive decimals. No entries means no approvals.
 */
function approvalThresholds(input: Record<string, string> | null): Thresholds | null {
  if (input === null) return null;
  const entries = Object.entries(input);
  const invalid = () =>
    fieldError(
      "approvalThreshold",
      'The approval threshold names assets and amounts, such as {"BTC": "0.5", "USD": "10000"}.',
      "asset codes with positive decimal amounts",
    );
  if (entries.length > 32) throw invalid();
  const thresholds: Thresholds = {};
  for (const [asset, amount] of entries) {
    const decimal = typeof amount === "string" ? parseDecimal(amount.trim()) : null;
    if (!ASSET_CODE.test(asset.toUpperCase()) || !decimal || decimal.digits === 0n) throw invalid();
    const code = normaliseAsset(asset);
    if (thresholds[code] !== undefined) throw invalid();
    thresholds[code] = amount.trim();
  }
  return entries.length === 0 ? null : thresholds;
}

/**
 * API keys (behaviour §11). Creating or changing one is an action — a step-up, plus the trading passcode when
 * set — and so refused under the Global Settings Lock; the secret (64 random bytes) is shown once and
 * kept sealed with the data key, bound to the key's id. Deleting a key needs no step-up: revocation must
 * be quick.
 */
export class ApiKeyService {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly dataKey: DataKey,
    private readonly changes: SettingChanges,
    private readonly capabilities: CapabilityService,
    private readonly audit: AuditLog,
    private readonly outbox: Outbox,
    private readonly accounts: AccountRepository,
    private readonly issuer: string,
    private readonly tokens: OneTimeTokens,
    private readonly publicUrl: URL,
    private readonly limits: Settings["apiKeys"],
    /** When the gateway last saw a key used, when it knows it before the key's row does. */
    private readonly lastUsedAt: (keyId: string) => number | null = () => null,
  ) {}

  /** Checks every field against docs/behaviour.md §11, on top of the key's current settings when it is a change. */
  private settings(input: ApiKeyInput, current: KeySettings | null): KeySettings {
    const dialectName = current?.dialect ?? input.dialect ?? "kraken";
    if (!isDialectName(dialectName))
      throw fieldError("dialect", `Unknown dialect "${dialectName}".`, dialectNames.join(", "));
    if (current && input.dialect !== undefined && input.dialect !== current.dialect)
      throw fieldError("dialect", "A key's dialect is fixed when it is created.", current.dialect);
    const dialect = dialects[dialectName];
    const knownPermissions = dialect.permissions;
    const name = input.name ?? current?.name ?? "";
    if (!/^[\p{L}\p{N} _.-]{1,32}$/u.test(name))
      throw fieldError(
        "name",
        "The name is 1 to 32 letters, digits, spaces, '.', '_' or '-'.",
        "1 to 32 characters",
      );
    const permissions: string[] = [...new Set(input.permissions ?? current?.permissions ?? [])].sort();
    const unknown = permissions.filter((p) => !(knownPermissions as readonly string[]).includes(p));
    if (unknown.length)
      throw fieldError(
        "permissions",
        `Unknown permissions for a ${dialectName} key: ${unknown.join(", ")}.`,
        knownPermissions.join(", "),
      );
    const ipAllowlist = [...new Set(input.ipAllowlist ?? current?.ipAllowlist ?? [])];
    const badCidr = ipAllowlist.find((cidr) => !isCidr(cidr));
    if (badCidr !== undefined || ipAllowlist.length > 32)
      throw fieldError(
        "ipAllowlist",
        `"${badCidr ?? "…"}" is not an IP address or CIDR (at most 32 entries).`,
        "IPv4 or IPv6 CIDRs",
      );
    const withdraws = permissions.find((p) => dialect.allowlistRequired.includes(p));
    if (withdraws !== undefined && ipAllowlist.length === 0)
      throw fieldError(
        "ipAllowlist",
        "A key that may withdraw needs an IP allowlist.",
        `required with ${withdraws}`,
      );
    // An allowlist that admits everyone (0.0.0.0/0, ::/0, two halves, ::/1 which holds every IPv4 address
    // as ::ffff:a.b.c.d) is no allowlist: each entry of a withdrawing key's list must be a narrow range.
    // Checked on the merged settings, so any change to such a key (a rename too) meets it; stored keys
    // from before keep working until changed.
    const wide = withdraws === undefined ? undefined : ipAllowlist.find((cidr) => !narrowEnough(cidr));
    if (wide !== undefined)
      throw fieldError(
        "ipAllowlist",
        `"${wide}" is too wide: an allowlist for a key that can withdraw names addresses no wider than /16 (IPv4) or /32 (IPv6).`,
        `IPv4 /${MIN_IPV4_PREFIX} or narrower, IPv6 /${MIN_IPV6_PREFIX} or narrower, with ${withdraws}`,
      );
    if (input.otp && !dialect.keyOtp)
      throw fieldError("otp", `A ${dialectName} key has no second factor of its own.`, "kraken keys only");
    if (current === null && dialectName === "kucoin" && !/^\S{7,32}$/.test(input.passphrase ?? ""))
      throw fieldError(
        "passphrase",
        "A KuCoin key needs a passphrase of 7 to 32 characters without spaces.",
        "7 to 32 characters",
      );
    if (input.passphrase !== undefined && (current !== null || dialectName !== "kucoin"))
      throw fieldError("passphrase", "Only a new KuCoin key takes a passphrase.", "kucoin keys, at creation");
    const validUntil =
      input.validUntil === undefined ? (current?.validUntil ?? null) : time("validUntil", input.validUntil);
    if (validUntil !== null && validUntil <= this.clock.now() && input.validUntil !== undefined)
      throw fieldError("validUntil", "validUntil must be in the future.", "in the future");
    const queryFrom =
      input.queryFrom === undefined ? (current?.queryFrom ?? null) : time("queryFrom", input.queryFrom);
    const queryTo = input.queryTo === undefined ? (current?.queryTo ?? null) : time("queryTo", input.queryTo);
    if (queryFrom !== null && queryTo !== null && queryFrom > queryTo)
      throw fieldError("queryTo", "queryTo must not be before queryFrom.", "after queryFrom");
    const nonceWindow = input.nonceWindow ?? current?.nonceWindow ?? 0;
    if (!Number.isInteger(nonceWindow) || nonceWindow < 0 || nonceWindow > 1_000_000_000)
      throw fieldError("nonceWindow", "nonceWindow is a whole number from 0.", "0 to 1000000000");
    const approvalThreshold =
      input.approvalThreshold === undefined
        ? (current?.approvalThreshold ?? null)
        : approvalThresholds(input.approvalThreshold);
    if (input.otp?.type === "static" && !/^\S{8,128}$/.test(input.otp.password))
      throw fieldError(
        "otp.password",
        "The key's password is 8 to 128 characters without spaces.",
        "8 to 128 characters",
      );
    return {
      dialect: dialectName,
      name,
      permissions,
      ipAllowlist,
      validUntil,
      queryFrom,
      queryTo,
      nonceWindow,
      approvalThreshold,
    };
  }

  /** What the owner confirms: the settings as shown, and the OTP's type only (never a password). */
  private actionParams(settings: KeySettings, otp: KeyOtp | null | undefined, keyId?: string) {
    const at = (ms: number | null) => (ms === null ? null : iso(ms));
    return {
      ...(keyId ? { keyId } : {}),
      ...settings,
      validUntil: at(settings.validUntil),
      queryFrom: at(settings.queryFrom),
      queryTo: at(settings.queryTo),
      ...(otp === undefined ? {} : { otp: otp?.type ?? null }),
    };
  }

  /** The key's own second factor, sealed for the verifier; a TOTP seed is shown to the owner once. */
  private sealOtp(keyId: string, otp: KeyOtp, label: string) {
    if (otp.type === "static")
      return { sealed: this.dataKey.seal(otp.password, `${keyId}:otp`), shown: { type: "static" as const } };
    const seed = newTotpSecret();
    return {
      sealed: this.dataKey.seal(Buffer.from(seed), `${keyId}:otp`),
      shown: {
        type: "totp" as const,
        secret: toBase32(seed),
        otpauthUri: otpauthUri(seed, this.issuer, label),
      },
    };
  }

  async create(request: ChangeRequest, client: ClientName, input: ApiKeyInput) {
    const { account } = request;
    const settings = this.settings(input, null);
    await this.capabilities.assertAllowed(account, client, "api");
    const stepUp = {
      type: "create_api_key",
      params: this.actionParams(settings, input.otp ?? null),
      summary: `Create API key "${settings.name}" (${settings.permissions.join(", ") || "no permissions"})`,
      alsoRequire: account.tradingPasscodeHash ? (["trading_passcode"] as const) : [],
    };
    return this.changes.run(request, { stepUp }, async (trx) => {
      // Counted inside the change's transaction, which holds the account: parallel creations queue here.
      const { active } = await trx
        .selectFrom("api_keys")
        .select((eb) => eb.fn.countAll<number>().as("active"))
        .where("account_id", "=", account.id)
        .where("disabled_at", "is", null)
        .executeTakeFirstOrThrow();
      if (Number(active) >= this.limits.maxPerAccount)
        throw new Problem(
          409,
          "conflict",
          `An account holds at most ${this.limits.maxPerAccount} API keys. Delete one you no longer use first.`,
        );
      const id = newId();
      const secret = randomBytes(64).toString("base64");
      const otp = input.otp
        ? this.sealOtp(id, input.otp, `${account.username} API key ${settings.name}`)
        : null;
      const row = {
        id,
        account_id: account.id,
        name: settings.name,
        key: randomBytes(42).toString("base64"),
        secret_sealed: this.dataKey.seal(secret, id),
        dialect: settings.dialect,
        // KuCoin's passphrase is only ever checked as HMAC(secret, passphrase): it is kept sealed.
        passphrase_sealed:
          input.passphrase === undefined ? null : this.dataKey.seal(input.passphrase, `${id}:passphrase`),
        ...this.columns(settings),
        otp_type: input.otp?.type ?? null,
        otp_sealed: otp?.sealed ?? null,
        otp_last_step: null,
        last_nonce: "0".repeat(20),
        created_at: this.clock.now(),
        last_used_at: null,
        disabled_at: null,
      };
      await this.uniqueName(trx.insertInto("api_keys").values(row).execute());
      return {
        // The secret (and a TOTP seed) leave the server this once.
        result: {
          ...describe({ ...row, rate_level: 0, rate_at: 0, nonce_floor: row.last_nonce }),
          secret,
          ...(otp ? { otp: otp.shown } : {}),
        },
        event: "api_key.created",
        details: { keyId: id },
        change: `created API key "${settings.name}"`,
      };
    });
  }

  /** Changes a key's name, permissions or restrictions: an action like creation. */
  async update(request: ChangeRequest, keyId: string, input: ApiKeyInput) {
    const { account } = request;
    const current = await this.db
      .selectFrom("api_keys")
      .selectAll()
      .where("id", "=", keyId)
      .where("account_id", "=", account.id)
      .where("disabled_at", "is", null)
      .executeTakeFirst();
    if (!current) throw notFound("That API key");
    const before = describe(current);
    const settings = this.settings(input, {
      ...before,
      dialect: isDialectName(current.dialect) ? current.dialect : "kraken",
      validUntil: current.valid_until,
      queryFrom: current.query_from,
      queryTo: current.query_to,
    });
    const stepUp = {
      type: "update_api_key",
      params: this.actionParams(settings, input.otp, keyId),
      summary: `Change API key "${before.name}" (${settings.permissions.join(", ") || "no permissions"})`,
      alsoRequire: account.tradingPasscodeHash ? (["trading_passcode"] as const) : [],
    };
    return this.changes.run(request, { stepUp }, async (trx) => {
      const otp = input.otp
        ? this.sealOtp(keyId, input.otp, `${account.username} API key ${settings.name}`)
        : null;
      const row = await this.uniqueName(
        trx
          .updateTable("api_keys")
          .set({
            name: settings.name,
            ...this.columns(settings),
            ...(input.otp === undefined
              ? {}
              : { otp_type: input.otp?.type ?? null, otp_sealed: otp?.sealed ?? null }),
          })
          .where("id", "=", keyId)
          .where("account_id", "=", account.id)
          .where("disabled_at", "is", null)
          .returningAll()
          .executeTakeFirst(),
      );
      if (!row) throw notFound("That API key");
      return {
        result: { ...describe(row, this.lastUsedAt(row.id)), ...(otp ? { otp: otp.shown } : {}) },
        event: "api_key.updated",
        details: { keyId },
        change: `changed API key "${settings.name}"`,
      };
    });
  }

  /** A second key of the same name is a conflict the owner can fix, not a failure. */
  private async uniqueName<T>(write: Promise<T>): Promise<T> {
    try {
      return await write;
    } catch (error) {
      if (isUniqueViolation(error))
        throw new Problem(409, "conflict", "You already have a key with that name.");
      throw error;
    }
  }

  private columns(settings: KeySettings) {
    return {
      permissions: JSON.stringify(settings.permissions),
      ip_allowlist: JSON.stringify(settings.ipAllowlist),
      valid_until: settings.validUntil,
      query_from: settings.queryFrom,
      query_to: settings.queryTo,
      nonce_window: settings.nonceWindow,
      approval_threshold:
        settings.approvalThreshold === null ? null : JSON.stringify(settings.approvalThreshold),
    };
  }

  async list(accountId: string) {
    const rows = await this.db
      .selectFrom("api_keys")
      .selectAll()
      .where("account_id", "=", accountId)
      .where("disabled_at", "is", null)
      .orderBy("created_at")
      .execute();
    return rows.map((row) => describe(row, this.lastUsedAt(row.id)));
  }

  /**
   * An operator disables a key (behaviour §14), e.g. one seen abused: it stops working at once, and the owner
   * is told by email.
   */
  async disableByOperator(keyId: string, context: RequestContext): Promise<void> {
    const row = await this.db
      .updateTable("api_keys")
      .set({ disabled_at: this.clock.now() })
      .where("id", "=", keyId)
      .where("disabled_at", "is", null)
      .returning(["name", "account_id"])
      .executeTakeFirst();
    if (!row) throw notFound("That API key");
    await this.audit.append(
      {
        event: "api_key.disabled",
        outcome: "success",
        accountId: row.account_id,
        actor: "operator",
        details: { keyId },
      },
      context,
    );
    const owner = await this.accounts.findById(row.account_id);
    if (owner) {
      await this.outbox.notify(owner, {
        kind: "security_change",
        change: `support disabled API key "${row.name}"`,
        ...securityDetails(context, this.clock.now()),
      });
    }
  }

  /** Deleting a key needs no step-up and works under the Global Settings Lock: revocation must be quick. */
  async revoke(request: ChangeRequest, keyId: string): Promise<void> {
    const { account } = request;
    await this.changes.run(request, { stepUp: null, whileLocked: "allowed" }, async (trx) => {
      const row = await trx
        .updateTable("api_keys")
        .set({ disabled_at: this.clock.now() })
        .where("id", "=", keyId)
        .where("account_id", "=", account.id)
        .where("disabled_at", "is", null)
        .returning("name")
        .executeTakeFirst();
      if (!row) throw notFound("That API key");
      return {
        result: null,
        event: "api_key.revoked",
        details: { keyId },
        change: `deleted API key "${row.name}"`,
      };
    });
  }

  /** Deletes every key of the owner at once ("Delete all keys"); how many were deleted. */
  async revokeAll(request: ChangeRequest): Promise<number> {
    return this.changes.run(request, { stepUp: null, whileLocked: "allowed" }, async (trx) => {
      const keys = await this.disableAllWithin(trx, request.account.id);
      return {
        result: keys.length,
        event: "api_key.revoked_all",
        details: { keyIds: keys.map((k) => k.id) },
        ...(keys.length > 0
          ? { change: `deleted every API key (${keys.map((k) => `"${k.name}"`).join(", ")})` }
          : {}),
      };
    });
  }

  /**
   * After a password reset or "disconnect all", which end sessions but not keys: the email naming every
   * key that still works, with one single-use link that disables them all (issued in the caller's
   * transaction). Null when no key works.
   */
  async stillActiveNotice(
    trx: Transaction<Database>,
    accountId: string,
    context: RequestContext,
  ): Promise<EmailMessage | null> {
    const keys = await this.activeNames(accountId, trx);
    if (keys.length === 0) return null;
    const token = await this.tokens.issue("disable_api_keys", accountId, DISABLE_LINK_TTL_MS, null, trx);
    const link = new URL("/disable-api-keys", this.publicUrl);
    link.searchParams.set("token", token);
    return {
      kind: "api_keys_still_active",
      keys,
      link: link.href,
      ...securityDetails(context, this.clock.now()),
    };
  }

  /** The emailed link: every key of its account stops working; the link is spent. */
  async disableByLink(token: string, context: RequestContext): Promise<{ disabled: number }> {
    const keys = await this.db.transaction().execute(async (trx) => {
      const { accountId } = await this.tokens.consume("disable_api_keys", token, trx);
      const disabled = await this.disableAllWithin(trx, accountId);
      await this.audit.append(
        {
          event: "api_key.revoked_all",
          outcome: "success",
          accountId,
          details: { keyIds: disabled.map((k) => k.id), via: "email_link" },
        },
        context,
        trx,
      );
      const account = await this.accounts.findById(accountId, trx);
      if (account && disabled.length > 0) {
        await this.outbox.notify(
          account,
          {
            kind: "security_change",
            change: `disabled every API key from the emailed link (${disabled.map((k) => `"${k.name}"`).join(", ")})`,
            ...securityDetails(context, this.clock.now()),
          },
          trx,
        );
      }
      return disabled;
    });
    this.outbox.nudge();
    return { disabled: keys.length };
  }

  /** The owner's keys that still work: what a reset or "disconnect all" email names. */
  async activeNames(accountId: string, db: Kysely<Database> = this.db): Promise<string[]> {
    const rows = await db
      .selectFrom("api_keys")
      .select("name")
      .where("account_id", "=", accountId)
      .where("disabled_at", "is", null)
      .orderBy("created_at")
      .execute();
    return rows.map((row) => row.name);
  }

  /** Disables every working key of the account in the caller's transaction; the keys disabled. */
  async disableAllWithin(trx: Kysely<Database>, accountId: string): Promise<{ id: string; name: string }[]> {
    return trx
      .updateTable("api_keys")
      .set({ disabled_at: this.clock.now() })
      .where("account_id", "=", accountId)
      .where("disabled_at", "is", null)
      .returning(["id", "name"])
      .execute();
  }
}
