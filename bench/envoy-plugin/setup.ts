// The pure half of the real-Envoy plugin bench (bench/envoy-plugin.bench.ts): the variants, the
// bootstrap each Envoy runs with, the routing table and the xDS resources the control mock serves,
// and the requests the load generator sends. No process is started here, so the test
// (test/bench/envoy-plugin.test.ts) checks all of it without Envoy.
//
// Every bootstrap is generated from envoy/bootstrap.yaml through the e2e's generator
// (test/e2e-envoy/support/bootstrap.ts: loopback ports, control cluster → the control mock, SaaS
// cluster → a local port, absolute wasm path, plugin configuration checked against contract 2), then
// changed only as follows, so the variants differ in the wasm filter and nothing else:
//   - all: no access log (one stdout line per request would be measured too, and piped into this
//     process); the REST fallback (envoy/snippets/xds-rest.yaml: the control mock serves REST xDS
//     only, no ADS) with CDS polled every XDS_REFRESH (the control mock's EDS too) instead of 5 s, so
//     the 100 clusters' REST polls add little background CPU to the windows;
//   - router / noop (no plugin to choose the route): the client sends the routing headers the plugin
//     would set (x-gateway-cluster, x-gateway-destination-endpoint, x-model-deployment,
//     x-model-instance). The header_mutation filter stays in the chain with the same number of
//     removals, of 4 header names nobody sends, so the strip costs the same in every variant and the
//     client's routing headers survive;
//   - router: no wasm filter (header_mutation → router);
//   - noop: build/noop.wasm in the plugin's place, same vm_config and configuration;
//   - plugin / plugin-observe: build/plugin.wasm, the shipped configuration with the plugin's timings
//     (poll 1 s, long poll 20 s) and, for `plugin`, telemetry and passive ejection off — the
//     "header-routed" path issue 2's goal and bench:plugin's "routed" rows are about; `plugin-observe`
//     keeps the shipped defaults (telemetry every 5 s, passive ejection on: 10 host calls a request).
import { join } from "node:path";
import { RoutingTable } from "../../control/contracts/routing-table.js";
import type { PluginConfigInput } from "../../control/contracts/plugin-config.js";
import { buildXdsSnapshot, type XdsSnapshot } from "../../control/xds/build.js";
import { REPO, STRIP_FILTER, WASM_FILTER, e2eBootstrap, locate } from "../../test/e2e-envoy/support/bootstrap.js";

export const PLUGIN_WASM = join(REPO, "build/plugin.wasm");
export const NOOP_WASM = join(REPO, "build/noop.wasm");
export const BENCH_TOKEN = "bench-envoy-plugin-token";
/** REST refresh of CDS (bootstrap) and EDS (control mock's clusters). */
export const XDS_REFRESH = "30s";
/** The path every request goes to (api_prefix /v1 = every instance's base_path: no rewrite). */
export const CHAT_PATH = "/v1/chat/completions";
/** Header names the baselines' header_mutation removes (nobody sends them). */
export const ABSENT_HEADERS = ["x-bench-absent-1", "x-bench-absent-2", "x-bench-absent-3", "x-bench-absent-4"] as const;

export type VariantId = "router" | "noop" | "plugin" | "plugin-observe";
export const VARIANT_IDS: readonly VariantId[] = ["router", "noop", "plugin", "plugin-observe"];

export interface Variant {
  id: VariantId;
  label: string;
  /** Which module runs in the wasm filter's place; null: no wasm filter. */
  wasm: string | null;
  /** The plugin picks the route (else the client sends the routing headers). */
  pluginRoutes: boolean;
  /** Plugin settings over the shipped configuration (timings as shipped; E2E_PLUGIN_SETTINGS overridden). */
  plugin: Partial<PluginConfigInput>;
}

const SHIPPED_TIMINGS = { poll_interval_ms: 1_000, long_poll_seconds: 20, control_timeout_ms: 25_000, passive_cooldown_ms: 10_000 } as const;

export const VARIANTS: Record<VariantId, Variant> = {
  router: { id: "router", label: "router only (no wasm)", wasm: null, pluginRoutes: false, plugin: { ...SHIPPED_TIMINGS, telemetry_interval_ms: 0, passive_failures: 0 } },
  noop: { id: "noop", label: "no-op wasm filter", wasm: NOOP_WASM, pluginRoutes: false, plugin: { ...SHIPPED_TIMINGS, telemetry_interval_ms: 0, passive_failures: 0 } },
  plugin: { id: "plugin", label: "plugin, header-routed", wasm: PLUGIN_WASM, pluginRoutes: true, plugin: { ...SHIPPED_TIMINGS, telemetry_interval_ms: 0, passive_failures: 0 } },
  "plugin-observe": {
    id: "plugin-observe",
    label: "plugin, header-routed, telemetry + passive ejection",
    wasm: PLUGIN_WASM,
    pluginRoutes: true,
    plugin: { ...SHIPPED_TIMINGS, telemetry_interval_ms: 5_000, passive_failures: 3 },
  },
};

export interface BootstrapPorts {
  adminPort: number;
  listenerPort: number;
  controlPort: number;
  /** Where the SaaS passthrough route goes (a misrouted request lands there: the control mock answers 404). */
  saasPort: number;
}

/* eslint-disable @typescript-eslint/no-explicit-any */
type Doc = Record<string, any>;

