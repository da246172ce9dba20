/**
 * The part of the real-Envoy e2e that runs everywhere (no Envoy needed): the bootstrap the e2e
 * starts Envoy with is generated here exactly as gateway.e2e.test.ts generates it, and proven
 * - valid against Envoy's v3 protos (envoy/validate: unknown fields, enums, durations, PGV rules,
 *   xDS sources naming a static non-EDS cluster);
 * - the shipped envoy/bootstrap.yaml with only the intended values changed (same structure);
 * - consistent with itself: the plugin configuration satisfies contract 2, its control cluster is
 *   the static HTTP/1.1 cluster the plugin calls, CDS comes over ADS from a separate static HTTP/2
 *   cluster at the control's gRPC port, the route's cluster_header and the strip filter's headers are
 *   the plugin's, the strip runs before the plugin, the retry policy walks the plugin's fallbacks;
 * - the REST fallback (`xds: "rest"`): the shipped bootstrap with envoy/snippets/xds-rest.yaml as its
 *   dynamic_resources and the ADS cluster dropped, nothing else changed, valid, polling the control cluster.
 * And the control plane Envoy would talk to, run for real (Redis, control service with ADS, mock
 * instances, the e2e's deployments): the CDS/EDS Envoy gets over an ADS stream (token-less, from
 * loopback) and by a token-less REST poll, validated, every cluster's EDS source usable by that
 * bootstrap (ADS: the same stream; REST: the static control cluster), endpoints being the very ip:port
 * strings the plugin puts in x-gateway-destination-endpoint.
 * Also the admin-output parsers the e2e waits with, on documents validated against admin.v3 protos.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { formatIssue, validateBootstrap, validateDiscoveryResponse, validateMessage, TYPE_URLS } from "../../envoy/validate/index.js";
import { routeRetryPolicy } from "../../control/xds/build.js";
import { loadXdsProto } from "../../control/xds/proto.js";
import { RawAds } from "../xds/ads-client.js";
import { waitFor } from "../support/redis.js";
import { E2E_PLUGIN_SETTINGS, HCM, STRIP_FILTER, WASM_FILTER, WASM_PATH, e2eBootstrap, loadRestXdsSnippet, loadShippedBootstrap, locate } from "./support/bootstrap.js";
import { parseClusters, parseStats, pluginStat } from "./support/envoy.js";
import { DEPLOYMENTS, PLUGIN, startStack, type Stack } from "./support/stack.js";

/* eslint-disable @typescript-eslint/no-explicit-any */
const PORTS = { adminPort: 19901, listenerPort: 19000, controlPort: 18080, adsPort: 18001, saasPort: 18443 };
const generate = (ports: typeof PORTS & { xds?: "ads" | "rest" } = PORTS) => e2eBootstrap({ nodeId: "e2e-envoy-test", pluginToken: PLUGIN, ...ports });
const proto = loadXdsProto();

/**
 * Leaf paths where two JSON values differ. Array elements carrying a `name` are addressed by it
 * (`clusters[name=saas_openai]`), so paths stay readable and independent of order.
 */
