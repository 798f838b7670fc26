import type SqliteDatabase from "better-sqlite3";
import { type Kysely, type Selectable, sql } from "kysely";
import type { Account, AccountRepository } from "../accounts/accounts.js";
import type { SecurityInputs } from "../capabilities/capability-service.js";
import type { DataKey } from "../crypto/data-key.js";
import type { ApiKeysTable, Database } from "../db/schema.js";
import { addressAllowlist } from "./address-allowlist.js";

/** A key as the gateway needs it on every request: its row, and its secrets opened once. */
/** Whether a key is past its `valid_until`: the gateway's decisions and its WebSocket tokens ask this. */
export const keyExpired = (row: { valid_until: number | null }, now: number): boolean =>
  row.valid_until !== null && row.valid_until <= now;

export interface CachedKey {
  row: Selectable<ApiKeysTable>;
  secret: string;
  /** KuCoin keys only. */
  passphrase: string | null;
  /** The row's permissions, parsed once (frozen: every decision shares them). */
  permissions: readonly string[];
  /** Whether the key's IP allowlist admits an address (any address when it has none). */
  allowsAddress: (ip: string) => boolean;
}

export interface GateInputs {
  account: Account;
  security: SecurityInputs;
}

/** The generations in one row (PostgreSQL's bigints arrive as text). */
const GENERATIONS =
  "select (select value from cache_generations where name = 'api_keys') as keys, " +
  "(select value from cache_generations where name = 'accounts') as accounts, " +
  "(select value from cache_generations where name = 'subsystems') as subsystems";

/** Beyond this many entries a cache starts again empty: memory stays bounded whatever the traffic. */
const MAX_ENTRIES = 100_000;

/**
 * The keys and account gate inputs the gateway reads on every decision, held in memory and checked
 * against the database's cache generations before every decision (one small read, shared by the
 * decisions of one turn of the event loop: see `refresh`). Triggers raise a generation in the same
 * transaction as any change to a key, an account, its restriction, factors or holds, or a subsystem's
 * state or maintenance window — made by this process, another instance or the CLI — so nothing cached
 * is used after it changed (the subsystems' rows are the capability service's: it is told to forget
 * them). Only keys that exist are cached: an unknown key is looked up every time.
 */
export class GatewayCache {
  private readonly keys = new Map<string, CachedKey>();
  private readonly accounts = new Map<string, GateInputs>();
  private keysGeneration = -1;
  private accountsGeneration = -1;
  private subsystemsGeneration = -1;
  /** The generation read the decisions of this turn wait for, until it starts. */
  private scheduled: Promise<void> | null = null;

  /** The generations: [api_keys, accounts, subsystems]. */
  private readonly generations: () => Promise<[number, number, number]>;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly dataKey: DataKey,
    private readonly accountRepository: AccountRepository,
    private readonly readSecurity: (account: Account) => Promise<SecurityInputs>,
    /**
     * SQLite: the connection itself, read synchronously (a few microseconds instead of a query through
     * the builder). It may see a generation raised by a transaction still open on that connection; a
     * generation is compared for being different, not higher, so one rolled back only clears the
     * caches once more, and a key read meanwhile waits for that transaction to end.
     */
    sqlite: SqliteDatabase.Database | undefined,
    /** Told when the subsystems' generation moved: whoever keeps their rows reads them again. */
    private readonly subsystemsChanged: () => void,
  ) {
    if (sqlite) {
      // One row of numbers, as an array: a third of the time of rows as objects.
      const statement = sqlite.prepare(GENERATIONS).raw();
      this.generations = async () => statement.get() as [number, number, number];
    } else {
      this.generations = async () => {
        const { rows } = await sql
          .raw<{ keys: string; accounts: string; subsystems: string }>(GENERATIONS)
          .execute(this.db);
        return [
          Number(rows[0]?.keys ?? -1),
          Number(rows[0]?.accounts ?? -1),
          Number(rows[0]?.subsystems ?? -1),
        ];
      };
    }
  }

  /**
   * Reads both generations and drops whatever they say changed. Call once per decision, first, after the
   * request was received in full. The read is made once for every decision that asks in one turn of the
   * event loop: in the check phase (setImmediate), after the poll phase has read every request that was
   * waiting on a socket. Every decision sharing the read asked for it before it began, so the read
   * started after each of their requests had arrived: a change committed before any of them was sent is
   * seen by all of them, exactly as with a read per decision, at one read per turn instead of one per
   * request.
   */
  refresh(): Promise<void> {
    this.scheduled ??= new Promise<void>((resolve, reject) => {
      setImmediate(() => {
        // A decision asking from now on needs a read that starts after it asked: the next one.
        this.scheduled = null;
        this.readGenerations().then(resolve, reject);
      });
    });
    return this.scheduled;
  }

  private async readGenerations(): Promise<void> {
    const [keys, accounts, subsystems] = await this.generations();
    if (keys !== this.keysGeneration) {
      this.keys.clear();
      this.keysGeneration = keys;
    }
    if (accounts !== this.accountsGeneration) {
      this.accounts.clear();
      this.accountsGeneration = accounts;
    }
    if (subsystems !== this.subsystemsGeneration) {
      this.subsystemsChanged();
      this.subsystemsGeneration = subsystems;
    }
  }

  async key(apiKey: string): Promise<CachedKey | null> {
    const cached = this.keys.get(apiKey);
    if (cached) return cached;
    const generation = this.keysGeneration;
    const row = await this.db
      .selectFrom("api_keys")
      .selectAll()
      .where("key", "=", apiKey)
      .where("disabled_at", "is", null)
      .executeTakeFirst();
    if (!row) return null;
    const entry = {
      row,
      secret: this.dataKey.open(row.secret_sealed, row.id).toString("utf8"),
      passphrase:
        row.passphrase_sealed === null
          ? null
          : this.dataKey.open(row.passphrase_sealed, `${row.id}:passphrase`).toString("utf8"),
      permissions: Object.freeze(JSON.parse(row.permissions) as string[]),
      allowsAddress: addressAllowlist(JSON.parse(row.ip_allowlist) as string[]),
    };
    // A change committed while this read was in flight raised the generation: keep nothing then.
    if (generation === this.keysGeneration) {
      if (this.keys.size >= MAX_ENTRIES) this.keys.clear();
      this.keys.set(apiKey, entry);
    }
    return entry;
  }

  async gateInputs(accountId: string): Promise<GateInputs | null> {
    const cached = this.accounts.get(accountId);
    if (cached) return cached;
    const generation = this.accountsGeneration;
    const account = await this.accountRepository.findById(accountId);
    if (!account) return null;
    const entry = { account, security: await this.readSecurity(account) };
    if (generation === this.accountsGeneration) {
      if (this.accounts.size >= MAX_ENTRIES) this.accounts.clear();
      this.accounts.set(accountId, entry);
    }
    return entry;
  }
}
