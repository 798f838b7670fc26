import type { Kysely } from "kysely";
import { mintToken, sha256Hex } from "../crypto/tokens.js";
import type { Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";
import type { Permission } from "./permissions.js";

/** As Kraken's: a token must be used within 15 minutes of being issued. */
export const WS_TOKEN_TTL_SECONDS = 900;

/**
 * WebSocket tokens (Kraken's GetWebSocketsToken): issued to a signed request of a key with the
 * `websocket` permission, then presented by the client to the venue's WebSocket server, which asks
 * Portcullis whose it is. Only the SHA-256 is stored; a token is accepted once, within 15 minutes, and
 * only while its key is active.
 */
export class WebSocketTokens {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
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

  /** Whose the token is, spending it; null when unknown, used, expired, or its key is gone. */
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
    const key = await this.db
      .selectFrom("api_keys")
      .select(["permissions"])
      .where("id", "=", spent.key_id)
      .where("disabled_at", "is", null)
      .executeTakeFirst();
    if (!key) return null;
    return {
      accountId: spent.account_id,
      keyId: spent.key_id,
      permissions: JSON.parse(key.permissions) as Permission[],
    };
  }

  async prune(): Promise<void> {
    await this.db
      .deleteFrom("api_ws_tokens")
      .where("created_at", "<", this.clock.now() - 24 * 3_600_000)
      .execute();
  }
}
