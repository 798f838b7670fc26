import type { AuthenticationResponseJSON } from "@simplewebauthn/server";
import type { ExpressionBuilder, Kysely, Selectable, Transaction } from "kysely";
import type { Account } from "../accounts/accounts.js";
import type { AuditLog } from "../audit/audit-log.js";
import { newId, sha256Hex } from "../crypto/tokens.js";
import type { ActionsTable, Database } from "../db/schema.js";
import { invalidCode, type Proof, type ProofVerifier } from "../factors/proofs.js";
import { type SecondFactorRepository, secondFactorNames } from "../factors/second-factors.js";
import type { WebAuthnFactor } from "../factors/webauthn-factor.js";
import type { Session, SessionService } from "../sessions/sessions.js";
import type { Clock } from "../support/clock.js";
import { iso } from "../support/clock.js";
import type { Metrics } from "../support/metrics.js";
import { expired, invalidCredentials, notFound, Problem } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import { GRANT_TTL_MS, type GrantSigner } from "./grants.js";
import { transactionTypes } from "./transactions.js";

const ACTION_TTL_MS = 5 * 60_000;

export const isTransaction = (type: string) => (transactionTypes as readonly string[]).includes(type);
/** A Kraken-signed request held for its owner's approval (behaviour §11): it moves money, like a transaction. */
export const API_APPROVAL = "api_request";
/** Confirming these is consent to one movement of money, not a privilege change of the session. */
const movesMoney = (type: string) => isTransaction(type) || type === API_APPROVAL;
const MAX_FAILED_CONFIRMATIONS = 5;

/**
 * "second_factor": any enrolled factor (TOTP, security key, recovery code); "password" when none is
 * enrolled; "trading_passcode" when the owner set one and the action is a trade or withdrawal.
 */
export type RequiredProof = "second_factor" | "password" | "trading_passcode";

export interface ActionView {
  id: string;
  type: string;
  params: Record<string, unknown>;
  summary: string;
  digest: string;
  state: string;
  required: RequiredProof[];
  /** Which second factors can satisfy "second_factor". */
  factors: string[];
  expiresAt: string;
  /** A confirmed funding or trading action's grant, for the venue's backend to redeem. */
  grant?: string;
}

export interface ConfirmInput {
  password?: string;
  totp?: string;
  recoveryCode?: string;
  webauthn?: AuthenticationResponseJSON;
  tradingPasscode?: string;
}

/** Canonical JSON: keys sorted at every level, so the same parameters always give the same digest. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export function actionDigest(type: string, params: Record<string, unknown>): string {
  return sha256Hex(canonicalJson({ type, params }));
}

/**
 * The one action `spend` may spend: this account's, confirmed by this session, for exactly this type and
 * these parameters, unused and unexpired.
 */
function spendable(
  accountId: string,
  sessionId: string,
  actionId: string,
  type: string,
  params: Record<string, unknown>,
  now: number,
) {
  return (eb: ExpressionBuilder<Database, "actions">) =>
    eb.and([
      eb("id", "=", actionId),
      eb("account_id", "=", accountId),
      eb("session_id", "=", sessionId),
      eb("type", "=", type),
      eb("digest", "=", actionDigest(type, params)),
      eb("state", "=", "confirmed"),
      eb("expires_at", ">", now),
    ]);
}

/**
 * Actions (docs/http-api.md "Step-up: confirming a change"): the server builds what is to be confirmed from the request, keeps a digest
 * of its canonical parameters, and lets it happen only once it is confirmed with the required proof and
 * then presented again (`X-Action-Id`) with the very same parameters, by the session that confirmed it.
 * Every owner setting change asks for and spends its step-up through SettingChanges; confirming one is a
 * privilege change, so the session gets a new token.
 */
