/**
 * control/xds/ads.ts and proto.ts without Redis: the protobuf encoding of every resource REST serves
 * (checked back to the REST JSON, by @grpc/grpc-js-xds's own decoder and against Envoy's protos), and the
 * ADS protocol over a raw gRPC stream — fresh nonces, ACK, NACK with error_detail, stale nonces ignored,
 * EDS subscriptions by name, pushes in CDS-then-EDS order on every new version, reconnects, shutdown and
 * who may connect.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { isDeepStrictEqual } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { adsCluster, createAdsServer, peerIp, peerOrTokenAuthorizer, type AdsServer } from "../../control/xds/ads.js";
import { buildXdsSnapshot, TYPE_URL, type EnvoyCluster, type XdsSnapshot } from "../../control/xds/build.js";
import { renderResources } from "../../control/xds/discovery.js";
import { createXdsNodes, type NackEvent, type XdsNodes } from "../../control/xds/nodes.js";
import { loadXdsProto, ProtoJsonError, type JsonObject } from "../../control/xds/proto.js";
import { createXdsPublisher, type XdsPublisher } from "../../control/xds/publisher.js";
import { formatIssue, validateAnyResource } from "../../envoy/validate/index.js";
import { decodeSingleResource, RawAds, type AdsResponse } from "./ads-client.js";
import { fullSnapshot } from "./fixtures.js";

const CDS = TYPE_URL.cluster;
const EDS = TYPE_URL.clusterLoadAssignment;

function snapshot(version = 42): XdsSnapshot {
  const r = buildXdsSnapshot(fullSnapshot(version));
  assert.ok(r.ok);
  return r.snapshot;
}

/** proto3 JSON as a decoder prints it: empty lists left out, 64-bit integers as strings (compare as numbers). */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).filter(([, x]) => !(Array.isArray(x) && x.length === 0)).map(([k, x]) => [k, canonical(x)]));
  if (typeof v === "string" && /^-?\d+$/.test(v)) return Number(v);
  return v;
}

const durationSeconds = (d: { seconds: string; nanos: number }): number => Number(d.seconds) + d.nanos / 1e9;
const proto = loadXdsProto();
const resourceNames = (r: AdsResponse): string[] => r.resources.map((a) => (a.type_url === CDS ? decodeSingleResource(CDS, a.value).name : decodeSingleResource(EDS, a.value).cluster_name));

