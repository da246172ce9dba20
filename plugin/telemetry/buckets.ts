// Mirrors LATENCY_BUCKETS_MS and TELEMETRY_LIMITS in control/contracts/telemetry.ts (contract 3).
// test/plugin/telemetry.test.ts checks the bucket count and every edge against the TS constant.
export const TELEMETRY_SCHEMA: u32 = 1;
export const MAX_INSTANCES_PER_BATCH: i32 = 2048;
export const MAX_COUNT: u32 = 1_000_000_000;

/** Inclusive upper bounds (ms); a last implicit bucket holds everything slower. */
export const LATENCY_BUCKETS_MS: StaticArray<u32> = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000];
export const BUCKET_COUNT: i32 = 14; // LATENCY_BUCKETS_MS.length + 1

/** Bucket of a latency in microseconds: the first bound b with latency ≤ b ms, else the overflow bucket. */
export function bucketOf(latencyUs: u64): i32 {
  const bounds = LATENCY_BUCKETS_MS;
  for (let i = 0; i < bounds.length; i++) {
    if (latencyUs <= <u64>unchecked(bounds[i]) * 1000) return i;
  }
  return BUCKET_COUNT - 1;
}
