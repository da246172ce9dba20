/**
 * Sliding-window statistics of one instance, as pure functions over the per-bucket Redis hashes
 * (telemetry/store.ts). A window is the sum of its buckets: counts add, histogram buckets add (they
 * share the contract's bounds, LATENCY_BUCKETS_MS), so batches from any number of Envoy workers and
 * replicas merge exactly. Quantiles are interpolated linearly inside the histogram bucket that holds
 * the rank (Prometheus' histogram_quantile method); a rank in the overflow bucket reports the last
 * finite bound (the true value is only known to be above it).
 */
import { LATENCY_BUCKETS_MS } from "../../contracts/telemetry.js";

export const BUCKETS = LATENCY_BUCKETS_MS.length + 1;

/** Field names in a bucket hash. Traffic: r e5 cf s h0..h13. Probes: pn pf ps p0..p13. */
export const F = {
  requests: "r",
  upstream5xx: "e5",
  connectFailures: "cf",
  latencySum: "s",
  hist: (i: number) => `h${i}`,
  probes: "pn",
  probeFailures: "pf",
  probeSum: "ps",
  probeHist: (i: number) => `p${i}`,
} as const;

export interface WindowStats {
  requests: number;
  upstream_5xx: number;
  connect_failures: number;
  latency_sum_ms: number;
  latency_buckets: number[];
  probes: number;
  probe_failures: number;
  probe_sum_ms: number;
  probe_buckets: number[];
}

export const emptyStats = (): WindowStats => ({
  requests: 0,
  upstream_5xx: 0,
  connect_failures: 0,
  latency_sum_ms: 0,
  latency_buckets: new Array<number>(BUCKETS).fill(0),
  probes: 0,
  probe_failures: 0,
  probe_sum_ms: 0,
  probe_buckets: new Array<number>(BUCKETS).fill(0),
});

const num = (v: string | undefined): number => {
  const n = v === undefined ? 0 : Number(v);
  return Number.isFinite(n) ? n : 0;
};

/** Adds one bucket hash (HGETALL) into `s`. */
export function addBucket(s: WindowStats, h: Record<string, string>): WindowStats {
  s.requests += num(h[F.requests]);
  s.upstream_5xx += num(h[F.upstream5xx]);
  s.connect_failures += num(h[F.connectFailures]);
  s.latency_sum_ms += num(h[F.latencySum]);
  s.probes += num(h[F.probes]);
  s.probe_failures += num(h[F.probeFailures]);
  s.probe_sum_ms += num(h[F.probeSum]);
  for (let i = 0; i < BUCKETS; i++) {
    s.latency_buckets[i]! += num(h[F.hist(i)]);
    s.probe_buckets[i]! += num(h[F.probeHist(i)]);
  }
  return s;
}

/** The histogram bucket a latency falls in (upper bounds inclusive; the last index = overflow). */
export function bucketOf(ms: number): number {
  for (let i = 0; i < LATENCY_BUCKETS_MS.length; i++) if (ms <= LATENCY_BUCKETS_MS[i]!) return i;
  return LATENCY_BUCKETS_MS.length;
}

/** q-quantile (0 < q ≤ 1) of a histogram with the contract's bounds; null when it is empty. */
export function quantile(buckets: readonly number[], q: number): number | null {
  const total = buckets.reduce((a, b) => a + b, 0);
  if (total <= 0) return null;
  const rank = q * total;
  let cum = 0;
  for (let i = 0; i < buckets.length; i++) {
    const c = buckets[i]!;
    if (c > 0 && cum + c >= rank) {
      const lower = i === 0 ? 0 : LATENCY_BUCKETS_MS[i - 1]!;
      if (i >= LATENCY_BUCKETS_MS.length) return lower; // overflow: only "above the last bound" is known
      const upper = LATENCY_BUCKETS_MS[i]!;
      return lower + ((upper - lower) * (rank - cum)) / c;
    }
    cum += c;
  }
  return LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.length - 1]!;
}

export const errorsOf = (s: WindowStats): number => s.upstream_5xx + s.connect_failures;

/** (upstream_5xx + connect_failures) / requests; null without requests. */
export const errorRate = (s: WindowStats): number | null => (s.requests > 0 ? Math.min(1, errorsOf(s) / s.requests) : null);

export const round = (v: number | null, digits = 1): number | null => (v === null ? null : Math.round(v * 10 ** digits) / 10 ** digits);
