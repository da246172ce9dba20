// load_aware (plugin/strategy/load.ts): the control service's engine load score (contract 1, an
// instance's `load`) × this worker's in-flight count. Never an ineligible pick; traffic moves away from a
// high-score instance; a stale score (older than 3 × interval_ms by the worker's clock) is ignored — the
// pair is compared as least_request does, so a stale low score attracts nothing. Deterministic host.
import { test } from "node:test";
import assert from "node:assert/strict";
import { deliver, gateway, header, type Host, picked, request, table } from "./support.js";

type Load = { score: number; at_ms: number; interval_ms: number; capacity?: number };

/** A one-deployment load_aware table; `loads` by instance id are added to the instances. */
function loadTable(version: number, instances: { id: string; weight?: number; priority?: number; state?: "active" | "draining" | "ejected" }[], loads: Record<string, Load>): object {
  const t = table(version, [{ id: "d", strategy: "least_request", instances }]) as { deployments: { strategy: string; instances: Record<string, unknown>[] }[] };
  t.deployments[0]!.strategy = "load_aware";
  for (const i of t.deployments[0]!.instances) {
    const l = loads[i.id as string];
    if (l) i.load = l;
  }
  return t;
}

function counts(list: (string | undefined)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of list) out[String(x)] = (out[String(x)] ?? 0) + 1;
  return out;
}

function sequential(host: Host, n: number): Record<string, number> {
  const picks: (string | undefined)[] = [];
  for (let i = 0; i < n; i++) picks.push(picked(request(host, { model: "d" })));
  return counts(picks);
}

function open(host: Host) {
  const s = host.worker(0).stream();
  s.requestHeaders([[":method", "POST"], [":path", "/v1/chat/completions"], [":authority", "gw"], [":scheme", "http"], ["x-model", "d"]], true);
  return { s, pick: header(s.result().upstreamHeaders, "x-model-instance") };
}

test("load_aware: traffic moves away from a high-score instance (fresh scores)", async () => {
  const host = await gateway();
  const at = host.now;
  deliver(host, loadTable(1, [{ id: "a" }, { id: "b" }, { id: "c" }], {
    a: { score: 8, at_ms: at, interval_ms: 1000 }, // 8 requests queued
    b: { score: 0.1, at_ms: at, interval_ms: 1000 },
    c: { score: 0.2, at_ms: at, interval_ms: 1000 },
  }));
  // With nothing in flight, a is picked only when both samples are a (never: two distinct samples).
  const idle = sequential(host, 3000);
  assert.equal(idle.a ?? 0, 0, JSON.stringify(idle));
  // Under this worker's own load, a is used only once b and c hold ~9× more in flight than it.
  const held: ReturnType<typeof open>[] = [];
  for (let i = 0; i < 300; i++) held.push(open(host));
  const c = counts(held.map((o) => o.pick));
  for (const o of held) o.s.finish();
  assert.ok((c.a ?? 0) < 300 * 0.1, `a got ${c.a} of 300 (${JSON.stringify(c)})`);
  assert.ok((c.b ?? 0) > 100 && (c.c ?? 0) > 100, JSON.stringify(c));
});

