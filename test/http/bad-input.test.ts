import fc from "fast-check";
import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/http/server.js";
import { isErrorCode } from "../../src/support/error-codes.js";
import {
  ADMIN_TOKEN,
  Harness,
  METRICS_TOKEN,
  newUser,
  SERVICE_TOKEN,
  type TestUser,
} from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

/**
 * Bad input on every route gets a clear 4xx with a stable code: never a 500, never a stack trace. A
 * table of hostile requests runs against every route the app registers (checked against the router, so a
 * new route without an entry here fails the suite), anonymously and with the right credentials so that
 * validation and the handlers are reached; then fast-check throws arbitrary JSON at the public flows.
 */

type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
type Auth = "none" | "session" | "admin" | "service" | "metrics";
const holderTokens = { admin: ADMIN_TOKEN, service: SERVICE_TOKEN, metrics: METRICS_TOKEN } as const;
/** "4xx": the request is wrong and must be refused. "clean": any answer below 500 is fine (the route ignores it). */
type Expect = "4xx" | "clean";

interface BodySpec {
  /** Well-formed but still refused (no bot check, unknown token): every mutation must be refused too. */
  base: () => Record<string, unknown>;
  required: string[];
  optional: string[];
}

interface QueryCase {
  query: string;
  expect: Expect;
}

interface RouteSpec {
  method: Method;
  path: string;
  auth: Auth;
  /** What the bare request (valid-looking params, no body, no query) gets with the right credentials. */
  bare: Expect;
  body?: BodySpec;
  /** A valid-looking value for each path parameter; the name says which mutations apply. */
  params?: Record<string, string>;
  queries?: QueryCase[];
  /** The handler ends the caller's session: each case gets a session of its own. */
  endsSession?: boolean;
}

interface Case {
  label: string;
  method: Method | "HEAD";
  url: string;
  headers?: Record<string, string>;
  payload?: string | Buffer;
  expect: Expect;
}

const NUL = "\u0000";
const uuidLike = "7d444840-9dc0-11d1-b245-5ffdce74fad2";
const repeated = (char: string, n: number) => char.repeat(n);

const q = (query: string, expect: Expect = "4xx"): QueryCase => ({ query, expect });

const pagingQueries = (maxLimit: number): QueryCase[] => [
  q("limit=0"),
  q("limit=-1"),
  q(`limit=${maxLimit + 1}`),
  q("limit=100000"),
  q("limit=abc"),
  q("limit=1.5"),
  q("limit="),
  q("limit=NaN"),
  q("limit=Infinity"),
  q("limit=1e9"),
  q("limit=1&limit=2"),
  q("limit=%00"),
  q("limit=%F0%9F%92%A5"),
  q("limit=%FF"),
  q("before=-1"),
  q("before=0"),
  q("before=abc"),
  q("before=1.5"),
  q("before="),
  q("before=NaN"),
  q("before=-Infinity"),
  q("before=1&before=2"),
  q(`before=${repeated("9", 400)}`, "clean"),
  // Integers the schema allows but a 64-bit column does not hold: any answer but a 500 will do.
  q("before=2147483648", "clean"),
  q("before=9223372036854775807", "clean"),
  q("before=99999999999999999999", "clean"),
  q("before=1e300", "clean"),
  q("limit[]=1&before[x]=2", "clean"),
];

