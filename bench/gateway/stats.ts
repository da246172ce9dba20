// Numbers of the gateway bench: pooled latency percentiles over raw samples, per-upstream shares vs the
// weights, CPU time of the processes under test.
import { readdirSync } from "node:fs";
import { procStat } from "../support.js";

/** Nearest-rank percentile (p in 0..100) of an ascending-sorted array; NaN when empty (as bench/support.ts's pct). */
export function pctSorted(s: Float64Array, p: number): number {
  if (s.length === 0) return NaN;
  const k = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[k]!;
}

/** The samples of several runs in one ascending-sorted array. */
export function pooled(parts: Float64Array[]): Float64Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Float64Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out.sort();
}

export interface ShareCheck {
  /** Percent of the served chat completions per upstream. */
  shares: number[];
  /** Percent each upstream should get (weights / Σ weights). */
  expected: number[];
  /** Largest |share − expected|, percentage points. */
  maxDeviation: number;
  /** Allowed deviation per upstream: max(tolerance, 4 binomial standard deviations at this count). */
  allowed: number[];
  ok: boolean;
}

export function shareCheck(served: number[], weights: number[], tolerancePoints: number): ShareCheck {
  const total = served.reduce((a, x) => a + x, 0);
  const wsum = weights.reduce((a, x) => a + x, 0);
  const shares = served.map((x) => (total > 0 ? (100 * x) / total : 0));
  const expected = weights.map((w) => (100 * w) / wsum);
  const maxDeviation = total > 0 ? Math.max(...shares.map((s, i) => Math.abs(s - expected[i]!))) : 100;
  // A weighted random picker (Portkey) is binomial per upstream: σ = 100·√(p(1−p)/n) points.
  const allowed = expected.map((e) => Math.max(tolerancePoints, total > 0 ? 4 * 100 * Math.sqrt((e / 100) * (1 - e / 100) / total) : 0));
  const ok = total > 0 && shares.every((s, i) => Math.abs(s - expected[i]!) <= allowed[i]!);
  return { shares, expected, maxDeviation, allowed, ok };
}

/** CPU time (user + system, ms) the processes `pids` have used so far; null without /proc or when one is gone. */
export function cpuMs(pids: number[]): number | null {
  let total = 0;
  for (const pid of pids) {
    const st = procStat(pid);
    if (!st) return null;
    total += st.cpuSeconds * 1000;
  }
  return total;
}

/** Pids of the direct children of `pid` (nginx's worker under its master); [] without /proc. */
export function childPids(pid: number): number[] {
  try {
    const out: number[] = [];
    for (const d of readdirSync("/proc")) {
      if (!/^\d+$/.test(d)) continue;
      if (procStat(Number(d))?.ppid === pid) out.push(Number(d)); // null: gone meanwhile
    }
    return out;
  } catch {
    return [];
  }
}
