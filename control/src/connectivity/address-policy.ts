/**
 * Which addresses the control service may connect to. Link-local and cloud-metadata addresses are refused
 * unless ALLOW_LINK_LOCAL is set (SSRF guard); private ranges and loopback are normal for self-hosted models.
 *
 * An IPv6 address that carries an IPv4 address (IPv4-mapped ::ffff:0:0/96 and ::ffff:0:0:0/96,
 * IPv4-compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32) is judged by that IPv4
 * address too: each spelling reaches (or can be made to reach) the same host.
 */
import { BlockList, isIPv4, isIPv6 } from "node:net";

const blocked = new BlockList();
blocked.addSubnet("169.254.0.0", 16, "ipv4"); // link-local, AWS/GCP/Azure/OpenStack metadata 169.254.169.254
blocked.addAddress("100.100.100.200", "ipv4"); // Alibaba Cloud metadata
blocked.addAddress("192.0.0.192", "ipv4"); // Oracle Cloud (classic) metadata
blocked.addSubnet("fe80::", 10, "ipv6");
blocked.addAddress("fd00:ec2::254", "ipv6"); // AWS metadata over IPv6

/** The 8 16-bit groups of an IPv6 literal (zone removed), or null. */
export function ipv6Groups(ip: string): number[] | null {
  let s = ip.replace(/%.*$/, "");
  if (!isIPv6(s)) return null;
  const tail: number[] = [];
  const m = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (m) {
    const p = m[2]!.split(".").map(Number);
    tail.push((p[0]! << 8) | p[1]!, (p[2]! << 8) | p[3]!);
    s = m[1]!.endsWith("::") ? m[1]! : m[1]!.slice(0, -1);
  }
  const half = (x: string): number[] => (x === "" ? [] : x.split(":").map((g) => parseInt(g, 16)));
  const dbl = s.indexOf("::");
  let groups: number[];
  if (dbl >= 0) {
    const head = half(s.slice(0, dbl));
    const rest = half(s.slice(dbl + 2));
    const fill = 8 - tail.length - head.length - rest.length;
    if (fill < 0) return null;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest, ...tail];
  } else {
    groups = [...half(s), ...tail];
  }
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}

const v4 = (hi: number, lo: number): string => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;

/** The IPv4 address an IPv4-mapped address (::ffff:0:0/96, ::ffff:0:0:0/96) is, else null. */
function mappedIPv4(g: number[]): string | null {
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) return v4(g[6]!, g[7]!);
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0xffff && g[5] === 0) return v4(g[6]!, g[7]!);
  return null;
}

/**
 * Every IPv4 address an address stands for: itself (IPv4), or the IPv4 embedded in an IPv4-mapped,
 * IPv4-compatible, NAT64, 6to4 or Teredo address. Empty for other IPv6 addresses.
 */
export function embeddedIPv4(ip: string): string[] {
  const a = ip.replace(/%.*$/, "");
  if (isIPv4(a)) return [a];
  const g = ipv6Groups(a);
  if (!g) return [];
  const out = new Set<string>();
  const mapped = mappedIPv4(g);
  if (mapped) out.add(mapped);
  // IPv4-compatible ::a.b.c.d (deprecated; ::/128 and ::1 excluded: unspecified and loopback).
  if (g.slice(0, 6).every((x) => x === 0) && (g[6] !== 0 || g[7]! > 1)) out.add(v4(g[6]!, g[7]!));
  // NAT64 well-known prefix 64:ff9b::/96 (and the local-use 64:ff9b:1::/48, IPv4 in the last 32 bits).
  if (g[0] === 0x64 && g[1] === 0xff9b && ((g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0) || g[2] === 1)) out.add(v4(g[6]!, g[7]!));
  // 6to4 2002:AABB:CCDD::/48.
  if (g[0] === 0x2002) out.add(v4(g[1]!, g[2]!));
  // Teredo 2001:0000::/32: server in groups 2–3, client = last 32 bits inverted.
  if (g[0] === 0x2001 && g[1] === 0) {
    out.add(v4(g[2]!, g[3]!));
    out.add(v4(g[6]! ^ 0xffff, g[7]! ^ 0xffff));
  }
  return [...out];
}

/** Verdicts by address: every probe checks its instance's address again (10k instances: 2,000 a second). */
const verdicts = new Map<string, boolean>();
const MAX_VERDICTS = 65_536;

export function isBlockedAddress(ip: string): boolean {
  let v = verdicts.get(ip);
  if (v === undefined) {
    v = checkAddress(ip);
    if (verdicts.size >= MAX_VERDICTS) verdicts.clear();
    verdicts.set(ip, v);
  }
  return v;
}

function checkAddress(ip: string): boolean {
  const a = ip.replace(/%.*$/, "");
  if (isIPv4(a)) return blocked.check(a, "ipv4");
  if (!isIPv6(a)) return true; // not an IP literal: refuse
  if (blocked.check(a, "ipv6")) return true;
  return embeddedIPv4(a).some((x) => blocked.check(x, "ipv4"));
}

/**
 * The one spelling of an IP address: IPv4-mapped IPv6 → the IPv4 address; other IPv6 lower-case and
 * zero-compressed (RFC 5952: the longest run of two or more zero groups, the first on a tie); zone removed.
 * Not an IP literal → returned unchanged.
 */
export function canonicalIp(ip: string): string {
  const a = ip.replace(/%.*$/, "");
  if (isIPv4(a)) return a;
  const g = ipv6Groups(a);
  if (!g) return ip;
  const mapped = mappedIPv4(g);
  if (mapped) return mapped;
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** `ip:port`, IPv6 in brackets (the routing-table Address format), in the canonical spelling of `ip`. */
export function formatAddress(ip: string, port: number): string {
  const c = canonicalIp(ip);
  return isIPv6(c) ? `[${c}]:${port}` : `${c}:${port}`;
}
