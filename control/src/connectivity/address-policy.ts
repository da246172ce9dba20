/**
 * Which addresses the control service may connect to. Link-local and cloud-metadata addresses are refused
 * unless ALLOW_LINK_LOCAL is set (SSRF guard); private ranges and loopback are normal for self-hosted models.
 */
import { BlockList, isIPv4, isIPv6 } from "node:net";

const blocked = new BlockList();
blocked.addSubnet("169.254.0.0", 16, "ipv4");
blocked.addSubnet("fe80::", 10, "ipv6");
blocked.addAddress("fd00:ec2::254", "ipv6");

/** `::ffff:169.254.169.254` is the IPv4 address for our purposes. */
function unmap(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (m) return m[1]!;
  const h = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(ip);
  if (h) {
    const hi = parseInt(h[1]!, 16);
    const lo = parseInt(h[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return ip;
}

export function isBlockedAddress(ip: string): boolean {
  const a = unmap(ip.replace(/%.*$/, ""));
  if (isIPv4(a)) return blocked.check(a, "ipv4");
  if (isIPv6(a)) return blocked.check(a, "ipv6");
  return true; // not an IP literal: refuse
}

/** `ip:port`, IPv6 in brackets (the routing-table Address format). */
export function formatAddress(ip: string, port: number): string {
  return isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`;
}
