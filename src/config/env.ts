import { isIP } from "node:net";
import path from "node:path";

/** A configuration value that cannot be used. The message names the variable, so start-up can print one clear line. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = "ConfigError";
  }
}

export type BotCheckMode = "always" | "adaptive" | "off";
export type Environment = "development" | "production";

/** Everything read from the environment (the README's configuration table), validated once at start. */
export interface EnvConfig {
  env: Environment;
  databaseUrl: string;
  redisUrl: string | undefined;
  port: number;
  host: string;
  publicUrl: URL;
  /** base64 32-byte data key, or undefined to use (or create) the development key file. */
  secretKeyBase64: string | undefined;
  smtpUrl: string | undefined;
  mailFrom: string;
  policyPath: string | undefined;
  /** Operators' token: the /v1/admin API only. */
  adminToken: string | undefined;
  /** The venue backend's token: redeeming grants and the gateway's check routes, nothing else. */
  serviceToken: string | undefined;
  /** The metrics scraper's token: GET /metrics only. */
  metricsToken: string | undefined;
  upstreamUrl: string | undefined;
  trustedProxies: string[];
  botCheck: BotCheckMode;
  /**
   * Where a device approval must be clicked from to count: "network" (the default), the same IPv4 /24 or
   * IPv6 /48 as the device that asked, which a phishing proxy forwarding the email is not on; "country",
   * the same country in the offline database; "off", anywhere (for users behind carrier NAT).
   */
  approvalNetwork: "network" | "country" | "off";
  /** Where development files live: the SQLite file's folder, the generated key, the local mail outbox. */
  dataDir: string;
  logLevel: string;
}

type Env = Record<string, string | undefined>;

function optional(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const value = optional(env, name) ?? fallback;
  if (!allowed.includes(value as T)) {
    throw new ConfigError(name, `must be one of ${allowed.join(", ")}, got "${value}"`);
  }
  return value as T;
}

function port(env: Env, name: string, fallback: number): number {
  const raw = optional(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < 0 || value > 65535) {
    throw new ConfigError(name, `must be a port number from 0 to 65535, got "${raw}"`);
  }
  return value;
}

function url(name: string, raw: string, protocols: string[]): URL {
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, `must be a URL, got "${raw}"`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `must use ${protocols.join(" or ")}, got "${parsed.protocol}"`);
  }
  return parsed;
}

function databaseUrl(raw: string): string {
  if (raw.startsWith("sqlite:")) {
    if (raw.slice("sqlite:".length).length === 0) {
      throw new ConfigError(
        "PORTCULLIS_DATABASE_URL",
        "sqlite: needs a file path, e.g. sqlite:./data/portcullis.db",
      );
    }
    return raw;
  }
  url("PORTCULLIS_DATABASE_URL", raw, ["postgres:", "postgresql:"]);
  return raw;
}

