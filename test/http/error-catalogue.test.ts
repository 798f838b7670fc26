import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorCodes, isErrorCode } from "../../src/support/error-codes.js";
import { knownErrorCodes, portalOnlyMessages } from "../../web/src/errors.js";
import { Harness } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

function sourceFiles(directory: string): string[] {
  return readdirSync(directory).flatMap((name) => {
    const path = join(directory, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith(".ts") ? [path] : [];
  });
}

describe("the error catalogue", () => {
  it("gives every code a status and a sentence", () => {
    for (const [code, entry] of Object.entries(errorCodes)) {
      expect(entry.status, code).toBeGreaterThanOrEqual(400);
      expect(entry.message, code).toMatch(/^[A-Z].*\.$/s);
    }
  });

  it("knows every code the server answers with, at the status it lists", () => {
    const thrown: string[] = [];
    for (const file of sourceFiles("src")) {
      const text = readFileSync(file, "utf8");
      for (const match of text.matchAll(/new Problem\(\s*(\d{3}),\s*"([a-z_]+)"/g)) {
        const [, status, code] = match as unknown as [string, string, string];
        thrown.push(code);
        expect(isErrorCode(code), `${file}: ${code}`).toBe(true);
        if (isErrorCode(code)) expect(Number(status), `${file}: ${code}`).toBe(errorCodes[code].status);
      }
      for (const match of text.matchAll(/error: \{ code: "([a-z_]+)"/g)) {
        expect(isErrorCode(match[1]!), `${file}: ${match[1]}`).toBe(true);
      }
    }
    expect(thrown).toContain("email_not_verified");
  });

  it("is what the portal shows: every server code has the portal's sentence", () => {
    for (const code of Object.keys(errorCodes)) expect(knownErrorCodes).toContain(code);
    // The portal's own codes (no network, a closed security-key prompt) never come from the server.
    for (const code of Object.keys(portalOnlyMessages)) expect(isErrorCode(code), code).toBe(false);
  });
});

describe.each(engines)("validation errors on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  it("name every field that needs attention at once, each with a sentence", async () => {
    const response = await h.request("POST", "/v1/accounts", {
      body: { email: "", username: "", password: "", country: "Germany", region: "New York" },
    });
    expect(response.statusCode).toBe(400);
    const error = response.json().error;
    expect(error.code).toBe("invalid_request");
    expect(error.message).toBe("Some fields need attention.");
    expect(error.details).toEqual(
      expect.arrayContaining([
        { field: "email", message: "Enter your email address." },
        { field: "username", message: "Enter your username." },
        { field: "password", message: "Enter your password." },
        { field: "country", message: "Choose your country from the list." },
        { field: "region", message: "Choose your state or province from the list." },
      ]),
    );
    expect(error.details).toHaveLength(5);
  });

  it("say what is missing in words, not schema keywords", async () => {
    const response = await h.request("POST", "/v1/accounts", { body: { username: "someone" } });
    const details = response.json().error.details as { field: string; message: string }[];
    expect(details.map((d) => d.field).sort()).toEqual(["country", "email", "password"]);
    for (const detail of details) expect(detail.message).not.toMatch(/must have required|must NOT/);
  });
});
