import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { build } from "vite";
import { portalDirectory } from "../../src/http/routes/portal.js";

const root = path.resolve(import.meta.dirname, "../..");
const stampFile = path.join(portalDirectory, "build-stamp.txt");
const lockDirectory = path.join(root, "dist", ".portal-build.lock");

/** A digest of everything the built portal depends on: its sources and the locked dependency versions. */
function sourceDigest(): string {
  const hash = createHash("sha256");
  const walk = (directory: string) => {
    for (const entry of fs
      .readdirSync(directory, { withFileTypes: true })
      .sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const full = path.join(directory, entry.name);
      if (entry.isDirectory()) walk(full);
      else hash.update(path.relative(root, full)).update("\0").update(fs.readFileSync(full)).update("\0");
    }
  };
  walk(path.join(root, "web"));
  hash.update(fs.readFileSync(path.join(root, "package-lock.json")));
  return hash.digest("hex");
}

async function withBuildLock<T>(task: () => Promise<T>): Promise<T> {
  fs.mkdirSync(path.dirname(lockDirectory), { recursive: true });
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      fs.mkdirSync(lockDirectory);
      break;
    } catch {
      // Another test file is building; a lock older than two minutes was left by a killed run.
      const age = Date.now() - (fs.statSync(lockDirectory, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > 120_000) fs.rmSync(lockDirectory, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error("timed out waiting for another portal build");
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  try {
    return await task();
  } finally {
    fs.rmSync(lockDirectory, { recursive: true, force: true });
  }
}

/**
 * The browser tests run against the built portal, as `npm start` serves it. They build it with Vite's own
 * API when dist/web is missing or older than web/ (no network needed), once for any number of test files.
 */
export async function ensurePortalBuilt(): Promise<void> {
  const digest = sourceDigest();
  const current = () => fs.existsSync(stampFile) && fs.readFileSync(stampFile, "utf8") === digest;
  if (current()) return;
  await withBuildLock(async () => {
    if (current()) return;
    // Vitest sets NODE_ENV=test, which would make Vite bundle React's development build.
    const nodeEnv = process.env.NODE_ENV;
    process.env.NODE_ENV = "production";
    try {
      await build({
        configFile: path.join(root, "web", "vite.config.ts"),
        mode: "production",
        logLevel: "warn",
      });
    } finally {
      process.env.NODE_ENV = nodeEnv;
    }
    fs.writeFileSync(stampFile, digest);
  });
}
