import { type Kysely, type Selectable, sql } from "kysely";
import type { Tier } from "../capabilities/policy.js";
import type { AccountsTable, Database } from "../db/schema.js";

export type { Tier };

export interface Account {
  id: string;
  email: string;
  username: string;
  country: string;
  region: string | null;
  tier: Tier;
  emailVerified: boolean;
  emailSignIn: boolean;
  antiPhishingCode: string | null;
  disabled: boolean;
  passwordHash: string;
  createdAt: number;
  /** docs/behaviour.md §8 owner settings. */
  fundingTwoFactor: boolean;
  tradingTwoFactor: boolean;
  tradingPasscodeHash: string | null;
  masterKeyHash: string | null;
  globalLock: { since: number; delayDays: number; unlocksAt: number | null } | null;
  /** Frozen from a "lock my account" link since then; null while not frozen. */
  frozenAt: number | null;
  /** When a sign-in found the password on the breached list; null once a new password replaced it. */
  passwordBreachedAt: number | null;
}

/**
 * The address as it is compared and kept unique: trimmed, with only A–Z lower-cased. `emailError` accepts
 * printable ASCII only, so for every address it accepts this is simply its lower-case. Any other character
 * is kept as it is, never folded: `toLowerCase` turns the Kelvin sign "\u212A" into an ASCII "k", so a
 * look-alike spelling (a different mailbox) would take, or look up, the key of the plain address. Kept,
 * one non-ASCII character makes the key differ from the key of every ASCII address, whatever the caller
 * forgot to validate (a sign-in by email, a recovery request).
 */
export const emailKey = (email: string) =>
  email.trim().replace(/[A-Z]+/g, (letters) => letters.toLowerCase());
export const usernameKey = (username: string) => username.trim().toLowerCase();

export function toAccount(row: Selectable<AccountsTable>): Account {
  return {
    id: row.id,
    email: row.email,
    username: row.username,
    country: row.country,
    region: row.region,
    tier: row.tier as Tier,
    emailVerified: row.email_verified_at !== null,
    emailSignIn: row.email_sign_in === 1,
    antiPhishingCode: row.anti_phishing_code,
    disabled: row.disabled_at !== null,
    passwordHash: row.password_hash,
    createdAt: row.created_at,
    fundingTwoFactor: row.funding_2fa === 1,
    tradingTwoFactor: row.trading_2fa === 1,
    tradingPasscodeHash: row.trading_passcode_hash,
    masterKeyHash: row.master_key_hash,
    globalLock:
      row.global_lock_since === null
        ? null
        : {
            since: row.global_lock_since,
            delayDays: row.global_lock_delay_days ?? 0,
            unlocksAt: row.global_lock_unlocks_at,
          },
    frozenAt: row.frozen_at === null ? null : Number(row.frozen_at),
    passwordBreachedAt: row.password_breached_at === null ? null : Number(row.password_breached_at),
  };
}

