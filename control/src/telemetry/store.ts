/**
 * Traffic and probe statistics in Redis, bucketed by the control service's clock at receipt
 * (`tm:<dep>/<inst>:<bucketStart>` hashes, TTL a little over the longest window). Senders' clocks are
 * not trusted for placement. Merging is HINCRBY: every replica adds batches from every Envoy worker
 * into the same buckets, and any replica reads the same window.
 *
 * A batch is applied in one Lua script together with its duplicate check: (source, seq) is looked up
 * in `tm-seen:<source>` (a sorted set of the last 1024 seqs of that sender, TTL), so a redelivered
 * batch is ignored exactly, and a batch is never half-applied.
 *
 * In-flight counts (contract 3 `in_flight`) are a gauge per sender, not a sum over time: the same script
 * sets field `<instance>/<source>` of `in-flight:<dep>` to "count:validUntil:seq" unless that sender's
 * newer batch already did (a late batch never overwrites a newer count). A count is valid until 3 of the
 * sender's intervals (end_ms − start_ms; 1 s..5 min) after receipt, by this service's clock: a sender with
 * requests in flight reports every interval, so only a gone sender (VM stopped, Envoy drained) expires.
 * The total per instance is the sum over the valid counts of every sender (every worker of every Envoy).
 */
import type { Redis } from "ioredis";
import type { InstanceTelemetry } from "../../contracts/telemetry.js";
import { storeCall } from "../redis/client.js";
import { coalesce } from "../redis/coalesce.js";
import type { Keys } from "../redis/keys.js";
import { addBucket, BUCKETS, bucketOf, emptyStats, F, type WindowStats } from "./window.js";

/** Longest window a deployment may ask for (HealthCheck.window_seconds max). */
export const MAX_WINDOW_SECONDS = 600;
const SEEN_KEEP = 1024;
const SEEN_TTL_SECONDS = 3_600;
/** How long a sender's in-flight count stays valid after receipt: 3 of its intervals, within these bounds. */
const IN_FLIGHT_MIN_VALID_MS = 1_000;
const IN_FLIGHT_MAX_VALID_MS = 300_000;

// KEYS[1] = seen zset, KEYS[2..] = bucket hashes. ARGV[1] = seq, ARGV[2] = bucket TTL s, ARGV[3] = seen TTL s,
// ARGV[4] = seen keep, ARGV[5] = JSON [[field, value, field, value, ...] per bucket key]. Returns 1, or 0 = duplicate.
/** Adds `rows` (JSON, one [field, value, ...] per key) to KEYS[first..] and sets their TTL. Sums are floats. */
const ADD_ROWS = (first: number, rowsArg: string, ttlArg: string) => `
local rows = cjson.decode(${rowsArg})
for i, row in ipairs(rows) do
  local key = KEYS[i + ${first - 1}]
  for j = 1, #row, 2 do
    local f, v = row[j], row[j + 1]
    if f == '${F.latencySum}' or f == '${F.probeSum}' then redis.call('HINCRBYFLOAT', key, f, v) else redis.call('HINCRBY', key, f, v) end
  end
  redis.call('EXPIRE', key, ${ttlArg})
end
`;

// ARGV[6] = number of bucket keys (the in-flight hashes follow them in KEYS), ARGV[7] = JSON [[field, count,
// ...] per in-flight key], ARGV[8] = valid until (ms), ARGV[9] = in-flight key TTL s.
const APPLY = `
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[4]) + 1))
redis.call('EXPIRE', KEYS[1], ARGV[3])
${ADD_ROWS(2, "ARGV[5]", "ARGV[2]")}
local seq = tonumber(ARGV[1])
local first = 2 + tonumber(ARGV[6])
for i, row in ipairs(cjson.decode(ARGV[7])) do
  local key = KEYS[first + i - 1]
  for j = 1, #row, 2 do
    local cur = redis.call('HGET', key, row[j])
    local curSeq = cur and tonumber(string.match(cur, ':(%d+)$')) or 0
    if seq > curSeq then redis.call('HSET', key, row[j], row[j + 1] .. ':' .. ARGV[8] .. ':' .. ARGV[1]) end
  end
  redis.call('EXPIRE', key, ARGV[9])
end
return 1
`;

// KEYS = bucket hashes, ARGV[1] = bucket TTL s, ARGV[2] = JSON rows. Probe samples: no duplicate check (never redelivered).
const ADD_PROBES = `
${ADD_ROWS(1, "ARGV[2]", "ARGV[1]")}
return 1
`;