function diffPaths(a: unknown, b: unknown, path = ""): string[] {
  if (a === b) return [];
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;
  if (Array.isArray(a) && Array.isArray(b)) {
    const named = (x: unknown[]) => x.every((e) => isObj(e) && typeof e.name === "string");
    if (named(a) && named(b)) {
      const byName = (x: unknown[]) => new Map(x.map((e) => [(e as { name: string }).name, e]));
      const ma = byName(a);
      const mb = byName(b);
      const names = [...new Set([...ma.keys(), ...mb.keys()])];
      return names.flatMap((n) => diffPaths(ma.get(n), mb.get(n), `${path}[name=${n}]`));
    }
    const n = Math.max(a.length, b.length);
    return Array.from({ length: n }, (_, i) => diffPaths(a[i], b[i], `${path}[${i}]`)).flat();
  }
  if (isObj(a) && isObj(b) && !Array.isArray(a) && !Array.isArray(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    return keys.flatMap((k) => diffPaths(a[k], b[k], path === "" ? k : `${path}.${k}`));
  }
  return [path];
}

describe("e2e bootstrap: generated from envoy/bootstrap.yaml, valid without Envoy", () => {
  test("valid against Envoy's v3 protos (+ overlay) and Envoy's startup cross-references, no warnings", () => {
    const { bootstrap } = generate();
    const r = validateBootstrap(bootstrap);
    assert.deepEqual(r.errors.map(formatIssue), []);
    assert.deepEqual(r.warnings.map(formatIssue), []);
  });

  test("same structure as the shipped bootstrap: only the test's values differ", () => {
    const shipped = loadShippedBootstrap();
    const { bootstrap, names } = generate();
    const L = `static_resources.listeners[name=${names.listener}]`;
    const WASM = `${L}.filter_chains[0].filters[name=${HCM}].typed_config.http_filters[name=${WASM_FILTER}].typed_config.config`;
    const C = (n: string) => `static_resources.clusters[name=${n}]`;
    const expected = [
      "node.id",
      "admin.address.socket_address.port_value",
      `${L}.address.socket_address.address`, // 0.0.0.0 → 127.0.0.1
      `${L}.address.socket_address.port_value`,
      `${WASM}.vm_config.code.local.filename`,
      `${WASM}.configuration.value`,
      `${C(names.controlCluster)}.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value`,
      // The shipped example lists three control replicas; the e2e runs one.
      `${C(names.controlCluster)}.load_assignment.endpoints[0].lb_endpoints[1]`,
      `${C(names.controlCluster)}.load_assignment.endpoints[0].lb_endpoints[2]`,
      `${C(names.xdsCluster)}.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value`,
      `${C(names.xdsCluster)}.load_assignment.endpoints[0].lb_endpoints[0].endpoint.health_check_config.port_value`,
      `${C(names.xdsCluster)}.load_assignment.endpoints[0].lb_endpoints[1]`,
      `${C(names.xdsCluster)}.load_assignment.endpoints[0].lb_endpoints[2]`,
      `${C(names.saasCluster)}.type`, // LOGICAL_DNS → STATIC
      `${C(names.saasCluster)}.dns_lookup_family`, // removed
      `${C(names.saasCluster)}.transport_socket`, // removed: the stand-in speaks plain HTTP
      `${C(names.saasCluster)}.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address`,
      `${C(names.saasCluster)}.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value`,
    ];
    assert.deepEqual(diffPaths(shipped, bootstrap).sort(), expected.sort());
  });

  test("the REST fallback: envoy/snippets/xds-rest.yaml as dynamic_resources, the ADS cluster dropped, nothing else; valid", () => {
    const ads = generate();
    const rest = e2eBootstrap({ nodeId: "e2e-envoy-test", pluginToken: PLUGIN, ...PORTS, xds: "rest" });
    assert.equal(rest.names.transport, "rest");
    assert.equal(rest.names.xdsCluster, rest.names.controlCluster);
    const r = validateBootstrap(rest.bootstrap);
    assert.deepEqual(r.errors.map(formatIssue), []);
    assert.deepEqual(r.warnings.map(formatIssue), []);
    const changed = diffPaths(ads.bootstrap, rest.bootstrap).sort();
    assert.ok(changed.length > 0 && changed.every((p) => p.startsWith("dynamic_resources.") || p.startsWith(`static_resources.clusters[name=${ads.names.xdsCluster}]`)), changed.join("\n"));
    assert.equal(rest.bootstrap.static_resources.clusters.some((c: { name: string }) => c.name === ads.names.xdsCluster), false);
    assert.deepEqual(rest.bootstrap.dynamic_resources, loadRestXdsSnippet());
    const at = locate(rest.bootstrap);
    assert.equal(at.transport, "rest");
    assert.equal(at.cdsSource.api_type, "REST");
    assert.deepEqual(at.cdsSource.cluster_names, [rest.plugin.control_cluster]);
  });

  test("ADS needs the control's gRPC port: generation without adsPort is refused", () => {
    assert.throws(() => e2eBootstrap({ nodeId: "x", pluginToken: PLUGIN, adminPort: 1, listenerPort: 2, controlPort: 3, saasPort: 4 }), /adsPort/);
  });

  test("plugin configuration: contract 2, the shipped settings + token + test timings", () => {
    const shipped = JSON.parse(locate(loadShippedBootstrap()).wasmConfig.configuration.value) as Record<string, unknown>;
    const { bootstrap, plugin } = generate();
    const raw = JSON.parse(locate(bootstrap).wasmConfig.configuration.value) as Record<string, unknown>;
    assert.deepEqual(raw, { ...shipped, ...E2E_PLUGIN_SETTINGS, control_token: PLUGIN });
    assert.equal(plugin.control_token, PLUGIN);
    assert.equal(plugin.unknown_model, "passthrough", "the passthrough test needs unknown models left alone");
    assert.equal(plugin.body_routing, true, "the e2e routes by the JSON body as well as by header");
    assert.ok(plugin.long_poll_seconds * 1000 < plugin.control_timeout_ms);
  });

  test("the pieces fit: control cluster, headers, filter order, retries, wasm file, SaaS stand-in", () => {
    const { bootstrap, plugin, names } = generate();
    const at = locate(bootstrap);
    // The plugin's control cluster: static, HTTP/1.1 (no protocol options), at the control's HTTP port.
    assert.equal(names.controlCluster, plugin.control_cluster);
    const control = at.cluster(plugin.control_cluster);
    assert.equal(control.type, "STATIC");
    assert.equal(control.typed_extension_protocol_options, undefined, "the plugin's http_calls must stay HTTP/1.1");
    assert.deepEqual(control.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address, { address: "127.0.0.1", port_value: PORTS.controlPort });
    // CDS over ADS (and each cluster's EDS on the same stream), from a static HTTP/2 cluster at the gRPC port.
    assert.equal(names.transport, "ads");
    assert.equal(at.transport, "ads");
    assert.deepEqual(at.cds, { resource_api_version: "V3", ads: {}, initial_fetch_timeout: "5s" });
    assert.equal(at.cdsSource.api_type, "GRPC");
    assert.equal(at.cdsSource.transport_api_version, "V3");
    assert.deepEqual(at.cdsSource.grpc_services.map((g: any) => g.envoy_grpc.cluster_name), [names.xdsCluster]);
    assert.notEqual(names.xdsCluster, names.controlCluster);
    const xds = at.cluster(names.xdsCluster);
    assert.equal(xds.type, "STATIC");
    assert.deepEqual(xds.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].explicit_http_config, { http2_protocol_options: {} });
    assert.deepEqual(xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address, { address: "127.0.0.1", port_value: PORTS.adsPort });
    // The route the plugin's headers select, and the retries that walk its fallback list.
    assert.deepEqual(at.gatewayRoute.match.headers, [{ name: plugin.cluster_header, present_match: true }]);
    assert.equal(at.gatewayRoute.route.cluster_header, plugin.cluster_header);
    assert.deepEqual(at.gatewayRoute.route.retry_policy, routeRetryPolicy({ maxFallbacks: plugin.max_fallbacks }));
    assert.ok(at.routes.indexOf(at.gatewayRoute) < at.routes.indexOf(at.saasRoute), "the gateway route must be tried before the SaaS fall-through");
    // Clients cannot choose: every internal header is stripped, before the plugin runs.
    const removed = at.strip.typed_config.mutations.request_mutations.map((m: { remove?: string }) => m.remove);
    for (const h of [plugin.endpoint_header, plugin.cluster_header, plugin.deployment_header, plugin.instance_header]) assert.ok(removed.includes(h), `${h} not stripped`);
    assert.ok(at.filterIndex(STRIP_FILTER) < at.filterIndex(WASM_FILTER), "strip must run before the plugin");
    assert.equal(at.filters[at.filters.length - 1]!.name, "envoy.filters.http.router");
    // Body routing needs the headers held (Envoy >= 1.35); the plugin clears the route cache itself.
    assert.equal(at.wasmConfig.allow_on_headers_stop_iteration, true);
    assert.equal(at.wasmConfig.vm_config.code.local.filename, WASM_PATH);
    assert.ok(existsSync(WASM_PATH), "build/plugin.wasm missing: npm run build:plugin");
    // Listener and admin on loopback, distinct ports.
    assert.deepEqual(at.listener.address.socket_address, { address: "127.0.0.1", port_value: PORTS.listenerPort });
    assert.deepEqual(bootstrap.admin.address.socket_address, { address: "127.0.0.1", port_value: PORTS.adminPort });
    // SaaS route → the stand-in, plain HTTP, the route itself untouched (Host still rewritten).
    const saas = at.cluster(names.saasCluster);
    assert.equal(saas.transport_socket, undefined);
    assert.deepEqual(saas.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address, { address: "127.0.0.1", port_value: PORTS.saasPort });
    assert.equal(at.saasRoute.route.cluster, names.saasCluster);
    assert.equal(at.saasRoute.route.host_rewrite_literal, "api.openai.com");
  });

  test("generation refuses a relative wasm path", () => {
    assert.throws(() => e2eBootstrap({ nodeId: "x", pluginToken: PLUGIN, ...PORTS, wasmPath: "build/plugin.wasm" }), /absolute/);
  });
});

