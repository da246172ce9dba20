// Issue 16 item 14: /metrics and xDS trust loopback peers without a token by default; with
// CONTROL_REQUIRE_TOKENS=always they require a token from every peer, loopback included.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { loadConfig } from "../../control/src/config.js";
import type { RedisServer } from "../support/redis.js";
import { ADMIN, PLUGIN, VIEWER, startReplica, testConfig, withRedis, type Replica } from "./harness.js";

const CDS = "/v3/discovery:clusters";
const EDS = "/v3/discovery:endpoints";
const xdsBody = (type: string) => ({ version_info: "", node: { id: "envoy-1", cluster: "gw" }, resource_names: [], type_url: type });
const CLUSTER_T = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const CLA_T = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

async function get(url: string, token?: string): Promise<number> {
  const r = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  await r.arrayBuffer();
  return r.status;
}
async function poll(url: string, type: string, token?: string): Promise<number> {
  const r = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(xdsBody(type)) });
  await r.arrayBuffer();
  return r.status;
}

describe("loopback trust of /metrics and xDS (CONTROL_REQUIRE_TOKENS)", () => {
  let redis: RedisServer;
  let byDefault: Replica;
  let always: Replica;
  before(async () => {
    redis = await withRedis();
    byDefault = await startReplica(redis.url);
    always = await startReplica(redis.url, { CONTROL_REQUIRE_TOKENS: "always" });
  });
  after(async () => {
    await byDefault.stop();
    await always.stop();
    await redis.close();
  });

  test("default (allow-listed): a loopback peer reaches /metrics and xDS without a token", async () => {
    assert.equal(testConfig(redis.url).metricsAllowFrom.length, 2);
    assert.equal(await get(`${byDefault.url}/metrics`), 200);
    assert.equal(await poll(byDefault.url + CDS, CLUSTER_T), 200);
    assert.equal(await poll(byDefault.url + EDS, CLA_T), 200);
  });

  test("always: a loopback peer without a token gets 401 on /metrics and both xDS endpoints", async () => {
    assert.equal(await get(`${always.url}/metrics`), 401);
    assert.equal(await poll(always.url + CDS, CLUSTER_T), 401);
    assert.equal(await poll(always.url + EDS, CLA_T), 401);
    // A wrong token too.
    assert.equal(await get(`${always.url}/metrics`, "not-a-token-not-a-token"), 401);
  });

  test("always: the right roles still get in (viewer/admin for /metrics, plugin/admin for xDS)", async () => {
    assert.equal(await get(`${always.url}/metrics`, VIEWER), 200);
    assert.equal(await get(`${always.url}/metrics`, ADMIN), 200);
    assert.equal(await get(`${always.url}/metrics`, PLUGIN), 403);
    assert.equal(await poll(always.url + CDS, CLUSTER_T, PLUGIN), 200);
    assert.equal(await poll(always.url + EDS, CLA_T, ADMIN), 200);
    assert.equal(await poll(always.url + CDS, CLUSTER_T, VIEWER), 403);
  });

  test("configuration: values, and allow lists that contradict `always` are refused", () => {
    const base = { CONTROL_ADMIN_TOKENS: ADMIN };
    const ok = loadConfig({ ...base, CONTROL_REQUIRE_TOKENS: "always" });
    assert.ok(ok.ok);
    assert.deepEqual([ok.config.metricsAllowFrom, ok.config.xdsAllowFrom], [[], []]);
    const emptyLists = loadConfig({ ...base, CONTROL_REQUIRE_TOKENS: "always", METRICS_ALLOW_FROM: "", XDS_ALLOW_FROM: "" });
    assert.ok(emptyLists.ok);
    const def = loadConfig(base);
    assert.ok(def.ok);
    assert.deepEqual(def.config.xdsAllowFrom, ["127.0.0.1/32", "::1/128"]);
    const bad = loadConfig({ ...base, CONTROL_REQUIRE_TOKENS: "sometimes" });
    assert.ok(!bad.ok && bad.issues.some((i) => i.path === "CONTROL_REQUIRE_TOKENS"));
    const contradiction = loadConfig({ ...base, CONTROL_REQUIRE_TOKENS: "always", XDS_ALLOW_FROM: "10.0.0.0/8" });
    assert.ok(!contradiction.ok && contradiction.issues.some((i) => i.path === "XDS_ALLOW_FROM" && /CONTROL_REQUIRE_TOKENS=always/.test(i.message)), JSON.stringify(contradiction));
  });
});
