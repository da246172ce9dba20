// The prober with a large fleet (bench/control-scale.bench.ts found each of these at 10k instances), on
// stub stores so that only the prober's own scheduling is under test:
//   - a replica that takes many instances over (its start, a restart, a takeover) spreads their probes
//     over the interval instead of probing them all in one burst every interval;
//   - listing every deployment document is reused while it is expensive (not re-read and re-parsed on
//     every tick), and concurrent ticks share one list;
//   - an instance's upstream API key is read once, not on every probe;
//   - a prober short of time caps its probes in flight instead of piling up sockets until the event loop is
//     later than the probe timeout (healthy instances then failed their probes and were ejected);
//   - re-admission sets "judge only traffic from now on" before its write, not after: with probes spread over
//     the interval, an evaluation could run during the write and eject the instance again for old traffic;
//   - the leases are renewed concurrently: renewed one after the other, many leases on a slow connection
//     lapsed and the prober stopped probing those deployments.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createProber, MAX_PROBES_IN_FLIGHT, probePhase } from "../../control/src/jobs/prober.js";
import type { Deployment } from "../../control/src/deployments/schemas.js";
import { fakeDeployment } from "./prober-fixtures.js";
import type { Logger } from "../../control/src/log.js";
import { emptyStats, type WindowStats } from "../../control/src/telemetry/window.js";
import { waitFor } from "../support/redis.js";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));



interface Rig {
  probes: { dep: string; inst: string; at: number }[];
  lists: number;
  keyReads: number;
  maxInFlight: number;
  events: { inst: string; type: string; reason: string }[];
  warnings: string[];
  deployments: Deployment[];
  start(): void;
  stop(): Promise<void>;
  held(): string[];
  t0: number;
}

function rig(deployments: Deployment[], opts: {
    tickMs?: number;
    leaseMs?: number;
    listMs?: number;
    renewMs?: number;
    probeMs?: number;
    /** Saving a probe's state answers this much later (a slow Redis). */
    saveMs?: number;
    /** A write is visible at once but answers this much later (the control waits for its own table). */
    updateMs?: number;
    window?: (instances: string[], since: Record<string, number | undefined>) => Map<string, WindowStats>;
  } = {}): Rig {
  const warnings: string[] = [];
  const log: Logger = { debug: () => undefined, info: () => undefined, warn: (m) => void warnings.push(m), error: (m) => void warnings.push(m), child: () => log };
  const r: Rig = { probes: [], lists: 0, keyReads: 0, maxInFlight: 0, events: [], warnings, deployments, t0: 0, start: () => undefined, stop: async () => undefined, held: () => [] };
  const find = (id: string) => r.deployments.find((d) => d.id === id) ?? null;
  const byHost = new Map(deployments.flatMap((d) => d.instances.map((i) => [i.host, { dep: d.id, inst: i.id }] as const)));
  let inFlight = 0;
  const prober = createProber({
    store: {
      async list() {
        r.lists++;
        if (opts.listMs) await sleep(opts.listMs);
        return r.deployments;
      },
      get: async (id) => find(id),
      async update(id, mutate) {
        const cur = find(id)!;
        const c = mutate(cur);
        if (!c) return cur;
        r.deployments = r.deployments.map((d) => (d.id === id ? c.next : d));
        if (opts.updateMs) await sleep(opts.updateMs);
        return c.next;
      },
      async getApiKey() {
        r.keyReads++;
        return null;
      },
    },
    models: { get: async () => null },
    tester: {
      async probe(target) {
        r.probes.push({ ...byHost.get(target.host)!, at: performance.now() - r.t0 });
        r.maxInFlight = Math.max(r.maxInFlight, ++inFlight);
        if (opts.probeMs) await sleep(opts.probeMs);
        inFlight--;
        return { ok: true, address: null, error: null };
      },
      probeCompletion: async () => ({ ok: true, address: null, error: null }),
    },
    leases: {
      acquire: async () => ({
        async renew() {
          if (opts.renewMs) await sleep(opts.renewMs);
          return true;
        },
        release: async () => undefined,
      }),
      remainingMs: async () => 0,
      holders: async (names) => names.map(() => "me"),
    },
    health: {
      states: async () => new Map(),
      saveState: async () => {
        if (opts.saveMs) await sleep(opts.saveMs);
      },
      dropStates: async () => undefined,
      addEvent: async (_d, inst, e) => void r.events.push({ inst, type: e.type, reason: e.reason }),
      events: async () => [],
    },
    telemetry: { recordProbe: async () => undefined, window: async (_d, instances, _w, since = {}) => opts.window?.(instances, since) ?? new Map() },
    tickMs: opts.tickMs ?? 20,
    leaseMs: opts.leaseMs ?? 5_000,
    replica: "me",
    log,
  });
  r.start = () => {
    r.t0 = performance.now();
    prober.start();
  };
  r.stop = () => prober.stop();
  r.held = () => prober.held();
  return r;
}

