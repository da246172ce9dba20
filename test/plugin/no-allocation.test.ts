// Issue 18's "no allocation per request", per strategy: the plugin built with the stub runtime (a bump
// allocator that never frees GC objects) serves thousands of routed requests — picked, forwarded,
// answered, logged (in-flight −1, latency samples) — and its linear memory does not grow. A strategy that
// allocated even 16 bytes per request would grow it by a 64 KiB page within ~4,000 requests.
import { test } from "node:test";
import assert from "node:assert/strict";
import { deliver, gateway, picked, request, stubPluginWasm, table, type DeploymentSpec, type Host, type InstanceSpec } from "./support.js";

const WARM = 1_000;
const MEASURED = 8_000;

function instances(more: (i: number) => Partial<InstanceSpec> = () => ({})): InstanceSpec[] {
  return ["a", "b", "c", "e"].map((id, i) => ({ id, weight: 1 + i, ...more(i) }));
}

/** Fresh for the whole test (the host's clock starts near now; an hour-long interval keeps it fresh). */
const load = (score: number, capacity?: number) => ({ score, at_ms: Date.now(), interval_ms: 3_600_000, ...(capacity !== undefined ? { capacity } : {}) });

const CASES: { name: string; dep: Omit<DeploymentSpec, "id">; body?: (k: number) => string; headers?: (k: number) => [string, string][] }[] = [
  { name: "round_robin", dep: { strategy: "round_robin", instances: instances() } },
  { name: "weighted_round_robin", dep: { strategy: "weighted_round_robin", instances: instances() } },
  { name: "failover (two tiers)", dep: { strategy: "failover", instances: instances((i) => ({ priority: i < 2 ? 0 : 1 })) } },
  { name: "least_request", dep: { strategy: "least_request", instances: instances() } },
  { name: "latency", dep: { strategy: "latency", instances: instances() } },
  // Equal costs when idle (weight 1, same capacity and score), so sequential picks spread over ties.
  { name: "load_aware, scores and capacities", dep: { strategy: "load_aware", instances: instances(() => ({ weight: 1, load: load(0.5, 8) })) } },
  { name: "load_aware, scores only", dep: { strategy: "load_aware", instances: instances((i) => ({ load: load(i * 0.5) })) } },
  {
    name: "affinity on a header (least_request base)",
    dep: { strategy: "least_request", affinity: { source: "header", header: "x-session-id" }, instances: instances() },
    headers: (k) => [["x-session-id", `session-${k % 97}`]],
  },
  {
    name: "affinity on the body's user, routed by the body's model",
    dep: { strategy: "round_robin", affinity: { source: "user" }, instances: instances() },
    body: (k) => JSON.stringify({ model: "d", user: `user-${k % 89}`, messages: [{ role: "user", content: "hi" }] }),
  },
];

async function memoryGrowth(host: Host, send: (k: number) => void): Promise<{ before: number; after: number }> {
  for (let k = 0; k < WARM; k++) send(k);
  const mem = host.worker(0).memory;
  const before = mem.buffer.byteLength;
  for (let k = WARM; k < WARM + MEASURED; k++) send(k);
  return { before, after: mem.buffer.byteLength };
}

test("no GC allocation per routed request, for every strategy (stub-runtime build: linear memory does not grow)", async () => {
  const wasm = await stubPluginWasm();
  for (const c of CASES) {
    const host = await gateway({ wasm, table: table(1, [{ id: "d", ...c.dep }]) });
    const seen = new Set<string>();
    const { before, after } = await memoryGrowth(host, (k) => {
      const r = request(host, c.body ? { body: c.body(k) } : { model: "d", ...(c.headers ? { headers: c.headers(k) } : {}) });
      const p = picked(r);
      assert.ok(p, `${c.name}: request ${k} was routed`);
      seen.add(p);
    });
    assert.ok(seen.size >= 2, `${c.name}: picks spread (${[...seen].join(",")})`);
    assert.equal(after, before, `${c.name}: memory grew by ${after - before} bytes over ${MEASURED} requests`);
    assert.equal(host.worker(0).failure, null);
  }
});

test("the check can fail: what does allocate (compiling a table) grows the stub build's memory", async () => {
  const wasm = await stubPluginWasm();
  const host = await gateway({ wasm, table: table(1, [{ id: "d", instances: instances() }]) });
  let version = 1;
  const { before, after } = await memoryGrowth(host, (k) => {
    if (k % 100 === 0) deliver(host, table(++version, [{ id: "d", instances: instances() }]));
    request(host, { model: "d" });
  });
  assert.ok(after > before, `memory grew (${before} → ${after})`);
});
