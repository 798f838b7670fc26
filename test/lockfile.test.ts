import fs from "node:fs";
import { describe, expect, it } from "vitest";

type LockPackage = { version?: string; optionalDependencies?: Record<string, string> };

/**
 * `npm ci` refuses a lock file that omits any optional dependency, even another platform's binary that
 * would never be installed here. The registry mirror this project is built against does not serve some
 * of those, so `npm install` leaves them out: scripts/complete-lockfile.mjs puts them back.
 */
describe("package-lock.json", () => {
  it("lists every optional dependency, so npm ci accepts it on a fresh machine", () => {
    const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8")) as {
      packages: Record<string, LockPackage>;
    };
    const missing: string[] = [];
    for (const [path, pkg] of Object.entries(lock.packages)) {
      for (const name of Object.keys(pkg.optionalDependencies ?? {})) {
        const nested = `${path}/node_modules/${name}`;
        if (!lock.packages[nested] && !lock.packages[`node_modules/${name}`])
          missing.push(`${name} (for ${path || "the project"})`);
      }
    }
    expect(missing, "run: node scripts/complete-lockfile.mjs").toEqual([]);
  });
});
