// The real-Envoy plugin bench (bench/envoy-plugin.bench.ts) without Envoy: the bootstraps it starts
// Envoy with are valid against Envoy's protos and differ only in the wasm filter (and the baselines'
// strip names); the routing table and the xDS resources describe the same instances; a missing Envoy
// gives an honest skipped result (exit 0); and a tiny dry run against sim-envoy (SIMULATED, not
// Envoy) goes through the whole orchestration and labels everything SIMULATED.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { TYPE_URL } from "../../control/xds/build.js";
import { discoveryResponse } from "../../control/xds/discovery.js";
import { formatIssue, validateBootstrap, validateDiscoveryResponse } from "../../envoy/validate/index.js";
import { BENCHES } from "../../bench/all.js";
import { machineStart } from "../../bench/support.js";
import {
  ABSENT_HEADERS, NOOP_WASM, PLUGIN_WASM, VARIANTS, VARIANT_IDS, benchBootstrap, benchRequests, routingTable, xdsSnapshot,
} from "../../bench/envoy-plugin/setup.js";
import { DEFAULT_SETTINGS, SIMULATED_LABEL, Started, probe, runEnvoyPluginBench, skippedResult, type MeasuredResult } from "../../bench/envoy-plugin/run.js";
import { HCM, REPO, STRIP_FILTER, WASM_FILTER, locate } from "../e2e-envoy/support/bootstrap.js";

/* eslint-disable @typescript-eslint/no-explicit-any */
/** The parts compared (locate() needs the wasm filter, which the router-only bootstrap has not). */
function parts(d: any) {
  const listeners = d.static_resources.listeners as any[];
  assert.equal(listeners.length, 1);
  const hcm = listeners[0].filter_chains[0].filters.find((f: any) => f.name === HCM).typed_config;
  const filters = hcm.http_filters as any[];
  return {
    hcm,
    filters,
    strip: filters.find((f) => f.name === STRIP_FILTER),
    wasm: filters.find((f) => f.name === WASM_FILTER)?.typed_config.config,
    clusters: d.static_resources.clusters,
    cds: d.dynamic_resources.cds_config,
  };
}
const PORTS = { adminPort: 19911, listenerPort: 19010, controlPort: 18090, saasPort: 18090 };
const SIM = join(REPO, "test/e2e-envoy/support/sim-envoy");

