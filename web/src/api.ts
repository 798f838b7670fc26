/**
 * The one way the portal talks to the API: JSON in and out, the session cookie, and errors as ApiError
 * with the stable code from docs/http-api.md. The browser sends the Origin header itself, which the server requires
 * for cookie-authenticated changes.
 */
export interface ApiErrorBody {
  code: string;
  message: string;
  [detail: string]: unknown;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiErrorBody,
    readonly retryAfter: number | null,
  ) {
    super(body.message);
    this.name = "ApiError";
  }

  get code(): string {
    return this.body.code;
  }
}

export interface RequestOptions {
  body?: unknown;
  /** A confirmed step-up action this request spends (docs/http-api.md "Step-up: confirming a change"). */
  actionId?: string;
}

/**
 * What an answer says about the session itself: it has ended (401 unauthenticated: signed out elsewhere,
 * every session ended by a freeze or a password change) or its account is frozen (423 account_frozen). The
 * session provider listens, so whichever page made the request, the whole portal follows.
 */
export type SessionEvent = "ended" | "frozen";
const sessionListeners = new Set<(event: SessionEvent) => void>();

export function onSessionEvent(listener: (event: SessionEvent) => void): () => void {
  sessionListeners.add(listener);
  return () => sessionListeners.delete(listener);
}

export async function api<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (options.body !== undefined) headers["content-type"] = "application/json";
  if (options.actionId) headers["x-action-id"] = options.actionId;
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
  } catch {
    throw new ApiError(0, { code: "network", message: "The server could not be reached." }, null);
  }
  const text = await response.text();
  const parsed: unknown = text ? safeJson(text) : null;
  if (!response.ok) {
    const body =
      parsed && typeof parsed === "object" && "error" in parsed
        ? (parsed as { error: ApiErrorBody }).error
        : { code: response.status >= 500 ? "internal_error" : "bad_request", message: response.statusText };
    if (body.code === "unauthenticated") for (const listener of sessionListeners) listener("ended");
    if (body.code === "account_frozen") for (const listener of sessionListeners) listener("frozen");
    const retryAfter = Number(response.headers.get("retry-after"));
    throw new ApiError(
      response.status,
      body,
      Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null,
    );
  }
  return parsed as T;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// Shapes of the answers the portal reads (see /openapi.json for the complete reference).

export interface SessionInfo {
  account: {
    id: string;
    username: string;
    email?: string;
    tier: string;
    country: string;
    region: string | null;
    /** Set while the account is frozen by "lock my account"; `liftable` by the server's clock. */
    frozen?: { since: string; liftableAt: string; liftable: boolean } | null;
    /** A sign-in found the password among those known from data breaches: it should be changed. */
    passwordBreached?: boolean;
  };
  session: {
    id: string;
    client: string;
    aal: number;
    methods: string[];
    authenticatedAt: string;
    expiresAt: string;
  };
}

export interface Notice {
  code: string;
  message: string;
}

export interface SignInState {
  state: "authenticated" | "second_factor" | "device_approval" | string;
  flowId: string;
  factors?: string[];
  notices?: Notice[];
  expiresAt?: string;
}

export interface Reason {
  code: string;
  message: string;
  requiredTier?: string;
  until?: string | null;
}

export type CapabilityVector = Record<string, { allowed: boolean; reasons?: Reason[] }>;

export interface StatusInfo {
  subsystems: { id: string; status: string; message?: string }[];
  maintenance: {
    id: string;
    subsystem: string;
    state: string;
    startsAt: string;
    endsAt: string;
    message: string;
  }[];
}

export interface SecondFactor {
  id: string;
  type: string;
  /** authenticator_app, security_key (roams: USB, NFC, BLE) or passkey (kept on a device, or synced). */
  kind: "authenticator_app" | "security_key" | "passkey";
  name: string;
  roaming: boolean;
  synced: boolean;
  createdAt: string;
  lastUsedAt: string | null;
}

export interface LockState {
  enabled: boolean;
  unlockDelayDays: number | null;
  unlockPending: boolean;
  unlocksAt: string | null;
}

export interface SecurityOverview {
  level: number;
  /** `problem` and `message` say why an item is not done when it once was (a breached password). */
  checklist: { id: string; done: boolean; title: string; problem?: string; message?: string }[];
  globalLock: LockState;
  hidden?: boolean;
  secondFactors?: SecondFactor[];
  masterKey?: { set: boolean };
  tradingPasscode?: { set: boolean };
  antiPhishingCode?: { set: boolean };
  requirements?: { signIn: boolean; funding: boolean; trading: boolean };
  holds?: { kind: string; until: string }[];
}

export interface Action {
  id: string;
  type: string;
  params: Record<string, unknown>;
  summary: string;
  digest: string;
  state: string;
  required: string[];
  factors: string[];
  expiresAt: string;
  grant?: string;
}
