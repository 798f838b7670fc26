/**
 * `npm run bench`: throughput of Portcullis relative to baselines measured in the same run, on the same
 * machine. It only reports (and exits 0); the targets are printed next to the measured ratios.
 *
 *   1. baseline        a bare Fastify 5 server, one GET route returning a small JSON object
 *   2. session check   GET /v1/session with a bearer token        ratio to 1, target >= 0.70
 *   3. raw Argon2id    verify() of @node-rs/argon2, same params   (in a child process, nothing else loaded)
 *   4. sign-in         POST /v1/sign-in with the correct password  ratio to 3, target >= 0.85
 *   5. bare HMAC       Kraken's API-Sign computed in a loop, in this process (SHA-256 + HMAC-SHA512)
 *   6. gateway check   POST /v1/gateway/check with a Kraken-signed request   ratio to 1, target >= 0.60,
 *                      and to 5 (how much of a bare signature check the whole decision keeps)
 *
 * Accounts are made through the API (sign-up, the link from the development mail outbox, verification),
 * each signing up with the device id it later signs in with, so no device approval is asked.
 *
 * Every server runs in its own child process on 127.0.0.1; autocannon loads it from this process. The
 * results are printed as a table and written to bench/results/latest.json.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import autocannon from "autocannon";
import pg from "pg";
import { krakenSignature } from "../src/client/kraken-client.js";
import { defaultSettings } from "../src/config/settings.js";
import { measureBetterAuth } from "./better-auth.js";
import { insertPortcullisSessions, MEMORY_LOAD, readRssMb, STORED_SESSIONS } from "./session-memory.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const RESULTS_FILE = path.join(ROOT, "bench", "results", "latest.json");

/** Load settings: connections, warm-up and measured seconds. */
const BASELINE = { connections: 10, warmupSeconds: 2, seconds: 8 };
const SESSION_CHECK = { connections: 10, warmupSeconds: 2, seconds: 8 };
// Four sign-ins in flight keep libuv's four pool threads, and so both cores, busy with Argon2.
const SIGN_IN = { connections: 4, warmupSeconds: 2, seconds: 10 };
const RAW_ARGON2 = { concurrency: SIGN_IN.connections, warmupSeconds: 1, seconds: 8 };

const GATEWAY_CHECK = { connections: 10, warmupSeconds: 2, seconds: 8 };
const BARE_HMAC = { seconds: 3 };

const TARGET_SESSION_VS_BASELINE = 0.7;
const TARGET_GATEWAY_VS_BASELINE = 0.6;
const ADMIN_TOKEN = randomBytes(32).toString("base64url");
const SERVICE_TOKEN = randomBytes(32).toString("base64url");
const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";
const TARGET_SIGN_IN_VS_RAW_ARGON2 = 0.85;
/** Above this share of CPU time used by other processes during a measurement, the table warns. */
const OTHER_CPU_WARNING = 0.05;

const PASSWORD = "violet tractor mango 42";

interface Row {
  name: string;
  reqPerSec: number;
  /** autocannon measures latency in whole milliseconds: 0 means below 1 ms. */
  p99Ms: number;
  /** reqPerSec divided by the reqPerSec of `comparedTo`. */
  ratio: number | null;
  comparedTo: string | null;
  target: number | null;
  meetsTarget: boolean | null;
  /** Share of the machine's CPU time used by processes outside this benchmark while measuring. */
  otherCpu: number | null;
  notes: string;
}

// ---------------------------------------------------------------------------------------------------
// Child processes: every one is tracked, and killed however this process ends.

const children = new Set<ChildProcess>();

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Temporary folders (the server's database and mail), removed however this process ends. */
const tempDirs = new Set<string>();

function cleanUpNow(): void {
  for (const child of children) if (isRunning(child)) child.kill("SIGKILL");
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

process.on("exit", cleanUpNow);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    cleanUpNow();
    process.exit(130);
  });
}

interface Started {
  child: ChildProcess;
  /** Everything the child printed so far (the last 20,000 characters), for error messages. */
  output(): string;
}

/**
 * Runs a TypeScript file with `node --import tsx` (one process, so killing its pid ends it). PORTCULLIS_*
 * variables of this shell are not passed on: the server gets exactly the configuration given here.
 */