describe("the prober with a large fleet", () => {
  test("probe phases: spread evenly over the interval, the same in every replica", () => {
    const buckets = new Array(10).fill(0);
    for (let d = 0; d < 100; d++) for (let k = 0; k < 100; k++) buckets[Math.floor(probePhase(`d${d}`, `i${d * 100 + k}`) * 10)]++;
    for (const b of buckets) assert.ok(b > 850 && b < 1150, `10k phases in tenths of the interval: ${buckets.join(" ")}`);
    assert.equal(probePhase("d1", "i7"), probePhase("d1", "i7"));
    assert.notEqual(probePhase("d1", "i7"), probePhase("d1", "i8"));
  });

  test("a replica taking over 200 instances probes them spread over the interval, not in one burst", async () => {
    const N = 1;
    const r = rig([fakeDeployment("big", 200, N)]);
    r.start();
    const firsts = () => new Set(r.probes.map((p) => p.inst)).size;
    // Every instance probed within one interval (and a tick); and the earliest tenth probed a second time,
    // so that the cadence check below has probes to look at.
    await waitFor(() => firsts() === 200 && r.probes.length >= 200 + 20, N * 1000 + 400, "every instance probed, 20 of them twice").catch((e: Error) => {
      throw new Error(`${e.message}: ${firsts()} instances probed, ${r.probes.length} probes`);
    });
    await r.stop();
    const first = new Map<string, number>();
    for (const p of r.probes) if (!first.has(p.inst)) first.set(p.inst, p.at);
    assert.equal(first.size, 200, "every instance probed within one interval (and a tick)");
    const times = [...first.values()];
    // All at once, they would all leave in the first tick. Spread, no tenth of the interval holds more than ~2x its share.
    const perTenth = new Array(10).fill(0);
    for (const t of times) perTenth[Math.min(9, Math.floor(t / (N * 100)))]++;
    assert.ok(Math.max(...perTenth) <= 45, `first probes per 100 ms: ${perTenth.join(" ")}`);
    assert.ok(Math.max(...times) - Math.min(...times) >= 0.7 * N * 1000, `first probes between ${Math.min(...times).toFixed(0)} and ${Math.max(...times).toFixed(0)} ms`);
    // And each keeps its own cadence: the second probe one interval after the first.
    const second = new Map<string, number>();
    for (const p of r.probes) if (p.at > first.get(p.inst)! && !second.has(p.inst)) second.set(p.inst, p.at);
    for (const [inst, t] of second) assert.ok(Math.abs(t - first.get(inst)! - N * 1000) < 250, `${inst}: ${(t - first.get(inst)!).toFixed(0)} ms between its first two probes`);
  });

  test("a large fleet's expensive list is reused (at most one per 10x its duration), and concurrent ticks share one", async () => {
    const r = rig([fakeDeployment("a", 5, 0.2), fakeDeployment("b", 5, 0.2), fakeDeployment("c", 990, 3600)], { tickMs: 10, listMs: 60 });
    r.start();
    await sleep(1_300);
    await r.stop();
    // Every 10 ms tick listed anew (and overlapped: a list takes 60 ms): 100+ lists. Now: one per 600 ms.
    assert.ok(r.lists <= 5, `${r.lists} lists in 1.3 s`);
    // Probes keep their cadence from the reused list.
    for (const d of ["a", "b"]) for (let k = 0; k < 5; k++) {
      const n = r.probes.filter((p) => p.dep === d && p.inst === `i${k}`).length;
      assert.ok(n >= 4, `${d}/i${k} probed ${n} times in 1.3 s at N = 0.2 s`);
    }
  });

  test("a small fleet is listed on every tick (changes are seen at once), one list at a time", async () => {
    const r = rig([fakeDeployment("s", 5, 0.2)], { tickMs: 10, listMs: 30 });
    r.start();
    await sleep(600);
    await r.stop();
    assert.ok(r.lists >= 10 && r.lists <= 25, `${r.lists} lists of 30 ms in 0.6 s at a 10 ms tick`);
  });

  test("an instance's API key is read once, and again only when its document changes", async () => {
    const r = rig([fakeDeployment("k", 4, 0.05)], { tickMs: 10 });
    r.start();
    await waitFor(() => r.probes.length >= 20, 5000, "20 probes");
    assert.equal(r.keyReads, 4, "one read per instance");
    const d = r.deployments[0]!;
    r.deployments = [{ ...d, instances: d.instances.map((i) => (i.id === "i2" ? { ...i, has_api_key: true, updated_at: "2026-01-01T00:00:01.000Z" } : i)) }];
    await waitFor(() => r.keyReads >= 5, 5000, "the changed instance's key read again");
    // Read once: a few more probes of i2 read it no more.
    const i2 = () => r.probes.filter((p) => p.inst === "i2").length;
    const i2Probes = i2();
    await waitFor(() => i2() >= i2Probes + 3, 5000, "3 more probes of i2");
    await r.stop();
    assert.equal(r.keyReads, 5, "the changed instance's key is read again, once");
  });

  test("a prober short of time caps its probes in flight (due probes wait) instead of piling up sockets", async () => {
    // 1500 instances at N = 1 s whose probes take 1.5 s: 2250 would be in flight.
    const r = rig([fakeDeployment("slow", 1_500, 1)], { probeMs: 1_500 });
    r.start();
    await waitFor(() => r.warnings.includes("probes falling behind: too many in flight") && r.maxInFlight >= MAX_PROBES_IN_FLIGHT * 0.9, 5000, "the cap reached and the warning logged").catch((e: Error) => {
      throw new Error(`${e.message}: ${r.maxInFlight} probes in flight at most, warnings ${JSON.stringify(r.warnings.slice(0, 3))}`);
    });
    await r.stop();
    assert.ok(r.maxInFlight <= MAX_PROBES_IN_FLIGHT, `${r.maxInFlight} probes in flight at once`);
    assert.ok(r.maxInFlight >= MAX_PROBES_IN_FLIGHT * 0.9, `${r.maxInFlight} probes in flight at once`);
    assert.ok(r.warnings.includes("probes falling behind: too many in flight"), JSON.stringify(r.warnings.slice(0, 3)));
  });

  test("a probe frees its in-flight slot when its answer is in, not when its state is written", async () => {
    // 1500 instances at N = 1 s answer at once, but saving a state takes 1.5 s: slots held until then
    // would let only 1000 probes start in the first interval.
    const r = rig([fakeDeployment("slowsave", 1_500, 1)], { saveMs: 1_500 });
    r.start();
    const probed = () => new Set(r.probes.map((p) => p.inst)).size;
    const deadline = performance.now() + 1_000 + 400; // one interval and a couple of ticks
    while (probed() < 1_500 && performance.now() < deadline) await sleep(20);
    const n = probed();
    await r.stop();
    assert.equal(n, 1_500, `instances probed within the first interval: ${n}`);
  });

  test("re-admission: an evaluation running during the write does not judge the old traffic again", async () => {
    // e was ejected for its error rate; its probes pass; the window before re-admission holds 12 errors in 20.
    const d = fakeDeployment("ra", 1, 0.05);
    d.health_check = { ...d.health_check, max_error_rate: 0.5, min_requests: 10, healthy_threshold: 2 };
    d.instances[0]!.state = "ejected";
    const t0 = Date.now();
    let evaluations = 0;
    const r = rig([d], {
      tickMs: 10,
      updateMs: 300,
      window: (ids, since) => {
        evaluations++;
        return new Map(ids.map((id) => [id, (since[id] ?? 0) >= t0 ? emptyStats() : { ...emptyStats(), requests: 20, upstream_5xx: 12 }]));
      },
    });
    r.start();
    await waitFor(() => r.events.some((e) => e.type === "readmitted") && r.deployments[0]!.instances[0]!.state === "active", 5000, "re-admitted");
    // A deployment's evaluations run one at a time: once 3 more have begun, any that ran during the write has
    // finished (an ejection it decided would be in the events, and would stop the evaluations: no active instance).
    const seen = evaluations;
    await waitFor(() => evaluations >= seen + 3 || r.events.some((e) => e.type === "ejected"), 5000, "3 more evaluations");
    await r.stop();
    assert.deepEqual(r.events.filter((e) => e.type === "readmitted" || e.type === "ejected").map((e) => e.type), ["readmitted"]);
    assert.equal(r.deployments[0]!.instances[0]!.state, "active");
  });

  test("30 leases on a slow connection (100 ms a renewal) stay held: renewed together, not one after the other", async () => {
    const r = rig(Array.from({ length: 30 }, (_, k) => fakeDeployment(`l${k}`, 1, 1)), { leaseMs: 1_000, renewMs: 100 });
    r.start();
    await sleep(2_500);
    const held = r.held().length;
    await r.stop();
    assert.deepEqual(r.warnings, [], "no lease lapsed");
    assert.equal(held, 30);
  });
});
