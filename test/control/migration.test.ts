// Rolling endpoint migration: success, failures with rollback, resume after a control restart.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import { registerModel, startReplica, table, VIEWER, waitFor, withRedis, type Replica } from "./harness.js";

const inTable = async (c: Replica, dep: string) =>
  Object.fromEntries(((await table(c.api)).deployments.find((d: { id: string }) => d.id === dep)?.instances ?? []).map((i: { id: string; state: string; address: string }) => [i.id, i]));

describe("rolling migration", () => {
  let redis: RedisServer;
  let c: Replica;
  const mocks: MockOpenAI[] = [];
  const mock = async (o: Parameters<typeof startMockOpenAI>[0]) => {
    const m = await startMockOpenAI(o);
    mocks.push(m);
    return m;
  };

  before(async () => {
    redis = await withRedis({ appendonly: true });
    c = await startReplica(redis.url);
    await registerModel(c.api, "mig-model");
  });
  after(async () => {
    await c.stop();
    for (const m of mocks) await m.close();
    await redis.close();
  });

  const deploy = async (id: string, old: MockOpenAI, hc: Record<string, unknown> = {}) => {
    await registerModel(c.api, `${id}-model`, { served_name: "mig-model" });
    const r = await c.api("POST", "/v1/deployments", {
      body: { id, model: `${id}-model`, health_check: { interval_seconds: 0.05, timeout_seconds: 0.3, healthy_threshold: 3, unhealthy_threshold: 3, ...hc }, instances: [{ id: "old", url: old.url, weight: 5, region: "r1", api_key: "old-key" }] },
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.body.instances[0].state, "active");
  };

  test("success: new endpoint tested, k probes pass, takes traffic while the old drains, old removed", async () => {
    const old = await mock({ model: "mig-model", apiKey: "old-key" });
    const neu = await mock({ model: "mig-model", apiKey: "old-key" });
    await deploy("ok", old);
    const start = await c.api("POST", "/v1/deployments/ok/migrations", { body: { instance_id: "old", url: neu.url, new_instance_id: "new", drain_timeout_seconds: 0.5 } });
    assert.equal(start.status, 202, start.text);
    assert.equal(start.body.phase, "testing");
    const loc = start.headers.get("location")!;

    // Switch: new active, old draining (still in the table, not picked), both visible at once.
    await waitFor(async () => (await c.api("GET", loc)).body.phase === "draining", 5000, "draining");
    await waitFor(async () => (await inTable(c, "ok")).new?.state === "active", 2000, "new in the table");
    const during = await inTable(c, "ok");
    assert.equal(during.new?.state, "active");
    assert.equal(during.old?.state, "draining");
    assert.equal(during.new.weight, 5, "settings carried over");
    const progress = (await c.api("GET", loc)).body;
    assert.ok(progress.consecutive_successes >= 3);
    assert.ok(progress.probes >= 3);
    assert.ok(neu.requests.filter((q) => q.path === "/health").length >= 3, "k health probes hit the new endpoint");
    assert.ok(neu.requests.some((q) => q.headers.authorization === "Bearer old-key"), "the key was inherited");

    await waitFor(async () => (await c.api("GET", loc)).body.phase === "succeeded", 5000, "succeeded");
    await waitFor(async () => Object.keys(await inTable(c, "ok")).length === 1, 2000, "old gone from the table");
    const after = await inTable(c, "ok");
    assert.deepEqual(Object.keys(after), ["new"]);
    const d = (await c.api("GET", "/v1/deployments/ok")).body;
    assert.deepEqual(d.instances.map((i: { id: string }) => i.id), ["new"]);
    const m = d.migrations[0];
    assert.deepEqual(m.history.map((h: { phase: string }) => h.phase), ["testing", "health_checking", "draining", "succeeded"]);
    assert.ok(m.finished_at);
  });

  test("failure at the connectivity test (wrong model): rolled back, old keeps serving", async () => {
    const old = await mock({ model: "mig-model" });
    const wrong = await mock({ model: "mig-model", mode: "wrong_model" });
    await deploy("wrong", old);
    const v0 = (await table(c.api)).version;
    const start = await c.api("POST", "/v1/deployments/wrong/migrations", { body: { instance_id: "old", url: wrong.url } });
    assert.equal(start.status, 202);
    const loc = start.headers.get("location")!;
    await waitFor(async () => (await c.api("GET", loc)).body.phase === "rolled_back", 5000, "rolled back");
    const m = (await c.api("GET", loc)).body;
    assert.equal(m.error.code, "connectivity_failed");
    assert.match(m.error.message, /does not serve/);
    const d = (await c.api("GET", "/v1/deployments/wrong")).body;
    assert.deepEqual(d.instances.map((i: { id: string; state: string }) => [i.id, i.state]), [["old", "active"]]);
    const t = await inTable(c, "wrong");
    assert.deepEqual(Object.keys(t), ["old"]);
    assert.equal(t.old.state, "active");
    // The old instance never left the table: no version in between showed it draining.
    assert.ok((await table(c.api)).version >= v0);
  });

  test("failure at the health checks: rolled back before the switch", async () => {
    const old = await mock({ model: "mig-model" });
    const sick = await mock({ model: "mig-model", mode: "unhealthy" });
    await deploy("sick", old);
    const start = await c.api("POST", "/v1/deployments/sick/migrations", { body: { instance_id: "old", url: sick.url } });
    const loc = start.headers.get("location")!;
    await waitFor(async () => (await c.api("GET", loc)).body.phase === "rolled_back", 5000, "rolled back");
    const m = (await c.api("GET", loc)).body;
    assert.equal(m.error.code, "health_check_failed");
    assert.equal(m.consecutive_failures, 3);
    assert.deepEqual(m.history.map((h: { phase: string }) => h.phase), ["testing", "health_checking", "rolled_back"]);
    assert.deepEqual(Object.keys(await inTable(c, "sick")), ["old"]);
  });

  test("wrong state: a second migration of the same instance, removing a migrating instance → 409", async () => {
    const old = await mock({ model: "mig-model" });
    const slow = await mock({ model: "mig-model", mode: "unhealthy" });
    await deploy("busy", old, { unhealthy_threshold: 100 });
    const start = await c.api("POST", "/v1/deployments/busy/migrations", { body: { instance_id: "old", url: slow.url, new_instance_id: "next" } });
    assert.equal(start.status, 202);
    assert.equal((await c.api("POST", "/v1/deployments/busy/migrations", { body: { instance_id: "old", url: slow.url } })).status, 409);
    assert.equal((await c.api("DELETE", "/v1/deployments/busy/instances/old")).status, 409);
    assert.equal((await c.api("POST", "/v1/deployments/busy/migrations", { body: { instance_id: "nope", url: slow.url } })).status, 404);
    // Deleting the whole deployment is always possible and ends the migration.
    assert.equal((await c.api("DELETE", "/v1/deployments/busy")).status, 204);
  });

  test("before the switch the new endpoint stays out of the table, however often the worker runs", async () => {
    const old = await mock({ model: "mig-model" });
    const neu = await mock({ model: "mig-model" });
    // 30 s between probes: the change waits in health checking (1 of 2 passed) while the worker ticks every 20 ms.
    await deploy("hold", old, { interval_seconds: 30, healthy_threshold: 2 });
    const start = await c.api("POST", "/v1/deployments/hold/migrations", { body: { instance_id: "old", url: neu.url, new_instance_id: "new" } });
    const loc = start.headers.get("location")!;
    await waitFor(async () => (await c.api("GET", loc)).body.consecutive_successes === 1, 5000, "first health check passed");
    const tests = neu.requests.filter((q) => q.path.endsWith("/models")).length;
    // Condition, not a sleep: 10 more worker ticks (each lists the work set with one SMEMBERS).
    const r = new Redis(redis.url);
    const smembers = async () => Number(/cmdstat_smembers:calls=(\d+)/.exec(await r.info("commandstats"))?.[1] ?? 0);
    const ticks = await smembers();
    await waitFor(async () => (await smembers()) >= ticks + 10, 5000, "10 worker ticks");
    r.disconnect();
    const d = (await c.api("GET", "/v1/deployments/hold")).body;
    assert.deepEqual(d.instances.map((i: { id: string; state: string }) => [i.id, i.state]), [["old", "active"], ["new", "pending"]]);
    assert.deepEqual(Object.keys(await inTable(c, "hold")), ["old"], "no traffic to the new endpoint before it is proven healthy");
    assert.equal(neu.requests.filter((q) => q.path.endsWith("/models")).length, tests, "its connectivity test is not run again");
    assert.equal((await c.api("GET", loc)).body.phase, "health_checking");
    assert.equal((await c.api("DELETE", "/v1/deployments/hold")).status, 204);
  });

  test("cancel before the switch: the new instance is removed, the old one never stopped serving", async () => {
    const old = await mock({ model: "mig-model" });
    const slow = await mock({ model: "mig-model", mode: "unhealthy" });
    await deploy("stop", old, { unhealthy_threshold: 100 });
    const start = await c.api("POST", "/v1/deployments/stop/migrations", { body: { instance_id: "old", url: slow.url, new_instance_id: "next", api_key: "next-key" } });
    assert.equal(start.status, 202, start.text);
    const loc = start.headers.get("location")!;
    await waitFor(async () => (await c.api("GET", loc)).body.phase === "health_checking", 5000, "health checking");
    const v0 = (await table(c.api)).version;
    const before = (await c.api("GET", "/v1/deployments/stop")).body;
    assert.deepEqual(before.instances.map((i: { id: string; state: string }) => [i.id, i.state]), [["old", "active"], ["next", "pending"]]);

    assert.equal((await c.api("POST", `${loc}/cancel`, { token: VIEWER })).status, 403, "viewers cannot cancel");
    assert.equal((await c.api("POST", `${loc}/cancel`, { headers: { "if-match": '"0"' } })).status, 412, "a stale If-Match is refused");
    const missing = await c.api("POST", "/v1/deployments/stop/migrations/mig-nope/cancel");
    assert.equal(missing.status, 404);
    assert.match(missing.text, /mig-nope/);

    const r = await c.api("POST", `${loc}/cancel`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.phase, "rolled_back");
    assert.equal(r.body.error.code, "cancelled");
    assert.ok(r.body.finished_at);
    assert.deepEqual(r.body.history.map((h: { phase: string }) => h.phase), ["testing", "health_checking", "rolled_back"]);
    assert.ok(r.headers.get("etag"), "the new revision is returned");
    const d = (await c.api("GET", "/v1/deployments/stop")).body;
    assert.deepEqual(d.instances.map((i: { id: string; state: string }) => [i.id, i.state]), [["old", "active"]]);
    assert.equal(JSON.stringify(d).includes("next-key"), false);
    // The new instance never was in the table, so the table did not change; the old one is still there.
    assert.deepEqual(Object.keys(await inTable(c, "stop")), ["old"]);
    assert.equal((await table(c.api)).version, v0);
    // No more probes go to the cancelled endpoint: while the old one gets 5 more of its own, it gets none.
    // A worker step begun before the cancel may still probe it: count once that step released the deployment's lease.
    const rc = new Redis(redis.url);
    await waitFor(async () => (await rc.exists("gw:lease:deployment:stop")) === 0, 5000, "the worker's lease on stop released");
    rc.disconnect();
    const probes = slow.requests.length;
    const oldProbes = old.requests.length;
    await waitFor(async () => old.requests.length >= oldProbes + 5, 5000, "the old instance probed on");
    assert.equal(slow.requests.length, probes, "the cancelled endpoint is no longer probed");
    const again = await c.api("POST", `${loc}/cancel`);
    assert.equal(again.status, 409, "an ended migration cannot be cancelled");
    assert.match(again.body.error.message, /already ended \(rolled_back\)/);
    // The instance can be migrated again right away.
    const retry = await c.api("POST", "/v1/deployments/stop/migrations", { body: { instance_id: "old", url: slow.url, new_instance_id: "next" } });
    assert.equal(retry.status, 202, retry.text);
    assert.equal((await c.api("DELETE", "/v1/deployments/stop")).status, 204);
  });

  test("cancel after the switch: 409 naming the drain", async () => {
    const old = await mock({ model: "mig-model" });
    const neu = await mock({ model: "mig-model" });
    await deploy("late", old);
    const start = await c.api("POST", "/v1/deployments/late/migrations", { body: { instance_id: "old", url: neu.url, new_instance_id: "new", drain_timeout_seconds: 60 } });
    const loc = start.headers.get("location")!;
    await waitFor(async () => (await c.api("GET", loc)).body.phase === "draining", 5000, "draining");
    const r = await c.api("POST", `${loc}/cancel`);
    assert.equal(r.status, 409, r.text);
    assert.match(r.body.error.message, /has switched: new serves and old drains until/);
    assert.equal((await c.api("GET", loc)).body.phase, "draining", "nothing changed");
    assert.equal((await c.api("DELETE", "/v1/deployments/late")).status, 204);
  });

  test("resumes after a control restart mid-migration", async () => {
    const old = await mock({ model: "mig-model" });
    const neu = await mock({ model: "mig-model", mode: "unhealthy" });
    await deploy("resume", old, { unhealthy_threshold: 100 });
    const start = await c.api("POST", "/v1/deployments/resume/migrations", { body: { instance_id: "old", url: neu.url, new_instance_id: "new", drain_timeout_seconds: 0.3 } });
    const loc = start.headers.get("location")!;
    await waitFor(async () => {
      const m = (await c.api("GET", loc)).body;
      return m.phase === "health_checking" && m.probes >= 2;
    }, 5000, "probing");
    // Control goes away while the new endpoint is being health-checked.
    await c.stop();
    const stopped = (await fetch(`${c.url}/healthz`).catch(() => null)) === null;
    assert.ok(stopped, "the control service is down");
    neu.set({ mode: "ok" });
    c = await startReplica(redis.url);
    await waitFor(async () => (await c.api("GET", loc)).body.phase === "succeeded", 5000, "succeeded after restart");
    await waitFor(async () => Object.keys(await inTable(c, "resume")).length === 1, 2000, "old gone from the table");
    const m = (await c.api("GET", loc)).body;
    assert.deepEqual(m.history.map((h: { phase: string }) => h.phase), ["testing", "health_checking", "draining", "succeeded"]);
    assert.deepEqual(Object.keys(await inTable(c, "resume")), ["new"]);
  });
});