describe("the control plane the e2e's Envoy talks to (real control service, no Envoy)", () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await stack?.close();
  });

  /** A DiscoveryRequest as Envoy's REST subscription POSTs it (content-type JSON, no authorization). */
  const poll = async (path: string, node: unknown, typeUrl: string, names: string[] = [], version = "") => {
    const r = await fetch(`http://127.0.0.1:${stack.controlPort}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ version_info: version, node, resource_names: names, type_url: typeUrl }),
    });
    const text = await r.text();
    return { status: r.status, text, body: text === "" ? null : (JSON.parse(text) as any) };
  };

  test("ADS: CDS + EDS for the e2e's deployments over one stream, token-less from loopback, proto-valid, wired to the bootstrap", async () => {
    const { bootstrap } = generate({ ...PORTS, controlPort: stack.controlPort, adsPort: stack.adsPort });
    const table = await stack.table();
    const ads = new RawAds(`127.0.0.1:${stack.adsPort}`);
    try {
      // As Envoy opens the stream: the node (set_node_on_first_message_only), a wildcard CDS request.
      ads.send({ version_info: "", node: bootstrap.node, resource_names: [], type_url: TYPE_URLS.cluster, response_nonce: "" });
      let cds = await ads.next(5_000, "CDS over ADS");
      while (cds.version_info !== String(table.version)) cds = await ads.next(5_000, "CDS at the table's version");
      assert.equal(cds.type_url, TYPE_URLS.cluster);
      const clusters = cds.resources.map((a) => proto.anyToJson({ type_url: a.type_url, value: a.value }) as any);
      assert.deepEqual(validateDiscoveryResponse({ version_info: cds.version_info, type_url: cds.type_url, resources: clusters }).errors.map(formatIssue), []);
      assert.deepEqual(clusters.map((c) => c.name).sort(), table.deployments.map((d) => d.cluster).sort());
      // Each cluster's endpoints come over the same stream (the bootstrap has no other EDS source for them).
      for (const c of clusters) assert.deepEqual(c.eds_cluster_config.eds_config, { resource_api_version: "V3", ads: {} }, c.name);
      const withClusters = structuredClone(bootstrap);
      withClusters.static_resources.clusters.push(...clusters.map(({ "@type": _t, ...rest }) => rest));
      assert.deepEqual(validateBootstrap(withClusters).errors.map(formatIssue), []);
      // ACK (same nonce, that version), then EDS for every cluster learned.
      ads.send({ version_info: cds.version_info, resource_names: [], type_url: TYPE_URLS.cluster, response_nonce: cds.nonce });
      const names = clusters.map((c) => c.eds_cluster_config.service_name ?? c.name).sort();
      ads.send({ version_info: "", resource_names: names, type_url: TYPE_URLS.clusterLoadAssignment, response_nonce: "" });
      const eds = await ads.next(5_000, "EDS over ADS");
      assert.equal(eds.type_url, TYPE_URLS.clusterLoadAssignment);
      assert.equal(eds.version_info, String(table.version));
      const clas = eds.resources.map((a) => proto.anyToJson({ type_url: a.type_url, value: a.value }) as any);
      assert.deepEqual(clas.map((c) => c.cluster_name).sort(), names);
      for (const d of table.deployments) {
        const cla = clas.find((c) => c.cluster_name === d.cluster);
        const addresses = cla.endpoints.flatMap((g: any) => g.lb_endpoints.map((e: any) => `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}`));
        assert.deepEqual(addresses.sort(), d.instances.map((i) => i.address).sort(), d.id);
      }
    } finally {
      ads.close();
    }
  });

  test("REST fallback: CDS + EDS for the e2e's deployments, token-less from loopback, proto-valid, wired to the bootstrap", async () => {
    const { bootstrap, plugin } = generate({ ...PORTS, controlPort: stack.controlPort, xds: "rest" });
    const table = await stack.table();
    // xDS is built from the same snapshot as the table: wait until it serves that version.
    let cds = await poll("/v3/discovery:clusters", bootstrap.node, TYPE_URLS.cluster);
    await waitFor(async () => (cds = await poll("/v3/discovery:clusters", bootstrap.node, TYPE_URLS.cluster)).body?.version_info === String(table.version), 5_000, "CDS at the table's version");
    assert.equal(cds.status, 200, cds.text);
    const v = validateDiscoveryResponse(cds.body);
    assert.deepEqual(v.errors.map(formatIssue), []);

    // One cluster per deployment, named as the plugin will name it in x-gateway-cluster.
    const clusterNames = cds.body.resources.map((c: { name: string }) => c.name).sort();
    assert.deepEqual(clusterNames, table.deployments.map((d) => d.cluster).sort());
    assert.deepEqual(table.deployments.map((d) => d.id).sort(), DEPLOYMENTS.map((d) => d.id).sort());
    for (const c of cds.body.resources) {
      // EDS comes from the bootstrap's static control cluster (Envoy refuses any other source).
      assert.deepEqual(c.eds_cluster_config.eds_config.api_config_source.cluster_names, [plugin.control_cluster], c.name);
      // override_host reads the header the plugin writes.
      const lb = c.load_balancing_policy.policies[0].typed_extension_config;
      assert.equal(lb.name, "envoy.load_balancing_policies.override_host");
      assert.deepEqual(lb.typed_config.override_host_sources, [{ header: plugin.endpoint_header }]);
    }
    // As Envoy would hold them: the bootstrap with these clusters added is still a valid bootstrap
    // (their EDS source resolves to a static, non-EDS cluster).
    const withClusters = structuredClone(bootstrap);
    withClusters.static_resources.clusters.push(...cds.body.resources.map((c: Record<string, unknown>) => {
      const { "@type": _t, ...rest } = c;
      return rest;
    }));
    const vb = validateBootstrap(withClusters);
    assert.deepEqual(vb.errors.map(formatIssue), []);

    // EDS, one subscription per cluster as Envoy polls it.
    for (const d of table.deployments) {
      const eds = await poll("/v3/discovery:endpoints", bootstrap.node, TYPE_URLS.clusterLoadAssignment, [d.cluster]);
      assert.equal(eds.status, 200, eds.text);
      assert.deepEqual(validateDiscoveryResponse(eds.body).errors.map(formatIssue), []);
      assert.equal(eds.body.version_info, String(table.version));
      assert.equal(eds.body.resources.length, 1);
      const cla = eds.body.resources[0];
      assert.equal(cla.cluster_name, d.cluster);
      const endpoints = cla.endpoints.flatMap((g: any) =>
        g.lb_endpoints.map((e: any) => ({ address: `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}`, priority: g.priority ?? 0, weight: e.load_balancing_weight, health: e.health_status })),
      );
      // Envoy keys its hosts by "ip:port": exactly the strings the plugin writes for each instance.
      assert.deepEqual(endpoints.map((e: { address: string }) => e.address).sort(), d.instances.map((i) => i.address).sort());
      assert.deepEqual(d.instances.map((i) => i.address).sort(), d.instances.map((i) => stack.address(`${d.id}/${i.id}`)).sort());
      for (const e of endpoints) assert.equal(e.health, undefined, `${d.id}: every instance active → no EDS health_status`);
      const spec = DEPLOYMENTS.find((x) => x.id === d.id)!;
      if (spec.strategy === "failover") {
        // Tiers 0/10 → Envoy priorities 0/1 (the fallback policy follows the same tiers).
        const prio = Object.fromEntries(d.instances.map((i) => [i.id, endpoints.find((e: { address: string }) => e.address === i.address).priority]));
        assert.deepEqual(prio, { p1: 0, p2: 0, b1: 1, b2: 1 });
      }
      if (spec.strategy === "weighted_round_robin") {
        const w = Object.fromEntries(d.instances.map((i) => [i.id, endpoints.find((e: { address: string }) => e.address === i.address).weight]));
        assert.deepEqual(w, { heavy: 3, light: 1 });
      }
    }
    // Unchanged → 304 (Envoy keeps what it has).
    assert.equal((await poll("/v3/discovery:clusters", bootstrap.node, TYPE_URLS.cluster, [], String(table.version))).status, 304);
  });

  test("the plugin's table from the control service (plugin token): every model of the e2e, all instances active", async () => {
    const table = await stack.table();
    for (const d of DEPLOYMENTS) {
      assert.equal(table.models[d.model], d.id);
      const td = table.deployments.find((x) => x.id === d.id)!;
      assert.equal(td.strategy, d.strategy);
      assert.deepEqual(td.instances.map((i) => i.state), d.instances.map(() => "active"));
    }
    assert.equal(table.models["gpt-4o-mini"], undefined, "the passthrough model must stay unknown");
  });
});

describe("admin output parsers used by the e2e's waits", () => {
  // A /clusters?format=json document as Envoy writes it (proto field names), checked against the
  // admin.v3 protos so the parser reads real field names.
  const sample = {
    cluster_statuses: [
      {
        name: "gw.rr",
        added_via_api: true,
        host_statuses: [
          { address: { socket_address: { address: "127.0.0.1", port_value: 40001 } }, health_status: { eds_health_status: "HEALTHY" }, weight: 1, priority: 0 },
          { address: { socket_address: { address: "127.0.0.1", port_value: 40002 } }, health_status: { failed_active_health_check: true, eds_health_status: "UNHEALTHY" }, weight: 3, priority: 1 },
          { address: { socket_address: { address: "::1", port_value: 40003 } }, health_status: { pending_active_hc: true, failed_outlier_check: true } },
        ],
      },
      { name: "gateway_control", host_statuses: [] },
    ],
  };

  test("the sample is a valid envoy.admin.v3.Clusters", () => {
    assert.deepEqual(validateMessage("envoy.admin.v3.Clusters", sample).errors.map(formatIssue), []);
  });

  test("parseClusters", () => {
    const cs = parseClusters(sample);
    const rr = cs.get("gw.rr")!;
    assert.equal(rr.addedViaApi, true);
    assert.equal(cs.get("gateway_control")!.addedViaApi, false);
    assert.deepEqual(rr.hosts.map((h) => h.address), ["127.0.0.1:40001", "127.0.0.1:40002", "[::1]:40003"]);
    assert.deepEqual(rr.hosts.map((h) => [h.failedActiveHc, h.pendingActiveHc, h.failedOutlier, h.eds]), [
      [false, false, false, "HEALTHY"],
      [true, false, false, "UNHEALTHY"],
      [false, true, true, "UNKNOWN"],
    ]);
    // lowerCamelCase JSON (other proto3 printers) reads the same.
    const camel = parseClusters({ clusterStatuses: [{ name: "x", addedViaApi: true, hostStatuses: [{ address: { socketAddress: { address: "10.0.0.1", portValue: 1 } }, healthStatus: { failedActiveHealthCheck: true } }] }] });
    assert.deepEqual(camel.get("x")!.hosts.map((h) => [h.address, h.failedActiveHc]), [["10.0.0.1:1", true]]);
  });

  test("parseStats and pluginStat (wasm stats in the wasmcustom namespace, or without it)", () => {
    const s = parseStats(
      [
        "cluster.gateway_control.upstream_rq_total: 12",
        "cluster_manager.cds.update_rejected: 0",
        'cluster_manager.cds.version_text: "7"',
        "wasmcustom.gateway.table.version: 7",
        "wasmcustom.gateway.deployment.rr.instance.a.picks: 10",
        "http.edge_http.downstream_rq_time: P0(nan,1) P25(nan,1.025)",
        "",
      ].join("\n"),
    );
    assert.equal(s.get("cluster_manager.cds.update_rejected"), 0);
    assert.equal(s.has("cluster_manager.cds.version_text"), false);
    assert.equal(s.has("http.edge_http.downstream_rq_time"), false);
    assert.equal(pluginStat(s, "gateway.table.version"), 7);
    assert.equal(pluginStat(s, "gateway.deployment.rr.instance.a.picks"), 10);
    assert.equal(pluginStat(parseStats("gateway.table.version: 3\n"), "gateway.table.version"), 3);
    assert.equal(pluginStat(s, "gateway.nothing"), undefined);
  });
});
