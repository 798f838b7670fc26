import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { ConfigError, loadEnvConfig } from "../../src/config/env.js";

const run = promisify(execFile);

describe("configuration from the environment (docs/http-api.md)", () => {
  it("has working defaults for development", () => {
    const config = loadEnvConfig({});
    expect(config).toMatchObject({
      env: "development",
      databaseUrl: "sqlite:./data/portcullis.db",
      port: 3000,
      host: "127.0.0.1",
      botCheck: "always",
      dataDir: "./data",
      trustedProxies: [],
    });
    expect(config.publicUrl.origin).toBe("http://localhost:3000");
  });

  it.each([
    ["PORTCULLIS_PORT", "eighty", /PORTCULLIS_PORT: must be a port number/],
    ["PORTCULLIS_PORT", "70000", /PORTCULLIS_PORT/],
    ["PORTCULLIS_DATABASE_URL", "mysql://x", /PORTCULLIS_DATABASE_URL: must use postgres: or postgresql:/],
    ["PORTCULLIS_DATABASE_URL", "sqlite:", /PORTCULLIS_DATABASE_URL: sqlite: needs a file path/],
    ["PORTCULLIS_PUBLIC_URL", "localhost:3000", /PORTCULLIS_PUBLIC_URL: must use http: or https:/],
    ["PORTCULLIS_PUBLIC_URL", "https://x.example/portal", /PORTCULLIS_PUBLIC_URL: must be an origin/],
    ["PORTCULLIS_BOT_CHECK", "sometimes", /PORTCULLIS_BOT_CHECK: must be one of always, adaptive, off/],
    ["PORTCULLIS_ENV", "staging", /PORTCULLIS_ENV/],
    ["PORTCULLIS_SECRET_KEY", "c2hvcnQ=", /PORTCULLIS_SECRET_KEY: must be 32 bytes/],
    ["PORTCULLIS_TRUSTED_PROXIES", "10.0.0.0/8, banana", /PORTCULLIS_TRUSTED_PROXIES: "banana"/],
    ["PORTCULLIS_TRUSTED_PROXIES", "10.0.0.0/33", /PORTCULLIS_TRUSTED_PROXIES/],
    ["PORTCULLIS_ADMIN_TOKEN", "short", /PORTCULLIS_ADMIN_TOKEN: must be at least 32/],
    ["PORTCULLIS_REDIS_URL", "http://x", /PORTCULLIS_REDIS_URL/],
    ["PORTCULLIS_SMTP_URL", "mail.example", /PORTCULLIS_SMTP_URL/],
  ])("refuses %s=%s naming the variable", (name, value, message) => {
    expect(() => loadEnvConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadEnvConfig({ [name]: value })).toThrow(message);
  });

  it("in production refuses http, missing SMTP and a missing data key", () => {
    expect(() => loadEnvConfig({ PORTCULLIS_ENV: "production" })).toThrow(
      /PORTCULLIS_PUBLIC_URL: must be https/,
    );
    expect(() =>
      loadEnvConfig({ PORTCULLIS_ENV: "production", PORTCULLIS_PUBLIC_URL: "https://x.example" }),
    ).toThrow(/PORTCULLIS_SMTP_URL: is required/);
    expect(() =>
      loadEnvConfig({
        PORTCULLIS_ENV: "production",
        PORTCULLIS_PUBLIC_URL: "https://x.example",
        PORTCULLIS_SMTP_URL: "smtp://mail:25",
      }),
    ).toThrow(/PORTCULLIS_SECRET_KEY: is required/);
  });

  describe("in production refuses guessable keys and tokens, one line each", () => {
    const production = {
      PORTCULLIS_ENV: "production",
      PORTCULLIS_PUBLIC_URL: "https://x.example",
      PORTCULLIS_SMTP_URL: "smtp://mail:25",
      PORTCULLIS_SECRET_KEY: randomBytes(32).toString("base64"),
    };
    const token = () => randomBytes(32).toString("hex");

    it("accepts random ones", () => {
      const config = loadEnvConfig({
        ...production,
        PORTCULLIS_ADMIN_TOKEN: token(),
        PORTCULLIS_SERVICE_TOKEN: token(),
        PORTCULLIS_METRICS_TOKEN: token(),
      });
      expect(config.serviceToken).toMatch(/^[0-9a-f]{64}$/);
    });

    it.each([
      [
        "PORTCULLIS_SECRET_KEY",
        Buffer.alloc(32).toString("base64"),
        /PORTCULLIS_SECRET_KEY: is the same character repeated/,
      ],
      [
        "PORTCULLIS_SECRET_KEY",
        Buffer.alloc(32, 0x41).toString("base64"),
        /PORTCULLIS_SECRET_KEY: is the same/,
      ],
      [
        "PORTCULLIS_SECRET_KEY",
        Buffer.from("0123456789abcdef0123456789abcdef").toString("base64"),
        /PORTCULLIS_SECRET_KEY: is a short pattern repeated/,
      ],
      [
        "PORTCULLIS_SECRET_KEY",
        Buffer.from("abcdefghabcdefghhgfedcbahgfedcba").toString("base64"),
        /PORTCULLIS_SECRET_KEY: .*different byte values/,
      ],
      ["PORTCULLIS_ADMIN_TOKEN", "a".repeat(32), /PORTCULLIS_ADMIN_TOKEN: is the same character repeated/],
      [
        "PORTCULLIS_SERVICE_TOKEN",
        "abab".repeat(10),
        /PORTCULLIS_SERVICE_TOKEN: is a short pattern repeated/,
      ],
      [
        "PORTCULLIS_METRICS_TOKEN",
        "aabbcc112233aabbccc112233aabbccc1",
        /PORTCULLIS_METRICS_TOKEN: uses only 6 different characters/,
      ],
    ])("%s=%s", (name, value, message) => {
      expect(() => loadEnvConfig({ ...production, [name]: value })).toThrow(message);
    });

    it("refuses one token for two holders", () => {
      const shared = token();
      expect(() =>
        loadEnvConfig({ ...production, PORTCULLIS_ADMIN_TOKEN: shared, PORTCULLIS_SERVICE_TOKEN: shared }),
      ).toThrow(/PORTCULLIS_SERVICE_TOKEN: must differ from PORTCULLIS_ADMIN_TOKEN/);
    });
  });

  it("stops the server with one clear line naming the variable", async () => {
    const failure = await run("npx", ["tsx", "src/cli/main.ts", "serve"], {
      env: { ...process.env, PORTCULLIS_PORT: "eighty" },
    }).catch((error: { code: number; stderr: string }) => error);
    expect("code" in failure && failure.code).toBe(2);
    const lines = (failure as { stderr: string }).stderr
      .split("\n")
      .filter((line) => line.trim() && !line.startsWith("npm warn"));
    expect(lines).toEqual([
      'portcullis: configuration error: PORTCULLIS_PORT: must be a port number from 0 to 65535, got "eighty"',
    ]);
  });
});