const routes: RouteSpec[] = [
  { method: "GET", path: "/v1/bot-check", auth: "none", bare: "clean" },
  {
    method: "POST",
    path: "/v1/accounts",
    auth: "none",
    bare: "4xx",
    body: {
      base: () => {
        const { email, username, password, country } = newUser();
        return { email, username, password, country };
      },
      required: ["email", "username", "password", "country"],
      optional: ["region", "botCheck"],
    },
  },
  {
    method: "POST",
    path: "/v1/accounts/verify-email",
    auth: "none",
    bare: "4xx",
    body: { base: () => ({ token: "not-a-token-we-ever-issued" }), required: ["token"], optional: [] },
  },
  { method: "GET", path: "/v1/activity", auth: "session", bare: "clean", queries: pagingQueries(100) },
  {
    method: "GET",
    path: "/v1/admin/accounts",
    auth: "admin",
    bare: "4xx",
    queries: [
      q("query="),
      q(`query=${repeated("a", 255)}`),
      q(`query=${repeated("a", 100_000)}`),
      q("query=a&query=b"),
      q("query[]=a"),
      q("query[a]=b"),
      q("Query=trader"),
      q("query=%25", "clean"),
      q("query=_", "clean"),
      q("query=%5C", "clean"),
      q("query=%F0%9F%92%A5", "clean"),
      q("query=%ED%A0%80", "clean"),
      q("query=%27%20OR%201%3D1%20--", "clean"),
      q("query=%00", "clean"),
      q("query=a%00b", "clean"),
      q("query=%FF%FE", "clean"),
      q("query=%E0%A4%A", "clean"),
    ],
  },
  {
    method: "DELETE",
    path: "/v1/admin/accounts/:id/restriction",
    auth: "admin",
    bare: "4xx",
    params: { id: uuidLike },
  },
  {
    method: "GET",
    path: "/v1/admin/audit",
    auth: "admin",
    bare: "clean",
    queries: [
      ...pagingQueries(500),
      q(`account=${repeated("a", 65)}`),
      q("account=a&account=b"),
      q("account=%F0%9F%92%A5", "clean"),
      q("account=%00", "clean"),
      q(`account=${uuidLike}%00`, "clean"),
    ],
  },
  { method: "POST", path: "/v1/admin/audit/verify", auth: "admin", bare: "clean" },
  {
    method: "POST",
    path: "/v1/sign-in",
    auth: "none",
    bare: "4xx",
    body: {
      base: () => ({ identifier: newUser().username, password: "violet tractor mango 42" }),
      required: ["identifier", "password"],
      optional: ["botCheck", "client", "deviceId"],
    },
  },
  { method: "GET", path: "/v1/sign-in/:flowId", auth: "none", bare: "4xx", params: { flowId: uuidLike } },
  { method: "GET", path: "/v1/session", auth: "session", bare: "clean" },
  { method: "DELETE", path: "/v1/session", auth: "session", bare: "clean", endsSession: true },
  { method: "GET", path: "/v1/sessions", auth: "session", bare: "clean" },
  { method: "DELETE", path: "/v1/sessions", auth: "session", bare: "clean" },
  { method: "DELETE", path: "/v1/sessions/:id", auth: "session", bare: "4xx", params: { id: uuidLike } },
  ...["totp", "recovery-code"].map(
    (step): RouteSpec => ({
      method: "POST",
      path: `/v1/sign-in/:flowId/${step}`,
      auth: "none",
      bare: "4xx",
      params: { flowId: uuidLike },
      body: { base: () => ({ code: "123456" }), required: ["code"], optional: [] },
    }),
  ),
  {
    method: "POST",
    path: "/v1/sign-in/:flowId/webauthn/options",
    auth: "none",
    bare: "4xx",
    params: { flowId: uuidLike },
  },
  {
    method: "POST",
    path: "/v1/sign-in/:flowId/webauthn",
    auth: "none",
    bare: "4xx",
    params: { flowId: uuidLike },
    body: {
      base: () => ({ response: { id: "abc", type: "public-key" } }),
      required: ["response"],
      optional: [],
    },
  },
  { method: "POST", path: "/v1/sign-in/passkey/options", auth: "none", bare: "clean" },
  {
    method: "POST",
    path: "/v1/sign-in/passkey",
    auth: "none",
    bare: "4xx",
    body: {
      base: () => ({ response: { id: "abc", type: "public-key" } }),
      required: ["response"],
      optional: ["client", "deviceId"],
    },
  },
  {
    method: "POST",
    path: "/v1/devices/approve",
    auth: "none",
    bare: "4xx",
    body: { base: () => ({ token: "not-a-token-we-ever-issued" }), required: ["token"], optional: [] },
  },
  { method: "GET", path: "/v1/devices", auth: "session", bare: "clean" },
  // A step-up first: a bare request is answered 403 step_up_required and ends nothing.
  { method: "DELETE", path: "/v1/devices", auth: "session", bare: "4xx" },
  { method: "DELETE", path: "/v1/devices/:id", auth: "session", bare: "4xx", params: { id: uuidLike } },
  { method: "GET", path: "/v1/security/factors", auth: "session", bare: "clean" },
  { method: "POST", path: "/v1/security/totp", auth: "session", bare: "4xx" },
  {
    method: "POST",
    path: "/v1/security/totp/:enrollmentId/confirm",
    auth: "session",
    bare: "4xx",
    params: { enrollmentId: uuidLike },
    body: { base: () => ({ code: "123456" }), required: ["code"], optional: ["name", "endOtherSessions"] },
  },
  {
    method: "POST",
    path: "/v1/security/webauthn/options",
    auth: "session",
    bare: "4xx",
    queries: [q("kind=platform"), q("kind="), q("kind=%00"), q("kind=passkey&kind=security_key")],
  },
  {
    method: "POST",
    path: "/v1/security/webauthn",
    auth: "session",
    bare: "4xx",
    body: {
      base: () => ({ response: { id: "abc", type: "public-key" }, name: "My key" }),
      required: ["response", "name"],
      optional: ["endOtherSessions"],
    },
  },
  {
    method: "DELETE",
    path: "/v1/security/factors/:factorId",
    auth: "session",
    bare: "4xx",
    params: { factorId: uuidLike },
  },
  { method: "POST", path: "/v1/security/recovery-codes", auth: "session", bare: "4xx" },
  { method: "GET", path: "/v1/actions/:id", auth: "session", bare: "4xx", params: { id: uuidLike } },
  {
    method: "POST",
    path: "/v1/actions/:id/webauthn/options",
    auth: "session",
    bare: "4xx",
    params: { id: uuidLike },
  },
  {
    method: "POST",
    path: "/v1/actions/:id/confirm",
    auth: "session",
    bare: "4xx",
    params: { id: uuidLike },
    body: {
      base: () => ({ totp: "123456" }),
      required: [],
      optional: ["password", "totp", "recoveryCode", "webauthn"],
    },
  },
  { method: "GET", path: "/v1/capabilities", auth: "session", bare: "clean" },
  {
    method: "POST",
    path: "/v1/actions",
    auth: "session",
    bare: "4xx",
    // Well-formed, and refused all the same: the address is not in the book.
    body: {
      base: () => ({ type: "withdraw", params: { asset: "BTC", amount: "0.5", addressId: uuidLike } }),
      required: ["type", "params"],
      optional: [],
    },
  },
  { method: "POST", path: "/v1/actions/:id/redeem", auth: "service", bare: "4xx", params: { id: uuidLike } },
  { method: "GET", path: "/.well-known/jwks.json", auth: "none", bare: "clean" },
  {
    method: "PUT",
    path: "/v1/security/requirements",
    auth: "session",
    bare: "4xx",
    body: { base: () => ({ funding: true, trading: false }), required: ["funding", "trading"], optional: [] },
  },
  {
    method: "PUT",
    path: "/v1/security/trading-passcode",
    auth: "session",
    bare: "4xx",
    body: { base: () => ({ passcode: "482916" }), required: ["passcode"], optional: [] },
  },
  { method: "GET", path: "/v1/withdrawal-addresses", auth: "session", bare: "clean" },
  { method: "GET", path: "/v1/security", auth: "session", bare: "clean" },
  { method: "GET", path: "/v1/api-keys", auth: "session", bare: "clean" },
  // Without an upstream configured, the gateway answers 503 in Kraken's shape; signatures decide the rest.
  { method: "GET", path: "/0/public/*", auth: "none", bare: "clean" },
  { method: "POST", path: "/0/public/*", auth: "none", bare: "clean" },
  { method: "POST", path: "/0/private/*", auth: "none", bare: "4xx" },
  // KuCoin's and Kraken Futures' paths: an unlisted path is refused in the exchange's shape.
  { method: "GET", path: "/api/v1/*", auth: "none", bare: "4xx" },
  { method: "POST", path: "/api/v1/*", auth: "none", bare: "4xx" },
  { method: "DELETE", path: "/api/v2/*", auth: "none", bare: "4xx" },
  { method: "GET", path: "/derivatives/api/v3/*", auth: "none", bare: "4xx" },
  { method: "POST", path: "/derivatives/api/v3/*", auth: "none", bare: "4xx" },
  {
    method: "POST",
    path: "/v1/api-keys",
    auth: "session",
    bare: "4xx",
    body: {
      base: () => ({ name: "bot", permissions: ["funds_withdraw"] }),
      required: ["name", "permissions"],
      optional: [
        "ipAllowlist",
        "validUntil",
        "queryFrom",
        "queryTo",
        "nonceWindow",
        "otp",
        "approvalThreshold",
      ],
    },
  },
  {
    method: "PATCH",
    path: "/v1/api-keys/:id",
    auth: "session",
    bare: "4xx",
    params: { id: uuidLike },
    body: {
      base: () => ({ name: "renamed", permissions: ["funds_query"] }),
      required: [],
      optional: ["name", "permissions", "ipAllowlist", "validUntil", "otp", "approvalThreshold"],
    },
  },
  { method: "DELETE", path: "/v1/api-keys/:id", auth: "session", bare: "4xx", params: { id: uuidLike } },
  { method: "DELETE", path: "/v1/api-keys", auth: "session", bare: "clean" },
  {
    method: "POST",
    path: "/v1/api-keys/disable",
    auth: "none",
    bare: "4xx",
    body: { base: () => ({ token: "not-a-token-we-ever-issued" }), required: ["token"], optional: [] },
  },
  {
    method: "POST",
    path: "/v1/security/email",
    auth: "session",
    bare: "4xx",
    body: { base: () => ({ newEmail: "someone.else@example.test" }), required: ["newEmail"], optional: [] },
  },
  {
    method: "POST",
    path: "/v1/security/email/confirm",
    auth: "none",
    bare: "4xx",
    body: { base: () => ({ token: "not-a-token-we-ever-issued" }), required: ["token"], optional: [] },
  },
  {
    method: "POST",
    path: "/v1/devices/approve/details",
    auth: "none",
    bare: "4xx",
    body: { base: () => ({ token: "not-a-token-we-ever-issued" }), required: ["token"], optional: [] },
  },
  {
    method: "POST",
    path: "/v1/devices/refuse",
    auth: "none",
    bare: "4xx",
    body: { base: () => ({ token: "not-a-token-we-ever-issued" }), required: ["token"], optional: [] },
  },
  {
    method: "POST",
    path: "/v1/account-lock",
    auth: "none",
    bare: "4xx",
    body: { base: () => ({ token: "not-a-token-we-ever-issued" }), required: ["token"], optional: [] },
  },
  {
    method: "POST",
    path: "/v1/security/account-lock/lift",
    auth: "session",
    bare: "4xx",
    body: { base: () => ({ masterKey: "not frozen, so refused" }), required: ["masterKey"], optional: [] },
  },
  {
    method: "DELETE",
    path: "/v1/admin/accounts/:id/freeze",
    auth: "admin",
    bare: "4xx",
    params: { id: uuidLike },
  },
  { method: "GET", path: "/v1/approvals", auth: "session", bare: "clean" },
  {
    method: "PUT",
    path: "/v1/admin/accounts/:id/disabled",
    auth: "admin",
    bare: "4xx",
    params: { id: uuidLike },
    body: { base: () => ({ disabled: true }), required: ["disabled"], optional: [] },
  },
  {
    method: "GET",
    path: "/v1/admin/accounts/:id/api-keys",
    auth: "admin",
    bare: "clean",
    params: { id: uuidLike },
  },
  { method: "DELETE", path: "/v1/admin/api-keys/:id", auth: "admin", bare: "4xx", params: { id: uuidLike } },
  {
    method: "POST",
    path: "/v1/approvals/:id/confirm",
    auth: "session",
    bare: "4xx",
    params: { id: uuidLike },
    body: { base: () => ({ totp: "123456" }), required: [], optional: ["totp", "recoveryCode", "webauthn"] },
  },
  {
    method: "POST",
    path: "/v1/gateway/check",
    auth: "service",
    bare: "4xx",
    body: {
      // Well-formed but for a public path, which the check endpoint does not take.
      base: () => ({ path: "/0/public/Time", headers: {}, body: "nonce=1", ip: "203.0.113.7" }),
      required: ["path", "headers", "body", "ip"],
      optional: ["method"],
    },
  },
  {
    method: "POST",
    path: "/v1/gateway/ws-token",
    auth: "service",
    bare: "4xx",
    // Well-formed but unknown: 404.
    body: { base: () => ({ token: "no-such-token" }), required: ["token"], optional: [] },
  },
  {
    method: "POST",
    path: "/v1/security/password",
    auth: "session",
    bare: "4xx",
    body: {
      base: () => ({ currentPassword: "not the password", newPassword: "a brand new passphrase" }),
      required: ["currentPassword", "newPassword"],
      optional: [],
    },
  },
  {
    method: "PUT",
    path: "/v1/security/master-key",
    auth: "session",
    bare: "4xx",
    body: { base: () => ({ masterKey: "short" }), required: ["masterKey"], optional: [] },
  },
  {
    method: "PUT",
    path: "/v1/security/anti-phishing-code",
    auth: "session",
    bare: "4xx",
    body: { base: () => ({ code: "!" }), required: ["code"], optional: [] },
  },
  {
    method: "POST",
    path: "/v1/security/global-lock",
    auth: "session",
    bare: "4xx",
    body: { base: () => ({ unlockDelayDays: 45 }), required: ["unlockDelayDays"], optional: [] },
  },
  { method: "POST", path: "/v1/security/global-lock/unlock", auth: "session", bare: "4xx" },
  { method: "DELETE", path: "/v1/security/global-lock/unlock", auth: "session", bare: "4xx" },
  {
    method: "DELETE",
    path: "/v1/admin/accounts/:id/global-lock",
    auth: "admin",
    bare: "4xx",
    params: { id: uuidLike },
  },
  {
    method: "POST",
    path: "/v1/recovery/password",
    auth: "none",
    bare: "4xx",
    body: {
      base: () => ({ email: "someone@example.test", username: "someone" }),
      required: ["email", "username"],
      optional: ["botCheck"],
    },
  },
  {
    method: "POST",
    path: "/v1/recovery/password/complete",
    auth: "none",
    bare: "4xx",
    body: {
      base: () => ({ token: "not-a-token-we-ever-issued", newPassword: "a brand new passphrase" }),
      required: ["token", "newPassword"],
      optional: ["masterKey"],
    },
  },
  {
    method: "POST",
    path: "/v1/recovery/username",
    auth: "none",
    bare: "4xx",
    body: { base: () => ({ email: "someone@example.test" }), required: ["email"], optional: ["botCheck"] },
  },
  {
    method: "POST",
    path: "/v1/sign-in/:flowId/master-key",
    auth: "none",
    bare: "4xx",
    params: { flowId: uuidLike },
    body: { base: () => ({ masterKey: "a long master key phrase" }), required: ["masterKey"], optional: [] },
  },
  {
    method: "POST",
    path: "/v1/sign-in/:flowId/bypass-code",
    auth: "none",
    bare: "4xx",
    params: { flowId: uuidLike },
    body: { base: () => ({ code: "ABCDEFGHJK" }), required: ["code"], optional: [] },
  },
  {
    method: "POST",
    path: "/v1/withdrawal-addresses",
    auth: "session",
    bare: "4xx",
    body: {
      base: () => ({
        asset: "BTC",
        address: "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh",
        label: "Cold wallet",
      }),
      required: ["asset", "address", "label"],
      optional: [],
    },
  },
  {
    method: "POST",
    path: "/v1/withdrawal-addresses/confirm",
    auth: "none",
    bare: "4xx",
    body: { base: () => ({ token: "not-a-token-we-ever-issued" }), required: ["token"], optional: [] },
  },
  {
    method: "DELETE",
    path: "/v1/withdrawal-addresses/:id",
    auth: "session",
    bare: "4xx",
    params: { id: uuidLike },
  },
  { method: "GET", path: "/v1/status", auth: "none", bare: "clean" },
  { method: "GET", path: "/0/public/Time", auth: "none", bare: "clean" },
  { method: "GET", path: "/0/public/SystemStatus", auth: "none", bare: "clean" },
  {
    method: "PUT",
    path: "/v1/admin/accounts/:id/verification",
    auth: "admin",
    bare: "4xx",
    params: { id: uuidLike },
    body: { base: () => ({ tier: "intermediate" }), required: ["tier"], optional: [] },
  },
  {
    method: "PUT",
    path: "/v1/admin/accounts/:id/jurisdiction",
    auth: "admin",
    bare: "4xx",
    params: { id: uuidLike },
    body: { base: () => ({ country: "US", region: "US-CA" }), required: ["country"], optional: ["region"] },
  },
  {
    method: "PUT",
    path: "/v1/admin/subsystems/:id",
    auth: "admin",
    bare: "4xx",
    params: { id: "nonexistent" },
    body: { base: () => ({ status: "degraded" }), required: ["status"], optional: ["message"] },
  },
  {
    method: "POST",
    path: "/v1/admin/maintenance",
    auth: "admin",
    bare: "4xx",
    body: {
      base: () => ({
        subsystem: "nonexistent",
        state: "maintenance",
        startsAt: "2020-01-01T00:00:00Z",
        endsAt: "2020-01-01T01:00:00Z",
        message: "Upgrade",
      }),
      required: ["subsystem", "state", "startsAt", "endsAt", "message"],
      optional: [],
    },
  },
  {
    method: "DELETE",
    path: "/v1/admin/maintenance/:id",
    auth: "admin",
    bare: "4xx",
    params: { id: uuidLike },
  },
  { method: "GET", path: "/healthz", auth: "none", bare: "clean" },
  { method: "GET", path: "/readyz", auth: "none", bare: "clean" },
  { method: "GET", path: "/metrics", auth: "metrics", bare: "clean" },
  { method: "GET", path: "/openapi.json", auth: "none", bare: "clean" },
  // The portal: its assets and, for page addresses that accept HTML, its one page (routes/portal.ts).
  { method: "GET", path: "/*", auth: "none", bare: "clean" },
];

