import type { ChildProcess } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { createPortcullis } from "../../src/app.js";
import { AuditLog } from "../../src/audit/audit-log.js";
import { loadEnvConfig } from "../../src/config/env.js";
import { loadDataKey } from "../../src/crypto/data-key.js";
import { openStorage } from "../../src/db/database.js";
import { systemClock } from "../../src/support/clock.js";
import { freePort } from "../helpers/free-port.js";
import { Harness, newUser } from "../helpers/harness.js";
import { exited, startServe } from "../helpers/serve-process.js";
import { engines, openTestStorage, type TestStorage } from "../helpers/storage.js";

const PASSWORD = "violet tractor mango 42";
const context = { ip: "127.0.0.1", userAgent: null, location: null, country: null, city: null };

describe.each(engines)("kill -9 during sign-ins on %s", (engine) => {
  let storage: TestStorage | null = null;
  let child: ChildProcess | null = null;
  afterEach(async () => {
    child?.kill("SIGKILL");
    await storage?.dispose();
  });

  it("loses no acknowledged audit entry and leaves the hash chain valid", async () => {
    storage = await openTestStorage(engine);
    const env = {
      PORTCULLIS_DATABASE_URL: storage.url,
      PORTCULLIS_DATA_DIR: storage.dataDir,
      PORTCULLIS_BOT_CHECK: "off",
      PORTCULLIS_TRUSTED_PROXIES: "127.0.0.1",
    };
    // Accounts made by an operator beforehand, then that instance is gone.
    const setup = await createPortcullis({
      config: loadEnvConfig({ ...env, PORTCULLIS_PUBLIC_URL: "http://127.0.0.1" }),
      storage: openStorage(storage.url),
      logger: false,
    });
    const usernames: string[] = [];
    for (let i = 0; i < 8; i += 1) {
      const user = newUser();
      await setup.services.signUp.createVerified({ ...user, password: PASSWORD }, context);
      usernames.push(user.username);
    }
    await setup.close();
    await setup.services.storage.close();

    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    child = await startServe(env, port);

    // Sign-ins, right and wrong, from many addresses, until the process is killed mid-flight.
    const answered = { ok: 0, wrong: 0 };
    let n = 0;
    let killed = false;
    const signInLoop = async () => {
      while (!killed) {
        n += 1;
        const right = n % 3 !== 0;
        const response = await fetch(`${url}/v1/sign-in`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-forwarded-for": `10.9.${n >> 8}.${n & 255}` },
          body: JSON.stringify({
            identifier: usernames[n % usernames.length],
            password: right ? PASSWORD : "not the password",
            client: "app",
          }),
        }).catch(() => null);
        if (response?.status === 200) answered.ok += 1;
        else if (response?.status === 401) answered.wrong += 1;
      }
    };
    const loops = Array.from({ length: 6 }, () => signInLoop());
    while (answered.ok + answered.wrong < 30) await new Promise((resolve) => setTimeout(resolve, 20));
    child.kill("SIGKILL");
    killed = true;
    await Promise.all(loops);
    await exited(child);

    const db = openStorage(storage.url);
    try {
      // The chain is keyed with the deployment's data key, kept in its data folder in development.
      const dataKey = loadDataKey(undefined, storage.dataDir);
      const audit = new AuditLog(db.db, systemClock, dataKey.derive("audit-chain"));
      const verified = await audit.verify();
      expect(verified.ok, JSON.stringify(verified)).toBe(true);
      const entries = await audit.list({ events: ["sign_in.password"], limit: 10_000 });
      // Every answer was sent after its entry was committed: none of them can be missing.
      expect(entries.filter((e) => e.outcome === "success").length).toBeGreaterThanOrEqual(answered.ok);
      // A 401 is a wrong password, or an account restricted by the wrong ones (refused unchecked).
      expect(entries.filter((e) => e.outcome !== "success").length).toBeGreaterThanOrEqual(answered.wrong);
      expect(answered.ok).toBeGreaterThan(0);
    } finally {
      await db.close();
    }
  }, 90_000);
});

describe.each(engines)("a credential-stuffing run on %s", (engine) => {
  let h: Harness;
  afterEach(async () => {
    await h?.close();
  });

  it("leaves the legitimate user's sign-in working and lets no guess through", async () => {
    h = await Harness.create(engine, { env: { PORTCULLIS_BOT_CHECK: "adaptive" } });
    const owner = await h.createVerifiedUser();
    const others = await Promise.all(Array.from({ length: 12 }, () => h.createVerifiedUser()));
    // Leaked pairs: real usernames and emails with wrong passwords (the owner's among them, twice), and
    // names that do not exist, from 80 addresses, a few tries each.
    const identifiers = [
      owner.username,
      owner.email,
      ...others.flatMap((u) => [u.username, u.email]),
      ...Array.from({ length: 60 }, (_, i) => `leaked_${i}@example.test`),
    ];
    let ip = 0;
    const attempts = await Promise.all(
      identifiers.flatMap((identifier) =>
        [1, 2].map(async () => {
          ip += 1;
          const response = await h.request("POST", "/v1/sign-in", {
            body: { identifier, password: `Summer2024!${ip}`, botCheck: await h.botCheck() },
            ip: `100.64.${ip % 80}.${(ip >> 3) % 250}`,
          });
          return response.statusCode;
        }),
      ),
    );
    expect(attempts.filter((status) => status === 200)).toEqual([]);
    expect(attempts.every((status) => status === 401 || status === 429 || status === 400)).toBe(true);

    // The owner, from their own address, signs in as usual.
    const signIn = await h.signIn(owner.username, owner.password, { ip: "192.0.2.10" });
    expect(signIn.statusCode, signIn.body).toBe(200);
    expect(signIn.json()).toMatchObject({ state: "authenticated", session: { methods: ["password"] } });
  }, 120_000);
});
