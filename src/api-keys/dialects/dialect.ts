import type { Selectable } from "kysely";
import type { Account } from "../../accounts/accounts.js";
import type { TradingIntent } from "../../capabilities/evaluate.js";
import type { Product } from "../../capabilities/policy.js";
import type { ApiKeysTable } from "../../db/schema.js";
import type { GatewayState } from "../gateway-state.js";
import type { Movements } from "../kraken-requests.js";
import type { Params, ParsedBody } from "../request-body.js";
import type { KnownOrder } from "../trading-limiter.js";

/** How a key signs, fixed at creation. */
export const dialectNames = ["kraken", "kucoin", "kraken_futures"] as const;
export type DialectName = (typeof dialectNames)[number];

export const isDialectName = (value: string): value is DialectName =>
  (dialectNames as readonly string[]).includes(value);

/**
 * Why the one pipeline refuses a request, in its own words. Each dialect answers each of these in its
 * exchange's shape, code and HTTP status; the pipeline never writes an exchange's error itself.
 */
export type Refusal =
  | "unknown_method"
  | "missing_credentials"
  | "invalid_key"
  | "key_version"
  | "invalid_passphrase"
  | "invalid_signature"
  | "stale"
  | "replay"
  | "lockout"
  | "ip"
  | "permission"
  | "invalid_arguments"
  | "approval_required"
  | "account_restricted"
  | "product_refused"
  | "cancel_only"
  | "post_only"
  | "unavailable"
  | "rate_limit"
  | "order_rate_limit";

/** A request as it reached the gateway: every byte a signature may cover, as sent. */
export interface GatewayRequest {
  /** The HTTP method, upper case. */
  method: string;
  /** The URI path exactly as sent, without the query string. */
  path: string;
  /** The query string exactly as sent, without the "?" ("" when none). */
  query: string;
  /** Header values by lower-case name. */
  headers: Record<string, string | undefined>;
  /** The body exactly as sent. */
  body: string;
  ip: string;
  userAgent: string | null;
}

/** What a request asks for, by the dialect's table: a private method or path and the permission it needs. */
export interface Operation {
  /** Kraken's method name, or "METHOD /path/pattern" for the path-based dialects. */
  name: string;
  permission: string | null;
}

/** The one parse of a request: every parameter the checks read, and exactly what the venue receives. */
export interface ParsedRequest {
  /** Every parameter, from the query and the body (a name in both is refused). */
  params: Params;
  /** The body the venue receives, canonical; `canonical` is "" when there is none. */
  body: ParsedBody;
  /** The query the venue receives, re-serialised from the parse ("" when none). */
  query: string;
}

export type KeyRow = Selectable<ApiKeysTable>;

/** The key's secrets, opened for this request only. */
export interface KeySecrets {
  secret: string;
  passphrase: string | null;
}

export interface ChargeContext {
  state: GatewayState;
  row: KeyRow;
  account: Account;
  operation: Operation;
  parsed: ParsedRequest;
  now: number;
  /** Orders the gateway saw placed for the key, by txid (Kraken's cancel penalty). */
  knownOrders(txids: string[]): Promise<Map<string, KnownOrder>>;
}

/** A refusal as the client's exchange answers it. */
export interface Answer {
  status: number;
  /** The exchange's error code or string (for the check endpoint, metrics and the audit log). */
  error: string;
  body: unknown;
}

export interface RefusalContext {
  ip: string;
  now: number;
  approval?: { id: string; expiresAt: string };
}

/**
 * A dialect reads its credentials and writes its answers; everything between — lockouts, the key, its
 * expiry and allowlist, the one parse, permissions, the capability function, limits and approvals — is
 * the one pipeline in signed-requests.ts.
 */
export interface Dialect {
  readonly name: DialectName;
  /** The key permissions, as the exchange names them. */
  readonly permissions: readonly string[];
  /** Permissions that need an IP allowlist on the key. */
  readonly allowlistRequired: readonly string[];
  /** Whether a key of this dialect may have its own second factor, sent as the `otp` parameter. */
  readonly keyOtp: boolean;
  /** Whether a key's permissions cover the one an operation needs (levels include the ones below). */
  grants(keyPermissions: readonly string[], needed: string): boolean;
  /** Which operation the request names, from its method and path as sent; null when none is listed. */
  operation(request: GatewayRequest): Operation | null;
  /** The public key the request names. */
  apiKey(request: GatewayRequest): string | undefined;
  /** False when a credential header the dialect always requires is missing. */
  credentialsPresent(request: GatewayRequest): boolean;
  /** The one parse (throws BodyError). */
  parse(request: GatewayRequest, operation: Operation): ParsedRequest;
  /** Signature, timestamp and passphrase: null when the sender holds the key's secret. */
  authenticate(
    request: GatewayRequest,
    parsed: ParsedRequest,
    secrets: KeySecrets,
    now: number,
  ): Refusal | null;
  /** Claims what makes the request single-use (a nonce, a signature): null when this is its first use. */
  claim(
    state: GatewayState,
    row: KeyRow,
    request: GatewayRequest,
    parsed: ParsedRequest,
    now: number,
  ): Promise<Refusal | null>;
  /** The permission the request needs: the operation's, or what its parameters make it (KuCoin's margin). */
  permission(operation: Operation, params: Params): string | null;
  /** A field a money-moving operation does not know (refused: the venue might act on it). */
  unknownField(operation: Operation, params: Params): string | null;
  /** The product the operation uses, for the capability function; null for account-wide reads. */
  product(operation: Operation, params: Params): Product | null;
  /** Orders and cancels, for the engine's cancel-only and post-only modes. */
  intent(operation: Operation, params: Params): TradingIntent | null;
  /** The key's history window applied to the request (Kraken's history methods); the request otherwise. */
  bound(row: KeyRow, operation: Operation, parsed: ParsedRequest): ParsedRequest | "outside" | "invalid";
  /** Charges the dialect's rate limits. */
  charge(context: ChargeContext): Promise<Refusal | null>;
  /** What the request moves, per asset, for approval thresholds; null when it moves nothing. */
  movements(operation: Operation, params: Params): Movements | null;
  /** The request as the owner is shown it when approving. */
  describe(operation: Operation, params: Params): string;
  /** The refusal in the exchange's words. */
  refusal(reason: Refusal, context: RefusalContext): Answer;
}
