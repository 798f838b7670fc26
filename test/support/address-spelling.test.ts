import { isIP } from "node:net";
import { describe, expect, it } from "vitest";
import {
  addressSubject,
  canonicalAddress,
  cidrWidth,
  networkOf,
  plainAddress,
} from "../../src/support/network.js";

/**
 * Every spelling `net.isIP` accepts is one address: the subject a lockout counts, the allowlist match and the
 * audit entry must not depend on how a proxy chose to write it.
 */
describe("address spellings", () => {
  it.each([
    // IPv4, and IPv4 written as IPv6 in every form isIP takes.
    ["192.0.2.7", "192.0.2.7"],
    ["::ffff:192.0.2.7", "192.0.2.7"],
    ["::FFFF:192.0.2.7", "192.0.2.7"],
    ["::FfFf:192.0.2.7", "192.0.2.7"],
    ["0:0:0:0:0:ffff:192.0.2.7", "192.0.2.7"],
    ["0000:0000:0000:0000:0000:FFFF:192.0.2.7", "192.0.2.7"],
    ["0::ffff:192.0.2.7", "192.0.2.7"],
    ["::0:ffff:192.0.2.7", "192.0.2.7"],
    ["::ffff:c000:207", "192.0.2.7"],
    ["::ffff:C000:0207", "192.0.2.7"],
    ["0:0:0:0:0:ffff:c000:207", "192.0.2.7"],
    ["::ffff:0102:0304", "1.2.3.4"],
    ["::ffff:0:0", "0.0.0.0"],
    ["::ffff:ffff:ffff", "255.255.255.255"],
    // Not IPv4-mapped: IPv6, in RFC 5952 form (lower case, no leading zeros, the longest zero run as ::).
    ["::1.2.3.4", "::102:304"],
    ["64:ff9b::192.0.2.1", "64:ff9b::c000:201"],
    ["::fffe:1.2.3.4", "::fffe:102:304"],
    ["1::ffff:1.2.3.4", "1::ffff:102:304"],
    ["2001:DB8::1", "2001:db8::1"],
    ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"],
    ["::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"],
    ["0:0:0:0:0:0:0:0", "::"],
    ["::", "::"],
    ["::1", "::1"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["FE80::1", "fe80::1"],
    ["ffff::", "ffff::"],
  ])("spells %s as %s", (ip, canonical) => {
    expect(canonicalAddress(ip)).toBe(canonical);
    expect(plainAddress(ip)).toBe(canonical);
  });

  it.each([
    // Zone ids: isIP takes them, the check endpoint does not.
    "::ffff:1.2.3.4%eth0",
    "fe80::1%eth0",
    "fe80::1%1",
    "::1%lo",
    // Not addresses at all.
    "",
    "x",
    "1.2.3",
    "01.2.3.4",
    "1.2.3.04",
    "256.1.1.1",
    "1.2.3.4 ",
    " 1.2.3.4",
    "1.2.3.4/32",
    "1.2.3.4:443",
    "[::1]",
    "::ffff:01.2.3.4",
    "::ffff:1.2.3.4.5",
    "::ffff:999.0.0.1",
    "2001:db8:::1",
    "1::2::3",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7:1.2.3.4",
    "12345::",
    "g::1",
    "1.2.3.4%eth0",
  ])("refuses %j", (ip) => {
    expect(canonicalAddress(ip)).toBeNull();
  });

  it("counts every spelling of an IPv4 client as that client, not as the IPv6 /64 ::/64", () => {
    const spellings = [
      "198.51.100.7",
      "::ffff:198.51.100.7",
      "::FFFF:198.51.100.7",
      "0:0:0:0:0:ffff:198.51.100.7",
      "::ffff:c633:6407",
      "::ffff:198.51.100.7%eth0",
    ];
    for (const ip of spellings) {
      expect(addressSubject(ip), ip).toBe("198.51.100.7");
      expect(networkOf(ip), ip).toBe("198.51.100.0/24");
    }
    // Two IPv4 clients behind a proxy that writes them in upper case are two subjects.
    expect(addressSubject("::FFFF:198.51.100.7")).not.toBe(addressSubject("::FFFF:198.51.100.8"));
    // An IPv6 client's zone id names the proxy's interface, not another client.
    expect(addressSubject("fe80::1%eth0")).toBe(addressSubject("FE80::1"));
    expect(addressSubject("2001:DB8:0:0::1")).toBe(addressSubject("2001:db8::ffff"));
  });

  it("agrees with WHATWG's IPv6 serialisation (RFC 5952) on random spellings of random addresses", () => {
    let seed = 0x5eed;
    const random = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    for (let round = 0; round < 5000; round += 1) {
      // Mostly zeros and ffff, so mapped addresses and zero runs of every length come up.
      const groups = Array.from({ length: 8 }, () => {
        const pick = random(4);
        return pick === 0 ? random(0x10000) : pick === 1 ? 0xffff : 0;
      });
      if (random(4) === 0) groups.splice(0, 6, 0, 0, 0, 0, 0, 0xffff);
      const v4Tail = random(3) === 0;
      let fields = groups.map((g) => {
        const hex = g.toString(16).padStart(random(2) ? 4 : 1, "0");
        return random(2) ? hex.toUpperCase() : hex;
      });
      if (v4Tail) {
        const [g6 = 0, g7 = 0] = groups.slice(6);
        fields = [...fields.slice(0, 6), `${g6 >> 8}.${g6 & 255}.${g7 >> 8}.${g7 & 255}`];
      }
      // Compress some run of zero fields (not necessarily the longest), or none.
      let spelling = fields.join(":");
      const zeroAt = fields.findIndex((f, i) => i >= random(8) && /^0+$/.test(f));
      if (zeroAt !== -1 && random(2)) {
        let end = zeroAt;
        while (end + 1 < fields.length && /^0+$/.test(fields[end + 1] ?? "")) end += 1;
        end = zeroAt + random(end - zeroAt + 1);
        spelling = `${fields.slice(0, zeroAt).join(":")}::${fields.slice(end + 1).join(":")}`;
      }
      expect(isIP(spelling), spelling).toBe(6);
      const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
      const [g6 = 0, g7 = 0] = groups.slice(6);
      const expected = mapped
        ? `${g6 >> 8}.${g6 & 255}.${g7 >> 8}.${g7 & 255}`
        : new URL(`http://[${groups.map((g) => g.toString(16)).join(":")}]`).hostname.slice(1, -1);
      expect(canonicalAddress(spelling), spelling).toBe(expected);
      expect(canonicalAddress(`${spelling}%eth0`), spelling).toBeNull();
      expect(plainAddress(`${spelling}%eth0`), spelling).toBe(expected);
    }
  });

  it.each([
    ["0.0.0.0/0", { ipv4: 0, ipv6: null }],
    ["0.0.0.0/1", { ipv4: 1, ipv6: null }],
    ["10.0.0.0/15", { ipv4: 15, ipv6: null }],
    ["10.0.0.0/16", { ipv4: 16, ipv6: null }],
    ["192.0.2.7", { ipv4: 32, ipv6: null }],
    // IPv6 rules admit IPv4 addresses through ::ffff:0:0/96.
    ["::/0", { ipv4: 0, ipv6: 0 }],
    ["::/1", { ipv4: 0, ipv6: 1 }],
    ["::/32", { ipv4: 0, ipv6: 32 }],
    ["::/64", { ipv4: 0, ipv6: 64 }],
    ["::ffff:0:0/95", { ipv4: 0, ipv6: 95 }],
    ["::ffff:0:0/96", { ipv4: 0, ipv6: null }],
    ["::FFFF:10.0.0.0/111", { ipv4: 15, ipv6: null }],
    ["::ffff:10.0.0.0/112", { ipv4: 16, ipv6: null }],
    ["0:0:0:0:0:ffff:a00:0/112", { ipv4: 16, ipv6: null }],
    ["::ffff:192.0.2.7", { ipv4: 32, ipv6: null }],
    ["8000::/1", { ipv4: null, ipv6: 1 }],
    ["2001:db8::/31", { ipv4: null, ipv6: 31 }],
    ["2001:DB8::/32", { ipv4: null, ipv6: 32 }],
    ["::/96", { ipv4: null, ipv6: 96 }],
    ["::1", { ipv4: null, ipv6: 128 }],
  ])("measures the allowlist entry %s", (cidr, width) => {
    expect(cidrWidth(cidr)).toEqual(width);
  });

  it.each(["1.2.3.4/33", "::/129", "1.2.3.4/", "1.2.3.4/-1", "1.2.3.4/8/8", "fe80::1%eth0/64", "x/8"])(
    "does not measure %j",
    (cidr) => {
      expect(cidrWidth(cidr)).toBeNull();
    },
  );
});
