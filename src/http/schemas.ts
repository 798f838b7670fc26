import { type TSchema, Type } from "typebox";

/** Shapes shared by several routes. */
export const ErrorResponse = Type.Object(
  {
    error: Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: true }),
  },
  { $id: "Error" },
);

export const SessionSummary = Type.Object({
  id: Type.String(),
  client: Type.String(),
  aal: Type.Integer(),
  methods: Type.Array(Type.String()),
  authenticatedAt: Type.String(),
  expiresAt: Type.String(),
});

export const Client = Type.Union([Type.Literal("web"), Type.Literal("app"), Type.Literal("pro")]);

export const Notice = Type.Object({ code: Type.String(), message: Type.String() });

/** A setting change repeats its request with the confirmed action's id (docs/http-api.md "Step-up: confirming a change"). */
export const ActionIdHeader = Type.Object({ "x-action-id": Type.Optional(Type.String({ format: "uuid" })) });

/** The proofs that confirm an action or an approval (docs/http-api.md "Step-up: confirming a change"). */
export const ConfirmBody = Type.Object({
  password: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  totp: Type.Optional(Type.String({ minLength: 1, maxLength: 16 })),
  recoveryCode: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  webauthn: Type.Optional(Type.Object({}, { additionalProperties: true })),
  tradingPasscode: Type.Optional(Type.String({ minLength: 1, maxLength: 16 })),
});

/*
 * Response shapes. Fastify serialises a response through its schema and leaves out every field the
 * schema does not name, so an object a service builds is declared open (`additionalProperties: true`):
 * the fields listed are the documented contract, and a field added later is never silently dropped.
 */

// biome-ignore lint/suspicious/noExplicitAny: a helper over TypeBox's property maps of any shape.
type Properties = Record<string, any>;

/** An object with its documented fields; further fields pass through unchanged. */
export const Open = <T extends Properties>(properties: T, description?: string) =>
  Type.Object(properties, { additionalProperties: true, ...(description ? { description } : {}) });

export const Nullable = <T extends TSchema>(type: T) => Type.Union([type, Type.Null()]);

/** `{ "status": "…" }`, the answer of a change that has nothing else to say. */
export const Status = <S extends string>(status: S, description?: string) =>
  Type.Object({ status: Type.Literal(status) }, description ? { description } : {});

/** What a step-up action or an approval shows its owner, and what confirms it. */
export const ActionView = Open({
  id: Type.String({ format: "uuid" }),
  type: Type.String({ description: "The action type, e.g. withdraw, add_totp, create_api_key" }),
  params: Type.Record(Type.String(), Type.Unknown(), {
    description: "The parameters confirmed, normalised by the server",
  }),
  summary: Type.String({ description: "The sentence the owner confirms" }),
  digest: Type.String({ description: "SHA-256 (hex) of the type and the canonical JSON of params" }),
  state: Type.String({ description: "pending, confirmed, cancelled or expired" }),
  required: Type.Array(Type.String(), {
    description: "The proofs that confirm it: second_factor, password, trading_passcode",
  }),
  factors: Type.Array(Type.String(), { description: "The second factors that can satisfy second_factor" }),
  expiresAt: Type.String({ format: "date-time" }),
  grant: Type.Optional(
    Type.String({ description: "A confirmed funding or trading action's grant (compact JWS, 60 s)" }),
  ),
});

/** A withdrawal address as the address book shows it. */
export const WithdrawalAddress = Open({
  id: Type.String({ format: "uuid" }),
  asset: Type.String(),
  address: Type.String({ description: "The full destination address" }),
  label: Type.String(),
  state: Type.String({ description: "pending_confirmation, on_hold (the 48 hours) or active" }),
  createdAt: Type.String({ format: "date-time" }),
  usableFrom: Nullable(Type.String({ format: "date-time" })),
});

/** An API key as its owner and operators see it: never its secret. */
export const ApiKeyView = Open({
  id: Type.String({ format: "uuid" }),
  name: Type.String(),
  key: Type.String({ description: "The public key sent as API-Key (KC-API-KEY, APIKey)" }),
  dialect: Type.String({ description: "How the key signs: kraken, kucoin or kraken_futures" }),
  permissions: Type.Array(Type.String({ description: "In the dialect's own names" })),
  ipAllowlist: Type.Array(Type.String()),
  validUntil: Nullable(Type.String({ format: "date-time" })),
  queryFrom: Nullable(Type.String({ format: "date-time" })),
  queryTo: Nullable(Type.String({ format: "date-time" })),
  nonceWindow: Type.Integer(),
  otp: Type.Unknown({ description: "null, static or totp (on creation: the TOTP key to enrol)" }),
  approvalThreshold: Nullable(
    Type.Record(Type.String(), Type.String(), {
      description:
        'Per asset: requests moving more are held for approval, e.g. {"BTC": "0.5", "USD": "10000"}',
    }),
  ),
  createdAt: Type.String({ format: "date-time" }),
  lastUsedAt: Nullable(Type.String({ format: "date-time" })),
});

/** A maintenance window of a subsystem. */
export const MaintenanceWindow = Open({
  id: Type.String(),
  subsystem: Type.String(),
  state: Type.String({ description: "maintenance, outage, cancel_only, post_only or operational" }),
  startsAt: Type.String({ format: "date-time" }),
  endsAt: Type.String({ format: "date-time" }),
  message: Type.String(),
});

/** The state of the Global Settings Lock. */
export const LockState = Open({
  enabled: Type.Boolean(),
  unlockDelayDays: Nullable(Type.Integer()),
  unlockPending: Type.Boolean(),
  unlocksAt: Nullable(Type.String({ format: "date-time" })),
});
