/**
 * `npm run bench`: throughput of Portcullis relative to baselines measured in the same run, on the same
 * machine, with the same client (autocannon, from this process) and the same connections. It only
 * reports (and exits 0); the targets are printed next to the measured ratios.
 *
 * Baselines, each answering the same bytes Portcullis answers for the request it stands beside:
 *   bare Node         node:http answering POST /v1/gateway/check's allowed answer, fed the same signed POSTs
 *   bare Fastify      a Fastify 5 route answering the same, and a GET route answering GET /v1/session's body
 *   raw Argon2id      verify() of @node-rs/argon2, same params (in a child process, nothing else loaded)
 *   bare HMAC         Kraken's API-Sign computed in a loop, in this process (SHA-256 + HMAC-SHA512)
 *
 * The gateway (SQLite unless named), on the path a venue runs all day and on its refusals:
 *   allowed           POST /v1/gateway/check, 16 pro accounts x 50 keys, Balance calls in nonce order,
 *                     round-robin over the keys and counted in requests (autocannon `amount`) so every
 *                     key stays inside Kraken's burst of 20: nearly every answer is a real allow
 *                                                             ratio to bare Node, target >= 0.4 (aim 0.5)
 *   bad signature     one key, a wrong signature, a new source address per request (no lockout builds up)
 *   rate limit        one key whose call counter is exhausted
 *   lockout           one source address locked out by ten bad signatures
 *                     (each refusal path: ratio to the allowed path, target >= 1)
 *   proxied           POST /0/private/Balance through the gateway to a local upstream (a bare Node server
 *                     standing in for the venue)                ratio to bare Node
 *   PostgreSQL + Redis, 1 and 2 instances: the allowed path, both instances' answers added up
 *   CPU profile       the allowed load again on a server run with --cpu-prof: self time by function and
 *                     by file or package, within the load's window ("where the time goes")
 *
 * Sessions and sign-in (SQLite, then PostgreSQL + Redis with 1 and 2 instances):
 *   session check     GET /v1/session with a bearer token      ratio to bare Fastify (same body), >= 0.5
 *   sign-in           POST /v1/sign-in with the correct password   ratio to raw Argon2id, target >= 0.85
 *   memory            RSS after a session-check load with 100,000 sessions stored
 * and Better Auth on the same engine with the same loads, side by side.
 *
 * Accounts and API keys are made through the API (sign-up, the link from the development mail outbox,
 * verification; the tier set by the operator API; each key created with a password step-up), each
 * account signing up with the device id it later signs in with, so no device approval is asked.
 *
 * Every server runs in its own child process on 127.0.0.1. The results are printed as a table and written
 * to bench/results/latest.json and bench/REPORT.md.
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
import { krakenSignature, krakenSignatureBytes } from "../src/client/kraken-client.js";
import { defaultSettings } from "../src/config/settings.js";
import { measureBetterAuth } from "./better-auth.js";
import { type ProfileSummary, summariseProfile } from "./cpu-profile.js";
import { insertPortcullisSessions, MEMORY_LOAD, readRssMb, STORED_SESSIONS } from "./session-memory.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const RESULTS_FILE = path.join(ROOT, "bench", "results", "latest.json");

/** Load settings: connections, warm-up and measured seconds. */
const BASELINE = { connections: 10, warmupSeconds: 2, seconds: 6 };
const SESSION_CHECK = { connections: 10, warmupSeconds: 2, seconds: 6 };
// Four sign-ins in flight keep libuv's four pool threads, and so both cores, busy with Argon2.
const SIGN_IN = { connections: 4, warmupSeconds: 2, seconds: 8 };
const RAW_ARGON2 = { concurrency: SIGN_IN.connections, warmupSeconds: 1, seconds: 6 };
const BARE_HMAC = { seconds: 3 };

/**
 * The allowed path: 16 accounts of 50 keys (an account holds at most 50). Kraken's counter for the pro
 * tier allows a burst of 20 calls, then one a second, per key: the warm-up sends each key 2 calls and the
 * measurement 17, round-robin, so no key passes its ceiling and nearly every answer is an allow. 800 keys
 * make the measured load about three seconds long at the rates seen; with 400 it lasted under two, and
 * the figure moved by a fifth from run to run.
 */
const GATEWAY = { accounts: 16, keysPerAccount: 50, connections: 10, warmupPerKey: 2, measuredPerKey: 17 };
/**
 * The allowed path is measured twice, the baselines each time at the same concurrency: over 10 connections
 * (each waits for its decision's group commit before sending again, so the figure is mostly that
 * commit's latency) and over 50, the many bots at once a venue's gateway serves, where decisions share
 * turns of the event loop, generation reads and commits.
 */
const ALLOWED_CONNECTIONS = [GATEWAY.connections, 50] as const;
/** The refusal paths are counted in seconds: they never run out. */
const REFUSALS = { connections: GATEWAY.connections, warmupSeconds: 1, seconds: 4 };
/**
 * The rate-limit path takes this many of the allowed path's keys (nonce window 0, like them), so the
 * round-robin keeps each key's nonces in order over the parallel connections.
 */
const RATE_LIMITED_KEYS = 50;
/** Long enough for a pro key's counter (one call a second) to drain from 19 to 0 before it is used again. */
const KEY_REST_MS = 20_000;
/** Sampling interval of the profiled server (V8's default is 1000 µs). */
const PROFILE_INTERVAL_US = 500;

const TARGET_SESSION_VS_FASTIFY = 0.5;
const TARGET_GATEWAY_VS_NODE = 0.4;
const GATEWAY_AIM_VS_NODE = 0.5;
const TARGET_REFUSAL_VS_ALLOWED = 1;
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
  /** Gateway loads: the share of answers that were the outcome measured (an allow, or that refusal). */
  share?: number;
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
 * Runs a script with node, a TypeScript one with `--import tsx` (one process, so killing its pid ends it). PORTCULLIS_*
 * variables of this shell are not passed on: the server gets exactly the configuration given here.
 */
function startScript(
  script: string,
  args: string[],
  env: Record<string, string>,
  nodeArgs: string[] = [],
): Started {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("PORTCULLIS_")),
  );
  const loader = script.endsWith(".ts") ? ["--import", "tsx"] : [];
  const child = spawn(process.execPath, [...nodeArgs, ...loader, script, ...args], {
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

/** SIGTERM, then SIGKILL if the child has not exited after `graceMs`. */
async function stopScript(started: Started, graceMs = 5000): Promise<void> {
  const { child } = started;
  if (!isRunning(child)) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const inTime = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)]);
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

/** USER_HZ on Linux: the unit of /proc/<pid>/stat's times. */
const TICKS_PER_SECOND = 100;

function processTicks(pid: number): number[] {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  // After "pid (comm) ", field 3 (state) is index 0; utime, stime, cutime, cstime are fields 14-17.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return fields.slice(11, 15).map(Number);
}

/** CPU ticks (user and system, all threads) a running process has used. */
function cpuTicks(pid: number): number {
  const [utime = 0, stime = 0] = processTicks(pid);
  return utime + stime;
}

/** CPU ticks of a Portcullis server process. */
function serverTicks(portcullis: Portcullis): number {
  return cpuTicks(portcullis.server.child.pid!);
}

/** The server's CPU (all its threads) in µs a request, over `requests` answered since `ticksBefore`. */
/** How many requests `loadAllowed` sends over `keys`, its warm-up included. */
function allowedLoadRequests(keys: BenchKey[]): number {
  return keys.length * (GATEWAY.warmupPerKey + GATEWAY.measuredPerKey);
}

