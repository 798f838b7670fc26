import { isIPv4, isIPv6 } from "node:net";

/**
 * An address as bytes: an IPv4 address (or an IPv6 address in ::ffff:0:0/96, which is one) as its dotted
 * quad, any other IPv6 address as its eight 16-bit groups.
 */
type Parsed = string | number[];

/**
 * The eight 16-bit groups of a string `isIPv6` accepts and that carries no zone id: `::` expanded, hex in
 * either case, an embedded dotted IPv4 tail taken as the two groups it is.
 */
function ipv6Groups(ip: string): number[] {
  const gap = ip.indexOf("::");
  const head = gap === -1 ? ip : ip.slice(0, gap);
  const tail = gap === -1 ? "" : ip.slice(gap + 2);
  const groups: number[] = [];
  const fields = (part: string, into: number[]) => {
    if (part === "") return;
    for (const field of part.split(":")) {
      if (field.includes(".")) {
        const [a = 0, b = 0, c = 0, d = 0] = field.split(".").map(Number);
        into.push((a << 8) | b, (c << 8) | d);
      } else into.push(Number.parseInt(field, 16));
    }
  };
  fields(head, groups);
  if (gap !== -1) {
    const rest: number[] = [];
    fields(tail, rest);
    while (groups.length + rest.length < 8) groups.push(0);
    groups.push(...rest);
  }
  return groups;
}

/** ::ffff:a.b.c.d — an IPv4 address written as IPv6. */
const isMapped = (g: number[]) =>
  g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff;

const dotted = (high: number, low: number) => `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;

/**
 * Any spelling `net.isIP` accepts, as bytes; null for anything else. A zone id (`%eth0`) names an interface
 * of the machine that saw the address, not part of the address: with `withZone` it is dropped, otherwise the
 * address is refused.
 */
function parse(ip: string, withZone: boolean): Parsed | null {
  // The common case first, without allocating: a dotted quad isIPv4 accepts is canonical (no leading zeros).
  if (isIPv4(ip)) return ip;
  // The next most common: a dual-stack socket's spelling of an IPv4 client.
  if (ip.startsWith("::ffff:") && isIPv4(ip.slice(7))) return ip.slice(7);
  if (!isIPv6(ip)) return null;
  const zone = ip.indexOf("%");
  if (zone !== -1 && !withZone) return null;
  const groups = ipv6Groups(zone === -1 ? ip : ip.slice(0, zone));
  return isMapped(groups) ? dotted(groups[6]!, groups[7]!) : groups;
}

/** RFC 5952 §4: lower-case hex without leading zeros, the longest run (first of equals) of 2+ zero groups as `::`. */
function formatIPv6(groups: number[]): string {
  let start = -1;
  let length = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j += 1;
    if (j - i > length) {
      start = i;
      length = j - i;
    }
    i = j;
  }
  const hex = (part: number[]) => part.map((g) => g.toString(16)).join(":");
  if (start === -1) return hex(groups);
  return `${hex(groups.slice(0, start))}::${hex(groups.slice(start + length))}`;
}

/**
 * The one spelling of an IP address, or null when the string is not one: an IPv4 address (also when written
 * as IPv6, `::FFFF:192.0.2.1`, `0:0:0:0:0:ffff:c000:201`) as its dotted quad, any other IPv6 address in
 * RFC 5952 form (`2001:DB8:0:0::1` is `2001:db8::1`). A zone id (`fe80::1%eth0`) is refused.
 */
export function canonicalAddress(ip: string): string | null {
  const parsed = parse(ip, false);
  if (parsed === null || typeof parsed === "string") return parsed;
  return formatIPv6(parsed);
}

/**
 * An address in its one spelling (see canonicalAddress), so every rule and record keyed on it sees one
 * string per address; a zone id is dropped. A string that is not an address is returned as it is.
 */
export function plainAddress(ip: string): string {
  const parsed = parse(ip, true);
  if (parsed === null || typeof parsed === "string") return parsed ?? ip;
  return formatIPv6(parsed);
}

/**
 * The subject that per-address limits count: an IPv4 address itself, an IPv6 address by its /64. One
 * IPv6 subscriber is handed a whole /64 and can pick a new address in it for every request, so counting
 * single IPv6 addresses would let one machine look like 2^64 of them. Every spelling of an address (an
 * IPv4 address written as IPv6 in any case or form, a zone id) counts as the address it is.
 */
export function addressSubject(ip: string): string {
  const parsed = parse(ip, true);
  if (parsed === null) return ip;
  if (typeof parsed === "string") return parsed;
  return `${parsed[0]!.toString(16)}:${parsed[1]!.toString(16)}:${parsed[2]!.toString(16)}:${parsed[3]!.toString(16)}::/64`;
}

/**
 * The network an address belongs to, for "same network" comparisons: IPv4 by its /24, IPv6 by its /48
 * (the prefix one site is usually given).
 */
export function networkOf(ip: string): string {
  const parsed = parse(ip, true);
  if (parsed === null) return ip;
  if (typeof parsed === "string") return `${parsed.slice(0, parsed.lastIndexOf("."))}.0/24`;
  return `${parsed[0]!.toString(16)}:${parsed[1]!.toString(16)}:${parsed[2]!.toString(16)}::/48`;
}

/**
 * How wide an allowlist entry (an address or CIDR) is: the shortest prefix, per family, of the addresses it
 * admits, or null when it admits none of that family; null for an entry that is not an address or CIDR.
 * Node's BlockList matches IPv4 addresses against IPv6 rules through ::ffff:0:0/96, so an IPv6 entry inside
 * that block is the IPv4 range it maps (::ffff:192.0.2.0/120 is 192.0.2.0/24), and one that contains the
 * block (::/0, ::/1, ::/64) admits every IPv4 address as well.
 */
export function cidrWidth(cidr: string): { ipv4: number | null; ipv6: number | null } | null {
  const slash = cidr.indexOf("/");
  const address = slash === -1 ? cidr : cidr.slice(0, slash);
  const bitsText = slash === -1 ? undefined : cidr.slice(slash + 1);
  if (bitsText !== undefined && !/^\d+$/.test(bitsText)) return null;
  const parsed = parse(address, false);
  if (parsed === null) return null;
  // The entry's family is as written: ::ffff:192.0.2.0/120 is an IPv6 rule whose bits count from 128.
  const v4Written = isIPv4(address);
  const bits = bitsText === undefined ? (v4Written ? 32 : 128) : Number(bitsText);
  if (bits > (v4Written ? 32 : 128)) return null;
  if (v4Written) return { ipv4: bits, ipv6: null };
  // An IPv6 rule of `bits` bits: how it relates to ::ffff:0:0/96 decides which IPv4 addresses it admits.
  const groups = typeof parsed === "string" ? ipv6Groups(`::ffff:${parsed}`) : parsed;
  const mappedPrefix = [0, 0, 0, 0, 0, 0xffff];
  const sharedBits = (n: number) => {
    for (let i = 0; i * 16 < n; i += 1) {
      const take = Math.min(16, n - i * 16);
      const mask = (0xffff << (16 - take)) & 0xffff;
      if ((groups[i]! & mask) !== (mappedPrefix[i]! & mask)) return false;
    }
    return true;
  };
  if (bits >= 96 && sharedBits(96)) return { ipv4: bits - 96, ipv6: null };
  if (bits < 96 && sharedBits(bits)) return { ipv4: 0, ipv6: bits };
  return { ipv4: null, ipv6: bits };
}
