// Probes leave at their own due times, not in one burst per prober tick (bench/control-scale.bench.ts: at 10k
// instances, N = 5 s and the production tick of 500 ms, each tick started ~1,000 connections at once; the event
// loop fell behind and only a fraction of the fleet was probed within N + 1 s). Each instance's probes are due on
// its phase grid (probePhase × interval + k × interval, Date.now() clock); with a 500 ms tick a probe started at
// the tick that found it due is late by 250 ms on average, started by the dispatcher it is late by about nothing.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createProber, probePhase } from "../../control/src/jobs/prober.js";
import type { Deployment } from "../../control/src/deployments/schemas.js";
import { fakeDeployment } from "./prober-fixtures.js";
import type { Logger } from "../../control/src/log.js";
import { waitFor } from "../support/redis.js";



function prober(deployments: Deployment[], tickMs: number, onProbe: (dep: string, inst: string) => void) {
  const log: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined, child: () => log };
  const byHost = new Map(deployments.flatMap((d) => d.instances.map((i) => [i.host, { dep: d.id, inst: i.id }] as const)));
  return createProber({
    store: { list: async () => deployments, get: async (id) => deployments.find((d) => d.id === id) ?? null, update: async (id) => deployments.find((d) => d.id === id)!, getApiKey: async () => null },
    models: { get: async () => null },
    tester: {
      async probe(target) {
        const x = byHost.get(target.host)!;
        onProbe(x.dep, x.inst);
        return { ok: true, address: null, error: null };
      },
      probeCompletion: async () => ({ ok: true, address: null, error: null }),
    },
    leases: { acquire: async () => ({ renew: async () => true, release: async () => undefined }), remainingMs: async () => 0, holders: async (n) => n.map(() => "me") },
    health: { states: async () => new Map(), saveState: async () => undefined, dropStates: async () => undefined, addEvent: async () => undefined, events: async () => [] },
    telemetry: { recordProbe: async () => undefined, window: async () => new Map() },
    tickMs,
    leaseMs: 60_000,
    replica: "me",
    log,
  });
}

describe("probe dispatch within a tick", () => {
  test("with a 500 ms tick, each probe starts at its due time (not at the tick that finds it due), spread within the tick", async () => {
    const N = 1;
    const deps = [fakeDeployment("a", 150, N), fakeDeployment("b", 150, N)];
    const lateness: number[] = [];
    const perSlot = new Map<number, number>();
    const p = prober(deps, 500, (dep, inst) => {
      const now = Date.now();
      const I = N * 1000;
      // How far from its nearest grid point this probe started (ms, either side).
      const x = (((now - probePhase(dep, inst) * I) % I) + I) % I;
      lateness.push(Math.abs(x > I / 2 ? x - I : x));
      const slot = Math.floor(now / 50);
      perSlot.set(slot, (perSlot.get(slot) ?? 0) + 1);
    });
    p.start();
    try {
      await waitFor(() => lateness.length >= 900, 10_000, "900 probes");
    } finally {
      await p.stop();
    }
    lateness.sort((a, b) => a - b);
    const q = (f: number) => lateness[Math.floor(f * (lateness.length - 1))]!;
    // At the tick: uniform over 0..500 ms late (median ~250). At the due time: a few ms (timer delay).
    assert.ok(q(0.5) < 60, `median lateness ${q(0.5).toFixed(0)} ms (p90 ${q(0.9).toFixed(0)} ms)`);
    assert.ok(q(0.9) < 150, `p90 lateness ${q(0.9).toFixed(0)} ms`);
    // 300 probes/s: 15 per 50 ms on average; at the tick, ~150 left in the same 50 ms.
    const max = Math.max(...perSlot.values());
    assert.ok(max <= 60, `at most ${max} probes started in one 50 ms slot`);
  });

  test("a lease lost before a scheduled probe's time: that probe does not start", async () => {
    const probes: string[] = [];
    const d = fakeDeployment("c", 50, 1);
    const p = prober([d], 500, (_dep, inst) => void probes.push(inst));
    p.start();
    await waitFor(() => probes.length >= 1, 5_000, "a first probe");
    p.halt();
    const n = probes.length;
    await new Promise((r) => setTimeout(r, 600)); // past the tick: nothing scheduled before the halt may start
    assert.equal(probes.length, n, "no probe started after the prober stopped");
  });
});