// KEYS[1] = in-flight hash; ARGV = field, value read, ...: deletes each field still holding that value.
const PRUNE = `
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 1
`;

// Window sums on the server: KEYS = every bucket hash of every instance, in instance order; ARGV[1] = the
// number of fields, ARGV[2..] the fields, then per instance how many of KEYS are its buckets. Returns per
// instance the fields summed over its buckets (numbers as strings), so a window read for a deployment is one
// round trip and one small reply, not a hash per bucket (/metrics reads every deployment's window).
const WINDOW_SUM = `
local nf = tonumber(ARGV[1])
local fields = {}
for i = 1, nf do fields[i] = ARGV[1 + i] end
local out = {}
local k = 1
for a = 2 + nf, #ARGV do
  local sums = {}
  for i = 1, nf do sums[i] = 0 end
  for j = 1, tonumber(ARGV[a]) do
    local vals = redis.call('HMGET', KEYS[k], unpack(fields))
    k = k + 1
    for i = 1, nf do
      local v = tonumber(vals[i])
      if v then sums[i] = sums[i] + v end
    end
  end
  for i = 1, nf do sums[i] = tostring(sums[i]) end
  out[#out + 1] = sums
end
return out
`;
/** The fields WINDOW_SUM adds, in the order fromSums reads them. */
const SUM_FIELDS = [F.requests, F.upstream5xx, F.connectFailures, F.latencySum, F.probes, F.probeFailures, F.probeSum, ...Array.from({ length: BUCKETS }, (_, i) => F.hist(i)), ...Array.from({ length: BUCKETS }, (_, i) => F.probeHist(i))];

/** The fields a traffic-only window read adds (requests, errors, latency histogram): what /metrics shows. */
const TRAFFIC_FIELDS = [F.requests, F.upstream5xx, F.connectFailures, ...Array.from({ length: BUCKETS }, (_, i) => F.hist(i))];

/** The i-th sum WINDOW_SUM answered (0 for a missing or damaged value). */
const sumAt = (v: string[], i: number): number => {
  const x = Number(v[i]);
  return Number.isFinite(x) ? x : 0;
};

function fromTrafficSums(v: string[]): WindowStats {
  const n = (i: number) => sumAt(v, i);
  const s = emptyStats();
  s.requests = n(0);
  s.upstream_5xx = n(1);
  s.connect_failures = n(2);
  for (let i = 0; i < BUCKETS; i++) s.latency_buckets[i] = n(3 + i);
  return s;
}

function fromSums(v: string[]): WindowStats {
  const n = (i: number) => sumAt(v, i);
  const s = emptyStats();
  s.requests = n(0);
  s.upstream_5xx = n(1);
  s.connect_failures = n(2);
  s.latency_sum_ms = n(3);
  s.probes = n(4);
  s.probe_failures = n(5);
  s.probe_sum_ms = n(6);
  for (let i = 0; i < BUCKETS; i++) {
    s.latency_buckets[i] = n(7 + i);
    s.probe_buckets[i] = n(7 + BUCKETS + i);
  }
  return s;
}

interface TelemetryRedis extends Redis {
  gwTelemetryWindow(numKeys: number, ...args: (string | number)[]): Promise<string[][]>;
  gwInFlightPrune(numKeys: number, ...args: string[]): Promise<number>;
  gwTelemetryApply(numKeys: number, ...args: (string | number)[]): Promise<number>;
  gwTelemetryProbes(numKeys: number, ...args: (string | number)[]): Promise<number>;
}

/** Rows by bucket key, merged: one [field, value, ...] list per key, as the scripts take them. */
class Rows {
  private readonly rows = new Map<string, Map<string, number>>();
  add(key: string, field: string, v: number): void {
    if (v === 0) return;
    let row = this.rows.get(key);
    if (!row) this.rows.set(key, (row = new Map()));
    row.set(field, (row.get(field) ?? 0) + v);
  }
  keys(): string[] {
    return [...this.rows.keys()];
  }
  payload(keyList: string[]): string {
    return JSON.stringify(keyList.map((k) => [...this.rows.get(k)!].flatMap(([f, v]) => [f, String(v)])));
  }
}

/** One bucket key's probe samples in a flush: count, failures, latency sum, histogram (bucket, count) by first use. */
interface ProbeRow {
  probes: number;
  failures: number;
  sum: number;
  hist: [number, number][];
}

