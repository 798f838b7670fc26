import type { ColumnType, Generated } from "kysely";

/**
 * Table types. Times are milliseconds since the epoch (BIGINT), flags are 0/1 integers and structured
 * values are JSON text, so that one set of queries means the same on SQLite and PostgreSQL.
 */
export interface AccountsTable {
  id: string;
  email: string;
  /** Lower-cased email: the uniqueness key and the lookup for email sign-in. */
  email_key: string;
  /** Lower-cased username. */
  username: string;
  password_hash: string;
  country: string;
  region: string | null;
  tier: Generated<string>;
  email_verified_at: number | null;
  email_sign_in: Generated<number>;
  anti_phishing_code: string | null;
  disabled_at: number | null;
  created_at: number;
  /** docs/behaviour.md §8: a second factor for withdrawals, futures transfers and new deposit addresses. */
  funding_2fa: Generated<number>;
  /** docs/behaviour.md §8: a second factor for placing and cancelling orders. */
  trading_2fa: Generated<number>;
  /** Argon2id of the 6-digit trading passcode, when set. */
  trading_passcode_hash: string | null;
  /** Argon2id of the Master Key (behaviour §7), when set. */
  master_key_hash: string | null;
  /** The Global Settings Lock: on since, its unlock waiting period, and when a requested unlock completes. */
  global_lock_since: number | null;
  global_lock_delay_days: number | null;
  global_lock_unlocks_at: number | null;
  /** "Lock my account": frozen since then, until the owner (Master Key and a second factor) or an operator lifts it. */
  frozen_at: number | null;
  /** When a sign-in found the password on the breached list; cleared by a new password (behaviour §1). */
  password_breached_at: number | null;
}

/**
 * The account's security epoch: raised by every event that cancels the links already emailed (email,
 * password, disconnect all, factor removed, freeze); no row is epoch 0. See src/flows/one-time-tokens.ts.
 */
export interface AccountSecurityEpochsTable {
  account_id: string;
  epoch: number;
}

/** The per-account attempt counter of docs/behaviour.md §4: one row per account, changed only by conditional updates. */
export interface AccountGuardsTable {
  account_id: string;
  /** Failures since the last fully successful sign-in (towards the permanent restriction). */
  consecutive_failures: Generated<number>;
  /** Failures since the last restriction ended (towards the next temporary restriction). */
  window_failures: Generated<number>;
  /** How many temporary restrictions since the last success: the next one lasts 2^n × the first. */
  restrictions: Generated<number>;
  restricted_until: number | null;
  permanently_restricted_at: number | null;
}

/** Single-use links and codes (email verification, password reset, device approval): only the hash is kept. */
export interface OneTimeTokensTable {
  token_hash: string;
  purpose: string;
  account_id: string;
  data: string | null;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  /** The account's security epoch when issued; null for the links that only take access away. */
  security_epoch: ColumnType<number | null, number | null | undefined, number | null>;
}

export interface SignInFlowsTable {
  id: string;
  account_id: string;
  state: string;
  client: string;
  /** JSON array of the methods proven so far, e.g. ["password"]. */
  methods: string;
  /** JSON array of the second factors this account may use. */
  factors: string;
  device_id: string | null;
  ip: string;
  user_agent: string | null;
  created_at: number;
  expires_at: number;
  completed_at: number | null;
  session_id: string | null;
}

export interface SecondFactorsTable {
  id: string;
  account_id: string;
  type: "totp" | "webauthn";
  name: string;
  created_at: number;
  /** TOTP: null until the first valid code confirms the enrollment. */
  confirmed_at: number | null;
  last_used_at: number | null;
  /** TOTP seed, sealed with the data key. */
  totp_secret: string | null;
  /** The last time step accepted: a code is accepted once (RFC 6238 §5.2). */
  totp_last_step: number | null;
  credential_id: string | null;
  public_key: string | null;
  sign_count: number | null;
  transports: string | null;
  attachment: string | null;
  backed_up: number | null;
  /** What the registration said the credential is: "singleDevice" or "multiDevice" (a synced passkey). */
  device_type: string | null;
}

export interface RecoveryCodesTable {
  id: string;
  account_id: string;
  code_hash: string;
  created_at: number;
  used_at: number | null;
}

export interface WebauthnChallengesTable {
  id: string;
  account_id: string;
  /** "register", "sign_in" (subject: flow id) or "action" (subject: action id). */
  purpose: string;
  subject: string;
  challenge: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
}

/** Challenges of "sign in with a passkey": no account until an assertion names one; each spent once. */
export interface PasskeyChallengesTable {
  id: string;
  challenge: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
}

export interface DevicesTable {
  id: string;
  account_id: string;
  /** SHA-256 of the device cookie or the app's device id. */
  key_hash: string;
  label: string | null;
  ip: string | null;
  location: string | null;
  created_at: number;
  last_seen_at: number;
}