function startScript(script: string, args: string[], env: Record<string, string>): Started {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("PORTCULLIS_")),
  );
  const child = spawn(process.execPath, ["--import", "tsx", script, ...args], {
    cwd: ROOT,
    env: { ...inherited, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  child.on("exit", () => children.delete(child));
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-20_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  return { child, output: () => output };
}

async function stopScript(started: Started): Promise<void> {
  const { child } = started;
  if (!isRunning(child)) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const inTime = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
  if (!inTime && isRunning(child)) {
    child.kill("SIGKILL");
    await exited;
  }
}

/** Waits for a child to exit by itself and returns its output; fails on a non-zero exit or a timeout. */
async function waitForExit(started: Started, timeoutMs: number): Promise<string> {
  const { child } = started;
  const code = await new Promise<number | null>((resolve, reject) => {
    if (!isRunning(child)) return resolve(child.exitCode);
    const timer = setTimeout(
      () => reject(new Error(`child did not finish within ${timeoutMs} ms`)),
      timeoutMs,
    );
    child.once("exit", (exitCode) => {
      clearTimeout(timer);
      resolve(exitCode);
    });
  });
  if (code !== 0) throw new Error(`child exited with ${code}:\n${started.output()}`);
  return started.output();
}

/** A port nothing listens on right now: bind port 0 on 127.0.0.1, read it, let it go. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error("no free port"))));
    });
  });
}

/** Polls `url` until it answers 200; fails if the server process dies or `timeoutMs` passes. */
async function waitUntilUp(url: string, started: Started, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isRunning(started.child)) throw new Error(`server exited while starting:\n${started.output()}`);
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await sleep(100);
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms:\n${started.output()}`);
}

// ---------------------------------------------------------------------------------------------------
// Other load on the machine (Linux /proc only): the ratios assume nothing else competes for the CPUs.

interface CpuSample {
  /** Clock ticks of all CPUs: busy (steal included: time another VM had) and in total. */
  busy: number;
  total: number;
  /** Ticks of this process, its reaped children and its running children. */
  ours: number;
}

function processTicks(pid: number): number[] {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  // After "pid (comm) ", field 3 (state) is index 0; utime, stime, cutime, cstime are fields 14-17.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return fields.slice(11, 15).map(Number);
}

/**
 * CPU ticks of the local PostgreSQL and Redis servers: in the scaled-out phases they are part of the
 * system being measured, not other load (in the SQLite phases they idle).
 */
function serviceTicks(): number {
  let ticks = 0;
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      if (comm !== "postgres" && comm !== "redis-server") continue;
      const [utime = 0, stime = 0] = processTicks(Number(entry));
      ticks += utime + stime;
    } catch {
      // Gone meanwhile.
    }
  }
  return ticks;
}

function cpuSample(): CpuSample | null {
  try {
    const cpu = fs
      .readFileSync("/proc/stat", "utf8")
      .split("\n")[0]!
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = cpu;
    const busy = user + nice + system + irq + softirq + steal;
    const [utime = 0, stime = 0, cutime = 0, cstime = 0] = processTicks(process.pid);
    let ours = utime + stime + cutime + cstime;
    ours += serviceTicks();
    for (const child of children) {
      if (child.pid === undefined || !isRunning(child)) continue;
      try {
        const [childUtime = 0, childStime = 0] = processTicks(child.pid);
        ours += childUtime + childStime;
      } catch {
        // Exited just now: its ticks are in our cutime/cstime at the next sample.
      }
    }
    return { busy, total: busy + idle + iowait, ours };
  } catch {
    return null;
  }
}

function otherCpuShare(start: CpuSample | null, end: CpuSample | null): number | null {
  if (!start || !end || end.total <= start.total) return null;
  const other = end.busy - start.busy - (end.ours - start.ours);
  return Math.max(0, other / (end.total - start.total));
}

// ---------------------------------------------------------------------------------------------------
// Load and measurements.

interface LoadResult {
  reqPerSec: number;
  p99Ms: number;
  otherCpu: number | null;
  notes: string;
}

/** Runs autocannon with a warm-up; counts only 2xx answers as done requests. */
async function load(
  options: autocannon.Options & { connections: number; duration: number },
  warmupSeconds: number,
): Promise<LoadResult> {
  await autocannon({ ...options, duration: warmupSeconds }); // warm-up, not counted
  const before = cpuSample();
  const result = await autocannon(options);
  const otherCpu = otherCpuShare(before, cpuSample());
  const bad = result.non2xx + result.errors;
  const statuses = Object.entries(result.statusCodeStats ?? {})
    .map(([status, stats]) => `${status}:${stats.count ?? 0}`)
    .join(" ");
  return {
    reqPerSec: result["2xx"] / result.duration,
    p99Ms: result.latency.p99,
    otherCpu,
    notes: bad > 0 ? `${result.non2xx} non-2xx, ${result.errors} errors (${statuses})` : "",
  };
}

async function measureBaseline(): Promise<LoadResult> {
  const port = await freePort();
  const server = startScript("bench/baseline-server.ts", [], { BENCH_PORT: String(port) });
  try {
    const url = `http://127.0.0.1:${port}/`;
    await waitUntilUp(url, server, 20_000);
    return await load(
      { url, connections: BASELINE.connections, duration: BASELINE.seconds },
      BASELINE.warmupSeconds,
    );
  } finally {
    await stopScript(server);
  }
}

/** What bench/argon2-rate.ts prints. */
interface RawArgon2 {
  perSecond: number;
  p99Ms: number;
  verifies: number;
}

