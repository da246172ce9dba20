// Strategies through the wasm: round robin across workers, smooth WRR shares, failover tiers,
// ineligible instances, and the fail/panic policies.
import { test } from "node:test";
import assert from "node:assert/strict";
import { deliver, gateway, header, metric, picked, request, table } from "./support.js";

function counts(list: (string | undefined)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of list) out[String(x)] = (out[String(x)] ?? 0) + 1;
  return out;
}

test("smooth weighted round robin gives exact shares over every window of sum(weights) picks", async () => {
  const weights = { a: 5, b: 3, c: 1, d: 1 };
  const sum = 10;
  const host = await gateway({
    table: table(1, [{ id: "wrr", strategy: "weighted_round_robin", instances: Object.entries(weights).map(([id, weight]) => ({ id, weight })) }]),
  });
  const picks: string[] = [];
  for (let i = 0; i < 10 * sum; i++) picks.push(picked(request(host, { model: "wrr" }))!);
  assert.deepEqual(counts(picks), { a: 50, b: 30, c: 10, d: 10 });
  // Every sliding window of `sum` consecutive picks holds each instance exactly `weight` times.
  for (let start = 0; start + sum <= picks.length; start++) {
    assert.deepEqual(counts(picks.slice(start, start + sum)), { a: 5, b: 3, c: 1, d: 1 }, `window at ${start}`);
  }
  // Smooth: the heavy instance is never picked more than twice in a row with these weights.
  for (let i = 2; i < picks.length; i++) assert.ok(!(picks[i] === "a" && picks[i - 1] === "a" && picks[i - 2] === "a"));
  assert.equal(metric(host, "gateway.deployment.wrr.requests"), 0, "routed requests are counted in batches…");
  host.advance(1000);
  assert.equal(metric(host, "gateway.deployment.wrr.requests"), 100, "…added to the Envoy counter on the next tick");
  assert.equal(metric(host, "gateway.deployment.wrr.instance.a.picks"), 50);
});

test("round robin across 4 worker VMs stays balanced", async () => {
  const host = await gateway({
    workers: 4,
    table: table(1, [{ id: "rr", instances: [{ id: "i0" }, { id: "i1" }, { id: "i2" }, { id: "i3" }] }]),
  });
  // Every worker adopts the table from shared data on its tick.
  host.advance(1000);
  // One request per worker: a naive per-worker counter would send all four to i0.
  const first = [0, 1, 2, 3].map((w) => picked(request(host, { model: "rr", worker: w })));
  assert.deepEqual(counts(first), { i0: 1, i1: 1, i2: 1, i3: 1 });
  const all: (string | undefined)[] = [];
  for (let i = 0; i < 400; i++) all.push(picked(request(host, { model: "rr", worker: i % 4 })));
  assert.deepEqual(counts(all), { i0: 100, i1: 100, i2: 100, i3: 100 });
  // And with requests spread unevenly over workers, no instance is more than one ahead per worker.
  const uneven: (string | undefined)[] = [];
  for (let i = 0; i < 40; i++) uneven.push(picked(request(host, { model: "rr", worker: i % 3 })));
  const c = Object.values(counts(uneven));
  assert.ok(Math.max(...c) - Math.min(...c) <= 3, JSON.stringify(counts(uneven)));
});

test("failover: the lowest tier with an eligible instance serves, rotating; higher tiers only when it is all ineligible; back to primary", async () => {
  const spec = (primaryState: "active" | "ejected") => [{
    id: "fo", strategy: "failover" as const, instances: [
      { id: "p1", priority: 0, state: primaryState, address: "10.9.0.1:8000" },
      { id: "s1", priority: 1, address: "10.9.1.1:8000" },
      { id: "p2", priority: 0, state: primaryState, address: "10.9.0.2:8000" },
      { id: "s2", priority: 1, address: "10.9.1.2:8000" },
      { id: "t1", priority: 2, address: "10.9.2.1:8000" },
    ],
  }];
  const host = await gateway({ table: table(1, spec("active")) });
  const primary = Array.from({ length: 6 }, () => request(host, { model: "fo" }));
  assert.deepEqual(counts(primary.map(picked)), { p1: 3, p2: 3 });
  // Fallbacks: the other primary first, then the next tier (max_fallbacks 2).
  const r = primary[0]!;
  const first = picked(r) === "p1" ? "10.9.0.1:8000" : "10.9.0.2:8000";
  const other = picked(r) === "p1" ? "10.9.0.2:8000" : "10.9.0.1:8000";
  assert.equal(header(r.upstreamHeaders, "x-gateway-destination-endpoint"), `${first},${other},10.9.1.1:8000`);

  deliver(host, table(2, spec("ejected")));
  const secondary = Array.from({ length: 6 }, () => picked(request(host, { model: "fo" })));
  assert.deepEqual(counts(secondary), { s1: 3, s2: 3 });

  deliver(host, table(3, spec("active")));
  const back = Array.from({ length: 4 }, () => picked(request(host, { model: "fo" })));
  assert.deepEqual(counts(back), { p1: 2, p2: 2 });
});

