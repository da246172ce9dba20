// least_request and latency (plugin/strategy/load.ts) through the wasm: never an ineligible pick,
// weights honoured at equal load, traffic moves away from a loaded / slow instance, a new instance is
// not flooded, in-flight counts return to 0 after every kind of stream end. The plugin's RNG is seeded
// with the worker's sequence number and the host is deterministic, so these runs are reproducible; the
// bounds are still several standard deviations wide.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { deliver, gateway, header, type Host, picked, request, table } from "./support.js";
import { FLAG, send } from "./upstream.js";

type Strat = "least_request" | "latency";
const STRATEGIES: Strat[] = ["least_request", "latency"];
const FIXTURES = fileURLToPath(new URL("../fixtures/routing-table/valid/", import.meta.url));

function counts(list: (string | undefined)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of list) out[String(x)] = (out[String(x)] ?? 0) + 1;
  return out;
}

/** Opens a routed stream and leaves it in flight; returns the pick and the stream. */
function open(host: Host, model: string) {
  const s = host.worker(0).stream();
  s.requestHeaders([[":method", "POST"], [":path", "/v1/chat/completions"], [":authority", "gw"], [":scheme", "http"], ["x-model", model]], true);
  return { s, pick: header(s.result().upstreamHeaders, "x-model-instance") };
}

/** n sequential requests, each finished before the next (in-flight 0 at every pick). */
function sequential(host: Host, model: string, n: number): Record<string, number> {
  const picks: (string | undefined)[] = [];
  for (let i = 0; i < n; i++) picks.push(picked(request(host, { model })));
  return counts(picks);
}

for (const strategy of STRATEGIES) {
  test(`${strategy}: never an ineligible pick (draining, ejected, higher tier, passive ejection), tiers fail over`, async () => {
    const host = await gateway({
      config: { passive_failures: 1, passive_cooldown_ms: 60_000 },
      table: table(1, [{
        id: "d", strategy, instances: [
          { id: "a", weight: 5 }, { id: "b", weight: 1 }, { id: "c", weight: 2 },
          { id: "dr", state: "draining", weight: 100 }, { id: "ej", state: "ejected", weight: 100 },
          { id: "t1", priority: 1, weight: 100 },
        ],
      }]),
    });
    const held: ReturnType<typeof open>[] = [];
    const seen: (string | undefined)[] = [];
    for (let i = 0; i < 600; i++) {
      const o = open(host, "d");
      seen.push(o.pick);
      if (i % 3 === 0) held.push(o); else o.s.finish();
    }
    for (const o of held) o.s.finish();
    assert.deepEqual(Object.keys(counts(seen)).sort(), ["a", "b", "c"]);
    // Passive ejection of "a" (one connect failure with passive_failures 1): never picked meanwhile.
    for (let i = 0; i < 20; i++) {
      const r = send(host, "d", (pick) => (pick === "a" ? { flags: FLAG.UF | FLAG.URX } : { status: 200 }));
      if (r.instance === "a") break;
    }
    const after = sequential(host, "d", 300);
    assert.deepEqual(Object.keys(after).sort(), ["b", "c"], JSON.stringify(after));
    // The whole primary tier ineligible → tier 1 serves, and only it.
    deliver(host, table(2, [{ id: "d", strategy, instances: [{ id: "a", state: "ejected" }, { id: "t1", priority: 1 }, { id: "t2", priority: 2 }] }]));
    host.advance(1000);
    assert.deepEqual(sequential(host, "d", 50), { t1: 50 });
  });

  test(`${strategy}: with equal load (all idle) the weights are honoured`, async () => {
    const host = await gateway({ table: table(1, [{ id: "d", strategy, instances: [{ id: "a", weight: 3 }, { id: "b", weight: 1 }, { id: "c", weight: 4 }] }]) });
    const n = 8000;
    const c = sequential(host, "d", n);
    // Expected 3/8, 1/8, 4/8; σ ≤ 0.6 % of n: ± 3 points is > 5σ.
    for (const [id, w] of [["a", 3], ["b", 1], ["c", 4]] as const) {
      const share = (c[id] ?? 0) / n;
      assert.ok(Math.abs(share - w / 8) < 0.03, `${id}: ${share} vs ${w / 8} (${JSON.stringify(c)})`);
    }
  });

  test(`${strategy}: in-flight counts return to 0 after streams end (responses, 5xx, connect failures, resets)`, async () => {
    const host = await gateway({ config: { passive_failures: 0 }, table: table(1, [{ id: "d", strategy, instances: [{ id: "a" }, { id: "b" }, { id: "c" }, { id: "e" }] }]) });
    const held: ReturnType<typeof open>[] = [];
    for (let i = 0; i < 200; i++) held.push(open(host, "d"));
    held.forEach((o, i) => {
      if (i % 4 === 0) o.s.respond({ status: 200, body: "x" });
      else if (i % 4 === 1) o.s.respond({ status: 503, body: "x" });
      // i % 4 === 2: no response at all (a client reset / upstream reset before headers)
      else if (i % 4 === 3) o.s.responseHeaders([[":status", "200"]], false); // reset mid-body
      o.s.finish();
    });
    for (let i = 0; i < 40; i++) send(host, "d", { flags: i % 2 ? FLAG.UF | FLAG.URX : FLAG.UR, status: i % 2 ? undefined : 503 });
    // A count left above 0 would make its instance the unique most loaded one: never picked again.
    const c = sequential(host, "d", 800);
    for (const id of ["a", "b", "c", "e"]) assert.ok((c[id] ?? 0) > 120, `${id} starved: ${JSON.stringify(c)}`);
  });
}

