// Issue 16 items 1 and 4: no accepted write can freeze the routing table, a deployment the contract
// refuses keeps its last good entry while the rest publish (event, metric, /healthz say so), and the
// version a plugin sees never goes backwards — not even after Redis is restored from an older snapshot.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { TABLE_LIMITS } from "../../control/contracts/routing-table.js";
import { createCas } from "../../control/src/redis/cas.js";
import { createKeys } from "../../control/src/redis/keys.js";
import { createDeploymentStore } from "../../control/src/deployments/store.js";
import type { Instance } from "../../control/src/deployments/schemas.js";
import type { RedisServer } from "../support/redis.js";
import { dep } from "./documents.js";
import { PLUGIN, registerModel, startReplica, table, waitFor, withRedis, type Replica } from "./harness.js";

const MAX = TABLE_LIMITS.maxInstancesPerDeployment;
/** A distinct loopback address nobody listens on (connection refused at once). */
const closedUrl = (k: number) => `http://127.0.${1 + Math.floor(k / 250)}.${2 + (k % 250)}:9/v1`;
const instanceIds = (t: any, dep: string): string[] => (t.deployments.find((d: { id: string }) => d.id === dep)?.instances ?? []).map((i: { id: string }) => i.id).sort();

describe("table limits are enforced before a write commits", () => {
  let redis: RedisServer;
  let c: Replica;
  let mock: MockOpenAI;

  before(async () => {
    redis = await withRedis();
    mock = await startMockOpenAI({ model: "capped" });
    // 1,024 tests at once keep the event loop busy: the live instance's test gets a generous timeout.
    c = await startReplica(redis.url, { CONNECTIVITY_TIMEOUT_MS: "5000", CREATE_WAIT_MS: "10000" });
    await registerModel(c.api, "capped");
  });
  after(async () => {
    await c.stop();
    await mock.close();
    await redis.close();
  });

  test(`a migration on a deployment at ${MAX} instances is refused (409): its new instance would be the ${MAX + 1}th`, async () => {
    const instances = [{ id: "live", url: mock.url }, ...Array.from({ length: MAX - 1 }, (_, k) => ({ id: `x${k}`, url: closedUrl(k) }))];
    const r = await c.api("POST", "/v1/deployments", { body: { id: "full", model: "capped", allow_unreachable: true, instances } });
    assert.equal(r.status, 201, r.text.slice(0, 500));
    assert.equal(r.body.instances.length, MAX);
    assert.equal(r.body.instances[0].state, "active", JSON.stringify(r.body.instances[0].last_check));
    const before = await table(c.api);

    const m = await c.api("POST", "/v1/deployments/full/migrations", { body: { instance_id: "live", url: mock.url } });
    assert.equal(m.status, 409, m.text);
    assert.equal(m.body.error.code, "limit_exceeded");
    assert.match(m.body.error.message, new RegExp(`at most ${MAX}`));
    assert.equal((await c.api("GET", "/v1/deployments/full")).body.instances.length, MAX, "nothing was stored");

    // Room again: the same migration is accepted.
    assert.equal((await c.api("DELETE", "/v1/deployments/full/instances/x0")).status, 204);
    const ok = await c.api("POST", "/v1/deployments/full/migrations", { body: { instance_id: "live", url: mock.url } });
    assert.equal(ok.status, 202, ok.text);
    assert.ok((await table(c.api)).version > before.version);
    assert.equal((await c.api("GET", "/healthz", { token: null })).body.status, "ok");
  });
});

