import type { Kysely } from "kysely";
import type { CapabilityService } from "../capabilities/capability-service.js";
import { mintToken, sha256Hex } from "../crypto/tokens.js";
import type { Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";
import { type GatewayCache, keyExpired } from "./gateway-cache.js";
import { methodPermissions, type Permission } from "./permissions.js";

/** As Kraken's: a token must be used within 15 minutes of being issued. */
export const WS_TOKEN_TTL_SECONDS = 900;

/** The permission a key needs for a token (Kraken's GetWebSocketsToken): it must still have it when redeemed. */
const WEBSOCKET = methodPermissions.GetWebSocketsToken!;

/**
 * WebSocket tokens (Kraken's GetWebSocketsToken): issued to a signed request of a key with the
 * `websocket` permission, then presented by the client to the venue's WebSocket server, which asks
 * Portcullis whose it is. Only the SHA-256 is stored; a token is accepted once, within 15 minutes, and
 * only while the gateway would still serve its key: the key neither disabled nor expired and still
 * holding the `websocket` permission, and its account one the capability function lets use the API
 * (not frozen, restricted, or in an API maintenance), read from the gateway's own cache (`GatewayCache`,
 * brought up to date first) and asked of the same capability function with the same inputs as the
 * gateway's decisions. A freeze or a disabled key therefore ends every token issued before it.
 */
export class WebSocketTokens {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly cache: GatewayCache,
    private readonly capabilities: CapabilityService,
  ) {}

  async issue(keyId: string, accountId: string): Promise<{ token: string; expires: number }> {
    const token = mintToken();
    await this.db
      .insertInto("api_ws_tokens")
      .values({
        token_hash: sha256Hex(token),
        key_id: keyId,
        account_id: accountId,
        created_at: this.clock.now(),
      })
      .execute();
    return { token, expires: WS_TOKEN_TTL_SECONDS };
  }

  /**
   * Whose the token is, spending it; null when unknown, used, expired, or when the gateway would no
   * longer serve its key (see the class). A token refused for its key or account is spent all the same.
   */
  async redeem(
    token: string,
  ): Promise<{ accountId: string; keyId: string; permissions: Permission[] } | null> {
    const now = this.clock.now();
    const spent = await this.db
      .updateTable("api_ws_tokens")
      .set({ used_at: now })
      .where("token_hash", "=", sha256Hex(token))
      .where("used_at", "is", null)
      .where("created_at", ">", now - WS_TOKEN_TTL_SECONDS * 1000)
      .returning(["key_id", "account_id"])
      .executeTakeFirst();
    if (!spent) return null;
    const permissions = await this.keyServed(spent.key_id, spent.account_id, now);
    if (!permissions) return null;
    return { accountId: spent.account_id, keyId: spent.key_id, permissions };
  }

  /**
   * The key's permissions when the gateway would serve it now, as its decisions do: the key from the
   * gateway's cache (which holds only keys not disabled), not past `valid_until`, with the `websocket`
   * permission; its account's gate inputs from the same cache, and the capability function's answer for
   * the API from them. Null otherwise.
   */
  private async keyServed(keyId: string, accountId: string, now: number): Promise<Permission[] | null> {
    const stored = await this.db
      .selectFrom("api_keys")
      .select(["key"])
      .where("id", "=", keyId)
      .executeTakeFirst();
    if (!stored) return null;
    await this.cache.refresh();
    const cached = await this.cache.key(stored.key);
    if (!cached || cached.row.id !== keyId || cached.row.account_id !== accountId) return null;
    if (keyExpired(cached.row, now)) return null;
    if (!cached.permissions.includes(WEBSOCKET)) return null;
    const gate = await this.cache.gateInputs(accountId);
    if (!gate) return null;
    const { api } = await this.capabilities.products(gate.account, "api", ["api"], gate.security);
    return api.allowed ? ([...cached.permissions] as Permission[]) : null;
  }

  async prune(): Promise<void> {
    await this.db
      .deleteFrom("api_ws_tokens")
      .where("created_at", "<", this.clock.now() - 24 * 3_600_000)
      .execute();
  }
}
