import { describe, expect, it } from "vitest";
import { addressSubject, networkOf, plainAddress } from "../../src/support/network.js";

describe("network subjects", () => {
  it.each([
    ["192.0.2.7", "192.0.2.7"],
    ["::ffff:192.0.2.7", "192.0.2.7"],
    ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["2001:db8:1:2::9", "2001:db8:1:2::/64"],
    ["2001:0db8:0001:0002:ffff::1", "2001:db8:1:2::/64"],
    ["::1", "0:0:0:0::/64"],
    ["64:ff9b::192.0.2.1", "64:ff9b:0:0::/64"],
    ["not an address", "not an address"],
  ])("counts %s as %s", (ip, subject) => {
    expect(addressSubject(ip)).toBe(subject);
  });

  it("puts every address of one IPv6 /64 under one subject, and another /64 under another", () => {
    expect(addressSubject("2001:db8:aa:bb::1")).toBe(addressSubject("2001:db8:aa:bb:ffff:ffff:ffff:ffff"));
    expect(addressSubject("2001:db8:aa:bb::1")).not.toBe(addressSubject("2001:db8:aa:bc::1"));
  });

  it("compares networks by IPv4 /24 and IPv6 /48", () => {
    expect(networkOf("192.0.2.7")).toBe(networkOf("192.0.2.200"));
    expect(networkOf("192.0.2.7")).not.toBe(networkOf("192.0.3.7"));
    expect(networkOf("2001:db8:1:2::1")).toBe(networkOf("2001:db8:1:ffff::1"));
    expect(networkOf("2001:db8:1::1")).not.toBe(networkOf("2001:db8:2::1"));
    expect(plainAddress("::ffff:10.0.0.1")).toBe("10.0.0.1");
  });
});
