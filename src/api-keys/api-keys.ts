import { randomBytes } from "node:crypto";
import type { Kysely, Selectable } from "kysely";
import type { Account } from "../accounts/accounts.js";
import type { ActionService, RequiredProof } from "../actions/actions.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { CapabilityService } from "../capabilities/capability-service.js";
import type { ClientName } from "../capabilities/policy.js";
import { isCidr } from "../config/env.js";
import type { DataKey } from "../crypto/data-key.js";
import { newId } from "../crypto/tokens.js";
import type { ApiKeysTable, Database } from "../db/schema.js";
import type { Outbox } from "../notify/outbox.js";
import { securityDetails } from "../notify/templates.js";
import type { Clock } from "../support/clock.js";
import { iso } from "../support/clock.js";
import { isUniqueViolation } from "../support/db-errors.js";
import { invalidRequest, notFound, Problem } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import { permissions as knownPermissions, type Permission } from "./permissions.js";

export interface NewApiKey {
  name: string;
  permissions: string[];
  ipAllowlist?: string[];
  validUntil?: string;
  queryFrom?: string;
  queryTo?: string;
  nonceWindow?: number;
}

function describe(row: Selectable<ApiKeysTable>) {
  return {
    id: row.id,
    name: row.name,
    key: row.key,
    permissions: JSON.parse(row.permissions) as Permission[],
    ipAllowlist: JSON.parse(row.ip_allowlist) as string[],
    validUntil: row.valid_until === null ? null : iso(row.valid_until),
    queryFrom: row.query_from === null ? null : iso(row.query_from),
    queryTo: row.query_to === null ? null : iso(row.query_to),
    nonceWindow: row.nonce_window,
    createdAt: iso(row.created_at),
    lastUsedAt: row.last_used_at === null ? null : iso(row.last_used_at),
  };
}

function time(field: string, value: string | undefined): number | null {
  if (value === undefined) return null;
  const ms = Date.parse(value);
  if (Number.isNaN(ms))
    throw invalidRequest(`${field} must be an ISO-8601 time.`, [{ field, message: "ISO-8601 time" }]);
  return ms;
}

/**
 * API keys (SPEC §11). Creating one is an action — a step-up, plus the trading passcode when set — and so
 * refused under the Global Settings Lock; the secret (64 random bytes) is shown once and kept sealed with
 * the data key, bound to the key's id. Deleting a key needs no step-up: revocation must be quick.
 */
export class ApiKeyService {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly dataKey: DataKey,
    private readonly actions: ActionService,
    private readonly capabilities: CapabilityService,
    private readonly audit: AuditLog,
    private readonly outbox: Outbox,
  ) {}

  async create(
    account: Account,
    client: ClientName,
    actionId: string | undefined,
    input: NewApiKey,
    context: RequestContext,
  ) {
    if (!/^[\p{L}\p{N} _.-]{1,32}$/u.test(input.name)) {
      throw invalidRequest("The name is 1 to 32 letters, digits, spaces, '.', '_' or '-'.", [
        { field: "name", message: "1 to 32 characters" },
      ]);
    }
    const chosen = [...new Set(input.permissions)];
    const unknown = chosen.filter((p) => !(knownPermissions as readonly string[]).includes(p));
    if (unknown.length) {
      throw invalidRequest(`Unknown permissions: ${unknown.join(", ")}.`, [
        { field: "permissions", message: knownPermissions.join(", ") },
      ]);
    }
    const allowlist = [...new Set(input.ipAllowlist ?? [])];
    const badCidr = allowlist.find((cidr) => !isCidr(cidr));
    if (badCidr !== undefined || allowlist.length > 32) {
      throw invalidRequest(`"${badCidr ?? "…"}" is not an IP address or CIDR (at most 32 entries).`, [
        { field: "ipAllowlist", message: "IPv4 or IPv6 CIDRs" },
      ]);
    }
    if (chosen.includes("funds_withdraw") && allowlist.length === 0) {
      throw invalidRequest("A key that may withdraw needs an IP allowlist.", [
        { field: "ipAllowlist", message: "required with funds_withdraw" },
      ]);
    }
    const validUntil = time("validUntil", input.validUntil);
    if (validUntil !== null && validUntil <= this.clock.now()) {
      throw invalidRequest("validUntil must be in the future.", [
        { field: "validUntil", message: "in the future" },
      ]);
    }
    const nonceWindow = input.nonceWindow ?? 0;
    if (!Number.isInteger(nonceWindow) || nonceWindow < 0 || nonceWindow > 1_000_000_000) {
      throw invalidRequest("nonceWindow is a whole number from 0.", [
        { field: "nonceWindow", message: "0 to 1000000000" },
      ]);
    }
    await this.capabilities.assertAllowed(account, client, "api");
    const params = {
      name: input.name,
      permissions: chosen.sort(),
      ipAllowlist: allowlist,
      validUntil: input.validUntil,
      queryFrom: input.queryFrom,
      queryTo: input.queryTo,
      nonceWindow,
    };
    const passcode: RequiredProof[] = account.tradingPasscodeHash ? ["trading_passcode"] : [];
    await this.actions.requireStepUp(
      account,
      actionId,
      "create_api_key",
      params,
      `Create API key "${input.name}" (${chosen.join(", ") || "no permissions"})`,
      passcode,
    );

    const id = newId();
    const secret = randomBytes(64).toString("base64");
    const row = {
      id,
      account_id: account.id,
      name: input.name,
      key: randomBytes(42).toString("base64"),
      secret_sealed: this.dataKey.seal(secret, id),
      permissions: JSON.stringify(params.permissions),
      ip_allowlist: JSON.stringify(allowlist),
      valid_until: validUntil,
      query_from: time("queryFrom", input.queryFrom),
      query_to: time("queryTo", input.queryTo),
      nonce_window: nonceWindow,
      last_nonce: "0".repeat(20),
      created_at: this.clock.now(),
      last_used_at: null,
      disabled_at: null,
    };
    try {
      await this.db.insertInto("api_keys").values(row).execute();
    } catch (error) {
      if (isUniqueViolation(error))
        throw new Problem(409, "conflict", "You already have a key with that name.");
      throw error;
    }
    await this.record(account, "api_key.created", `created API key "${input.name}"`, context, { keyId: id });
    // The secret leaves the server this once.
    return { ...describe(row), secret };
  }

  async list(accountId: string) {
    const rows = await this.db
      .selectFrom("api_keys")
      .selectAll()
      .where("account_id", "=", accountId)
      .where("disabled_at", "is", null)
      .orderBy("created_at")
      .execute();
    return rows.map(describe);
  }

  async revoke(account: Account, keyId: string, context: RequestContext): Promise<void> {
    const row = await this.db
      .updateTable("api_keys")
      .set({ disabled_at: this.clock.now() })
      .where("id", "=", keyId)
      .where("account_id", "=", account.id)
      .where("disabled_at", "is", null)
      .returning("name")
      .executeTakeFirst();
    if (!row) throw notFound("That API key");
    await this.record(account, "api_key.revoked", `deleted API key "${row.name}"`, context, { keyId });
  }

  private async record(
    account: Account,
    event: string,
    change: string,
    context: RequestContext,
    details: Record<string, unknown>,
  ) {
    await this.audit.append({ event, outcome: "success", accountId: account.id, details }, context);
    await this.outbox.notify(account, {
      kind: "security_change",
      change,
      ...securityDetails(context, this.clock.now()),
    });
  }
}
