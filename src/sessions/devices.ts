import type { Kysely } from "kysely";
import { hashToken, mintToken, newId } from "../crypto/tokens.js";
import type { Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";
import { iso } from "../support/clock.js";
import type { RequestContext } from "../support/request-context.js";
import { describeUserAgent } from "../support/user-agent.js";

export interface DeviceView {
  id: string;
  label: string | null;
  ip: string | null;
  location: string | null;
  createdAt: string;
  lastSeenAt: string;
}

/** A short, readable label for a device from its user agent ("Chrome on macOS"), never the raw header. */
export function deviceLabel(userAgent: string | null): string | null {
  return userAgent ? describeUserAgent(userAgent) : null;
}

/**
 * Known devices (docs/behaviour.md §2 step 3, §5): a browser's long-lived random device cookie or an app's device id,
 * stored as SHA-256. A device is known to an account once approved; the owner lists and removes them.
 */
export class DeviceService {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
  ) {}

  newDeviceKey(): string {
    return mintToken();
  }

  keyHash(deviceKey: string): string {
    return hashToken(deviceKey);
  }

  /** The known device with this key, touched as seen now; null when the account does not know it. */
  async recognise(
    accountId: string,
    keyHash: string,
    context: RequestContext,
    db: Kysely<Database> = this.db,
  ): Promise<string | null> {
    const row = await db
      .updateTable("devices")
      .set({ last_seen_at: this.clock.now(), ip: context.ip, location: context.location })
      .where("account_id", "=", accountId)
      .where("key_hash", "=", keyHash)
      .returning("id")
      .executeTakeFirst();
    return row?.id ?? null;
  }

  /** Makes the device known to the account (idempotent); returns its id. */
  async remember(
    accountId: string,
    keyHash: string,
    context: Pick<RequestContext, "ip" | "location" | "userAgent">,
    db: Kysely<Database> = this.db,
  ) {
    const now = this.clock.now();
    const row = await db
      .insertInto("devices")
      .values({
        id: newId(),
        account_id: accountId,
        key_hash: keyHash,
        label: deviceLabel(context.userAgent),
        ip: context.ip,
        location: context.location,
        created_at: now,
        last_seen_at: now,
      })
      .onConflict((oc) => oc.columns(["account_id", "key_hash"]).doUpdateSet({ last_seen_at: now }))
      .returning("id")
      .executeTakeFirstOrThrow();
    return row.id;
  }

  async list(accountId: string): Promise<DeviceView[]> {
    const rows = await this.db
      .selectFrom("devices")
      .selectAll()
      .where("account_id", "=", accountId)
      .orderBy("last_seen_at", "desc")
      .execute();
    return rows.map((row) => ({
      id: row.id,
      label: row.label,
      ip: row.ip,
      location: row.location,
      createdAt: iso(row.created_at),
      lastSeenAt: iso(row.last_seen_at),
    }));
  }

  async remove(accountId: string, deviceId: string): Promise<boolean> {
    const row = await this.db
      .deleteFrom("devices")
      .where("account_id", "=", accountId)
      .where("id", "=", deviceId)
      .returning("id")
      .executeTakeFirst();
    return row !== undefined;
  }

  async removeAll(accountId: string, db: Kysely<Database> = this.db): Promise<number> {
    const rows = await db.deleteFrom("devices").where("account_id", "=", accountId).returning("id").execute();
    return rows.length;
  }
}
