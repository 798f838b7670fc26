import { BlockList, isIPv6 } from "node:net";
import { plainAddress } from "../support/network.js";

/**
 * A key's IP allowlist as a matcher, built once when the key is cached instead of on every request:
 * a list of subnets costs more to build than a signature costs to check. An empty list allows every
 * address; an address written as IPv4-in-IPv6 (`::ffff:192.0.2.1`) is matched as the IPv4 address it is.
 */
export function addressAllowlist(cidrs: readonly string[]): (ip: string) => boolean {
  if (cidrs.length === 0) return () => true;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address, bits] = cidr.split("/") as [string, string | undefined];
    const type = isIPv6(address) ? "ipv6" : "ipv4";
    list.addSubnet(address, bits === undefined ? (type === "ipv4" ? 32 : 128) : Number(bits), type);
  }
  return (ip) => {
    const address = plainAddress(ip);
    return list.check(address, isIPv6(address) ? "ipv6" : "ipv4");
  };
}