/** Registered only in development without SMTP (the local mailbox). */
const devRoutes: RouteSpec[] = [
  { method: "GET", path: "/dev/mailbox.json", auth: "none", bare: "clean" },
  { method: "GET", path: "/dev/mailbox", auth: "none", bare: "clean" },
  { method: "GET", path: "/dev/mailbox.css", auth: "none", bare: "clean" },
];

/** Every "METHOD /path" the router knows, read from Fastify's own route tree. */
function registeredRoutes(app: App): string[] {
  const tree = app.printRoutes({ commonPrefix: false });
  const prefixes: string[] = [];
  const found: string[] = [];
  for (const line of tree.split("\n")) {
    const match = /^((?:[│ ] {3})*)[├└]── (.*?)(?: \(([^)]*)\))?$/.exec(line);
    if (!match) continue;
    const depth = match[1]!.length / 4;
    const path = (depth > 0 ? prefixes[depth - 1]! : "") + match[2]!;
    prefixes.length = depth;
    prefixes[depth] = path;
    if (path.endsWith("*")) continue;
    for (const method of match[3]?.split(", ") ?? []) found.push(`${method} ${path}`);
  }
  return found.sort();
}

function expectedRoutes(specs: RouteSpec[]): string[] {
  // find-my-way prints wildcard routes as a bare "*": those are checked with hasRoute instead.
  return specs
    .filter((r) => !r.path.endsWith("*"))
    .flatMap((r) => (r.method === "GET" ? [`GET ${r.path}`, `HEAD ${r.path}`] : [`${r.method} ${r.path}`]))
    .sort();
}

