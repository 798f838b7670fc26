import { describe, expect, it } from "vitest";
import { type CapabilityInput, evaluateCapabilities } from "../../src/capabilities/evaluate.js";
import { type ClientName, defaultPolicy, subsystemIds, type Tier } from "../../src/capabilities/policy.js";
import type {
  SubsystemSnapshot,
  SubsystemState,
  SubsystemStatus,
} from "../../src/capabilities/subsystems.js";

const NOW = Date.parse("2026-06-01T12:00:00Z");

function snapshot(
  overrides: Partial<Record<string, { status: SubsystemStatus; until?: number }>> = {},
): SubsystemSnapshot {
  const ids = subsystemIds;
  const states = Object.fromEntries(
    ids.map((id) => [
      id,
      {
        id,
        status: overrides[id]?.status ?? "operational",
        message: null,
        until: overrides[id]?.until ?? null,
      } as SubsystemState,
    ]),
  );
  return { at: NOW, states: states as SubsystemSnapshot["states"], windows: [] };
}

function input(
  tier: Tier,
  country: string,
  region: string | null,
  client: ClientName,
  extra: Partial<CapabilityInput> = {},
) {
  return {
    account: { tier, country, region, restricted: false },
    client,
    security: { hasSecondFactor: true, holds: [] },
    subsystems: snapshot(),
    policy: defaultPolicy,
    ...extra,
  };
}

const codes = (
  capability: ReturnType<typeof evaluateCapabilities>[keyof ReturnType<typeof evaluateCapabilities>],
) => (capability.allowed ? [] : capability.reasons.map((r) => r.code));

describe("the capability vector over the default policy (behaviour §9)", () => {
  it.each([
    // tier, country, region, client, product, allowed, reasons
    ["starter", "US", "US-NY", "app", "spot", true, []],
    ["starter", "US", "US-NY", "app", "margin", false, ["tier_too_low", "jurisdiction", "client_app"]],
    ["starter", "US", "US-NY", "app", "futures", false, ["tier_too_low", "jurisdiction", "client_app"]],
    ["starter", "US", "US-NY", "app", "staking", false, ["tier_too_low", "jurisdiction"]],
    ["starter", "US", "US-NY", "app", "funding.wire", false, ["tier_too_low", "jurisdiction"]],
    ["starter", "US", "US-NY", "app", "stocks", false, ["tier_too_low", "jurisdiction"]],
    ["intermediate", "US", "US-CA", "web", "margin", false, ["jurisdiction"]],
    ["intermediate", "US", "US-CA", "web", "funding.wire", true, []],
    ["intermediate", "US", "US-CA", "web", "stocks", true, []],
    ["intermediate", "US", "US-CA", "web", "staking", true, []],
    ["intermediate", "US", "US-TX", "web", "stocks", false, ["jurisdiction"]],
    ["intermediate", "US", "US-CA", "web", "funding.ach", true, []],
    ["intermediate", "DE", null, "web", "funding.ach", false, ["jurisdiction"]],
    ["intermediate", "DE", null, "pro", "margin", true, []],
    ["intermediate", "DE", null, "pro", "futures", true, []],
    ["intermediate", "GB", null, "pro", "futures", false, ["jurisdiction"]],
    ["starter", "DE", null, "web", "funding.wire", true, []],
    ["starter", "DE", null, "web", "stocks", false, ["tier_too_low", "jurisdiction"]],
    ["pro", "DE", null, "app", "margin", false, ["client_app"]],
    ["starter", "DE", null, "api", "api", true, []],
    ["starter", "DE", null, "app", "api", false, ["client_app"]],
  ] as const)(
    "%s in %s/%s on %s: %s allowed=%s %j",
    (tier, country, region, client, product, allowed, reasons) => {
      const vector = evaluateCapabilities(input(tier, country, region, client));
      expect(vector[product].allowed).toBe(allowed);
      expect(codes(vector[product]).sort()).toEqual([...reasons].sort());
    },
  );

  it("says which tier is needed, in words a trader understands", () => {
    const margin = evaluateCapabilities(input("starter", "DE", null, "web")).margin;
    expect(margin).toEqual({
      allowed: false,
      reasons: [
        {
          code: "tier_too_low",
          message: "Margin trading needs Intermediate verification.",
          requiredTier: "intermediate",
        },
      ],
    });
  });

  it("refuses withdrawals without a second factor, and during a security hold with its end", () => {
    const noFactor = evaluateCapabilities({
      ...input("starter", "DE", null, "web"),
      security: { hasSecondFactor: false, holds: [] },
    });
    expect(codes(noFactor["withdraw.crypto"])).toEqual(["second_factor_required"]);
    expect(noFactor["deposit.crypto"].allowed).toBe(true);
    const held = evaluateCapabilities({
      ...input("starter", "DE", null, "web"),
      security: { hasSecondFactor: true, holds: [{ kind: "password_reset", until: NOW + 3600_000 }] },
    });
    expect(held["withdraw.crypto"]).toMatchObject({
      allowed: false,
      reasons: [{ code: "security_hold", until: "2026-06-01T13:00:00.000Z", hold: "password_reset" }],
    });
  });

  it("refuses what depends on a subsystem in maintenance, with the window's end", () => {
    const vector = evaluateCapabilities({
      ...input("intermediate", "US", "US-CA", "web"),
      subsystems: snapshot({ "funding.ach": { status: "maintenance", until: NOW + 7200_000 } }),
    });
    expect(vector["funding.ach"]).toMatchObject({
      allowed: false,
      reasons: [
        { code: "subsystem_maintenance", subsystem: "funding.ach", until: "2026-06-01T14:00:00.000Z" },
      ],
    });
    expect(vector["funding.wire"].allowed).toBe(true);
  });

  it("knows Kraken's engine states: cancel-only refuses new orders, post-only allows them as maker orders", () => {
    const cancelOnly = evaluateCapabilities({
      ...input("starter", "DE", null, "web"),
      subsystems: snapshot({ spot_engine: { status: "cancel_only" } }),
    });
    expect(codes(cancelOnly.spot)).toEqual(["subsystem_maintenance"]);
    expect(cancelOnly["deposit.crypto"].allowed).toBe(true);
    const postOnly = evaluateCapabilities({
      ...input("starter", "DE", null, "web"),
      subsystems: snapshot({ spot_engine: { status: "post_only" } }),
    });
    expect(postOnly.spot).toEqual({ allowed: true, mode: "post_only" });
  });

  it("refuses everything to a restricted account", () => {
    const vector = evaluateCapabilities({
      ...input("pro", "DE", null, "pro"),
      account: { tier: "pro", country: "DE", region: null, restricted: true },
    });
    expect(Object.values(vector).every((c) => !c.allowed && codes(c).includes("account_restricted"))).toBe(
      true,
    );
  });
});
