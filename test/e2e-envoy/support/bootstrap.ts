/**
 * The bootstrap the real-Envoy e2e runs with, generated from envoy/bootstrap.yaml — the same
 * structure (listener → header strip → wasm plugin → router; route by x-gateway-cluster, SaaS
 * fall-through; static gateway_control; CDS over REST-JSON from it), with only what a test needs
 * changed:
 *   - node.id unique per run; admin and listener on 127.0.0.1 free ports;
 *   - gateway_control → the control service started by the test (127.0.0.1:<port>);
 *   - the wasm file → the absolute path of build/plugin.wasm (the shipped file is cwd-relative);
 *   - the plugin configuration: the shipped JSON plus the plugin token and short timings;
 *   - the SaaS passthrough cluster → a local stand-in over plain HTTP (no TLS, no DNS).
 * Everything is located by name and checked: if envoy/bootstrap.yaml changes shape, generation
 * fails with the reason instead of producing a config that tests something else.
 */
import { readFileSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseDocuments } from "../../../envoy/validate/documents.js";
import { PluginConfig, type PluginConfigInput } from "../../../control/contracts/plugin-config.js";

export const REPO = fileURLToPath(new URL("../../../", import.meta.url));
export const SHIPPED_BOOTSTRAP = join(REPO, "envoy/bootstrap.yaml");
export const WASM_PATH = join(REPO, "build/plugin.wasm");

export const HCM = "envoy.filters.network.http_connection_manager";
export const WASM_FILTER = "envoy.filters.http.wasm";
export const STRIP_FILTER = "envoy.filters.http.header_mutation";
export const GATEWAY_ROUTE = "gateway_models";
export const SAAS_ROUTE = "saas_openai_passthrough";

/**
 * Plugin timings for the test: table changes reach the plugin within ~a poll interval (long poll
 * wakes on a new version); passive ejection's cooldown at its minimum so the test can tell the
 * control service's ejection apart from the plugin's own.
 */
export const E2E_PLUGIN_SETTINGS = {
  poll_interval_ms: 200,
  long_poll_seconds: 2,
  control_timeout_ms: 5_000,
  telemetry_interval_ms: 1_000,
  passive_failures: 3,
  passive_cooldown_ms: 1_000,
} as const satisfies Partial<PluginConfigInput>;

export interface E2eBootstrapOptions {
  nodeId: string;
  adminPort: number;
  listenerPort: number;
  controlPort: number;
  saasPort: number;
  pluginToken: string;
  /** Absolute path of the plugin; default build/plugin.wasm of this checkout. */
  wasmPath?: string;
  /** Extra plugin settings over E2E_PLUGIN_SETTINGS. */
  plugin?: Partial<PluginConfigInput>;
}

/* eslint-disable @typescript-eslint/no-explicit-any */
type Doc = Record<string, any>;

export interface E2eBootstrap {
  bootstrap: Doc;
  /** The plugin configuration as the plugin will read it (zod-parsed, defaults applied). */
  plugin: PluginConfig;
  /** Names the test relies on, read from the document. */
  names: { listener: string; controlCluster: string; saasCluster: string };
}

class ShapeError extends Error {
  constructor(what: string) {
    super(`envoy/bootstrap.yaml no longer has the shape the e2e bootstrap is derived from: ${what}`);
  }
}

function one<T extends Doc>(list: unknown, pred: (x: T) => boolean, what: string): T {
  const hits = (Array.isArray(list) ? (list as T[]) : []).filter(pred);
  if (hits.length !== 1) throw new ShapeError(`expected exactly one ${what}, found ${hits.length}`);
  return hits[0]!;
}

function need(v: unknown, what: string): any {
  if (v === undefined || v === null) throw new ShapeError(`missing ${what}`);
  return v;
}

export function loadShippedBootstrap(): Doc {
  const docs = parseDocuments(readFileSync(SHIPPED_BOOTSTRAP, "utf8"), SHIPPED_BOOTSTRAP);
  if (docs.length !== 1) throw new ShapeError(`expected one YAML document, found ${docs.length}`);
  return structuredClone(docs[0]!.value) as Doc;
}

