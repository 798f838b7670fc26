import type { Kysely, Transaction } from "kysely";
import type { AccountRepository } from "../accounts/accounts.js";
import type { Database } from "../db/schema.js";
import type { Outbox } from "../notify/outbox.js";
import { securityDetails } from "../notify/templates.js";
import type { Clock } from "../support/clock.js";
import { describePlace, type GeoLocator } from "../support/geo.js";
import { networkOf } from "../support/network.js";
import type { RequestContext } from "../support/request-context.js";

const HOUR = 3_600_000;
/** Beyond this many entries the memory of recently recorded places starts again empty. */
const RECENT_LIMIT = 100_000;

/** Whether `key` was recorded within the last hour. */
const seenWithinHour = (recent: Map<string, number>, key: string, now: number) =>
  (recent.get(key) ?? Number.NEGATIVE_INFINITY) > now - HOUR;

/** Records `key` as seen now; past RECENT_LIMIT entries the map starts again empty (memory stays bounded). */
function remember(recent: Map<string, number>, key: string, now: number): void {
  if (recent.size >= RECENT_LIMIT) recent.clear();
  recent.set(key, now);
}

export interface Use {
  accountId: string;
  context: RequestContext;
  /** How the account was used, as the email says it: "by a sign-in", "by the API key with id …". */
  by: string;
  /** The known device of a sign-in: its network counts as a place of its own. */
  deviceId?: string | null;
  /** Record only: another email about this use already names its place (a new device's). */
  quiet?: boolean;
}

interface Place {
  key: string;
  /** The group whose first entry is recorded silently: the account's countries, or one device's networks. */
  group: string;
  label: string;
}

/**
 * New-place alerts: the countries an account is used from (sessions and API keys) and, for each known
 * device, the networks it signs in from (IPv4 /24, IPv6 /48). The first use from a place not seen before
 * emails the owner with the place and the lock link. The insert that adds the place decides, so of any
 * number of uses from one new place, on any instance, exactly one emails: at most one per place, ever
 * until it is forgotten. The first place of a group (an account's first country, a device's first
 * network) is only recorded: there is nothing yet to compare it with.
 */
export class NewPlaces {
  /** "<account>|<place>" → when this instance last recorded it: a known place is written once an hour at most. */
  private readonly recent = new Map<string, number>();
  /** Uses (account, address, device) whose every place was recorded, by when. */
  private readonly recentUses = new Map<string, number>();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly geo: GeoLocator,
    private readonly outbox: Outbox,
    private readonly accounts: AccountRepository,
  ) {}

  /** Records the places of one use, emailing the owner about a new one; in the use's transaction when given. */
  async observe(use: Use, trx?: Transaction<Database>): Promise<void> {
    const db: Kysely<Database> = trx ?? this.db;
    const now = this.clock.now();
    // The places of a use follow from its account, address and device: a use seen in full within the
    // hour adds nothing, and a bot calling all day from one address costs no lookup at all.
    const useKey = `${use.accountId}|${use.context.ip}|${use.deviceId ?? ""}`;
    if (seenWithinHour(this.recentUses, useKey, now)) return;
    const fresh: Place[] = [];
    for (const place of this.placesOf(use)) {
      const cacheKey = `${use.accountId}|${place.key}`;
      if (seenWithinHour(this.recent, cacheKey, now)) continue;
      const firstOfGroup =
        (await db
          .selectFrom("account_places")
          .select("place")
          .where("account_id", "=", use.accountId)
          .where("place", "like", `${place.group}%`)
          .limit(1)
          .executeTakeFirst()) === undefined;
      const added = await db
        .insertInto("account_places")
        .values({ account_id: use.accountId, place: place.key, first_seen_at: now, last_seen_at: now })
        .onConflict((oc) => oc.columns(["account_id", "place"]).doNothing())
        .returning("place")
        .executeTakeFirst();
      if (!added) {
        await db
          .updateTable("account_places")
          .set({ last_seen_at: now })
          .where("account_id", "=", use.accountId)
          .where("place", "=", place.key)
          .execute();
      } else if (!firstOfGroup) {
        fresh.push(place);
      }
      remember(this.recent, cacheKey, now);
    }
    remember(this.recentUses, useKey, now);
    if (fresh.length === 0 || use.quiet) return;
    const account = await this.accounts.findById(use.accountId, db);
    if (!account) return;
    const location = use.context.location ?? describePlace(this.geo.locate(use.context.ip));
    // One email for one use: a new country says more than a new network.
    await this.outbox.notify(
      account,
      {
        kind: "new_place",
        place: fresh[0]!.label,
        by: use.by,
        ...securityDetails({ ...use.context, location }, now),
      },
      trx,
    );
  }

  private placesOf(use: Use): Place[] {
    const { ip } = use.context;
    const located = this.geo.locate(ip);
    const where = describePlace(located);
    const places: Place[] = [];
    if (located.country) {
      places.push({ key: `country:${located.country}`, group: "country:", label: where ?? located.country });
    }
    if (use.deviceId) {
      const network = networkOf(ip);
      places.push({
        key: `network:${use.deviceId}:${network}`,
        group: `network:${use.deviceId}:`,
        label: `the network ${network}${where ? ` (${where})` : ""}`,
      });
    }
    return places;
  }
}
