// WorkerVm.contexts (envoy/local/host/context-table.ts): a VM's contexts by id without a Map, so a stream
// added and deleted per request leaves nothing behind for V8's young-generation GC to keep alive (issue 19,
// envoy/local/README.md "Cost per request"). Same answers as a Map; churn never replaces its array.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ContextTable } from "../../envoy/local/host/context-table.js";
import { ProxyWasmHost } from "../../envoy/local/host/index.js";
import { prng } from "../support/prng.js";
import { buildFixture } from "./build-fixture.js";

test("ContextTable answers as a Map under random sets and deletes (sequential ids, long-lived roots)", () => {
  const rand = prng(19);
  const t = new ContextTable<{ id: number }>(16);
  const m = new Map<number, { id: number }>();
  let next = 1;
  for (let r = 0; r < 3; r++) {
    const root = { id: next++ };
    t.set(root);
    m.set(root.id, root);
  }
  for (let i = 0; i < 20_000; i++) {
    if (rand() < 0.52 || m.size < 4) {
      const c = { id: next++ };
      t.set(c);
      m.set(c.id, c);
    } else {
      const ids = [...m.keys()];
      const id = ids[Math.floor(rand() * ids.length)]!;
      assert.equal(t.delete(id), m.delete(id));
    }
    if (i % 97 === 0) {
      assert.equal(t.size, m.size);
      for (const [id, c] of m) assert.equal(t.get(id), c);
      assert.equal(t.get(next), undefined);
      assert.equal(t.delete(next + 5), false);
      assert.equal(t.values().length, m.size, "no slot holds a deleted context");
    }
  }
  // Replacing an id keeps one entry.
  const first = [...m.values()][0]!;
  const again = { id: first.id };
  t.set(again);
  assert.equal(t.get(first.id), again);
  assert.equal(t.size, m.size);
});

test("churn with bounded concurrency never grows or replaces the table's array", () => {
  const t = new ContextTable<{ id: number }>(64);
  t.set({ id: 1 }); // a root for the VM's life
  const cap = t.capacity;
  const arrayOf = (x: ContextTable<{ id: number }>) => (x as unknown as { slots: unknown[] }).slots;
  const slots = arrayOf(t);
  const live: number[] = [];
  for (let id = 2; id < 100_000; id++) {
    t.set({ id });
    live.push(id);
    // 0..30 in flight, varying (a Map would be rebuilt each time the count crosses a threshold).
    while (live.length > (id % 61 < 30 ? 30 : 1)) t.delete(live.shift()!);
  }
  assert.equal(t.capacity, cap);
  assert.equal(arrayOf(t), slots, "the same array");
  for (const id of live) t.delete(id);
  assert.equal(t.size, 1);
  assert.deepEqual(t.values(), [{ id: 1 }]);
});

test("a VM's streams leave its context table when they end; concurrent streams grow it once, churn does not", async () => {
  const host = await ProxyWasmHost.start({ wasm: await buildFixture("noop"), recording: false });
  const w = host.worker(0);
  const base = w.contexts.size;
  const get: [string, string][] = [[":method", "GET"], [":path", "/"], [":authority", "gw"], [":scheme", "http"]];
  const open = Array.from({ length: 100 }, () => {
    const s = w.stream();
    s.requestHeaders(get, true);
    return s;
  });
  assert.equal(w.contexts.size, base + 100);
  for (const s of open) assert.equal(w.contexts.get(s.id), s);
  for (const s of open) s.close();
  assert.equal(w.contexts.size, base);
  const cap = w.contexts.capacity;
  for (let i = 0; i < 5_000; i++) {
    const a = w.stream();
    const b = w.stream();
    a.requestHeaders(get, true);
    b.requestHeaders(get, true);
    a.close();
    b.close();
  }
  assert.equal(w.contexts.size, base, "no stream left behind");
  assert.equal(w.contexts.capacity, cap, "churn did not grow the table");
  host.shutdown();
});
