/**
 * Engine load signals (issue 18): what an instance's Prometheus /metrics says about its load, the score
 * published for it in the routing table (contract 1, an instance's `load`), and how load-only changes
 * reach the table without a version per probe.
 *
 * Metrics read (gauges; labelled series of one name are summed, e.g. several engines/models):
 * - vLLM (vllm/v1/metrics/loggers.py PrometheusStatLogger): `vllm:num_requests_waiting`,
 *   `vllm:num_requests_running`, `vllm:kv_cache_usage_perc` (0..1; before 0.9 `vllm:gpu_cache_usage_perc`,
 *   read when the new name is absent; several series → their mean).
 * - SGLang (sgl-project/sglang python/sglang/srt/metrics/collector.py, docs/references/production_metrics.md):
 *   `sglang:num_queue_reqs`, `sglang:num_running_reqs`, `sglang:token_usage` (0..1).
 * - TGI (huggingface.co/docs/text-generation-inference/reference/metrics): `tgi_queue_size`,
 *   `tgi_batch_current_size`; no KV usage (→ 0).
 * - Anything else (Ollama, unknown engines, no /metrics): no signal — no score is published.
 *
 * Capacity (learnCapacity): requests the engine runs at once, learned from running/waiting (see there),
 * published beside the score; load_aware divides by it, so unequal engines need no hand-set weights.
 *
 * Score (decision): waiting + KV usage. 0 = idle; below 1 = nothing queued, the fraction of the KV cache in
 * use (how close to queueing); each queued request adds 1. Running requests are not added: without the
 * engine's slot count they say nothing about headroom (a big instance runs more), while KV usage is
 * already normalised to capacity. With no KV gauge (TGI) the score is the queue alone.
 *
 * Coalescing (decision): scores are not part of the deployment document (whose writes bump the table
 * version, redis/cas.ts). The prober writes each score into one Redis hash (`instance-load`, field
 * `<deployment>/<instance>`), and in the same Lua script bumps the table version and PUBLISHes it only if
 * it takes the throttle key (`SET … NX PX publishMs`): at most one version per `publishMs` across every
 * replica and deployment, however many probes run. The snapshot (routing-table/store.ts) reads the hash
 * in its MULTI and the builder puts each score on its instance, so every version — load-triggered or not —
 * carries the scores as of then. A score written inside a throttled window rides with the next version
 * (the next scrape after the window, any other write meanwhile). A failed or unparsable scrape writes
 * nothing (the old score ages out in the plugin after 3 intervals) and never touches the probe's verdict.
 */
import type { Redis } from "ioredis";
import { TABLE_LIMITS } from "../../contracts/routing-table.js";
import { storeCall } from "../redis/client.js";
import { LUA_NEXT_TABLE_VERSION } from "../redis/cas.js";

/** The body of /metrics read at most (a vLLM /metrics with histograms is ~50-150 kB). */
export const MAX_METRICS_BYTES = 1024 * 1024;

export interface LoadSignals {
  engine: "vllm" | "sglang" | "tgi";
  waiting: number;
  running: number;
  /** 0..1; null when the engine exports none. */
  kv: number | null;
}

export interface LoadEntry {
  score: number;
  at_ms: number;
  interval_ms: number;
  /** Requests the engine runs at once, as learned (learnCapacity); absent until known. */
  capacity?: number;
}

const NAMES = {
  vllm: { waiting: "vllm:num_requests_waiting", running: "vllm:num_requests_running", kv: ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"] },
  sglang: { waiting: "sglang:num_queue_reqs", running: "sglang:num_running_reqs", kv: ["sglang:token_usage"] },
  tgi: { waiting: "tgi_queue_size", running: "tgi_batch_current_size", kv: [] as string[] },
} as const;
const WANTED = new Set<string>(Object.values(NAMES).flatMap((n) => [n.waiting, n.running, ...n.kv]));

/**
 * Parses Prometheus text exposition format (0.0.4) for the gauges above. Lines: `# …` comments, `name value
 * [timestamp]` or `name{labels} value [timestamp]`. Null when no known engine's queue gauge is there or a
 * wanted value is not a finite number ≥ 0 (garbage in → no signal, never a guess).
 */
export function parseLoadMetrics(text: string): LoadSignals | null {
  const sums = new Map<string, { sum: number; n: number }>();
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    const line = text.slice(start, end).trim();
    start = end + 1;
    if (line.length === 0 || line.charCodeAt(0) === 35 /* # */) continue;
    let nameEnd = 0;
    while (nameEnd < line.length && /[A-Za-z0-9_:]/.test(line[nameEnd]!)) nameEnd++;
    const name = line.slice(0, nameEnd);
    if (!WANTED.has(name)) continue;
    let rest = line.slice(nameEnd);
    if (rest.startsWith("{")) {
      const close = labelsEnd(rest);
      if (close < 0) return null;
      rest = rest.slice(close + 1);
    }
    const fields = rest.trim().split(/\s+/);
    const raw = fields[0] ?? "";
    const v = raw === "" ? NaN : Number(raw);
    if (!Number.isFinite(v) || v < 0) return null;
    const s = sums.get(name) ?? { sum: 0, n: 0 };
    s.sum += v;
    s.n++;
    sums.set(name, s);
  }
  for (const engine of ["vllm", "sglang", "tgi"] as const) {
    const n = NAMES[engine];
    const w = sums.get(n.waiting);
    if (!w) continue;
    const kvName = n.kv.find((k) => sums.has(k));
    const kv = kvName === undefined ? null : Math.min(1, sums.get(kvName)!.sum / sums.get(kvName)!.n);
    return { engine, waiting: w.sum, running: sums.get(n.running)?.sum ?? 0, kv };
  }
  return null;
}