describe("envoy-plugin bench: bootstraps", () => {
  for (const id of VARIANT_IDS) {
    test(`${id}: valid against Envoy's v3 protos and startup cross-references, no warnings`, () => {
      const r = validateBootstrap(benchBootstrap(VARIANTS[id], PORTS));
      assert.deepEqual(r.errors.map(formatIssue), []);
      assert.deepEqual(r.warnings.map(formatIssue), []);
    });
  }

  test("a broken bootstrap fails the same validation (unknown field; CDS from a cluster that does not exist)", () => {
    const unknownField = benchBootstrap(VARIANTS.plugin, PORTS);
    locate(unknownField).gatewayRoute.route.cluster_headr = "x-gateway-cluster";
    const r1 = validateBootstrap(unknownField);
    assert.equal(r1.ok, false);
    assert.ok(r1.errors.some((e) => /cluster_headr/.test(formatIssue(e))), r1.errors.map(formatIssue).join("\n"));

    const danglingCds = benchBootstrap(VARIANTS.router, PORTS);
    parts(danglingCds).cds.api_config_source.cluster_names = ["no_such_cluster"];
    const r2 = validateBootstrap(danglingCds);
    assert.equal(r2.ok, false);
    assert.ok(r2.errors.some((e) => /no_such_cluster/.test(formatIssue(e))), r2.errors.map(formatIssue).join("\n"));
  });

  test("the variants differ only in the wasm filter and the baselines' strip names", () => {
    const docs = Object.fromEntries(VARIANT_IDS.map((id) => [id, benchBootstrap(VARIANTS[id], PORTS)])) as Record<string, any>;
    const filters = (id: string) => parts(docs[id]).filters.map((f: any) => f.name);
    assert.deepEqual(filters("router"), [STRIP_FILTER, "envoy.filters.http.router"]);
    for (const id of ["noop", "plugin", "plugin-observe"]) assert.deepEqual(filters(id), [STRIP_FILTER, WASM_FILTER, "envoy.filters.http.router"]);
    const wasmFile = (id: string) => parts(docs[id]).wasm.vm_config.code.local.filename;
    assert.equal(wasmFile("noop"), NOOP_WASM);
    assert.equal(wasmFile("plugin"), PLUGIN_WASM);
    const cfg = (id: string) => JSON.parse(parts(docs[id]).wasm.configuration.value);
    assert.equal(cfg("plugin").telemetry_interval_ms, 0);
    assert.equal(cfg("plugin").passive_failures, 0);
    assert.ok(cfg("plugin-observe").telemetry_interval_ms > 0 && cfg("plugin-observe").passive_failures > 0);
    const removed = (id: string) => parts(docs[id]).strip.typed_config.mutations.request_mutations.map((m: any) => m.remove);
    assert.deepEqual(removed("router"), [...ABSENT_HEADERS]);
    assert.deepEqual(removed("noop"), [...ABSENT_HEADERS]);
    assert.deepEqual(removed("plugin"), ["x-gateway-cluster", "x-gateway-destination-endpoint", "x-model-deployment", "x-model-instance"]);
    // Same routes, clusters, CDS source and HCM (access log removed everywhere) in every variant.
    const same = (d: any) => {
      const at = parts(d);
      return JSON.stringify({ clusters: at.clusters, cds: at.cds, hcm: { ...at.hcm, http_filters: undefined }, node: d.node.cluster, admin: d.admin });
    };
    for (const id of VARIANT_IDS) assert.equal(same(docs[id]), same(docs.plugin), id);
    assert.equal(locate(docs.plugin).hcm.access_log, undefined);
    assert.equal(locate(docs.plugin).gatewayRoute.route.cluster_header, "x-gateway-cluster");
  });
});

describe("envoy-plugin bench: table, xDS and requests describe the same instances", () => {
  const ports = Array.from({ length: 10 }, (_, i) => 20000 + i);
  const table = routingTable(100, 10, ports);
  const snap = xdsSnapshot(table, 60);

  test("CDS and EDS answers are valid DiscoveryResponses; each cluster has the table's addresses; override_host reads the plugin's header", () => {
    for (const typeUrl of [TYPE_URL.cluster, TYPE_URL.clusterLoadAssignment]) {
      const r = validateDiscoveryResponse(JSON.parse(discoveryResponse(snap, typeUrl, [])));
      assert.deepEqual(r.errors.map(formatIssue), [], typeUrl);
    }
    assert.equal(snap.clusters.length, 100);
    for (const d of table.deployments) {
      const cla = snap.endpointsByName.get(d.cluster)!;
      const addrs = cla.endpoints.flatMap((g) => g.lb_endpoints.map((e) => `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}`)).sort();
      assert.deepEqual(addrs, d.instances.map((i) => i.address).sort());
    }
    const lb = JSON.stringify(snap.clusters[0]!.load_balancing_policy);
    assert.match(lb, /override_host/);
    assert.match(lb, /x-gateway-destination-endpoint/);
  });

  test("baseline requests carry the routing headers of active instances of their model's deployment; plugin requests only x-model", () => {
    const base = benchRequests(table, VARIANTS.noop);
    const plug = benchRequests(table, VARIANTS.plugin);
    assert.equal(base.length, plug.length);
    assert.equal(new Set(plug.map((r) => r.headers["x-model"])).size, 100);
    for (const r of plug) assert.deepEqual(Object.keys(r.headers).sort(), ["content-type", "x-model"]);
    const pools = new Set<string>();
    for (const r of base) {
      const d = table.deployments.find((x) => x.id === table.models[r.headers["x-model"]!])!;
      assert.equal(r.headers["x-gateway-cluster"], d.cluster);
      const list = r.headers["x-gateway-destination-endpoint"]!.split(",");
      assert.equal(list.length, 3);
      for (const a of list) assert.equal(d.instances.find((i) => i.address === a)?.state, "active");
      assert.equal(d.instances.find((i) => i.address === list[0])!.id, r.headers["x-model-instance"]);
      pools.add(`${d.cluster} ${list[0]}`);
    }
    // Spread over (nearly) every active instance of every deployment, like the plugin's picks.
    assert.ok(pools.size >= 100 * 8, `${pools.size} (cluster, host) pairs`);
  });
});

