// Adds the lock-file entries of platform binaries (Biome, esbuild, rolldown, lightningcss, Argon2…) that
// the registry mirror used here sometimes does not serve (it answers 404 for some non-Linux builds), so
// `npm install` leaves them out and `npm ci` then rejects the lock as out of sync. npm installs none of
// them where os/cpu/libc do not match; elsewhere it fetches them by name and version as usual.
// Run after `npm install` changes the lock: for every package whose optional dependencies are missing,
// it asks the registry for their os/cpu/libc (`npm view`) and, when the registry has nothing, reads them
// from the package's name (`…-darwin-arm64`, `…-linux-x64-musl`).
import { execFileSync } from "node:child_process";
import fs from "node:fs";

const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));

const operatingSystems = [
  "darwin",
  "linux",
  "win32",
  "android",
  "freebsd",
  "openbsd",
  "netbsd",
  "sunos",
  "aix",
];
const processors = [
  "x64",
  "arm64",
  "arm",
  "ia32",
  "ppc64",
  "s390x",
  "riscv64",
  "loong64",
  "mips64el",
  "wasm32",
];

/** os/cpu/libc from a platform package's name, for when the registry cannot say. */
function constraintsFromName(name) {
  const parts = name.split("/").at(-1).split("-");
  const constraints = {};
  const os = parts.find((part) => operatingSystems.includes(part));
  const cpu = parts.find((part) => processors.includes(part));
  if (os) constraints.os = [os];
  if (cpu) constraints.cpu = [cpu];
  if (os === "linux") constraints.libc = [parts.includes("musl") ? "musl" : "glibc"];
  return constraints;
}

/** The registry's own os/cpu/libc/engines/license for this version, or null when it does not serve it. */
function registryFacts(name, version) {
  try {
    const output = execFileSync(
      "npm",
      ["view", `${name}@${version}`, "os", "cpu", "libc", "engines", "license", "--json"],
      {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      },
    );
    const facts = output.trim() ? JSON.parse(output) : {};
    return Array.isArray(facts) ? facts.at(-1) : facts;
  } catch {
    return null;
  }
}

/** Optional dependencies are pinned to exact versions by every package that ships binaries this way. */
function exactVersion(spec) {
  return /^\d+\.\d+\.\d+(-[\w.]+)?$/.test(spec) ? spec : spec.replace(/^[\^~=]/, "");
}

let added = 0;
for (const [path, pkg] of Object.entries(lock.packages)) {
  for (const [name, spec] of Object.entries(pkg.optionalDependencies ?? {})) {
    if (lock.packages[`${path}/node_modules/${name}`] || lock.packages[`node_modules/${name}`]) continue;
    const version = exactVersion(spec);
    const facts = registryFacts(name, version);
    const constraints = facts?.os || facts?.cpu ? {} : constraintsFromName(name);
    for (const field of ["os", "cpu", "libc"]) {
      if (facts?.[field]) constraints[field] = [facts[field]].flat();
    }
    lock.packages[`node_modules/${name}`] = {
      version,
      ...constraints,
      ...(pkg.dev ? { dev: true } : {}),
      ...(facts?.license ? { license: facts.license } : pkg.license ? { license: pkg.license } : {}),
      optional: true,
      ...(facts?.engines ? { engines: facts.engines } : pkg.engines ? { engines: pkg.engines } : {}),
    };
    added += 1;
  }
}
const sorted = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a < b ? -1 : 1)),
);
lock.packages = sorted;
fs.writeFileSync("package-lock.json", `${JSON.stringify(lock, null, 2)}\n`);
console.log(`complete-lockfile: ${added} entries added`);
