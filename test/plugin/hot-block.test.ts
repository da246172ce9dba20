// The request path goes from the model's slot in the model map straight to the deployment's hot block
// (plugin/table/hot_block.ts, plugin/table/bytes_map.ts): keys inline in the slot, the block's pointer
// in the slot's aux word, request and pick counts kept in the block until a tick. These tests pin what
// that must not change: long names and names that differ late, every alias following a rebuild, and
// exact request/pick counters across rebuilds between two ticks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { gateway, metric, picked, request, table } from "./support.js";
import { send } from "./upstream.js";

test("model names longer than the inline key part, differing only after it, each find their deployment", async () => {
  const base = "meta-llama/Llama-3.1-8B-Instruct-with-a-long-suffix-".padEnd(60, "x"); // > 44 bytes
  const names = [base + "a", base + "b", base.slice(0, 44), base.slice(0, 43) + "y", "m"];
  const host = await gateway({
    config: { unknown_model: "reject" },
    table: table(1, names.map((_, i) => ({ id: `d${i}`, instances: [{ id: `i${i}` }] })), Object.fromEntries(names.map((n, i) => [n, `d${i}`]))),
  });
  names.forEach((n, i) => assert.equal(picked(request(host, { model: n })), `i${i}`, n));
  for (const unknown of [base, base + "c", base.slice(0, 45), base.slice(0, 42), "n", base.slice(0, 43) + "z"]) {
    assert.equal(request(host, { model: unknown }).localReply?.status, 404, unknown);
  }
  host.shutdown();
});

test("every alias of a deployment routes from its rebuilt block after an ejection and after the return", async () => {
  const host = await gateway({
    config: { telemetry_interval_ms: 0, passive_failures: 1, passive_cooldown_ms: 10_000 },
    table: table(1, [{ id: "d", instances: [{ id: "a" }, { id: "b" }] }], { alias1: "d", alias2: "d", alias3: "d" }),
  });
  // a fails once through alias1 → ejected: every alias now picks b only.
  send(host, "alias1", (pick) => ({ status: pick === "a" ? 503 : 200 }));
  if (metric(host, "gateway.passive.ejections") === 0) send(host, "alias1", (pick) => ({ status: pick === "a" ? 503 : 200 }));
  assert.equal(metric(host, "gateway.passive.ejections"), 1);
  for (const alias of ["alias1", "alias2", "alias3"]) {
    for (let i = 0; i < 3; i++) assert.equal(send(host, alias, { status: 200 }).instance, "b", alias);
  }
  // After the cooldown the first request (any alias) brings a back, for all aliases.
  host.advance(10_000);
  const seen = new Set<string | undefined>();
  for (const alias of ["alias2", "alias3", "alias1", "alias2"]) seen.add(send(host, alias, { status: 200 }).instance);
  assert.deepEqual([...seen].sort(), ["a", "b"]);
  host.shutdown();
});

test("request and pick counters stay exact when the hot block is rebuilt between ticks", async () => {
  const host = await gateway({
    config: { telemetry_interval_ms: 0, passive_failures: 2, passive_cooldown_ms: 600_000, poll_interval_ms: 60_000 },
    table: table(1, [{ id: "d", instances: [{ id: "a" }, { id: "b" }, { id: "c" }] }], { d: "d", other: "d" }),
  });
  host.advance(60_000); // a tick: counters start from a clean flush
  const picks: Record<string, number> = {};
  let routed = 0;
  const go = (model: string, fail: string | null) => {
    const r = send(host, model, (pick) => ({ status: pick === fail ? 503 : 200 }));
    routed++;
    picks[r.instance!] = (picks[r.instance!] ?? 0) + 1;
  };
  // Requests while a fails until it is ejected (two failures: a rebuild, a new block), more requests
  // through both names while c fails until it is ejected (another rebuild), more requests — all
  // before the next tick.
  for (let i = 0; i < 20 && metric(host, "gateway.passive.ejections") < 1; i++) go(i % 2 ? "d" : "other", "a");
  assert.equal(metric(host, "gateway.passive.ejections"), 1);
  for (let i = 0; i < 3; i++) go(i % 2 ? "d" : "other", null);
  for (let i = 0; i < 20 && metric(host, "gateway.passive.ejections") < 2; i++) go(i % 2 ? "d" : "other", "c");
  assert.equal(metric(host, "gateway.passive.ejections"), 2);
  for (let i = 0; i < 5; i++) go("other", null);
  assert.equal(picks["b"]! >= 5, true);
  assert.equal(metric(host, "gateway.deployment.d.requests"), 0, "batched until the tick");
  host.advance(60_000);
  assert.equal(metric(host, "gateway.deployment.d.requests"), routed);
  for (const id of ["a", "b", "c"]) assert.equal(metric(host, `gateway.deployment.d.instance.${id}.picks`), picks[id] ?? 0, id);
  host.advance(60_000);
  assert.equal(metric(host, "gateway.deployment.d.requests"), routed, "nothing counted twice on the next tick");
  host.shutdown();
});