const fillPath = (path: string, params: Record<string, string>) =>
  path.replace(/:(\w+)/g, (_m, name: string) => params[name] ?? "x");

const badFieldValues: [string, unknown][] = [
  ["a number", 12345],
  ["a float", 1.5],
  ["a boolean", true],
  ["null", null],
  ["an object", { a: 1 }],
  ["an operator object", { $ne: "" }],
  ["an array", ["a"]],
  ["an empty array", []],
  ["an empty string", ""],
  ["whitespace", "   "],
  ["emoji", "💥🦄👩‍👩‍👧‍👦"],
  ["a NUL", `a${NUL}b`],
  ["only NUL", NUL],
  ["a lone surrogate", "\ud800x"],
  ["a bidi override", "\u202egnp.exe"],
  ["zero-width characters", "a\u200b\ufeffb"],
  ["control characters", "\u0001\u0007\u001b[31m"],
  ["SQL", "' OR '1'='1' --"],
  ["10 KB", repeated("a", 10_000)],
  ["100 KB", repeated("b", 100_000)],
];

const badParamValues: [string, string][] = [
  ["not a uuid", "abc"],
  ["a uuid without dashes", uuidLike.replace(/-/g, "")],
  ["an uppercase uuid", uuidLike.toUpperCase()],
  ["the nil uuid", "00000000-0000-0000-0000-000000000000"],
  ["a uuid with a suffix", `${uuidLike}x`],
  ["65 characters", repeated("a", 65)],
  ["201 characters (over the router's limit)", repeated("a", 201)],
  ["5000 characters", repeated("a", 5000)],
  ["an encoded NUL", "%00"],
  ["a NUL inside", "a%00b"],
  ["a uuid and a NUL", `${uuidLike}%00`],
  ["encoded emoji", "%F0%9F%92%A5"],
  ["an encoded lone surrogate", "%ED%A0%80"],
  ["an overlong UTF-8 slash", "%C0%AF"],
  ["broken percent-encoding", "%ZZ"],
  ["a truncated escape", "abc%"],
  ["an encoded traversal", "..%2F..%2Fetc%2Fpasswd"],
  ["an encoded space", "%20"],
  ["SQL", "1%27%20OR%20%271%27%3D%271"],
];

