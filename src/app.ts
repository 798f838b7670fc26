import { createRequire } from "node:module";
import path from "node:path";
import { Redis } from "ioredis";
import pino from "pino";
import type PinoPretty from "pino-pretty";
import { AccountRepository } from "./accounts/accounts.js";
import { ActionService } from "./actions/actions.js";
import { GrantSigner } from "./actions/grants.js";
import { TransactionService } from "./actions/transaction-service.js";
import { AdminService } from "./admin/admin-service.js";
import { ApiKeyService } from "./api-keys/api-keys.js";
import { ApiApprovals } from "./api-keys/approvals.js";
import { GatewayCache } from "./api-keys/gateway-cache.js";
import { DatabaseGatewayState, type GatewayState } from "./api-keys/gateway-state.js";
import { ApiLockout } from "./api-keys/lockout.js";
import { MemoryGatewayState } from "./api-keys/memory-gateway-state.js";
import { SignedRequestVerifier } from "./api-keys/signed-requests.js";
import { WebSocketTokens } from "./api-keys/ws-tokens.js";
import { AuditLog } from "./audit/audit-log.js";
import { CapabilityService } from "./capabilities/capability-service.js";
import { loadPolicy, type Policy } from "./capabilities/policy.js";
import { SubsystemService } from "./capabilities/subsystems.js";
import type { EnvConfig } from "./config/env.js";
import { defaultSettings, type Settings } from "./config/settings.js";
import { loadDataKey } from "./crypto/data-key.js";
import { migrateToLatest, openStorage, type Storage } from "./db/database.js";
import { breachedPasswordFilter } from "./factors/breached-passwords.js";
import { FactorManagement } from "./factors/factor-management.js";
import { Argon2idHasher, type PasswordHasher } from "./factors/password.js";
import { ProofVerifier } from "./factors/proofs.js";
import { RecoveryCodes } from "./factors/recovery-codes.js";
import { SecondFactorRepository } from "./factors/second-factors.js";
import { TotpFactor } from "./factors/totp-factor.js";
import { WebAuthnFactor } from "./factors/webauthn-factor.js";
import { OneTimeTokens } from "./flows/one-time-tokens.js";
import { RecoveryService } from "./flows/recovery.js";
import { SignInService } from "./flows/sign-in.js";
import { SignUpService } from "./flows/sign-up.js";
import { type App, buildHttpServer, redactedLogPaths } from "./http/server.js";
import { Outbox } from "./notify/outbox.js";
import { LocalOutboxTransport, type MailTransport, SmtpTransport } from "./notify/transports.js";
import { AccountProtection } from "./protection/account-protection.js";
import { AttemptGuard } from "./protection/attempt-guard.js";
import { BotCheck, FailureSignals } from "./protection/bot-check.js";
import { DatabaseRateLimiter, type RateLimiter } from "./protection/rate-limiter.js";
import { RedisRateLimiter } from "./protection/redis-rate-limiter.js";
import { AccountFreeze, LockLinks } from "./security/account-freeze.js";
import { DisconnectAll } from "./security/disconnect-all.js";
import { EmailChange } from "./security/email-change.js";
import { GlobalLockService } from "./security/global-lock.js";
import { SecurityHolds } from "./security/holds.js";
import { NewPlaces } from "./security/new-places.js";
import { SecuritySettings } from "./security/security-settings.js";
import { SettingChanges } from "./security/setting-changes.js";
import { WithdrawalAddressBook } from "./security/withdrawal-addresses.js";
import type { Services } from "./services.js";
import { DeviceService } from "./sessions/devices.js";
import { RedisRevocationBus } from "./sessions/revocation.js";
import { SessionService } from "./sessions/sessions.js";
import { type Clock, iso, systemClock } from "./support/clock.js";
import { type GeoLocator, OfflineGeoLocator } from "./support/geo.js";
import { Metrics } from "./support/metrics.js";
import { Problem } from "./support/problem.js";

export interface AppOptions {
  config: EnvConfig;
  settings?: Settings;
  clock?: Clock;
  /** Use this storage instead of opening config.databaseUrl (tests hand in a private schema). */
  storage?: Storage;
  transport?: MailTransport;
  hasher?: PasswordHasher;
  geo?: GeoLocator;
  /** A pino logger, or false for none. Defaults to JSON logs on stdout at config.logLevel. */
  logger?: pino.Logger | false;
  /** The capability policy; defaults to PORTCULLIS_POLICY or the built-in one. */
  policy?: Policy;
  /** Prefix for every Redis key (tests give each run its own). */
  redisKeyPrefix?: string;
  /** Run the outbox worker in the background (the server does; tests usually drive it by hand). */
  startWorkers?: boolean;
}