describe("model names: at most TABLE_LIMITS.maxModelNames across all models, checked before the commit", () => {
  let redis: RedisServer;
  let c: Replica;
  let direct: Redis;
  const MAX_NAMES = TABLE_LIMITS.maxModelNames;

  before(async () => {
    redis = await withRedis();
    c = await startReplica(redis.url);
    direct = new Redis(redis.url);
    // Names registered before (as if by 495 models): the index the limit is counted on.
    const fill: string[] = [];
    for (let k = 0; k < MAX_NAMES - 10; k++) fill.push(`filler-${k}`, "m-filler");
    for (let k = 0; k < fill.length; k += 20_000) await direct.hset("gw:model-names", ...fill.slice(k, k + 20_000));
  });
  after(async () => {
    direct.disconnect();
    await c.stop();
    await redis.close();
  });

  test("a model whose names would pass the cap is refused (409 limit_exceeded at aliases); one that fits is stored", async () => {
    const aliases = (p: string, n: number) => Array.from({ length: n }, (_, k) => `${p}-${k}`);
    const over = await c.api("POST", "/v1/models", { body: { name: "too-many", aliases: aliases("tm", 10) } });
    assert.equal(over.status, 409, over.text);
    assert.equal(over.body.error.code, "limit_exceeded");
    assert.deepEqual(over.body.error.issues.map((i: { path: string }) => i.path), ["aliases"]);
    assert.equal(await direct.hexists("gw:model-names", "too-many"), 0, "nothing stored");

    const fits = await c.api("POST", "/v1/models", { body: { id: "fits", name: "fits", aliases: aliases("f", 4) } });
    assert.equal(fits.status, 201, fits.text);
    // A rename within the cap (one name out, one in) is fine; adding one more is not.
    assert.equal((await c.api("PATCH", "/v1/models/fits", { body: { aliases: [...aliases("f", 3), "g"] } })).status, 200);
    const grow = await c.api("PATCH", "/v1/models/fits", { body: { aliases: aliases("f", 10) } });
    assert.equal(grow.status, 409, grow.text);
    assert.equal(grow.body.error.code, "limit_exceeded");
  });

  test("concurrent creates at the cap: exactly as many names as fit are stored, never more", async () => {
    const free = MAX_NAMES - (await direct.hlen("gw:model-names"));
    assert.ok(free > 0 && free < 6, `free ${free}`);
    const rs = await Promise.all(Array.from({ length: 8 }, (_, k) => c.api("POST", "/v1/models", { body: { name: `race-${k}` } })));
    assert.deepEqual(rs.filter((r) => r.status === 201).length, free, rs.map((r) => r.status).join(","));
    assert.ok(rs.every((r) => r.status === 201 || r.body.error.code === "limit_exceeded"), rs.map((r) => r.text).join("\n"));
    assert.equal(await direct.hlen("gw:model-names"), MAX_NAMES);
  });
});

