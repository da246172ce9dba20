// Issue 16, items 9 and 10, as pure functions (no connection is ever made): every spelling of a blocked
// address is blocked, and every spelling of one server formats to the same ip:port.
import { test } from "node:test";
import assert from "node:assert/strict";
import { canonicalIp, embeddedIPv4, formatAddress, isBlockedAddress } from "../../control/src/connectivity/address-policy.js";

const BLOCKED = [
  "169.254.169.254",
  "::ffff:169.254.169.254",
  "::ffff:a9fe:a9fe",
  "64:ff9b::a9fe:a9fe", // NAT64
  "64:ff9b::169.254.169.254",
  "64:FF9B:0:0:0:0:a9fe:a9fe",
  "64:ff9b:1::a9fe:a9fe", // NAT64 local-use
  "::a9fe:a9fe", // IPv4-compatible
  "::169.254.169.254",
  "2002:a9fe:a9fe::1", // 6to4
  "2002:a9fe:a9fe:1:2:3:4:5",
  "::ffff:0:a9fe:a9fe", // IPv4-translated (::ffff:0:0:0/96)
  "::ffff:0:169.254.169.254",
  "0:0:0:0:0:ffff:a9fe:a9fe",
  "2001:0:a9fe:a9fe::1", // Teredo server
  "2001:0:4136:e378:8000:63bf:5601:5601", // Teredo client 169.254.169.254 (inverted)
  "100.100.100.200", // Alibaba Cloud metadata
  "::ffff:100.100.100.200",
  "64:ff9b::6464:64c8",
  "fe80::1",
  "fe80::1%eth0",
  "FE80::1",
  "fd00:ec2::254",
  "not-an-ip",
];
const ALLOWED = ["127.0.0.1", "::1", "::", "10.0.0.5", "::ffff:10.0.0.5", "192.168.1.1", "fd00::7", "2001:db8::1", "64:ff9b::a00:5", "2002:a00:5::1", "100.100.100.199", "8.8.8.8"];

for (const ip of BLOCKED) test(`blocked: ${ip}`, () => assert.equal(isBlockedAddress(ip), true));
for (const ip of ALLOWED) test(`allowed: ${ip}`, () => assert.equal(isBlockedAddress(ip), false));

test("embedded IPv4 of each transition spelling", () => {
  assert.deepEqual(embeddedIPv4("64:ff9b::a9fe:a9fe"), ["169.254.169.254"]);
  assert.deepEqual(embeddedIPv4("::a9fe:a9fe"), ["169.254.169.254"]);
  assert.deepEqual(embeddedIPv4("2002:a9fe:a9fe::1"), ["169.254.169.254"]);
  assert.deepEqual(embeddedIPv4("::ffff:0:a9fe:a9fe"), ["169.254.169.254"]);
  assert.ok(embeddedIPv4("2001:0:4136:e378:8000:63bf:5601:5601").includes("169.254.169.254"));
  assert.deepEqual(embeddedIPv4("fd00::7"), []);
});

test("canonical spelling: IPv4-mapped → IPv4, lower-case, zero-compressed", () => {
  assert.equal(canonicalIp("::ffff:127.0.0.1"), "127.0.0.1");
  assert.equal(canonicalIp("::FFFF:7f00:1"), "127.0.0.1");
  assert.equal(canonicalIp("0:0:0:0:0:ffff:7f00:0001"), "127.0.0.1");
  assert.equal(canonicalIp("::ffff:0:7f00:1"), "127.0.0.1");
  assert.equal(canonicalIp("FD00:0:0:0:0:0:0:7"), "fd00::7");
  assert.equal(canonicalIp("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
  assert.equal(canonicalIp("2001:0db8:0000:0000:0000:0000:0000:0001"), "2001:db8::1");
  assert.equal(canonicalIp("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
  assert.equal(canonicalIp("0:0:0:0:0:0:0:1"), "::1");
  assert.equal(canonicalIp("::"), "::");
  assert.equal(canonicalIp("fe80::1%eth0"), "fe80::1");
  assert.equal(canonicalIp("10.0.0.5"), "10.0.0.5");
});

test("one server, one address: 127.0.0.1:P and [::ffff:127.0.0.1]:P format the same", () => {
  assert.equal(formatAddress("::ffff:127.0.0.1", 8000), "127.0.0.1:8000");
  assert.equal(formatAddress("127.0.0.1", 8000), formatAddress("::ffff:127.0.0.1", 8000));
  assert.equal(formatAddress("::FFFF:7F00:1", 8000), "127.0.0.1:8000");
  assert.equal(formatAddress("FD00:0::7", 8080), "[fd00::7]:8080");
  assert.equal(formatAddress("fd00::7", 8080), formatAddress("fd00:0:0:0:0:0:0:7", 8080));
});