test("load_aware: a stale score is ignored (least_request for that pair), a fresh one applies again", async () => {
  const host = await gateway();
  const at = host.now;
  // a claims to be idle, b loaded — but a's score is 3.5 intervals old: it must not attract traffic.
  deliver(host, loadTable(1, [{ id: "a" }, { id: "b" }], {
    a: { score: 0, at_ms: at - 3500, interval_ms: 1000 },
    b: { score: 50, at_ms: at, interval_ms: 1000 },
  }));
  // Sequential requests (in-flight 0 everywhere): least_request's tie keeps the first (weighted) sample → ~50/50.
  const stale = sequential(host, 2000);
  assert.ok(Math.abs((stale.a ?? 0) / 2000 - 0.5) < 0.06, `stale: ${JSON.stringify(stale)}`);
  // Held streams: least_request balances in-flight counts, so a does not take everything.
  const held: ReturnType<typeof open>[] = [];
  for (let i = 0; i < 200; i++) held.push(open(host));
  const h = counts(held.map((o) => o.pick));
  for (const o of held) o.s.finish();
  assert.ok(Math.abs((h.a ?? 0) - 100) <= 2, `held with a stale score: ${JSON.stringify(h)}`);
  // The same low score, fresh: a wins every pair now.
  deliver(host, loadTable(2, [{ id: "a" }, { id: "b" }], {
    a: { score: 0, at_ms: host.now, interval_ms: 1000 },
    b: { score: 50, at_ms: host.now, interval_ms: 1000 },
  }));
  assert.deepEqual(sequential(host, 500), { a: 500 });
  // And it goes stale with time alone (no new table): 3 intervals later it is ignored again.
  host.advance(3001);
  const later = sequential(host, 2000);
  assert.ok((later.b ?? 0) > 800, `after 3 intervals: ${JSON.stringify(later)}`);
});

test("load_aware: without any score it is least_request", async () => {
  const host = await gateway();
  deliver(host, loadTable(1, [{ id: "a" }, { id: "b" }], {}));
  const held: ReturnType<typeof open>[] = [];
  for (let i = 0; i < 200; i++) held.push(open(host));
  const h = counts(held.map((o) => o.pick));
  for (const o of held) o.s.finish();
  assert.ok(Math.abs((h.a ?? 0) - 100) <= 2, JSON.stringify(h));
});

for (const withCapacity of [false, true]) test(`load_aware: never an ineligible pick (draining, ejected, higher tier), whatever their scores${withCapacity ? " and capacities" : ""}`, async () => {
  const host = await gateway();
  const at = host.now;
  const fresh = (score: number) => ({ score, at_ms: at, interval_ms: 1000, ...(withCapacity ? { capacity: score === 0 ? 1000 : 2 } : {}) });
  deliver(host, loadTable(1, [
    { id: "a" }, { id: "b", weight: 3 },
    { id: "dr", state: "draining" }, { id: "ej", state: "ejected" }, { id: "t1", priority: 1 },
  ], { a: fresh(5), b: fresh(100), dr: fresh(0), ej: fresh(0), t1: fresh(0) }));
  const held: ReturnType<typeof open>[] = [];
  const seen: (string | undefined)[] = [];
  for (let i = 0; i < 600; i++) {
    const o = open(host);
    seen.push(o.pick);
    if (i % 2 === 0) held.push(o); else o.s.finish();
  }
  for (const o of held) o.s.finish();
  assert.deepEqual(Object.keys(counts(seen)).sort(), ["a", "b"]);
  // Primary tier gone: the next tier serves.
  deliver(host, loadTable(2, [{ id: "a", state: "ejected" }, { id: "t1", priority: 1 }, { id: "t2", priority: 2 }], { t2: fresh(0) }));
  assert.deepEqual(sequential(host, 50), { t1: 50 });
});

/** Holds `n` streams open (in flight on this worker) and returns how many each instance got. */
function hold(host: Host, n: number): { picks: Record<string, number>; order: (string | undefined)[]; finish: () => void } {
  const held: ReturnType<typeof open>[] = [];
  for (let i = 0; i < n; i++) held.push(open(host));
  return { picks: counts(held.map((o) => o.pick)), order: held.map((o) => o.pick), finish: () => held.forEach((o) => o.s.finish()) };
}

