/**
 * The bootstrap the real-Envoy e2e runs with, generated from envoy/bootstrap.yaml — the same
 * structure (listener → header strip → wasm plugin → router; route by x-gateway-cluster, SaaS
 * fall-through; static gateway_control for the plugin; CDS and EDS over ADS from the static HTTP/2
 * cluster gateway_xds), with only what a test needs changed:
 *   - node.id unique per run; admin and listener on 127.0.0.1 free ports;
 *   - gateway_control → the control service started by the test (127.0.0.1:<port>), gateway_xds →
 *     its ADS port (CONTROL_XDS_GRPC_PORT);
 *   - or, with `xds: "rest"`, the documented REST fallback instead of ADS: dynamic_resources replaced
 *     by envoy/snippets/xds-rest.yaml and gateway_xds dropped, exactly as that file says to;
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
/** The REST-JSON fallback's `dynamic_resources` (one DynamicResources document). */
export const REST_XDS_SNIPPET = join(REPO, "envoy/snippets/xds-rest.yaml");
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
  /** The control service's ADS (gRPC) port; required with xds "ads" (the default). */
  adsPort?: number;
  /** How Envoy gets its clusters: "ads" as shipped, or "rest", the documented fallback. */
  xds?: XdsTransport;
  saasPort: number;
  pluginToken: string;
  /** Absolute path of the plugin; default build/plugin.wasm of this checkout. */
  wasmPath?: string;
  /** Extra plugin settings over E2E_PLUGIN_SETTINGS. */
  plugin?: Partial<PluginConfigInput>;
}

/* eslint-disable @typescript-eslint/no-explicit-any */
type Doc = Record<string, any>;
export type XdsTransport = "ads" | "rest";

export interface E2eBootstrap {
  bootstrap: Doc;
  /** The plugin configuration as the plugin will read it (zod-parsed, defaults applied). */
  plugin: PluginConfig;
  /** Names the test relies on, read from the document. */
  names: { listener: string; controlCluster: string; saasCluster: string; xdsCluster: string; transport: XdsTransport };
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

/** envoy/snippets/xds-rest.yaml: the `dynamic_resources` of the REST fallback. */
export function loadRestXdsSnippet(): Doc {
  const docs = parseDocuments(readFileSync(REST_XDS_SNIPPET, "utf8"), REST_XDS_SNIPPET);
  if (docs.length !== 1) throw new Error(`${REST_XDS_SNIPPET}: expected one YAML document, found ${docs.length}`);
  return structuredClone(docs[0]!.value) as Doc;
}

/**
 * The shipped bootstrap switched to the REST fallback as envoy/snippets/xds-rest.yaml says: its
 * dynamic_resources replace the bootstrap's, and the ADS cluster (nothing uses it then) goes.
 */
export function toRestXds(b: Doc): Doc {
  const ads = b.dynamic_resources?.ads_config;
  const adsCluster = ads?.grpc_services?.[0]?.envoy_grpc?.cluster_name as string | undefined;
  b.dynamic_resources = loadRestXdsSnippet();
  if (adsCluster) b.static_resources.clusters = (b.static_resources.clusters as Doc[]).filter((c) => c.name !== adsCluster);
  return b;
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
  // CDS over ADS (`ads: {}`: the stream of dynamic_resources.ads_config) or its own REST source.
  const transport: XdsTransport = cds.ads !== undefined ? "ads" : "rest";
  /** The ApiConfigSource CDS comes through: ads_config (GRPC) or cds_config.api_config_source (REST). */
  const cdsSource = transport === "ads" ? need(b.dynamic_resources?.ads_config, "dynamic_resources.ads_config (cds_config says ads)") : need(cds.api_config_source, "cds_config.api_config_source");
  /** The static cluster of the xDS server (undefined while the source names none). */
  const xdsCluster: string | undefined = transport === "ads" ? cdsSource.grpc_services?.[0]?.envoy_grpc?.cluster_name : cdsSource.cluster_names?.[0];
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
    transport,
    cdsSource,
    xdsCluster,
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
  const transport = o.xds ?? "ads";
  const b = loadShippedBootstrap();
  if (locate(b).transport !== "ads") throw new ShapeError("cds_config no longer comes over ADS (cds_config.ads)");
  if (transport === "rest") toRestXds(b);
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

  // The control service: the static cluster the plugin calls (and, on REST, CDS and each cluster's
  // EDS poll); on ADS the static HTTP/2 cluster of the stream, at the control's ADS port.
  const controlCluster = parsed.data.control_cluster;
  const control = at.cluster(controlCluster);
  if (control.type !== "STATIC" && control.type !== "STRICT_DNS") throw new ShapeError(`${controlCluster} is ${String(control.type)}, not a static cluster`);
  control.type = "STATIC";
  control.load_assignment = staticEndpoint(controlCluster, o.controlPort);
  let xdsCluster: string;
  if (at.transport === "rest") {
    const cdsNames = need(at.cdsSource.cluster_names, "cds_config.api_config_source.cluster_names") as string[];
    if (cdsNames.length !== 1 || cdsNames[0] !== controlCluster) {
      throw new ShapeError(`cds_config polls ${JSON.stringify(cdsNames)}, the plugin calls ${controlCluster}: the e2e points both at one control service`);
    }
    xdsCluster = controlCluster;
  } else {
    if (o.adsPort === undefined) throw new Error("the shipped bootstrap uses ADS: give adsPort (the control service's CONTROL_XDS_GRPC_PORT), or xds: \"rest\"");
    const services = need(at.cdsSource.grpc_services, "ads_config.grpc_services") as Doc[];
    if (at.cdsSource.api_type !== "GRPC" || services.length !== 1) throw new ShapeError(`ads_config is ${String(at.cdsSource.api_type)} with ${services.length} grpc_services, not GRPC with one`);
    xdsCluster = need(services[0]!.envoy_grpc?.cluster_name, "ads_config.grpc_services[0].envoy_grpc.cluster_name");
    if (xdsCluster === controlCluster) throw new ShapeError(`ADS and the plugin share ${controlCluster}: the ADS cluster must be HTTP/2, the plugin's HTTP/1.1`);
    const ads = at.cluster(xdsCluster);
    if (ads.type !== "STATIC" && ads.type !== "STRICT_DNS") throw new ShapeError(`${xdsCluster} is ${String(ads.type)}, not a static cluster`);
    if (!ads.typed_extension_protocol_options?.["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]?.explicit_http_config?.http2_protocol_options) {
      throw new ShapeError(`${xdsCluster} is not configured for HTTP/2 (gRPC)`);
    }
    ads.type = "STATIC";
    ads.load_assignment = staticEndpoint(xdsCluster, o.adsPort);
    // Its health checks ask the replica's HTTP /healthz (the shipped cluster's health_check_config).
    (ads.load_assignment as { endpoints: { lb_endpoints: { endpoint: Record<string, unknown> }[] }[] }).endpoints[0]!.lb_endpoints[0]!.endpoint.health_check_config = { port_value: o.controlPort };
  }

  // SaaS passthrough → the local stand-in, plain HTTP. The route (incl. host_rewrite_literal) is kept.
  const saasCluster = need(at.saasRoute.route?.cluster, `route ${SAAS_ROUTE} cluster`) as string;
  const saas = at.cluster(saasCluster);
  delete saas.transport_socket;
  delete saas.dns_lookup_family;
  saas.type = "STATIC";
  saas.load_assignment = staticEndpoint(saasCluster, o.saasPort);

  return { bootstrap: b, plugin: parsed.data, names: { listener: String(at.listener.name), controlCluster, saasCluster, xdsCluster, transport: at.transport } };
}