test("failover keeps a next-tier instance among the fallbacks when the primary tier is larger than the list", async () => {
  const instances = [
    { id: "p0", priority: 0, address: "10.8.0.1:8000" },
    { id: "p1", priority: 0, address: "10.8.0.2:8000" },
    { id: "p2", priority: 0, address: "10.8.0.3:8000" },
    { id: "b0", priority: 1, address: "10.8.1.1:8000" },
    { id: "b1", priority: 1, address: "10.8.1.2:8000" },
  ];
  const spec = [{ id: "fx", strategy: "failover" as const, instances }];
  // Default max_fallbacks 2: the pick, one more primary, then the backup — a dead primary region
  // still leaves every request a live host before any ejection arrives.
  const host = await gateway({ table: table(1, spec) });
  // (Round robin starts at the worker's sequence: compare the three picks' lists in any order.)
  const lists = Array.from({ length: 3 }, () => header(request(host, { model: "fx" }).upstreamHeaders, "x-gateway-destination-endpoint"));
  assert.deepEqual(lists.sort(), [
    "10.8.0.1:8000,10.8.0.2:8000,10.8.1.1:8000",
    "10.8.0.2:8000,10.8.0.3:8000,10.8.1.1:8000",
    "10.8.0.3:8000,10.8.0.1:8000,10.8.1.1:8000",
  ]);
  // With room for everyone, every other instance appears once: the rest of the tier, then the higher tiers.
  const wide = await gateway({ table: table(1, spec), config: { max_fallbacks: 8 } });
  const wideLists = Array.from({ length: 3 }, () => header(request(wide, { model: "fx" }).upstreamHeaders, "x-gateway-destination-endpoint"));
  assert.equal(wideLists.find((l) => l?.startsWith("10.8.0.1:")), "10.8.0.1:8000,10.8.0.2:8000,10.8.1.1:8000,10.8.0.3:8000,10.8.1.2:8000");
});

test("failover rotates within a tier by weight when weights differ", async () => {
  const host = await gateway({
    table: table(1, [{ id: "fw", strategy: "failover", instances: [
      { id: "a", priority: 0, weight: 3 }, { id: "b", priority: 0, weight: 1 }, { id: "z", priority: 1, weight: 100 },
    ] }]),
  });
  const picks = Array.from({ length: 8 }, () => picked(request(host, { model: "fw" })));
  assert.deepEqual(counts(picks), { a: 6, b: 2 });
});

test("ejected and draining instances are never picked nor listed as fallbacks", async () => {
  const host = await gateway({
    config: { max_fallbacks: 8 },
    table: table(1, [
      { id: "rr", instances: [{ id: "ok1", address: "10.1.1.1:1" }, { id: "ej", state: "ejected", address: "10.1.1.2:1" }, { id: "dr", state: "draining", address: "10.1.1.3:1" }, { id: "ok2", address: "10.1.1.4:1" }] },
      { id: "wrr", strategy: "weighted_round_robin", instances: [{ id: "ej", state: "ejected", weight: 100 }, { id: "ok", weight: 1 }, { id: "dr", state: "draining", weight: 50 }] },
      { id: "fo", strategy: "failover", instances: [{ id: "ej", priority: 0, state: "ejected" }, { id: "dr", priority: 0, state: "draining" }, { id: "ok", priority: 3 }] },
    ]),
  });
  for (let i = 0; i < 50; i++) {
    const r = request(host, { model: "rr" });
    assert.ok(["ok1", "ok2"].includes(picked(r)!));
    const ep = header(r.upstreamHeaders, "x-gateway-destination-endpoint")!;
    assert.ok(!ep.includes("10.1.1.2") && !ep.includes("10.1.1.3"), ep);
    assert.equal(picked(request(host, { model: "wrr" })), "ok");
    assert.equal(picked(request(host, { model: "fo" })), "ok");
  }
  assert.equal(metric(host, "gateway.deployment.rr.no_eligible_instance"), 0);
});