export interface ProbeSample {
  ok: boolean;
  latencyMs: number;
}

export interface WindowOptions {
  /**
   * Only requests, upstream_5xx, connect_failures and latency_buckets are read (the rest stay 0): half the fields
   * Redis adds up and sends back (/metrics reads every instance's window).
   */
  trafficOnly?: boolean;
}

export interface TelemetryStore {
  readonly bucketMs: number;
  /**
   * Merge a batch's instances (and set the sender's in-flight counts); false when (source, seq) was merged
   * before (nothing changed). `intervalMs`: the batch's end_ms − start_ms (how long its counts stay valid).
   */
  applyBatch(source: string, seq: number, instances: InstanceTelemetry[], nowMs?: number, intervalMs?: number): Promise<boolean>;
  /** Requests in flight per instance summed over the senders with a valid count, and how many senders. */
  inFlight(deployment: string, instances: string[], nowMs?: number): Promise<Map<string, { total: number; senders: number }>>;
  recordProbe(deployment: string, instance: string, sample: ProbeSample, nowMs?: number): Promise<void>;
  /**
   * Window statistics per instance: the buckets overlapping the last `windowSeconds` (the current,
   * partial bucket included). `sinceMs[inst]`: only buckets starting at or after it count.
   */
  window(deployment: string, instances: string[], windowSeconds: number, sinceMs?: Record<string, number | undefined>, nowMs?: number, opts?: WindowOptions): Promise<Map<string, WindowStats>>;
  /** One instance's buckets over the last `seconds` (≤ MAX_WINDOW_SECONDS), oldest first, the current one partial. */
  series(deployment: string, instance: string, seconds: number, nowMs?: number): Promise<{ start: number; stats: WindowStats }[]>;
}

