// Redis stopped and restarted under the service: writes 503 while down, the table is still served,
// recovery (reconnect + resubscribe) is automatic, nothing acknowledged is lost.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { RedisServer } from "../support/redis.js";
import { PLUGIN, registerModel, startReplica, table, waitFor, withRedis, type Replica } from "./harness.js";

describe("Redis outage", () => {
  let redis: RedisServer;
  let a: Replica;
  let b: Replica;

  before(async () => {
    redis = await withRedis({ appendonly: true });
    a = await startReplica(redis.url, { REPLICA_ID: "outage-a" });
    b = await startReplica(redis.url, { REPLICA_ID: "outage-b", TABLE_REFRESH_MS: "600000" });
    await registerModel(a.api, "durable");
    assert.equal((await a.api("POST", "/v1/deployments", { body: { id: "durable", model: "durable" } })).status, 201);
  });
  after(async () => {
    await a.stop();
    await b.stop();
    await redis.close();
  });

  test("while Redis is down: writes 503 with a clear JSON error, the last table is still served", async () => {
    const before = await table(a.api);
    await redis.stop();
    const w = await a.api("POST", "/v1/models", { body: { name: "during-outage" } });
    assert.equal(w.status, 503);
    assert.equal(w.body.error.code, "store_unavailable");
    assert.match(w.body.error.message, /unavailable/);
    assert.ok(w.body.error.request_id);
    assert.equal(w.headers.get("retry-after"), "1");
    assert.ok(w.ms < 1500, `503 took ${w.ms} ms`);
    assert.equal((await a.api("DELETE", "/v1/deployments/durable")).status, 503);
    assert.equal((await a.api("GET", "/v1/deployments")).status, 503);
    const t = await a.api("GET", "/v1/routing-table", { token: PLUGIN });
    assert.equal(t.status, 200);
    assert.deepEqual(t.body, before);
    assert.equal((await a.api("GET", "/v1/routing-table", { token: PLUGIN, headers: { "if-none-match": `"${before.version}"` } })).status, 304);
    assert.equal((await a.api("GET", "/healthz", { token: null })).status, 503);
  });

  test("after Redis returns: writes work again, data is intact, long-polls in other replicas wake (resubscribed)", async () => {
    await redis.start();
    await waitFor(async () => (await a.api("GET", "/healthz", { token: null })).status === 200, 10_000, "a reconnected");
    await waitFor(async () => (await b.api("GET", "/healthz", { token: null })).status === 200, 10_000, "b reconnected");
    assert.equal((await a.api("GET", "/v1/deployments/durable")).status, 200, "acknowledged data survived the restart");
    const v = (await table(b.api)).version;
    const poll = b.api("GET", "/v1/routing-table?wait=10", { token: PLUGIN, headers: { "if-none-match": `"${v}"` } });
    await waitFor(() => b.control.cache.waiting === 1, 2000, "b waiting");
    // The subscriber may still be resubscribing: retry the write until the long-poll answers.
    const t0 = performance.now();
    assert.equal((await a.api("DELETE", "/v1/deployments/durable")).status, 204);
    const r = await poll;
    assert.equal(r.status, 200);
    assert.ok(r.body.version > v);
    assert.ok(!r.body.deployments.some((d: { id: string }) => d.id === "durable"));
    console.log(`# after Redis restart: write on A → long-poll on B in ${(performance.now() - t0).toFixed(1)} ms`);
  });

  test("a control restarted against the persisted Redis serves the same state", async () => {
    const before = await table(a.api);
    await a.stop();
    a = await startReplica(redis.url, { REPLICA_ID: "outage-a2" });
    assert.deepEqual(await table(a.api), before);
  });
});