/** The parts of a bootstrap the e2e touches or relies on (shared with the checks in the tests). */
export function locate(b: Doc) {
  const listeners = need(b.static_resources?.listeners, "static_resources.listeners");
  const listener = one<Doc>(listeners, (l) => Array.isArray(l.filter_chains), "listener with filter_chains");
  const chains = need(listener.filter_chains, "listener filter_chains") as Doc[];
  if (chains.length !== 1) throw new ShapeError(`expected one filter chain, found ${chains.length}`);
  const hcm = need(one<Doc>(chains[0]!.filters, (f) => f.name === HCM, HCM).typed_config, `${HCM} typed_config`);
  const filters = need(hcm.http_filters, "http_filters") as Doc[];
  const strip = one<Doc>(filters, (f) => f.name === STRIP_FILTER, STRIP_FILTER);
  const wasm = one<Doc>(filters, (f) => f.name === WASM_FILTER, WASM_FILTER);
  const wasmConfig = need(wasm.typed_config?.config, "wasm typed_config.config");
  const vhosts = need(hcm.route_config?.virtual_hosts, "route_config.virtual_hosts") as Doc[];
  const routes = vhosts.flatMap((v) => (Array.isArray(v.routes) ? (v.routes as Doc[]) : []));
  const gatewayRoute = one<Doc>(routes, (r) => r.name === GATEWAY_ROUTE, `route ${GATEWAY_ROUTE}`);
  const saasRoute = one<Doc>(routes, (r) => r.name === SAAS_ROUTE, `route ${SAAS_ROUTE}`);
  const clusters = need(b.static_resources?.clusters, "static_resources.clusters") as Doc[];
  const cds = need(b.dynamic_resources?.cds_config, "dynamic_resources.cds_config");
  const cdsSource = need(cds.api_config_source, "cds_config.api_config_source");
  return {
    listener,
    hcm,
    filters,
    strip,
    wasmConfig,
    routes,
    gatewayRoute,
    saasRoute,
    clusters,
    cds,
    cdsSource,
    cluster: (name: string) => one<Doc>(clusters, (c) => c.name === name, `static cluster ${name}`),
    filterIndex: (name: string) => filters.findIndex((f) => f.name === name),
  };
}

const staticEndpoint = (name: string, port: number) => ({
  cluster_name: name,
  endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: port } } } }] }],
});

export function e2eBootstrap(o: E2eBootstrapOptions): E2eBootstrap {
  const wasmPath = o.wasmPath ?? WASM_PATH;
  if (!isAbsolute(wasmPath)) throw new Error(`wasm path must be absolute (Envoy resolves relative ones from its cwd): ${wasmPath}`);
  const b = loadShippedBootstrap();
  const at = locate(b);

  b.node = { ...need(b.node, "node"), id: o.nodeId };
  need(b.admin?.address?.socket_address, "admin.address.socket_address");
  b.admin.address.socket_address = { address: "127.0.0.1", port_value: o.adminPort };
  need(at.listener.address?.socket_address, "listener socket_address");
  at.listener.address.socket_address = { address: "127.0.0.1", port_value: o.listenerPort };

  // The plugin: absolute wasm path, shipped configuration + token + test timings.
  need(at.wasmConfig.vm_config?.code?.local, "wasm vm_config.code.local");
  at.wasmConfig.vm_config.code.local.filename = wasmPath;
  const cfgAny = need(at.wasmConfig.configuration, "wasm configuration");
  if (cfgAny["@type"] !== "type.googleapis.com/google.protobuf.StringValue") throw new ShapeError(`wasm configuration is ${String(cfgAny["@type"])}, not a StringValue`);
  const shippedCfg = JSON.parse(need(cfgAny.value, "wasm configuration value")) as Record<string, unknown>;
  const cfgInput = { ...shippedCfg, ...E2E_PLUGIN_SETTINGS, ...o.plugin, control_token: o.pluginToken };
  const parsed = PluginConfig.safeParse(cfgInput);
  if (!parsed.success) throw new Error(`e2e plugin configuration violates contract 2: ${JSON.stringify(parsed.error.issues)}`);
  cfgAny.value = JSON.stringify(cfgInput);

  // The control service: the static cluster the plugin calls and CDS (and each cluster's EDS) polls.
  const controlCluster = parsed.data.control_cluster;
  const cdsNames = need(at.cdsSource.cluster_names, "cds_config.api_config_source.cluster_names") as string[];
  if (cdsNames.length !== 1 || cdsNames[0] !== controlCluster) {
    throw new ShapeError(`cds_config polls ${JSON.stringify(cdsNames)}, the plugin calls ${controlCluster}: the e2e points both at one control service`);
  }
  const control = at.cluster(controlCluster);
  if (control.type !== "STATIC" && control.type !== "STRICT_DNS") throw new ShapeError(`${controlCluster} is ${String(control.type)}, not a static cluster`);
  control.type = "STATIC";
  control.load_assignment = staticEndpoint(controlCluster, o.controlPort);

  // SaaS passthrough → the local stand-in, plain HTTP. The route (incl. host_rewrite_literal) is kept.
  const saasCluster = need(at.saasRoute.route?.cluster, `route ${SAAS_ROUTE} cluster`) as string;
  const saas = at.cluster(saasCluster);
  delete saas.transport_socket;
  delete saas.dns_lookup_family;
  saas.type = "STATIC";
  saas.load_assignment = staticEndpoint(saasCluster, o.saasPort);

  return { bootstrap: b, plugin: parsed.data, names: { listener: String(at.listener.name), controlCluster, saasCluster } };
}