export interface ActionsTable {
  id: string;
  account_id: string;
  type: string;
  params: string;
  digest: string;
  summary: string;
  required: string;
  state: string;
  failures: Generated<number>;
  created_at: number;
  expires_at: number;
  confirmed_at: number | null;
  used_at: number | null;
  /** The grant's unique id (jti) once confirmed; it is redeemed once, before grant_expires_at. */
  grant_id: string | null;
  grant_expires_at: number | null;
  redeemed_at: number | null;
  /** The session that confirmed the action: only it (or the session it rotated into) may spend it. */
  session_id: string | null;
}

export interface SecurityHoldsTable {
  id: string;
  account_id: string;
  /** password_reset, second_factor_removed, trading_passcode_changed, email_changed. */
  kind: string;
  created_at: number;
  until: number;
}

export interface WithdrawalAddressesTable {
  id: string;
  account_id: string;
  asset: string;
  address: string;
  label: string;
  created_at: number;
  /** Set when the owner confirms the address from the emailed link. */
  confirmed_at: number | null;
  /** The hold before first use ends here. */
  usable_from: number | null;
  removed_at: number | null;
}

export interface SessionsTable {
  id: string;
  token_hash: string;
  account_id: string;
  client: string;
  aal: number;
  methods: string;
  authenticated_at: number;
  stepped_up_at: number | null;
  device_id: string | null;
  ip: string;
  country: string | null;
  city: string | null;
  user_agent: string | null;
  created_at: number;
  last_seen_at: number;
  idle_expires_at: number;
  expires_at: number;
  ended_at: number | null;
  end_reason: string | null;
  enrollment_required: Generated<number>;
}

export interface AuditLogTable {
  /** The global order key: unique, and increasing within each chain. */
  seq: number;
  /** The chain the entry belongs to (1 is the root chain) and its position there, from 1. */
  chain_id: number;
  chain_seq: number;
  at: number;
  account_id: string | null;
  actor: string;
  ip: string | null;
  location: string | null;
  user_agent: string | null;
  event: string;
  outcome: string;
  details: string;
  prev_hash: string;
  hash: string;
}

/**
 * SQLite only: the audit log's index by account, brought up to date in bulk by `AuditLog.indexAccounts`
 * (PostgreSQL indexes `audit_log` itself).
 */
export interface AuditAccountEntriesTable {
  account_id: string;
  seq: number;
}

/**
 * SQLite only: the gateway's per-key state as group-committed batches wrote it, one row a batch; `states`
 * is a JSON array of [key id, last nonce, nonce floor, OTP step, call level, call level at, last used at]
 * (see `MemoryGatewayState`).
 */
export interface ApiKeyStateJournalTable {
  seq: Generated<number>;
  states: string;
}

/** SQLite only: one row, the last `seq` that `audit_account_entries` covers. */
export interface AuditAccountIndexTable {
  id: number;
  through: number;
}

/**
 * One row per audit chain: its end. Each instance appends to a chain of its own and locks only that row;
 * chain 1, the root chain, records the opening and closing of every other chain.
 */
export interface AuditHeadTable {
  /** The chain id. */
  id: number;
  opened_at: number;
  /** The position of the chain's last entry (0 while it has none). */
  last_chain_seq: number;
  last_hash: string;
  /** The time of the chain's last entry: entries never go back in time within a chain. */
  last_at: number;
  /** Set when the instance stopped and recorded the chain's end in the root chain. */
  closed_at: number | null;
  /** Entries 1…n were written before hashes covered chain and position (chain 1 only). */
  legacy_entries: number;
}

export interface OutboxTable {
  id: string;
  account_id: string | null;
  kind: string;
  recipient: string;
  /** What to send, sealed under the data key (or "plain:" rendered text from before sealing); null once sent. */
  payload: string | null;
  created_at: number;
  next_attempt_at: number;
  attempts: Generated<number>;
  claimed_until: number | null;
  sent_at: number | null;
  last_error: string | null;
}

/** Unauthenticated refusals counted per key (source) and minute, until written to the chain as one entry. */
export interface AuditAggregatesTable {
  key: string;
  window_start: number;
  count: number;
  first_at: number;
  last_at: number;
  account_id: string | null;
  actor: string;
  ip: string | null;
  location: string | null;
  user_agent: string | null;
  event: string;
  outcome: string;
  details: string;
  /** HMAC of every field the count and last time leave unchanged (null only for rows from before it). */
  mac: string | null;
}

export interface UsedBotChecksTable {
  challenge_id: string;
  expires_at: number;
}

export interface RateLimitsTable {
  key: string;
  window_start: number;
  count: number;
}

export interface SubsystemsTable {
  id: string;
  status: string;
  message: string | null;
  updated_at: number;
}

