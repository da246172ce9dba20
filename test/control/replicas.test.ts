// Two control replicas sharing one Redis: each sees the other's writes and wakes the other's long-polls;
// background work left by one is finished by the other.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import { PLUGIN, registerModel, startReplica, table, waitFor, withRedis, type Replica } from "./harness.js";

describe("two replicas, one Redis", () => {
  let redis: RedisServer;
  let a: Replica;
  let b: Replica;
  let mock: MockOpenAI;

  before(async () => {
    redis = await withRedis();
    mock = await startMockOpenAI({ model: "shared" });
    a = await startReplica(redis.url, { REPLICA_ID: "replica-a", CONNECTIVITY_TIMEOUT_MS: "2000" });
    b = await startReplica(redis.url, { REPLICA_ID: "replica-b", TABLE_REFRESH_MS: "600000", CONNECTIVITY_TIMEOUT_MS: "2000" });
  });
  after(async () => {
    await a.stop();
    await b.stop();
    await mock.close();
    await redis.close();
  });

  test("a write through A is readable through B", async () => {
    await registerModel(a.api, "shared");
    const r = await a.api("POST", "/v1/deployments", { body: { id: "shared", model: "shared", instances: [{ id: "i1", url: mock.url }] } });
    assert.equal(r.status, 201);
    const got = await b.api("GET", "/v1/deployments/shared");
    assert.equal(got.status, 200);
    assert.equal(got.headers.get("etag"), r.headers.get("etag"));
    // B's ETag works for a conditional write through A.
    assert.equal((await a.api("PATCH", "/v1/deployments/shared", { body: { strategy: "failover" }, headers: { "if-match": got.headers.get("etag")! } })).status, 200);
    assert.equal((await b.api("PATCH", "/v1/deployments/shared", { body: { strategy: "round_robin" }, headers: { "if-match": got.headers.get("etag")! } })).status, 412);
  });

  test("a change through A wakes a long-poll waiting on B (pub/sub; B's periodic refresh is off)", async () => {
    await waitFor(async () => (await table(b.api)).version === (await table(a.api)).version, 2000, "replicas agree");
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      const v = (await table(b.api)).version;
      const poll = b.api("GET", "/v1/routing-table?wait=30", { token: PLUGIN, headers: { "if-none-match": `"${v}"` } });
      await waitFor(() => b.control.cache.waiting === 1, 2000, "B waiting");
      const t0 = performance.now();
      const w = await a.api("PATCH", "/v1/deployments/shared/instances/i1", { body: { weight: 10 + i } });
      assert.equal(w.status, 200);
      const r = await poll;
      samples.push(performance.now() - t0);
      assert.equal(r.status, 200);
      assert.ok(r.body.version > v);
      assert.equal(r.body.deployments[0].instances[0].weight, 10 + i);
    }
    console.log(`# write on A → long-poll on B: ${samples.map((s) => s.toFixed(1)).join(", ")} ms`);
    assert.ok(Math.max(...samples) < 500, `max ${Math.max(...samples)} ms`);
  });

  test("both replicas serve the same table at the same version", async () => {
    await waitFor(async () => (await table(a.api)).version === (await table(b.api)).version, 2000, "same version");
    assert.deepEqual(await table(a.api), await table(b.api));
  });

  test("pending work started by a replica that stops is finished by the other", async () => {
    const slow = await startMockOpenAI({ model: "slow-shared", latencyMs: 150 });
    const c = await startReplica(redis.url, { REPLICA_ID: "replica-c", CREATE_WAIT_MS: "50", CONNECTIVITY_TIMEOUT_MS: "2000" });
    try {
      await registerModel(c.api, "slow-shared");
      // allow_unreachable: the create answers at the bound (202) instead of waiting for the verdict.
      const r = await c.api("POST", "/v1/deployments", { body: { id: "slow", model: "slow-shared", allow_unreachable: true, instances: [{ id: "s1", url: slow.url }] } });
      assert.equal(r.status, 202);
      assert.equal(r.body.instances[0].state, "pending");
      await c.stop(); // aborts its test and releases its lease
      await waitFor(async () => (await b.api("GET", "/v1/deployments/slow")).body.instances[0].state === "active", 5000, "finished by another replica");
      const tested = () => [...a.logs, ...b.logs].filter((l) => l.includes('"connectivity test"') && l.includes('"deployment":"slow"'));
      await waitFor(() => tested().length > 0, 2000, "the survivor's log line");
      assert.equal(tested().length, 1, "one surviving replica ran the test");
      assert.ok(!c.logs.some((l) => l.includes('"connectivity test"') && l.includes('"deployment":"slow"')), "the stopped replica recorded nothing");
    } finally {
      await c.stop();
      await slow.close();
    }
  });
});