describe("protobuf encoding of the REST resources", () => {
  const snap = snapshot();

  test("every cluster and assignment decodes back to exactly the JSON REST serves", () => {
    let n = 0;
    for (const res of [...snap.clusters, ...snap.endpoints]) {
      const back = proto.anyToJson(proto.encodeAny(res as unknown as JsonObject));
      assert.ok(isDeepStrictEqual(canonical(back), canonical(res)), `${JSON.stringify(back)}\n!=\n${JSON.stringify(res)}`);
      n++;
    }
    assert.equal(n, 10);
  });

  test("@grpc/grpc-js-xds's decoder reads the same values (names, durations, wrappers, enums, Any, Struct)", () => {
    for (const c of snap.clusters) {
      const d = decodeSingleResource(CDS, Buffer.from(proto.encodeAny(adsCluster(c)).value));
      assert.equal(d.name, c.name);
      assert.equal(d.type, "EDS");
      assert.equal(d.eds_cluster_config.service_name, c.name);
      assert.equal(d.eds_cluster_config.eds_config.config_source_specifier, "ads", "EDS over the same ADS stream");
      assert.equal(durationSeconds(d.connect_timeout), 2);
      assert.equal(durationSeconds(d.health_checks[0].interval), Number(c.health_checks[0]!.interval.replace(/s$/, "")));
      assert.equal(d.health_checks[0].unhealthy_threshold.value, c.health_checks[0]!.unhealthy_threshold);
      assert.equal(d.health_checks[0].http_health_check.path, c.health_checks[0]!.http_health_check.path);
      assert.equal(d.health_checks[0].event_logger[0].typed_config.type_url, c.health_checks[0]!.event_logger![0]!.typed_config["@type"]);
      assert.equal(d.common_lb_config.healthy_panic_threshold.value, c.common_lb_config.healthy_panic_threshold.value);
      assert.equal(d.circuit_breakers.thresholds[0].max_requests.value, 4096);
      assert.equal(d.ignore_health_on_host_removal, true);
      assert.equal(d.load_balancing_policy.policies[0].typed_extension_config.typed_config.type_url, "type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost");
      assert.equal(d.metadata.filter_metadata["model-gateway"].fields.deployment.stringValue, c.metadata.filter_metadata["model-gateway"]!.deployment);
      assert.deepEqual(
        d.transport_socket_matches.map((m: { name: string; transport_socket: { typed_config: { type_url: string } } }) => [m.name, m.transport_socket.typed_config.type_url]),
        (c.transport_socket_matches ?? []).map((m) => [m.name, m.transport_socket.typed_config["@type"]]),
      );
      const tls = d.transport_socket_matches[0]?.transport_socket.typed_config;
      if (tls) {
        const ctx = decodeSingleResource(tls.type_url, tls.value);
        assert.equal(ctx.common_tls_context.validation_context.trusted_ca.filename, (c.transport_socket_matches![0]!.transport_socket.typed_config.common_tls_context as { validation_context: { trusted_ca: { filename: string } } }).validation_context.trusted_ca.filename);
      }
    }
    for (const e of snap.endpoints) {
      const d = decodeSingleResource(EDS, Buffer.from(proto.encodeAny(e as unknown as JsonObject).value));
      assert.equal(d.cluster_name, e.cluster_name);
      assert.equal(d.policy.overprovisioning_factor.value, 102400);
      const flat = (x: typeof e.endpoints) => x.flatMap((l) => l.lb_endpoints.map((lb) => [l.priority, l.locality?.region ?? "", lb.endpoint.address.socket_address.address, lb.endpoint.address.socket_address.port_value, lb.load_balancing_weight, lb.health_status ?? "UNKNOWN", lb.metadata.filter_metadata["model-gateway"]!.instance]));
      const got = d.endpoints.flatMap((l: any) => l.lb_endpoints.map((lb: any) => [l.priority, l.locality?.region ?? "", lb.endpoint.address.socket_address.address, lb.endpoint.address.socket_address.port_value, lb.load_balancing_weight.value, lb.health_status, lb.metadata.filter_metadata["model-gateway"].fields.instance.stringValue])); // eslint-disable-line @typescript-eslint/no-explicit-any
      assert.deepEqual(got, flat(e.endpoints));
    }
  });

  test("the ADS cluster differs from REST's only by eds_config {ads: {}}, and validates against Envoy's protos", () => {
    for (const c of snap.clusters) {
      const a = adsCluster(c) as unknown as EnvoyCluster & { eds_cluster_config: { eds_config: Record<string, unknown> } };
      assert.deepEqual(a.eds_cluster_config, { service_name: c.name, eds_config: { resource_api_version: "V3", ads: {} } });
      assert.deepEqual({ ...a, eds_cluster_config: c.eds_cluster_config }, c);
      const v = validateAnyResource(a);
      assert.ok(v.ok, v.errors.map(formatIssue).join("\n"));
    }
  });

  test("what cannot be encoded exactly is refused, naming the field (never silently dropped)", () => {
    const c = snap.clusters[0]!;
    const bad = (mut: (x: any) => void): ProtoJsonError => { // eslint-disable-line @typescript-eslint/no-explicit-any
      const x = structuredClone(c) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
      mut(x);
      try {
        proto.encodeAny(x);
      } catch (e) {
        assert.ok(e instanceof ProtoJsonError, String(e));
        return e;
      }
      assert.fail("encoded");
    };
    assert.match(bad((x) => (x.no_such_field = 1)).path, /^no_such_field$/);
    assert.match(bad((x) => (x.type = "NOT_A_TYPE")).message, /unknown envoy\.config\.cluster\.v3\.Cluster\.DiscoveryType value/);
    assert.match(bad((x) => (x.connect_timeout = "2 seconds")).path, /^connect_timeout$/);
    assert.match(bad((x) => (x.health_checks[0].event_logger[0].typed_config["@type"] = "type.googleapis.com/no.such.Type")).path, /event_logger\[0\]\.typed_config\.@type$/);
    assert.match(bad((x) => (x.circuit_breakers.thresholds[0].max_requests = "many")).path, /max_requests$/);
    assert.match(bad((x) => (x.circuit_breakers.thresholds[0].max_requests = 2 ** 32)).message, /out of range for uint32/);
    assert.match(bad((x) => (x.ignore_health_on_host_removal = "yes")).path, /^ignore_health_on_host_removal$/);
  });

  test("an encoded snapshot is a few KiB per deployment; 1000 changed deployments encode in well under a second", () => {
    const deployments = Array.from({ length: 1000 }, (_, i) => ({ ...fullSnapshot().deployments[1]!, id: `d${i}`, cluster: `gw.d${i}` }));
    const r = buildXdsSnapshot({ version: 1, deployments });
    assert.ok(r.ok);
    const t0 = performance.now();
    let bytes = 0;
    for (const x of [...r.snapshot.clusters, ...r.snapshot.endpoints]) bytes += proto.encodeAny(x as unknown as JsonObject).value.length;
    const ms = performance.now() - t0;
    assert.ok(bytes / 1000 < 4096, `${bytes / 1000} bytes per deployment`);
    assert.ok(ms < 3000, `${ms} ms`);
  });
});

