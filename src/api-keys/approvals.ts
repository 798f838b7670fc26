import type { Kysely } from "kysely";
import type { Account } from "../accounts/accounts.js";
import {
  type ActionService,
  type ActionView,
  API_APPROVAL,
  actionDigest,
  type ConfirmInput,
} from "../actions/actions.js";
import type { Database } from "../db/schema.js";
import type { Session } from "../sessions/sessions.js";
import type { Clock } from "../support/clock.js";
import { notFound } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import { assetsOverThreshold, type Movements, type Thresholds } from "./kraken-requests.js";
import { type Params, text } from "./request-body.js";

/** Long enough for the owner to open the portal and approve, short enough not to linger. */
const APPROVAL_TTL_MS = 15 * 60_000;

/** A key's thresholds as stored (a JSON object of asset → decimal string); none when unset. */
export function thresholdsOf(stored: string | null): Thresholds {
  if (stored === null) return {};
  const parsed = JSON.parse(stored) as unknown;
  return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Thresholds) : {};
}

export type ApprovalDecision =
  | { kind: "not_needed" }
  | { kind: "approved" }
  | { kind: "required"; approval: ActionView }
  | { kind: "invalid" };

/**
 * Out-of-band approval of signed requests above a key's threshold (behaviour §11). A request over the line is
 * held as an action whose parameters are the key, the method and every request field but the nonce, the
 * otp and the approval id; the owner confirms it in the portal with a second factor; the bot sends the
 * same request again (new nonce) with `approval_id`, which spends the approval once.
 */
export class ApiApprovals {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly actions: ActionService,
  ) {}

  async decide(
    account: Account,
    key: { id: string; name: string; approval_threshold: string | null },
    method: string,
    params: Params,
    semantics: { movements(params: Params): Movements | null; describe(params: Params): string },
  ): Promise<ApprovalDecision> {
    const thresholds = thresholdsOf(key.approval_threshold);
    const movements = semantics.movements(params);
    if (!movements) return { kind: "not_needed" };
    const over = assetsOverThreshold(movements, thresholds);
    if (over.length === 0) return { kind: "not_needed" };

    const { nonce: _nonce, otp: _otp, approval_id: sentId, ...fields } = params;
    const request = { keyId: key.id, method, fields };
    if (sentId !== undefined) {
      // Read as a scalar or not at all: a JSON object or list, or a form's nested field, names no approval
      // and never reaches String() (whose call of an object's own toString could throw). Every dialect's
      // unknownField has already refused an id that is not text.
      const approvalId = text(sentId);
      if (approvalId === null) return { kind: "invalid" };
      const now = this.clock.now();
      const spent = await this.db
        .updateTable("actions")
        .set({ state: "used", used_at: now })
        .where("id", "=", approvalId)
        .where("account_id", "=", account.id)
        .where("type", "=", API_APPROVAL)
        .where("digest", "=", actionDigest(API_APPROVAL, request))
        .where("state", "=", "confirmed")
        .where("expires_at", ">", now)
        .returning("id")
        .executeTakeFirst();
      return spent ? { kind: "approved" } : { kind: "invalid" };
    }
    const limits = over.map((asset) => `${asset} ${thresholds[asset]}`).join(", ");
    const approval = await this.actions.create(
      account,
      API_APPROVAL,
      request,
      `API key "${key.name}" — ${semantics.describe(params)} — above the key's approval threshold (${limits})`,
      undefined,
      APPROVAL_TTL_MS,
    );
    return { kind: "required", approval };
  }

  /** The owner approves a held request with a second factor, through the one action mechanism. */
  async confirm(
    account: Account,
    session: Session,
    approvalId: string,
    input: ConfirmInput,
    context: RequestContext,
  ) {
    const action = await this.actions.load(account, approvalId);
    if (action.type !== API_APPROVAL) throw notFound("That approval");
    return this.actions.confirm(account, session, approvalId, input, context);
  }

  /** This account's requests waiting for approval, newest first. */
  async pending(account: Account): Promise<ActionView[]> {
    return this.actions.pendingOfType(account, API_APPROVAL);
  }
}