describe("a deployment the contract refuses is held back; the rest of the table publishes", () => {
  let redis: RedisServer;
  let c: Replica;
  let mocks: MockOpenAI[];
  let direct: Redis;

  before(async () => {
    redis = await withRedis();
    mocks = await Promise.all(["held", "other", "other"].map((model) => startMockOpenAI({ model })));
    c = await startReplica(redis.url);
    await registerModel(c.api, "held");
    await registerModel(c.api, "other");
    assert.equal((await c.api("POST", "/v1/deployments", { body: { id: "big", model: "held", instances: [{ id: "a", url: mocks[0]!.url }] } })).status, 201);
    assert.equal((await c.api("POST", "/v1/deployments", { body: { id: "small", model: "other", instances: [{ id: "p", url: mocks[1]!.url }, { id: "q", url: mocks[2]!.url }] } })).status, 201);
    direct = new Redis(redis.url);
  });
  after(async () => {
    direct.disconnect();
    await c.stop();
    for (const m of mocks) await m.close();
    await redis.close();
  });

  // What an older control version (no write-time limits) or a hand-edited Redis leaves behind: the store
  // itself accepts it, the table contract does not.
  const store = () => {
    const keys = createKeys("gw:");
    return createDeploymentStore({ redis: direct, keys, commit: createCas(direct, keys.version, keys.channel) });
  };
  const extra = (n: number): Instance[] =>
    Array.from({ length: n }, (_, k) => ({
      id: `e${k}`, url: closedUrl(k), scheme: "http", host: "h", port: 9, base_path: "/v1", address: `127.${2 + Math.floor(k / 250)}.0.${1 + (k % 250)}:9`,
      weight: 1, priority: 0, region: "", gpu_count: null, gpu_memory_gb: null, has_api_key: false, state: "active", last_check: null, created_at: "2026-01-01T00:00:00.000Z", updated_at: "2026-01-01T00:00:00.000Z",
    }));

  test("over the instance cap: 'big' keeps its last good entry, later writes to other deployments still reach the plugins", async () => {
    const good = await table(c.api);
    assert.deepEqual(instanceIds(good, "big"), ["a"]);
    await store().update("big", (cur) => ({ next: { ...cur, revision: cur.revision + 1, instances: [...cur.instances, ...extra(MAX)] } }));

    await waitFor(async () => (await c.api("GET", "/healthz", { token: null })).body.reasons?.includes("deployments_held"), 5_000, "/healthz to report the held deployment");
    const h = (await c.api("GET", "/healthz", { token: null })).body;
    assert.equal(h.status, "degraded");
    assert.deepEqual(h.table.held.map((x: { deployment: string; serving: string }) => [x.deployment, x.serving]), [["big", "last_good"]]);
    assert.match(h.table.held[0].reasons.join(" "), /instances/);

    const t = await table(c.api);
    assert.ok(t.version > good.version, "a new version was published");
    assert.deepEqual(instanceIds(t, "big"), ["a"], "big serves its last good entry");
    assert.equal(t.models.held, "big");

    // An acknowledged write elsewhere reaches the plugins (it froze behind 'big' before).
    const del = await c.api("DELETE", "/v1/deployments/small/instances/q");
    assert.equal(del.status, 204, del.text);
    const after = await table(c.api);
    assert.deepEqual(instanceIds(after, "small"), ["p"]);
    assert.deepEqual(instanceIds(after, "big"), ["a"]);

    const metrics = (await c.api("GET", "/metrics")).text;
    assert.match(metrics, /^gateway_routing_table_held_deployments\{[^}]*\} 1$/m);
    assert.ok(c.logs.some((l) => l.includes("deployments held back")), "the hold is logged");
  });

  test("fixed: it publishes again, /healthz is ok and the metric 0", async () => {
    await store().update("big", (cur) => ({ next: { ...cur, revision: cur.revision + 1, instances: cur.instances.filter((i) => !i.id.startsWith("e")) } }));
    await waitFor(async () => (await c.api("GET", "/healthz", { token: null })).body.status === "ok", 5_000, "/healthz ok again");
    assert.deepEqual(instanceIds(await table(c.api), "big"), ["a"]);
    assert.match((await c.api("GET", "/metrics")).text, /^gateway_routing_table_held_deployments\{[^}]*\} 0$/m);
  });

  test("a deployment that never published cleanly is left out (serving: none), the rest publish", async () => {
    const s = store();
    // A model stored by hand whose name another deployment's model already has (the name index bypassed).
    const keys = createKeys("gw:");
    await direct.hset(keys.models, "m-x", JSON.stringify({ id: "m-x", name: "other", aliases: ["xx"], display_name: "x", served_name: null, family: null, context_length: null, revision: 1, created_at: "2026-01-01T00:00:00.000Z", updated_at: "2026-01-01T00:00:00.000Z" }));
    await s.create(dep("over", "m-x", []), {});
    await waitFor(async () => (await c.api("GET", "/healthz", { token: null })).body.table?.held?.some((x: { deployment: string }) => x.deployment === "over"), 5_000, "'over' held");
    const h = (await c.api("GET", "/healthz", { token: null })).body;
    const held = h.table.held.find((x: { deployment: string }) => x.deployment === "over");
    assert.equal(held.serving, "none");
    assert.match(held.reasons.join(" "), /claimed by deployment small/);
    const t = await table(c.api);
    assert.ok(!t.deployments.some((d: { id: string }) => d.id === "over"));
    assert.equal(t.models.xx, undefined, "its names do not route to a deployment the table lacks");
    assert.equal(t.models.other, "small", "the name stays with the deployment that had it");
    assert.deepEqual(instanceIds(t, "small"), ["p"]);
    await s.remove("over", () => undefined);
    await waitFor(async () => (await c.api("GET", "/healthz", { token: null })).body.status === "ok", 5_000, "ok after the delete");
  });
});