test("load_aware with capacities: in-flight requests settle in proportion to each engine's capacity, with equal weights", async () => {
  const host = await gateway();
  const fresh = (capacity: number) => ({ score: 0, at_ms: host.now, interval_ms: 1000, capacity });
  deliver(host, loadTable(1, [{ id: "a" }, { id: "b" }, { id: "c" }], { a: fresh(12), b: fresh(12), c: fresh(4) }));
  const h = hold(host, 280);
  h.finish();
  // Least (in flight + 1) per slot over all three: 120 / 120 / 40 up to the last round.
  for (const [id, want] of [["a", 120], ["b", 120], ["c", 40]] as const) {
    assert.ok(Math.abs((h.picks[id] ?? 0) - want) <= 2, `${id}: ${h.picks[id]} of 280, want ~${want} (${JSON.stringify(h.picks)})`);
  }
  // At any time, no instance is two requests per slot ahead of another: the third with a third of the slots
  // never fills first (what keeps its queue empty).
  const n: Record<string, number> = { a: 0, b: 0, c: 0 };
  const cap: Record<string, number> = { a: 12, b: 12, c: 4 };
  for (const p of h.order) {
    n[p!]!++;
    const perSlot = Object.keys(n).map((k) => n[k]! / cap[k]!);
    assert.ok(Math.max(...perSlot) - Math.min(...perSlot) <= 1 / 4 + 1e-9, `per-slot spread ${perSlot.join(", ")}`);
  }
});

test("load_aware with capacities: requests waiting in an engine count as requests ahead of the next", async () => {
  const host = await gateway();
  const at = host.now;
  // a has 8 requests queued (from other proxies); b is idle; the same 4 slots.
  deliver(host, loadTable(1, [{ id: "a" }, { id: "b" }], { a: { score: 8, at_ms: at, interval_ms: 1000, capacity: 4 }, b: { score: 0, at_ms: at, interval_ms: 1000, capacity: 4 } }));
  const h = hold(host, 24);
  h.finish();
  assert.deepEqual(h.order.slice(0, 8), Array(8).fill("b"), `b first until it holds as many: ${h.order.join(",")}`);
  assert.ok(Math.abs((h.picks.b ?? 0) - 16) <= 1, JSON.stringify(h.picks));
});

test("load_aware with capacities: the weight multiplies the capacity", async () => {
  const host = await gateway();
  const fresh = (capacity: number) => ({ score: 0, at_ms: host.now, interval_ms: 1000, capacity });
  // 4 slots × weight 3 = 12 slots × weight 1: equal shares.
  deliver(host, loadTable(1, [{ id: "a", weight: 3 }, { id: "b" }], { a: fresh(4), b: fresh(12) }));
  const h = hold(host, 200);
  h.finish();
  assert.ok(Math.abs((h.picks.a ?? 0) - 100) <= 1, JSON.stringify(h.picks));
});

test("load_aware: capacities are used only when every candidate has one and a fresh score", async () => {
  const host = await gateway();
  const at = host.now;
  const big = { score: 0, at_ms: at, interval_ms: 1000, capacity: 100 };
  // b has no capacity: the pair is compared by (in flight + 1) × (1 + score), as without capacities.
  deliver(host, loadTable(1, [{ id: "a" }, { id: "b" }], { a: big, b: { score: 0, at_ms: at, interval_ms: 1000 } }));
  let h = hold(host, 200);
  h.finish();
  assert.ok(Math.abs((h.picks.a ?? 0) - 100) <= 2, `one without capacity: ${JSON.stringify(h.picks)}`);
  // b's score (with its capacity) is stale: least_request.
  deliver(host, loadTable(2, [{ id: "a" }, { id: "b" }], { a: big, b: { score: 0, at_ms: at - 3500, interval_ms: 1000, capacity: 1 } }));
  h = hold(host, 200);
  h.finish();
  assert.ok(Math.abs((h.picks.a ?? 0) - 100) <= 2, `one stale: ${JSON.stringify(h.picks)}`);
  // Both fresh with capacities 100 and 1: a takes 100 for each of b's 1.
  deliver(host, loadTable(3, [{ id: "a" }, { id: "b" }], { a: { ...big, at_ms: host.now }, b: { score: 0, at_ms: host.now, interval_ms: 1000, capacity: 1 } }));
  h = hold(host, 202);
  h.finish();
  assert.ok((h.picks.b ?? 0) <= 3, `both known: ${JSON.stringify(h.picks)}`);
});