export interface MaintenanceWindowsTable {
  id: string;
  subsystem: string;
  /** The status the subsystem has while the window is open: maintenance, cancel_only, post_only, … */
  state: string;
  starts_at: number;
  ends_at: number;
  message: string;
  created_at: number;
  cancelled_at: number | null;
}

export interface ApiKeysTable {
  id: string;
  account_id: string;
  name: string;
  /** The public key (Kraken's API-Key header). */
  key: string;
  /** The signing secret, sealed with the data key (an HMAC check needs it back). */
  secret_sealed: string;
  permissions: string;
  ip_allowlist: string;
  valid_until: number | null;
  query_from: number | null;
  query_to: number | null;
  nonce_window: Generated<number>;
  last_nonce: string;
  created_at: number;
  last_used_at: number | null;
  disabled_at: number | null;
  /** Kraken's call counter: its level at `rate_at`, decaying by the account tier's rate since then. */
  rate_level: Generated<number>;
  rate_at: Generated<number>;
  otp_type: "static" | "totp" | null;
  otp_sealed: string | null;
  /** The TOTP step last accepted for the key's own second factor: each code works once. */
  otp_last_step: number | null;
  /** JSON object of asset → decimal string: requests moving more are held for the owner's approval. */
  approval_threshold: string | null;
  /** Nonces at or below this (20-digit text) are refused, whatever the window: it never moves down. */
  nonce_floor: Generated<string>;
  /** How the key signs: kraken, kucoin or kraken_futures (fixed at creation). */
  dialect: Generated<string>;
  /** A KuCoin key's passphrase, sealed with the data key and bound to the key's id. */
  passphrase_sealed: string | null;
}

/** Signatures accepted once: a KuCoin KC-API-SIGN (or a nonce-less Kraken Futures Authent) until it expires. */
export interface ApiKeySignaturesTable {
  key_id: string;
  signature: string;
  expires_at: number;
}

/** A key's weight budget in one pool: what was used since `window_start`. */
export interface ApiKeyWeightsTable {
  key_id: string;
  pool: string;
  window_start: number;
  used: number;
}

export interface ApiTradingCountersTable {
  key_id: string;
  pair: string;
  level: number;
  level_at: number;
}

export interface ApiOrdersTable {
  key_id: string;
  txid: string;
  pair: string;
  placed_at: number;
}

export interface CacheGenerationsTable {
  /** "api_keys" or "accounts": raised by triggers whenever what the gateway caches changes. */
  name: string;
  value: number;
}

export interface ApiWsTokensTable {
  token_hash: string;
  key_id: string;
  account_id: string;
  created_at: number;
  used_at: number | null;
}

export interface ApiLockoutsTable {
  /** "key:<API-Key header>" or "ip:<address>". */
  subject: string;
  failures: number;
  window_start: number;
  locked_until: number;
}

export interface ApiKeyNoncesTable {
  key_id: string;
  nonce: string;
}

/** A place an account was used from: "country:DE", or "network:<device id>:<network>" for a known device. */
export interface AccountPlacesTable {
  account_id: string;
  place: string;
  first_seen_at: number;
  last_seen_at: number;
}

export interface Database {
  accounts: AccountsTable;
  account_guards: AccountGuardsTable;
  one_time_tokens: OneTimeTokensTable;
  account_security_epochs: AccountSecurityEpochsTable;
  sign_in_flows: SignInFlowsTable;
  sessions: SessionsTable;
  audit_log: AuditLogTable;
  audit_head: AuditHeadTable;
  audit_aggregates: AuditAggregatesTable;
  audit_account_entries: AuditAccountEntriesTable;
  audit_account_index: AuditAccountIndexTable;
  api_key_state_journal: ApiKeyStateJournalTable;
  outbox: OutboxTable;
  used_bot_checks: UsedBotChecksTable;
  rate_limits: RateLimitsTable;
  second_factors: SecondFactorsTable;
  recovery_codes: RecoveryCodesTable;
  webauthn_challenges: WebauthnChallengesTable;
  passkey_challenges: PasskeyChallengesTable;
  devices: DevicesTable;
  actions: ActionsTable;
  subsystems: SubsystemsTable;
  maintenance_windows: MaintenanceWindowsTable;
  security_holds: SecurityHoldsTable;
  withdrawal_addresses: WithdrawalAddressesTable;
  api_keys: ApiKeysTable;
  api_key_nonces: ApiKeyNoncesTable;
  api_key_signatures: ApiKeySignaturesTable;
  api_key_weights: ApiKeyWeightsTable;
  api_lockouts: ApiLockoutsTable;
  api_trading_counters: ApiTradingCountersTable;
  api_orders: ApiOrdersTable;
  api_ws_tokens: ApiWsTokensTable;
  cache_generations: CacheGenerationsTable;
  account_places: AccountPlacesTable;
}
