import { execFile } from "node:child_process";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import ccxt from "ccxt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_TOKEN, Harness, newUser } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

const run = promisify(execFile);
const HOUR = 3600_000;
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

describe.each(engines)("capabilities and status on %s (behaviour §9, §10)", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  const appSession = async (overrides = {}) => {
    const user = await h.createVerifiedUser(overrides);
    const response = await h.signIn(user.username, user.password, { client: "app" });
    return { user, token: response.json().token as string, id: await h.accountId(user) };
  };
  const reasonsOf = (
    products: Record<string, { allowed: boolean; reasons?: { code: string }[] }>,
    product: string,
  ) => (products[product]?.reasons ?? []).map((r) => r.code).sort();

  it("tells a starter in US-NY on the app what it may use, and what changes when operators move it", async () => {
    const { token, id } = await appSession({ country: "US", region: "US-NY" });
    const before = (await h.request("GET", "/v1/capabilities", { token })).json().products;
    expect(before.spot).toEqual({ allowed: true });
    expect(reasonsOf(before, "margin")).toEqual(["client_app", "jurisdiction", "tier_too_low"]);
    expect(reasonsOf(before, "futures")).toContain("jurisdiction");
    expect(before.staking.allowed).toBe(false);
    expect(reasonsOf(before, "funding.wire")).toContain("tier_too_low");
    const session = (await h.request("GET", "/v1/session", { token })).json();
    expect(session.eligibility.allowed).toContain("spot");
    expect(session.eligibility.refused.margin).toEqual(
      expect.arrayContaining(["tier_too_low", "jurisdiction"]),
    );

    expect(
      (
        await h.request("PUT", `/v1/admin/accounts/${id}/verification`, {
          headers: admin,
          body: { tier: "intermediate" },
        })
      ).statusCode,
    ).toBe(200);
    expect(
      (
        await h.request("PUT", `/v1/admin/accounts/${id}/jurisdiction`, {
          headers: admin,
          body: { country: "US", region: "US-CA" },
        })
      ).statusCode,
    ).toBe(200);
    const after = (await h.request("GET", "/v1/capabilities", { token })).json().products;
    expect(reasonsOf(after, "margin")).toEqual(["client_app", "jurisdiction"]);
    expect(after["funding.wire"]).toEqual({ allowed: true });
    const audit = await h.services.audit.list({
      accountId: id,
      events: ["account.tier_set", "account.jurisdiction_set"],
      limit: 5,
    });
    expect(audit.map((e) => e.actor)).toEqual(["operator", "operator"]);
  });

  it("opens and closes a maintenance window by itself", async () => {
    const { token, id } = await appSession({ country: "US", region: "US-CA" });
    await h.request("PUT", `/v1/admin/accounts/${id}/verification`, {
      headers: admin,
      body: { tier: "intermediate" },
    });
    const startsAt = new Date(h.clock.now() + HOUR).toISOString();
    const endsAt = new Date(h.clock.now() + 3 * HOUR).toISOString();
    const scheduled = await h.request("POST", "/v1/admin/maintenance", {
      headers: admin,
      body: {
        subsystem: "funding.ach",
        state: "maintenance",
        startsAt,
        endsAt,
        message: "Bank partner upgrade",
      },
    });
    expect(scheduled.statusCode).toBe(201);
    const ach = async () =>
      (await h.request("GET", "/v1/capabilities", { token })).json().products["funding.ach"];

    expect(await ach()).toEqual({ allowed: true });
    const status = (await h.request("GET", "/v1/status")).json();
    expect(status.maintenance).toEqual([
      expect.objectContaining({
        subsystem: "funding.ach",
        state: "maintenance",
        startsAt,
        endsAt,
        message: "Bank partner upgrade",
      }),
    ]);
    expect(status.subsystems.find((s: { id: string }) => s.id === "funding.ach").status).toBe("operational");

    h.clock.advance(HOUR);
    expect(await ach()).toEqual({
      allowed: false,
      reasons: [
        expect.objectContaining({ code: "subsystem_maintenance", subsystem: "funding.ach", until: endsAt }),
      ],
    });
    expect(
      (await h.request("GET", "/v1/status"))
        .json()
        .subsystems.find((s: { id: string }) => s.id === "funding.ach"),
    ).toMatchObject({ status: "maintenance", message: "Bank partner upgrade" });

    h.clock.advance(2 * HOUR);
    expect(await ach()).toEqual({ allowed: true });
    expect((await h.request("GET", "/v1/status")).json().maintenance).toEqual([]);

    // A cancelled window never takes effect.
    const again = await h.request("POST", "/v1/admin/maintenance", {
      headers: admin,
      body: {
        subsystem: "funding.ach",
        state: "maintenance",
        startsAt: new Date(h.clock.now()).toISOString(),
        endsAt: new Date(h.clock.now() + HOUR).toISOString(),
        message: "Again",
      },
    });
    expect((await ach()).allowed).toBe(false);
    expect(
      (await h.request("DELETE", `/v1/admin/maintenance/${again.json().id}`, { headers: admin })).statusCode,
    ).toBe(200);
    expect((await ach()).allowed).toBe(true);
  });

  it("moves a window's opening and end into the vector at the millisecond, while its rows stay cached", async () => {
    const { subsystems, capabilities } = h.services;
    const account = (await h.services.accounts.findById(
      (
        await appSession({ country: "US", region: "US-CA" })
      ).id,
    ))!;
    const security = { hasSecondFactor: true, restricted: false, holds: [] };
    const vector = () => capabilities.vector({ ...account, tier: "intermediate" }, "app", security);
    const window = await subsystems.schedule({
      subsystem: "funding.wire",
      state: "maintenance",
      startsAt: h.clock.now() + 300,
      endsAt: h.clock.now() + 600,
      message: "Short",
    });
    const before = await subsystems.snapshot();
    const open = await vector();
    expect(open["funding.wire"]).toEqual({ allowed: true });
    // Equal inputs share one evaluated vector, which nobody can change.
    expect(await vector()).toBe(open);
    expect(Object.isFrozen(open["funding.wire"])).toBe(true);

    h.clock.advance(299);
    expect((await subsystems.snapshot()).states).toBe(before.states);
    expect((await vector())["funding.wire"]).toEqual({ allowed: true });
    h.clock.advance(1);
    expect((await vector())["funding.wire"]).toMatchObject({
      allowed: false,
      reasons: [{ code: "subsystem_maintenance", until: new Date(window.endsAt).toISOString() }],
    });
    h.clock.advance(300);
    expect(await vector()).toBe(open);
    // A hold is part of the input: it refuses withdrawals until it ends, to the millisecond.
    const held = () =>
      capabilities.vector({ ...account, tier: "intermediate" }, "app", {
        ...security,
        holds: [{ kind: "password_reset", until: h.clock.now() + 1 }],
      });
    expect((await held())["withdraw.crypto"]).toMatchObject({ allowed: false });
  });

  it("refuses sign-up while the signups subsystem is in maintenance", async () => {
    await h.request("PUT", "/v1/admin/subsystems/signups", {
      headers: admin,
      body: { status: "maintenance", message: "Back soon" },
    });
    const refused = await h.signUp(newUser());
    expect(refused.statusCode).toBe(403);
    expect(refused.json().error).toMatchObject({
      code: "not_eligible",
      reasons: [{ code: "subsystem_maintenance", subsystem: "signups" }],
    });
    await h.request("PUT", "/v1/admin/subsystems/signups", {
      headers: admin,
      body: { status: "operational" },
    });
    expect((await h.signUp(newUser())).statusCode).toBe(202);
  });

  it("answers Kraken's SystemStatus and Time, and ccxt's kraken.fetchStatus() reads them", async () => {
    await h.app.http.listen({ port: 0, host: "127.0.0.1" });
    const { port } = h.app.http.server.address() as AddressInfo;
    const base = `http://127.0.0.1:${port}`;
    const kraken = new ccxt.kraken({ urls: { api: { public: base, private: base } } });

    const time = (await h.request("GET", "/0/public/Time")).json();
    expect(time).toEqual({
      error: [],
      result: {
        unixtime: Math.floor(h.clock.now() / 1000),
        rfc1123: expect.stringMatching(/^\w{3}, \d{2} \w{3} \d{2} \d{2}:\d{2}:\d{2} \+0000$/),
      },
    });

    const online = (await h.request("GET", "/0/public/SystemStatus")).json();
    expect(online).toEqual({
      error: [],
      result: {
        status: "online",
        timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
        maintenance: [],
      },
    });
    expect((await kraken.fetchStatus()).status).toBe("ok");

    await h.request("PUT", "/v1/admin/subsystems/spot_engine", {
      headers: admin,
      body: { status: "cancel_only" },
    });
    expect((await h.request("GET", "/0/public/SystemStatus")).json().result.status).toBe("cancel_only");
    await h.request("PUT", "/v1/admin/subsystems/spot_engine", {
      headers: admin,
      body: { status: "post_only" },
    });
    expect((await h.request("GET", "/0/public/SystemStatus")).json().result.status).toBe("post_only");
    await h.request("PUT", "/v1/admin/subsystems/spot_engine", {
      headers: admin,
      body: { status: "operational" },
    });

    // A window within 72 hours is announced; one further out is not yet.
    const soon = {
      startsAt: new Date(h.clock.now() + 48 * HOUR).toISOString(),
      endsAt: new Date(h.clock.now() + 50 * HOUR).toISOString(),
    };
    const later = {
      startsAt: new Date(h.clock.now() + 100 * HOUR).toISOString(),
      endsAt: new Date(h.clock.now() + 101 * HOUR).toISOString(),
    };
    for (const window of [soon, later]) {
      await h.request("POST", "/v1/admin/maintenance", {
        headers: admin,
        body: { subsystem: "api", state: "maintenance", message: "Upgrade", ...window },
      });
    }
    const announced = (await h.request("GET", "/0/public/SystemStatus")).json().result;
    expect(announced.status).toBe("online");
    expect(announced.maintenance).toEqual([
      expect.objectContaining({ subsystem: "api", startsAt: soon.startsAt }),
    ]);

    h.clock.advance(49 * HOUR);
    expect((await h.request("GET", "/0/public/SystemStatus")).json().result.status).toBe("maintenance");
    expect((await kraken.fetchStatus()).status).toBe("maintenance");
    h.clock.advance(2 * HOUR);
    expect((await kraken.fetchStatus()).status).toBe("ok");
  });

  it("checks operators' input", async () => {
    const { id } = await appSession();
    const bad = [
      await h.request("PUT", `/v1/admin/accounts/${id}/verification`, {
        headers: admin,
        body: { tier: "gold" },
      }),
      await h.request("PUT", `/v1/admin/accounts/${id}/jurisdiction`, {
        headers: admin,
        body: { country: "US" },
      }),
      await h.request("PUT", `/v1/admin/accounts/${id}/jurisdiction`, {
        headers: admin,
        body: { country: "XX" },
      }),
      await h.request("PUT", "/v1/admin/subsystems/funding.ach", {
        headers: admin,
        body: { status: "cancel_only" },
      }),
      await h.request("PUT", "/v1/admin/subsystems/spot_engine", {
        headers: admin,
        body: { status: "sleepy" },
      }),
      await h.request("POST", "/v1/admin/maintenance", {
        headers: admin,
        body: {
          subsystem: "api",
          state: "maintenance",
          startsAt: "2030-01-02T00:00:00Z",
          endsAt: "2030-01-01T00:00:00Z",
          message: "x",
        },
      }),
    ];
    for (const response of bad) {
      expect(response.statusCode, response.body).toBe(400);
      expect(response.json().error.code).toBe("invalid_request");
    }
    expect(
      (
        await h.request("PUT", "/v1/admin/subsystems/teleporter", {
          headers: admin,
          body: { status: "outage" },
        })
      ).statusCode,
    ).toBe(404);
    expect(
      (
        await h.request("PUT", "/v1/admin/accounts/no-such-account/verification", {
          headers: admin,
          body: { tier: "pro" },
        })
      ).statusCode,
    ).toBe(404);
  });

  it("offers the same operations in the portcullis CLI", async () => {
    const env = {
      ...process.env,
      PORTCULLIS_DATABASE_URL: h.storage.url,
      PORTCULLIS_DATA_DIR: h.storage.dataDir,
    };
    const cli = (...args: string[]) =>
      run(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { env });
    const username = `demo_${Date.now().toString(36)}`;
    const created = await run(
      process.execPath,
      [
        "--import",
        "tsx",
        "src/cli/main.ts",
        "accounts",
        "create",
        username,
        `${username}@example.test`,
        "--country",
        "US",
        "--region",
        "US-NY",
      ],
      { env: { ...env, PORTCULLIS_NEW_PASSWORD: "violet tractor mango 42" } },
    );
    expect(created.stdout).toMatch(new RegExp(`created ${username}`));
    await cli("accounts", "set-tier", username, "pro");
    await cli("accounts", "set-jurisdiction", username, "US", "US-CA");
    const account = (await h.services.accounts.findByUsername(username))!;
    expect(account).toMatchObject({ tier: "pro", country: "US", region: "US-CA", emailVerified: true });

    await cli("subsystems", "set", "funding.card", "outage", "--message", "Card processor down");
    const listed = (await cli("subsystems", "list")).stdout;
    expect(listed).toMatch(/funding\.card\s+outage — Card processor down/);
    const window = JSON.parse(
      (
        await cli(
          "maintenance",
          "schedule",
          "futures_engine",
          "maintenance",
          "--starts",
          new Date(Date.now() + HOUR).toISOString(),
          "--ends",
          new Date(Date.now() + 2 * HOUR).toISOString(),
          "--message",
          "Engine upgrade",
        )
      ).stdout,
    );
    expect((await cli("maintenance", "list")).stdout).toContain(window.id);
    await cli("maintenance", "cancel", window.id);
    expect((await cli("maintenance", "list")).stdout).not.toContain(window.id);
    await cli("subsystems", "set", "funding.card", "operational");

    const wrong = await cli("accounts", "set-tier", username, "platinum").catch(
      (error: { code: number; stderr: string }) => error,
    );
    expect((wrong as { code: number }).code).toBe(1);
    expect((wrong as { stderr: string }).stderr).toMatch(/tier must be one of starter, intermediate, pro/);
  });
});
