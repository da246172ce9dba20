// Numbers of the gateway bench: pooled latency percentiles over raw samples, per-upstream shares vs the
// weights, CPU time of the processes under test.
import { readdirSync, readFileSync } from "node:fs";
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

/** Resident set size now and its peak (VmRSS / VmHWM of /proc/<pid>/status), MB; null without /proc or when gone. */
export function procMemMb(pid: number): { rss: number; peak: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s*(\\d+) kB`, "m").exec(s)?.[1] ?? NaN);
    const rss = kb("VmRSS");
    return Number.isFinite(rss) ? { rss: rss / 1024, peak: kb("VmHWM") / 1024 } : null;
  } catch {
    return null;
  }
}

/** The short command name of a process (/proc/<pid>/comm), "" when unknown. */
export function procComm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
}

/** Every descendant of the processes `roots` (children, their children, …), from one scan of /proc; [] without /proc. */
export function descendants(roots: number[]): number[] {
  const kids = new Map<number, number[]>();
  try {
    for (const d of readdirSync("/proc")) {
      if (!/^\d+$/.test(d)) continue;
      const ppid = procStat(Number(d))?.ppid; // undefined: gone meanwhile
      if (ppid !== undefined) kids.set(ppid, [...(kids.get(ppid) ?? []), Number(d)]);
    }
  } catch {
    return [];
  }
  const out: number[] = [];
  const todo = [...roots];
  while (todo.length > 0) {
    for (const k of kids.get(todo.pop()!) ?? []) {
      if (out.includes(k) || roots.includes(k)) continue;
      out.push(k);
      todo.push(k);
    }
  }
  return out;
}

/** When the process started (/proc/<pid>/stat starttime, clock ticks since boot): tells a pid from a reused one; null when gone. */
export function procStartTicks(pid: number): number | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const v = Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[19]);
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}
