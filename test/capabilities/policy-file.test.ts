import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { defaultPolicy, parsePolicy } from "../../src/capabilities/policy.js";
import { ConfigError } from "../../src/config/env.js";

const run = promisify(execFile);

describe("the policy file (PORTCULLIS_POLICY)", () => {
  it("replaces the products it names and keeps the defaults for the rest", () => {
    const policy = parsePolicy(
      [
        "products:",
        "  margin:",
        "    minTier: pro",
        "    clients: [pro]",
        "    excludeCountries: [US, CA, DE]",
      ].join("\n"),
    );
    expect(policy.margin).toEqual({
      minTier: "pro",
      clients: ["pro"],
      subsystems: [],
      requires: [],
      excludeCountries: ["US", "CA", "DE"],
    });
    expect(policy.spot).toEqual(defaultPolicy.spot);
  });

  it.each([
    [
      "products:\n  margin:\n    minTier: gold\n    clients: [web]\n",
      /policy:3: products\.margin\.minTier: must be one of starter, intermediate, pro/,
    ],
    [
      "products:\n  spot:\n    clients: [web, fax]\n",
      /policy:3: products\.spot\.clients\.1: must be one of web, app, pro, api/,
    ],
    ["products:\n  options:\n    clients: [web]\n", /policy:2: products\.options: unknown product/],
    ["products:\n  spot:\n    minTier: starter\n", /policy:2: products\.spot: clients is required/],
    [
      "products:\n  spot:\n    clients: [web]\n    excludeCountries: [usa]\n",
      /policy:4: products\.spot\.excludeCountries\.0: "usa" is not a valid code/,
    ],
    [
      "products:\n  spot:\n    clients: [web]\n    colour: blue\n",
      /policy:4: products\.spot\.colour: unknown field/,
    ],
    ["tiers: [a]\n", /policy:1: tiers: unknown key/],
    ["products: [spot]\n", /policy:1: products: must be a mapping/],
    ["products:\n  spot: {clients: [web]\n", /policy:\d+: not valid YAML/],
    [
      "products:\n  funding.wire:\n    clients: [web]\n    byCountry:\n      US:\n        minTier: platinum\n",
      /policy:6: products\.funding\.wire\.byCountry\.US\.minTier/,
    ],
  ])("refuses %j naming the line and field", (text, message) => {
    expect(() => parsePolicy(text)).toThrow(ConfigError);
    expect(() => parsePolicy(text)).toThrow(message);
  });

  it("stops the server with one line naming the file, line and field", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-policy-"));
    try {
      const file = path.join(dir, "policy.yaml");
      fs.writeFileSync(file, "products:\n  staking:\n    minTier: intermediate\n    clients: [web, watch]\n");
      const failure = await run(process.execPath, ["--import", "tsx", "src/cli/main.ts", "serve"], {
        env: {
          ...process.env,
          PORTCULLIS_POLICY: file,
          PORTCULLIS_DATABASE_URL: `sqlite:${path.join(dir, "db.sqlite")}`,
        },
      }).catch((error: { code: number; stderr: string }) => error);
      expect((failure as { code: number }).code).toBe(2);
      expect((failure as { stderr: string }).stderr.trim()).toBe(
        `portcullis: configuration error: PORTCULLIS_POLICY: ${file}:4: products.staking.clients.1: must be one of web, app, pro, api`,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
