import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { createPortcullis, type Portcullis } from "../../src/app.js";
import { loadEnvConfig } from "../../src/config/env.js";
import { withSettings } from "../../src/config/settings.js";
import { openStorage, type Storage } from "../../src/db/database.js";
import { FakeClock } from "../../src/support/clock.js";
import { PUBLIC_URL, waitUntilReady } from "../helpers/harness.js";
import { openTestStorage, postgresUrl, redisUrl, type TestStorage } from "../helpers/storage.js";

/**
 * Two instances on one PostgreSQL schema, each with its own connections (and its own session cache):
 * a session ended through one is refused by the other on the very next request.
 */
describe.each([
  { name: "with Redis (cached sessions, revocations published)", redis: true },
  { name: "without Redis (no session cache on PostgreSQL)", redis: false },
])("session revocation across instances $name", ({ redis }) => {
  let shared: TestStorage;
  const storages: Storage[] = [];
  const instances: Portcullis[] = [];
  afterEach(async () => {
    for (const instance of instances.splice(0)) await instance.close();
    for (const storage of storages.splice(0)) await storage.close();
    await shared.dispose();
  });

  it("refuses on instance B a session ended on instance A", async () => {
    shared = await openTestStorage("postgres");
    const clock = new FakeClock(Date.now());
    const prefix = `portcullis-test:${randomBytes(6).toString("hex")}:`;
    for (let i = 0; i < 2; i += 1) {
      const storage = openStorage(postgresUrl, { schema: shared.schema });
      storages.push(storage);
      const instance = await createPortcullis({
        config: loadEnvConfig({
          PORTCULLIS_DATABASE_URL: shared.url,
          PORTCULLIS_DATA_DIR: shared.dataDir,
          PORTCULLIS_PUBLIC_URL: PUBLIC_URL,
          PORTCULLIS_BOT_CHECK: "off",
          ...(redis ? { PORTCULLIS_REDIS_URL: redisUrl } : {}),
        }),
        settings: withSettings({ signIn: { deviceApproval: false } }),
        storage,
        clock,
        logger: false,
        redisKeyPrefix: prefix,
      });
      if (instance.services.redis) await waitUntilReady(instance.services.redis);
      instances.push(instance);
    }
    const [a, b] = instances as [Portcullis, Portcullis];
    const id = await a.services.signUp.createVerified(
      {
        email: "two@example.test",
        username: "two_instances",
        password: "violet tractor mango 42",
        country: "DE",
      },
      { ip: "127.0.0.1", userAgent: null, location: null, country: null, city: null },
    );
    expect(id).toBeTruthy();
    const signIn = await a.http.inject({
      method: "POST",
      url: "/v1/sign-in",
      payload: { identifier: "two_instances", password: "violet tractor mango 42", client: "app" },
    });
    const token = signIn.json().token as string;
    const check = (instance: Portcullis) =>
      instance.http.inject({
        method: "GET",
        url: "/v1/session",
        headers: { authorization: `Bearer ${token}` },
      });
    // B reads (and, with Redis, caches) the session.
    expect((await check(b)).statusCode).toBe(200);
    expect((await check(b)).statusCode).toBe(200);
    const signOut = await a.http.inject({
      method: "DELETE",
      url: "/v1/session",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(signOut.statusCode).toBe(200);
    // The very next request on B is refused: with Redis, B reads the revocation generation before it
    // serves a cached session, whether or not the published message has arrived yet.
    expect((await check(b)).statusCode).toBe(401);
    expect((await check(a)).statusCode).toBe(401);
  });
});