function serverUsPerRequest(portcullis: Portcullis, ticksBefore: number, requests: number): number {
  return ((serverTicks(portcullis) - ticksBefore) * 1e6) / TICKS_PER_SECOND / requests;
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
      ticks += cpuTicks(Number(entry));
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
        ours += cpuTicks(child.pid);
      } catch {
        // Exited just now: its ticks are in our cutime/cstime at the next sample.
      }
    }
    return { busy, total: busy + idle + iowait, ours };
  } catch {
    return null;
  }
}

/**
 * Waits (at most `timeoutMs`) until `servers` use under 5% of a core over half a second: work left from
 * setting up (the mail a new API key sends its owner, a batch still being written) must not fall into
 * the next measurement.
 */
async function settle(servers: Portcullis[], timeoutMs = 20_000): Promise<void> {
  const ticks = () =>
    servers.reduce((sum, server) => {
      const pid = server.server.child.pid;
      if (pid === undefined || !isRunning(server.server.child)) return sum;
      return sum + cpuTicks(pid);
    }, 0);
  const perSecond = TICKS_PER_SECOND;
  const deadline = Date.now() + timeoutMs;
  let last = ticks();
  while (Date.now() < deadline) {
    await sleep(500);
    const now = ticks();
    if ((now - last) / (perSecond / 2) < 0.05) return;
    last = now;
  }
  log(`the servers were still busy after ${timeoutMs / 1000} s; measuring anyway`);
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

/** A body Portcullis answered, to be answered byte for byte by a baseline server. */
interface Answer {
  body: Buffer;
  contentType: string;
}

interface Baseline {
  server: Started;
  /** Where it listens: http://127.0.0.1:port */
  origin: string;
}

/**
 * Starts bench/baseline-server.ts: `kind` node (node:http) or fastify, answering `method path` with
 * `answer`'s bytes and Content-Type; up once it answers that request.
 */
async function startBaseline(
  kind: "node" | "fastify",
  method: "GET" | "POST",
  route: string,
  answer: Answer,
  dir: string,
): Promise<Baseline> {
  const port = await freePort();
  const bodyFile = path.join(dir, `baseline-${kind}-${port}.body`);
  fs.writeFileSync(bodyFile, answer.body);
  const server = startScript("bench/baseline-server.ts", [], {
    BENCH_PORT: String(port),
    BENCH_SERVER: kind,
    BENCH_METHOD: method,
    BENCH_PATH: route,
    BENCH_BODY_FILE: bodyFile,
    BENCH_CONTENT_TYPE: answer.contentType,
  });
  const origin = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (!isRunning(server.child)) throw new Error(`baseline exited while starting:\n${server.output()}`);
    try {
      const response = await fetch(`${origin}${route}`, {
        method,
        ...(method === "POST" ? { headers: { "content-type": "application/json" }, body: "{}" } : {}),
      });
      const body = Buffer.from(await response.arrayBuffer());
      if (response.ok && body.equals(answer.body)) return { server, origin };
    } catch {
      // Not listening yet.
    }
    await sleep(100);
  }
  await stopScript(server);
  throw new Error(`the ${kind} baseline did not answer within 20 s:\n${server.output()}`);
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

/** Raw Argon2id with Portcullis's parameters: the sign-in's baseline, measured around its load (`bracketed`). */
async function rawArgon2Row(): Promise<Row> {
  const { memoryCostKib, timeCost, parallelism } = defaultSettings.password;
  log(
    `raw Argon2id verify (m=${memoryCostKib}, t=${timeCost}, p=${parallelism}), ${RAW_ARGON2.concurrency} at once`,
  );
  return plain("raw Argon2id verify()", await measureRawArgon2());
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
  /** The venue's server behind the gateway. */
  upstreamUrl?: string;
}

/**
 * The server as `npm start` runs it: the compiled files under dist/, with the node flags its script
 * gives (package.json is the one place they are written).
 */
function serverCommand(): { script: string; nodeArgs: string[] } {
  const start = (
    JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
      scripts: Record<string, string>;
    }
  ).scripts.start!;
  const match = /\bnode((?:\s+--\S+)*)\s+(dist\/cli\/main\.js)\s+serve\b/.exec(start);
  if (!match) throw new Error(`package.json's start script does not run dist/cli/main.js serve: ${start}`);
  return { script: match[2]!, nodeArgs: match[1]!.trim().split(/\s+/).filter(Boolean) };
}

const SERVER_COMMAND = serverCommand();

