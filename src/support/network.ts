import { isIPv4, isIPv6 } from "node:net";

/** An IPv4 address written as IPv6 (`::ffff:192.0.2.1`) is that IPv4 address. */
export function plainAddress(ip: string): string {
  return ip.startsWith("::ffff:") && isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

/** The eight 16-bit groups of an IPv6 address, with `::` expanded; null when it is not one. */
function ipv6Groups(ip: string): number[] | null {
  if (!isIPv6(ip)) return null;
  const [head = "", tail] = ip.split("::") as [string, string | undefined];
  const parse = (part: string) => (part === "" ? [] : part.split(":"));
  let headParts = parse(head);
  let tailParts = tail === undefined ? [] : parse(tail);
  // An embedded IPv4 tail (::ffff:1.2.3.4 handled above; 64:ff9b::1.2.3.4 here) is two groups.
  const expandV4 = (parts: string[]) => {
    const last = parts.at(-1);
    if (last === undefined || !isIPv4(last)) return parts;
    const bytes = last.split(".").map(Number) as [number, number, number, number];
    return [
      ...parts.slice(0, -1),
      ((bytes[0] << 8) | bytes[1]).toString(16),
      ((bytes[2] << 8) | bytes[3]).toString(16),
    ];
  };
  headParts = expandV4(headParts);
  tailParts = expandV4(tailParts);
  const missing = 8 - headParts.length - tailParts.length;
  const groups = [...headParts, ...Array(tail === undefined ? 0 : missing).fill("0"), ...tailParts];
  return groups.length === 8 ? groups.map((g) => Number.parseInt(g || "0", 16)) : null;
}

/**
 * The subject that per-address limits count: an IPv4 address itself, an IPv6 address by its /64. One
 * IPv6 subscriber is handed a whole /64 and can pick a new address in it for every request, so counting
 * single IPv6 addresses would let one machine look like 2^64 of them.
 */
export function addressSubject(ip: string): string {
  const address = plainAddress(ip);
  const groups = ipv6Groups(address);
  if (!groups) return address;
  return `${groups
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(":")}::/64`;
}

/**
 * The network an address belongs to, for "same network" comparisons: IPv4 by its /24, IPv6 by its /48
 * (the prefix one site is usually given).
 */
export function networkOf(ip: string): string {
  const address = plainAddress(ip);
  const groups = ipv6Groups(address);
  if (groups) {
    return `${groups
      .slice(0, 3)
      .map((g) => g.toString(16))
      .join(":")}::/48`;
  }
  if (isIPv4(address)) return `${address.split(".").slice(0, 3).join(".")}.0/24`;
  return address;
}