describe("envoy-plugin bench: without Envoy", () => {
  test("skipped result: the reason in the table, status skipped", () => {
    const r = skippedResult("no Envoy binary: test", machineStart());
    assert.equal(r.status, "skipped");
    assert.deepEqual(r.table.rows, [[r.table.rows[0]![0]!, "SKIPPED: no Envoy binary: test"]]);
  });

  test("the bench run with no envoy on PATH and no ENVOY_BIN: prints SKIPPED, writes the skipped result, exits 0", () => {
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: "/nonexistent" };
    delete env.ENVOY_BIN;
    const r = spawnSync(process.execPath, ["--import", "tsx", join(REPO, "bench/envoy-plugin.bench.ts")], { env, encoding: "utf8", timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^SKIPPED: no Envoy binary/m);
    const file = /^results: (.+)$/m.exec(r.stdout)?.[1];
    assert.ok(file && existsSync(file), r.stdout);
    try {
      const json = JSON.parse(readFileSync(file, "utf8"));
      assert.equal(json.status, "skipped");
      assert.match(json.table.rows[0][1], /^SKIPPED: no Envoy binary/);
    } finally {
      rmSync(file, { force: true });
    }
  });

  test("the aggregator runs it", () => {
    assert.ok(BENCHES.some((b) => b.name === "envoy-plugin" && b.file === "envoy-plugin.bench.ts"));
  });
});

describe("envoy-plugin bench: dry run against sim-envoy (SIMULATED, not Envoy)", () => {
  const started = new Started();
  after(() => started.stopAll());

  test("orchestration end to end: plugin responses carry x-model-instance, ratios computed, every row labelled SIMULATED", { timeout: 180_000 }, async () => {
    const r = await runEnvoyPluginBench(
      { ...DEFAULT_SETTINGS, deployments: 3, instances: 3, connections: [2], rounds: 1, warmupS: 0, durationS: 1, amount: 60, hcIntervalS: null, envoyBin: SIM },
      started,
      () => {},
    );
    assert.equal(r.status, "measured");
    const m = r as MeasuredResult;
    assert.equal(m.simulated, true);
    assert.equal(m.label, SIMULATED_LABEL);
    assert.deepEqual(m.failures, []);
    for (const row of m.table.rows) assert.ok(row[0]!.startsWith(`${SIMULATED_LABEL}: `), row[0]);
    for (const c of m.cells) assert.ok(c.label.startsWith(SIMULATED_LABEL), c.label);
    // sim-envoy models only the shipped chain: no router-only variant there, said so.
    assert.deepEqual(m.not_run.map((n) => n.variant), ["router"]);
    const plugin = m.variants.find((v) => v.id === "plugin")!;
    assert.equal(plugin.table_version, 1);
    const p = await probe(plugin.listener, benchRequests(routingTable(3, 3, [1, 2, 3]), VARIANTS.plugin)[0]!);
    assert.equal(p.status, 200);
    assert.match(p.instance, /^i\d+$/);
    assert.equal(p.upstream, Number(p.instance.slice(1)));
    const cell = m.cells.find((c) => c.variant === "plugin")!;
    assert.ok(cell.ok2xx >= 60 && cell.cpuProcessUsPerRequest !== null);
    assert.ok(Number.isFinite(cell.perNoop) && Number.isFinite(cell.minusNoopUs), JSON.stringify(cell));
    assert.ok(Number.isFinite(m.goal[0]!.plugin_per_noop));
    // Never claimed under simulation.
    assert.equal(m.goal[0]!.met_whole_request, null);
    assert.equal(m.goal[0]!.met_filter_only, null);
  });
});
