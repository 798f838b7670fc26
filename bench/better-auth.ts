/**
 * Better Auth side by side with Portcullis, for `npm run bench`: the same session check and sign-in
 * loads as bench/run.ts runs against Portcullis, against Better Auth (bench/better-auth-server.ts) on the
 * same machine in the same run, and the server's memory with 100,000 stored sessions.
 *
 * The caller passes its own process helpers (so the child is tracked and killed with the others) and a
 * temporary folder for the database; nothing here imports bench/run.ts.
 *
 *   session check  GET /api/auth/get-session with the session cookie
 *   sign-in        POST /api/auth/sign-in/email with the correct password, over 4 accounts
 *   memory         RSS after a short session-check load, with 100,000 more sessions in the table
 *
 * Accounts are made through Better Auth's HTTP API (sign-up needs no email verification by default).
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import type autocannon from "autocannon";
import { insertBetterAuthSessions, MEMORY_LOAD, readRssMb, STORED_SESSIONS } from "./session-memory.js";

/** A started child process, as bench/run.ts's startScript returns it. */
export interface StartedScript {
  child: ChildProcess;
  /** Everything the child printed so far, for error messages. */
  output(): string;
}

/** One measured load, as bench/run.ts's load returns it. */
export interface LoadResult {
  reqPerSec: number;
  p99Ms: number;
  otherCpu: number | null;
  notes: string;
}

export interface LoadSettings {
  connections: number;
  warmupSeconds: number;
  seconds: number;
}

/** What the comparison needs from the caller: bench/run.ts's helpers, with their signatures. */
export interface BetterAuthBenchDeps {
  startScript(script: string, args: string[], env: Record<string, string>): StartedScript;
  stopScript(started: StartedScript): Promise<void>;
  waitUntilUp(url: string, started: StartedScript, timeoutMs: number): Promise<void>;
  freePort(): Promise<number>;
  load(
    options: autocannon.Options & { connections: number; duration: number },
    warmupSeconds: number,
  ): Promise<LoadResult>;
  /** A folder for the SQLite file; the caller removes it. */
  tempDir: string;
  /** The caller's own settings, so both sides are loaded alike; the defaults are bench/run.ts's. */
  sessionCheck?: LoadSettings;
  signIn?: LoadSettings;
  /** The short load before RSS is read; the default is session-memory.ts's MEMORY_LOAD. */
  memoryLoad?: LoadSettings;
  /** Progress lines, e.g. the caller's log(). */
  log?: (message: string) => void;
}

export interface BetterAuthResults {
  sessionCheck: LoadResult;
  signIn: LoadResult;
  /** VmRSS of the server after a short session-check load with 100,000 more sessions stored. */
  rssAt100kSessionsMb: number;
  notes: string;
}

/** bench/run.ts's SESSION_CHECK and SIGN_IN. */
export const BETTER_AUTH_SESSION_CHECK: LoadSettings = { connections: 10, warmupSeconds: 2, seconds: 8 };
export const BETTER_AUTH_SIGN_IN: LoadSettings = { connections: 4, warmupSeconds: 2, seconds: 10 };

const PASSWORD = "violet tractor mango 42";
const SCRIPT = "bench/better-auth-server.ts";

interface Server {
  started: StartedScript;
  baseUrl: string;
}

async function startServer(deps: BetterAuthBenchDeps, databaseFile: string, secret: string): Promise<Server> {
  const port = await deps.freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const started = deps.startScript(SCRIPT, [], {
    BENCH_PORT: String(port),
    BENCH_DB: databaseFile,
    BENCH_SECRET: secret,
  });
  try {
    await deps.waitUntilUp(`${baseUrl}/api/auth/ok`, started, 30_000);
  } catch (error) {
    await deps.stopScript(started);
    throw error;
  }
  return { started, baseUrl };
}

/**
 * Better Auth checks the Origin of a sign-up or sign-in that carries Fetch Metadata, which Node's fetch
 * sends (Sec-Fetch-Mode: cors), as a browser does: the server's own origin, as its web app would send.
 */
async function postJson(server: Server, route: string, body: unknown): Promise<Response> {
  return fetch(`${server.baseUrl}${route}`, {
    method: "POST",
    headers: { "content-type": "application/json", origin: server.baseUrl },
    body: JSON.stringify(body),
  });
}

/** The session cookie (name=value) a sign-up or sign-in answer sets. */
function sessionCookie(response: Response): string {
  const cookie = response.headers
    .getSetCookie()
    .map((line) => line.split(";")[0]!)
    .find((pair) => /^(__Secure-)?better-auth\.session_token=/.test(pair));
  if (!cookie) throw new Error(`no session cookie in the answer (${response.status})`);
  return cookie;
}

/**
 * GET /api/auth/get-session answers 200 with `null` for a missing, forged or expired session, so a 2xx
 * count alone cannot tell a session check from a refusal: the body is read once, before and after loads.
 */
async function expectSession(server: Server, cookie: string, email: string): Promise<void> {
  const response = await fetch(`${server.baseUrl}/api/auth/get-session`, { headers: { cookie } });
  const text = await response.text();
  const body = JSON.parse(text) as { session?: { userId?: string }; user?: { email?: string } } | null;
  if (response.status !== 200 || !body?.session?.userId || body.user?.email !== email) {
    throw new Error(`get-session did not return the session of ${email}: ${response.status} ${text}`);
  }
}