async function measureRawArgon2(): Promise<LoadResult> {
  const before = cpuSample();
  const child = startScript("bench/argon2-rate.ts", [], {
    BENCH_CONCURRENCY: String(RAW_ARGON2.concurrency),
    BENCH_WARMUP_MS: String(RAW_ARGON2.warmupSeconds * 1000),
    BENCH_DURATION_MS: String(RAW_ARGON2.seconds * 1000),
  });
  try {
    const output = await waitForExit(child, 60_000);
    const line = output.trim().split("\n").at(-1) ?? "";
    const raw = JSON.parse(line) as RawArgon2;
    return {
      reqPerSec: raw.perSecond,
      p99Ms: raw.p99Ms,
      otherCpu: otherCpuShare(before, cpuSample()),
      notes: `${raw.verifies} verifies`,
    };
  } finally {
    await stopScript(child);
  }
}

// ---------------------------------------------------------------------------------------------------
// Portcullis: start, and accounts made through the API as a user would (with the local mail outbox).

interface Portcullis {
  server: Started;
  baseUrl: string;
  dataDir: string;
}

/** Where a Portcullis instance keeps its state: SQLite in its data folder, or a shared PostgreSQL + Redis. */
interface Backing {
  databaseUrl?: string;
  redisUrl?: string;
}

async function startPortcullis(dataDir: string, backing: Backing = {}): Promise<Portcullis> {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const server = startScript("src/cli/main.ts", ["serve"], {
    PORTCULLIS_ENV: "development",
    PORTCULLIS_DATABASE_URL: backing.databaseUrl ?? `sqlite:${path.join(dataDir, "portcullis.db")}`,
    ...(backing.redisUrl ? { PORTCULLIS_REDIS_URL: backing.redisUrl } : {}),
    // Instances of one deployment share the data folder: its data key seals secrets for all of them.
    PORTCULLIS_DATA_DIR: dataDir,
    PORTCULLIS_HOST: "127.0.0.1",
    PORTCULLIS_PORT: String(port),
    PORTCULLIS_PUBLIC_URL: baseUrl,
    PORTCULLIS_BOT_CHECK: "off",
    PORTCULLIS_LOG_LEVEL: "warn",
    // The sign-in load comes from one address; it names a different client address per request instead.
    PORTCULLIS_TRUSTED_PROXIES: "127.0.0.1",
    PORTCULLIS_ADMIN_TOKEN: ADMIN_TOKEN,
    PORTCULLIS_SERVICE_TOKEN: SERVICE_TOKEN,
    // No PORTCULLIS_SMTP_URL: mail goes to <dataDir>/outbox/*.json.
  });
  await waitUntilUp(`${baseUrl}/readyz`, server, 30_000);
  return { server, baseUrl, dataDir };
}

