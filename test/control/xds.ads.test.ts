// ADS (xDS over gRPC) served by the control service (control/xds/ads.ts) on a real Redis: an xDS client
// nobody here wrote (@grpc/grpc-js-xds's XdsClient) and a raw stream get the clusters and endpoints REST
// serves; a create is pushed (no poll) at the routing table's new version; ACKs and NACKs (the raw
// client's and the gRPC client's own) show in GET /v1/dataplanes and /metrics; a stale nonce changes
// nothing; a reconnect — to another replica — gets the current state.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { adsCluster } from "../../control/xds/ads.js";
import { TYPE_URL, type EnvoyCluster } from "../../control/xds/build.js";
import { DataplaneList, type Dataplane } from "../../control/xds/dataplanes.js";
import { loadXdsProto } from "../../control/xds/proto.js";
import type { RedisServer } from "../support/redis.js";
import { RawAds, decodeSingleResource, xdsModule, type AdsResponse } from "../xds/ads-client.js";
import { parseMetrics } from "./health-support.js";
import { PLUGIN, VIEWER, registerModel, startReplica, table, waitFor, withRedis, type Replica } from "./harness.js";

// gRPC's xDS client knows no override_host LB policy and would NACK every cluster; without its
// custom-LB-config switch it reads lb_policy (ROUND_ROBIN by default) and accepts them. Read when its
// modules first load (in before()).
process.env.GRPC_EXPERIMENTAL_XDS_CUSTOM_LB_CONFIG = "false";

const CDS = TYPE_URL.cluster;
const EDS = TYPE_URL.clusterLoadAssignment;
const proto = loadXdsProto();
const names = (r: AdsResponse): string[] => r.resources.map((a) => (r.type_url === CDS ? decodeSingleResource(CDS, a.value).name : decodeSingleResource(EDS, a.value).cluster_name));
const canonical = (v: unknown): unknown =>
  Array.isArray(v)
    ? v.map(canonical)
    : v && typeof v === "object"
      ? Object.fromEntries(Object.entries(v).filter(([, x]) => !(Array.isArray(x) && x.length === 0)).map(([k, x]) => [k, canonical(x)]))
      : typeof v === "string" && /^-?\d+$/.test(v)
        ? Number(v)
        : v;

interface Watcher {
  onResourceChanged(r: unknown): void;
  onError(s: { details: string }): void;
  onResourceDoesNotExist(): void;
}
interface XdsClientModule {
  XdsClient: new (bootstrap: unknown) => object;
  Watcher: new (w: Watcher) => object;
}
interface ResourceType {
  startWatch(client: object, name: string, watcher: object): void;
  cancelWatch(client: object, name: string, watcher: object): void;
}

/** What one watch of the gRPC xDS client saw. */
class Seen {
  updates: any[] = []; // eslint-disable-line @typescript-eslint/no-explicit-any
  errors: string[] = [];
  readonly watcher: object;
  constructor(mod: XdsClientModule) {
    this.watcher = new mod.Watcher({
      onResourceChanged: (r) => void this.updates.push(r),
      onError: (s) => void this.errors.push(s.details),
      onResourceDoesNotExist: () => void this.errors.push("does not exist"),
    });
  }
}

