import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { createPortcullis } from "../../src/app.js";
import { AuditLog } from "../../src/audit/audit-log.js";
import { KrakenClient } from "../../src/client/kraken-client.js";
import { loadEnvConfig } from "../../src/config/env.js";
import { loadDataKey } from "../../src/crypto/data-key.js";
import { newId } from "../../src/crypto/tokens.js";
import { openStorage } from "../../src/db/database.js";
import { systemClock } from "../../src/support/clock.js";
import { freePort } from "../helpers/free-port.js";
import { ADMIN_TOKEN, newUser, SERVICE_TOKEN } from "../helpers/harness.js";
import { exited, startServe } from "../helpers/serve-process.js";
import { engines, openTestStorage, type TestStorage } from "../helpers/storage.js";

const context = { ip: "127.0.0.1", userAgent: null, location: null, country: null, city: null };

describe.each(engines)("kill -9 during a gateway load on %s", (engine) => {
  let storage: TestStorage | null = null;
  let child: ChildProcess | null = null;
  afterEach(async () => {
    child?.kill("SIGKILL");
    await storage?.dispose();
  });

  it("loses no allowed decision's audit record, and forgets no nonce it acknowledged", async () => {
    storage = await openTestStorage(engine);
    const env = {
      PORTCULLIS_DATABASE_URL: storage.url,
      PORTCULLIS_DATA_DIR: storage.dataDir,
      PORTCULLIS_BOT_CHECK: "off",
      PORTCULLIS_ADMIN_TOKEN: ADMIN_TOKEN,
      PORTCULLIS_SERVICE_TOKEN: SERVICE_TOKEN,
    };
    // A pro account with keys, made beforehand by an instance that is then gone.
    const setup = await createPortcullis({
      config: loadEnvConfig({ ...env, PORTCULLIS_PUBLIC_URL: "http://127.0.0.1" }),
      storage: openStorage(storage.url),
      logger: false,
    });
    const user = newUser();
    await setup.services.signUp.createVerified(user, context);
    const account = (await setup.services.accounts.findByUsername(user.username))!;
    const { db } = setup.services.storage;
    await db.updateTable("accounts").set({ tier: "pro" }).where("id", "=", account.id).execute();
    const dataKey = loadDataKey(undefined, storage.dataDir);
    const keys: { key: string; secret: string }[] = [];
    for (let i = 0; i < 6; i += 1) {
      const id = newId();
      const secret = randomBytes(64).toString("base64");
      const key = randomBytes(42).toString("base64");
      await db
        .insertInto("api_keys")
        .values({
          id,
          account_id: account.id,
          name: `crash-${i}`,
          key,
          secret_sealed: dataKey.seal(secret, id),
          permissions: JSON.stringify(["funds_query"]),
          ip_allowlist: "[]",
          valid_until: null,
          query_from: null,
          query_to: null,
          nonce_window: 0,
          last_nonce: "0".repeat(20),
          created_at: Date.now(),
          last_used_at: null,
          disabled_at: null,
          otp_type: null,
          otp_sealed: null,
          otp_last_step: null,
          approval_threshold: null,
        })
        .execute();
      keys.push({ key, secret });
    }
    await setup.close();
    await setup.services.storage.close();

    const port = await freePort();
    child = await startServe(env, port);
    const url = `http://127.0.0.1:${port}`;
    const check = (signed: ReturnType<KrakenClient["sign"]>, ip: string) =>
      fetch(`${url}/v1/gateway/check`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${SERVICE_TOKEN}` },
        body: JSON.stringify({ path: signed.path, headers: signed.headers, body: signed.body, ip }),
      }).then(
        (r) => (r.ok ? (r.json() as Promise<{ allow: boolean }>) : null),
        () => null,
      );

    // One loop per key, each request signed with a rising nonce; stop at the kill.
    const acknowledged: ReturnType<KrakenClient["sign"]>[][] = keys.map(() => []);
    let stop = false;
    const loop = async (index: number) => {
      const client = new KrakenClient({ baseUrl: url, ...keys[index]! });
      while (!stop) {
        const signed = client.sign("Balance");
        const answer = await check(signed, `10.20.0.${index + 1}`);
        if (answer?.allow) acknowledged[index]!.push(signed);
        else if (answer === null && stop) break;
      }
    };
    const loops = keys.map((_, index) => loop(index));
    while (acknowledged.reduce((n, list) => n + list.length, 0) < 60)
      await new Promise((resolve) => setTimeout(resolve, 10));
    child.kill("SIGKILL");
    stop = true;
    await Promise.all(loops);
    await exited(child);
    const allowed = acknowledged.reduce((n, list) => n + list.length, 0);

    const reopened = openStorage(storage.url);
    try {
      const audit = new AuditLog(reopened.db, systemClock, dataKey.derive("audit-chain"));
      const verified = await audit.verify();
      expect(verified.ok, JSON.stringify(verified)).toBe(true);
      const entries = await audit.list({ events: ["api_key.request"], limit: 10_000 });
      // Every allow was answered after its audit record was committed.
      expect(entries.filter((e) => e.outcome === "success").length).toBeGreaterThanOrEqual(allowed);
    } finally {
      await reopened.close();
    }

    // After a restart, no acknowledged request can be replayed: its nonce was durable before the answer.
    child = await startServe(env, port);
    for (const [index, list] of acknowledged.entries()) {
      const last = list.at(-1);
      if (!last) continue;
      const replay = await fetch(`${url}/v1/gateway/check`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${SERVICE_TOKEN}` },
        body: JSON.stringify({
          path: last.path,
          headers: last.headers,
          body: last.body,
          ip: `10.20.1.${index + 1}`,
        }),
      });
      expect(await replay.json()).toEqual({ allow: false, error: "EAPI:Invalid nonce" });
    }
  }, 120_000);
});
