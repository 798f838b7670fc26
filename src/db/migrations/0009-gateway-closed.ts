import { type Kysely, sql } from "kysely";

/**
 * The gateway's second round: a nonce floor per key that never moves down, approval thresholds per
 * asset, Kraken's per-pair trading limiter with the orders it has seen placed (for the cancel penalty),
 * and WebSocket tokens.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  // Nonces at or below the floor are refused whatever the key's window later becomes (20-digit text).
  await db.schema
    .alterTable("api_keys")
    .addColumn("nonce_floor", "text", (c) => c.notNull().defaultTo("00000000000000000000"))
    .execute();
  await sql`update api_keys set nonce_floor = last_nonce where nonce_window = 0`.execute(db);
  // A threshold used to be one number with no unit, read as the quote currency's notional. It becomes
  // that amount of the dollar family of quote assets (USD, USDT, USDC); other assets have none until the
  // owner sets them.
  const rows = await sql<{ id: string; approval_threshold: string }>`
    select id, approval_threshold from api_keys where approval_threshold is not null`.execute(db);
  for (const row of rows.rows) {
    if (row.approval_threshold.trim().startsWith("{")) continue;
    const amount = row.approval_threshold.trim();
    const thresholds = JSON.stringify({ USD: amount, USDT: amount, USDC: amount });
    await sql`update api_keys set approval_threshold = ${thresholds} where id = ${row.id}`.execute(db);
  }
  // Kraken's trading counter per key and pair: its level at `level_at`, decaying by the tier's rate.
  await db.schema
    .createTable("api_trading_counters")
    .addColumn("key_id", "text", (c) => c.notNull())
    .addColumn("pair", "text", (c) => c.notNull())
    .addColumn("level", "double precision", (c) => c.notNull())
    .addColumn("level_at", "bigint", (c) => c.notNull())
    .addPrimaryKeyConstraint("api_trading_counters_pk", ["key_id", "pair"])
    .execute();
  // Orders placed through the gateway, from the venue's AddOrder answers: a cancel's penalty depends on
  // the order's age.
  await db.schema
    .createTable("api_orders")
    .addColumn("key_id", "text", (c) => c.notNull())
    .addColumn("txid", "text", (c) => c.notNull())
    .addColumn("pair", "text", (c) => c.notNull())
    .addColumn("placed_at", "bigint", (c) => c.notNull())
    .addPrimaryKeyConstraint("api_orders_pk", ["key_id", "txid"])
    .execute();
  await db.schema.createIndex("api_orders_placed_at").on("api_orders").column("placed_at").execute();
  // WebSocket tokens (GetWebSocketsToken): only the SHA-256 is kept; usable for 15 minutes until first use.
  await db.schema
    .createTable("api_ws_tokens")
    .addColumn("token_hash", "text", (c) => c.primaryKey())
    .addColumn("key_id", "text", (c) => c.notNull())
    .addColumn("account_id", "text", (c) => c.notNull())
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("used_at", "bigint")
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("api_ws_tokens").ifExists().execute();
  await db.schema.dropTable("api_orders").ifExists().execute();
  await db.schema.dropTable("api_trading_counters").ifExists().execute();
  await db.schema.alterTable("api_keys").dropColumn("nonce_floor").execute();
}