/** Sign-up through the API: an account that can sign in at once (no email verification by default). */
async function signUp(server: Server, email: string): Promise<void> {
  const response = await postJson(server, "/api/auth/sign-up/email", {
    name: email.split("@")[0],
    email,
    password: PASSWORD,
  });
  if (response.status !== 200) throw new Error(`sign-up failed: ${response.status} ${await response.text()}`);
  await response.body?.cancel();
}

async function signIn(server: Server, email: string): Promise<string> {
  const response = await postJson(server, "/api/auth/sign-in/email", { email, password: PASSWORD });
  if (response.status !== 200) throw new Error(`sign-in failed: ${response.status} ${await response.text()}`);
  await response.body?.cancel();
  return sessionCookie(response);
}

function sessionCheckLoad(
  deps: BetterAuthBenchDeps,
  server: Server,
  cookie: string,
  settings: LoadSettings,
): Promise<LoadResult> {
  return deps.load(
    {
      url: `${server.baseUrl}/api/auth/get-session`,
      headers: { cookie },
      connections: settings.connections,
      duration: settings.seconds,
    },
    settings.warmupSeconds,
  );
}

/**
 * The accounts are taken in turn, one request after another, as bench/run.ts does for Portcullis. Better
 * Auth's rate limiter is off in the server, so no client addresses need to vary. Each request carries the
 * app's Origin, as a browser's would, so Better Auth's origin check runs as it does in use.
 */
function signInLoad(
  deps: BetterAuthBenchDeps,
  server: Server,
  emails: string[],
  settings: LoadSettings,
): Promise<LoadResult> {
  let n = 0;
  const bodies = emails.map((email) => JSON.stringify({ email, password: PASSWORD }));
  return deps.load(
    {
      url: server.baseUrl,
      connections: settings.connections,
      duration: settings.seconds,
      requests: [
        {
          method: "POST",
          path: "/api/auth/sign-in/email",
          setupRequest: (request) => {
            n += 1;
            return {
              ...request,
              headers: { ...request.headers, "content-type": "application/json", origin: server.baseUrl },
              body: bodies[n % bodies.length],
            };
          },
        },
      ],
    },
    settings.warmupSeconds,
  );
}

function noteOf(name: string, result: LoadResult): string {
  return result.notes ? `${name}: ${result.notes}` : "";
}

/**
 * Starts Better Auth on SQLite in `deps.tempDir`, makes `signIn.connections` accounts through its API,
 * measures the session check and the sign-in, then stops it, adds 100,000 sessions to its table, starts
 * it again and reads its RSS after a short session-check load. The server is stopped on every path.
 */
export async function measureBetterAuth(deps: BetterAuthBenchDeps): Promise<BetterAuthResults> {
  const sessionSettings = deps.sessionCheck ?? BETTER_AUTH_SESSION_CHECK;
  const signInSettings = deps.signIn ?? BETTER_AUTH_SIGN_IN;
  const memorySettings = deps.memoryLoad ?? MEMORY_LOAD;
  const log = deps.log ?? (() => {});
  const databaseFile = path.join(deps.tempDir, "better-auth.db");
  // Signs the session cookies; the same across the restart, so the cookie stays valid.
  const secret = randomBytes(32).toString("base64url");
  const emails = Array.from(
    { length: signInSettings.connections },
    (_, i) => `bench_${process.pid}_${i + 1}@example.test`,
  );

  let server: Server | null = null;
  try {
    log(`Better Auth: starting on SQLite in ${deps.tempDir}`);
    server = await startServer(deps, databaseFile, secret);
    const up = server;
    await Promise.all(emails.map((email) => signUp(up, email)));
    const cookie = await signIn(up, emails[0]!);
    await expectSession(up, cookie, emails[0]!);

    log(
      `GET /api/auth/get-session: ${sessionSettings.connections} connections, ${sessionSettings.seconds} s`,
    );
    const sessionCheck = await sessionCheckLoad(deps, up, cookie, sessionSettings);
    await expectSession(up, cookie, emails[0]!);
    const rssFewSessionsMb = up.started.child.pid ? readRssMb(up.started.child.pid) : Number.NaN;

    log(
      `POST /api/auth/sign-in/email: ${signInSettings.connections} connections, ${signInSettings.seconds} s`,
    );
    const signInResult = await signInLoad(deps, up, emails, signInSettings);

    await deps.stopScript(up.started);
    server = null;
    log(`Better Auth: adding ${STORED_SESSIONS} sessions to its table, then restarting it`);
    insertBetterAuthSessions(databaseFile, STORED_SESSIONS);
    server = await startServer(deps, databaseFile, secret);
    const restarted = server;
    await expectSession(restarted, cookie, emails[0]!);
    const memoryLoad = await sessionCheckLoad(deps, restarted, cookie, memorySettings);
    const pid = restarted.started.child.pid;
    if (pid === undefined) throw new Error("the Better Auth server has no pid");
    const rssAt100kSessionsMb = readRssMb(pid);

    const notes = [
      noteOf("session check", sessionCheck),
      noteOf("sign-in", signInResult),
      noteOf("memory load", memoryLoad),
      `RSS ${rssFewSessionsMb.toFixed(1)} MB after the session-check load with a few sessions stored, ` +
        `${rssAt100kSessionsMb.toFixed(1)} MB after a restart and ${memorySettings.seconds} s of it with ` +
        `${STORED_SESSIONS} more`,
    ]
      .filter((note) => note !== "")
      .join("; ");
    return { sessionCheck, signIn: signInResult, rssAt100kSessionsMb, notes };
  } catch (error) {
    if (server) console.error(`Better Auth server output (last lines):\n${server.started.output()}`);
    throw error;
  } finally {
    if (server) await deps.stopScript(server.started);
  }
}
