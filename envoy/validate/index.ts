/**
 * Validator for the Envoy documents we ship and the xDS resources the control service serves,
 * against Envoy's own v3 protos (vendored by @grpc/grpc-js-xds, mid-2024) plus our overlay for newer
 * fields (envoy/validate/overlay/). No Envoy binary needed. See envoy/README.md → "Validation".
 *
 *   validateMessage("envoy.config.cluster.v3.Cluster", obj)
 *   validateBootstrap(obj)            // + static reference checks Envoy does at startup
 *   validateDiscoveryResponse(obj)    // + every resource's @type equals type_url
 *   validateAnyResource(obj)          // {"@type": ..., ...}
 */
import { loadSchema } from "./schema.js";
import { Walker, type Issue, type WalkOptions } from "./walker.js";

export type { Issue, WalkOptions } from "./walker.js";
export { loadSchema } from "./schema.js";

export const BOOTSTRAP = "envoy.config.bootstrap.v3.Bootstrap";
export const TYPE_URLS = {
  cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  clusterLoadAssignment: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  routeConfiguration: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
} as const;

export interface ValidationResult {
  ok: boolean;
  /** Message type validated against ("Any" when resolved by @type). */
  type: string;
  errors: Issue[];
  warnings: Issue[];
}

function result(type: string, w: { errors: Issue[]; warnings: Issue[] }): ValidationResult {
  return { ok: w.errors.length === 0, type, errors: [...w.errors], warnings: [...w.warnings] };
}

/** Validates `doc` (proto3-JSON as parsed from JSON/YAML) as the message `type` (full name). */
export function validateMessage(type: string, doc: unknown, options: WalkOptions = {}): ValidationResult {
  const { root } = loadSchema();
  const walker = new Walker(root, options);
  const t = walker.lookupMessage(type);
  if (!t) return { ok: false, type, errors: [{ path: "", message: `unknown message type "${type}"` }], warnings: [] };
  walker.message(t, doc, "");
  return result(type, walker);
}

/** Validates a self-describing resource `{"@type": "type.googleapis.com/<type>", ...fields}`. */
export function validateAnyResource(doc: unknown, options: WalkOptions = {}): ValidationResult {
  const walker = new Walker(loadSchema().root, options);
  walker.any(doc, "", 0);
  const url = (doc as Record<string, unknown> | null)?.["@type"];
  return result(typeof url === "string" ? url.slice(url.lastIndexOf("/") + 1) : "google.protobuf.Any", walker);
}

/** Bootstrap: the proto check plus the cross-references Envoy refuses at startup. */
export function validateBootstrap(doc: unknown): ValidationResult {
  const r = validateMessage(BOOTSTRAP, doc);
  r.errors.push(...bootstrapReferences(doc));
  r.ok = r.errors.length === 0;
  return r;
}

/**
 * An xDS DiscoveryResponse (REST-JSON body): the proto check (each resource validated by its
 * @type) plus: type_url present, and every resource of that type.
 */
export function validateDiscoveryResponse(doc: unknown): ValidationResult {
  const r = validateMessage("envoy.service.discovery.v3.DiscoveryResponse", doc);
  const body = (doc ?? {}) as Record<string, unknown>;
  const typeUrl = body.type_url ?? body.typeUrl;
  if (typeof typeUrl !== "string" || typeUrl === "") r.errors.push({ path: "type_url", message: "a DiscoveryResponse must name its type_url" });
  else if (Array.isArray(body.resources)) {
    body.resources.forEach((res, i) => {
      const t = (res as Record<string, unknown> | null)?.["@type"];
      if (typeof t === "string" && t !== typeUrl) r.errors.push({ path: `resources[${i}].@type`, message: `resource of type ${t} in a response of type_url ${typeUrl}` });
    });
  }
  r.ok = r.errors.length === 0;
  return r;
}

