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

/** Everything read from the environment (API.md "Configuration"), validated once at start. */
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
  adminToken: string | undefined;
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

/** A CIDR such as 10.0.0.0/8 or ::1/128, or a single address. */
export function isCidr(value: string): boolean {
  const [address, bits, extra] = value.split("/");
  if (extra !== undefined || !address) return false;
  const family = isIP(address);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d+$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
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
  const adminToken = optional(env, "PORTCULLIS_ADMIN_TOKEN");
  if (adminToken !== undefined && adminToken.length < 32) {
    throw new ConfigError("PORTCULLIS_ADMIN_TOKEN", "must be at least 32 characters (openssl rand -hex 32)");
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