/** Compiles the server as `npm start` does (the portal's files are not needed to measure the API). */
function buildServer(): void {
  execFileSync(
    process.execPath,
    [path.join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"],
    {
      cwd: ROOT,
      stdio: "inherit",
    },
  );
}

async function startPortcullis(
  dataDir: string,
  backing: Backing = {},
  nodeArgs: string[] = [],
): Promise<Portcullis> {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const command = SERVER_COMMAND;
  const server = startScript(
    command.script,
    ["serve"],
    {
      PORTCULLIS_ENV: "development",
      PORTCULLIS_DATABASE_URL: backing.databaseUrl ?? `sqlite:${path.join(dataDir, "portcullis.db")}`,
      ...(backing.redisUrl ? { PORTCULLIS_REDIS_URL: backing.redisUrl } : {}),
      ...(backing.upstreamUrl ? { PORTCULLIS_UPSTREAM_URL: backing.upstreamUrl } : {}),
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
    },
    [...command.nodeArgs, ...nodeArgs],
  );
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
  /** The app's device id, known to the account since it verified the email, so sign-ins need no approval. */
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
  // The device that opens the link becomes the account's known device (not the one that signed up).
  const verified = await postJson(
    `${portcullis.baseUrl}/v1/accounts/verify-email`,
    { token },
    { "x-device-id": deviceId },
  );
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

/** GET /v1/session with `token` against Portcullis instances, or a baseline answering the same bytes. */
async function measureSessionCheck(servers: { baseUrl: string }[], token: string): Promise<LoadResult> {
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
async function loadSpread<Server>(
  servers: Server[],
  connections: number,
  warmupSeconds: number,
  optionsFor: (
    server: Server,
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
 * confirmed with the password (no second factor enrolled), and the request is repeated with its id.
 */
async function createApiKey(
  portcullis: Portcullis,
  token: string,
  name: string,
  nonceWindow: number,
): Promise<{ key: BenchKey; token: string }> {
  const auth = { authorization: `Bearer ${token}` };
  const body = { name, permissions: ["funds_query"], nonceWindow };
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
  const secret = created.json.secret as string;
  return {
    key: {
      key: created.json.key as string,
      secret,
      hmacKey: Buffer.from(secret, "base64"),
      nonce: BigInt(Date.now()) * 1000n,
    },
    // Confirming rotates the session's token: the old one no longer works.
    token: renewed,
  };
}

/** A key as the load generator holds it: its secret decoded once, and the next nonce it signs with. */
interface BenchKey {
  key: string;
  secret: string;
  hmacKey: Buffer;
  nonce: bigint;
}

async function accountId(portcullis: Portcullis, token: string): Promise<string> {
  const response = await fetch(`${portcullis.baseUrl}/v1/session`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const json = (await response.json()) as { account?: { id?: string } };
  if (!response.ok || !json.account?.id) throw new Error(`no session: ${JSON.stringify(json)}`);
  return json.account.id;
}

/** The operator raises the account to the pro tier (the highest call counter, as bots are given). */
async function makePro(portcullis: Portcullis, token: string): Promise<void> {
  const id = await accountId(portcullis, token);
  const response = await fetch(`${portcullis.baseUrl}/v1/admin/accounts/${id}/verification`, {
    method: "PUT",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ tier: "pro" }),
  });
  if (!response.ok) throw new Error(`tier not set: ${response.status} ${await response.text()}`);
}

/**
 * The allowed path's keys: GATEWAY.accounts pro accounts of GATEWAY.keysPerAccount keys each, with
 * Kraken's default nonce window (0: every nonce above the last), as a bot uses them. Accounts in parallel,
 * each account's keys one after another (every creation is a password step-up).
 */
async function createGatewayKeys(portcullis: Portcullis): Promise<BenchKey[]> {
  const perAccount = await Promise.all(
    Array.from({ length: GATEWAY.accounts }, async (_, a) => {
      const account = await createVerifiedAccount(portcullis, 100 + a);
      let token = await sessionToken(portcullis, account, "pro");
      await makePro(portcullis, token);
      const keys: BenchKey[] = [];
      for (let k = 0; k < GATEWAY.keysPerAccount; k += 1) {
        const created = await createApiKey(portcullis, token, `bot ${k}`, 0);
        keys.push(created.key);
        token = created.token;
      }
      return keys;
    }),
  );
  // Interleaved by account, so consecutive requests of the round-robin belong to different accounts.
  return Array.from({ length: GATEWAY.keysPerAccount }, (_, k) => perAccount.map((keys) => keys[k]!)).flat();
}

/** Kraken's signed Balance call with a key's next nonce (a wrong secret signs it when `forge` is set). */
function signedBalance(key: BenchKey, forge = false): { headers: Record<string, string>; body: string } {
  key.nonce += 1n;
  const nonce = key.nonce.toString();
  const body = `nonce=${nonce}`;
  const sign = krakenSignatureBytes(forge ? FORGED_SECRET : key.hmacKey, BALANCE, nonce, body);
  return {
    headers: {
      "API-Key": key.key,
      "API-Sign": sign.toString("base64"),
      "content-type": "application/x-www-form-urlencoded",
    },
    body,
  };
}

const BALANCE = "/0/private/Balance";
const FORGED_SECRET = randomBytes(64);

/** The check endpoint's request for a signed call from `ip`, as a venue's proxy sends it. */
function checkBody(signed: { headers: Record<string, string>; body: string }, ip: string): string {
  return JSON.stringify({ path: BALANCE, headers: signed.headers, body: signed.body, ip });
}

/** Where the client of the gateway loads sits, unless a load names other addresses. */
const CLIENT_IP = "203.0.113.9";

/** What one load sends: its route, and each request's headers and body, built as it is sent. */
interface LoadRequest {
  method: "GET" | "POST";
  path: string;
  build(): { headers: Record<string, string>; body?: string };
}

/** The gateway check endpoint, round-robin over `keys`, from `ip()`; signed wrongly when `forge` is set. */
function checkRequests(keys: BenchKey[], ip: () => string, forge = false): LoadRequest {
  let next = 0;
  return {
    method: "POST",
    path: "/v1/gateway/check",
    build: () => {
      const key = keys[next % keys.length]!;
      next += 1;
      return {
        headers: { "content-type": "application/json", authorization: `Bearer ${SERVICE_TOKEN}` },
        body: checkBody(signedBalance(key, forge), ip()),
      };
    },
  };
}

/** Kraken's private Balance call sent to the gateway itself, round-robin over `keys`. */
function proxiedRequests(keys: BenchKey[]): LoadRequest {
  let next = 0;
  return {
    method: "POST",
    path: BALANCE,
    build: () => {
      const key = keys[next % keys.length]!;
      next += 1;
      return signedBalance(key);
    },
  };
}

/** What an answer was: "allow", or the Kraken error it carried (check endpoint and gateway alike). */
function outcomeOf(status: number, body: string): string {
  if (body.startsWith('{"allow":true')) return "allow";
  const error = /"error":\[?"([^"]+)"/.exec(body)?.[1];
  if (error) return error;
  // The venue's own answer, passed through (its error list is empty).
  return status === 200 && !body.startsWith('{"allow"') ? "allow" : `HTTP ${status}`;
}

/** How long a load runs: a number of seconds, or a number of requests (spread over the instances). */
type Span = { seconds: number } | { amount: number };

interface OutcomeLoad extends LoadResult {
  /** The share of answers that were the outcome measured. */
  share: number;
  /** Answers per outcome in the measured part. */
  outcomes: Record<string, number>;
  /** When the measured part ran, in microseconds of the monotonic clock (process.hrtime). */
  window: { fromUs: number; toUs: number };
}

const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

/**
 * Loads one or more instances (a round-robin balancer's share of the connections and requests each) with
 * `request`, a warm-up first; counts every answer by its outcome, and reports the answers per second
 * that were `expected` (added up over the instances), their share of all answers, and the p99 latency.
 */
async function loadOutcomes(
  origins: string[],
  connections: number,
  request: LoadRequest,
  expected: string,
  warmup: Span,
  measured: Span,
): Promise<OutcomeLoad> {
  const share = Math.max(1, Math.floor(connections / origins.length));
  const counts = origins.map(() => new Map<string, number>());
  // autocannon ends a load of a fixed amount on its next whole-second tick: the last answer marks the end.
  let lastAnswerUs = 0;
  const options = (
    i: number,
    span: Span,
  ): autocannon.Options & { connections: number; duration: number } => ({
    url: origins[i]!,
    connections: share,
    duration: "seconds" in span ? span.seconds : 3600,
    ...("amount" in span ? { amount: Math.max(share, Math.round(span.amount / origins.length)) } : {}),
    requests: [
      {
        method: request.method,
        path: request.path,
        setupRequest: (req) => {
          const { headers, body } = request.build();
          return { ...req, headers: { ...req.headers, ...headers }, ...(body === undefined ? {} : { body }) };
        },
        onResponse: (status, body) => {
          const outcome = outcomeOf(status, body);
          counts[i]!.set(outcome, (counts[i]!.get(outcome) ?? 0) + 1);
          lastAnswerUs = monotonicUs();
        },
      },
    ],
  });
  await Promise.all(origins.map((_, i) => autocannon(options(i, warmup))));
  for (const count of counts) count.clear();
  const before = cpuSample();
  const fromUs = monotonicUs();
  const results = await Promise.all(origins.map((_, i) => autocannon(options(i, measured))));
  const toUs = monotonicUs();
  const otherCpu = otherCpuShare(before, cpuSample());
  const outcomes: Record<string, number> = {};
  let total = 0;
  for (const count of counts) {
    for (const [outcome, n] of count) {
      outcomes[outcome] = (outcomes[outcome] ?? 0) + n;
      total += n;
    }
  }
  // From the start of the measured load to its last answer, as this process timed it: autocannon's own
  // duration is whole seconds, too coarse for a fixed number of requests that takes one or two.
  const endUs = lastAnswerUs > fromUs ? lastAnswerUs : toUs;
  const reqPerSec = (outcomes[expected] ?? 0) / ((endUs - fromUs) / 1e6);
  const errors = results.reduce((sum, r) => sum + r.errors + r.timeouts, 0);
  const listed = Object.entries(outcomes)
    .sort((a, b) => b[1] - a[1])
    .map(([outcome, n]) => `${n} ${outcome === "allow" ? "allowed" : outcome}`)
    .join(", ");
  return {
    reqPerSec,
    p99Ms: Math.max(...results.map((r) => r.latency.p99)),
    otherCpu,
    share: total > 0 ? (outcomes[expected] ?? 0) / total : 0,
    outcomes,
    // The profile's window ends with the last answer too: autocannon's whole seconds would add idle time.
    window: { fromUs, toUs: endUs },
    notes: `${listed}${errors > 0 ? `; ${errors} connection errors or timeouts` : ""}`,
  };
}

/** The allowed path over `keys`: 2 calls a key to warm up, then 17 a key measured (see GATEWAY). */
function loadAllowed(
  origins: string[],
  request: LoadRequest,
  keys: BenchKey[],
  connections: number = GATEWAY.connections,
): Promise<OutcomeLoad> {
  return loadOutcomes(
    origins,
    connections,
    request,
    "allow",
    { amount: keys.length * GATEWAY.warmupPerKey },
    { amount: keys.length * GATEWAY.measuredPerKey },
  );
}

/** A refusal path's load: its requests, the refusal expected, and its warm-up. */
interface RefusalLoad {
  request: LoadRequest;
  expected: string;
  warmup: Span;
}

/** Signatures that do not verify, from a new address each, so no lockout builds up. */
function badSignatureLoad(spare: BenchKey): RefusalLoad {
  return {
    request: checkRequests([spare], rotatingAddresses(), true),
    expected: "EAPI:Invalid signature",
    warmup: { seconds: REFUSALS.warmupSeconds },
  };
}

/**
 * Keys like the allowed path's, in nonce order round-robin: the warm-up sends each more calls than the
 * burst holds, and from then on nearly every call is refused (each key earns one a second back).
 */
function rateLimitLoad(exhausted: BenchKey[]): RefusalLoad {
  return {
    request: checkRequests(exhausted, () => CLIENT_IP),
    expected: "EAPI:Rate limit exceeded",
    warmup: { amount: exhausted.length * 25 },
  };
}

/** A refusal path over the refusals' connections, for their measured seconds. */
function loadRefusal(origins: string[], load: RefusalLoad): Promise<OutcomeLoad> {
  return loadOutcomes(origins, REFUSALS.connections, load.request, load.expected, load.warmup, {
    seconds: REFUSALS.seconds,
  });
}

/** A new IPv4 source address per call (from a /10 of its own), so no address reaches the lockout. */
function rotatingAddresses(): () => string {
  let n = 0;
  return () => {
    n += 1;
    return `100.${64 + ((n >> 16) & 63)}.${(n >> 8) & 255}.${n & 255}`;
  };
}

/** One allowed decision, answered by the check endpoint: the bytes the baselines answer. */
async function allowedAnswer(portcullis: Portcullis, key: BenchKey): Promise<Answer> {
  const response = await fetch(`${portcullis.baseUrl}/v1/gateway/check`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${SERVICE_TOKEN}` },
    body: checkBody(signedBalance(key), CLIENT_IP),
  });
  const body = Buffer.from(await response.arrayBuffer());
  if (!response.ok || !body.toString("utf8").startsWith('{"allow":true'))
    throw new Error(`the check did not allow: ${response.status} ${body.toString("utf8")}`);
  return { body, contentType: response.headers.get("content-type") ?? "application/json" };
}

/** GET /v1/session's answer for `token`: the bytes the session baseline answers. */
async function sessionAnswer(portcullis: Portcullis, token: string): Promise<Answer> {
  const response = await fetch(`${portcullis.baseUrl}/v1/session`, {
    headers: { authorization: `Bearer ${token}` },
  });
  if (!response.ok) throw new Error(`GET /v1/session answered ${response.status}`);
  return {
    body: Buffer.from(await response.arrayBuffer()),
    contentType: response.headers.get("content-type") ?? "application/json",
  };
}

/** Ten bad signatures from `ip`: the address is locked out (checked: the next answer says so). */
async function lockOut(portcullis: Portcullis, key: BenchKey, ip: string): Promise<void> {
  let last = "";
  for (let i = 0; i < 11; i += 1) {
    const response = await fetch(`${portcullis.baseUrl}/v1/gateway/check`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${SERVICE_TOKEN}` },
      body: checkBody(signedBalance(key, true), ip),
    });
    last = outcomeOf(response.status, await response.text());
  }
  if (last !== "EGeneral:Temporary lockout") throw new Error(`${ip} is not locked out: ${last}`);
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

// ---------------------------------------------------------------------------------------------------
// Report.

/** A ratio shown for information, with no target. */
function untargeted(row: Row): Row {
  return { ...row, target: null, meetsTarget: null };
}

/** A measurement compared with nothing (a baseline). */
function plain(name: string, result: LoadResult): Row {
  return { name, ...result, ratio: null, comparedTo: null, target: null, meetsTarget: null };
}

function ratioRow(name: string, measured: LoadResult, base: Row, target: number): Row {
  const ratio = base.reqPerSec > 0 ? measured.reqPerSec / base.reqPerSec : 0;
  return { name, ...measured, ratio, comparedTo: base.name, target, meetsTarget: ratio >= target };
}

/**
 * A target's baseline measured right before and right after the load it is compared with, as one row:
 * the mean rate and the worse p99. On the 2-core machine a baseline measured once moved by a fifth from
 * run to run (bare Node 7,200–8,900 req/s) while the loads it divides stayed within 5%; two measurements
 * around the load move less, and a drift during the load shows in the notes.
 */
async function bracketed<T>(
  measureBaseline: () => Promise<Row>,
  measureLoad: () => Promise<T>,
): Promise<{ baseline: Row; load: T }> {
  const before = await measureBaseline();
  const load = await measureLoad();
  const after = await measureBaseline();
  const worse = (a: number | null, b: number | null) => (a === null || b === null ? null : Math.max(a, b));
  const baseline: Row = {
    ...before,
    reqPerSec: (before.reqPerSec + after.reqPerSec) / 2,
    p99Ms: Math.max(before.p99Ms, after.p99Ms),
    otherCpu: worse(before.otherCpu, after.otherCpu),
    notes: `${before.notes}; the mean of ${before.reqPerSec.toFixed(1)}/s before and ${after.reqPerSec.toFixed(1)}/s after`,
  };
  return { baseline, load };
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

/** The profiled allowed load and where its time went. */
interface Profiled {
  load: OutcomeLoad;
  summary: ProfileSummary;
  /** False when the load's window could not be placed in the profile and the whole run is summed. */
  windowed: boolean;
}

/** Text for a Markdown table cell: pipes escaped, and code-looking names kept literal. */
function mdCell(text: string): string {
  return `\`${text.replaceAll("|", "\\|").replaceAll("`", "'")}\``;
}

function printProfile(profile: Profiled, path = "allowed path"): void {
  const { summary } = profile;
  console.log(
    `where the time goes (${path}, ${summary.busyMs.toFixed(0)} ms busy of ${summary.windowMs.toFixed(0)} ms sampled${profile.windowed ? "" : ", whole run"}):`,
  );
  for (const f of summary.functions) console.log(`  ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.name}`);
  console.log("by file or package:");
  for (const f of summary.files) console.log(`  ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.name}`);
  console.log("by the nearest repository function on the stack (with what it calls):");
  for (const f of summary.repository) console.log(`  ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.name}`);
  console.log("");
}

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
  profile: Profiled,
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
    "Gateway rows count the answers per second that were the outcome named (an allow, or that refusal);",
    "'share' is their part of all answers. The allowed path sends each of",
    `${GATEWAY.accounts * GATEWAY.keysPerAccount} pro-tier keys (${GATEWAY.accounts} accounts × ${GATEWAY.keysPerAccount}) ${GATEWAY.warmupPerKey} Balance calls to warm up, then ${GATEWAY.measuredPerKey} measured, round-robin`,
    "in nonce order, inside Kraken's burst of 20; the baselines answer the same bytes Portcullis",
    `answers, to the same requests, over the same number of connections: ${GATEWAY.connections}, and for the allowed path also`,
    `${ALLOWED_CONNECTIONS[1]} (many bots at once). The allowed path aims at ${GATEWAY_AIM_VS_NODE} × bare Node.`,
    "",
    "| measurement | req/s | share | p99 ms | ratio | to | target | other CPU |",
    "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ...rows.map(
      (row) =>
        `| ${row.name} | ${fmt(row.reqPerSec)} | ${row.share === undefined ? "–" : `${(row.share * 100).toFixed(1)}%`} | ${row.p99Ms === 0 ? "< 1" : row.p99Ms.toFixed(0)} | ${row.ratio === null ? "–" : ratio(row.ratio)} | ${row.comparedTo ?? "–"} | ${row.target === null ? "–" : `≥ ${row.target} ${row.meetsTarget ? "(met)" : "(not met)"}`} | ${row.otherCpu === null ? "?" : `${Math.round(row.otherCpu * 100)}%`} |`,
    ),
    "",
  ];
  const { summary } = profile;
  const pct = (share: number) => `${(share * 100).toFixed(1)}%`;
  lines.push(
    "## Where the time goes: the gateway's allowed path",
    "",
    `The allowed load once more (${fmt(profile.load.reqPerSec)} allowed/s, ${pct(profile.load.share)} allowed, under the profiler) on the`,
    `same SQLite data, the server run with \`--cpu-prof --cpu-prof-interval=${PROFILE_INTERVAL_US}\`. Self time of the`,
    `main thread's samples ${profile.windowed ? "taken during the measured load" : "of the whole run (the load's window could not be placed)"}: ${fmt(summary.busyMs)} ms busy`,
    `of ${fmt(summary.windowMs)} ms (${pct(summary.windowMs > 0 ? summary.busyMs / summary.windowMs : 0)}), ${summary.samples.toLocaleString("en-US")} samples. '(native …)' is time in V8 builtins and C++`,
    "bindings that V8 shows as frames of their own (the sockets' `writev`); '(program)' is V8 itself,",
    "'(garbage collector)' the collector. better-sqlite3's statements run synchronously inside",
    "kysely's `executeQuery`, and V8 charges their native time to it: that row is SQLite executing.",
    "",
    "| function (self time) | ms | share of busy |",
    "| --- | ---: | ---: |",
    ...summary.functions.map((f) => `| ${mdCell(f.name)} | ${fmt(f.ms)} | ${pct(f.share)} |`),
    "",
    "| file or package (self time) | ms | share of busy |",
    "| --- | ---: | ---: |",
    ...summary.files.map((f) => `| ${mdCell(f.name)} | ${fmt(f.ms)} | ${pct(f.share)} |`),
    "",
    "Each sample charged instead to the nearest function of the repository's own code on its stack",
    "(with the packages, node internals and native code it called below it):",
    "",
    "| repository function (with what it calls) | ms | share of busy |",
    "| --- | ---: | ---: |",
    ...summary.repository.map((f) => `| ${mdCell(f.name)} | ${fmt(f.ms)} | ${pct(f.share)} |`),
    "",
  );
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
    "(which also signs every gateway request, for the baselines too) shares the machine, so a column",
    "'other CPU' above 5% marks a figure as unreliable. The gateway loads are short (a few thousand",
    "requests, so that no key passes Kraken's burst): compare several runs before trusting a ratio.",
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
 * `addInstance` starts one more instance of the same deployment; servers `measure` starts itself go
 * into `servers`, so they are stopped too.
 */
