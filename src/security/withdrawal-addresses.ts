import type { Kysely, Selectable } from "kysely";
import type { Account } from "../accounts/accounts.js";
import type { ActionService } from "../actions/actions.js";
import type { AuditLog } from "../audit/audit-log.js";
import { newId } from "../crypto/tokens.js";
import type { Database, WithdrawalAddressesTable } from "../db/schema.js";
import type { OneTimeTokens } from "../flows/one-time-tokens.js";
import type { Outbox } from "../notify/outbox.js";
import { securityDetails } from "../notify/templates.js";
import type { Clock } from "../support/clock.js";
import { iso } from "../support/clock.js";
import { notFound, Problem } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";

const HOUR = 3_600_000;
/** An address is usable this long after its owner confirmed it (SPEC §8: hold before first use). */
export const ADDRESS_HOLD_MS = 48 * HOUR;
const CONFIRMATION_TTL_MS = 24 * HOUR;

export type AddressRow = Selectable<WithdrawalAddressesTable>;

export function describeAddress(row: AddressRow, now: number) {
  const state =
    row.confirmed_at === null
      ? "pending_confirmation"
      : row.usable_from !== null && row.usable_from > now
        ? "on_hold"
        : "active";
  return {
    id: row.id,
    asset: row.asset,
    address: row.address,
    label: row.label,
    state,
    createdAt: iso(row.created_at),
    usableFrom: row.usable_from === null ? null : iso(row.usable_from),
  };
}

/** "bc1qxy2k…x0wlh (Cold wallet)": how an address appears in summaries the owner confirms. */
export function shortAddress(row: Pick<AddressRow, "address" | "label">): string {
  const address =
    row.address.length > 16 ? `${row.address.slice(0, 8)}…${row.address.slice(-6)}` : row.address;
  return `${address} (${row.label})`;
}

/**
 * The withdrawal address book: adding needs a step-up and then the owner's confirmation from the
 * emailed link; a confirmed address waits out a hold before its first use; removing needs a step-up.
 * Withdrawals go only to active addresses.
 */
export class WithdrawalAddressBook {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly actions: ActionService,
    private readonly tokens: OneTimeTokens,
    private readonly outbox: Outbox,
    private readonly audit: AuditLog,
    private readonly publicUrl: URL,
  ) {}

  async list(accountId: string) {
    const rows = await this.db
      .selectFrom("withdrawal_addresses")
      .selectAll()
      .where("account_id", "=", accountId)
      .where("removed_at", "is", null)
      .orderBy("created_at")
      .execute();
    const now = this.clock.now();
    return rows.map((row) => describeAddress(row, now));
  }

  async add(
    account: Account,
    actionId: string | undefined,
    input: { asset: string; address: string; label: string },
    context: RequestContext,
  ) {
    const params = { asset: input.asset, address: input.address, label: input.label };
    await this.actions.requireStepUp(
      account,
      actionId,
      "add_withdrawal_address",
      params,
      `Add ${input.asset} address ${shortAddress(input)}`,
    );
    const row: AddressRow = {
      id: newId(),
      account_id: account.id,
      ...params,
      created_at: this.clock.now(),
      confirmed_at: null,
      usable_from: null,
      removed_at: null,
    };
    await this.db.insertInto("withdrawal_addresses").values(row).execute();
    const token = await this.tokens.issue("confirm_address", account.id, CONFIRMATION_TTL_MS, {
      addressId: row.id,
    });
    const link = new URL("/confirm-address", this.publicUrl);
    link.searchParams.set("token", token);
    await this.outbox.notify(account, {
      kind: "confirm_withdrawal_address",
      asset: row.asset,
      address: row.address,
      label: row.label,
      link: link.href,
      ...securityDetails(context, this.clock.now()),
    });
    await this.audit.append(
      {
        event: "withdrawal_address.added",
        outcome: "success",
        accountId: account.id,
        details: { addressId: row.id, asset: row.asset },
      },
      context,
    );
    return describeAddress(row, this.clock.now());
  }

  /** The emailed link: the address is confirmed and its hold before first use starts. */
  async confirm(token: string, context: RequestContext) {
    const { accountId, data } = await this.tokens.consume("confirm_address", token);
    const now = this.clock.now();
    const row = await this.db
      .updateTable("withdrawal_addresses")
      .set({ confirmed_at: now, usable_from: now + ADDRESS_HOLD_MS })
      .where("id", "=", String(data?.addressId ?? ""))
      .where("account_id", "=", accountId)
      .where("confirmed_at", "is", null)
      .where("removed_at", "is", null)
      .returningAll()
      .executeTakeFirst();
    if (!row) throw notFound("That address");
    await this.audit.append(
      {
        event: "withdrawal_address.confirmed",
        outcome: "success",
        accountId,
        details: { addressId: row.id },
      },
      context,
    );
    return describeAddress(row, now);
  }

  async remove(account: Account, actionId: string | undefined, addressId: string, context: RequestContext) {
    const row = await this.find(account.id, addressId);
    await this.actions.requireStepUp(
      account,
      actionId,
      "remove_withdrawal_address",
      // What the owner sees in the confirmation: the address itself, not only its id.
      { addressId, asset: row.asset, address: row.address, label: row.label },
      `Remove address ${shortAddress(row)}`,
    );
    await this.db
      .updateTable("withdrawal_addresses")
      .set({ removed_at: this.clock.now() })
      .where("id", "=", row.id)
      .execute();
    await this.audit.append(
      {
        event: "withdrawal_address.removed",
        outcome: "success",
        accountId: account.id,
        details: { addressId },
      },
      context,
    );
  }

  async find(accountId: string, addressId: string): Promise<AddressRow> {
    const row = await this.db
      .selectFrom("withdrawal_addresses")
      .selectAll()
      .where("account_id", "=", accountId)
      .where("id", "=", addressId)
      .where("removed_at", "is", null)
      .executeTakeFirst();
    if (!row) throw notFound("That withdrawal address");
    return row;
  }

  /** A withdrawal may go here now, or the reason why not (unconfirmed: 409; on hold: 423 with its end). */
  async assertUsable(accountId: string, addressId: string, asset: string): Promise<AddressRow> {
    const row = await this.find(accountId, addressId);
    if (row.asset !== asset) {
      throw new Problem(400, "invalid_request", `That address is for ${row.asset}, not ${asset}.`, {
        details: [{ field: "addressId", message: `Choose an address for ${asset}.` }],
      });
    }
    if (row.confirmed_at === null) {
      throw new Problem(
        409,
        "conflict",
        "Confirm this address from the email we sent before withdrawing to it.",
      );
    }
    if (row.usable_from !== null && row.usable_from > this.clock.now()) {
      throw new Problem(423, "on_hold", `New addresses can be used from ${iso(row.usable_from)}.`, {
        until: iso(row.usable_from),
        reason: "new_address",
      });
    }
    return row;
  }
}
