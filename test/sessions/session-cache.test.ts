import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Harness, type TestUser } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

const MINUTE = 60_000;

/**
 * A request whose session is cached passes authentication without a promise (`cachedPrincipal`). It may
 * only ever answer what `authenticate` answers: on one instance, within the cache's time to live, and
 * never for a session ended, timed out or due for its last-seen touch.
 */
describe.each(engines)("sessions answered from the cache on %s", (engine) => {
  let h: Harness;
  let user: TestUser;
  beforeAll(async () => {
    h = await Harness.create(engine);
    user = await h.createVerifiedUser();
  });
  afterAll(async () => {
    await h.close();
  });

  const sessions = () => h.services.sessions;
  // One instance on SQLite caches sessions; PostgreSQL without Redis has no cache (another instance
  // could end a session unseen), so every check reads the row.
  const caches = engine === "sqlite";

  it("answers a cached session as authenticate does, and nothing it has not read", async () => {
    const token = await h.sessionToken(user);
    expect(sessions().cachedPrincipal(token)).toBeUndefined();
    const read = await sessions().authenticate(token);
    expect(read).not.toBeNull();
    if (caches) expect(sessions().cachedPrincipal(token)).toBe(read);
    else expect(sessions().cachedPrincipal(token)).toBeUndefined();
    expect(sessions().cachedPrincipal("")).toBeUndefined();
    expect(sessions().cachedPrincipal("x".repeat(129))).toBeUndefined();
    expect(sessions().cachedPrincipal(`${token}x`)).toBeUndefined();
  });

  it("leaves a signed-out session to authenticate, which refuses it", async () => {
    const token = await h.sessionToken(user);
    expect((await h.request("GET", "/v1/session", { token })).statusCode).toBe(200);
    expect((await h.request("DELETE", "/v1/session", { token })).statusCode).toBe(200);
    expect(sessions().cachedPrincipal(token)).toBeUndefined();
    expect((await h.request("GET", "/v1/session", { token })).statusCode).toBe(401);
  });

  it("leaves the cache's expiry, the touch and the idle timeout to authenticate", async () => {
    const token = await h.sessionToken(user);
    const before = await sessions().authenticate(token);
    const signedInAt = before!.session.lastSeenAt;
    // Past the cache's time to live (and short of the touch): read again, and cached again.
    h.clock.advance(MINUTE - 1000);
    expect(sessions().cachedPrincipal(token)).toBeUndefined();
    expect((await h.request("GET", "/v1/session", { token })).statusCode).toBe(200);
    if (caches) expect(sessions().cachedPrincipal(token)).toBeDefined();
    // Within the time to live, but due for the last-seen touch: the row is written, not skipped.
    h.clock.advance(1000);
    expect(sessions().cachedPrincipal(token)).toBeUndefined();
    expect((await h.request("GET", "/v1/session", { token })).statusCode).toBe(200);
    const row = await h.db
      .selectFrom("sessions")
      .select("last_seen_at")
      .where("id", "=", before!.session.id)
      .executeTakeFirstOrThrow();
    expect(Number(row.last_seen_at)).toBe(signedInAt + MINUTE);
    if (caches) expect(sessions().cachedPrincipal(token)?.session.lastSeenAt).toBe(signedInAt + MINUTE);
    // An app session's idle timeout is a day: past it, no answer from the cache, and authenticate refuses.
    h.clock.advance(24 * 60 * MINUTE);
    expect(sessions().cachedPrincipal(token)).toBeUndefined();
    expect((await h.request("GET", "/v1/session", { token })).statusCode).toBe(401);
  });

  it("sends GET /v1/session's bytes again while nothing they were made from has changed, and new ones after", async () => {
    const token = await h.sessionToken(user);
    const first = await h.request("GET", "/v1/session", { token });
    const second = await h.request("GET", "/v1/session", { token });
    expect(second.body).toBe(first.body);
    expect(second.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect(second.headers["content-type"]).toBe(first.headers["content-type"]);

    // The last-seen touch moves the idle deadline on the cached session object itself (within the
    // subsystems' one-second cache too, so the answer is still made without a read).
    h.clock.advance(MINUTE - 500);
    await h.request("GET", "/v1/session", { token });
    const beforeTouch = (await h.request("GET", "/v1/session", { token })).json();
    h.clock.advance(500);
    const touched = (await h.request("GET", "/v1/session", { token })).json();
    expect(Date.parse(touched.session.expiresAt)).toBe(Date.parse(beforeTouch.session.expiresAt) + MINUTE);

    // The capability vector: a subsystem in maintenance, on the same cached session and account.
    const before = await h.request("GET", "/v1/session", { token });
    await h.services.subsystems.setStatus("funding.ach", "maintenance", null);
    try {
      // The first check reads the subsystems again; the second is made from the cached rows.
      await h.request("GET", "/v1/session", { token });
      const during = await h.request("GET", "/v1/session", { token });
      expect(during.body).not.toBe(before.body);
      expect(JSON.stringify(during.json().eligibility)).toMatch(/maintenance/);
    } finally {
      await h.services.subsystems.setStatus("funding.ach", "operational", null);
    }
    expect((await h.request("GET", "/v1/session", { token })).body).toBe(before.body);
  });

  it("answers GET /v1/session the same from the cache as from the database", async () => {
    const token = await h.sessionToken(user);
    const first = await h.request("GET", "/v1/session", { token });
    if (caches) expect(sessions().cachedPrincipal(token)).toBeDefined();
    const second = await h.request("GET", "/v1/session", { token });
    expect(second.statusCode).toBe(200);
    expect(second.json()).toEqual(first.json());
  });
});

describe.each(engines)("sessions with a revocation bus on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine, { redis: true });
  });
  afterAll(async () => {
    await h.close();
  });

  it("never answers from the cache alone: every check reads the revocation generation", async () => {
    const user = await h.createVerifiedUser();
    const token = await h.sessionToken(user);
    expect(await h.services.sessions.authenticate(token)).not.toBeNull();
    expect(h.services.sessions.cachedPrincipal(token)).toBeUndefined();
    expect((await h.request("GET", "/v1/session", { token })).statusCode).toBe(200);
  });
});
