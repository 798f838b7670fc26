/**
 * The numbers of docs/behaviour.md, in one place. Every one is a default that deployments and tests may override;
 * services receive the settings they need rather than reading globals.
 */
export interface Settings {
  signUp: {
    emailVerificationTtlMs: number;
  };
  signIn: {
    flowTtlMs: number;
    /** docs/behaviour.md §2 step 3: a device never seen on the account must be approved by email. */
    deviceApproval: boolean;
    deviceApprovalTtlMs: number;
  };
  password: {
    minLength: number;
    maxCodePoints: number;
    /** Argon2id parameters (OWASP Password Storage cheat sheet). */
    memoryCostKib: number;
    timeCost: number;
    parallelism: number;
  };
  protection: {
    /** Consecutive failures that restrict an account (behaviour §4). */
    failuresBeforeRestriction: number;
    firstRestrictionMs: number;
    maxRestrictionMs: number;
    failuresBeforePermanentRestriction: number;
    /** Per-IP and per-IP+identifier limits on credential-checking requests. */
    ipLimit: { max: number; windowMs: number };
    ipIdentifierLimit: { max: number; windowMs: number };
    signUpIpLimit: { max: number; windowMs: number };
  };
  botCheck: {
    challengeTtlMs: number;
    /** The proof-of-work counter is drawn from [minCounter, maxCounter]; both rise under attack. */
    minCounter: number;
    maxCounter: number;
    /** In adaptive mode: failures from an IP or identifier after which a bot check is required. */
    adaptiveFailureThreshold: number;
    adaptiveWindowMs: number;
    /** Failures per adaptive window across all accounts that count as an attack: difficulty rises, adaptive mode requires the check. */
    attackFailureRate: number;
    attackDifficultyFactor: number;
  };
  sessions: {
    web: { idleMs: number; absoluteMs: number };
    app: { idleMs: number; absoluteMs: number };
    /** How stale last-seen may get before a request writes it again; keeps session checks read-only. */
    touchIntervalMs: number;
    /**
     * How long an instance may reuse a session it read (revocations clear it at once, here and, over
     * Redis, on every instance). Account changes such as a new tier show within this time.
     */
    cacheTtlMs: number;
  };
  outbox: {
    pollIntervalMs: number;
    baseBackoffMs: number;
    maxBackoffMs: number;
    claimMs: number;
    /** How long a sent row (recipient, kind, times; never its content) is kept for support questions. */
    retentionMs: number;
  };
  apiKeys: {
    /** Active keys an account may hold: a bound on what one account costs the gateway to keep. */
    maxPerAccount: number;
  };
  http: {
    /**
     * How long a request's headers, and the whole request, may take to arrive: a client sending them a
     * byte at a time would otherwise hold its connection (and a slot of every limit) for as long as it
     * likes. Checked every `timeoutCheckMs`; answered 408 `request_timeout`.
     */
    headersTimeoutMs: number;
    requestTimeoutMs: number;
    timeoutCheckMs: number;
  };
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

export const defaultSettings: Settings = {
  signUp: { emailVerificationTtlMs: DAY },
  signIn: { flowTtlMs: 10 * MINUTE, deviceApproval: true, deviceApprovalTtlMs: 20 * MINUTE },
  password: { minLength: 12, maxCodePoints: 256, memoryCostKib: 19456, timeCost: 2, parallelism: 1 },
  protection: {
    failuresBeforeRestriction: 5,
    firstRestrictionMs: 15 * MINUTE,
    maxRestrictionMs: DAY,
    failuresBeforePermanentRestriction: 100,
    ipLimit: { max: 100, windowMs: 15 * MINUTE },
    ipIdentifierLimit: { max: 20, windowMs: 15 * MINUTE },
    signUpIpLimit: { max: 20, windowMs: HOUR },
  },
  botCheck: {
    challengeTtlMs: 5 * MINUTE,
    minCounter: 20_000,
    maxCounter: 60_000,
    adaptiveFailureThreshold: 3,
    adaptiveWindowMs: 15 * MINUTE,
    attackFailureRate: 500,
    attackDifficultyFactor: 4,
  },
  sessions: {
    web: { idleMs: 30 * MINUTE, absoluteMs: 12 * HOUR },
    app: { idleMs: DAY, absoluteMs: 30 * DAY },
    touchIntervalMs: MINUTE,
    cacheTtlMs: 2000,
  },
  outbox: {
    pollIntervalMs: 1000,
    baseBackoffMs: 5000,
    maxBackoffMs: HOUR,
    claimMs: MINUTE,
    retentionMs: 30 * DAY,
  },
  apiKeys: { maxPerAccount: 50 },
  http: { headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, timeoutCheckMs: 5_000 },
};

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };
export type SettingsOverrides = DeepPartial<Settings>;

export function withSettings(overrides: SettingsOverrides = {}, base: Settings = defaultSettings): Settings {
  const merge = (
    target: Record<string, unknown>,
    patch: Record<string, unknown>,
  ): Record<string, unknown> => {
    const out: Record<string, unknown> = { ...target };
    for (const [key, value] of Object.entries(patch)) {
      if (value === undefined) continue;
      const current = out[key];
      out[key] =
        value && typeof value === "object" && current && typeof current === "object"
          ? merge(current as Record<string, unknown>, value as Record<string, unknown>)
          : value;
    }
    return out;
  };
  return merge(
    base as unknown as Record<string, unknown>,
    overrides as Record<string, unknown>,
  ) as unknown as Settings;
}