describe("the table version never goes backwards for a plugin", () => {
  let redis: RedisServer;
  let c: Replica;
  let direct: Redis;

  before(async () => {
    redis = await withRedis();
    c = await startReplica(redis.url);
    direct = new Redis(redis.url);
  });
  after(async () => {
    direct.disconnect();
    await c.stop();
    await redis.close();
  });

  /** Every key as DUMPed now; `restore` puts exactly this back (what restoring an older RDB does to the data). */
  const snapshot = async () => {
    const keys = await direct.keys("gw:*");
    const dumps = await Promise.all(keys.map(async (k) => [k, await direct.dumpBuffer(k)] as const));
    return async () => {
      await direct.flushall();
      for (const [k, d] of dumps) if (d) await direct.restore(k, 0, d, "REPLACE");
    };
  };
  const poll = (api: Replica["api"], have: number, wait = 10) => api("GET", `/v1/routing-table?wait=${wait}`, { token: PLUGIN, headers: { "if-none-match": `"${have}"` } });

  test("Redis restored from an older snapshot: the plugin gets the restored state at a higher version, and later writes reach it", async () => {
    await registerModel(c.api, "old");
    assert.equal((await c.api("POST", "/v1/deployments", { body: { id: "old", model: "old" } })).status, 201);
    const restore = await snapshot();
    await registerModel(c.api, "new");
    assert.equal((await c.api("POST", "/v1/deployments", { body: { id: "new", model: "new" } })).status, 201);
    const seen = await table(c.api);
    assert.ok(seen.deployments.some((d: { id: string }) => d.id === "new"));

    const waiting = poll(c.api, seen.version);
    await restore();
    const r = await waiting;
    assert.equal(r.status, 200, `the plugin's long-poll got ${r.status}`);
    assert.ok(r.body.version > seen.version, `version ${r.body.version} after ${seen.version}`);
    assert.deepEqual(r.body.deployments.map((d: { id: string }) => d.id), ["old"], "the restored state");
    assert.ok(c.logs.some((l) => l.includes("went backwards")), "logged");

    // A write after the restore reaches the plugin.
    const next = poll(c.api, r.body.version);
    assert.equal((await c.api("DELETE", "/v1/deployments/old")).status, 204);
    const r2 = await next;
    assert.equal(r2.status, 200);
    assert.ok(r2.body.version > r.body.version);
    assert.deepEqual(r2.body.deployments, []);
  });

  test("a control restarted after the restore: a plugin ahead of it moves the version past its own", async () => {
    await registerModel(c.api, "again");
    const restore = await snapshot();
    for (const n of ["a1", "a2", "a3"]) await registerModel(c.api, n);
    const seen = await table(c.api);
    await c.stop();
    await restore();
    c = await startReplica(redis.url);
    assert.ok((await table(c.api)).version < seen.version, "the restarted control starts from the restored, older version");

    const r = await poll(c.api, seen.version, 5);
    assert.equal(r.status, 200, `got ${r.status}`);
    assert.ok(r.body.version > seen.version);
    assert.ok(Number(await direct.get("gw:table:version")) > seen.version, "the stored version moved past the plugin's");
    // Viewers cannot move it: only plugins report what they hold.
    const v = Number(await direct.get("gw:table:version"));
    const viewer = await c.api("GET", "/v1/routing-table", { headers: { "if-none-match": `"${v + 1000}"` } });
    assert.equal(viewer.status, 304);
    assert.equal(Number(await direct.get("gw:table:version")), v);
  });
});