/** A schema of its own in the local PostgreSQL for this run, dropped at the end. */
async function createPostgresSchema(): Promise<{ url: string; drop(): Promise<void> }> {
  const schema = `bench_${process.pid}_${randomBytes(3).toString("hex")}`;
  const admin = new pg.Client({ connectionString: POSTGRES_URL });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
  await admin.end();
  const url = `${POSTGRES_URL}${POSTGRES_URL.includes("?") ? "&" : "?"}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  return {
    url,
    async drop() {
      const cleanup = new pg.Client({ connectionString: POSTGRES_URL });
      await cleanup.connect();
      await cleanup.query(`drop schema if exists ${schema} cascade`);
      await cleanup.end();
    },
  };
}

async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** The verification link token from the newest email to `email` in the local outbox. */
async function verificationToken(dataDir: string, email: string, timeoutMs: number): Promise<string> {
  const folder = path.join(dataDir, "outbox");
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const names = fs.existsSync(folder)
      ? fs.readdirSync(folder).filter((name) => name.endsWith(".json"))
      : [];
    for (const name of names.sort().reverse()) {
      let message: { to: string; text: string };
      try {
        message = JSON.parse(fs.readFileSync(path.join(folder, name), "utf8"));
      } catch {
        continue; // still being written: read it on the next round
      }
      const token = /\/verify-email\?token=([A-Za-z0-9_-]+)/.exec(message.text)?.[1];
      if (message.to === email && token) return token;
    }
    await sleep(100);
  }
  throw new Error(`no verification email to ${email} in ${folder} within ${timeoutMs} ms`);
}

interface BenchAccount {
  username: string;
  password: string;
  /** The app's device id, known to the account since sign-up, so sign-ins need no device approval. */
  deviceId: string;
}

/** Sign-up, the link from the outbox, verification: an account that can sign in. */
async function createVerifiedAccount(portcullis: Portcullis, n: number): Promise<BenchAccount> {
  const username = `bench_${process.pid}_${n}`;
  const email = `${username}@example.test`;
  const deviceId = randomBytes(32).toString("base64url");
  // The device that signs up (its device cookie) becomes a known device of the new account.
  const signUp = await postJson(
    `${portcullis.baseUrl}/v1/accounts`,
    { email, username, password: PASSWORD, country: "DE" },
    // An address of its own: the per-IP sign-up limit (20 an hour) lives on in a shared Redis between runs.
    {
      cookie: `portcullis_device=${deviceId}`,
      "x-forwarded-for": `172.16.${randomBytes(1)[0]}.${randomBytes(1)[0]}`,
    },
  );
  if (signUp.status !== 202)
    throw new Error(`sign-up failed: ${signUp.status} ${JSON.stringify(signUp.json)}`);
  const token = await verificationToken(portcullis.dataDir, email, 15_000);
  const verified = await postJson(`${portcullis.baseUrl}/v1/accounts/verify-email`, { token });
  if (verified.status !== 200) {
    throw new Error(`verification failed: ${verified.status} ${JSON.stringify(verified.json)}`);
  }
  return { username, password: PASSWORD, deviceId };
}

async function sessionToken(
  portcullis: Portcullis,
  account: BenchAccount,
  client: "app" | "pro" = "app",
): Promise<string> {
  const signIn = await postJson(`${portcullis.baseUrl}/v1/sign-in`, {
    identifier: account.username,
    password: account.password,
    client,
    deviceId: account.deviceId,
  });
  const token = signIn.json.token;
  if (signIn.status !== 200 || typeof token !== "string") {
    throw new Error(`sign-in failed: ${signIn.status} ${JSON.stringify(signIn.json)}`);
  }
  return token;
}

async function measureSessionCheck(servers: Portcullis[], token: string): Promise<LoadResult> {
  return loadSpread(
    servers,
    SESSION_CHECK.connections,
    SESSION_CHECK.warmupSeconds,
    (server, connections) => ({
      url: `${server.baseUrl}/v1/session`,
      headers: { authorization: `Bearer ${token}` },
      connections,
      duration: SESSION_CHECK.seconds,
    }),
  );
}

/**
 * Every request names a new client address in X-Forwarded-For (from a random /16 per run, so counters
 * kept in a shared Redis by earlier runs never apply), so the per-IP limits (100 and 20 per 15 minutes)
 * never apply. The accounts (one per connection) are taken in turn, so none has more than
 * SIGN_IN.connections password checks in flight: the attempt guard allows 5 per account at once and
 * answers further ones as wrong guesses.
 */
async function measureSignIn(servers: Portcullis[], accounts: BenchAccount[]): Promise<LoadResult> {
  let n = 0;
  const prefix = `10.${1 + Math.floor(Math.random() * 250)}`;
  const bodies = accounts.map((account) =>
    JSON.stringify({
      identifier: account.username,
      password: account.password,
      client: "app",
      deviceId: account.deviceId,
    }),
  );
  return loadSpread(servers, SIGN_IN.connections, SIGN_IN.warmupSeconds, (server, connections) => ({
    url: server.baseUrl,
    connections,
    duration: SIGN_IN.seconds,
    requests: [
      {
        method: "POST",
        path: "/v1/sign-in",
        setupRequest: (request) => {
          n += 1;
          const ip = `${prefix}.${(n >> 8) & 255}.${n & 255}`;
          return {
            ...request,
            headers: { ...request.headers, "content-type": "application/json", "x-forwarded-for": ip },
            body: bodies[n % bodies.length],
          };
        },
      },
    ],
  }));
}

/**
 * One load over several instances at once, as a round-robin balancer would spread it: the connections
 * are shared out, each instance gets its own autocannon, and the answers per second are added up.
 */
async function loadSpread(
  servers: Portcullis[],
  connections: number,
  warmupSeconds: number,
  optionsFor: (
    server: Portcullis,
    connections: number,
  ) => autocannon.Options & { connections: number; duration: number },
): Promise<LoadResult> {
  const share = Math.max(1, Math.floor(connections / servers.length));
  const results = await Promise.all(servers.map((server) => load(optionsFor(server, share), warmupSeconds)));
  return {
    reqPerSec: results.reduce((sum, r) => sum + r.reqPerSec, 0),
    p99Ms: Math.max(...results.map((r) => r.p99Ms)),
    otherCpu: results[0]!.otherCpu,
    notes: results
      .map((r) => r.notes)
      .filter(Boolean)
      .join("; "),
  };
}

/**
 * An API key made as its owner makes one: POST /v1/api-keys answers step_up_required, the action is
 * confirmed with the password (no second factor enrolled), and the request is repeated with its id. The
 * nonce window lets the load's connections deliver their nonces in any order.
 */
async function createApiKey(portcullis: Portcullis, token: string): Promise<{ key: string; secret: string }> {
  const auth = { authorization: `Bearer ${token}` };
  const body = { name: "bench", permissions: ["funds_query"], nonceWindow: 1_000_000_000 };
  const first = await postJson(`${portcullis.baseUrl}/v1/api-keys`, body, auth);
  const actionId = (first.json.error as { actionId?: string } | undefined)?.actionId;
  if (first.status !== 403 || !actionId) throw new Error(`no step-up: ${JSON.stringify(first.json)}`);
  const confirmed = await postJson(
    `${portcullis.baseUrl}/v1/actions/${actionId}/confirm`,
    { password: PASSWORD },
    auth,
  );
  const renewed = (confirmed.json.token as string | undefined) ?? token;
  const created = await postJson(`${portcullis.baseUrl}/v1/api-keys`, body, {
    authorization: `Bearer ${renewed}`,
    "x-action-id": actionId,
  });
  if (created.status !== 201) throw new Error(`key not created: ${JSON.stringify(created.json)}`);
  return { key: created.json.key as string, secret: created.json.secret as string };
}

/** Kraken's signature computed back to back: what verifying a signature costs with nothing around it. */
function measureBareHmac(secret: string): LoadResult {
  const path = "/0/private/Balance";
  let nonce = BigInt(Date.now()) * 1000n;
  const started = performance.now();
  const deadline = started + BARE_HMAC.seconds * 1000;
  let count = 0;
  while (performance.now() < deadline) {
    for (let i = 0; i < 1000; i += 1) {
      nonce += 1n;
      krakenSignature(secret, path, nonce.toString(), `nonce=${nonce}`);
    }
    count += 1000;
  }
  const seconds = (performance.now() - started) / 1000;
  return { reqPerSec: count / seconds, p99Ms: 0, otherCpu: null, notes: `${count} signatures, one core` };
}

/**
 * The venue's check endpoint, each request a fresh Kraken-signed Balance call (signed by the load
 * generator). Every answer is a full decision — key, IP, signature, nonce, permission, the capability
 * function, the call counter, an audit entry — and the key's counter soon answers "EAPI:Rate limit
 * exceeded", the last check: the table counts decisions, and notes how many allowed.
 */
async function measureGatewayCheck(
  portcullis: Portcullis,
  apiKey: { key: string; secret: string },
): Promise<LoadResult> {
  let nonce = BigInt(Date.now()) * 1000n;
  let allowed = 0;
  let decisions = 0;
  const path = "/0/private/Balance";
  const result = await load(
    {
      url: portcullis.baseUrl,
      connections: GATEWAY_CHECK.connections,
      duration: GATEWAY_CHECK.seconds,
      requests: [
        {
          method: "POST",
          path: "/v1/gateway/check",
          setupRequest: (request) => {
            nonce += 1n;
            const body = `nonce=${nonce}`;
            return {
              ...request,
              headers: {
                ...request.headers,
                "content-type": "application/json",
                authorization: `Bearer ${SERVICE_TOKEN}`,
              },
              body: JSON.stringify({
                path,
                headers: {
                  "API-Key": apiKey.key,
                  "API-Sign": krakenSignature(apiKey.secret, path, nonce.toString(), body),
                },
                body,
                ip: "203.0.113.9",
              }),
            };
          },
          onResponse: (_status, body) => {
            decisions += 1;
            if (body.startsWith('{"allow":true')) allowed += 1;
          },
        },
      ],
    },
    GATEWAY_CHECK.warmupSeconds,
  );
  const refusedOtherwise = decisions - allowed;
  return {
    ...result,
    notes:
      `${allowed} allowed, ${refusedOtherwise} refused (rate limit) in warm-up and run; ${result.notes}`.replace(
        /; $/,
        "",
      ),
  };
}

// ---------------------------------------------------------------------------------------------------
// Report.

function ratioRow(name: string, measured: LoadResult, base: Row, target: number): Row {
  const ratio = base.reqPerSec > 0 ? measured.reqPerSec / base.reqPerSec : 0;
  return { name, ...measured, ratio, comparedTo: base.name, target, meetsTarget: ratio >= target };
}

function printTable(rows: Row[]): void {
  const header = ["name", "req/s", "p99 ms", "ratio", "target", "", "other CPU"];
  const lines = rows.map((row) => [
    row.name,
    row.reqPerSec.toFixed(1),
    row.p99Ms === 0 ? "< 1" : row.p99Ms.toFixed(1),
    row.ratio === null ? "-" : row.ratio < 0.1 ? row.ratio.toPrecision(2) : row.ratio.toFixed(2),
    row.target === null ? "-" : `>= ${row.target.toFixed(2)}`,
    row.meetsTarget === null ? "" : row.meetsTarget ? "ok" : "BELOW TARGET",
    row.otherCpu === null ? "?" : `${Math.round(row.otherCpu * 100)}%`,
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...lines.map((line) => line[i]!.length)));
  const format = (cells: string[]) =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ");
  console.log("");
  console.log(format(header));
  console.log(widths.map((width) => "-".repeat(width)).join("  "));
  for (const line of lines) console.log(format(line));
  for (const row of rows) {
    if (row.comparedTo) console.log(`ratio: ${row.name} / ${row.comparedTo}`);
  }
  for (const row of rows) if (row.notes) console.log(`note: ${row.name}: ${row.notes}`);
  const busiest = Math.max(...rows.map((row) => row.otherCpu ?? 0));
  if (busiest > OTHER_CPU_WARNING) {
    console.log(
      `warning: other processes used up to ${Math.round(busiest * 100)}% of the CPUs while measuring ` +
        "(column 'other CPU'); the ratios are unreliable, run again on a quiet machine.",
    );
  }
  console.log("");
}

const REPORT_FILE = path.join(ROOT, "bench", "REPORT.md");

/** Portcullis beside another system: the ratio of throughputs and whether p99 latency is lower. */
interface Comparison {
  name: string;
  ours: Row;
  theirs: Row;
  /** Throughput ratio Portcullis / other to reach. */
  target: number;
}

/** bench/REPORT.md: every figure of this run, the ratios, and how to reproduce them. */
function writeReport(
  rows: Row[],
  comparisons: Comparison[],
  memory: { name: string; rssMb: number }[],
  startedAt: Date,
): void {
  const cpus = os.cpus();
  const fmt = (n: number) => (n >= 100 ? Math.round(n).toLocaleString("en-US") : n.toFixed(1));
  const ratio = (r: number) => (r < 0.1 ? r.toPrecision(2) : r.toFixed(2));
  const lines = [
    "# Benchmark report",
    "",
    "Written by `npm run bench`; every figure below comes from one run on one machine, so only the",
    "ratios between them mean anything. Regenerate it with the same command.",
    "",
    `- Run: ${startedAt.toISOString()}`,
    `- Machine: ${cpus.length} × ${cpus[0]?.model ?? "unknown CPU"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
    `- Argon2id: m=${defaultSettings.password.memoryCostKib} KiB, t=${defaultSettings.password.timeCost}, p=${defaultSettings.password.parallelism} (both systems)`,
    "",
    "## Throughput",
    "",
    "| measurement | req/s | p99 ms | ratio | to | target | other CPU |",
    "| --- | ---: | ---: | ---: | --- | --- | ---: |",
    ...rows.map(
      (row) =>
        `| ${row.name} | ${fmt(row.reqPerSec)} | ${row.p99Ms === 0 ? "< 1" : row.p99Ms.toFixed(0)} | ${row.ratio === null ? "–" : ratio(row.ratio)} | ${row.comparedTo ?? "–"} | ${row.target === null ? "–" : `≥ ${row.target} ${row.meetsTarget ? "(met)" : "(not met)"}`} | ${row.otherCpu === null ? "?" : `${Math.round(row.otherCpu * 100)}%`} |`,
    ),
    "",
  ];
  if (comparisons.length) {
    lines.push(
      "## Side by side",
      "",
      "| measurement | Portcullis req/s | other req/s | ratio | target | p99 Portcullis / other |",
      "| --- | ---: | ---: | ---: | --- | --- |",
      ...comparisons.map((c) => {
        const r = c.theirs.reqPerSec > 0 ? c.ours.reqPerSec / c.theirs.reqPerSec : 0;
        const p99 = `${c.ours.p99Ms.toFixed(0)} / ${c.theirs.p99Ms.toFixed(0)} ms ${c.ours.p99Ms < c.theirs.p99Ms ? "(lower)" : "(not lower)"}`;
        return `| ${c.name} | ${fmt(c.ours.reqPerSec)} | ${fmt(c.theirs.reqPerSec)} | ${ratio(r)} | ≥ ${c.target} ${r >= c.target ? "(met)" : "(not met)"} | ${p99} |`;
      }),
      "",
    );
  }
  if (memory.length) {
    lines.push(
      "## Memory",
      "",
      "| server | RSS after a session-check load, 100,000 sessions stored |",
      "| --- | ---: |",
      ...memory.map((m) => `| ${m.name} | ${m.rssMb.toFixed(0)} MB |`),
      "",
    );
  }
  const notes = rows.filter((row) => row.notes).map((row) => `- ${row.name}: ${row.notes}`);
  if (notes.length) lines.push("## Notes", "", ...notes, "");
  lines.push(
    "## How to reproduce",
    "",
    "```",
    "npm ci",
    "npm run bench",
    "```",
    "",
    "PostgreSQL and Redis must run locally (as for the tests): `BENCH_POSTGRES_URL` (default",
    "`postgres://postgres@127.0.0.1:5432/test`, a schema of its own per run) and `BENCH_REDIS_URL`",
    "(default `redis://127.0.0.1:6379`) point elsewhere. Each server runs in a child process on",
    "127.0.0.1 and autocannon loads it from the parent after an uncounted warm-up; the load generator",
    "shares the machine, so a column 'other CPU' above 5% marks a figure as unreliable.",
    "",
  );
  fs.writeFileSync(REPORT_FILE, `${lines.join("\n")}`);
  // The repository's formatter aligns the tables, so the committed report passes `biome check` as written.
  execFileSync(path.join(ROOT, "node_modules", ".bin", "biome"), ["format", "--write", REPORT_FILE], {
    stdio: "ignore",
  });
}