test("no eligible instance under `fail`: 503 with a JSON error and retry-after", async () => {
  const host = await gateway({
    config: { retry_after_seconds: 7 },
    table: table(1, [{ id: "down", on_unavailable: "fail", instances: [{ id: "a", state: "ejected" }, { id: "b", state: "draining" }] }]),
  });
  const r = request(host, { model: "down", headers: [["x-gateway-destination-endpoint", "1.2.3.4:5"]] });
  assert.equal(r.outcome, "local_reply");
  assert.equal(r.localReply!.status, 503);
  assert.equal(header(r.localReply!.headers, "retry-after"), "7");
  assert.equal(header(r.localReply!.headers, "content-type"), "application/json");
  const body = JSON.parse(r.localReply!.bodyText);
  assert.equal(body.error.code, "no_eligible_instance");
  assert.equal(typeof body.error.message, "string");
  assert.equal(metric(host, "gateway.deployment.down.no_eligible_instance"), 1);
  // An empty deployment is unavailable too.
  deliver(host, table(2, [{ id: "empty", instances: [] }]));
  assert.equal(request(host, { model: "empty" }).localReply?.status, 503);
});

test("no eligible instance under `panic`: all instances, non-draining first", async () => {
  const host = await gateway({
    table: table(1, [
      { id: "pan", on_unavailable: "panic", instances: [{ id: "ej1", state: "ejected" }, { id: "dr", state: "draining" }, { id: "ej2", state: "ejected" }] },
      { id: "drain", on_unavailable: "panic", instances: [{ id: "d1", state: "draining" }, { id: "d2", state: "draining" }] },
    ]),
  });
  const picks = Array.from({ length: 10 }, () => picked(request(host, { model: "pan" })));
  assert.deepEqual(counts(picks), { ej1: 5, ej2: 5 });
  const dpicks = Array.from({ length: 4 }, () => picked(request(host, { model: "drain" })));
  assert.deepEqual(counts(dpicks), { d1: 2, d2: 2 });
  assert.equal(metric(host, "gateway.deployment.pan.no_eligible_instance"), 10);
  assert.equal(metric(host, "gateway.deployment.pan.panic"), 10);
});

/** nginx smooth WRR from zero scores (the reference the plugin's pickers and hot blocks must follow). */
function swrrReference(weights: number[], picks: number): number[] {
  const total = weights.reduce((a, b) => a + b, 0);
  const score = weights.map(() => 0);
  const out: number[] = [];
  for (let k = 0; k < picks; k++) {
    let best = 0;
    for (let i = 0; i < weights.length; i++) {
      score[i]! += weights[i]!;
      if (score[i]! > score[best]!) best = i;
    }
    score[best]! -= total;
    out.push(best);
  }
  return out;
}

test("smooth WRR picks follow the reference sequence exactly on every worker (short periods, gcd, long periods)", async () => {
  const cases: { name: string; weights: number[]; strategy: "weighted_round_robin" | "failover" }[] = [
    { name: "short", weights: [5, 3, 1, 1], strategy: "weighted_round_robin" },
    { name: "gcd", weights: [100, 50, 50], strategy: "weighted_round_robin" },
    { name: "long", weights: [997, 1009, 3], strategy: "weighted_round_robin" },
    { name: "sixteen", weights: Array.from({ length: 16 }, (_, i) => 1 + (i % 3)), strategy: "weighted_round_robin" },
    { name: "tier", weights: [2, 1, 3], strategy: "failover" },
  ];
  const deployments = cases.map((c) => ({
    id: c.name,
    strategy: c.strategy,
    // failover: the weights form the priority-0 tier; a priority-1 backup is never picked while it is healthy.
    instances: [...c.weights.map((weight, i) => ({ id: `i${i}`, weight })), ...(c.strategy === "failover" ? [{ id: "backup", priority: 1, weight: 7 }] : [])],
  }));
  const host = await gateway({ workers: 3, table: table(1, deployments) });
  host.advance(1000); // every worker adopts the table from shared data
  for (const c of cases) {
    const total = c.weights.reduce((a, b) => a + b, 0);
    const n = Math.min(3 * total, 2500);
    const ref = swrrReference(c.weights, 4096 + total + n);
    for (let w = 0; w < 3; w++) {
      const got = Array.from({ length: n }, () => Number(picked(request(host, { model: c.name, worker: w }))!.slice(1)));
      // Workers start at different points of the sequence (their sequence number), then follow it.
      let offset = -1;
      for (let o = 0; o <= 4096 && offset < 0; o++) if (got.every((x, k) => x === ref[o + k])) offset = o;
      assert.ok(offset >= 0, `${c.name} on worker ${w}: picks follow smooth WRR (${got.slice(0, 20).join(",")}…)`);
    }
  }
  host.shutdown();
});