/** The accounts aggregate: every read and write of the accounts table goes through here. */
export class AccountRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async findById(id: string, db: Kysely<Database> = this.db): Promise<Account | null> {
    const row = await db.selectFrom("accounts").selectAll().where("id", "=", id).executeTakeFirst();
    return row ? toAccount(row) : null;
  }

  async findByEmail(email: string): Promise<Account | null> {
    const key = emailKey(email);
    const row = await this.db
      .selectFrom("accounts")
      .selectAll()
      .where("email_key", "=", key)
      .executeTakeFirst();
    // A row stored before addresses had to be ASCII may hold the folded key of a look-alike spelling
    // ("\u212Aim@…" kept under "kim@…"): that account does not own the plain address, so it is not found by it.
    return row && emailKey(row.email) === key ? toAccount(row) : null;
  }

  async findByUsername(username: string): Promise<Account | null> {
    const row = await this.db
      .selectFrom("accounts")
      .selectAll()
      .where("username", "=", usernameKey(username))
      .executeTakeFirst();
    return row ? toAccount(row) : null;
  }

  /** docs/behaviour.md §1: the username signs in; an email signs in only for accounts that opted in. */
  async findBySignInIdentifier(identifier: string): Promise<Account | null> {
    const byUsername = await this.findByUsername(identifier);
    if (byUsername) return byUsername;
    if (!identifier.includes("@")) return null;
    const byEmail = await this.findByEmail(identifier);
    return byEmail?.emailSignIn ? byEmail : null;
  }

  async markEmailVerified(id: string, at: number): Promise<void> {
    await this.db
      .updateTable("accounts")
      .set({ email_verified_at: at })
      .where("id", "=", id)
      .where("email_verified_at", "is", null)
      .execute();
  }

  /** The same password hashed anew (new parameters): whatever is known of the password still holds. */
  async updatePasswordHash(id: string, passwordHash: string, db: Kysely<Database> = this.db): Promise<void> {
    await db.updateTable("accounts").set({ password_hash: passwordHash }).where("id", "=", id).execute();
  }

  /** A new password, one that passed the rules: a breached one it replaces is no longer a concern. */
  async replacePassword(id: string, passwordHash: string, db: Kysely<Database> = this.db): Promise<void> {
    await db
      .updateTable("accounts")
      .set({ password_hash: passwordHash, password_breached_at: null })
      .where("id", "=", id)
      .execute();
  }

  /** Marks the password as found on the breached list; false when it already was marked. */
  async markPasswordBreached(id: string, at: number, db: Kysely<Database> = this.db): Promise<boolean> {
    const row = await db
      .updateTable("accounts")
      .set({ password_breached_at: at })
      .where("id", "=", id)
      .where("password_breached_at", "is", null)
      .returning("id")
      .executeTakeFirst();
    return row !== undefined;
  }

  /** Disables (with the time) or enables an account; false when there is no such account. */
  async setDisabled(id: string, disabledAt: number | null): Promise<boolean> {
    const row = await this.db
      .updateTable("accounts")
      .set({ disabled_at: disabledAt })
      .where("id", "=", id)
      .returning("id")
      .executeTakeFirst();
    return row !== undefined;
  }

  async setTier(id: string, tier: Tier): Promise<void> {
    await this.db.updateTable("accounts").set({ tier }).where("id", "=", id).execute();
  }

  async setJurisdiction(id: string, country: string, region: string | null): Promise<void> {
    await this.db.updateTable("accounts").set({ country, region }).where("id", "=", id).execute();
  }

  async setRequirements(
    id: string,
    requirements: { funding: boolean; trading: boolean },
    db: Kysely<Database> = this.db,
  ): Promise<void> {
    await db
      .updateTable("accounts")
      .set({ funding_2fa: requirements.funding ? 1 : 0, trading_2fa: requirements.trading ? 1 : 0 })
      .where("id", "=", id)
      .execute();
  }

  async setTradingPasscodeHash(id: string, hash: string, db: Kysely<Database> = this.db): Promise<void> {
    await db.updateTable("accounts").set({ trading_passcode_hash: hash }).where("id", "=", id).execute();
  }

  async setMasterKeyHash(id: string, hash: string, db: Kysely<Database> = this.db): Promise<void> {
    await db.updateTable("accounts").set({ master_key_hash: hash }).where("id", "=", id).execute();
  }

  async setAntiPhishingCode(id: string, code: string, db: Kysely<Database> = this.db): Promise<void> {
    await db.updateTable("accounts").set({ anti_phishing_code: code }).where("id", "=", id).execute();
  }

  /**
   * Inside a setting change's transaction: true when the Global Settings Lock is off at `now`. The row is
   * written (to itself), so it stays locked until the commit: turning the lock on waits for a change in
   * flight, and a change waits for the lock being turned on, then sees it.
   */
  async holdIfUnlocked(id: string, now: number, db: Kysely<Database>): Promise<boolean> {
    const row = await db
      .updateTable("accounts")
      .set((eb) => ({ global_lock_since: eb.ref("global_lock_since") }))
      .where("id", "=", id)
      .where((eb) =>
        eb.or([
          eb("global_lock_since", "is", null),
          eb.and([eb("global_lock_unlocks_at", "is not", null), eb("global_lock_unlocks_at", "<=", now)]),
        ]),
      )
      .returning("id")
      .executeTakeFirst();
    return row !== undefined;
  }

  /**
   * Holds the account's row for a setting change until the transaction ends, if the change may go ahead:
   * not under the Global Settings Lock (unless `lock` is false) and not frozen (unless `freeze` is false).
   * One conditional UPDATE, so a lock or freeze committed meanwhile is seen; false when either refuses.
   */
  async holdForChange(
    id: string,
    now: number,
    refusedBy: { lock: boolean; freeze: boolean },
    db: Kysely<Database>,
  ): Promise<boolean> {
    let query = db
      .updateTable("accounts")
      .set((eb) => ({ global_lock_since: eb.ref("global_lock_since") }))
      .where("id", "=", id);
    if (refusedBy.lock) {
      query = query.where((eb) =>
        eb.or([
          eb("global_lock_since", "is", null),
          eb.and([eb("global_lock_unlocks_at", "is not", null), eb("global_lock_unlocks_at", "<=", now)]),
        ]),
      );
    }
    if (refusedBy.freeze) query = query.where("frozen_at", "is", null);
    return (await query.returning("id").executeTakeFirst()) !== undefined;
  }

  /** Freezes the account; false when it already is frozen. */
  async freeze(id: string, now: number, db: Kysely<Database>): Promise<boolean> {
    const row = await db
      .updateTable("accounts")
      .set({ frozen_at: now })
      .where("id", "=", id)
      .where("frozen_at", "is", null)
      .returning("id")
      .executeTakeFirst();
    return row !== undefined;
  }

  /** Lifts a freeze; `frozenBefore` (when given) must be later than the freeze began. False when not frozen. */
  async unfreeze(id: string, frozenBefore: number | null, db: Kysely<Database>): Promise<boolean> {
    let query = db
      .updateTable("accounts")
      .set({ frozen_at: null })
      .where("id", "=", id)
      .where("frozen_at", "is not", null);
    if (frozenBefore !== null) query = query.where("frozen_at", "<=", frozenBefore);
    return (await query.returning("id").executeTakeFirst()) !== undefined;
  }

  /**
   * Moves the account to a new address, only from `fromEmail` (a confirmation made for an address the
   * account no longer has changes nothing). False when the account's address is no longer `fromEmail`;
   * a unique-key violation when another account took the new address meanwhile.
   */
  async changeEmail(id: string, fromEmail: string, toEmail: string, db: Kysely<Database>): Promise<boolean> {
    const row = await db
      .updateTable("accounts")
      .set({ email: toEmail.trim(), email_key: emailKey(toEmail) })
      .where("id", "=", id)
      // Or the very spelling: an address stored before addresses had to be ASCII may be kept under a key
      // `emailKey` no longer gives it, and moving to a plain address is how such an account gets one.
      .where((eb) => eb.or([eb("email_key", "=", emailKey(fromEmail)), eb("email", "=", fromEmail.trim())]))
      .returning("id")
      .executeTakeFirst();
    return row !== undefined;
  }

  /** Turns the lock on; false when it already is on at `now`. */
  async enableGlobalLock(id: string, delayDays: number, now: number, db: Kysely<Database>): Promise<boolean> {
    const row = await db
      .updateTable("accounts")
      .set({ global_lock_since: now, global_lock_delay_days: delayDays, global_lock_unlocks_at: null })
      .where("id", "=", id)
      .where((eb) =>
        eb.or([
          eb("global_lock_since", "is", null),
          eb.and([eb("global_lock_unlocks_at", "is not", null), eb("global_lock_unlocks_at", "<=", now)]),
        ]),
      )
      .returning("id")
      .executeTakeFirst();
    return row !== undefined;
  }

  /**
   * Sets when a lock that is on at `now` opens: a time (an unlock request), null (a cancelled one), or
   * `"now"` (removed: the Master Key, or support). False when the lock is not on, or not in the state
   * `pending` asks for (true: an unlock must be pending; false: none may be).
   */
  async setGlobalLockOpening(
    id: string,
    opening: number | null | "now",
    now: number,
    db: Kysely<Database>,
    pending?: boolean,
  ): Promise<boolean> {
    let query = db
      .updateTable("accounts")
      .set(
        opening === "now"
          ? { global_lock_since: null, global_lock_delay_days: null, global_lock_unlocks_at: null }
          : { global_lock_unlocks_at: opening },
      )
      .where("id", "=", id)
      .where("global_lock_since", "is not", null)
      .where((eb) =>
        eb.or([eb("global_lock_unlocks_at", "is", null), eb("global_lock_unlocks_at", ">", now)]),
      );
    if (pending === true) query = query.where("global_lock_unlocks_at", "is not", null);
    if (pending === false) query = query.where("global_lock_unlocks_at", "is", null);
    const row = await query.returning("id").executeTakeFirst();
    return row !== undefined;
  }

  async search(query: string, limit = 50): Promise<Account[]> {
    const needle = `%${query
      .trim()
      .toLowerCase()
      .replace(/[%_\\]/g, (c) => `\\${c}`)}%`;
    const rows = await this.db
      .selectFrom("accounts")
      .selectAll()
      .where((eb) =>
        eb.or([
          eb("id", "=", query.trim()),
          // ESCAPE makes the backslash an escape on SQLite too, as it is by default on PostgreSQL.
          sql<boolean>`username like ${needle} escape '\\'`,
          sql<boolean>`email_key like ${needle} escape '\\'`,
        ]),
      )
      .orderBy("created_at", "desc")
      .limit(limit)
      .execute();
    return rows.map(toAccount);
  }
}