/** Every hostile variation of one route's request. */
function casesFor(route: RouteSpec): Case[] {
  const url = fillPath(route.path, route.params ?? {});
  const json = { "content-type": "application/json" };
  const hasBody = route.method !== "GET";
  const bodyExpect: Expect = route.body ? "4xx" : "clean";
  const cases: Case[] = [
    { label: "no body", method: route.method, url, expect: route.bare },
    {
      label: "unknown query parameters",
      method: route.method,
      url: `${url}?x=%00&y=%F0%9F%92%A5&__proto__=1&constructor%5Bprototype%5D=1&z=%ZZ`,
      expect: route.bare,
    },
    {
      label: "a 100 KB query string",
      method: route.method,
      url: `${url}?pad=${repeated("a", 100_000)}`,
      expect: route.bare,
    },
  ];
  const raw = (label: string, payload: string | Buffer, headers: Record<string, string>, expect: Expect) =>
    cases.push({ label, method: route.method, url, payload, headers, expect: hasBody ? expect : "clean" });

  raw("invalid JSON", '{"a":', json, "4xx");
  raw("JSON with trailing garbage", "{} x", json, "4xx");
  raw("single-quoted JSON", "{'a': 1}", json, "4xx");
  raw("an empty JSON body", "", json, "4xx");
  raw("a 100 KB JSON string", JSON.stringify(repeated("x", 100_000)), json, "4xx");
  raw("100 KB of text", repeated("x", 100_000), { "content-type": "text/plain" }, "4xx");
  raw("a __proto__ key", '{"__proto__": {"isAdmin": true}}', json, "4xx");
  raw("a constructor.prototype key", '{"constructor": {"prototype": {"isAdmin": true}}}', json, "4xx");
  raw(
    "a form-encoded body",
    "identifier=a&password=b",
    { "content-type": "application/x-www-form-urlencoded" },
    "4xx",
  );
  raw(
    "a multipart body",
    "--x\r\n\r\na\r\n--x--",
    { "content-type": "multipart/form-data; boundary=x" },
    "4xx",
  );
  raw("an XML body", "<a>1</a>", { "content-type": "application/xml" }, "4xx");
  raw("a nonsense content type", "{}", { "content-type": "application/x-nonsense" }, "4xx");
  raw("a malformed content type", "{}", { "content-type": "/;;;" }, "4xx");
  raw("null", "null", json, bodyExpect);
  raw("an array", "[]", json, bodyExpect);
  raw("an array of objects", "[{}]", json, bodyExpect);
  raw("a JSON string", '"hello"', json, bodyExpect);
  raw("a JSON number", "42", json, bodyExpect);
  raw("true", "true", json, bodyExpect);
  raw("an empty object", "{}", json, bodyExpect);
  raw("deeply nested arrays", `${repeated("[", 20_000)}${repeated("]", 20_000)}`, json, bodyExpect);
  raw("plain text", "hello", { "content-type": "text/plain" }, bodyExpect);
  raw("JSON sent as text/plain", "{}", { "content-type": "text/plain" }, bodyExpect);
  raw(
    "JSON in latin-1",
    '{"a":"\u00e9"}',
    { "content-type": "application/json; charset=iso-8859-1" },
    bodyExpect,
  );
  raw("a body without a content type", "{}", {}, bodyExpect);
  raw(
    "invalid UTF-8 bytes",
    Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xc0, 0xaf, 0x22, 0x7d]),
    json,
    bodyExpect,
  );
  raw("a UTF-16 body", Buffer.from('{"a":"b"}', "utf16le"), json, "4xx");

  if (route.body) {
    const { base, required, optional } = route.body;
    const send = (label: string, body: unknown) =>
      cases.push({
        label,
        method: route.method,
        url,
        payload: JSON.stringify(body),
        headers: json,
        expect: "4xx",
      });
    send("the well-formed body (refused: no bot check, unknown token)", base());
    send("extra unknown fields", { ...base(), isAdmin: true, role: "admin", tier: "pro", "💥": NUL });
    for (const field of required) {
      const { [field]: _dropped, ...rest } = base();
      send(`no ${field}`, rest);
    }
    for (const field of [...required, ...optional]) {
      for (const [label, value] of badFieldValues)
        send(`${field} is ${label}`, { ...base(), [field]: value });
    }
  }

  for (const name of Object.keys(route.params ?? {})) {
    for (const [label, value] of badParamValues) {
      const mutated = route.path.replace(`:${name}`, value);
      cases.push({
        label: `${name} is ${label}`,
        method: route.method,
        url: fillPath(mutated, route.params!),
        expect: "4xx",
      });
    }
    cases.push({
      label: `${name} is empty`,
      method: route.method,
      url: route.path.replace(`:${name}`, ""),
      expect: "4xx",
    });
  }

  for (const { query, expect } of route.queries ?? []) {
    cases.push({
      label: `query ${query.slice(0, 60)}`,
      method: route.method,
      url: `${url}?${query}`,
      expect,
    });
  }
  return cases;
}

/** Fragments of stack traces and driver errors that must never reach a client. */
const leaks = ["at /", "node_modules", "Error:", "    at ", "SQLITE_", "invalid byte sequence", 'relation "'];

