/**
 * Memory held by a server with many stored sessions, for `npm run bench`: helpers that fill a stopped
 * server's SQLite file with 100,000 live sessions (written straight into its table, as signing in that
 * often would take hours of Argon2), and read a process's resident set size from /proc.
 *
 * The rows are what each server itself writes for a session, so a server that loads, indexes or caches
 * sessions at start or per request pays for all of them; one that reads a session only when asked pays
 * for none.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import Database from "better-sqlite3";
import { defaultSettings } from "../src/config/settings.js";
import { hashToken, mintToken, newId } from "../src/crypto/tokens.js";

export const STORED_SESSIONS = 100_000;

/**
 * The short session-check load after the restart, before RSS is read: run the same on both sides, as the
 * heap a server keeps depends on the requests it has just served as much as on the rows stored.
 */
export const MEMORY_LOAD = { connections: 10, warmupSeconds: 1, seconds: 3 };

/** Opens a server's SQLite file as the server does, so the insert waits for (and does not break) it. */
function open(databaseFile: string): Database.Database {
  if (!fs.existsSync(databaseFile)) throw new Error(`no database at ${databaseFile}`);
  const db = new Database(databaseFile, { fileMustExist: true });
  db.pragma("journal_mode = WAL");
  db.pragma("busy_timeout = 5000");
  db.pragma("foreign_keys = ON");
  db.pragma("synchronous = NORMAL");
  return db;
}

/**
 * Adds `count` live sessions of one account to Portcullis's `sessions` table (src/db/schema.ts
 * SessionsTable): app sessions signed in with the password, each with its own random token stored as
 * SHA-256 hex as src/sessions/sessions.ts stores it, idle and absolute limits in the future. Without
 * `accountId`, the oldest account is used. One transaction. Returns the account used.
 */
export function insertPortcullisSessions(
  databaseFile: string,
  count = STORED_SESSIONS,
  accountId?: string,
): { accountId: string; inserted: number } {
  const db = open(databaseFile);
  try {
    const account = accountId
      ? (db.prepare("SELECT id FROM accounts WHERE id = ?").get(accountId) as { id: string } | undefined)
      : (db.prepare("SELECT id FROM accounts ORDER BY created_at LIMIT 1").get() as
          | { id: string }
          | undefined);
    if (!account) throw new Error(`no account ${accountId ?? "at all"} in ${databaseFile}`);
    const now = Date.now();
    const { idleMs, absoluteMs } = defaultSettings.sessions.app;
    const insert = db.prepare(
      `INSERT INTO sessions (id, token_hash, account_id, client, aal, methods, authenticated_at,
         stepped_up_at, device_id, ip, country, city, user_agent, created_at, last_seen_at,
         idle_expires_at, expires_at, ended_at, end_reason, enrollment_required)
       VALUES (?, ?, ?, 'app', 1, '["password"]', ?, NULL, NULL, '127.0.0.1', NULL, NULL, 'bench', ?, ?, ?, ?,
         NULL, NULL, 0)`,
    );
    db.transaction(() => {
      for (let i = 0; i < count; i += 1) {
        insert.run(
          newId(),
          hashToken(mintToken()),
          account.id,
          now,
          now,
          now,
          now + idleMs,
          now + absoluteMs,
        );
      }
    })();
    return { accountId: account.id, inserted: count };
  } finally {
    db.close();
  }
}

/** Better Auth's ids and session tokens: 32 characters. */
function betterAuthId(): string {
  return randomBytes(24).toString("base64url");
}

/**
 * Adds `count` live sessions of one user to Better Auth's `session` table, as it writes them on SQLite:
 * dates as ISO strings, the token itself (Better Auth stores it as is and signs only the cookie), an
 * expiry seven days out (its default). Without `userId`, the oldest user is used. One transaction.
 */
export function insertBetterAuthSessions(
  databaseFile: string,
  count = STORED_SESSIONS,
  userId?: string,
): { userId: string; inserted: number } {
  const db = open(databaseFile);
  try {
    const user = userId
      ? (db.prepare('SELECT id FROM "user" WHERE id = ?').get(userId) as { id: string } | undefined)
      : (db.prepare('SELECT id FROM "user" ORDER BY "createdAt" LIMIT 1').get() as
          | { id: string }
          | undefined);
    if (!user) throw new Error(`no user ${userId ?? "at all"} in ${databaseFile}`);
    const now = new Date().toISOString();
    const expiresAt = new Date(Date.now() + 7 * 24 * 3600_000).toISOString();
    const insert = db.prepare(
      `INSERT INTO "session" ("id", "expiresAt", "token", "createdAt", "updatedAt", "ipAddress", "userAgent", "userId")
       VALUES (?, ?, ?, ?, ?, '127.0.0.1', 'bench', ?)`,
    );
    db.transaction(() => {
      for (let i = 0; i < count; i += 1) {
        insert.run(betterAuthId(), expiresAt, betterAuthId(), now, now, user.id);
      }
    })();
    return { userId: user.id, inserted: count };
  } finally {
    db.close();
  }
}

/** Resident set size of a running process in MB (VmRSS of /proc/<pid>/status; Linux only). */
export function readRssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kib) / 1024;
}
