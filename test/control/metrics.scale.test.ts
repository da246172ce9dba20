// /metrics at fleet size (bench/control-scale.bench.ts: 10k instances, a scrape took seconds on a replica busy
// probing): the state it reads from Redis is asked for in one go — one list of the deployments, one read of the
// lease holders, one window read per deployment, all of them issued before any answer is awaited (one round
// trip through the event loop, not one per deployment or per lane of 16), and never a read per instance.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createMetrics } from "../../control/src/metrics.js";
import { HEALTH_DEFAULTS, type Deployment } from "../../control/src/deployments/schemas.js";
import type { Logger } from "../../control/src/log.js";
import { emptyStats, quantile, type WindowStats } from "../../control/src/telemetry/window.js";
import { Gauge, Registry } from "prom-client";

const AT = "2026-01-01T00:00:00.000Z";

function deployment(id: string, instances: number): Deployment {
  return {
    id, model_id: `${id}-m`, strategy: "round_robin", on_unavailable: "fail", forward_client_credentials: false, extra_paths: [],
    health_check: { ...HEALTH_DEFAULTS },
    instances: Array.from({ length: instances }, (_, k) => ({
      id: `i${k}`, url: `http://10.0.0.1:${8000 + k}/v1`, scheme: "http" as const, host: "10.0.0.1", port: 8000 + k, base_path: "/v1", address: `10.0.0.1:${8000 + k}`,
      weight: 1, priority: 0, region: "", gpu_count: null, gpu_memory_gb: null, has_api_key: false, state: "active" as const, last_check: null, created_at: AT, updated_at: AT,
    })),
    migrations: [], revision: 1, created_at: AT, updated_at: AT,
  };
}

