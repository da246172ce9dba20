// The control service serves Envoy's CDS/EDS (control/xds) built from the same snapshot as the routing
// table: same version; token-less polls only from allowed peers.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import { PLUGIN, VIEWER, registerModel, startReplica, table, waitFor, withRedis, type Replica } from "./harness.js";

const CDS = "/v3/discovery:clusters";
const EDS = "/v3/discovery:endpoints";
const req = (type: string, version = "") => ({ version_info: version, node: { id: "envoy-1", cluster: "gw" }, resource_names: [], type_url: type });
const CLUSTER_T = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const CLA_T = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

describe("xDS served by the control service", () => {
  let redis: RedisServer;
  let open: Replica;
  let closed: Replica;
  let mock: MockOpenAI;

  before(async () => {
    redis = await withRedis();
    mock = await startMockOpenAI({ model: "xds-model" });
    open = await startReplica(redis.url); // default: loopback may poll without a token
    closed = await startReplica(redis.url, { XDS_ALLOW_FROM: "" });
    await registerModel(open.api, "xds-model");
    const r = await open.api("POST", "/v1/deployments", { body: { id: "xds-dep", model: "xds-model", instances: [{ id: "a", url: mock.url }] } });
    assert.equal(r.status, 201, r.text);
  });
  after(async () => {
    await open.stop();
    await closed.stop();
    await mock.close();
    await redis.close();
  });

  test("CDS and EDS carry the routing table's deployments at the routing table's version", async () => {
    const t = await table(open.api);
    const cds = await open.api("POST", CDS, { token: null, body: req(CLUSTER_T) });
    assert.equal(cds.status, 200, cds.text);
    assert.equal(cds.body.version_info, String(t.version));
    assert.deepEqual(cds.body.resources.map((c: { name: string }) => c.name), ["gw.xds-dep"]);
    const eds = await open.api("POST", EDS, { token: null, body: { ...req(CLA_T), resource_names: ["gw.xds-dep"] } });
    assert.equal(eds.status, 200, eds.text);
    assert.ok(eds.text.includes(String(mock.port)), "the instance's endpoint is served");
    // Same version → 304.
    assert.equal((await open.api("POST", CDS, { token: null, body: req(CLUSTER_T, String(t.version)) })).status, 304);
  });

  test("a delete moves both the table and xDS to the next version", async () => {
    const v = (await table(open.api)).version;
    assert.equal((await open.api("DELETE", "/v1/deployments/xds-dep/instances/a")).status, 204);
    const t = await table(open.api);
    assert.ok(t.version > v);
    await waitFor(async () => (await open.api("POST", CDS, { token: null, body: req(CLUSTER_T) })).body.version_info === String(t.version), 2000, "xds at the new version");
    const eds = await open.api("POST", EDS, { token: null, body: { ...req(CLA_T), resource_names: ["gw.xds-dep"] } });
    assert.ok(!eds.text.includes(String(mock.port)), "the removed instance's endpoint is gone");
  });

  test("without an allowed peer address a plugin or admin token is required", async () => {
    await waitFor(async () => (await closed.api("GET", "/healthz", { token: null })).body.table_version !== null, 2000, "closed replica ready");
    assert.equal((await closed.api("POST", CDS, { token: null, body: req(CLUSTER_T) })).status, 401);
    assert.equal((await closed.api("POST", CDS, { token: VIEWER, body: req(CLUSTER_T) })).status, 403);
    assert.equal((await closed.api("POST", CDS, { token: PLUGIN, body: req(CLUSTER_T) })).status, 200);
  });
});
