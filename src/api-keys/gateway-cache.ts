import type { Kysely, Selectable } from "kysely";
import type { Account, AccountRepository } from "../accounts/accounts.js";
import type { SecurityInputs } from "../capabilities/capability-service.js";
import type { DataKey } from "../crypto/data-key.js";
import type { ApiKeysTable, Database } from "../db/schema.js";

/** A key as the gateway needs it on every request: its row, and its signing secret ready to use. */
export interface CachedKey {
  row: Selectable<ApiKeysTable>;
  /** The base64-decoded secret: the HMAC key itself. */
  hmacKey: Buffer;
}

export interface GateInputs {
  account: Account;
  security: SecurityInputs;
}

/** Beyond this many entries a cache starts again empty: memory stays bounded whatever the traffic. */
const MAX_ENTRIES = 100_000;

/**
 * The keys and account gate inputs the gateway reads on every decision, held in memory and checked
 * against the database's cache generations once per decision (one small read). Triggers raise a
 * generation in the same transaction as any change to a key, an account, its restriction, factors or
 * holds — made by this process, another instance or the CLI — so nothing cached is used after it
 * changed. Only keys that exist are cached: an unknown key is looked up every time.
 */
export class GatewayCache {
  private readonly keys = new Map<string, CachedKey>();
  private readonly accounts = new Map<string, GateInputs>();
  private keysGeneration = -1;
  private accountsGeneration = -1;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly dataKey: DataKey,
    private readonly accountRepository: AccountRepository,
    private readonly readSecurity: (account: Account) => Promise<SecurityInputs>,
  ) {}

  /** Reads both generations and drops whatever they say changed. Call once per decision, first. */
  async refresh(): Promise<void> {
    const rows = await this.db.selectFrom("cache_generations").select(["name", "value"]).execute();
    for (const { name, value } of rows) {
      if (name === "api_keys" && value !== this.keysGeneration) {
        this.keys.clear();
        this.keysGeneration = value;
      } else if (name === "accounts" && value !== this.accountsGeneration) {
        this.accounts.clear();
        this.accountsGeneration = value;
      }
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
      hmacKey: Buffer.from(this.dataKey.open(row.secret_sealed, row.id).toString("utf8"), "base64"),
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
