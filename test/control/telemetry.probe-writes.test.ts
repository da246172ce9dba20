// The prober's hot-path writes (control-scale, issue 19), against a real Redis: what they store is what the
// straightforward forms stored — probe samples (one script per flush, rows built by hand), prober states (stateJson,
// one script per flush) — and the traffic-only window read /metrics uses matches the full read's traffic fields.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { startRedis, type RedisServer } from "../support/redis.js";
import { createKeys } from "../../control/src/redis/keys.js";
import { createTelemetryStore } from "../../control/src/telemetry/store.js";
import { bucketOf, BUCKETS } from "../../control/src/telemetry/window.js";
import { createHealthStore, newProbeState, stateJson, type ProbeState } from "../../control/src/health/store.js";
import type { ProbeResult } from "../../control/src/health/schemas.js";

let server: RedisServer;
let redis: Redis;
before(async () => {
  server = await startRedis();
  redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
});
after(async () => {
  redis?.disconnect();
  await server?.close();
});

const keys = createKeys("t:");
const BUCKET_MS = 10_000;
const NOW = 1_700_000_005_000;

describe("prober writes at fleet size", () => {
  test("probe samples of one flush: per bucket key the counts, failures, latency sum and histogram of its samples", async () => {
    const store = createTelemetryStore({ redis, keys, bucketMs: BUCKET_MS });
    const samples: [string, string, boolean, number][] = [
      ["d1", "i1", true, 3.14159], ["d1", "i1", false, 2000], ["d1", "i1", true, 0], ["d1", "i2", false, 7.0004],
      ["d2", "i1", true, 60_001], ["d1", "i1", true, 12.5], ["d2", "i1", true, 0.0004],
    ];
    // One turn: one flush.
    await Promise.all(samples.map(([d, i, ok, latencyMs]) => store.recordProbe(d, i, { ok, latencyMs }, NOW)));
    const want = new Map<string, Record<string, number>>();
    for (const [d, i, ok, ms] of samples) {
      const k = keys.telemetryBucket(d, i, Math.floor(NOW / BUCKET_MS) * BUCKET_MS);
      const row = want.get(k) ?? {};
      want.set(k, row);
      const add = (f: string, v: number) => void (v !== 0 && (row[f] = (row[f] ?? 0) + v));
      add("pn", 1);
      add("pf", ok ? 0 : 1);
      add("ps", Number(ms.toFixed(3)));
      add(`p${bucketOf(ms)}`, 1);
    }
    for (const [k, row] of want) {
      const got = await redis.hgetall(k);
      assert.deepEqual(Object.keys(got).sort(), Object.keys(row).sort(), k);
      for (const [f, v] of Object.entries(row)) assert.ok(Math.abs(Number(got[f]) - v) < 1e-9, `${k} ${f}: ${got[f]} vs ${v}`);
      assert.ok((await redis.ttl(k)) > 0, "the bucket expires");
    }
  });

  test("traffic-only window: the full read's requests, errors and latency histogram; probe fields left 0", async () => {
    const store = createTelemetryStore({ redis, keys, bucketMs: BUCKET_MS });
    const buckets = (k: number) => Array.from({ length: BUCKETS }, (_, i) => (i === k ? 5 : i === 2 ? 1 : 0));
    await store.applyBatch("src", 1, [
      { deployment: "w", instance: "a", requests: 6, upstream_5xx: 1, connect_failures: 2, latency_ms_sum: 77.5, latency_ms_buckets: buckets(4) },
      { deployment: "w", instance: "b", requests: 6, upstream_5xx: 0, connect_failures: 0, latency_ms_sum: 1, latency_ms_buckets: buckets(9) },
    ] as never, NOW - BUCKET_MS);
    await store.applyBatch("src", 2, [{ deployment: "w", instance: "a", requests: 6, upstream_5xx: 3, connect_failures: 0, latency_ms_sum: 5, latency_ms_buckets: buckets(0) }] as never, NOW);
    await store.recordProbe("w", "a", { ok: false, latencyMs: 40 }, NOW);
    const full = await store.window("w", ["a", "b", "c"], 60, {}, NOW);
    const traffic = await store.window("w", ["a", "b", "c"], 60, {}, NOW, { trafficOnly: true });
    assert.equal(full.get("a")!.probes, 1, "the full read has the probe");
    for (const id of ["a", "b", "c"]) {
      const f = full.get(id)!;
      const t = traffic.get(id)!;
      assert.deepEqual(
        { requests: t.requests, upstream_5xx: t.upstream_5xx, connect_failures: t.connect_failures, latency_buckets: t.latency_buckets },
        { requests: f.requests, upstream_5xx: f.upstream_5xx, connect_failures: f.connect_failures, latency_buckets: f.latency_buckets },
        id,
      );
      assert.equal(t.probes + t.probe_failures + t.probe_sum_ms + t.probe_buckets.reduce((a, b) => a + b, 0), 0);
    }
    assert.equal(traffic.get("a")!.requests, 12);
    assert.equal(traffic.get("a")!.upstream_5xx, 4);
  });

  test("stateJson is JSON.stringify's text, for every shape a state can have", () => {
    const r = (ok: boolean, k: number, error: string | null): ProbeResult => ({ ok, at: new Date(1_700_000_000_000 + k).toISOString(), kind: "path", latency_ms: 1.5 + k, error });
    const shared = r(true, 1, null);
    const states: ProbeState[] = [
      newProbeState(),
      { ...newProbeState(), probes: 12, successes: 3, failures: 0, broken: true, recent: [r(false, 0, 'status "503"\n'), shared, shared], reason: "probes_passed", since: "2026-01-01T00:00:00.000Z", traffic_since_ms: 1_700_000_000_000, crossed: ["error_rate", "p95_latency"] },
      { ...newProbeState(), probes: NaN, failures: Infinity, traffic_since_ms: -0, reason: "we\u2028ird\\", recent: [shared] },
      // Read back from Redis: the stored object spread over the defaults (key order, extra keys of a newer replica).
      { ...newProbeState(), ...(JSON.parse('{"recent":[{"at":"x","ok":true,"error":null}],"probes":"7","extra":{"a":[1]}}') as Partial<ProbeState>) },
      { ...newProbeState(), ...(JSON.parse('{"crossed":null,"since":5,"recent":[null,3,{"latency_ms":1}]}') as Partial<ProbeState>) },
      { ...newProbeState(), recent: [{ ok: true, at: "a", kind: "path", latency_ms: 2, error: undefined } as unknown as ProbeResult] },
    ];
    for (const s of states) {
      assert.equal(stateJson(s), JSON.stringify(s));
      assert.equal(stateJson(s), JSON.stringify(s), "again (results cached)");
    }
  });

  test("states saved in one turn, over several deployments: each hash holds each instance's last state", async () => {
    const health = createHealthStore({ redis, keys, eventsPerInstance: 10 });
    const st = (probes: number): ProbeState => ({ ...newProbeState(), probes, recent: [{ ok: true, at: "t", kind: "path", latency_ms: probes, error: null }] });
    await Promise.all([
      health.saveState("h1", "a", st(1)), health.saveState("h2", "a", st(2)), health.saveState("h1", "b", st(3)),
      health.saveState("h1", "a", st(4)), health.saveState("h3", "z", st(5)),
    ]);
    const h1 = await health.states("h1");
    assert.deepEqual([...h1.keys()].sort(), ["a", "b"]);
    assert.deepEqual(h1.get("a"), st(4));
    assert.deepEqual(h1.get("b"), st(3));
    assert.deepEqual((await health.states("h2")).get("a"), st(2));
    assert.deepEqual((await health.states("h3")).get("z"), st(5));
    assert.equal(await redis.hget(keys.health("h1"), "a"), JSON.stringify(st(4)));
  });
});
