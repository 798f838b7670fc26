import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { createPortcullis } from "../../src/app.js";
import { AuditLog } from "../../src/audit/audit-log.js";
import { loadEnvConfig } from "../../src/config/env.js";
import { loadDataKey } from "../../src/crypto/data-key.js";
import { openStorage } from "../../src/db/database.js";
import { systemClock } from "../../src/support/clock.js";
import { freePort } from "../helpers/free-port.js";
import { newUser } from "../helpers/harness.js";
import { exited, startServe } from "../helpers/serve-process.js";
import { engines, openTestStorage, type TestStorage } from "../helpers/storage.js";

const PASSWORD = "violet tractor mango 42";
const context = { ip: "127.0.0.1", userAgent: null, location: null, country: null, city: null };

describe.each(engines)("kill -9 during setting changes on %s", (engine) => {
  let storage: TestStorage | null = null;
  let child: ChildProcess | null = null;
  afterEach(async () => {
    child?.kill("SIGKILL");
    await storage?.dispose();
  });

  it("leaves every change wholly there (row, step-up spent, email queued, audit entry) or wholly absent", async () => {
    storage = await openTestStorage(engine);
    const env = {
      PORTCULLIS_DATABASE_URL: storage.url,
      PORTCULLIS_DATA_DIR: storage.dataDir,
      PORTCULLIS_BOT_CHECK: "off",
    };
    // Owners and their sessions made beforehand by an operator's instance, which is then gone.
    const setup = await createPortcullis({
      config: loadEnvConfig({ ...env, PORTCULLIS_PUBLIC_URL: "http://127.0.0.1" }),
      storage: openStorage(storage.url),
      logger: false,
    });
    const owners: { id: string; token: string }[] = [];
    for (let i = 0; i < 6; i += 1) {
      const user = newUser();
      await setup.services.signUp.createVerified({ ...user, password: PASSWORD }, context);
      const account = await setup.services.accounts.findByUsername(user.username);
      const { token } = await setup.services.sessions.issue({
        accountId: account!.id,
        client: "app",
        methods: ["password"],
        deviceId: null,
        context,
      });
      owners.push({ id: account!.id, token });
    }
    await setup.close();
    await setup.services.storage.close();

    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    child = await startServe(env, port);

    const call = (method: string, path: string, token: string, body: unknown, actionId?: string) =>
      fetch(`${url}${path}`, {
        method,
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${token}`,
          ...(actionId ? { "x-action-id": actionId } : {}),
        },
        body: JSON.stringify(body),
      }).catch(() => null);

    // Each owner adds withdrawal addresses one after another (step-up with the password, then the change),
    // all owners at once, until the process is killed mid-flight.
    const acknowledged: string[] = [];
    let killed = false;
    const ownerLoop = async (owner: { id: string; token: string }) => {
      let token = owner.token;
      while (!killed) {
        const body = {
          asset: "BTC",
          address: `bc1q${randomBytes(16).toString("hex")}`,
          label: "Cold",
        };
        const asked = await call("POST", "/v1/withdrawal-addresses", token, body);
        if (asked?.status !== 403) return;
        const { actionId } = (await asked.json()).error as { actionId: string };
        const confirmed = await call("POST", `/v1/actions/${actionId}/confirm`, token, {
          password: PASSWORD,
        });
        if (confirmed?.status !== 200) return;
        token = ((await confirmed.json()) as { token?: string }).token ?? token;
        const done = await call("POST", "/v1/withdrawal-addresses", token, body, actionId);
        if (done?.status !== 202) return;
        acknowledged.push(((await done.json()) as { id: string }).id);
      }
    };
    const loops = owners.map((owner) => ownerLoop(owner));
    while (acknowledged.length < 8) {
      if (child.exitCode !== null) throw new Error("the server stopped before the kill");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    child.kill("SIGKILL");
    killed = true;
    await Promise.all(loops);
    await exited(child);

    const db = openStorage(storage.url);
    try {
      const dataKey = loadDataKey(undefined, storage.dataDir);
      const audit = new AuditLog(db.db, systemClock, dataKey.derive("audit-chain"));
      const verified = await audit.verify();
      expect(verified.ok, JSON.stringify(verified)).toBe(true);
      const rows = await db.db.selectFrom("withdrawal_addresses").select(["id", "account_id"]).execute();
      const entries = await audit.list({ events: ["withdrawal_address.added"], limit: 10_000 });
      const emails = await db.db
        .selectFrom("outbox")
        .select("account_id")
        .where("kind", "=", "confirm_withdrawal_address")
        .execute();
      const spent = await db.db
        .selectFrom("actions")
        .select("account_id")
        .where("type", "=", "add_withdrawal_address")
        .where("state", "=", "used")
        .execute();
      // Every answered change is there; none is there in part.
      const ids = new Set(rows.map((r) => r.id));
      for (const id of acknowledged) expect(ids.has(id)).toBe(true);
      expect(new Set(entries.map((e) => String(e.details.addressId)))).toEqual(ids);
      for (const owner of owners) {
        const count = (list: { account_id: string | null }[]) =>
          list.filter((r) => r.account_id === owner.id).length;
        const own = count(rows);
        expect(entries.filter((e) => e.accountId === owner.id)).toHaveLength(own);
        expect(count(emails)).toBe(own);
        expect(count(spent)).toBe(own);
      }
      expect(rows.length).toBeGreaterThanOrEqual(acknowledged.length);
    } finally {
      await db.close();
    }
  }, 120_000);
});