export function createTelemetryStore(deps: { redis: Redis; keys: Keys; bucketMs: number }): TelemetryStore {
  const { keys, bucketMs } = deps;
  const redis = deps.redis as unknown as TelemetryRedis;
  if (!redis.gwTelemetryApply) deps.redis.defineCommand("gwTelemetryApply", { lua: APPLY });
  if (!redis.gwTelemetryProbes) deps.redis.defineCommand("gwTelemetryProbes", { lua: ADD_PROBES });
  if (!redis.gwInFlightPrune) deps.redis.defineCommand("gwInFlightPrune", { lua: PRUNE });
  if (!redis.gwTelemetryWindow) deps.redis.defineCommand("gwTelemetryWindow", { lua: WINDOW_SUM });
  const ttlSeconds = Math.ceil((MAX_WINDOW_SECONDS * 1000 + 2 * bucketMs) / 1000) + 5;
  const bucketStart = (ms: number) => Math.floor(ms / bucketMs) * bucketMs;
  const probeSamples = coalesce<{ key: string; sample: ProbeSample }>((items) =>
    storeCall(async () => {
      // The rows Rows would make (same fields, same order, zero counts left out), without a map per key and
      // field and the arrays of its payload: a flush carries one probe of most keys.
      const rows = new Map<string, ProbeRow>();
      for (const { key, sample } of items) {
        let row = rows.get(key);
        if (!row) rows.set(key, (row = { probes: 0, failures: 0, sum: 0, hist: [] }));
        row.probes++;
        if (!sample.ok) row.failures++;
        row.sum += Number(sample.latencyMs.toFixed(3));
        const b = bucketOf(sample.latencyMs);
        const h = row.hist.find((x) => x[0] === b);
        if (h) h[1]++;
        else row.hist.push([b, 1]);
      }
      const keyList = [...rows.keys()];
      let payload = "";
      for (const row of rows.values()) {
        let r = `"${F.probes}","${row.probes}"`;
        if (row.failures !== 0) r += `,"${F.probeFailures}","${row.failures}"`;
        if (row.sum !== 0) r += `,"${F.probeSum}",${JSON.stringify(String(row.sum))}`;
        for (const [b, c] of row.hist) r += `,"${F.probeHist(b)}","${c}"`;
        payload += payload === "" ? `[${r}]` : `,[${r}]`;
      }
      await redis.gwTelemetryProbes(keyList.length, ...keyList, ttlSeconds, `[${payload}]`);
    }),
  );

  return {
    bucketMs,
    applyBatch: (source, seq, instances, nowMs = Date.now(), intervalMs = 5_000) =>
      storeCall(async () => {
        const t = bucketStart(nowMs);
        // Instances repeated within a batch go to the same key: merged first (one row per key).
        const rows = new Rows();
        for (const it of instances) {
          const key = keys.telemetryBucket(it.deployment, it.instance, t);
          rows.add(key, F.requests, it.requests);
          rows.add(key, F.upstream5xx, it.upstream_5xx);
          rows.add(key, F.connectFailures, it.connect_failures);
          rows.add(key, F.latencySum, it.latency_ms_sum);
          it.latency_ms_buckets.forEach((c, i) => rows.add(key, F.hist(i), c));
        }
        const keyList = rows.keys();
        const flights = new Map<string, string[]>();
        for (const it of instances) {
          if (it.in_flight === undefined) continue;
          const key = keys.inFlight(it.deployment);
          let row = flights.get(key);
          if (!row) flights.set(key, (row = []));
          row.push(`${it.instance}/${source}`, String(it.in_flight));
        }
        const validMs = Math.min(IN_FLIGHT_MAX_VALID_MS, Math.max(IN_FLIGHT_MIN_VALID_MS, 3 * (Number.isFinite(intervalMs) ? intervalMs : 0)));
        const r = await redis.gwTelemetryApply(
          1 + keyList.length + flights.size,
          keys.telemetrySeen(source), ...keyList, ...flights.keys(),
          seq, ttlSeconds, SEEN_TTL_SECONDS, SEEN_KEEP, rows.payload(keyList),
          keyList.length, JSON.stringify([...flights.values()]), Math.round(nowMs + validMs), Math.ceil(IN_FLIGHT_MAX_VALID_MS / 1000) + 60,
        );
        return r === 1;
      }),
    inFlight: (deployment, instances, nowMs = Date.now()) =>
      storeCall(async () => {
        const out = new Map<string, { total: number; senders: number }>();
        const wanted = new Set(instances);
        const key = keys.inFlight(deployment);
        const h = await deps.redis.hgetall(key);
        const expired: string[] = [];
        for (const [field, value] of Object.entries(h)) {
          const [n, until] = value.split(":").map(Number);
          if (!(until! > nowMs)) {
            expired.push(field);
            continue;
          }
          const inst = field.slice(0, field.indexOf("/"));
          if (!wanted.has(inst) || !Number.isSafeInteger(n)) continue;
          const o = out.get(inst) ?? { total: 0, senders: 0 };
          o.total += n!;
          o.senders++;
          out.set(inst, o);
        }
        // Gone senders' counts are dropped as they are found, each only if unchanged since read (a sender
        // that reported meanwhile keeps its new count); best effort, the next read retries.
        if (expired.length > 0) void redis.gwInFlightPrune(1, key, ...expired.flatMap((f) => [f, h[f]!])).catch(() => undefined);
        return out;
      }),
    // The probes finished in one event-loop turn are added in one script call (see coalesce).
    recordProbe: (deployment, instance, sample, nowMs = Date.now()) => probeSamples({ key: keys.telemetryBucket(deployment, instance, bucketStart(nowMs)), sample }),
    window: (deployment, instances, windowSeconds, sinceMs = {}, nowMs = Date.now(), opts = {}) =>
      storeCall(async () => {
        const out = new Map<string, WindowStats>();
        if (instances.length === 0) return out;
        const last = bucketStart(nowMs);
        const n = Math.max(1, Math.ceil((Math.min(windowSeconds, MAX_WINDOW_SECONDS) * 1000) / bucketMs));
        const bucketKeys: string[] = [];
        const counts: number[] = [];
        for (const inst of instances) {
          const since = sinceMs[inst];
          let c = 0;
          for (let k = 0; k < n; k++) {
            const t = last - k * bucketMs;
            if (since !== undefined && t < since) continue;
            bucketKeys.push(keys.telemetryBucket(deployment, inst, t));
            c++;
          }
          counts.push(c);
        }
        const fields = opts.trafficOnly ? TRAFFIC_FIELDS : SUM_FIELDS;
        const from = opts.trafficOnly ? fromTrafficSums : fromSums;
        const sums = await redis.gwTelemetryWindow(bucketKeys.length, ...bucketKeys, fields.length, ...fields, ...counts);
        instances.forEach((inst, i) => out.set(inst, from(sums[i] ?? [])));
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
