/**
 * Traffic and probe statistics in Redis, bucketed by the control service's clock at receipt
 * (`tm:<dep>/<inst>:<bucketStart>` hashes, TTL a little over the longest window). Senders' clocks are
 * not trusted for placement. Merging is HINCRBY: every replica adds batches from every Envoy worker
 * into the same buckets, and any replica reads the same window.
 *
 * A batch is applied in one Lua script together with its duplicate check: (source, seq) is looked up
 * in `tm-seen:<source>` (a sorted set of the last 1024 seqs of that sender, TTL), so a redelivered
 * batch is ignored exactly, and a batch is never half-applied.
 */
import type { Redis } from "ioredis";
import type { InstanceTelemetry } from "../../contracts/telemetry.js";
import { storeCall } from "../redis/client.js";
import type { Keys } from "../redis/keys.js";
import { addBucket, BUCKETS, bucketOf, emptyStats, F, type WindowStats } from "./window.js";

/** Longest window a deployment may ask for (HealthCheck.window_seconds max). */
export const MAX_WINDOW_SECONDS = 600;
const SEEN_KEEP = 1024;
const SEEN_TTL_SECONDS = 3_600;

// KEYS[1] = seen zset, KEYS[2..] = bucket hashes. ARGV[1] = seq, ARGV[2] = bucket TTL s, ARGV[3] = seen TTL s,
// ARGV[4] = seen keep, ARGV[5] = JSON [[field, value, field, value, ...] per bucket key]. Returns 1, or 0 = duplicate.
const APPLY = `
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[4]) + 1))
redis.call('EXPIRE', KEYS[1], ARGV[3])
local rows = cjson.decode(ARGV[5])
for i, row in ipairs(rows) do
  local key = KEYS[i + 1]
  for j = 1, #row, 2 do
    local f, v = row[j], row[j + 1]
    if f == '${F.latencySum}' then redis.call('HINCRBYFLOAT', key, f, v) else redis.call('HINCRBY', key, f, v) end
  end
  redis.call('EXPIRE', key, ARGV[2])
end
return 1
`;

interface TelemetryRedis extends Redis {
  gwTelemetryApply(numKeys: number, ...args: (string | number)[]): Promise<number>;
}

export interface ProbeSample {
  ok: boolean;
  latencyMs: number;
}

export interface TelemetryStore {
  readonly bucketMs: number;
  /** Merge a batch's instances; false when (source, seq) was merged before (nothing changed). */
  applyBatch(source: string, seq: number, instances: InstanceTelemetry[], nowMs?: number): Promise<boolean>;
  recordProbe(deployment: string, instance: string, sample: ProbeSample, nowMs?: number): Promise<void>;
  /**
   * Window statistics per instance: the buckets overlapping the last `windowSeconds` (the current,
   * partial bucket included). `sinceMs[inst]`: only buckets starting at or after it count.
   */
  window(deployment: string, instances: string[], windowSeconds: number, sinceMs?: Record<string, number | undefined>, nowMs?: number): Promise<Map<string, WindowStats>>;
  /** One instance's buckets over the last `seconds` (≤ MAX_WINDOW_SECONDS), oldest first, the current one partial. */
  series(deployment: string, instance: string, seconds: number, nowMs?: number): Promise<{ start: number; stats: WindowStats }[]>;
}

export function createTelemetryStore(deps: { redis: Redis; keys: Keys; bucketMs: number }): TelemetryStore {
  const { keys, bucketMs } = deps;
  const redis = deps.redis as unknown as TelemetryRedis;
  if (!redis.gwTelemetryApply) deps.redis.defineCommand("gwTelemetryApply", { lua: APPLY });
  const ttlSeconds = Math.ceil((MAX_WINDOW_SECONDS * 1000 + 2 * bucketMs) / 1000) + 5;
  const bucketStart = (ms: number) => Math.floor(ms / bucketMs) * bucketMs;

  return {
    bucketMs,
    applyBatch: (source, seq, instances, nowMs = Date.now()) =>
      storeCall(async () => {
        const t = bucketStart(nowMs);
        // Instances repeated within a batch go to the same key: merge them first (one row per key).
        const rows = new Map<string, Map<string, number>>();
        for (const it of instances) {
          const key = keys.telemetryBucket(it.deployment, it.instance, t);
          const row = rows.get(key) ?? new Map<string, number>();
          rows.set(key, row);
          const add = (f: string, v: number) => {
            if (v !== 0) row.set(f, (row.get(f) ?? 0) + v);
          };
          add(F.requests, it.requests);
          add(F.upstream5xx, it.upstream_5xx);
          add(F.connectFailures, it.connect_failures);
          add(F.latencySum, it.latency_ms_sum);
          it.latency_ms_buckets.forEach((c, i) => add(F.hist(i), c));
        }
        const keyList = [...rows.keys()];
        const payload = JSON.stringify(keyList.map((k) => [...rows.get(k)!].flatMap(([f, v]) => [f, String(v)])));
        const r = await redis.gwTelemetryApply(1 + keyList.length, keys.telemetrySeen(source), ...keyList, seq, ttlSeconds, SEEN_TTL_SECONDS, SEEN_KEEP, payload);
        return r === 1;
      }),
    recordProbe: (deployment, instance, sample, nowMs = Date.now()) =>
      storeCall(async () => {
        const key = keys.telemetryBucket(deployment, instance, bucketStart(nowMs));
        const m = deps.redis.multi().hincrby(key, F.probes, 1);
        if (!sample.ok) m.hincrby(key, F.probeFailures, 1);
        m.hincrbyfloat(key, F.probeSum, sample.latencyMs.toFixed(3)).hincrby(key, F.probeHist(bucketOf(sample.latencyMs)), 1).expire(key, ttlSeconds);
        await m.exec();
      }),
    window: (deployment, instances, windowSeconds, sinceMs = {}, nowMs = Date.now()) =>
      storeCall(async () => {
        const out = new Map<string, WindowStats>();
        if (instances.length === 0) return out;
        const last = bucketStart(nowMs);
        const n = Math.max(1, Math.ceil((Math.min(windowSeconds, MAX_WINDOW_SECONDS) * 1000) / bucketMs));
        const p = deps.redis.pipeline();
        const plan: [string, number][] = [];
        for (const inst of instances) {
          out.set(inst, emptyStats());
          for (let k = 0; k < n; k++) {
            const t = last - k * bucketMs;
            const since = sinceMs[inst];
            if (since !== undefined && t < since) continue;
            p.hgetall(keys.telemetryBucket(deployment, inst, t));
            plan.push([inst, t]);
          }
        }
        const res = (await p.exec()) ?? [];
        res.forEach(([err, h], i) => {
          if (err) throw err;
          addBucket(out.get(plan[i]![0])!, (h ?? {}) as Record<string, string>);
        });
        return out;
      }),
    series: (deployment, instance, seconds, nowMs = Date.now()) =>
      storeCall(async () => {
        const last = bucketStart(nowMs);
        const n = Math.max(1, Math.ceil((Math.min(seconds, MAX_WINDOW_SECONDS) * 1000) / bucketMs));
        const starts = Array.from({ length: n }, (_, k) => last - (n - 1 - k) * bucketMs);
        const p = deps.redis.pipeline();
        for (const t of starts) p.hgetall(keys.telemetryBucket(deployment, instance, t));
        const res = (await p.exec()) ?? [];
        return starts.map((start, i) => {
          const [err, h] = res[i] ?? [null, {}];
          if (err) throw err;
          return { start, stats: addBucket(emptyStats(), (h ?? {}) as Record<string, string>) };
        });
      }),
  };
}

export { BUCKETS };