export class ActionService {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly factors: SecondFactorRepository,
    private readonly proofs: ProofVerifier,
    private readonly webauthn: WebAuthnFactor,
    private readonly sessions: SessionService,
    private readonly audit: AuditLog,
    private readonly metrics: Metrics,
    private readonly grants: GrantSigner,
  ) {}

  /**
   * Answers 403 step_up_required with a new action to confirm: a second factor (the password while none
   * is enrolled), plus `alsoRequire`. The setting change is made once that action is confirmed and
   * presented again (`spend`).
   */
  async demandStepUp(
    account: Account,
    type: string,
    params: Record<string, unknown>,
    summary: string,
    alsoRequire: readonly RequiredProof[] = [],
  ): Promise<never> {
    const stepUp: RequiredProof[] =
      (await this.availableFactors(account.id)).length > 0 ? ["second_factor"] : ["password"];
    const action = await this.create(account, type, params, summary, [...stepUp, ...alsoRequire]);
    throw new Problem(403, "step_up_required", "Confirm this change with your second factor first.", {
      actionId: action.id,
      action,
    });
  }

  /**
   * Spends, in the setting change's transaction, the confirmed and unused action `actionId` of this
   * account for exactly this type and these parameters, confirmed by this very session (or the one it
   * rotated from). False when there is none: another session of the account cannot spend it.
   */
  async spend(
    trx: Transaction<Database>,
    accountId: string,
    sessionId: string,
    actionId: string,
    type: string,
    params: Record<string, unknown>,
  ): Promise<boolean> {
    const now = this.clock.now();
    const spent = await trx
      .updateTable("actions")
      .set({ state: "used", used_at: now })
      .where(spendable(accountId, sessionId, actionId, type, params, now))
      .returning("id")
      .executeTakeFirst();
    return spent !== undefined;
  }

  /** Whether `spend` would spend that action now: read only, for a change that must know before it asks more. */
  async canSpend(
    accountId: string,
    sessionId: string,
    actionId: string,
    type: string,
    params: Record<string, unknown>,
  ): Promise<boolean> {
    const row = await this.db
      .selectFrom("actions")
      .select("id")
      .where(spendable(accountId, sessionId, actionId, type, params, this.clock.now()))
      .executeTakeFirst();
    return row !== undefined;
  }

  /**
   * A new pending action. `required` defaults to the step-up of a setting change: a second factor, or the
   * password while none is enrolled.
   */
  async create(
    account: Account,
    type: string,
    params: Record<string, unknown>,
    summary: string,
    requiredProofs?: RequiredProof[],
    ttlMs = ACTION_TTL_MS,
  ): Promise<ActionView> {
    const factors = await this.availableFactors(account.id);
    const required: RequiredProof[] =
      requiredProofs ?? (factors.length > 0 ? ["second_factor"] : ["password"]);
    const now = this.clock.now();
    const row = {
      id: newId(),
      account_id: account.id,
      type,
      params: JSON.stringify(params),
      digest: actionDigest(type, params),
      summary,
      required: JSON.stringify(required),
      state: "pending",
      created_at: now,
      expires_at: now + ttlMs,
    };
    await this.db.insertInto("actions").values(row).execute();
    return this.view(
      {
        ...row,
        failures: 0,
        confirmed_at: null,
        used_at: null,
        grant_id: null,
        grant_expires_at: null,
        redeemed_at: null,
        session_id: null,
      },
      factors,
    );
  }

  async get(account: Account, actionId: string): Promise<ActionView> {
    return this.view(await this.load(account, actionId), await this.availableFactors(account.id));
  }

  /** The account's unexpired pending actions of one type, newest first (at most 100). */
  async pendingOfType(account: Account, type: string): Promise<ActionView[]> {
    const rows = await this.db
      .selectFrom("actions")
      .selectAll()
      .where("account_id", "=", account.id)
      .where("type", "=", type)
      .where("state", "=", "pending")
      .where("expires_at", ">", this.clock.now())
      .orderBy("created_at", "desc")
      .limit(100)
      .execute();
    const factors = await this.availableFactors(account.id);
    return rows.map((row) => this.view(row, factors));
  }

  /**
   * Assertion options whose challenge is derived from the action's id and digest (dynamic linking): a
   * signature made for this action cannot confirm any other, nor this one with other parameters.
   */
  async webauthnOptions(account: Account, actionId: string) {
    const action = await this.pending(account, actionId);
    const nonce = newId();
    const challenge = Buffer.from(
      sha256Hex(`portcullis-action\n${action.id}\n${action.digest}\n${nonce}`),
      "hex",
    );
    return this.webauthn.assertionOptions(account.id, "action", action.id, challenge.toString("base64url"));
  }

  async confirm(
    account: Account,
    session: Session,
    actionId: string,
    input: ConfirmInput,
    context: RequestContext,
  ): Promise<{ action: ActionView; rotated: { token: string; session: Session } | null }> {
    const action = await this.pending(account, actionId);
    const required = JSON.parse(action.required) as RequiredProof[];
    const methods: string[] = [];
    for (const proof of this.proofsFor(required, input, action.id)) {
      const result = await this.proofs.verify(
        account,
        proof,
        movesMoney(action.type) ? "action" : "step_up",
        context,
      );
      if (result.kind !== "passed") {
        this.metrics.stepUps.inc({ outcome: "failure" });
        await this.recordFailedConfirmation(action.id);
        if (proof.kind === "password") throw invalidCredentials();
        if (proof.kind === "trading_passcode") {
          throw new Problem(401, "invalid_passcode", "That trading passcode is not right.");
        }
        throw invalidCode(result.kind === "failed" ? result.hint : undefined);
      }
      methods.push(result.value);
    }
    // Consent to one movement of money stays with its action; a setting change's step-up is bound to the
    // session: it rotates, and this action (and any confirmed before, not yet spent) moves with it.
    // The confirmation and its audit entry commit together (with the rotation, for a step-up).
    const confirmWithin = async (trx: Transaction<Database>, sessionId: string) => {
      const result = await this.markConfirmed(account, action, sessionId, trx);
      await this.audit.append(
        {
          event: "action.confirmed",
          outcome: "success",
          accountId: account.id,
          details: { actionId: action.id, type: action.type, methods },
        },
        context,
        trx,
      );
      return result;
    };
    let confirmation: Awaited<ReturnType<ActionService["markConfirmed"]>> | undefined;
    let rotated: { token: string; session: Session } | null = null;
    if (movesMoney(action.type)) {
      confirmation = await this.db.transaction().execute((trx) => confirmWithin(trx, session.id));
    } else {
      rotated = await this.sessions.rotate(session, methods, async (trx, next) => {
        await trx
          .updateTable("actions")
          .set({ session_id: next.id })
          .where("account_id", "=", account.id)
          .where("session_id", "=", session.id)
          .where("state", "=", "confirmed")
          .execute();
        confirmation = await confirmWithin(trx, next.id);
      });
      if (!rotated) throw new Problem(401, "unauthenticated", "This session has ended. Sign in again.");
    }
    const { row: confirmed, grant } = confirmation!;
    this.metrics.stepUps.inc({ outcome: "success" });
    const view = {
      ...this.view(confirmed, await this.availableFactors(account.id)),
      ...(grant ? { grant } : {}),
    };
    return { action: view, rotated };
  }

  /** Confirms a pending action; a funding or trading action gets its grant (60 s, unique id) in the same step. */
  async markConfirmed(
    account: Account,
    action: Selectable<ActionsTable>,
    sessionId: string | null = null,
    db: Kysely<Database> = this.db,
  ) {
    const now = this.clock.now();
    const grantId = isTransaction(action.type) ? newId() : null;
    const grantExpiresAt = grantId ? now + GRANT_TTL_MS : null;
    const row = await db
      .updateTable("actions")
      .set({
        state: "confirmed",
        confirmed_at: now,
        grant_id: grantId,
        grant_expires_at: grantExpiresAt,
        session_id: sessionId,
      })
      .where("id", "=", action.id)
      .where("state", "=", "pending")
      .where("expires_at", ">", now)
      .returningAll()
      .executeTakeFirst();
    if (!row) throw new Problem(409, "conflict", "This action was already confirmed or cancelled.");
    const grant =
      grantId && grantExpiresAt
        ? await this.grants.sign({
            jti: grantId,
            sub: account.id,
            act: { id: row.id, type: row.type, digest: row.digest },
            iat: Math.floor(now / 1000),
            exp: Math.floor(grantExpiresAt / 1000),
          })
        : undefined;
    return { row, grant };
  }

  /** Every proof the action requires, from the request; all must be there before any is checked. */
  private proofsFor(required: RequiredProof[], input: ConfirmInput, actionId: string): Proof[] {
    return required.map((kind): Proof => {
      if (kind === "password") {
        if (input.password === undefined) throw this.missingProof("password");
        return { kind: "password", password: input.password };
      }
      if (kind === "trading_passcode") {
        if (input.tradingPasscode === undefined) throw this.missingProof("tradingPasscode");
        return { kind: "trading_passcode", passcode: input.tradingPasscode };
      }
      if (input.webauthn !== undefined) {
        return { kind: "webauthn", response: input.webauthn, purpose: "action", subject: actionId };
      }
      if (input.totp !== undefined) return { kind: "totp", code: input.totp };
      if (input.recoveryCode !== undefined) return { kind: "recovery_code", code: input.recoveryCode };
      throw this.missingProof("totp, webauthn or recoveryCode");
    });
  }

  private missingProof(field: string) {
    return new Problem(400, "invalid_request", `This action is confirmed with ${field}.`, {
      details: [{ field, message: "required" }],
    });
  }

  /** Five failed confirmations cancel the action (they also count on the account's attempt counter). */
  private async recordFailedConfirmation(actionId: string): Promise<void> {
    await this.db
      .updateTable("actions")
      .set((eb) => ({
        failures: eb("failures", "+", 1),
        state: eb
          .case()
          .when("failures", ">=", MAX_FAILED_CONFIRMATIONS - 1)
          .then("cancelled")
          .else(eb.ref("state"))
          .end(),
      }))
      .where("id", "=", actionId)
      .where("state", "=", "pending")
      .execute();
  }

  async load(account: Account, actionId: string): Promise<Selectable<ActionsTable>> {
    const row = await this.db
      .selectFrom("actions")
      .selectAll()
      .where("id", "=", actionId)
      .where("account_id", "=", account.id)
      .executeTakeFirst();
    if (!row) throw notFound("This action");
    return row;
  }

  private async pending(account: Account, actionId: string): Promise<Selectable<ActionsTable>> {
    const row = await this.load(account, actionId);
    if (row.state === "cancelled")
      throw new Problem(409, "conflict", "This action was cancelled. Start again.");
    if (row.state !== "pending") throw new Problem(409, "conflict", "This action was already confirmed.");
    if (row.expires_at <= this.clock.now()) throw expired("This action has expired. Start again.");
    return row;
  }

  private async availableFactors(accountId: string): Promise<string[]> {
    return secondFactorNames(await this.factors.listConfirmed(accountId));
  }

  private view(row: Selectable<ActionsTable>, factors: string[]): ActionView {
    return {
      id: row.id,
      type: row.type,
      params: JSON.parse(row.params) as Record<string, unknown>,
      summary: row.summary,
      digest: row.digest,
      state: row.state,
      required: JSON.parse(row.required) as RequiredProof[],
      factors,
      expiresAt: iso(row.expires_at),
    };
  }
}