test("least_request: traffic moves away from an instance with many requests in flight, and back when they end", async () => {
  const host = await gateway({ table: table(1, [{ id: "d", strategy: "least_request", instances: [{ id: "a" }, { id: "b" }, { id: "c" }, { id: "e" }] }]) });
  // 40 concurrent requests spread over the 4; then every one not on "a" ends: "a" keeps its long ones.
  const burst = Array.from({ length: 40 }, () => open(host, "d"));
  const spread = counts(burst.map((o) => o.pick));
  for (const id of ["a", "b", "c", "e"]) assert.ok((spread[id] ?? 0) >= 8 && (spread[id] ?? 0) <= 12, `P2C spreads a burst: ${JSON.stringify(spread)}`);
  const onA = burst.filter((o) => o.pick === "a");
  for (const o of burst) if (o.pick !== "a") o.s.finish();
  const busy = sequential(host, "d", 300);
  assert.equal(busy.a ?? 0, 0, `a (most in flight) never picked: ${JSON.stringify(busy)}`);
  for (const o of onA) o.s.finish();
  const idle = sequential(host, "d", 400);
  assert.ok((idle.a ?? 0) > 60, `a back once its streams ended: ${JSON.stringify(idle)}`);
});

test("least_request: under sustained load in-flight counts follow the weights (fewest in flight per unit of weight)", async () => {
  const host = await gateway({ table: table(1, [{ id: "d", strategy: "least_request", instances: [{ id: "big", weight: 3 }, { id: "small", weight: 1 }] }]) });
  const open40 = Array.from({ length: 40 }, () => open(host, "d"));
  const c = counts(open40.map((o) => o.pick));
  // 3:1 → about 30 / 10 in flight.
  assert.ok((c.big ?? 0) >= 26 && (c.big ?? 0) <= 33, JSON.stringify(c));
  for (const o of open40) o.s.finish();
});

test("latency: traffic moves away from a slow instance", async () => {
  const host = await gateway({ table: table(1, [{ id: "d", strategy: "latency", instances: [{ id: "fast1" }, { id: "slow" }, { id: "fast2" }] }]) });
  const picks: (string | undefined)[] = [];
  for (let i = 0; i < 600; i++) {
    const r = send(host, "d", (pick) => ({ status: 200, latencyMs: pick === "slow" ? 800 : 20 }));
    if (i >= 20) picks.push(r.instance);
  }
  const c = counts(picks);
  // The slow one is retried only as its EWMA decays (τ = 10 s) below the others'.
  assert.ok((c.slow ?? 0) < 30, JSON.stringify(c));
  assert.ok((c.fast1 ?? 0) > 200 && (c.fast2 ?? 0) > 200, JSON.stringify(c));
});

test("latency: a new instance starts on probation (the deployment's slowest), it is not flooded", async () => {
  const spec = (v: number, ids: string[]) => table(v, [{ id: "d", strategy: "latency", instances: ids.map((id) => ({ id, address: `10.77.0.${id.charCodeAt(0)}:8000` })) }]);
  const host = await gateway({ config: { telemetry_interval_ms: 0 }, table: spec(1, ["a", "b"]) });
  for (let i = 0; i < 50; i++) send(host, "d", { status: 200, latencyMs: 100 });
  deliver(host, spec(2, ["a", "b", "n"]));
  host.advance(1000);
  // 30 concurrent requests: with a cost of 0 the newcomer would take all of them.
  const burst = Array.from({ length: 30 }, () => open(host, "d"));
  const c = counts(burst.map((o) => o.pick));
  assert.ok((c.n ?? 0) >= 3 && (c.n ?? 0) <= 15, `newcomer got a share, not the flood: ${JSON.stringify(c)}`);
  for (const o of burst) o.s.finish();
});

test("contract fixtures per strategy: the wasm routes them to eligible instances only", async () => {
  const cases: [string, string, string[]][] = [
    ["strategy-least-request.json", "llama3", ["a", "b"]],
    ["strategy-latency.json", "qwen", ["eu-1"]],
  ];
  for (const [file, model, eligible] of cases) {
    const host = await gateway({ table: readFileSync(FIXTURES + file, "utf8") });
    const c = sequential(host, model, 200);
    assert.deepEqual(Object.keys(c).sort(), eligible, `${file}: ${JSON.stringify(c)}`);
  }
});