export interface Portcullis {
  services: Services;
  http: App;
  /** Stop workers, finish in-flight requests, close storage and transports. */
  close(): Promise<void>;
}

/**
 * JSON lines for machines; with `pretty` (development, on a terminal) one readable line per entry.
 * Either way credentials are censored before anything is written.
 */
export function createLogger(
  level: string,
  options: { pretty?: boolean; destination?: NodeJS.WritableStream } = {},
): pino.Logger {
  const settings = { level, redact: { paths: redactedLogPaths, censor: "[redacted]" } };
  if (!options.pretty) return options.destination ? pino(settings, options.destination) : pino(settings);
  // Loaded only here: servers in production and every CLI command start without it.
  const pretty = createRequire(import.meta.url)("pino-pretty") as typeof PinoPretty;
  return pino(
    settings,
    pretty({
      colorize: options.destination === undefined,
      translateTime: "SYS:HH:MM:ss",
      ignore: "pid,hostname",
      singleLine: true,
      ...(options.destination ? { destination: options.destination, sync: true } : {}),
    }),
  );
}

/**
 * Redis for counters shared by several instances. Commands fail fast while it is unreachable (no offline
 * queue, one try, a timeout), so requests are answered 503 instead of hanging; the client reconnects by itself.
 */
function connectRedis(url: string): Redis {
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // A command caught by a dropped connection fails within a second instead of waiting to be re-sent.
    autoResendUnfulfilledCommands: false,
    commandTimeout: 1000,
  });
  redis.on("error", () => {});
  redis.connect().catch(() => {});
  return redis;
}