async function deployment<T>(
  kind: string,
  instances: number,
  extra: Backing,
  measure: (
    servers: Portcullis[],
    accounts: BenchAccount[],
    addInstance: () => Promise<Portcullis>,
    backing: Backing,
  ) => Promise<T>,
): Promise<T> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-bench-"));
  tempDirs.add(dataDir);
  const postgres = kind === "SQLite" ? null : await createPostgresSchema();
  const servers: Portcullis[] = [];
  try {
    log(`Portcullis: starting ${kind}`);
    const backing: Backing = {
      ...extra,
      ...(postgres ? { databaseUrl: postgres.url, redisUrl: REDIS_URL } : {}),
    };
    // One after another: the first migrates the schema.
    for (let i = 0; i < instances; i += 1) servers.push(await startPortcullis(dataDir, backing));
    const first = servers[0]!;
    const accounts = await Promise.all(
      Array.from({ length: SIGN_IN.connections }, (_, i) => createVerifiedAccount(first, i + 1)),
    );
    const addInstance = async () => {
      const added = await startPortcullis(dataDir, backing);
      servers.push(added);
      return added;
    };
    return await measure(servers, accounts, addInstance, backing);
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

/** Waits until `keys` last used at `usedAt` have drained their call counters. */
async function restKeys(usedAt: number): Promise<void> {
  const wait = usedAt + KEY_REST_MS - Date.now();
  if (wait > 0) {
    log(`waiting ${Math.ceil(wait / 1000)} s for the keys' call counters to drain`);
    await sleep(wait);
  }
}

/** The server on `dataDir` started again under V8's CPU profiler, writing into `profileDir` on exit. */
async function startProfiled(
  dataDir: string,
  backing: Backing,
  servers: Portcullis[],
  profileDir: string,
): Promise<Portcullis> {
  const profiled = await startPortcullis(dataDir, backing, [
    "--cpu-prof",
    `--cpu-prof-dir=${profileDir}`,
    `--cpu-prof-interval=${PROFILE_INTERVAL_US}`,
  ]);
  servers.push(profiled);
  return profiled;
}

/**
 * Stops a profiled server with SIGTERM (it closes and exits, and node writes the profile on exit) and
 * returns the profile's path; kept as BENCH_PROFILE_OUT for a closer look (inclusive times, call trees)
 * when asked for.
 */
async function stopProfiled(profiled: Portcullis, profileDir: string): Promise<string> {
  await stopScript(profiled.server, 30_000);
  if (profiled.server.child.exitCode !== 0)
    throw new Error(`the profiled server did not exit cleanly:\n${profiled.server.output()}`);
  const file = fs.readdirSync(profileDir).find((name) => name.endsWith(".cpuprofile"));
  if (!file) throw new Error(`no CPU profile written in ${profileDir}`);
  const profilePath = path.join(profileDir, file);
  if (process.env.BENCH_PROFILE_OUT) fs.copyFileSync(profilePath, process.env.BENCH_PROFILE_OUT);
  return profilePath;
}

/**
 * The allowed load once more, on the same data restarted with --cpu-prof, and the samples taken during
 * the measured part summed.
 */
async function profileAllowedPath(
  dataDir: string,
  backing: Backing,
  keys: BenchKey[],
  servers: Portcullis[],
  profileDir: string,
): Promise<Profiled> {
  const profiled = await startProfiled(dataDir, backing, servers, profileDir);
  // At the concurrency that keeps the server's main thread busy: where its time goes is the question.
  const measured = await loadAllowed(
    [profiled.baseUrl],
    checkRequests(keys, () => CLIENT_IP),
    keys,
    // BENCH_PROFILE_CONNECTIONS=10 profiles the allowed path over 10 connections instead, where each
    // group commit holds fewer decisions.
    Number(process.env.BENCH_PROFILE_CONNECTIONS ?? ALLOWED_CONNECTIONS[1]),
  );
  const profilePath = await stopProfiled(profiled, profileDir);
  // V8 stamps samples with the machine's monotonic clock, the one process.hrtime reads here: the window
  // is the measured load as this process saw it. Should a platform differ, the whole profile is taken.
  const whole = summariseProfile(profilePath, ROOT);
  const { fromUs, toUs } = measured.window;
  const windowed = summariseProfile(profilePath, ROOT, { fromUs, toUs });
  const inWindow = windowed.samples > 0;
  return { load: measured, summary: inWindow ? windowed : whole, windowed: inWindow };
}

/**
 * A bare server answering `answer` at `route`, loaded by `measure`: a baseline's row, under a name that
 * says over how many connections.
 */
async function baselineRow(
  scratch: string,
  name: string,
  kind: "node" | "fastify",
  measure: (baseline: Baseline) => Promise<LoadResult>,
  answer: Answer,
  method: "GET" | "POST",
  route: string,
): Promise<Row> {
  log(`${name}: ${BASELINE.seconds} s`);
  const baseline = await startBaseline(kind, method, route, answer, scratch);
  try {
    return plain(name, { ...(await measure(baseline)), notes: `${answer.body.length} bytes answered` });
  } finally {
    await stopScript(baseline.server);
  }
}

/** The session check's baseline: bare Fastify answering `/v1/session`'s body to the same GET. */
function sessionBaseline(body: Answer, token: string, scratch: string): Promise<Row> {
  return baselineRow(
    scratch,
    `bare Fastify: GET, /v1/session's answer, ${SESSION_CHECK.connections} connections`,
    "fastify",
    (b) => measureSessionCheck([{ baseUrl: b.origin }], token),
    body,
    "GET",
    "/v1/session",
  );
}

/**
 * BENCH_QUICK=session: a short look at GET /v1/session (against bare Fastify answering the same body) and
 * POST /v1/sign-in (against raw Argon2id), and with BENCH_QUICK_PROFILE=1 where each one's time goes.
 */
async function quickSessionAndSignIn(
  servers: Portcullis[],
  accounts: BenchAccount[],
  token: string,
  scratch: string,
): Promise<void> {
  const server = servers[0]!;
  const body = await sessionAnswer(server, token);
  // The server's CPU (all its threads) a request, warm-up included: steadier from run to run than the
  // rates, which move with how the load generator and the server meet on the two cores.
  const cpuPerRequest = async (measure: () => Promise<LoadResult>, seconds: number) => {
    const ticksBefore = serverTicks(server);
    const load = await measure();
    return { load, us: serverUsPerRequest(server, ticksBefore, load.reqPerSec * seconds) };
  };
  const { baseline: bare, load: session } = await bracketed(
    () => sessionBaseline(body, token, scratch),
    () =>
      cpuPerRequest(
        () => measureSessionCheck([server], token),
        SESSION_CHECK.warmupSeconds + SESSION_CHECK.seconds,
      ),
  );
  const { baseline: rawArgon2, load: signIn } = await bracketed(rawArgon2Row, () =>
    cpuPerRequest(() => measureSignIn([server], accounts), SIGN_IN.warmupSeconds + SIGN_IN.seconds),
  );
  log(
    `quick: bare Fastify ${bare.reqPerSec.toFixed(0)}/s, GET /v1/session ${session.load.reqPerSec.toFixed(0)}/s ` +
      `(p99 ${session.load.p99Ms} ms, server CPU ${session.us.toFixed(0)} µs a request) = ` +
      `${(session.load.reqPerSec / bare.reqPerSec).toFixed(3)} x; raw Argon2id ${rawArgon2.reqPerSec.toFixed(1)}/s, ` +
      `sign-in ${signIn.load.reqPerSec.toFixed(1)}/s (server CPU ${(signIn.us / 1000).toFixed(2)} ms a sign-in) = ` +
      `${(signIn.load.reqPerSec / rawArgon2.reqPerSec).toFixed(3)} x`,
  );
  if (process.env.BENCH_QUICK_PROFILE !== "1") return;
  await stopScript(server.server);
  const profileDir = path.join(scratch, "profile");
  const profiled = await startProfiled(server.dataDir, {}, servers, profileDir);
  const windowed = async (measure: () => Promise<unknown>) => {
    const fromUs = monotonicUs();
    await measure();
    return { fromUs: fromUs + SESSION_CHECK.warmupSeconds * 1e6, toUs: monotonicUs() };
  };
  const sessionWindow = await windowed(() => measureSessionCheck([profiled], token));
  const signInWindow = await windowed(() => measureSignIn([profiled], accounts));
  const profilePath = await stopProfiled(profiled, profileDir);
  for (const [name, window] of [
    ["GET /v1/session", sessionWindow],
    ["POST /v1/sign-in", signInWindow],
  ] as const) {
    printProfile(
      {
        load: undefined as unknown as OutcomeLoad,
        summary: summariseProfile(profilePath, ROOT, window),
        windowed: true,
      },
      name,
    );
  }
}

/**
 * BENCH_QUICK=refusals: the rate-limit and bad-signature refusals against the allowed path just measured,
 * and with BENCH_QUICK_PROFILE=1 where the rate-limit refusal's time goes (the bad signature's with
 * BENCH_QUICK_PROFILE_REFUSAL=bad-signature).
 */
async function quickRefusals(
  server: Portcullis,
  servers: Portcullis[],
  allowedRow: Row,
  spare: BenchKey,
  exhausted: BenchKey[],
  scratch: string,
): Promise<void> {
  const badSignature = await loadRefusal([server.baseUrl], badSignatureLoad(spare));
  const limited = await loadRefusal([server.baseUrl], rateLimitLoad(exhausted));
  const ratio = (load: OutcomeLoad) => (load.reqPerSec / allowedRow.reqPerSec).toFixed(3);
  log(
    `quick: allowed ${allowedRow.reqPerSec.toFixed(0)}/s (${allowedRow.ratio?.toFixed(3)} x bare Node); bad signature ${badSignature.reqPerSec.toFixed(0)}/s ` +
      `(${(badSignature.share * 100).toFixed(1)}%) = ${ratio(badSignature)} x; rate limit ` +
      `${limited.reqPerSec.toFixed(0)}/s (${(limited.share * 100).toFixed(1)}%: ${limited.notes}) = ${ratio(limited)} x`,
  );
  if (process.env.BENCH_QUICK_PROFILE !== "1") return;
  await stopScript(server.server);
  const profileDir = path.join(scratch, "profile");
  // BENCH_QUICK_PROFILE_REFUSAL=bad-signature profiles that refusal instead of the rate limit.
  const badSignatureProfiled = process.env.BENCH_QUICK_PROFILE_REFUSAL === "bad-signature";
  const profiled = await startProfiled(server.dataDir, {}, servers, profileDir);
  const measured = await loadRefusal(
    [profiled.baseUrl],
    badSignatureProfiled ? badSignatureLoad(spare) : rateLimitLoad(exhausted),
  );
  const profilePath = await stopProfiled(profiled, profileDir);
  printProfile(
    { load: measured, summary: summariseProfile(profilePath, ROOT, measured.window), windowed: true },
    badSignatureProfiled ? "the bad-signature refusal" : "the rate-limit refusal",
  );
}

/**
 * BENCH_QUICK=postgres: a short look at the allowed path on PostgreSQL + Redis, one instance, many
 * connections: its rate and the server's CPU a decision (no baseline, no report written), and with
 * BENCH_QUICK_PROFILE=1 where the server's time goes.
 */
async function quickPostgres(): Promise<void> {
  await deployment("PostgreSQL + Redis", 1, {}, async ([server], _accounts, _addInstance, backing) => {
    const keys = await createGatewayKeys(server!);
    await settle([server!]);
    const ticksBefore = serverTicks(server!);
    const load = await loadAllowed(
      [server!.baseUrl],
      checkRequests(keys, () => CLIENT_IP),
      keys,
      ALLOWED_CONNECTIONS[1],
    );
    const requests = allowedLoadRequests(keys);
    log(
      `quick: PostgreSQL + Redis, allowed ${load.reqPerSec.toFixed(0)}/s (${(load.share * 100).toFixed(1)}% allowed, ` +
        `p99 ${load.p99Ms} ms, server CPU ${serverUsPerRequest(server!, ticksBefore, requests).toFixed(0)} µs a request)`,
    );
    if (process.env.BENCH_QUICK_PROFILE !== "1") return;
    await stopScript(server!.server);
    await restKeys(Date.now());
    printProfile(
      await profileAllowedPath(server!.dataDir, backing, keys, [], path.join(server!.dataDir, "profile")),
    );
  });
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const { memoryCostKib, timeCost, parallelism } = defaultSettings.password;
  log(`${os.cpus().length} CPUs, Node ${process.version}; each number is compared within this run only`);
  log("compiling the server as npm start runs it (dist/)");
  buildServer();
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-bench-scratch-"));
  tempDirs.add(scratch);

  const rows: Row[] = [];

  // The venue behind the gateway: a bare Node server answering a Balance result.
  const venueAnswer: Answer = {
    body: Buffer.from(JSON.stringify({ error: [], result: { ZUSD: "171288.6158", XXBT: "0.0011240000" } })),
    contentType: "application/json",
  };
  const venue = await startBaseline("node", "POST", BALANCE, venueAnswer, scratch);

  // 1. The default deployment: one process on SQLite.
  const sqliteBacking: Backing = { upstreamUrl: venue.origin };
  if (process.env.BENCH_QUICK === "postgres") {
    await quickPostgres();
    process.exit(0);
  }
  const sqlite = await deployment("SQLite", 1, sqliteBacking, async (servers, accounts) => {
    const server = servers[0]!;
    const origin = [server.baseUrl];
    const token = await sessionToken(server, accounts[0]!);
    if (process.env.BENCH_QUICK === "session") {
      await quickSessionAndSignIn(servers, accounts, token, scratch);
      process.exit(0);
    }
    log(`API keys: ${GATEWAY.accounts} pro accounts x ${GATEWAY.keysPerAccount}, each with a step-up`);
    const keys = await createGatewayKeys(server);
    const proToken = await sessionToken(server, accounts[0]!, "pro");
    await makePro(server, proToken);
    // A key of its own for the baselines' answer and the paths refused before the signature is accepted.
    const { key: spare } = await createApiKey(server, proToken, "spare", 0);
    const checkAnswer = await allowedAnswer(server, spare);
    const sessionBody = await sessionAnswer(server, token);
    await settle(servers);

    // Baselines, answering the bytes Portcullis answered, loaded by the same client with the same requests.
    const checkLoad = (origins: string[], request: LoadRequest, connections: number) =>
      loadOutcomes(
        origins,
        connections,
        request,
        "allow",
        { seconds: BASELINE.warmupSeconds },
        { seconds: BASELINE.seconds },
      );
    // A bare server answering the check's allowed answer, loaded with the allowed path's requests.
    const checkBaseline = (
      name: string,
      kind: "node" | "fastify",
      connections: number = BASELINE.connections,
    ) =>
      baselineRow(
        scratch,
        `${name}, ${connections} connections`,
        kind,
        (b) =>
          checkLoad(
            [b.origin],
            checkRequests(keys, () => CLIENT_IP),
            connections,
          ),
        checkAnswer,
        "POST",
        "/v1/gateway/check",
      );
    const bareFastify = await checkBaseline("bare Fastify: POST, the check's allowed answer", "fastify");

    /** The allowed path over `connections`, between two measurements of bare Node at that concurrency. */
    const allowedAt = async (connections: number) => {
      const { baseline, load: measured } = await bracketed(
        () => checkBaseline("bare Node http: POST, the check's allowed answer", "node", connections),
        async () => {
          log(
            `gateway check, allowed: ${keys.length} keys x ${GATEWAY.measuredPerKey} calls, ${connections} connections`,
          );
          const serverTicksBefore = serverTicks(server);
          const clientBefore = process.cpuUsage();
          const load = await loadAllowed(
            origin,
            checkRequests(keys, () => CLIENT_IP),
            keys,
            connections,
          );
          // CPU per request (warm-up included) of the server, all its threads (the garbage collector's
          // too), and of this process, which signs the requests: on two cores the load is bounded by their sum.
          const requests = allowedLoadRequests(keys);
          const clientUsage = process.cpuUsage(clientBefore);
          const cpu = {
            serverUs: serverUsPerRequest(server, serverTicksBefore, requests),
            clientUs: (clientUsage.user + clientUsage.system) / requests,
          };
          return { load, cpu };
        },
      );
      const row = ratioRow(
        `gateway check: allowed, ${connections} connections`,
        measured.load,
        baseline,
        TARGET_GATEWAY_VS_NODE,
      );
      return { bareNode: baseline, allowed: measured.load, cpu: measured.cpu, row };
    };
    const [few, many] = ALLOWED_CONNECTIONS;
    const atFew = await allowedAt(few);
    await restKeys(Date.now());
    const atMany = await allowedAt(many);
    const { bareNode, allowed, row: allowedRow } = atFew;
    let keysUsedAt = Date.now();
    if (process.env.BENCH_QUICK === "1") {
      // A short look while working on the allowed path: its ratios and nothing else (no report written).
      log(`quick: bare Fastify ${bareFastify.reqPerSec.toFixed(0)}/s (${few} connections)`);
      for (const at of [atFew, atMany]) {
        log(
          `quick: ${at.row.name}: bare Node ${at.bareNode.reqPerSec.toFixed(0)}/s, allowed ${at.allowed.reqPerSec.toFixed(0)}/s ` +
            `(${((at.row.share ?? 0) * 100).toFixed(1)}% allowed, p99 ${at.allowed.p99Ms} ms, CPU a request: ` +
            `server ${at.cpu.serverUs.toFixed(0)} µs, client ${at.cpu.clientUs.toFixed(0)} µs, other CPU ` +
            `${at.allowed.otherCpu}) = ${at.row.ratio?.toFixed(3)} x bare Node`,
        );
      }
      if (process.env.BENCH_QUICK_PROFILE === "1") {
        await stopScript(server.server);
        await restKeys(keysUsedAt);
        const profileDir = path.join(scratch, "profile");
        printProfile(await profileAllowedPath(server.dataDir, sqliteBacking, keys, servers, profileDir));
      }
      process.exit(0);
    }
    if (process.env.BENCH_QUICK === "proxied") {
      // A short look at the proxied path against the bare Node server measured just before.
      await restKeys(keysUsedAt);
      const load = await loadAllowed(origin, proxiedRequests(keys), keys);
      log(
        `quick: bare Node ${bareNode.reqPerSec.toFixed(0)}/s, allowed ${allowed.reqPerSec.toFixed(0)}/s, proxied ` +
          `${load.reqPerSec.toFixed(0)}/s (p99 ${load.p99Ms} ms) = ${(load.reqPerSec / bareNode.reqPerSec).toFixed(3)} x bare Node`,
      );
      process.exit(0);
    }
    if (process.env.BENCH_QUICK === "refusals") {
      await quickRefusals(server, servers, allowedRow, spare, keys.slice(0, RATE_LIMITED_KEYS), scratch);
      process.exit(0);
    }
    const refusal = async (name: string, load: RefusalLoad): Promise<Row> => {
      log(`${name}: ${REFUSALS.connections} connections, ${REFUSALS.seconds} s`);
      return ratioRow(name, await loadRefusal(origin, load), allowedRow, TARGET_REFUSAL_VS_ALLOWED);
    };
    const badSignature = await refusal("gateway check: bad signature", badSignatureLoad(spare));
    const lockedIp = "198.51.100.7";
    await lockOut(server, spare, lockedIp);
    const lockedOut = await refusal("gateway check: lockout", {
      request: checkRequests([spare], () => lockedIp, true),
      expected: "EGeneral:Temporary lockout",
      warmup: { seconds: REFUSALS.warmupSeconds },
    });

    await restKeys(keysUsedAt);
    log(
      `gateway proxied to the local venue, allowed: ${keys.length} keys x ${GATEWAY.measuredPerKey} calls, ${few} connections`,
    );
    const proxied = untargeted(
      ratioRow(
        "gateway: POST /0/private/Balance, proxied",
        await loadAllowed(origin, proxiedRequests(keys), keys),
        bareNode,
        0,
      ),
    );

    const rateLimited = await refusal(
      `gateway check: rate limit (${RATE_LIMITED_KEYS} exhausted keys)`,
      rateLimitLoad(keys.slice(0, RATE_LIMITED_KEYS)),
    );
    keysUsedAt = Date.now();

    // These two baselines are measured around their loads, not with the other baselines minutes earlier:
    // a ratio means something only between loads that met the machine in the same state.
    const { baseline: fastifySession, load: sessionLoad } = await bracketed(
      () => sessionBaseline(sessionBody, token, scratch),
      () => {
        log(`GET /v1/session: ${SESSION_CHECK.connections} connections, ${SESSION_CHECK.seconds} s`);
        return measureSessionCheck([server], token);
      },
    );
    const session = ratioRow(
      "GET /v1/session (bearer)",
      sessionLoad,
      fastifySession,
      TARGET_SESSION_VS_FASTIFY,
    );
    const { baseline: rawArgon2, load: signInLoad } = await bracketed(rawArgon2Row, () => {
      log(`POST /v1/sign-in: ${SIGN_IN.connections} connections, ${SIGN_IN.seconds} s`);
      return measureSignIn([server], accounts);
    });
    const signIn = ratioRow(
      "POST /v1/sign-in (password)",
      signInLoad,
      rawArgon2,
      TARGET_SIGN_IN_VS_RAW_ARGON2,
    );
    log(`bare HMAC: Kraken's API-Sign in a loop, ${BARE_HMAC.seconds} s`);
    const bareHmac = plain("bare Kraken signature (HMAC)", measureBareHmac(spare.secret));

    log("CPU profile: the allowed path again on a server run with --cpu-prof");
    await stopScript(server.server);
    await restKeys(keysUsedAt);
    const profileDir = path.join(scratch, "profile");
    const profile = await profileAllowedPath(server.dataDir, sqliteBacking, keys, servers, profileDir);

    // Memory with 100,000 stored sessions: store them, start again, load, read the RSS.
    log(`memory: ${STORED_SESSIONS.toLocaleString("en-US")} stored sessions, then GET /v1/session`);
    insertPortcullisSessions(path.join(server.dataDir, "portcullis.db"), STORED_SESSIONS);
    const restarted = await startPortcullis(server.dataDir);
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
      bareNode,
      bareNodeMany: atMany.bareNode,
      fastifySession,
      profile,
      rawArgon2,
      baselines: [bareNode, atMany.bareNode, bareFastify, fastifySession, rawArgon2, bareHmac],
      gateway: [
        allowedRow,
        atMany.row,
        untargeted(ratioRow(allowedRow.name, allowed, bareFastify, 0)),
        untargeted(ratioRow(allowedRow.name, allowed, bareHmac, 0)),
        badSignature,
        rateLimited,
        lockedOut,
        proxied,
      ],
      session,
      signIn,
    };
  });
  await stopScript(venue.server);
  rows.push(...sqlite.baselines, ...sqlite.gateway);
  rows.push(sqlite.session, sqlite.signIn);

  // 2. Scaled out: PostgreSQL + Redis, with one instance and then a second sharing the load.
  const scaled = await deployment("PostgreSQL + Redis", 1, {}, async (servers, accounts, addInstance) => {
    const token = await sessionToken(servers[0]!, accounts[0]!);
    log(`PostgreSQL + Redis: API keys, ${GATEWAY.accounts} pro accounts x ${GATEWAY.keysPerAccount}`);
    const keys = await createGatewayKeys(servers[0]!);
    await settle(servers);
    const measured: Row[] = [];
    let keysUsedAt = 0;
    for (const instances of [1, 2]) {
      const label = `PostgreSQL + Redis, ${instances} instance${instances > 1 ? "s" : ""}`;
      if (servers.length < instances) await addInstance();
      const origins = servers.map((server) => server.baseUrl);
      await restKeys(keysUsedAt);
      log(
        `${label}: gateway check, allowed, ${ALLOWED_CONNECTIONS[1]} connections${instances > 1 ? ", the instances' answers added up" : ""}`,
      );
      // Many bots at once: over one connection each, decisions on PostgreSQL wait for its round trips.
      const allowed = await loadAllowed(
        origins,
        checkRequests(keys, () => CLIENT_IP),
        keys,
        ALLOWED_CONNECTIONS[1],
      );
      keysUsedAt = Date.now();
      const single = measured.find((row) => row.name.startsWith("gateway check: allowed"));
      const scaling = single ? `; ${(allowed.reqPerSec / single.reqPerSec).toFixed(2)} × 1 instance` : "";
      measured.push(
        ratioRow(
          `gateway check: allowed, ${label}`,
          { ...allowed, notes: `${allowed.notes}${scaling}` },
          sqlite.bareNodeMany,
          0,
        ),
      );
      log(`${label}: GET /v1/session`);
      measured.push(
        ratioRow(
          `GET /v1/session, ${label}`,
          await measureSessionCheck(servers, token),
          sqlite.fastifySession,
          0,
        ),
      );
      log(`${label}: POST /v1/sign-in`);
      measured.push(
        ratioRow(`POST /v1/sign-in, ${label}`, await measureSignIn(servers, accounts), sqlite.rawArgon2, 0),
      );
    }
    return measured;
  });
  rows.push(...scaled.map(untargeted));

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
    sqlite.fastifySession,
    0,
  );
  const betterAuthSignIn = ratioRow(
    "Better Auth: POST /api/auth/sign-in/email",
    betterAuth.signIn,
    sqlite.rawArgon2,
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
      gateway: GATEWAY,
      refusals: REFUSALS,
      profileIntervalUs: PROFILE_INTERVAL_US,
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
    profile: { windowed: sqlite.profile.windowed, load: sqlite.profile.load, ...sqlite.profile.summary },
  };
  fs.writeFileSync(RESULTS_FILE, `${JSON.stringify(report, null, 2)}\n`);
  printProfile(sqlite.profile);
  writeReport(rows, comparisons, memory, sqlite.profile, startedAt);
  log(`written to ${path.relative(ROOT, RESULTS_FILE)} and ${path.relative(ROOT, REPORT_FILE)}`);
}

main()
  .catch((error: unknown) => {
    console.error(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exitCode = 1;
  })
  .finally(cleanUpNow);