/** A CIDR such as 10.0.0.0/8 or ::1/128, or a single address; not one with a zone id (fe80::1%eth0). */
export function isCidr(value: string): boolean {
  const [address, bits, extra] = value.split("/");
  if (extra !== undefined || !address || address.includes("%")) return false;
  const family = isIP(address);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d+$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

/**
 * Why a secret is too guessable to run a production server with, or null. Random keys and tokens never
 * look like this; a placeholder from a tutorial or a test (32 zero bytes, 32 "a", "0123…" repeated) does.
 * The test is deliberately coarse: every byte the same, a short alphabet, or a short unit repeated.
 */
export function weakSecretReason(secret: Buffer | string, minimumDistinct: number): string | null {
  const units: readonly (number | string)[] = typeof secret === "string" ? [...secret] : [...secret];
  const distinct = new Set(units).size;
  if (distinct === 1) return "is the same character repeated";
  for (let period = 1; period <= units.length / 2; period += 1) {
    if (units.every((unit, i) => unit === units[i % period])) return "is a short pattern repeated";
  }
  if (distinct < minimumDistinct)
    return `uses only ${distinct} different ${typeof secret === "string" ? "characters" : "byte values"}`;
  return null;
}

function operatorSecret(env: Env, name: string): string | undefined {
  const value = optional(env, name);
  if (value !== undefined && value.length < 32) {
    throw new ConfigError(name, "must be at least 32 characters (openssl rand -hex 32)");
  }
  return value;
}

export function sqlitePath(databaseUrl: string): string | undefined {
  return databaseUrl.startsWith("sqlite:") ? databaseUrl.slice("sqlite:".length) : undefined;
}

export function loadEnvConfig(env: Env = process.env): EnvConfig {
  const environment = oneOf(env, "PORTCULLIS_ENV", ["development", "production"] as const, "development");
  const database = databaseUrl(optional(env, "PORTCULLIS_DATABASE_URL") ?? "sqlite:./data/portcullis.db");
  const publicUrl = url(
    "PORTCULLIS_PUBLIC_URL",
    optional(env, "PORTCULLIS_PUBLIC_URL") ?? "http://localhost:3000",
    ["http:", "https:"],
  );
  if (publicUrl.pathname !== "/" || publicUrl.search || publicUrl.hash) {
    throw new ConfigError(
      "PORTCULLIS_PUBLIC_URL",
      `must be an origin without a path, got "${publicUrl.href}"`,
    );
  }
  const redisUrl = optional(env, "PORTCULLIS_REDIS_URL");
  if (redisUrl) url("PORTCULLIS_REDIS_URL", redisUrl, ["redis:", "rediss:"]);
  const smtpUrl = optional(env, "PORTCULLIS_SMTP_URL");
  if (smtpUrl) url("PORTCULLIS_SMTP_URL", smtpUrl, ["smtp:", "smtps:"]);
  const upstreamUrl = optional(env, "PORTCULLIS_UPSTREAM_URL");
  if (upstreamUrl) url("PORTCULLIS_UPSTREAM_URL", upstreamUrl, ["http:", "https:"]);

  const secretKeyBase64 = optional(env, "PORTCULLIS_SECRET_KEY");
  if (secretKeyBase64 !== undefined && Buffer.from(secretKeyBase64, "base64").length !== 32) {
    throw new ConfigError(
      "PORTCULLIS_SECRET_KEY",
      "must be 32 bytes, base64-encoded (openssl rand -base64 32)",
    );
  }
  const adminToken = operatorSecret(env, "PORTCULLIS_ADMIN_TOKEN");
  const serviceToken = operatorSecret(env, "PORTCULLIS_SERVICE_TOKEN");
  const metricsToken = operatorSecret(env, "PORTCULLIS_METRICS_TOKEN");
  const tokens = {
    PORTCULLIS_ADMIN_TOKEN: adminToken,
    PORTCULLIS_SERVICE_TOKEN: serviceToken,
    PORTCULLIS_METRICS_TOKEN: metricsToken,
  };
  // One token per holder: a shared token would let the scraper or the backend act as an operator.
  const seen = new Map<string, string>();
  for (const [name, value] of Object.entries(tokens)) {
    if (value === undefined) continue;
    const other = seen.get(value);
    if (other) throw new ConfigError(name, `must differ from ${other}: each holder gets a token of its own`);
    seen.set(value, name);
  }
  const trustedProxies = (optional(env, "PORTCULLIS_TRUSTED_PROXIES") ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean);
  for (const entry of trustedProxies) {
    if (!isCidr(entry)) {
      throw new ConfigError("PORTCULLIS_TRUSTED_PROXIES", `"${entry}" is not an IP address or CIDR`);
    }
  }

  if (environment === "production") {
    if (publicUrl.protocol !== "https:") {
      throw new ConfigError("PORTCULLIS_PUBLIC_URL", "must be https in production");
    }
    if (!smtpUrl) throw new ConfigError("PORTCULLIS_SMTP_URL", "is required in production");
    if (!secretKeyBase64) throw new ConfigError("PORTCULLIS_SECRET_KEY", "is required in production");
    // 32 random bytes have about 30 different values; fewer than 16 is a made-up key.
    const weakKey = weakSecretReason(Buffer.from(secretKeyBase64, "base64"), 16);
    if (weakKey) {
      throw new ConfigError(
        "PORTCULLIS_SECRET_KEY",
        `${weakKey}; use a random key (openssl rand -base64 32)`,
      );
    }
    for (const [name, value] of Object.entries(tokens)) {
      // A random hex token of 32 characters shows about 14 of its 16 digits (fewer than 8 about once in a
      // million); a token from a handful of characters was typed, not generated.
      const weak = value === undefined ? null : weakSecretReason(value, 8);
      if (weak) throw new ConfigError(name, `${weak}; use a random token (openssl rand -hex 32)`);
    }
  }

  const sqliteFile = sqlitePath(database);
  return {
    env: environment,
    databaseUrl: database,
    redisUrl,
    port: port(env, "PORTCULLIS_PORT", 3000),
    host: optional(env, "PORTCULLIS_HOST") ?? "127.0.0.1",
    publicUrl,
    secretKeyBase64,
    smtpUrl,
    mailFrom: optional(env, "PORTCULLIS_MAIL_FROM") ?? "Portcullis <no-reply@localhost>",
    policyPath: optional(env, "PORTCULLIS_POLICY"),
    adminToken,
    serviceToken,
    metricsToken,
    upstreamUrl,
    trustedProxies,
    botCheck: oneOf(env, "PORTCULLIS_BOT_CHECK", ["always", "adaptive", "off"] as const, "always"),
    approvalNetwork: oneOf(
      env,
      "PORTCULLIS_DEVICE_APPROVAL_NETWORK",
      ["network", "country", "off"] as const,
      "network",
    ),
    dataDir: optional(env, "PORTCULLIS_DATA_DIR") ?? (sqliteFile ? path.dirname(sqliteFile) : "./data"),
    logLevel: oneOf(
      env,
      "PORTCULLIS_LOG_LEVEL",
      ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const,
      "info",
    ),
  };
}
