// Active health checks: an instance failing its probes is ejected (still in the table, state ejected),
// and re-added after enough successful probes; one replica probes a deployment at a time.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import { registerModel, startReplica, table, waitFor, withRedis, type Replica } from "./harness.js";

const stateOf = async (c: Replica, id: string) => (await table(c.api)).deployments.find((d: { id: string }) => d.id === "hc").instances.find((i: { id: string }) => i.id === id)?.state;

describe("prober", () => {
  let redis: RedisServer;
  let a: Replica;
  let b: Replica;
  let m1: MockOpenAI;
  let m2: MockOpenAI;

  before(async () => {
    redis = await withRedis();
    m1 = await startMockOpenAI({ model: "hc-model" });
    m2 = await startMockOpenAI({ model: "hc-model" });
    a = await startReplica(redis.url, { REPLICA_ID: "probe-a" });
    b = await startReplica(redis.url, { REPLICA_ID: "probe-b" });
    await registerModel(a.api, "hc-model");
    const r = await a.api("POST", "/v1/deployments", {
      body: { id: "hc", model: "hc-model", health_check: { interval_seconds: 0.05, timeout_seconds: 0.3, unhealthy_threshold: 3, healthy_threshold: 2 }, instances: [{ id: "i1", url: m1.url }, { id: "i2", url: m2.url }] },
    });
    assert.equal(r.status, 201, r.text);
  });
  after(async () => {
    await a.stop();
    await b.stop();
    await m1.close();
    await m2.close();
    await redis.close();
  });

  test("failing probes eject the instance; passing ones re-add it", async () => {
    const before = m1.requests.filter((q) => q.path === "/health").length;
    m1.set({ mode: "unhealthy" });
    const t0 = performance.now();
    await waitFor(async () => (await stateOf(a, "i1")) === "ejected", 5000, "i1 ejected");
    console.log(`# unhealthy → ejected in the table after ${(performance.now() - t0).toFixed(0)} ms (3 probes at 50 ms)`);
    assert.equal(await stateOf(a, "i2"), "active");
    assert.ok(m1.requests.filter((q) => q.path === "/health").length - before >= 3);
    // Both replicas serve the verdict.
    await waitFor(async () => (await stateOf(b, "i1")) === "ejected", 2000, "b sees it");
    m1.set({ mode: "ok" });
    await waitFor(async () => (await stateOf(a, "i1")) === "active", 5000, "i1 re-added");
    const d = (await a.api("GET", "/v1/deployments/hc")).body;
    assert.deepEqual(d.instances.map((i: { state: string }) => i.state), ["active", "active"]);
  });

  test("one replica probes a deployment at a time (lease)", async () => {
    const before = m2.requests.filter((q) => q.path === "/health").length;
    const t0 = Date.now();
    await waitFor(() => m2.requests.filter((q) => q.path === "/health").length - before >= 10, 5000, "10 probes");
    const elapsed = Date.now() - t0;
    const probes = m2.requests.filter((q) => q.path === "/health").length - before;
    // At a 50 ms interval one prober makes ~elapsed/50 probes; two would make twice as many.
    assert.ok(probes <= elapsed / 50 + 3, `${probes} probes in ${elapsed} ms`);
  });

  test("a connection refused counts as a failed probe", async () => {
    await m2.stop();
    await waitFor(async () => (await stateOf(a, "i2")) === "ejected", 5000, "i2 ejected");
    await m2.start();
    await waitFor(async () => (await stateOf(a, "i2")) === "active", 5000, "i2 back");
  });
});
