import type { Redis } from "ioredis";
import type { AccountRepository } from "./accounts/accounts.js";
import type { ActionService } from "./actions/actions.js";
import type { GrantSigner } from "./actions/grants.js";
import type { TransactionService } from "./actions/transaction-service.js";
import type { AdminService } from "./admin/admin-service.js";
import type { ApiKeyService } from "./api-keys/api-keys.js";
import type { SignedRequestVerifier } from "./api-keys/signed-requests.js";
import type { AuditLog } from "./audit/audit-log.js";
import type { CapabilityService } from "./capabilities/capability-service.js";
import type { SubsystemService } from "./capabilities/subsystems.js";
import type { EnvConfig } from "./config/env.js";
import type { Settings } from "./config/settings.js";
import type { Storage } from "./db/database.js";
import type { FactorManagement } from "./factors/factor-management.js";
import type { RecoveryService } from "./flows/recovery.js";
import type { SignInService } from "./flows/sign-in.js";
import type { SignUpService } from "./flows/sign-up.js";
import type { Outbox } from "./notify/outbox.js";
import type { LocalOutboxTransport } from "./notify/transports.js";
import type { AttemptGuard } from "./protection/attempt-guard.js";
import type { BotCheck } from "./protection/bot-check.js";
import type { GlobalLockService } from "./security/global-lock.js";
import type { SecurityHolds } from "./security/holds.js";
import type { SecuritySettings } from "./security/security-settings.js";
import type { WithdrawalAddressBook } from "./security/withdrawal-addresses.js";
import type { DeviceService } from "./sessions/devices.js";
import type { SessionService } from "./sessions/sessions.js";
import type { Clock } from "./support/clock.js";
import type { GeoLocator } from "./support/geo.js";
import type { Metrics } from "./support/metrics.js";

/** Everything the HTTP layer and the CLI may call, built once in app.ts. */
export interface Services {
  config: EnvConfig;
  settings: Settings;
  clock: Clock;
  storage: Storage;
  /** Present when PORTCULLIS_REDIS_URL is set: shared counters live there. */
  redis: Redis | null;
  accounts: AccountRepository;
  audit: AuditLog;
  outbox: Outbox;
  /** Present in development without SMTP: what /dev/mailbox shows. */
  localMailbox: LocalOutboxTransport | null;
  guard: AttemptGuard;
  botCheck: BotCheck;
  sessions: SessionService;
  devices: DeviceService;
  actions: ActionService;
  factorManagement: FactorManagement;
  subsystems: SubsystemService;
  capabilities: CapabilityService;
  admin: AdminService;
  grants: GrantSigner;
  holds: SecurityHolds;
  addresses: WithdrawalAddressBook;
  transactions: TransactionService;
  securitySettings: SecuritySettings;
  globalLock: GlobalLockService;
  recovery: RecoveryService;
  apiKeys: ApiKeyService;
  signedRequests: SignedRequestVerifier;
  signUp: SignUpService;
  signIn: SignInService;
  geo: GeoLocator;
  metrics: Metrics;
}