function log(message: string): void {
  console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);
}

/**
 * Starts a deployment — one instance on SQLite, or `instances` sharing a fresh PostgreSQL schema and the
 * local Redis — makes the sign-in accounts through the API, runs `measure`, and takes everything down.
 */
async function deployment<T>(
  kind: string,
  instances: number,
  measure: (servers: Portcullis[], accounts: BenchAccount[]) => Promise<T>,
): Promise<T> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-bench-"));
  tempDirs.add(dataDir);
  const postgres = kind === "SQLite" ? null : await createPostgresSchema();
  const servers: Portcullis[] = [];
  try {
    log(`Portcullis: starting ${kind}`);
    const backing: Backing = postgres ? { databaseUrl: postgres.url, redisUrl: REDIS_URL } : {};
    // One after another: the first migrates the schema.
    for (let i = 0; i < instances; i += 1) servers.push(await startPortcullis(dataDir, backing));
    const first = servers[0]!;
    const accounts = await Promise.all(
      Array.from({ length: SIGN_IN.connections }, (_, i) => createVerifiedAccount(first, i + 1)),
    );
    return await measure(servers, accounts);
  } catch (error) {
    for (const server of servers)
      console.error(`Portcullis server output (last lines):\n${server.server.output()}`);
    throw error;
  } finally {
    for (const server of servers) await stopScript(server.server);
    await postgres?.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
    tempDirs.delete(dataDir);
  }
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const { memoryCostKib, timeCost, parallelism } = defaultSettings.password;
  log(`${os.cpus().length} CPUs, Node ${process.version}; each number is compared within this run only`);

  log(`baseline: bare Fastify, ${BASELINE.connections} connections, ${BASELINE.seconds} s`);
  const baseline: Row = {
    name: "baseline: bare Fastify GET",
    ...(await measureBaseline()),
    ratio: null,
    comparedTo: null,
    target: null,
    meetsTarget: null,
  };

  log(
    `raw Argon2id verify (m=${memoryCostKib}, t=${timeCost}, p=${parallelism}), ${RAW_ARGON2.concurrency} at once`,
  );
  const rawArgon2: Row = {
    name: "raw Argon2id verify()",
    ...(await measureRawArgon2()),
    ratio: null,
    comparedTo: null,
    target: null,
    meetsTarget: null,
  };

  const rows: Row[] = [baseline, rawArgon2];
  const plain = (name: string, result: LoadResult): Row => ({
    name,
    ...result,
    ratio: null,
    comparedTo: null,
    target: null,
    meetsTarget: null,
  });

  // 1. The default deployment: one process on SQLite.
  const sqlite = await deployment("SQLite", 1, async (servers, accounts) => {
    const server = servers[0];
    const token = await sessionToken(server!, accounts[0]!);
    log(`GET /v1/session: ${SESSION_CHECK.connections} connections, ${SESSION_CHECK.seconds} s`);
    const session = ratioRow(
      "GET /v1/session (bearer)",
      await measureSessionCheck([server!], token),
      baseline,
      TARGET_SESSION_VS_BASELINE,
    );
    log(`POST /v1/sign-in: ${SIGN_IN.connections} connections, ${SIGN_IN.seconds} s`);
    const signIn = ratioRow(
      "POST /v1/sign-in (password)",
      await measureSignIn([server!], accounts),
      rawArgon2,
      TARGET_SIGN_IN_VS_RAW_ARGON2,
    );
    const apiKey = await createApiKey(server!, await sessionToken(server!, accounts[0]!, "pro"));
    log(`bare HMAC: Kraken's API-Sign in a loop, ${BARE_HMAC.seconds} s`);
    const bareHmac = plain("bare Kraken signature (HMAC)", measureBareHmac(apiKey.secret));
    log(`POST /v1/gateway/check: ${GATEWAY_CHECK.connections} connections, ${GATEWAY_CHECK.seconds} s`);
    const gateway = await measureGatewayCheck(server!, apiKey);

    // Memory with 100,000 stored sessions: stop, store them, start again, load, read the RSS.
    log(`memory: ${STORED_SESSIONS.toLocaleString("en-US")} stored sessions, then GET /v1/session`);
    await stopScript(server!.server);
    insertPortcullisSessions(path.join(server!.dataDir, "portcullis.db"), STORED_SESSIONS);
    const restarted = await startPortcullis(server!.dataDir);
    servers.push(restarted);
    await load(
      {
        url: `${restarted.baseUrl}/v1/session`,
        headers: { authorization: `Bearer ${token}` },
        connections: MEMORY_LOAD.connections,
        duration: MEMORY_LOAD.seconds,
      },
      MEMORY_LOAD.warmupSeconds,
    );
    const rssMb = readRssMb(restarted.server.child.pid!);
    return {
      rssMb,
      session,
      signIn,
      gatewayRows: [
        bareHmac,
        ratioRow("POST /v1/gateway/check", gateway, baseline, TARGET_GATEWAY_VS_BASELINE),
        {
          ...ratioRow("POST /v1/gateway/check", gateway, bareHmac, 0),
          target: null,
          meetsTarget: null,
          notes: "",
        },
      ],
    };
  });
  rows.push(sqlite.session, sqlite.signIn, ...sqlite.gatewayRows);

  // 2. Scaled out: PostgreSQL + Redis, with one instance and then two sharing the load.
  for (const instances of [1, 2]) {
    const label = `PostgreSQL + Redis, ${instances} instance${instances > 1 ? "s" : ""}`;
    const measured = await deployment(label, instances, async (servers, accounts) => {
      const token = await sessionToken(servers[0]!, accounts[0]!);
      log(`${label}: GET /v1/session`);
      const session = ratioRow(
        `GET /v1/session, ${label}`,
        await measureSessionCheck(servers, token),
        baseline,
        0,
      );
      log(`${label}: POST /v1/sign-in`);
      const signIn = ratioRow(
        `POST /v1/sign-in, ${label}`,
        await measureSignIn(servers, accounts),
        rawArgon2,
        0,
      );
      return { session, signIn };
    });
    for (const row of [measured.session, measured.signIn])
      rows.push({ ...row, target: null, meetsTarget: null });
  }

  // 3. Better Auth on the same engine (SQLite), with the same Argon2id parameters and the same loads.
  const betterAuthDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-bench-better-auth-"));
  tempDirs.add(betterAuthDir);
  let betterAuth: Awaited<ReturnType<typeof measureBetterAuth>>;
  try {
    betterAuth = await measureBetterAuth({
      startScript,
      stopScript,
      waitUntilUp,
      freePort,
      load,
      tempDir: betterAuthDir,
      sessionCheck: SESSION_CHECK,
      signIn: SIGN_IN,
      log,
    });
  } finally {
    fs.rmSync(betterAuthDir, { recursive: true, force: true });
    tempDirs.delete(betterAuthDir);
  }
  const betterAuthSession = ratioRow(
    "Better Auth: GET /api/auth/get-session (cookie)",
    betterAuth.sessionCheck,
    baseline,
    0,
  );
  const betterAuthSignIn = ratioRow(
    "Better Auth: POST /api/auth/sign-in/email",
    betterAuth.signIn,
    rawArgon2,
    0,
  );
  rows.push(
    { ...betterAuthSession, target: null, meetsTarget: null },
    { ...betterAuthSignIn, target: null, meetsTarget: null, notes: betterAuth.notes },
  );
  const comparisons: Comparison[] = [
    { name: "session check (SQLite)", ours: sqlite.session, theirs: betterAuthSession, target: 2 },
    { name: "password sign-in (SQLite)", ours: sqlite.signIn, theirs: betterAuthSignIn, target: 1 },
  ];
  const memory = [
    { name: "Portcullis (SQLite)", rssMb: sqlite.rssMb },
    { name: "Better Auth (SQLite)", rssMb: betterAuth.rssAt100kSessionsMb },
  ];
  printTable(rows);
  for (const c of comparisons) {
    const r = c.ours.reqPerSec / c.theirs.reqPerSec;
    console.log(
      `${c.name}: Portcullis / Better Auth = ${r.toFixed(2)} (target >= ${c.target}: ${r >= c.target ? "ok" : "BELOW TARGET"}), p99 ${c.ours.p99Ms} vs ${c.theirs.p99Ms} ms`,
    );
  }
  for (const m of memory)
    console.log(
      `RSS at ${STORED_SESSIONS.toLocaleString("en-US")} stored sessions: ${m.name} ${m.rssMb.toFixed(0)} MB`,
    );

  fs.mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
  const report = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? null, node: process.version },
    settings: {
      baseline: BASELINE,
      sessionCheck: SESSION_CHECK,
      signIn: SIGN_IN,
      rawArgon2: RAW_ARGON2,
      gatewayCheck: GATEWAY_CHECK,
      argon2: { memoryCostKib, timeCost, parallelism },
    },
    results: rows,
    comparisons: comparisons.map((c) => ({
      name: c.name,
      ratio: c.ours.reqPerSec / c.theirs.reqPerSec,
      target: c.target,
      p99Ms: { portcullis: c.ours.p99Ms, other: c.theirs.p99Ms },
    })),
    memory,
  };
  fs.writeFileSync(RESULTS_FILE, `${JSON.stringify(report, null, 2)}\n`);
  writeReport(rows, comparisons, memory, startedAt);
  log(`written to ${path.relative(ROOT, RESULTS_FILE)} and ${path.relative(ROOT, REPORT_FILE)}`);
}

main()
  .catch((error: unknown) => {
    console.error(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exitCode = 1;
  })
  .finally(cleanUpNow);