/** Index of the `}` closing a label set (quoted values may hold `}` and escaped quotes), -1 if none. */
function labelsEnd(s: string): number {
  let q = false;
  for (let i = 1; i < s.length; i++) {
    const c = s[i];
    if (q) {
      if (c === "\\") i++;
      else if (c === '"') q = false;
    } else if (c === '"') q = true;
    else if (c === "}") return i;
  }
  return -1;
}

/** The published score (see the header): waiting + KV usage, rounded to 1/1000, capped by the contract. */
export function loadScore(s: LoadSignals): number {
  const raw = s.waiting + (s.kv ?? 0);
  return Math.min(TABLE_LIMITS.maxLoadScore, Math.round(raw * 1000) / 1000);
}

/**
 * The engine's capacity (requests it runs at once) after one more scrape (decision): an engine with
 * requests waiting runs all it can, so its running count *is* its capacity now (--max-num-seqs, or fewer
 * when the KV cache is the bound); without a queue it can run at least what it runs, so the capacity is
 * the larger of that and what was known. Undefined until it was seen running anything. Only ever read
 * from the engine's own gauges: weights are not needed to find an instance with a third of the slots.
 */
export function learnCapacity(prev: number | undefined, s: LoadSignals): number | undefined {
  const running = Math.min(TABLE_LIMITS.maxLoadCapacity, Math.round(s.running));
  if (running < 1) return prev;
  if (s.waiting > 0) return running;
  return prev === undefined ? running : Math.max(prev, running);
}

/** Redis field of an instance's load entry. */
export const loadField = (deploymentId: string, instanceId: string) => `${deploymentId}/${instanceId}`;

const SCRIPT = `${LUA_NEXT_TABLE_VERSION}
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) then
  return next_table_version(KEYS[1], ARGV[1])
end
return 0
`;

interface LoadRedis extends Redis {
  gwLoadWrite(numKeys: number, ...args: string[]): Promise<number>;
}

export interface LoadStore {
  /**
   * Writes scores; bumps the table version unless one was bumped for load within `publishMs` (any
   * replica). Returns the new version, or 0 when throttled (the scores ride with the next version).
   */
  write(entries: { deployment: string; instance: string; entry: LoadEntry }[]): Promise<number>;
  /** Forgets an instance's score (removed instance, load_signals off). */
  drop(fields: string[]): Promise<void>;
}

export function createLoadStore(deps: { redis: Redis; keys: { version: string; channel: string; load: string; loadThrottle: string }; publishMs: number }): LoadStore {
  const { redis, keys } = deps;
  if (!(redis as unknown as Partial<LoadRedis>).gwLoadWrite) redis.defineCommand("gwLoadWrite", { lua: SCRIPT });
  return {
    write: (entries) =>
      storeCall(() =>
        (redis as unknown as LoadRedis).gwLoadWrite(
          3,
          keys.version,
          keys.load,
          keys.loadThrottle,
          keys.channel,
          String(Math.max(1, Math.round(deps.publishMs))),
          ...entries.flatMap((e) => [loadField(e.deployment, e.instance), JSON.stringify(e.entry)]),
        ),
      ),
    drop: async (fields) => {
      if (fields.length > 0) await storeCall(() => redis.hdel(keys.load, ...fields));
    },
  };
}

/** Parses the hash's values (a bad one is skipped: the instance gets no score). */
export function parseLoadHash(h: Record<string, string>): Map<string, LoadEntry> {
  const out = new Map<string, LoadEntry>();
  for (const [k, v] of Object.entries(h)) {
    try {
      const e = JSON.parse(v) as Partial<LoadEntry>;
      if (typeof e.score === "number" && Number.isFinite(e.score) && e.score >= 0 && e.score <= TABLE_LIMITS.maxLoadScore
        && Number.isSafeInteger(e.at_ms) && e.at_ms! >= 0 && Number.isSafeInteger(e.interval_ms) && e.interval_ms! >= 1 && e.interval_ms! <= TABLE_LIMITS.maxLoadIntervalMs) {
        const capacity = Number.isSafeInteger(e.capacity) && e.capacity! >= 1 && e.capacity! <= TABLE_LIMITS.maxLoadCapacity ? e.capacity : undefined;
        out.set(k, { score: e.score, at_ms: e.at_ms!, interval_ms: e.interval_ms!, ...(capacity !== undefined ? { capacity } : {}) });
      }
    } catch {
      /* skipped */
    }
  }
  return out;
}
