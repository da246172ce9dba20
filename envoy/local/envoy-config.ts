/**
 * Real Envoy for `npm start`: find an Envoy ≥ 1.35 and derive a bootstrap for the local ports from the one
 * we ship (envoy/bootstrap.yaml), so the local run uses exactly the production configuration except for
 * addresses, the plugin path and token, and the passthrough upstream. Clusters come over ADS from the
 * control service's gRPC port (as shipped), or — without an ADS port — by the documented REST fallback
 * (envoy/snippets/xds-rest.yaml in place of dynamic_resources, the ADS cluster dropped).
 */
import { spawnSync } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

const BOOTSTRAP = fileURLToPath(new URL("../bootstrap.yaml", import.meta.url));
const REST_XDS = fileURLToPath(new URL("../snippets/xds-rest.yaml", import.meta.url));
export const MIN_ENVOY: [number, number] = [1, 35];

/** An executable on PATH (like `which`), or null. */
export function which(name: string): string | null {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

export interface EnvoyFound {
  bin: string;
  version: string | null;
  /** Version ≥ 1.35. */
  usable: boolean;
}

/** `ENVOY_BIN`, else `envoy` on PATH; its version from `envoy --version`. Null when there is none. */
export function findEnvoy(env: NodeJS.ProcessEnv = process.env): EnvoyFound | null {
  const bin = env.ENVOY_BIN || which("envoy");
  if (!bin) return null;
  const r = spawnSync(bin, ["--version"], { encoding: "utf8", timeout: 10_000 });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  // e.g. "envoy  version: 8ea0…/1.35.1/Clean/RELEASE/BoringSSL"
  const m = /\/(\d+)\.(\d+)\.(\d+)(?:[-/]|$)/m.exec(out) ?? /version:?\s*v?(\d+)\.(\d+)\.(\d+)/i.exec(out);
  if (!m) return { bin, version: null, usable: false };
  const [maj, min] = [Number(m[1]), Number(m[2])];
  const usable = maj > MIN_ENVOY[0] || (maj === MIN_ENVOY[0] && min >= MIN_ENVOY[1]);
  return { bin, version: `${m[1]}.${m[2]}.${m[3]}`, usable };
}

export interface LocalEnvoyOptions {
  listenHost: string;
  listenPort: number;
  adminPort: number;
  controlHost: string;
  controlPort: number;
  /** The control service's ADS (gRPC) port; null/absent: the REST fallback (Envoy polls controlPort). */
  adsPort?: number | null;
  pluginToken: string;
  wasmPath: string;
  passthroughUrl: string | null;
}

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** envoy/bootstrap.yaml adjusted for a local run (a plain object; YAML/JSON-serialise it for Envoy). */
export function localEnvoyBootstrap(o: LocalEnvoyOptions): Obj {
  const b = parse(readFileSync(BOOTSTRAP, "utf8")) as Obj;
  b.node.id = "model-gateway-local";
  b.admin.address.socket_address = { address: "127.0.0.1", port_value: o.adminPort };
  const listener = b.static_resources.listeners[0];
  listener.address.socket_address = { address: o.listenHost, port_value: o.listenPort };
  const hcm = listener.filter_chains[0].filters[0].typed_config;
  const wasm = hcm.http_filters.find((f: Obj) => f.name === "envoy.filters.http.wasm").typed_config.config;
  wasm.vm_config.code.local.filename = o.wasmPath;
  const pluginConfig = JSON.parse(wasm.configuration.value) as Obj;
  pluginConfig.control_token = o.pluginToken;
  wasm.configuration.value = JSON.stringify(pluginConfig);

  const control = (b.static_resources.clusters as Obj[]).find((c) => c.name === "gateway_control")!;
  // npm start runs one control service: its one endpoint replaces the shipped replicas (health checks stay).
  const only = (port: number, healthPort?: number): Obj[] => [
    { lb_endpoints: [{ endpoint: { address: { socket_address: { address: o.controlHost, port_value: port } }, ...(healthPort !== undefined ? { health_check_config: { port_value: healthPort } } : {}) } }] },
  ];
  control.load_assignment.endpoints = only(o.controlPort);
  const adsName: string = b.dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name;
  if (o.adsPort !== undefined && o.adsPort !== null) {
    const ads = (b.static_resources.clusters as Obj[]).find((c) => c.name === adsName)!;
    ads.load_assignment.endpoints = only(o.adsPort, o.controlPort);
  } else {
    b.dynamic_resources = parse(readFileSync(REST_XDS, "utf8")) as Obj;
    b.static_resources.clusters = (b.static_resources.clusters as Obj[]).filter((c) => c.name !== adsName);
  }
  const clusters: Obj[] = b.static_resources.clusters;

  const vhost = hcm.route_config.virtual_hosts[0];
  const routes: Obj[] = vhost.routes;
  // Keep the shipped names (route saas_openai_passthrough → cluster saas_openai): the smallest diff
  // from envoy/bootstrap.yaml; only where the passthrough goes changes.
  const passIdx = routes.findIndex((r) => r.name === "saas_openai_passthrough");
  const saasIdx = clusters.findIndex((c) => c.name === "saas_openai");
  if (o.passthroughUrl) {
    const u = new URL(o.passthroughUrl);
    const tls = u.protocol === "https:";
    const port = u.port === "" ? (tls ? 443 : 80) : Number(u.port);
    const prefix = u.pathname.replace(/\/+$/, "");
    const saas: Obj = clusters[saasIdx]!;
    saas.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address = { address: u.hostname, port_value: port };
    if (tls) {
      saas.transport_socket.typed_config.sni = u.hostname;
      saas.transport_socket.typed_config.common_tls_context.validation_context.match_typed_subject_alt_names = [{ san_type: "DNS", matcher: { exact: u.hostname } }];
    } else delete saas.transport_socket;
    const route: Obj = routes[passIdx]!;
    route.match = { prefix: "/" };
    route.route.host_rewrite_literal = u.host;
    if (prefix) route.route.prefix_rewrite = `${prefix}/`;
  } else {
    // No passthrough: a model the gateway does not serve matches no route (NR) and the bootstrap's
    // local_reply_config answers 404 model_not_found in OpenAI's shape — as the local data plane does.
    clusters.splice(saasIdx, 1);
    routes.splice(passIdx, 1);
  }
  return b;
}
