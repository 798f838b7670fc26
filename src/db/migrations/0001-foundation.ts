import { type Kysely, sql } from "kysely";

// docs/behaviour.md §1–§5, §12: accounts, attempt counters, single-use tokens, sign-in flows, sessions, audit log, outbox.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("accounts")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("email", "text", (c) => c.notNull())
    .addColumn("email_key", "text", (c) => c.notNull().unique())
    .addColumn("username", "text", (c) => c.notNull().unique())
    .addColumn("password_hash", "text", (c) => c.notNull())
    .addColumn("country", "text", (c) => c.notNull())
    .addColumn("region", "text")
    .addColumn("tier", "text", (c) => c.notNull().defaultTo("starter"))
    .addColumn("email_verified_at", "bigint")
    .addColumn("email_sign_in", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("anti_phishing_code", "text")
    .addColumn("disabled_at", "bigint")
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("account_guards")
    .addColumn("account_id", "text", (c) => c.primaryKey().references("accounts.id").onDelete("cascade"))
    .addColumn("consecutive_failures", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("window_failures", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("restrictions", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("restricted_until", "bigint")
    .addColumn("permanently_restricted_at", "bigint")
    .execute();

  await db.schema
    .createTable("one_time_tokens")
    .addColumn("token_hash", "text", (c) => c.primaryKey())
    .addColumn("purpose", "text", (c) => c.notNull())
    .addColumn("account_id", "text", (c) => c.notNull().references("accounts.id").onDelete("cascade"))
    .addColumn("data", "text")
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("expires_at", "bigint", (c) => c.notNull())
    .addColumn("used_at", "bigint")
    .execute();
  await db.schema
    .createIndex("one_time_tokens_account")
    .on("one_time_tokens")
    .columns(["account_id", "purpose", "created_at"])
    .execute();

  await db.schema
    .createTable("sign_in_flows")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("account_id", "text", (c) => c.notNull().references("accounts.id").onDelete("cascade"))
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("client", "text", (c) => c.notNull())
    .addColumn("methods", "text", (c) => c.notNull())
    .addColumn("factors", "text", (c) => c.notNull())
    .addColumn("device_id", "text")
    .addColumn("ip", "text", (c) => c.notNull())
    .addColumn("user_agent", "text")
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("expires_at", "bigint", (c) => c.notNull())
    .addColumn("completed_at", "bigint")
    .addColumn("session_id", "text")
    .execute();

  await db.schema
    .createTable("sessions")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("token_hash", "text", (c) => c.notNull().unique())
    .addColumn("account_id", "text", (c) => c.notNull().references("accounts.id").onDelete("cascade"))
    .addColumn("client", "text", (c) => c.notNull())
    .addColumn("aal", "integer", (c) => c.notNull())
    .addColumn("methods", "text", (c) => c.notNull())
    .addColumn("authenticated_at", "bigint", (c) => c.notNull())
    .addColumn("stepped_up_at", "bigint")
    .addColumn("device_id", "text")
    .addColumn("ip", "text", (c) => c.notNull())
    .addColumn("country", "text")
    .addColumn("city", "text")
    .addColumn("user_agent", "text")
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("last_seen_at", "bigint", (c) => c.notNull())
    .addColumn("idle_expires_at", "bigint", (c) => c.notNull())
    .addColumn("expires_at", "bigint", (c) => c.notNull())
    .addColumn("ended_at", "bigint")
    .addColumn("end_reason", "text")
    .execute();
  await db.schema
    .createIndex("sessions_account")
    .on("sessions")
    .columns(["account_id", "ended_at"])
    .execute();

  await db.schema
    .createTable("audit_log")
    .addColumn("seq", "bigint", (c) => c.primaryKey())
    .addColumn("at", "bigint", (c) => c.notNull())
    .addColumn("account_id", "text")
    .addColumn("actor", "text", (c) => c.notNull())
    .addColumn("ip", "text")
    .addColumn("location", "text")
    .addColumn("user_agent", "text")
    .addColumn("event", "text", (c) => c.notNull())
    .addColumn("outcome", "text", (c) => c.notNull())
    .addColumn("details", "text", (c) => c.notNull())
    .addColumn("prev_hash", "text", (c) => c.notNull())
    .addColumn("hash", "text", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("audit_log_account").on("audit_log").columns(["account_id", "seq"]).execute();

  await db.schema
    .createTable("audit_head")
    .addColumn("id", "integer", (c) => c.primaryKey())
    .addColumn("last_seq", "bigint", (c) => c.notNull())
    .addColumn("last_hash", "text", (c) => c.notNull())
    .execute();
  await sql`insert into audit_head (id, last_seq, last_hash) values (1, 0, ${"0".repeat(64)})`.execute(db);

  await db.schema
    .createTable("outbox")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("account_id", "text")
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("recipient", "text", (c) => c.notNull())
    .addColumn("subject", "text", (c) => c.notNull())
    .addColumn("body_text", "text", (c) => c.notNull())
    .addColumn("body_html", "text", (c) => c.notNull())
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("next_attempt_at", "bigint", (c) => c.notNull())
    .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("claimed_until", "bigint")
    .addColumn("sent_at", "bigint")
    .addColumn("last_error", "text")
    .execute();
  await db.schema.createIndex("outbox_due").on("outbox").columns(["sent_at", "next_attempt_at"]).execute();

  await db.schema
    .createTable("used_bot_checks")
    .addColumn("challenge_id", "text", (c) => c.primaryKey())
    .addColumn("expires_at", "bigint", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("rate_limits")
    .addColumn("key", "text", (c) => c.primaryKey())
    .addColumn("window_start", "bigint", (c) => c.notNull())
    .addColumn("count", "integer", (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of [
    "rate_limits",
    "used_bot_checks",
    "outbox",
    "audit_head",
    "audit_log",
    "sessions",
    "sign_in_flows",
    "one_time_tokens",
    "account_guards",
    "accounts",
  ]) {
    await db.schema.dropTable(table).ifExists().execute();
  }
}
