import { describe, expect, it } from "vitest";
import { isDependencyFailure, isUniqueViolation } from "../../src/support/db-errors.js";

const coded = (code: string, message = "") => Object.assign(new Error(message), { code });

describe("telling a dependency's failure from a bug", () => {
  it.each([
    ["SQLITE_BUSY", true],
    ["SQLITE_BUSY_SNAPSHOT", true],
    ["SQLITE_BUSY_TIMEOUT", true],
    ["SQLITE_BUSY_RECOVERY", true],
    ["SQLITE_IOERR", true],
    ["SQLITE_IOERR_WRITE", true],
    ["SQLITE_IOERR_SHORT_READ", true],
    ["SQLITE_FULL", true],
    ["SQLITE_CANTOPEN", true],
    ["SQLITE_CANTOPEN_ISDIR", true],
    ["ECONNREFUSED", true],
    ["57P01", true],
    ["08006", true],
    // Bugs and bad input, not an unavailable dependency: answered as what they are.
    ["SQLITE_CONSTRAINT_UNIQUE", false],
    ["SQLITE_ERROR", false],
    ["SQLITE_MISMATCH", false],
    ["SQLITE_BUSYNESS", false],
    ["SQLITE_", false],
    ["23505", false],
    ["42P01", false],
    ["", false],
  ])("%s → %s", (code, unavailable) => {
    expect(isDependencyFailure(coded(code))).toBe(unavailable);
  });

  it("knows a lost connection by its message, and nothing by a missing error", () => {
    expect(isDependencyFailure(new Error("Connection terminated unexpectedly"))).toBe(true);
    expect(isDependencyFailure(new Error("column does not exist"))).toBe(false);
    expect(isDependencyFailure(null)).toBe(false);
    expect(isDependencyFailure({ code: 42 })).toBe(false);
  });

  it("knows a unique violation on both engines", () => {
    expect(isUniqueViolation(coded("23505"))).toBe(true);
    expect(isUniqueViolation(coded("SQLITE_CONSTRAINT_PRIMARYKEY"))).toBe(true);
    expect(isUniqueViolation(coded("SQLITE_CONSTRAINT_FOREIGNKEY"))).toBe(false);
  });
});