describe("/metrics at fleet size", () => {
  test("200 deployments × 10 instances: every Redis read issued before any is awaited; one window read per deployment", async () => {
    const log: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined, child: () => log };
    const deployments = Array.from({ length: 200 }, (_, d) => deployment(`d${d}`, 10));
    let lists = 0;
    let holderReads = 0;
    const windowCalls: string[] = [];
    // Every read answers only once all the reads a scrape needs have been asked for (a barrier): reads made one
    // lane after the other never get there, and the scrape waits for the fallback below.
    const needed = 1 + deployments.length;
    let asked = 0;
    let waiting: (() => void)[] = [];
    let barrierMet = false;
    let released = false;
    const fallback = setTimeout(() => {
      released = true;
      for (const w of waiting) w();
      waiting = [];
    }, 1_000);
    const answerWhenAllAsked = <T>(value: T) =>
      new Promise<T>((resolve) => {
        asked++;
        if (released) return resolve(value);
        waiting.push(() => resolve(value));
        if (asked === needed) {
          barrierMet = true;
          for (const w of waiting) w();
          waiting = [];
        } else if (asked > needed) resolve(value);
      });
    const m = createMetrics({
      replica: "r1",
      cache: { current: () => null, status: () => ({ served_version: null, stored_version: null, held: [], behind: false }) },
      deployments: async () => {
        lists++;
        return deployments;
      },
      telemetry: {
        window: (dep: string, instances: string[]) => {
          windowCalls.push(dep);
          const stats = new Map<string, WindowStats>(instances.map((i) => [i, { ...emptyStats(), requests: 7 }]));
          return answerWhenAllAsked(stats);
        },
      },
      leaseHolders: (names) => {
        holderReads++;
        return answerWhenAllAsked(names.map(() => "r1"));
      },
      log,
    });
    const { body } = await m.render();
    clearTimeout(fallback);
    assert.ok(barrierMet, `reads asked for before the first answer: ${asked} of ${needed}`);
    assert.equal(lists, 1);
    assert.equal(holderReads, 1);
    assert.equal(windowCalls.length, deployments.length, "one window read per deployment (never one per instance)");
    assert.equal(new Set(windowCalls).size, deployments.length);
    // And what was read is what is served.
    assert.equal(body.match(/^gateway_instance_window_requests\{/gm)?.length, 2_000);
    assert.equal(body.match(/^gateway_probe_lease_holder\{/gm)?.length, 200);
  });

  test("the per-instance families are written as prom-client writes them (labels, escaping, values)", async () => {
    const log: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined, child: () => log };
    const odd = 'we"ird\\id\nx';
    const deployments = [deployment("d1", 3), { ...deployment(odd, 1) }];
    const states = ["active", "ejected", "draining"];
    const table = { deployments: deployments.map((d) => ({ id: d.id, instances: d.instances.map((i, k) => ({ id: i.id, state: states[k % 3]! })) })) };
    const stats = (dep: string, ids: string[]) =>
      new Map<string, WindowStats>(ids.map((id, k) => {
        const s = emptyStats();
        if (dep === "d1" && k === 0) {
          s.requests = 40;
          s.upstream_5xx = 3;
          s.latency_buckets[4] = 40;
        }
        return [id, s];
      }));
    const m = createMetrics({
      replica: 'r"1',
      cache: { current: () => ({ version: 3, etag: "", json: "", publicJson: "", table }) as never, status: () => ({ served_version: 3, stored_version: 3, held: [], behind: false }) },
      deployments: async () => deployments,
      telemetry: { window: async (dep: string, ids: string[]) => stats(dep, ids) },
      leaseHolders: async (names) => names.map(() => null),
      log,
    });
    m.probe("d1", "i0", "path", true, 0.0125);
    m.probe("d1", "i1", "path", false, 2);
    m.probe("d1", "i1", "path", false, 1.5); // the last one counts
    m.probe(odd, "i0", "path", true, 0.001);
    m.probe("gone", "i0", "path", true, 0.001); // not in the table: no series
    const body = (await m.render()).body;

    // The same data through prom-client gauges.
    const reg = new Registry();
    reg.setDefaultLabels({ replica: 'r"1' });
    const g = (name: string, help: string) => new Gauge({ name, help, labelNames: ["deployment", "instance"], registers: [reg] });
    const up = g("gateway_instance_up", "1 when the instance is active (in the pool) in this replica's routing table");
    const lps = g("gateway_instance_last_probe_seconds", "Latency of this replica's last probe of the instance");
    const lpo = g("gateway_instance_last_probe_ok", "1 when this replica's last probe of the instance passed");
    const ej = g("gateway_instance_ejected", "1 when the instance is ejected");
    const p95 = g("gateway_instance_latency_p95_seconds", "Traffic P95 over the deployment's window (telemetry, all Envoys merged)");
    const er = g("gateway_instance_error_rate", "(upstream_5xx + connect_failures) / requests over the window");
    const rq = g("gateway_instance_window_requests", "Requests in the window");
    for (const d of table.deployments) for (const i of d.instances) {
      const l = { deployment: d.id, instance: i.id };
      up.set(l, i.state === "active" ? 1 : 0);
      ej.set(l, i.state === "ejected" ? 1 : 0);
    }
    lps.set({ deployment: "d1", instance: "i0" }, 0.0125);
    lpo.set({ deployment: "d1", instance: "i0" }, 1);
    lps.set({ deployment: "d1", instance: "i1" }, 1.5);
    lpo.set({ deployment: "d1", instance: "i1" }, 0);
    lps.set({ deployment: odd, instance: "i0" }, 0.001);
    lpo.set({ deployment: odd, instance: "i0" }, 1);
    for (const d of deployments) for (const [id, s] of stats(d.id, d.instances.map((i) => i.id))) {
      const l = { deployment: d.id, instance: id };
      rq.set(l, s.requests);
      if (s.requests > 0) {
        p95.set(l, quantile(s.latency_buckets, 0.95)! / 1000);
        er.set(l, 3 / 40);
      }
    }
    const want = (await reg.metrics()).split("\n\n").map((b) => b.trim());
    const blocks = new Set(body.split("\n\n").map((b) => b.trim()));
    for (const b of want) assert.ok(blocks.has(b), `missing or different:\n${b}\n--- got:\n${[...blocks].find((x) => x.startsWith(b.split("\n")[0]!)) ?? "(none)"}`);
  });
});
