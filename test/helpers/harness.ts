import { randomBytes } from "node:crypto";
import { solveChallenge } from "altcha-lib";
import { deriveKey } from "altcha-lib/algorithms/sha";
import type { InjectOptions, LightMyRequestResponse } from "fastify";
import type pino from "pino";
import { createPortcullis, type Portcullis } from "../../src/app.js";
import { loadEnvConfig } from "../../src/config/env.js";
import { type SettingsOverrides, withSettings } from "../../src/config/settings.js";
import { type Engine, openStorage, type Storage } from "../../src/db/database.js";
import type { PasswordHasher } from "../../src/factors/password.js";
import type { MailTransport } from "../../src/notify/transports.js";
import { FakeClock } from "../../src/support/clock.js";
import { linkToken, SmtpCapture } from "./smtp.js";
import { openTestStorage, postgresUrl, redisUrl, type TestStorage } from "./storage.js";

export async function waitUntilReady(redis: { status: string }, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (redis.status !== "ready") {
    if (Date.now() > deadline) throw new Error(`Redis not ready (${redis.status})`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export const ADMIN_TOKEN = "test-operator-token-0123456789abcdef0123456789";
/** The venue backend's token: redeeming grants and checking gateway requests. */
export const SERVICE_TOKEN = "test-service-token-9876543210fedcba9876543210";
/** The metrics scraper's token. */
export const METRICS_TOKEN = "test-metrics-token-a1b2c3d4e5f6a7b8c9d0e1f2a3";
export const PUBLIC_URL = "http://localhost:3000";

export interface HarnessOptions {
  settings?: SettingsOverrides;
  env?: Record<string, string>;
  transport?: MailTransport;
  hasher?: PasswordHasher;
  logger?: pino.Logger;
  /** Keep shared counters in the local Redis (under a prefix of this run's own) instead of the database. */
  redis?: boolean;
}

export interface TestUser {
  email: string;
  username: string;
  password: string;
  country: string;
  region?: string;
}

export interface RequestOptions {
  body?: unknown;
  token?: string;
  cookie?: string;
  headers?: Record<string, string>;
  ip?: string;
  query?: Record<string, string>;
}

let counter = 0;
let signUps = 0;
export function newUser(overrides: Partial<TestUser> = {}): TestUser {
  counter += 1;
  const id = `${process.pid.toString(36)}${counter}${randomBytes(2).toString("hex")}`;
  return {
    email: `trader.${id}@example.test`,
    username: `trader_${id}`,
    password: "violet tractor mango 42",
    country: "DE",
    ...overrides,
  };
}

/**
 * A Portcullis on real storage for one engine, with a real SMTP server catching its mail, a fake clock,
 * cheap bot checks and a known operator token. Requests go through Fastify's inject: the full stack,
 * without sockets.
 */
export class Harness {
  private constructor(
    readonly engine: Engine,
    readonly app: Portcullis,
    readonly clock: FakeClock,
    readonly smtp: SmtpCapture,
    readonly storage: TestStorage,
    private readonly options: HarnessOptions,
    private readonly redisKeyPrefix: string,
    /** A twin shares the first instance's storage, mail and clock, and closes only itself. */
    private readonly isTwin = false,
  ) {}

  static async create(engine: Engine, options: HarnessOptions = {}): Promise<Harness> {
    const storage = await openTestStorage(engine);
    const smtp = new SmtpCapture();
    await smtp.start();
    const clock = new FakeClock(Date.now());
    const redisKeyPrefix = `portcullis-test:${randomBytes(6).toString("hex")}:`;
    const app = await Harness.instance(storage, storage.storage, smtp, clock, options, redisKeyPrefix).catch(
      async (error: unknown) => {
        // Leave no schema or server behind when start-up fails.
        await smtp.stop();
        await storage.dispose();
        throw error;
      },
    );
    return new Harness(engine, app, clock, smtp, storage, options, redisKeyPrefix);
  }

  /**
   * Another instance of the same deployment (PostgreSQL only: SQLite is one server process): its own
   * connection pool and caches, the same database schema, Redis prefix, mail server, clock and data key.
   */
  async twin(): Promise<Harness> {
    if (!this.storage.schema) throw new Error("several instances need PostgreSQL");
    const pool = openStorage(postgresUrl, { schema: this.storage.schema });
    const app = await Harness.instance(
      this.storage,
      pool,
      this.smtp,
      this.clock,
      this.options,
      this.redisKeyPrefix,
    );
    const view: TestStorage = { ...this.storage, storage: pool, dispose: () => pool.close() };
    return new Harness(
      this.engine,
      app,
      this.clock,
      this.smtp,
      view,
      this.options,
      this.redisKeyPrefix,
      true,
    );
  }

  private static async instance(
    storage: TestStorage,
    pool: Storage,
    smtp: SmtpCapture,
    clock: FakeClock,
    options: HarnessOptions,
    redisKeyPrefix: string,
  ): Promise<Portcullis> {
    const config = loadEnvConfig({
      PORTCULLIS_DATABASE_URL: storage.url,
      PORTCULLIS_DATA_DIR: storage.dataDir,
      PORTCULLIS_SMTP_URL: smtp.url,
      PORTCULLIS_ADMIN_TOKEN: ADMIN_TOKEN,
      PORTCULLIS_SERVICE_TOKEN: SERVICE_TOKEN,
      PORTCULLIS_METRICS_TOKEN: METRICS_TOKEN,
      PORTCULLIS_PUBLIC_URL: PUBLIC_URL,
      ...(options.redis ? { PORTCULLIS_REDIS_URL: redisUrl } : {}),
      ...options.env,
    });
    // Device approval is off unless a test is about it: inject requests keep no cookies between calls.
    const testDefaults = withSettings({
      botCheck: { minCounter: 1, maxCounter: 30 },
      signIn: { deviceApproval: false },
    });
    const settings = withSettings(options.settings ?? {}, testDefaults);
    const app = await createPortcullis({
      config,
      settings,
      clock,
      storage: pool,
      logger: options.logger ?? false,
      transport: options.transport,
      hasher: options.hasher,
      redisKeyPrefix,
    });
    if (app.services.redis) await waitUntilReady(app.services.redis);
    return app;
  }

  get services() {
    return this.app.services;
  }

  get db() {
    return this.storage.storage.db;
  }

  async close(): Promise<void> {
    await this.app.close();
    if (!this.isTwin) await this.smtp.stop();
    await this.storage.dispose();
  }

  request(
    method: InjectOptions["method"],
    url: string,
    options: RequestOptions = {},
  ): Promise<LightMyRequestResponse> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    if (options.cookie) {
      headers.cookie = `portcullis_session=${options.cookie}`;
      headers.origin ??= PUBLIC_URL;
    }
    return this.app.http.inject({
      method,
      url,
      headers,
      query: options.query,
      remoteAddress: options.ip ?? "203.0.113.10",
      ...(options.body === undefined ? {} : { payload: options.body as InjectOptions["payload"] }),
    });
  }

  /** Fetches a challenge and solves it, as the ALTCHA widget does. */
  async botCheck(): Promise<string> {
    const response = await this.request("GET", "/v1/bot-check");
    const challenge = response.json();
    const solution = await solveChallenge({ challenge, deriveKey });
    return Buffer.from(JSON.stringify({ challenge, solution })).toString("base64");
  }

  /** Sends everything due in the outbox to the SMTP server now, batch after batch. */
  async deliverMail(): Promise<number> {
    let total = 0;
    for (
      let sent = await this.services.outbox.deliverDue();
      sent > 0;
      sent = await this.services.outbox.deliverDue()
    ) {
      total += sent;
    }
    return total;
  }

  async signUp(user: TestUser, ip?: string): Promise<LightMyRequestResponse> {
    return this.request("POST", "/v1/accounts", { body: { ...user, botCheck: await this.botCheck() }, ip });
  }

  /** Sign-up, the verification email through SMTP, and the click on its link. */
  async createVerifiedUser(overrides: Partial<TestUser> = {}): Promise<TestUser> {
    const user = newUser(overrides);
    // Each from an address of its own: the per-address sign-up limit (20 an hour) is for tests that aim
    // at it, not for a file that needs many accounts, wherever its fake clock's hour happens to begin.
    signUps += 1;
    const response = await this.signUp(user, `198.19.${(signUps >> 8) & 255}.${signUps & 255}`);
    if (response.statusCode !== 202) throw new Error(`sign-up failed: ${response.body}`);
    await this.deliverMail();
    const email = await this.smtp.waitFor(user.email, /Verify your email/);
    const verified = await this.request("POST", "/v1/accounts/verify-email", {
      body: { token: linkToken(email, "/verify-email") },
    });
    if (verified.statusCode !== 200) throw new Error(`verification failed: ${verified.body}`);
    return user;
  }

  async signIn(
    identifier: string,
    password: string,
    options: { ip?: string; client?: "web" | "app" | "pro" } = {},
  ): Promise<LightMyRequestResponse> {
    return this.request("POST", "/v1/sign-in", {
      body: { identifier, password, client: options.client, botCheck: await this.botCheck() },
      ip: options.ip,
    });
  }

  /** Signs in as an app client (or another) and returns the bearer token. */
  async sessionToken(user: TestUser, client: "app" | "pro" = "app"): Promise<string> {
    const response = await this.signIn(user.username, user.password, { client });
    if (response.statusCode !== 200) throw new Error(`sign-in failed: ${response.body}`);
    return response.json().token as string;
  }

  async accountId(user: TestUser): Promise<string> {
    const account = await this.services.accounts.findByUsername(user.username);
    if (!account) throw new Error(`no account ${user.username}`);
    return account.id;
  }
}

export function sessionCookie(response: LightMyRequestResponse): string {
  const cookie = response.cookies.find((c) => c.name === "portcullis_session");
  if (!cookie) throw new Error(`no session cookie in ${JSON.stringify(response.headers["set-cookie"])}`);
  return cookie.value;
}