describe("ADS over gRPC", () => {
  let pub: XdsPublisher;
  let nodes: XdsNodes;
  let server: AdsServer;
  let address: string;
  const nacks: NackEvent[] = [];
  const clients: RawAds[] = [];
  const open = (md?: Record<string, string>): RawAds => {
    const c = new RawAds(address, md);
    clients.push(c);
    return c;
  };
  const node = (id: string) => ({ id, cluster: "edge", user_agent_name: "envoy", user_agent_version: "1.35.0" });

  before(async () => {
    pub = createXdsPublisher();
    nodes = createXdsNodes();
    nodes.onNack((e) => nacks.push(e));
    server = createAdsServer({ snapshot: pub.current, subscribe: (l) => pub.subscribe(l), nodes, controlPlaneId: "test-replica" });
    address = `127.0.0.1:${await server.listen("127.0.0.1", 0)}`;
  });
  after(async () => {
    for (const c of clients) c.close();
    await server.stop(200);
  });

  test("nothing before the first snapshot; then the waiting stream gets it", async () => {
    const c = open();
    c.send({ node: node("early"), type_url: CDS });
    await waitUntil(() => nodes.get("early")?.types[0]?.subscribed !== undefined, "the request seen");
    assert.equal(nodes.get("early")!.types[0]!.last_sent, null, "nothing sent without a snapshot");
    pub.publish(fullSnapshot(42));
    const r = await c.next();
    assert.equal(r.version_info, "42");
    assert.equal(nodes.get("early")!.types[0]!.last_sent?.nonce, r.nonce, "the first response sent is this one");
    c.close();
  });

  test("CDS: every cluster at the snapshot version, a nonce, the control plane; ACK recorded", async () => {
    const c = open();
    c.send({ node: node("n-cds"), type_url: CDS, resource_names: ["gw.only-this"] });
    const r = await c.next();
    assert.equal(r.type_url, CDS);
    assert.equal(r.version_info, "42");
    assert.ok(r.nonce.length > 0);
    assert.equal(r.control_plane?.identifier, "test-replica");
    assert.deepEqual(resourceNames(r), renderResources(pub.current()!, CDS, "*").map((x) => x.name), "SotW: every cluster, whatever resource_names says");
    for (const a of r.resources) assert.equal(a.type_url, CDS);
    // The same resources as REST, as proto3 JSON (eds_config aside).
    const rest = renderResources(pub.current()!, CDS, "*");
    r.resources.forEach((a, i) => assert.ok(isDeepStrictEqual(canonical(proto.anyToJson(a)), canonical(adsCluster(rest[i]!.resource as EnvoyCluster)))));
    assert.equal(nodes.get("n-cds")?.types[0]?.state, "pending");
    c.send({ version_info: r.version_info, type_url: CDS, response_nonce: r.nonce });
    await waitUntil(() => nodes.get("n-cds")?.types.find((t) => t.type_url === CDS)?.acked?.version === "42", "the ACK recorded");
    const st = nodes.get("n-cds")!;
    assert.equal(st.transport, "ads");
    assert.equal(st.connected, true);
    assert.equal(st.user_agent, "envoy 1.35.0");
    assert.equal(st.types[0]!.state, "acked");
    c.close();
  });

  test("EDS by name; added names answered at once at the same version; a new version: CDS, then EDS, fresh nonces", async () => {
    const c = open();
    c.send({ node: node("n-eds"), type_url: CDS });
    const cds1 = await c.next();
    c.send({ version_info: "42", type_url: CDS, response_nonce: cds1.nonce });
    c.send({ type_url: EDS, resource_names: ["gw.llama-rr", "gw.unknown"] });
    const eds1 = await c.next();
    assert.equal(eds1.type_url, EDS);
    assert.deepEqual(resourceNames(eds1), ["gw.llama-rr"], "unknown names are left out");
    assert.ok(isDeepStrictEqual(canonical(proto.anyToJson(eds1.resources[0]!)), canonical(pub.current()!.endpointsByName.get("gw.llama-rr"))));
    // Only part of the clusters' endpoints ACKed: the node does not have 42 completely.
    c.send({ version_info: "42", type_url: EDS, response_nonce: eds1.nonce, resource_names: ["gw.llama-rr", "gw.unknown"] });
    await waitUntil(() => nodes.get("n-eds")!.types.find((t) => t.type_url === EDS)?.state === "acked", "EDS ACK");
    assert.equal(nodes.ackedVersion("n-eds"), undefined);
    // A request (answering the current nonce) that adds names: answered at once, same version, new nonce, every subscribed assignment.
    const all = renderResources(pub.current()!, CDS, "*").map((x) => x.name);
    c.send({ version_info: "42", type_url: EDS, response_nonce: eds1.nonce, resource_names: ["gw.unknown", ...all] });
    const eds2 = await c.next();
    assert.equal(eds2.version_info, "42");
    assert.notEqual(eds2.nonce, eds1.nonce);
    assert.deepEqual(resourceNames(eds2).sort(), [...all].sort());
    c.send({ version_info: "42", type_url: EDS, response_nonce: eds2.nonce, resource_names: ["gw.unknown", ...all] });
    await waitUntil(() => nodes.ackedVersion("n-eds") === 42, "n-eds complete at 42");
    // Names removed: no answer needed (the next response carries only what is still subscribed).
    c.send({ version_info: "42", type_url: EDS, response_nonce: eds2.nonce, resource_names: ["gw.llama-rr", "gw.mixtral-wrr"] });
    await waitUntil(() => nodes.get("n-eds")!.types.find((t) => t.type_url === EDS)?.subscribed?.names === 2, "the smaller subscription seen");

    pub.publish(fullSnapshot(43));
    const [a, b] = [await c.next(), await c.next()];
    assert.deepEqual([a.type_url, a.version_info, b.type_url, b.version_info], [CDS, "43", EDS, "43"], "CDS before EDS");
    assert.equal(new Set([cds1.nonce, eds1.nonce, eds2.nonce, a.nonce, b.nonce]).size, 5, "every response has a fresh nonce");
    assert.deepEqual(resourceNames(b).sort(), ["gw.llama-rr", "gw.mixtral-wrr"], "only the subscribed assignments");
    // Not ACKed yet: the node still has 42 completely.
    assert.equal(nodes.ackedVersion("n-eds"), 42);
    c.send({ version_info: "43", type_url: CDS, response_nonce: a.nonce });
    c.send({ version_info: "43", type_url: EDS, response_nonce: b.nonce, resource_names: ["gw.llama-rr", "gw.mixtral-wrr"] });
    // The CDS ACK lists 5 clusters; the EDS ACK covers only 2 of them: not complete at 43.
    await waitUntil(() => nodes.get("n-eds")!.types.every((t) => t.acked?.version === "43"), "both ACKs at 43");
    assert.equal(nodes.ackedVersion("n-eds"), 42);
    c.close();
  });

  test("a stale nonce is ignored entirely; a NACK (old version + error_detail) is recorded and not resent", async () => {
    const c = open();
    c.send({ node: node("n-nack"), type_url: CDS });
    const cds = await c.next();
    c.send({ version_info: cds.version_info, type_url: CDS, response_nonce: cds.nonce });
    c.send({ type_url: EDS, resource_names: ["gw.llama-rr"] });
    const eds1 = await c.next();
    c.send({ version_info: eds1.version_info, type_url: EDS, response_nonce: eds1.nonce, resource_names: ["gw.llama-rr"] });
    pub.publish(fullSnapshot(44));
    const cds2 = await c.next();
    const eds2 = await c.next();
    assert.deepEqual([cds2.type_url, eds2.type_url, eds2.version_info], [CDS, EDS, "44"]);

    // Stale: answers eds1's nonce, would add a name and NACK if it were processed.
    c.send({ version_info: "43", type_url: EDS, response_nonce: eds1.nonce, resource_names: ["gw.llama-rr", "gw.qwen-failover"], error_detail: { code: 13, message: "stale" } });
    // Barrier: a current request that adds another name is answered at once — with only its own names.
    c.send({ version_info: "44", type_url: EDS, response_nonce: eds2.nonce, resource_names: ["gw.llama-rr", "gw.phi-failover2"] });
    const barrier = await c.next();
    assert.deepEqual(resourceNames(barrier).sort(), ["gw.llama-rr", "gw.phi-failover2"], "the stale request changed nothing");
    assert.equal(nodes.get("n-nack")!.types.find((t) => t.type_url === EDS)!.nacks_total, 0);

    // NACK of the barrier response: previous version + error_detail.
    c.send({ version_info: "43", type_url: EDS, response_nonce: barrier.nonce, resource_names: ["gw.llama-rr", "gw.phi-failover2"], error_detail: { code: 13, message: "Proto constraint validation failed: endpoints[0]: bad" } });
    await waitUntil(() => nodes.get("n-nack")!.types.find((t) => t.type_url === EDS)!.state === "nacked", "the NACK recorded");
    const eds = nodes.get("n-nack")!.types.find((t) => t.type_url === EDS)!;
    assert.deepEqual(eds.nacked && { ...eds.nacked, at: "" }, { version: "44", accepted_version: "43", message: "Proto constraint validation failed: endpoints[0]: bad", code: 13, at: "" });
    assert.equal(eds.nacks_total, 1);
    assert.deepEqual(nacks.filter((n) => n.node === "n-nack").map((n) => [n.type_url, n.version, n.accepted_version, n.message]), [[EDS, "44", "43", "Proto constraint validation failed: endpoints[0]: bad"]]);
    // A later request with the same nonce (gRPC's client repeats its error_detail) only updates the subscription:
    // the added name is answered (same version), no second NACK is counted.
    c.send({ version_info: "43", type_url: EDS, response_nonce: barrier.nonce, resource_names: ["gw.llama-rr", "gw.phi-failover2", "gw.qwen-failover"], error_detail: { code: 13, message: "Proto constraint validation failed: endpoints[0]: bad" } });
    const upd = await c.next();
    assert.deepEqual([upd.type_url, upd.version_info, resourceNames(upd).sort()], [EDS, "44", ["gw.llama-rr", "gw.phi-failover2", "gw.qwen-failover"]]);
    assert.equal(nodes.get("n-nack")!.types.find((t) => t.type_url === EDS)!.nacks_total, 1);
    // Not resent otherwise: the next responses are the next version's, CDS first.
    pub.publish(fullSnapshot(45));
    const [x, y] = [await c.next(), await c.next()];
    assert.deepEqual([x.type_url, x.version_info, y.type_url, y.version_info], [CDS, "45", EDS, "45"]);
    c.send({ version_info: "45", type_url: EDS, response_nonce: y.nonce, resource_names: ["gw.llama-rr", "gw.phi-failover2", "gw.qwen-failover"] });
    await waitUntil(() => nodes.get("n-nack")!.types.find((t) => t.type_url === EDS)!.state === "acked", "acked again");
    assert.equal(nodes.get("n-nack")!.types.find((t) => t.type_url === EDS)!.nacked?.message, "Proto constraint validation failed: endpoints[0]: bad", "the last NACK stays visible");
    c.close();
  });

  test("types other than CDS and EDS are never answered (an empty LDS would delete Envoy's listeners)", async () => {
    const c = open();
    c.send({ node: node("n-lds"), type_url: "type.googleapis.com/envoy.config.listener.v3.Listener" });
    c.send({ type_url: CDS });
    const r = await c.next();
    assert.equal(r.type_url, CDS);
    c.send({ type_url: EDS, resource_names: ["gw.empty"] });
    assert.equal((await c.next()).type_url, EDS);
    c.close();
  });

  test("a reconnecting client gets the current state at once, whatever version it says it has", async () => {
    const c1 = open();
    c1.send({ node: node("n-re"), type_url: CDS });
    const r1 = await c1.next();
    c1.send({ version_info: r1.version_info, type_url: CDS, response_nonce: r1.nonce });
    c1.close();
    await waitUntil(() => nodes.get("n-re")?.connected === false, "disconnect recorded");
    assert.ok(nodes.get("n-re")!.disconnected_at);
    pub.publish(fullSnapshot(46));
    const c2 = open();
    c2.send({ node: node("n-re"), version_info: r1.version_info, type_url: CDS });
    c2.send({ version_info: r1.version_info, type_url: EDS, resource_names: ["gw.qwen-failover"] });
    const [a, b] = [await c2.next(), await c2.next()];
    assert.deepEqual([a.type_url, a.version_info, b.type_url, b.version_info, resourceNames(b)], [CDS, "46", EDS, "46", ["gw.qwen-failover"]]);
    // Same version again on a new stream: answered too (a cheap resend; Envoy skips unchanged clusters).
    const c3 = open();
    c3.send({ node: node("n-re2"), version_info: "46", type_url: CDS });
    assert.equal((await c3.next()).version_info, "46");
    c2.close();
    c3.close();
  });

  test("who may connect: allow-listed peers without a token, others with a plugin/admin token", async () => {
    const auth = { roleOf: (t: string) => ({ "plugin-token-xxxxxxxxxxxx": "plugin", "viewer-token-xxxxxxxxxxxx": "viewer" })[t] ?? null };
    const loopback = peerOrTokenAuthorizer(auth, [["127.0.0.0", 8, "ipv4"]], ["plugin", "admin"]);
    const none = peerOrTokenAuthorizer(auth, [], ["plugin", "admin"]);
    const md = (token?: string): grpc.Metadata => {
      const m = new grpc.Metadata();
      if (token) m.set("authorization", `Bearer ${token}`);
      return m;
    };
    assert.deepEqual(loopback({ peer: "127.0.0.1:5000", metadata: md() }), { ok: true });
    assert.equal((none({ peer: "127.0.0.1:5000", metadata: md() }) as { code: number }).code, grpc.status.UNAUTHENTICATED);
    assert.deepEqual(none({ peer: "10.0.0.1:5000", metadata: md("plugin-token-xxxxxxxxxxxx") }), { ok: true });
    assert.equal((none({ peer: "10.0.0.1:5000", metadata: md("viewer-token-xxxxxxxxxxxx") }) as { code: number }).code, grpc.status.PERMISSION_DENIED);
    assert.equal((loopback({ peer: "127.0.0.1:5000", metadata: md("wrong-token") }) as { code: number }).code, grpc.status.UNAUTHENTICATED, "a token sent is judged");
    assert.deepEqual(["ipv4:10.1.2.3:80", "[::1]:443", "[::ffff:10.0.0.9]:1", "10.0.0.2:9"].map(peerIp), ["10.1.2.3", "::1", "10.0.0.9", "10.0.0.2"]);

    const guarded = createAdsServer({ snapshot: pub.current, authorize: none, pollMs: 20 });
    const port = await guarded.listen("127.0.0.1", 0);
    try {
      const refused = new RawAds(`127.0.0.1:${port}`);
      clients.push(refused);
      refused.send({ node: node("n-auth"), type_url: CDS });
      assert.equal((await refused.ended()).code, grpc.status.UNAUTHENTICATED);
      const allowed = new RawAds(`127.0.0.1:${port}`, { authorization: "Bearer plugin-token-xxxxxxxxxxxx" });
      clients.push(allowed);
      allowed.send({ node: node("n-auth"), type_url: CDS });
      assert.equal((await allowed.next()).type_url, CDS);
      // Without subscribe, the server notices a new snapshot by polling: pushed all the same.
      pub.publish(fullSnapshot(47));
      assert.equal((await allowed.next()).version_info, "47");
    } finally {
      await guarded.stop(100);
    }
  });

  test("stop(): every stream ends with UNAVAILABLE (clients reconnect elsewhere); the node shows disconnected", async () => {
    const own = createAdsServer({ snapshot: pub.current, subscribe: (l) => pub.subscribe(l), nodes });
    const port = await own.listen("127.0.0.1", 0);
    const c = new RawAds(`127.0.0.1:${port}`);
    clients.push(c);
    c.send({ node: node("n-stop"), type_url: CDS });
    await c.next();
    assert.equal(own.streams(), 1);
    await own.stop(200);
    assert.equal((await c.ended()).code, grpc.status.UNAVAILABLE);
    assert.equal(nodes.get("n-stop")!.connected, false);
    assert.equal(own.streams(), 0);
  });
});

async function waitUntil(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
