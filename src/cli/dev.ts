import type { Services } from "../services.js";
import { Problem } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";

/**
 * Development only: makes an account's withdrawal addresses usable now, as if each had been confirmed
 * from its email and had waited its 48 hours, so a newcomer can try a withdrawal (the portal's
 * /demo/withdraw) in the first minutes. Refused outside development; every address it touches is audited.
 * Returns the addresses it changed.
 */
export async function makeAddressesReady(
  services: Services,
  accountId: string,
  context: RequestContext,
  addressId?: string,
): Promise<{ id: string; asset: string; address: string; label: string }[]> {
  if (services.config.env !== "development")
    throw new Problem(
      403,
      "forbidden",
      "Making an address ready at once is for development only; in production an address waits 48 hours.",
    );
  const now = services.clock.now();
  let query = services.storage.db
    .updateTable("withdrawal_addresses")
    .set((eb) => ({ confirmed_at: eb.fn.coalesce("confirmed_at", eb.val(now)), usable_from: now }))
    .where("account_id", "=", accountId)
    .where("removed_at", "is", null)
    .where((eb) => eb.or([eb("confirmed_at", "is", null), eb("usable_from", ">", now)]));
  if (addressId) query = query.where("id", "=", addressId);
  const changed = await query.returning(["id", "asset", "address", "label"]).execute();
  for (const row of changed) {
    await services.audit.append(
      {
        event: "withdrawal_address.made_ready",
        outcome: "success",
        accountId,
        actor: "operator",
        details: { addressId: row.id, reason: "development" },
      },
      context,
    );
  }
  return changed;
}
