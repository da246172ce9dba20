// Scale up / down; deletes leave the routing table at once and wake waiting long-polls (measured).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import { PLUGIN, registerModel, startReplica, table, withRedis, type Replica } from "./harness.js";

const ids = (t: any, dep: string): string[] => (t.deployments.find((d: { id: string }) => d.id === dep)?.instances ?? []).map((i: { id: string }) => i.id).sort();

describe("scale and delete", () => {
  let redis: RedisServer;
  let c: Replica;
  let m1: MockOpenAI;
  let m2: MockOpenAI;
  let m3: MockOpenAI;

  before(async () => {
    redis = await withRedis();
    [m1, m2, m3] = (await Promise.all([1, 2, 3].map(() => startMockOpenAI({ model: "scale-model" })))) as [MockOpenAI, MockOpenAI, MockOpenAI];
    c = await startReplica(redis.url);
    await registerModel(c.api, "scale-model");
    const r = await c.api("POST", "/v1/deployments", { body: { id: "s", model: "scale-model", instances: [{ id: "i1", url: m1.url }] } });
    assert.equal(r.status, 201, r.text);
  });
  after(async () => {
    await c.stop();
    for (const m of [m1, m2, m3]) await m.close();
    await redis.close();
  });

  test("scale up: a new instance is tested, then joins the table", async () => {
    const r = await c.api("POST", "/v1/deployments/s/instances", { body: { id: "i2", url: m2.url, weight: 2, priority: 1, region: "eu" } });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.headers.get("location"), "/v1/deployments/s/instances/i2");
    assert.equal(r.body.state, "active");
    assert.equal(r.body.last_check.ok, true);
    assert.deepEqual(ids(await table(c.api), "s"), ["i1", "i2"]);
    const inst = (await table(c.api)).deployments[0].instances.find((i: { id: string }) => i.id === "i2");
    assert.deepEqual({ weight: inst.weight, priority: inst.priority, region: inst.region }, { weight: 2, priority: 1, region: "eu" });
  });

  test("scale up with a failing instance: refused (422, nothing stored), or with allow_unreachable recorded as unreachable, not in the table", async () => {
    m3.set({ mode: "error_5xx" });
    const refused = await c.api("POST", "/v1/deployments/s/instances", { body: { id: "i3", url: m3.url } });
    assert.equal(refused.status, 422, refused.text);
    assert.equal(refused.body.error.code, "connectivity_failed");
    assert.equal((await c.api("GET", "/v1/deployments/s/instances/i3")).status, 404);
    const r = await c.api("POST", "/v1/deployments/s/instances", { body: { id: "i3", url: m3.url, allow_unreachable: true } });
    assert.equal(r.status, 201);
    assert.equal(r.body.state, "unreachable");
    assert.equal(r.body.last_check.error.code, "http_error");
    assert.deepEqual(ids(await table(c.api), "s"), ["i1", "i2"]);
  });

  test("instance changes (weight) reach the table", async () => {
    const r = await c.api("PATCH", "/v1/deployments/s/instances/i1", { body: { weight: 7 } });
    assert.equal(r.status, 200);
    const inst = (await table(c.api)).deployments[0].instances.find((i: { id: string }) => i.id === "i1");
    assert.equal(inst.weight, 7);
  });

  test("scale down: the instance leaves the table at once; a waiting long-poll wakes", async () => {
    const v = (await table(c.api)).version;
    const poll = c.api("GET", "/v1/routing-table?wait=30", { token: PLUGIN, headers: { "if-none-match": `"${v}"` } });
    await waitForWaiters(c, 1);
    const t0 = performance.now();
    const del = await c.api("DELETE", "/v1/deployments/s/instances/i2");
    assert.equal(del.status, 204);
    const r = await poll;
    const latency = performance.now() - t0;
    assert.equal(r.status, 200);
    assert.ok(r.body.version > v);
    assert.deepEqual(ids(r.body, "s"), ["i1"]);
    assert.ok(latency < 500, `scale-down → long-poll took ${latency} ms`);
    console.log(`# scale-down → long-poll answered in ${latency.toFixed(1)} ms`);
  });

  test("delete a deployment: a waiting long-poll sees it in well under a second", async () => {
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      const id = `tmp-${i}`;
      await registerModel(c.api, `tmp-model-${i}`);
      assert.equal((await c.api("POST", "/v1/deployments", { body: { id, model: `tmp-model-${i}`, instances: [] } })).status, 201);
      const v = (await table(c.api)).version;
      const poll = c.api("GET", "/v1/routing-table?wait=30", { token: PLUGIN, headers: { "if-none-match": `"${v}"` } });
      await waitForWaiters(c, 1);
      const t0 = performance.now();
      const del = await c.api("DELETE", `/v1/deployments/${id}`);
      assert.equal(del.status, 204);
      const r = await poll;
      samples.push(performance.now() - t0);
      assert.equal(r.status, 200);
      assert.ok(!r.body.deployments.some((d: { id: string }) => d.id === id));
      assert.equal(r.body.models[`tmp-model-${i}`], undefined);
    }
    const max = Math.max(...samples);
    console.log(`# delete → long-poll: ${samples.map((s) => s.toFixed(1)).join(", ")} ms (max ${max.toFixed(1)})`);
    assert.ok(max < 500, `delete → long-poll max ${max} ms`);
  });
});

async function waitForWaiters(c: Replica, n: number): Promise<void> {
  const deadline = Date.now() + 2000;
  while (c.control.cache.waiting < n) {
    if (Date.now() > deadline) throw new Error("long-poll never started waiting");
    await new Promise((r) => setImmediate(r));
  }
}