/** The bootstrap of one variant (see the header of this file for what differs from envoy/bootstrap.yaml). */
export function benchBootstrap(v: Variant, ports: BootstrapPorts, nodeId = `bench-envoy-plugin-${v.id}`): Doc {
  const { bootstrap } = e2eBootstrap({ nodeId, pluginToken: BENCH_TOKEN, wasmPath: v.wasm ?? PLUGIN_WASM, plugin: v.plugin, xds: "rest", ...ports });
  const at = locate(bootstrap);
  delete at.hcm.access_log;
  at.cdsSource.refresh_delay = XDS_REFRESH;
  if (!v.pluginRoutes) {
    const removals = at.strip.typed_config?.mutations?.request_mutations as { remove?: string }[] | undefined;
    if (!Array.isArray(removals) || removals.length !== ABSENT_HEADERS.length || removals.some((m) => typeof m.remove !== "string")) {
      throw new Error(`envoy/bootstrap.yaml: ${STRIP_FILTER} no longer removes exactly ${ABSENT_HEADERS.length} headers; update the bench's baselines`);
    }
    removals.forEach((m, i) => (m.remove = ABSENT_HEADERS[i]));
  }
  if (v.wasm === null) at.filters.splice(at.filterIndex(WASM_FILTER), 1);
  return bootstrap;
}

/**
 * The routing table: `deployments` × `instances` as bench/plugin.bench.ts builds it (weights 1..3,
 * priorities 0/1, instance i1 draining, strategies round robin / smooth WRR / failover in turn),
 * except that instance i of every deployment is the mock upstream on ports[i].
 */
export function routingTable(deployments: number, instances: number, ports: readonly number[], version = 1): RoutingTable {
  if (ports.length < instances) throw new Error(`${instances} instances need ${instances} upstream ports, got ${ports.length}`);
  const deps: RoutingTable["deployments"] = [];
  const models: Record<string, string> = {};
  for (let d = 0; d < deployments; d++) {
    const inst: RoutingTable["deployments"][number]["instances"] = [];
    for (let i = 0; i < instances; i++) {
      inst.push({ id: `i${i}`, address: `127.0.0.1:${ports[i]}`, base_path: "/v1", weight: 1 + (i % 3), priority: i % 2, region: "r", state: i === 1 && instances > 1 ? "draining" : "active" });
    }
    const strategy = (["round_robin", "weighted_round_robin", "failover"] as const)[d % 3]!;
    deps.push({ id: `dep-${d}`, cluster: `gw.dep-${d}`, strategy, on_unavailable: "fail", instances: inst });
    models[`model-${d}`] = `dep-${d}`;
  }
  return RoutingTable.parse({ schema: 1, version, models, deployments: deps });
}

/**
 * The CDS/EDS resources for the same state, built by the control service's own builder
 * (control/xds/build.ts): health checks every `hcIntervalS` (a long interval keeps 1000 probes per
 * round out of the measured windows), no health-event log, REST refresh XDS_REFRESH.
 */
export function xdsSnapshot(table: RoutingTable, hcIntervalS: number): XdsSnapshot {
  const r = buildXdsSnapshot(
    {
      version: table.version,
      deployments: table.deployments.map((d) => ({
        ...d,
        health_check: { interval_seconds: hcIntervalS, timeout_seconds: Math.min(2, hcIntervalS), unhealthy_threshold: 3, healthy_threshold: 1, path: "/health" },
      })),
    },
    { refreshDelay: XDS_REFRESH, healthEventLogPath: null },
  );
  if (!r.ok) throw new Error(`xDS snapshot refused: ${JSON.stringify(r.issues)}`);
  return r.snapshot;
}

export interface BenchRequest {
  method: "POST";
  path: string;
  headers: Record<string, string>;
  body: string;
}

/** How many times the request list goes round the models, each time naming other instances (baselines). */
export const ROTATIONS = 8;

/**
 * The requests one connection sends in turn (autocannon `requests`; each connection cycles through
 * the list): every model in order, ROTATIONS times. Header-routed (x-model) with the model in the
 * JSON body too. For the baselines each request also carries the routing headers the plugin would
 * set — cluster, 3 addresses (pick + max_fallbacks 2) starting at a different active instance per
 * rotation, deployment and instance — so the baselines spread over as many upstream connection pools
 * as the plugin does and send the upstream the same headers.
 */
export function benchRequests(table: RoutingTable, v: Variant, fallbacks = 2): BenchRequest[] {
  const out: BenchRequest[] = [];
  for (let r = 0; r < ROTATIONS; r++) {
    for (const [model, depId] of Object.entries(table.models)) {
      const d = table.deployments.find((x) => x.id === depId)!;
      const headers: Record<string, string> = { "content-type": "application/json", "x-model": model };
      if (!v.pluginRoutes) {
        const active = d.instances.filter((i) => i.state === "active");
        const list = Array.from({ length: Math.min(active.length, fallbacks + 1) }, (_, k) => active[(r + k) % active.length]!);
        headers["x-gateway-cluster"] = d.cluster;
        headers["x-gateway-destination-endpoint"] = list.map((i) => i.address).join(",");
        headers["x-model-deployment"] = d.id;
        headers["x-model-instance"] = list[0]!.id;
      }
      out.push({ method: "POST", path: CHAT_PATH, headers, body: JSON.stringify({ model, messages: [{ role: "user", content: "Say hi." }], max_tokens: 16 }) });
    }
  }
  return out;
}