/** What is wrong with one answer, as readable lines (empty when it is fine). */
function problemsWith(c: Case, response: LightMyRequestResponse, authenticated: boolean): string[] {
  const shown = c.url.length > 140 ? `${c.url.slice(0, 140)}…` : c.url;
  const where = `${c.method} ${shown} [${c.label}] → ${response.statusCode} ${response.body.slice(0, 300)}`;
  const problems: string[] = [];
  const status = response.statusCode;
  // docs/http-api.md: with no upstream configured, the gateway answers 503 (in Kraken's shape) — the one 5xx allowed.
  const noUpstream =
    c.url.startsWith("/0/") &&
    status === 503 &&
    (c.method === "HEAD" || response.body.includes('"EService:Unavailable"'));
  if (status >= 500 && !noUpstream) problems.push(`server error: ${where}`);
  else if (c.expect === "4xx" && status < 400) problems.push(`accepted bad input: ${where}`);
  if (authenticated && status === 401) problems.push(`valid credentials refused: ${where}`);
  for (const leak of leaks) {
    if (response.body.includes(leak)) problems.push(`leaks "${leak}": ${where}`);
  }
  if (status >= 400 && c.method !== "HEAD") {
    if (!String(response.headers["content-type"]).startsWith("application/json")) {
      problems.push(`error is not JSON (${response.headers["content-type"]}): ${where}`);
    }
    let body: unknown;
    try {
      body = JSON.parse(response.body);
    } catch {
      body = undefined;
    }
    const error = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    // The Kraken-compatible gateway answers in Kraken's own shape (behaviour §11): {"error":["EAPI:…"],"result":{}}.
    const kraken =
      c.url.startsWith("/0/") &&
      Array.isArray(error) &&
      error.every((e) => typeof e === "string" && /^E[A-Za-z]+:/.test(e));
    // KuCoin's {"code":"400005","msg":…} (code a string of digits) and Kraken Futures'
    // {"result":"error","error":"…","serverTime":…}.
    const shaped = body as { code?: unknown; msg?: unknown; result?: unknown } | undefined;
    const kucoin =
      c.url.startsWith("/api/") &&
      typeof shaped?.code === "string" &&
      /^\d{6}$/.test(shaped.code) &&
      typeof shaped.msg === "string";
    const futures =
      c.url.startsWith("/derivatives/") && shaped?.result === "error" && typeof error === "string";
    if (kraken || kucoin || futures) {
      // The exchange's own shape; nothing more to check.
    } else if (
      typeof error?.code !== "string" ||
      !/^[a-z_]+$/.test(error.code) ||
      typeof error.message !== "string"
    ) {
      problems.push(`error is not {error:{code,message}}: ${where}`);
    } else {
      if (!isErrorCode(error.code)) problems.push(`code "${error.code}" is not in the catalogue: ${where}`);
      // A person reads each field's message beside the input: a sentence, not the schema's wording.
      const details = (error as { details?: unknown }).details;
      for (const detail of Array.isArray(details) ? details : []) {
        const message = (detail as { message?: unknown }).message;
        if (
          typeof message !== "string" ||
          !/^[A-Z"].*[.?]$/s.test(message) ||
          /\bmust NOT\b|must have|must match/.test(message)
        ) {
          problems.push(`detail is not a sentence (${JSON.stringify(detail)}): ${where}`);
        }
      }
    }
  }
  return problems;
}

let ipCounter = 0;
/** A new client address per request, so rate limits never hide what validation would say. */
function nextIp(): string {
  ipCounter += 1;
  return `10.${(ipCounter >> 16) & 255}.${(ipCounter >> 8) & 255}.${ipCounter & 255}`;
}

function inject(h: Harness, c: Case, bearer?: string): Promise<LightMyRequestResponse> {
  return h.app.http.inject({
    method: c.method,
    url: c.url,
    headers: { ...c.headers, ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
    remoteAddress: nextIp(),
    ...(c.payload === undefined ? {} : { payload: c.payload }),
  });
}

/** Sends every case (and HEAD twins of GET cases), returning every problem found. */
async function runCases(
  h: Harness,
  cases: Case[],
  credential: (() => Promise<string>) | undefined,
  authenticated: boolean,
): Promise<string[]> {
  const problems: string[] = [];
  for (const c of cases) {
    const bearer = credential ? await credential() : undefined;
    const response = await inject(h, c, bearer);
    const found = problemsWith(c, response, authenticated);
    problems.push(...found);
    if (c.method === "GET") {
      // HEAD twins must answer like their GET; their own problems are only news when the GET had none.
      const head = { ...c, method: "HEAD" as const };
      const headResponse = await inject(h, head, credential ? await credential() : undefined);
      if (found.length === 0) problems.push(...problemsWith(head, headResponse, authenticated));
      if (headResponse.statusCode !== response.statusCode) {
        problems.push(
          `HEAD ${c.url.slice(0, 140)} [${c.label}] → ${headResponse.statusCode}, GET → ${response.statusCode}`,
        );
      }
    }
  }
  return problems;
}

/** One character that tends to break parsers, collations and drivers, or any code point at all. */
const nastyUnit = fc.oneof(
  fc.constantFrom(
    NUL,
    "\ud800",
    "\udfff",
    "\u202e",
    "\u200b",
    "\ufeff",
    "\uffff",
    "💥",
    "👩‍👩‍👧",
    "%",
    "_",
    "\\",
    "'",
    '"',
    "\n",
    "@",
    ".",
  ),
  fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
  fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 1 }),
);
/** Arbitrary strings: any code points, graphemes, or mostly the nasty ones. */
const nastyString = fc.oneof(
  fc.string({ unit: "binary" }),
  fc.string({ unit: "grapheme" }),
  fc.string({ unit: nastyUnit }),
);
const nasty = (minLength: number, maxLength: number) => fc.string({ unit: nastyUnit, minLength, maxLength });
const anyValue = fc.oneof(nastyString, fc.anything({ stringUnit: "binary" }));

