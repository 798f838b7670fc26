import { createHash } from "node:crypto";
import fs from "node:fs";
import { fileURLToPath } from "node:url";

/**
 * Passwords known from data breaches (docs/behaviour.md §1, ASVS 6.2.12), screened against a Bloom filter
 * built from a published list by `npm run build:breached-passwords` and kept in the repository as
 * lists/breached-passwords.bin. Only the filter ships: a password is looked up by its SHA-256, nothing is
 * kept, and a lookup costs one hash.
 *
 * The file is "PCBF", a 4-byte little-endian length, a JSON header of that length (see FilterHeader), then
 * the filter's bits, least significant bit of each byte first.
 */

/** From src/factors and from dist/factors alike: the folder sits beside both at the package's root. */
export const BREACHED_PASSWORDS_FILE = fileURLToPath(
  new URL("../../lists/breached-passwords.bin", import.meta.url),
);

const MAGIC = "PCBF";

export interface FilterHeader {
  format: 1;
  /** Distinct entries the filter holds. */
  entries: number;
  /** Length of the bit array. */
  bits: number;
  /** Bits set per entry (enhanced double hashing over one SHA-256). */
  hashes: number;
  /** The false-positive rate the sizing aimed at. */
  designFalsePositiveRate: number;
  /** Entries shorter than this (in code points, after normalising) were left out. */
  minLength: number;
  normalisation: "NFKC, lower case";
  /** Where the list came from: the package, its version and the file inside it. */
  source: string;
  /** SHA-256 (hex) of the source file as read. */
  sourceSha256: string;
}

/**
 * The form a password is compared in: NFKC (as it is hashed) and lower case, so "Sunshine2024!" is found
 * as "sunshine2024!" — a capitalised or shouted variant of a breached password is the first thing a
 * cracker tries.
 */
export function breachKey(password: string): string {
  return password.normalize("NFKC").toLowerCase();
}

/** The bit positions of one key: two 48-bit halves of its SHA-256, combined by enhanced double hashing. */
function positions(key: string, bits: number, hashes: number, visit: (bit: number) => void): void {
  const digest = createHash("sha256").update(key, "utf8").digest();
  let x = digest.readUIntLE(0, 6) % bits;
  let y = digest.readUIntLE(6, 6) % bits;
  for (let i = 0; i < hashes; i++) {
    visit(x);
    x = (x + y) % bits;
    y = (y + i + 1) % bits;
  }
}

export class BreachedPasswordFilter {
  private constructor(
    readonly header: FilterHeader,
    private readonly bitArray: Uint8Array,
  ) {}

  /** Sizes a filter for `keys` (already normalised with breachKey) at the false-positive rate asked for. */
  static build(keys: Iterable<string>, header: Omit<FilterHeader, "entries" | "bits" | "hashes">) {
    const distinct = [...new Set(keys)];
    const n = Math.max(distinct.length, 1);
    const bits = Math.ceil((-n * Math.log(header.designFalsePositiveRate)) / Math.LN2 ** 2 / 64) * 64;
    const hashes = Math.max(1, Math.round((bits / n) * Math.LN2));
    const bitArray = new Uint8Array(bits / 8);
    for (const key of distinct) {
      positions(key, bits, hashes, (bit) => {
        bitArray[bit >>> 3]! |= 1 << (bit & 7);
      });
    }
    return new BreachedPasswordFilter({ ...header, entries: distinct.length, bits, hashes }, bitArray);
  }

  static parse(file: Uint8Array): BreachedPasswordFilter {
    const buffer = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
    if (buffer.length < 8 || buffer.toString("latin1", 0, 4) !== MAGIC) {
      throw new Error("breached-password filter: not a filter file");
    }
    const headerLength = buffer.readUInt32LE(4);
    let header: FilterHeader;
    try {
      if (8 + headerLength > buffer.length) throw new Error("short");
      header = JSON.parse(buffer.toString("utf8", 8, 8 + headerLength)) as FilterHeader;
    } catch {
      throw new Error("breached-password filter: the header does not match the file");
    }
    // The bits end where the file does (not where the buffer it was read into does).
    const bitArray = buffer.subarray(8 + headerLength);
    if (
      typeof header !== "object" ||
      header === null ||
      header.format !== 1 ||
      !Number.isInteger(header.bits) ||
      header.bits <= 0 ||
      header.bits % 8 !== 0 ||
      bitArray.length !== header.bits / 8 ||
      !Number.isInteger(header.hashes) ||
      header.hashes < 1 ||
      header.hashes > 64
    ) {
      throw new Error("breached-password filter: the header does not match the file");
    }
    return new BreachedPasswordFilter(header, bitArray);
  }

  serialize(): Buffer {
    const header = Buffer.from(JSON.stringify(this.header), "utf8");
    const length = Buffer.alloc(4);
    length.writeUInt32LE(header.length);
    return Buffer.concat([Buffer.from(MAGIC, "latin1"), length, header, this.bitArray]);
  }

  /** True when the key (normalised with breachKey) may be on the list; false means it surely is not. */
  hasKey(key: string): boolean {
    let found = true;
    positions(key, this.header.bits, this.header.hashes, (bit) => {
      if ((this.bitArray[bit >>> 3]! & (1 << (bit & 7))) === 0) found = false;
    });
    return found;
  }

  /** The share of bits set: with `hashes`, the expected false-positive rate is this to that power. */
  fillRatio(): number {
    let set = 0;
    for (const byte of this.bitArray) {
      let b = byte;
      while (b) {
        set += b & 1;
        b >>>= 1;
      }
    }
    return set / this.header.bits;
  }
}

let loaded: BreachedPasswordFilter | null = null;

/** The committed filter, read once on first use (about a megabyte, a few milliseconds). */
export function breachedPasswordFilter(): BreachedPasswordFilter {
  loaded ??= BreachedPasswordFilter.parse(fs.readFileSync(BREACHED_PASSWORDS_FILE));
  return loaded;
}

/**
 * Whether a password is on the breached list, as the owner would type it. Any string is a fair question:
 * nothing here throws for empty, huge, NUL-laden or ill-formed Unicode input.
 */
export function isBreachedPassword(password: string): boolean {
  const key = breachKey(password);
  const filter = breachedPasswordFilter();
  if ([...key].length < filter.header.minLength) return false;
  return filter.hasKey(key);
}