describe("ADS served by the control service", () => {
  let redis: RedisServer;
  let a: Replica;
  let b: Replica;
  let mock: MockOpenAI;
  let mock2: MockOpenAI; // a second instance of ads-model (scale-up)
  let mockB: MockOpenAI; // the second deployment's model
  const raws: RawAds[] = [];
  const rawTo = (r: Replica): RawAds => {
    const c = new RawAds(`127.0.0.1:${r.control.adsPort}`);
    raws.push(c);
    return c;
  };
  const dataplanes = async (r: Replica, token = VIEWER): Promise<Dataplane[]> => {
    const res = await r.api("GET", "/v1/dataplanes", { token });
    assert.equal(res.status, 200, res.text);
    const parsed = DataplaneList.parse(res.body);
    assert.equal(parsed.replica, r.control.replica);
    return parsed.dataplanes;
  };
  const dp = async (r: Replica, id: string): Promise<Dataplane | undefined> => (await dataplanes(r)).find((d) => d.id === id);
  const typeOf = (d: Dataplane | undefined, t: string) => d?.types.find((x) => x.type_url === t);
  const restEds = async (r: Replica, cluster: string) => (await r.api("POST", "/v3/discovery:endpoints", { token: null, body: { node: { id: "probe" }, resource_names: [cluster] } })).body.resources[0];
  const restCds = async (r: Replica) => (await r.api("POST", "/v3/discovery:clusters", { token: null, body: { node: { id: "probe" } } })).body;

  // The gRPC xDS client (loaded in before(), after the environment switch above).
  let mod: XdsClientModule;
  let ClusterType: ResourceType;
  let EndpointType: ResourceType;
  let grpcClient: object;
  const watches: [ResourceType, string, Seen][] = [];
  const watch = (type: ResourceType, name: string): Seen => {
    const s = new Seen(mod);
    type.startWatch(grpcClient, name, s.watcher);
    watches.push([type, name, s]);
    return s;
  };

  before(async () => {
    redis = await withRedis();
    mock = await startMockOpenAI({ model: "ads-model" });
    mock2 = await startMockOpenAI({ model: "ads-model" });
    mockB = await startMockOpenAI({ model: "ads-model-b" });
    a = await startReplica(redis.url, { CONTROL_XDS_GRPC_PORT: "0" });
    b = await startReplica(redis.url, { CONTROL_XDS_GRPC_PORT: "0" });
    assert.ok(a.control.adsPort && b.control.adsPort);
    await registerModel(a.api, "ads-model");
    await registerModel(a.api, "ads-model-b");
    const r = await a.api("POST", "/v1/deployments", { body: { id: "ads-a", model: "ads-model", instances: [{ id: "i1", url: mock.url, region: "eu-west" }] } });
    assert.equal(r.status, 201, r.text);

    mod = xdsModule<XdsClientModule>("xds-client.js");
    ClusterType = xdsModule<{ ClusterResourceType: ResourceType }>("xds-resource-type/cluster-resource-type.js").ClusterResourceType;
    EndpointType = xdsModule<{ EndpointResourceType: ResourceType }>("xds-resource-type/endpoint-resource-type.js").EndpointResourceType;
    const { validateBootstrapConfig } = xdsModule<{ validateBootstrapConfig(o: unknown): unknown }>("xds-bootstrap.js");
    grpcClient = new mod.XdsClient(
      validateBootstrapConfig({
        xds_servers: [{ server_uri: `127.0.0.1:${a.control.adsPort}`, channel_creds: [{ type: "insecure" }], server_features: ["xds_v3"] }],
        node: { id: "grpc-node", cluster: "grpc-test", locality: {} },
      }),
    );
  });
  after(async () => {
    for (const [type, name, s] of watches) type.cancelWatch(grpcClient, name, s.watcher);
    for (const c of raws) c.close();
    await a.stop();
    await b.stop();
    await mock.close();
    await mock2.close();
    await mockB.close();
    await redis.close();
  });

  test("@grpc/grpc-js-xds's XdsClient gets the cluster and its endpoints as REST serves them, and ACKs", async () => {
    const version = (await table(a.api)).version;
    const cds = watch(ClusterType, "gw.ads-a");
    const eds = watch(EndpointType, "gw.ads-a");
    await waitFor(() => cds.updates.length > 0 && eds.updates.length > 0, 5000, "the gRPC client's CDS and EDS updates");
    assert.deepEqual([cds.errors, eds.errors], [[], []]);
    const c = cds.updates.at(-1);
    assert.deepEqual([c.type, c.name, c.edsServiceName, c.maxConcurrentRequests], ["EDS", "gw.ads-a", "gw.ads-a", 4096]);
    const rest = await restEds(a, "gw.ads-a");
    const e = eds.updates.at(-1);
    assert.equal(e.cluster_name, rest.cluster_name);
    assert.deepEqual(
      e.endpoints.map((l: any) => [l.locality.region, l.priority, l.lb_endpoints.map((x: any) => [x.endpoint.address.socket_address.address, x.endpoint.address.socket_address.port_value, x.load_balancing_weight.value])]), // eslint-disable-line @typescript-eslint/no-explicit-any
      rest.endpoints.map((l: any) => [l.locality.region, l.priority, l.lb_endpoints.map((x: any) => [x.endpoint.address.socket_address.address, x.endpoint.address.socket_address.port_value, x.load_balancing_weight])]), // eslint-disable-line @typescript-eslint/no-explicit-any
    );
    assert.equal(e.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value, mock.port);
    // Its ACKs, as the control service recorded them.
    await waitFor(async () => (await dp(a, "grpc-node"))?.acked_version === version, 5000, "grpc-node complete at the table's version");
    const d = (await dp(a, "grpc-node"))!;
    assert.deepEqual([d.transport, d.connected, d.streams, d.cluster], ["ads", true, 1, "grpc-test"]);
    assert.match(d.user_agent ?? "", /^gRPC Node Pure JS /);
    assert.deepEqual([typeOf(d, CDS)?.state, typeOf(d, CDS)?.acked?.version, typeOf(d, EDS)?.state, typeOf(d, EDS)?.acked?.version], ["acked", String(version), "acked", String(version)]);
  });

  test("a create is pushed at the table's new version without a poll: CDS first, then EDS; the same resources as REST", async () => {
    const raw = rawTo(a);
    raw.send({ node: { id: "raw-1", cluster: "raw" }, type_url: CDS });
    const cds0 = await raw.next();
    raw.send({ version_info: cds0.version_info, type_url: CDS, response_nonce: cds0.nonce });
    raw.send({ type_url: EDS, resource_names: ["gw.ads-a"] });
    const eds0 = await raw.next();
    raw.send({ version_info: eds0.version_info, type_url: EDS, response_nonce: eds0.nonce, resource_names: ["gw.ads-a"] });
    await waitFor(async () => (await dp(a, "raw-1"))?.acked_version === Number(eds0.version_info), 3000, "raw-1's ACKs");

    const r = await a.api("POST", "/v1/deployments", { body: { id: "ads-b", model: "ads-model-b", instances: [{ id: "j1", url: mockB.url }] } });
    assert.equal(r.status, 201, r.text);
    const version = String((await table(a.api)).version);
    // The client sent nothing since its ACKs: these are pushes.
    const cds1 = await raw.next(5000, "the CDS push");
    assert.equal(cds1.type_url, CDS);
    assert.ok(Number(cds1.version_info) > Number(cds0.version_info));
    let cds = cds1;
    while (Number(cds.version_info) < Number(version)) {
      // The create may have been published in more than one version: each is pushed, CDS then EDS.
      assert.equal((await raw.next()).type_url, EDS);
      cds = await raw.next();
      assert.equal(cds.type_url, CDS);
    }
    assert.equal(cds.version_info, version);
    assert.deepEqual(names(cds), ["gw.ads-a", "gw.ads-b"]);
    const eds1 = await raw.next(5000, "the EDS push");
    assert.deepEqual([eds1.type_url, eds1.version_info, names(eds1)], [EDS, version, ["gw.ads-a"]], "EDS after CDS, only what is subscribed");
    // Byte for byte the clusters REST serves (but eds_config: over ADS), decoded back to proto3 JSON.
    const rest = await restCds(a);
    assert.equal(rest.version_info, version);
    cds.resources.forEach((x, i) => assert.ok(isDeepStrictEqual(canonical(proto.anyToJson(x)), canonical(adsCluster(rest.resources[i] as EnvoyCluster))), `cluster ${i}`));
    assert.ok(isDeepStrictEqual(canonical(proto.anyToJson(eds1.resources[0]!)), canonical(await restEds(a, "gw.ads-a"))));
    // Envoy then subscribes to the new cluster's endpoints: answered at once.
    raw.send({ version_info: version, type_url: CDS, response_nonce: cds.nonce });
    raw.send({ version_info: version, type_url: EDS, response_nonce: eds1.nonce, resource_names: ["gw.ads-a", "gw.ads-b"] });
    const eds2 = await raw.next();
    assert.deepEqual([eds2.version_info, names(eds2)], [version, ["gw.ads-a", "gw.ads-b"]]);
    raw.send({ version_info: version, type_url: EDS, response_nonce: eds2.nonce, resource_names: ["gw.ads-a", "gw.ads-b"] });
    await waitFor(async () => (await dp(a, "raw-1"))?.acked_version === Number(version), 3000, "raw-1 complete at the new version");
  });

  test("the gRPC client's own NACK (an endpoint without locality, which gRPC requires) shows with its message in the API and /metrics", async () => {
    const eds = watch(EndpointType, "gw.ads-b");
    await waitFor(() => eds.errors.length > 0, 5000, "the gRPC client's rejection");
    assert.match(eds.errors[0]!, /locality unset/);
    await waitFor(async () => typeOf(await dp(a, "grpc-node"), EDS)?.state === "nacked", 3000, "the NACK recorded");
    const t = typeOf(await dp(a, "grpc-node"), EDS)!;
    assert.match(t.nacked!.message, /locality unset/);
    assert.equal(t.nacked!.code, 14, "gRPC sends UNAVAILABLE");
    const m = parseMetrics((await a.api("GET", "/metrics", { token: VIEWER })).text);
    assert.equal(m.find((s) => s.name === "gateway_xds_node_nacked" && s.labels.node === "grpc-node" && s.labels.type === "eds")?.value, 1);
    assert.ok((m.find((s) => s.name === "gateway_xds_nacks_total" && s.labels.node === "grpc-node" && s.labels.type === "eds")?.value ?? 0) >= 1);
  });

  test("a NACK sent by a raw client: recorded with error_detail, in GET /v1/dataplanes and /metrics; a stale nonce changes nothing", async () => {
    const raw = rawTo(a);
    raw.send({ node: { id: "raw-nack", cluster: "raw" }, type_url: CDS });
    const c0 = await raw.next();
    raw.send({ version_info: c0.version_info, type_url: CDS, response_nonce: c0.nonce });
    await waitFor(async () => typeOf(await dp(a, "raw-nack"), CDS)?.state === "acked", 3000, "the first ACK");
    const r = await a.api("POST", "/v1/deployments/ads-a/instances", { body: { id: "i2", url: mock2.url, region: "eu-west" } });
    assert.ok(r.status === 201 || r.status === 202, r.text);
    let pushed = await raw.next(5000, "the push of the scale-up");
    assert.equal(pushed.type_url, CDS);
    // NACK the latest push (should another version be pushed meanwhile, our NACK is stale: NACK that one).
    for (;;) {
      raw.send({ version_info: c0.version_info, type_url: CDS, response_nonce: pushed.nonce, error_detail: { code: 13, message: "gRPC config for type.googleapis.com/envoy.config.cluster.v3.Cluster rejected: test refusal" } });
      await waitFor(async () => raw.pending() > 0 || typeOf(await dp(a, "raw-nack"), CDS)?.state === "nacked", 3000, "the NACK in the API");
      if (raw.pending() === 0) break;
      pushed = await raw.next();
    }
    const t = typeOf(await dp(a, "raw-nack"), CDS)!;
    assert.deepEqual({ ...t.nacked!, at: "" }, { version: pushed.version_info, accepted_version: c0.version_info, message: "gRPC config for type.googleapis.com/envoy.config.cluster.v3.Cluster rejected: test refusal", code: 13, at: "" });
    assert.equal(t.acked?.version, c0.version_info);
    assert.equal((await dp(a, "raw-nack"))!.acked_version, null, "never had endpoints: not complete");
    const m = parseMetrics((await a.api("GET", "/metrics", { token: VIEWER })).text);
    const get = (name: string) => m.find((s) => s.name === name && s.labels.node === "raw-nack" && s.labels.type === "cds")?.value;
    assert.deepEqual([get("gateway_xds_nacks_total"), get("gateway_xds_node_nacked"), get("gateway_xds_node_acked_version")], [1, 1, Number(c0.version_info)]);
    assert.ok((m.find((s) => s.name === "gateway_xds_connected_nodes" && s.labels.transport === "ads")?.value ?? 0) >= 3);

    // Stale: answers the first response's nonce (an ACK if it counted), then a barrier answered at once.
    raw.send({ version_info: c0.version_info, type_url: CDS, response_nonce: c0.nonce });
    raw.send({ type_url: EDS, resource_names: ["gw.ads-a"] });
    // (Requests are handled in order: once the barrier is answered, the stale request was handled too.)
    for (let x = await raw.next(); x.type_url !== EDS; x = await raw.next()) assert.ok(Number(x.version_info) > Number(pushed.version_info), "only pushes of newer versions");
    const after = typeOf(await dp(a, "raw-nack"), CDS)!;
    assert.deepEqual([after.state, after.acks_total, after.nacks_total], ["nacked", 1, 1]);
  });

  test("who may read it: admin and viewer; the plugin token is refused, no token 401", async () => {
    assert.equal((await a.api("GET", "/v1/dataplanes")).status, 200);
    assert.equal((await a.api("GET", "/v1/dataplanes", { token: PLUGIN })).status, 403);
    assert.equal((await a.api("GET", "/v1/dataplanes", { token: null })).status, 401);
  });

  test("a reconnect — to another replica — gets the current state at once; both replicas tell what they see", async () => {
    const first = rawTo(a);
    first.send({ node: { id: "roamer", cluster: "raw" }, type_url: CDS });
    const before = await first.next();
    first.send({ version_info: before.version_info, type_url: CDS, response_nonce: before.nonce });
    first.close();
    await waitFor(async () => (await dp(a, "roamer"))?.connected === false, 3000, "the disconnect on replica a");
    assert.ok((await dp(a, "roamer"))!.disconnected_at);
    // While it is away: a delete.
    assert.equal((await a.api("DELETE", "/v1/deployments/ads-b")).status, 204);
    const version = String((await table(a.api)).version);
    await waitFor(async () => (await restCds(b)).version_info === version, 3000, "replica b at the new version");
    const second = rawTo(b);
    second.send({ node: { id: "roamer", cluster: "raw" }, version_info: before.version_info, type_url: CDS });
    const now = await second.next();
    assert.deepEqual([now.version_info, names(now)], [version, ["gw.ads-a"]]);
    second.send({ version_info: now.version_info, type_url: CDS, response_nonce: now.nonce });
    await waitFor(async () => typeOf(await dp(b, "roamer"), CDS)?.acked?.version === version, 3000, "the ACK on replica b");
    assert.equal((await dp(b, "roamer"))!.connected, true);
    assert.equal((await dp(a, "roamer"))!.connected, false);
  });

  test("REST polls are recorded in the same place (no nonce: version_info is what the node has)", async () => {
    const node = { id: "rest-envoy", cluster: "edge", user_agent_name: "envoy", user_agent_build_version: { version: { major_number: 1, minor_number: 35, patch: 2 } } };
    const first = await a.api("POST", "/v3/discovery:clusters", { token: null, body: { node, version_info: "" } });
    assert.equal(first.status, 200);
    assert.equal(typeOf(await dp(a, "rest-envoy"), CDS)?.state, "pending");
    assert.equal((await a.api("POST", "/v3/discovery:clusters", { token: null, body: { node, version_info: first.body.version_info } })).status, 304);
    const d = (await dp(a, "rest-envoy"))!;
    assert.deepEqual([d.transport, d.connected, d.user_agent, typeOf(d, CDS)?.state, typeOf(d, CDS)?.acked?.version], ["rest", true, "envoy 1.35.2", "acked", first.body.version_info]);
  });
});
