import { Type } from "typebox";

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

/** A setting change repeats its request with the confirmed action's id (API.md "Step-up"). */
export const ActionIdHeader = Type.Object({ "x-action-id": Type.Optional(Type.String({ format: "uuid" })) });

/** The proofs that confirm an action or an approval (API.md "Step-up"). */
export const ConfirmBody = Type.Object({
  password: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  totp: Type.Optional(Type.String({ minLength: 1, maxLength: 16 })),
  recoveryCode: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  webauthn: Type.Optional(Type.Object({}, { additionalProperties: true })),
  tradingPasscode: Type.Optional(Type.String({ minLength: 1, maxLength: 16 })),
});