describe.each(engines)("bad input on every route on %s", (engine) => {
  let h: Harness;
  let user: TestUser;
  /** Signing out or disconnecting all ends every session of an account: such cases use this one. */
  let throwawayAccountId: string;
  let sessionToken: string;

  beforeAll(async () => {
    h = await Harness.create(engine);
    user = await h.createVerifiedUser();
    throwawayAccountId = await h.accountId(await h.createVerifiedUser());
    sessionToken = await h.sessionToken(user);
  });
  afterAll(async () => {
    await h?.close();
  });

  /** A session of its own, on an account of its own, for cases that sign out or disconnect everything. */
  const freshSession = async () =>
    (
      await h.services.sessions.issue({
        accountId: throwawayAccountId,
        client: "app",
        methods: ["password"],
        deviceId: null,
        context: { ip: "10.255.0.1", userAgent: null, location: null, country: null, city: null },
      })
    ).token;

  it("the table covers every route the app registers", () => {
    expect(registeredRoutes(h.app.http)).toEqual(expectedRoutes(routes));
    for (const route of routes) {
      expect(h.app.http.hasRoute({ method: route.method, url: route.path }), route.path).toBe(true);
    }
  });

  it.each(routes.filter((r) => r.auth !== "none"))(
    "$method $path refuses missing, malformed and wrong credentials with 401",
    async (route) => {
      const url = fillPath(route.path, route.params ?? {});
      // Every other holder's credential is as wrong as none: each token opens only its own routes.
      const wrongs = [sessionToken, ...Object.values(holderTokens)].filter((token) =>
        route.auth === "session"
          ? token !== sessionToken
          : token !== holderTokens[route.auth as keyof typeof holderTokens],
      );
      for (const authorization of [
        undefined,
        "Bearer",
        "Bearer ",
        "Bearer not-a-token",
        ...wrongs.map((wrong) => `Bearer ${wrong}`),
        `Bearer ${repeated("a", 10_000)}`,
        `Bearer ${sessionToken} extra`,
        `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString("base64")}`,
        `Token ${ADMIN_TOKEN}`,
        "Bearer \u00e9\u00e8",
      ]) {
        const response = await h.app.http.inject({
          method: route.method,
          url,
          headers: authorization === undefined ? {} : { authorization },
          remoteAddress: nextIp(),
        });
        const c: Case = {
          label: `authorization: ${authorization?.slice(0, 40)}`,
          method: route.method,
          url,
          expect: "4xx",
        };
        expect(problemsWith(c, response, false)).toEqual([]);
        expect(response.statusCode, c.label).toBe(401);
        expect(response.json().error.code).toBe("unauthenticated");
      }
      // A cookie session on a state-changing request from another site is refused before anything else.
      if (route.method !== "GET") {
        const response = await h.app.http.inject({
          method: route.method,
          url,
          headers: { cookie: `portcullis_session=${sessionToken}`, origin: "https://evil.example" },
          remoteAddress: nextIp(),
        });
        expect(response.statusCode).toBe(403);
        expect(response.json().error.code).toBe("forbidden");
      }
    },
  );

  it.each(routes)("$method $path: every hostile request gets a clean answer", async (route) => {
    const cases = casesFor(route);
    const problems: string[] = [];
    if (route.auth === "none") {
      problems.push(...(await runCases(h, cases, undefined, false)));
    } else {
      // Without credentials everything is refused (401, or 4xx from the router before auth).
      const anonymous = cases.map((c) => ({ ...c, expect: "4xx" as const }));
      problems.push(...(await runCases(h, anonymous, undefined, false)));
      if (route.auth !== "session") {
        const token = holderTokens[route.auth];
        problems.push(...(await runCases(h, anonymous, async () => sessionToken, false)));
        problems.push(...(await runCases(h, cases, async () => token, true)));
      } else {
        const credential = route.endsSession ? freshSession : async () => sessionToken;
        problems.push(...(await runCases(h, cases, credential, true)));
      }
    }
    // The same router-level answer shows up once per credential: report it once.
    expect([...new Set(problems)]).toEqual([]);
  });

  it("sign-up and sign-in with a solved bot check still answer cleanly to odd strings", async () => {
    const odd: [string, string][] = [
      ["a NUL", NUL],
      ["emoji", "💥🦄"],
      ["a lone surrogate", "\ud800"],
      ["a bidi override", "\u202e"],
      ["control characters", "\u0001\u001b[31m"],
    ];
    const problems: string[] = [];
    const check = async (label: string, url: string, body: Record<string, unknown>, expect: Expect) => {
      const c: Case = {
        label,
        method: "POST",
        url,
        payload: JSON.stringify(body),
        headers: { "content-type": "application/json" },
        expect,
      };
      problems.push(...problemsWith(c, await inject(h, c), false));
    };
    for (const [label, value] of odd) {
      for (const field of ["email", "username", "password", "region"] as const) {
        const fresh = newUser();
        const body: Record<string, unknown> = { ...fresh, botCheck: await h.botCheck() };
        if (field === "email") body.email = fresh.email.replace("@", `${value}@`);
        else if (field === "region") body.region = value;
        else body[field] = `${fresh[field]}${value}`;
        await check(`sign-up, ${field} with ${label}`, "/v1/accounts", body, "clean");
      }
      await check(
        `sign-in, identifier with ${label}`,
        "/v1/sign-in",
        { identifier: `${user.username}${value}`, password: user.password, botCheck: await h.botCheck() },
        "4xx",
      );
      await check(
        `sign-in, password with ${label}`,
        "/v1/sign-in",
        { identifier: user.username, password: `${user.password}${value}`, botCheck: await h.botCheck() },
        "4xx",
      );
      await check(
        `sign-in, deviceId with ${label}`,
        "/v1/sign-in",
        {
          identifier: user.username,
          password: user.password,
          client: "app",
          deviceId: `device-0123456789${value}`,
          botCheck: await h.botCheck(),
        },
        "clean",
      );
    }
    expect(problems).toEqual([]);
  });

  describe("arbitrary input never gets a 5xx", () => {
    const numRuns = 300;
    const json = { "content-type": "application/json" };

    /** Sends one generated request and throws on a 5xx or a leaked stack fragment. */
    const probe = async (c: Case, bearer?: string) => {
      const response = await inject(h, c, bearer);
      const shown = `${c.method} ${c.url} ${String(c.payload ?? "").slice(0, 300)} → ${response.statusCode} ${response.body.slice(0, 300)}`;
      if (response.statusCode >= 500) throw new Error(`server error: ${shown}`);
      const leak = leaks.find((fragment) => response.body.includes(fragment));
      if (leak) throw new Error(`leaks "${leak}": ${shown}`);
    };
    const post = (url: string, value: unknown) => {
      const payload = JSON.stringify(value);
      return probe({
        label: "generated",
        method: "POST",
        url,
        expect: "clean",
        ...(payload === undefined ? {} : { payload, headers: json }),
      });
    };
    const anyRecord = (keys: string[]) =>
      fc.record(Object.fromEntries(keys.map((key) => [key, anyValue])), { requiredKeys: [] });

    // Per route: any JSON value, any object, any values under the real keys, and bodies that pass schema
    // validation (odd strings within the length bounds) so the services get to see them.
    const bodies: Record<string, fc.Arbitrary<unknown>> = {
      "/v1/accounts": fc.record(
        {
          email: nasty(1, 80),
          username: fc.oneof(nasty(1, 40), fc.stringMatching(/^[a-z0-9_.-]{3,32}$/)),
          password: nasty(1, 80),
          country: fc.oneof(nasty(2, 2), fc.constantFrom("DE", "US", "CA", "KP")),
          region: nasty(0, 6),
          botCheck: nasty(0, 200),
        },
        { requiredKeys: ["email", "username", "password", "country"] },
      ),
      "/v1/accounts/verify-email": fc.record({ token: nasty(1, 256) }),
      "/v1/sign-in": fc.record(
        {
          identifier: nasty(1, 100),
          password: nasty(1, 80),
          botCheck: nasty(0, 200),
          client: fc.constantFrom("web", "app", "pro"),
          deviceId: nasty(16, 128),
        },
        { requiredKeys: ["identifier", "password"] },
      ),
    };
    const keysOf: Record<string, string[]> = {
      "/v1/accounts": ["email", "username", "password", "country", "region", "botCheck"],
      "/v1/accounts/verify-email": ["token"],
      "/v1/sign-in": ["identifier", "password", "botCheck", "client", "deviceId"],
    };

    it.each(Object.keys(bodies))("POST %s", async (url) => {
      const arbitrary = fc.oneof(
        fc.anything({ stringUnit: "binary" }),
        fc.object({ stringUnit: "binary" }),
        anyRecord(keysOf[url]!),
        bodies[url]!,
        bodies[url]!,
      );
      await fc.assert(
        fc.asyncProperty(arbitrary, (body) => post(url, body)),
        { numRuns },
      );
    });

    // With a solved bot check the requests get all the way to the database: fewer runs, each one hashes.
    it("POST /v1/accounts with a solved bot check", async () => {
      // Mostly valid jurisdictions and usernames, so the odd email, password or region reaches the insert.
      const signUps = fc.record({
        local: nasty(1, 20),
        domain: fc.oneof(
          fc.constant("example.test"),
          nasty(1, 10).map((s) => `${s}.example.test`),
        ),
        username: fc.stringMatching(/^[a-z0-9_.-]{3,32}$/),
        password: fc.oneof(
          nasty(12, 40),
          nasty(1, 20).map((s) => `violet tractor mango ${s}`),
        ),
        jurisdiction: fc.oneof(
          fc.constantFrom(
            { country: "DE" },
            { country: "US", region: "US-NY" },
            { country: "CA", region: "CA-ON" },
          ),
          nasty(0, 6).map((region) => ({ country: "US", region })),
        ),
      });
      await fc.assert(
        fc.asyncProperty(signUps, async ({ local, domain, jurisdiction, ...rest }) =>
          post("/v1/accounts", {
            ...rest,
            ...jurisdiction,
            email: `${local}@${domain}`,
            botCheck: await h.botCheck(),
          }),
        ),
        { numRuns: 50 },
      );
    });

    it("POST /v1/sign-in with a solved bot check", async () => {
      // Its own account: wrong passwords restrict it, which is lifted before each run to reach success too.
      const target = await h.createVerifiedUser();
      const targetId = await h.accountId(target);
      const signIns = fc.record({
        identifier: fc.oneof(
          nasty(1, 40),
          fc.constant(target.username),
          nasty(1, 10).map((s) => `${target.username}${s}`),
        ),
        password: fc.oneof(nasty(1, 40), fc.constant(target.password)),
        client: fc.constantFrom("web", "app", "pro"),
        deviceId: fc.option(nasty(16, 40), { nil: undefined }),
      });
      await fc.assert(
        fc.asyncProperty(signIns, async (body) => {
          await h.services.guard.lift(targetId);
          await post("/v1/sign-in", { ...body, botCheck: await h.botCheck() });
        }),
        { numRuns: 50 },
      );
    });

    it("GET /v1/sign-in/:flowId", async () => {
      // Percent-encoded UTF-8 of arbitrary strings (lone surrogates become U+FFFD), and raw bytes.
      const percent = (bytes: Uint8Array) =>
        [...bytes].map((b) => `%${b.toString(16).padStart(2, "0")}`).join("");
      const ids = fc.oneof(
        nastyString.filter((s) => s.length > 0).map((s) => percent(Buffer.from(s))),
        fc.uint8Array({ minLength: 1, maxLength: 40 }).map(percent),
        fc.uuid(),
        fc.uuid().map((id) => id.toUpperCase()),
      );
      await fc.assert(
        fc.asyncProperty(ids, (id) =>
          probe({ label: "generated", method: "GET", url: `/v1/sign-in/${id}`, expect: "clean" }),
        ),
        { numRuns },
      );
    });

    it("query parameters of the paged and search routes", async () => {
      const value = fc.oneof(
        nastyString,
        fc.integer().map(String),
        fc.double().map(String),
        fc.bigInt().map(String),
      );
      const requests = fc.record({
        path: fc.constantFrom("/v1/activity", "/v1/admin/audit", "/v1/admin/accounts"),
        params: fc.dictionary(fc.constantFrom("limit", "before", "account", "query"), value, { minKeys: 1 }),
      });
      await fc.assert(
        fc.asyncProperty(requests, async ({ path, params }) => {
          const c: Case = {
            label: "generated",
            method: "GET",
            url: `${path}?${new URLSearchParams(params).toString()}`,
            expect: "clean",
          };
          await probe(c, path.startsWith("/v1/admin") ? ADMIN_TOKEN : sessionToken);
        }),
        { numRuns },
      );
    });

    // Every route, with its credentials: generated bodies (anything, or any values under the route's
    // own field names) and generated path parameters — about 25 per route and engine. (Public market data
    // passes through to the venue, absent here: those routes answer 503 by design.)
    it.each(routes.filter((route) => !route.path.startsWith("/0/public/")))(
      "$method $path, generated bodies and parameters",
      async (route) => {
        const keys = route.body ? [...route.body.required, ...route.body.optional] : [];
        const bodies = fc.oneof(fc.anything({ stringUnit: "binary" }), anyRecord(keys.length ? keys : ["x"]));
        const param = fc.oneof(nastyString, fc.uuid(), fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/));
        await fc.assert(
          fc.asyncProperty(bodies, param, async (body, value) => {
            const params = Object.fromEntries(
              // Percent-encoded UTF-8 bytes: lone surrogates arrive as U+FFFD, as a browser would send them.
              Object.keys(route.params ?? {}).map((name) => [
                name,
                [...Buffer.from(value)].map((b) => `%${b.toString(16).padStart(2, "0")}`).join("") || "x",
              ]),
            );
            const payload =
              route.method === "GET" || route.method === "DELETE" ? undefined : JSON.stringify(body);
            const bearer =
              route.auth === "admin" || route.auth === "service" || route.auth === "metrics"
                ? holderTokens[route.auth]
                : route.auth === "session"
                  ? route.endsSession
                    ? await freshSession()
                    : sessionToken
                  : undefined;
            await probe(
              {
                label: "generated",
                method: route.method,
                url: fillPath(route.path.replace("*", "Balance"), params),
                expect: "clean",
                ...(payload === undefined ? {} : { payload, headers: json }),
              },
              bearer,
            );
          }),
          { numRuns: 25 },
        );
      },
    );
  });
});

describe.each(engines)("bad input on the development routes on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    // Without SMTP, development mode keeps mail in a local outbox and serves it under /dev.
    h = await Harness.create(engine, { env: { PORTCULLIS_SMTP_URL: "", PORTCULLIS_ENV: "development" } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("the table covers every route the app registers", () => {
    expect(registeredRoutes(h.app.http)).toEqual(expectedRoutes([...routes, ...devRoutes]));
  });

  it.each(devRoutes)("$method $path: every hostile request gets a clean answer", async (route) => {
    expect(await runCases(h, casesFor(route), undefined, false)).toEqual([]);
  });
});
