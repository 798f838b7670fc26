import type { Kysely, Selectable } from "kysely";
import type { AccountRepository } from "../accounts/accounts.js";
import type { AuditLog } from "../audit/audit-log.js";
import { newId } from "../crypto/tokens.js";
import type { Database, WithdrawalAddressesTable } from "../db/schema.js";
import type { OneTimeTokens } from "../flows/one-time-tokens.js";
import { securityDetails } from "../notify/templates.js";
import type { Clock } from "../support/clock.js";
import { iso } from "../support/clock.js";
import { notFound, Problem } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import { type ChangeRequest, holdForEmailedChange, type SettingChanges } from "./setting-changes.js";

const HOUR = 3_600_000;
/** An address is usable this long after its owner confirmed it (docs/behaviour.md §8: hold before first use). */
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
    private readonly changes: SettingChanges,
    private readonly tokens: OneTimeTokens,
    private readonly audit: AuditLog,
    private readonly accounts: AccountRepository,
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

  async add(request: ChangeRequest, input: { asset: string; address: string; label: string }) {
    const { account, context } = request;
    const params = { asset: input.asset, address: input.address, label: input.label };
    const stepUp = {
      type: "add_withdrawal_address",
      params,
      summary: `Add ${input.asset} address ${shortAddress(input)}`,
    };
    return this.changes.run(request, { stepUp }, async (trx) => {
      const row: AddressRow = {
        id: newId(),
        account_id: account.id,
        ...params,
        created_at: this.clock.now(),
        confirmed_at: null,
        usable_from: null,
        removed_at: null,
      };
      await trx.insertInto("withdrawal_addresses").values(row).execute();
      const token = await this.tokens.issue(
        "confirm_address",
        account.id,
        CONFIRMATION_TTL_MS,
        { addressId: row.id },
        trx,
      );
      const link = new URL("/confirm-address", this.publicUrl);
      link.searchParams.set("token", token);
      return {
        result: describeAddress(row, this.clock.now()),
        event: "withdrawal_address.added",
        details: { addressId: row.id, asset: row.asset },
        emails: [
          {
            kind: "confirm_withdrawal_address" as const,
            asset: row.asset,
            address: row.address,
            label: row.label,
            link: link.href,
            ...securityDetails(context, this.clock.now()),
          },
        ],
      };
    });
  }

  /**
   * The emailed link: the address is confirmed and its hold before first use starts. Finishing the
   * addition is a setting change too: refused while the Global Settings Lock is on or the account is
   * frozen (the link stays unspent), checked with the account's row held.
   */
  async confirm(token: string, context: RequestContext) {
    const now = this.clock.now();
    const row = await this.db.transaction().execute(async (trx) => {
      const { accountId, data } = await this.tokens.consume("confirm_address", token, trx);
      await holdForEmailedChange(this.accounts, accountId, now, trx);
      const confirmed = await trx
        .updateTable("withdrawal_addresses")
        .set({ confirmed_at: now, usable_from: now + ADDRESS_HOLD_MS })
        .where("id", "=", String(data?.addressId ?? ""))
        .where("account_id", "=", accountId)
        .where("confirmed_at", "is", null)
        .where("removed_at", "is", null)
        .returningAll()
        .executeTakeFirst();
      if (!confirmed) throw notFound("That address");
      await this.audit.append(
        {
          event: "withdrawal_address.confirmed",
          outcome: "success",
          accountId,
          details: { addressId: confirmed.id },
        },
        context,
        trx,
      );
      return confirmed;
    });
    return describeAddress(row, now);
  }

  async remove(request: ChangeRequest, addressId: string) {
    const { account } = request;
    const row = await this.find(account.id, addressId);
    const stepUp = {
      type: "remove_withdrawal_address",
      // What the owner sees in the confirmation: the address itself, not only its id.
      params: { addressId, asset: row.asset, address: row.address, label: row.label },
      summary: `Remove address ${shortAddress(row)}`,
    };
    await this.changes.run(request, { stepUp }, async (trx) => {
      const removed = await trx
        .updateTable("withdrawal_addresses")
        .set({ removed_at: this.clock.now() })
        .where("id", "=", row.id)
        .where("removed_at", "is", null)
        .returning("id")
        .executeTakeFirst();
      if (!removed) throw notFound("That withdrawal address");
      return {
        result: null,
        event: "withdrawal_address.removed",
        details: { addressId },
        change: `removed withdrawal address ${shortAddress(row)}`,
      };
    });
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