/** The composition root (DESIGN "Dependencies are passed in"): the only place services are built and wired. */
export async function createPortcullis(options: AppOptions): Promise<Portcullis> {
  const { config } = options;
  // Read before anything opens: a bad policy file stops start-up with its line and field.
  const policy = options.policy ?? loadPolicy(config.policyPath);
  const settings = options.settings ?? defaultSettings;
  const clock = options.clock ?? systemClock;
  const logger = options.logger === undefined ? createLogger(config.logLevel) : options.logger;
  // Before anything opens: a data key file others can read stops start-up with one line.
  const dataKey = loadDataKey(config.secretKeyBase64, config.dataDir);
  const storage = options.storage ?? openStorage(config.databaseUrl, { backgroundCheckpoints: true });
  await migrateToLatest(storage);
  const { db } = storage;

  const localMailbox = config.smtpUrl ? null : new LocalOutboxTransport(path.join(config.dataDir, "outbox"));
  const transport: MailTransport =
    options.transport ?? (config.smtpUrl ? new SmtpTransport(config.smtpUrl) : localMailbox!);
  const silent = { warn: () => {} };
  const tokens = new OneTimeTokens(db, clock);
  const publicUrl = config.publicUrl;
  // Every security email carries a "lock my account" link, minted with the email.
  const outbox = new Outbox(
    db,
    transport,
    clock,
    settings.outbox,
    config.mailFrom,
    logger || silent,
    dataKey,
    new LockLinks(tokens, publicUrl),
  );
  const accounts = new AccountRepository(db);
  const audit = new AuditLog(db, clock, dataKey.derive("audit-chain"), storage.sqlite);
  const redis = config.redisUrl ? connectRedis(config.redisUrl) : null;
  const limiter: RateLimiter = redis
    ? new RedisRateLimiter(redis, clock, options.redisKeyPrefix)
    : new DatabaseRateLimiter(db, clock);
  const signals = new FailureSignals(limiter, settings.botCheck);
  const botCheck = new BotCheck(
    config.botCheck,
    settings.botCheck,
    dataKey.derive("bot-check"),
    db,
    clock,
    signals,
  );
  const guard = new AttemptGuard(db, clock, settings.protection);
  // Sessions are cached briefly only where every instance hears of revocations: one SQLite process, or Redis.
  const revocations = redis
    ? new RedisRevocationBus(redis, `${options.redisKeyPrefix ?? "portcullis:"}revocations`)
    : null;
  const sessions = new SessionService(db, clock, settings.sessions, {
    cacheTtlMs: storage.engine === "sqlite" || revocations ? settings.sessions.cacheTtlMs : 0,
    bus: revocations,
  });
  const devices = new DeviceService(db, clock);
  const hasher = options.hasher ?? new Argon2idHasher(settings.password);
  // Read now, once: a missing or damaged list stops the start rather than the first sign-up.
  breachedPasswordFilter();
  const metrics = new Metrics({ processMetrics: options.startWorkers ?? false });
  const geo = options.geo ?? new OfflineGeoLocator();

  const places = new NewPlaces(db, clock, geo, outbox, accounts);
  const protection = new AccountProtection(guard, audit, outbox, metrics, clock, publicUrl);
  const factors = new SecondFactorRepository(db);
  const totp = new TotpFactor(db, dataKey, clock, "Portcullis");
  const webauthn = new WebAuthnFactor(db, clock, {
    name: "Portcullis",
    id: publicUrl.hostname,
    origin: publicUrl.origin,
  });
  const recoveryCodes = new RecoveryCodes(db, clock);
  const proofs = new ProofVerifier(protection, hasher, totp, webauthn, recoveryCodes, outbox, audit, clock);
  const grants = new GrantSigner(dataKey, publicUrl.origin);
  const holds = new SecurityHolds(db, clock);
  const actions = new ActionService(db, clock, factors, proofs, webauthn, sessions, audit, metrics, grants);
  const changes = new SettingChanges(db, clock, actions, accounts, sessions, audit, outbox);
  const factorManagement = new FactorManagement(
    factors,
    totp,
    webauthn,
    recoveryCodes,
    changes,
    sessions,
    holds,
  );

  const subsystems = new SubsystemService(db, clock);
  const capabilities = new CapabilityService(policy, subsystems, factors, guard, holds, clock);
  const addresses = new WithdrawalAddressBook(db, clock, changes, tokens, audit, accounts, publicUrl);
  const transactions = new TransactionService(
    db,
    clock,
    actions,
    capabilities,
    addresses,
    factors,
    accounts,
    audit,
  );
  const securitySettings = new SecuritySettings(
    accounts,
    factors,
    changes,
    hasher,
    holds,
    sessions,
    proofs,
    settings.password,
  );
  const globalLock = new GlobalLockService(
    db,
    clock,
    changes,
    accounts,
    factors,
    webauthn,
    proofs,
    sessions,
    audit,
    outbox,
  );
  // One SQLite process decides the gateway's hot state in memory; instances sharing PostgreSQL decide it
  // in the database, where every rule is one conditional statement.
  const databaseGatewayState = new DatabaseGatewayState(db, new ApiLockout(db, clock));
  const memoryGatewayState = storage.sqlite
    ? new MemoryGatewayState(db, storage.sqlite, clock, databaseGatewayState, audit)
    : null;
  const gatewayState: GatewayState = memoryGatewayState ?? databaseGatewayState;
  if (memoryGatewayState) metrics.watchLockoutSubjects(() => memoryGatewayState.lockoutSubjects);
  const apiKeys = new ApiKeyService(
    db,
    clock,
    dataKey,
    changes,
    capabilities,
    audit,
    outbox,
    accounts,
    "Portcullis",
    tokens,
    publicUrl,
    settings.apiKeys,
    // On SQLite a key's last use is in memory first and in its row about a second later.
    (keyId) => memoryGatewayState?.lastUsedAt(keyId) ?? null,
  );
  const accountFreeze = new AccountFreeze(
    db,
    clock,
    accounts,
    tokens,
    sessions,
    changes,
    factors,
    proofs,
    audit,
    outbox,
  );
  const emailChange = new EmailChange(
    db,
    clock,
    accounts,
    tokens,
    changes,
    factors,
    holds,
    sessions,
    audit,
    outbox,
    publicUrl,
  );
  const disconnectAll = new DisconnectAll(changes, devices, sessions, apiKeys);
  const approvals = new ApiApprovals(db, clock, actions);
  // One cache of keys and accounts' gate inputs: the gateway's decisions and the WebSocket tokens'
  // redemption read the same, so a token is refused exactly when the gateway would refuse its key.
  const gatewayCache = new GatewayCache(
    db,
    dataKey,
    accounts,
    (account) => capabilities.securityInputs(account),
    storage.sqlite,
    () => subsystems.forget(),
  );
  const signedRequests = new SignedRequestVerifier(
    db,
    dataKey,
    clock,
    audit,
    metrics,
    gatewayCache,
    capabilities,
    gatewayState,
    approvals,
    places,
  );
  const webSocketTokens = new WebSocketTokens(db, clock, gatewayCache, capabilities);
  const admin = new AdminService(accounts, guard, subsystems, sessions, audit, clock);

  const signUp = new SignUpService({
    db,
    accounts,
    devices,
    hasher,
    tokens,
    outbox,
    audit,
    botCheck,
    limiter,
    clock,
    settings,
    publicUrl,
    assertSignUpsOpen: async () => {
      const state = (await subsystems.snapshot()).states.signups;
      if (state && (state.status === "maintenance" || state.status === "outage")) {
        throw new Problem(403, "not_eligible", "Sign-up is paused for maintenance. Try again later.", {
          reasons: [
            {
              code: "subsystem_maintenance",
              message: state.message ?? "Sign-up is paused for maintenance.",
              subsystem: "signups",
              state: state.status,
              until: state.until === null ? null : iso(state.until),
            },
          ],
        });
      }
    },
  });
  const signIn = new SignInService({
    db,
    accounts,
    hasher,
    protection,
    guard,
    holds,
    proofs,
    factors,
    recoveryCodes,
    webauthn,
    devices,
    sessions,
    tokens,
    outbox,
    audit,
    botCheck,
    signals,
    limiter,
    metrics,
    clock,
    settings,
    publicUrl,
    places,
    geo,
    approvalNetwork: config.approvalNetwork,
  });

  const recovery = new RecoveryService({
    db,
    apiKeys,
    accounts,
    hasher,
    protection,
    guard,
    tokens,
    sessions,
    holds,
    outbox,
    audit,
    botCheck,
    limiter,
    clock,
    settings,
    publicUrl,
  });

  const services: Services = {
    config,
    settings,
    clock,
    storage,
    redis,
    accounts,
    audit,
    outbox,
    localMailbox: options.transport ? null : localMailbox,
    guard,
    botCheck,
    sessions,
    devices,
    actions,
    factorManagement,
    subsystems,
    capabilities,
    admin,
    grants,
    holds,
    addresses,
    transactions,
    securitySettings,
    globalLock,
    accountFreeze,
    emailChange,
    disconnectAll,
    recovery,
    apiKeys,
    approvals,
    signedRequests,
    gatewayState,
    webSocketTokens,
    signUp,
    signIn,
    geo,
    metrics,
  };
  const http = await buildHttpServer(services, { logger: logger || false });

  const housekeeping = setInterval(() => {
    void Promise.all([
      limiter.prune(24 * 3_600_000),
      botCheck.prune(),
      gatewayState.prune(),
      webSocketTokens.prune(),
      outbox.purgeSent(),
    ]).catch(() => {});
  }, 10 * 60_000);
  housekeeping.unref();
  // Aggregated audit entries reach the chain within this long after their minute ends.
  const auditFlush = setInterval(() => {
    void audit.flushAggregates().catch(() => {});
  }, 20_000);
  auditFlush.unref();
  // SQLite: the audit log's index by account follows the log within a second, in bulk (a listing by
  // account brings it up to date first in any case).
  const accountIndexing = setInterval(() => {
    void audit.indexAccounts().catch(() => {});
  }, 1000);
  accountIndexing.unref();
  // SQLite: keys' rows follow the gateway's state journal within about a second, also when traffic stops.
  const stateFolding = setInterval(() => {
    void memoryGatewayState?.foldWhenDue().catch(() => {});
  }, 1000);
  stateFolding.unref();
  if (options.startWorkers) outbox.start();

  return {
    services,
    http,
    async close() {
      clearInterval(housekeeping);
      clearInterval(auditFlush);
      clearInterval(accountIndexing);
      clearInterval(stateFolding);
      await http.close();
      // Counts of the minute still open go into the chain now rather than wait for the next start.
      await audit.flushAggregates({ all: true }).catch(() => {});
      await outbox.stop();
      // Every key's row up to date from the gateway's state journal, which is left empty.
      await memoryGatewayState?.close().catch(() => {});
      // The end of this instance's audit chain goes into the root chain, so a later deletion shows.
      await audit.close().catch(() => {});
      transport.close?.();
      revocations?.close();
      redis?.disconnect();
      if (!options.storage) await storage.close();
    },
  };
}
