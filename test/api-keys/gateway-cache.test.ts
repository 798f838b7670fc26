import type { Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GatewayCache } from "../../src/api-keys/gateway-cache.js";
import { KrakenClient } from "../../src/client/kraken-client.js";
import { loadDataKey } from "../../src/crypto/data-key.js";
import { openStorage } from "../../src/db/database.js";
import type { Database } from "../../src/db/schema.js";
import { createKeyOwner } from "../helpers/factors.js";
import { ADMIN_TOKEN, Harness, SERVICE_TOKEN } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };
const service = { authorization: `Bearer ${SERVICE_TOKEN}` };

describe.each(engines)("the gateway's in-memory keys and accounts on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  let ipCounter = 0;
  const check = async (client: KrakenClient, ip = `198.18.7.${++ipCounter}`) => {
    const signed = client.sign("Balance");
    const response = await h.request("POST", "/v1/gateway/check", {
      headers: service,
      body: { path: signed.path, headers: signed.headers, body: signed.body, ip },
    });
    return response.json() as { allow: boolean; error?: string };
  };

  /** Straight to the database through `db`: nothing in the gateway's process is told. */
  const setPermissions = (db: Kysely<Database>, keyId: string, permissions: string[]) =>
    db
      .updateTable("api_keys")
      .set({ permissions: JSON.stringify(permissions) })
      .where("id", "=", keyId)
      .execute();

  const keyOwner = async () => {
    const owner = await createKeyOwner(
      h,
      { name: "cached", permissions: ["funds_query"] },
      { country: "GB" },
    );
    const { key } = owner;
    const client = new KrakenClient({ baseUrl: "http://unused.invalid", key: key.key, secret: key.secret });
    return { key, client, accountId: owner.accountId };
  };

  it("sees a change made behind its back (another process, the CLI) on the very next request", async () => {
    const { key, client } = await keyOwner();
    expect((await check(client)).allow).toBe(true);
    // As another process would: straight to the database, nothing in this process is told.
    await setPermissions(h.app.services.storage.db, key.id, ["trades_modify"]);
    expect(await check(client)).toEqual({ allow: false, error: "EGeneral:Permission denied" });
    await h.app.services.storage.db
      .updateTable("api_keys")
      .set({ disabled_at: Date.now() })
      .where("id", "=", key.id)
      .execute();
    expect(await check(client)).toEqual({ allow: false, error: "EAPI:Invalid key" });
  });

  it("applies a changed IP allowlist on the very next request, IPv4 written as IPv6 included", async () => {
    const { key, client } = await keyOwner();
    expect((await check(client)).allow).toBe(true);
    const setAllowlist = (cidrs: string[]) =>
      h.app.services.storage.db
        .updateTable("api_keys")
        .set({ ip_allowlist: JSON.stringify(cidrs) })
        .where("id", "=", key.id)
        .execute();
    await setAllowlist(["203.0.113.0/24", "2001:db8:7::/48"]);
    const refused = { allow: false, error: "EGeneral:Permission denied" };
    expect(await check(client)).toEqual(refused);
    expect((await check(client, "203.0.113.9")).allow).toBe(true);
    expect((await check(client, "::ffff:203.0.113.10")).allow).toBe(true);
    expect((await check(client, "2001:db8:7:1::5")).allow).toBe(true);
    expect(await check(client, "2001:db8:8::5")).toEqual(refused);
    expect(await check(client, "203.0.114.1")).toEqual(refused);
    await setAllowlist([]);
    expect((await check(client)).allow).toBe(true);
  });

  it("sees a change committed by another connection to the database on the very next request", async () => {
    const { key, client } = await keyOwner();
    expect((await check(client)).allow).toBe(true);
    expect((await check(client)).allow).toBe(true);
    const other = openStorage(h.storage.url);
    try {
      await setPermissions(other.db, key.id, ["trades_modify"]);
      expect(await check(client)).toEqual({ allow: false, error: "EGeneral:Permission denied" });
      await setPermissions(other.db, key.id, ["funds_query"]);
      expect((await check(client)).allow).toBe(true);
    } finally {
      await other.close();
    }
  });

  it("shares one generation read among the decisions of a turn, and never one begun before a decision asked", async () => {
    const { key } = await keyOwner();
    const { config, storage, accounts, capabilities } = h.app.services;
    const cache = new GatewayCache(
      storage.db,
      loadDataKey(config.secretKeyBase64, config.dataDir),
      accounts,
      (account) => capabilities.securityInputs(account),
      storage.sqlite,
      () => {},
    );
    await cache.refresh();
    expect((await cache.key(key.key))?.permissions).toEqual(["funds_query"]);
    // Two decisions asking in one turn share one read, made after both asked.
    const first = cache.refresh();
    expect(cache.refresh()).toBe(first);
    await first;
    const other = openStorage(h.storage.url);
    try {
      // Asked before the change was committed; the commit lets the event loop run (a read may start).
      const before = cache.refresh();
      await setPermissions(other.db, key.id, ["trades_modify"]);
      // Asked after the commit: whichever read it gets began after it asked, so it sees the change.
      await cache.refresh();
      expect((await cache.key(key.key))?.permissions).toEqual(["trades_modify"]);
      await before;
      if (storage.sqlite) {
        // Committed by another connection between two decisions of one turn (no await in between): the
        // shared read begins after both asked, so both see it.
        const asked = cache.refresh();
        other
          .sqlite!.prepare("update api_keys set permissions = ? where id = ?")
          .run(JSON.stringify(["funds_query"]), key.id);
        expect(cache.refresh()).toBe(asked);
        await asked;
        expect((await cache.key(key.key))?.permissions).toEqual(["funds_query"]);
      }
    } finally {
      await other.close();
    }
  });

  it("forgets a change that was rolled back, and still sees the next one committed", async () => {
    const { key, client } = await keyOwner();
    expect((await check(client)).allow).toBe(true);
    // A decision made while a transaction that disabled the key is still open, which then rolls back.
    let during: Promise<{ allow: boolean; error?: string }> | undefined;
    await h.app.services.storage.db
      .transaction()
      .execute(async (trx) => {
        await trx.updateTable("api_keys").set({ disabled_at: Date.now() }).where("id", "=", key.id).execute();
        during = check(client);
        await new Promise((resolve) => setTimeout(resolve, 50));
        throw new Error("rolled back");
      })
      .catch(() => undefined);
    expect((await during!).allow).toBe(true);
    expect((await check(client)).allow).toBe(true);
    // The next change raises the generation to the value the rolled-back one had: it must still count.
    await setPermissions(h.app.services.storage.db, key.id, ["trades_modify"]);
    expect(await check(client)).toEqual({ allow: false, error: "EGeneral:Permission denied" });
  });

  it("refuses a disabled account's keys on the very next request", async () => {
    const { client, accountId } = await keyOwner();
    expect((await check(client)).allow).toBe(true);
    const disabled = await h.request("PUT", `/v1/admin/accounts/${accountId}/disabled`, {
      headers: operator,
      body: { disabled: true },
    });
    expect(disabled.statusCode, disabled.body).toBe(200);
    expect(await check(client)).toEqual({ allow: false, error: "EAuth:Account temporary disabled" });
  });
});