const obj = (v: unknown): Record<string, unknown> => (v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const pick = (o: Record<string, unknown>, snake: string, camel: string): unknown => o[snake] ?? o[camel];

/**
 * Checks Envoy makes when it loads a bootstrap, beyond the protos: unique static cluster/listener
 * names, and xDS/gRPC config sources that name a *static, non-EDS* cluster. Two more of our own (so the
 * mistake shows before an Envoy runs the file; whether Envoy refuses them at load is not verified): a
 * config source set to `ads: {}` needs `dynamic_resources.ads_config`, and an `envoy_grpc` xDS cluster
 * must speak HTTP/2 (gRPC runs over HTTP/2 only; Envoy's default upstream protocol is HTTP/1.1).
 */
export function bootstrapReferences(doc: unknown): Issue[] {
  const issues: Issue[] = [];
  const b = obj(doc);
  const sr = obj(pick(b, "static_resources", "staticResources"));
  const clusters = arr(sr.clusters).map(obj);
  const byName = new Map<string, Record<string, unknown>>();
  clusters.forEach((c, i) => {
    const name = c.name;
    if (typeof name !== "string") return;
    if (byName.has(name)) issues.push({ path: `static_resources.clusters[${i}].name`, message: `duplicate static cluster name "${name}"` });
    byName.set(name, c);
  });
  const dr = obj(pick(b, "dynamic_resources", "dynamicResources"));
  const listenerNames = new Set<string>();
  arr(sr.listeners).map(obj).forEach((l, i) => {
    if (typeof l.name !== "string") return;
    if (listenerNames.has(l.name)) issues.push({ path: `static_resources.listeners[${i}].name`, message: `duplicate listener name "${l.name}"` });
    listenerNames.add(l.name);
  });

  /** `acs` is an ApiConfigSource at `path`. */
  const checkApiSource = (acs: Record<string, unknown>, path: string): void => {
    arr(pick(acs, "cluster_names", "clusterNames")).forEach((n, i) => refer(n, `${path}.cluster_names[${i}]`));
    arr(pick(acs, "grpc_services", "grpcServices")).forEach((g, i) => {
      const eg = obj(pick(obj(g), "envoy_grpc", "envoyGrpc"));
      const name = pick(eg, "cluster_name", "clusterName");
      if (name) {
        const at = `${path}.grpc_services[${i}].envoy_grpc.cluster_name`;
        refer(name, at);
        const c = typeof name === "string" ? byName.get(name) : undefined;
        if (c && !speaksHttp2(c)) {
          issues.push({ path: at, message: `gRPC config source cluster "${String(name)}" does not speak HTTP/2: give it typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].explicit_http_config.http2_protocol_options (gRPC needs HTTP/2)` });
        }
      }
    });
  };
  /** `src` is a ConfigSource at `path`. */
  const checkSource = (src: unknown, path: string): void => {
    const acs = pick(obj(src), "api_config_source", "apiConfigSource");
    if (acs) checkApiSource(obj(acs), `${path}.api_config_source`);
    if (pick(obj(src), "ads", "ads") !== undefined && !pick(dr, "ads_config", "adsConfig")) {
      issues.push({ path: `${path}.ads`, message: "config source uses ADS, but dynamic_resources.ads_config is not set" });
    }
  };
  const refer = (name: unknown, path: string): void => {
    if (typeof name !== "string") return;
    const c = byName.get(name);
    if (!c) issues.push({ path, message: `config source names cluster "${name}", which is not a static cluster (Envoy requires one)` });
    else if (c.type === "EDS") issues.push({ path, message: `config source cluster "${name}" must not be an EDS cluster` });
  };

  for (const [snake, camel] of [
    ["cds_config", "cdsConfig"],
    ["lds_config", "ldsConfig"],
  ] as const) {
    const src = pick(dr, snake, camel);
    if (src) checkSource(src, `dynamic_resources.${snake}`);
  }
  const ads = pick(dr, "ads_config", "adsConfig");
  if (ads) checkApiSource(obj(ads), "dynamic_resources.ads_config");
  clusters.forEach((c, i) => {
    const eds = obj(pick(c, "eds_cluster_config", "edsClusterConfig"));
    const src = pick(eds, "eds_config", "edsConfig");
    if (src) checkSource(src, `static_resources.clusters[${i}].eds_cluster_config.eds_config`);
  });
  return issues;
}

/** A cluster configured for HTTP/2 upstream: explicit http2 options (or the deprecated cluster field), or ALPN over TLS. */
function speaksHttp2(c: Record<string, unknown>): boolean {
  if (pick(c, "http2_protocol_options", "http2ProtocolOptions") !== undefined) return true;
  const opts = obj(obj(pick(c, "typed_extension_protocol_options", "typedExtensionProtocolOptions"))["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]);
  const explicit = obj(pick(opts, "explicit_http_config", "explicitHttpConfig"));
  if (pick(explicit, "http2_protocol_options", "http2ProtocolOptions") !== undefined) return true;
  const auto = pick(opts, "auto_config", "autoConfig");
  return auto !== undefined && pick(c, "transport_socket", "transportSocket") !== undefined;
}

export function formatIssue(i: Issue): string {
  return `${i.path || "<document>"}: ${i.message}`;
}
