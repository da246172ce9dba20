/**
 * Snapshot → Envoy xDS resources (CDS Clusters + EDS ClusterLoadAssignments), as pure functions.
 *
 * Following go-control-plane's model: parse the input (contract 4), check it for consistency, build
 * the *complete* versioned snapshot, freeze it; the transport (discovery.ts) only ever serves a whole
 * snapshot, never a half-built one. Output is deterministic: the same input and options give
 * byte-identical JSON (clusters sorted by name, localities by tier then region, endpoints by
 * instance id), so every control replica answers the same thing for the same version.
 *
 * What each setting becomes, and why: control/xds/README.md. The cluster shape follows
 * envoy/per-deployment-cluster.example.yaml (a test keeps them in step).
 */
import { TABLE_LIMITS, type InstanceState, type Strategy } from "../contracts/routing-table.js";
import { XdsSnapshotInput, type XdsDeployment, type XdsHealthCheck, type XdsInstance, type XdsTls } from "./contract.js";

export const TYPE_URL = {
  cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  clusterLoadAssignment: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
} as const;
export type XdsTypeUrl = (typeof TYPE_URL)[keyof typeof TYPE_URL];

const UPSTREAM_TLS_CONTEXT = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const OVERRIDE_HOST = "type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost";
const ROUND_ROBIN = "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin";
const HC_FILE_SINK = "type.googleapis.com/envoy.extensions.health_check.event_sinks.file.v3.HealthCheckEventFileSink";

/** Our filter-metadata namespace on clusters and endpoints (what the example uses). */
export const METADATA_NAMESPACE = "model-gateway";
/** Envoy matches `transport_socket_matches` against this endpoint-metadata namespace. */
const TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match";

/**
 * Envoy's LocalityLbEndpoints.priority is ≤ 128 and must be contiguous from 0: failover tiers are
 * renumbered densely, so at most 129 distinct tiers per deployment.
 */
export const MAX_ENVOY_PRIORITY = 128;

/**
 * ClusterLoadAssignment.policy.overprovisioning_factor (percent). Envoy's default, 140, counts a
 * priority as fully available only while ≥ 72 % of its hosts are healthy: below that it spills
 * traffic to the next priority, and with a panic threshold it can even route to unhealthy hosts
 * while healthy ones remain. The plugin's semantics are "a tier serves while any instance of it is
 * eligible; panic only when none is". 100 × (max instances per deployment) makes one healthy host
 * count as a fully available priority, so Envoy's fallback behaves the same way.
 */
export const OVERPROVISIONING_FACTOR = 100 * TABLE_LIMITS.maxInstancesPerDeployment;

/** Expected health-check answers: any 2xx (half-open range). */
export const HEALTHY_STATUSES = { start: 200, end: 300 } as const;

export interface XdsBuildOptions {
  /** The static cluster of the control service in the bootstrap (EDS comes from it). */
  controlCluster: string;
  /** EDS polling: api_config_source.refresh_delay / request_timeout (as in the bootstrap's cds_config). */
  refreshDelay: string;
  requestTimeout: string;
  /** Cluster connect_timeout. */
  connectTimeout: string;
  /** The header the plugin writes the chosen ip:port list into (plugin config `endpoint_header`). */
  endpointHeader: string;
  /** Health-check events (ejections, additions, failures) as JSON lines; null: no event log. */
  healthEventLogPath: string | null;
  /** CA bundle for TLS instances without their own `ca_file`. */
  defaultCaFile: string;
}

export const DEFAULT_BUILD_OPTIONS: Readonly<XdsBuildOptions> = Object.freeze({
  controlCluster: "gateway_control",
  refreshDelay: "5s",
  requestTimeout: "3s",
  connectTimeout: "2s",
  endpointHeader: "x-gateway-destination-endpoint",
  healthEventLogPath: "/dev/stdout",
  defaultCaFile: "/etc/ssl/certs/ca-certificates.crt",
});

// ---------------------------------------------------------------------------------------------
// Output types: the subset of the Envoy messages we emit, in proto3 JSON (snake_case).

type Duration = string;
interface TypedConfig {
  "@type": string;
  [field: string]: unknown;
}
interface ApiConfigSource {
  api_type: "REST";
  transport_api_version: "V3";
  cluster_names: string[];
  refresh_delay: Duration;
  request_timeout: Duration;
}
export interface EnvoyHealthCheck {
  timeout: Duration;
  interval: Duration;
  interval_jitter: Duration;
  unhealthy_threshold: number;
  healthy_threshold: number;
  no_traffic_interval: Duration;
  http_health_check: { path: string; expected_statuses: { start: number; end: number }[] };
  always_log_health_check_failures?: boolean;
  event_logger?: { name: string; typed_config: TypedConfig }[];
}
export interface EnvoyTransportSocket {
  name: "envoy.transport_sockets.tls";
  typed_config: TypedConfig;
}
export interface EnvoyCluster {
  "@type": typeof TYPE_URL.cluster;
  name: string;
  type: "EDS";
  eds_cluster_config: { service_name: string; eds_config: { resource_api_version: "V3"; api_config_source: ApiConfigSource } };
  connect_timeout: Duration;
  load_balancing_policy: { policies: { typed_extension_config: { name: string; typed_config: TypedConfig } }[] };
  common_lb_config: { healthy_panic_threshold: { value: number } };
  health_checks: EnvoyHealthCheck[];
  ignore_health_on_host_removal: true;
  outlier_detection: Record<string, number | boolean | Duration>;
  circuit_breakers: { thresholds: Record<string, unknown>[] };
  transport_socket_matches?: { name: string; match: Record<string, string>; transport_socket: EnvoyTransportSocket }[];
  metadata: { filter_metadata: Record<string, Record<string, string>> };
}
export type EdsHealthStatus = "UNHEALTHY" | "DRAINING";
export interface EnvoyLbEndpoint {
  endpoint: {
    address: { socket_address: { address: string; port_value: number } };
    hostname?: string;
    health_check_config?: { hostname: string };
  };
  /** Absent = UNKNOWN (proto3 default), which Envoy treats as healthy: active HC decides. */
  health_status?: EdsHealthStatus;
  load_balancing_weight: number;
  metadata: { filter_metadata: Record<string, Record<string, string>> };
}
export interface EnvoyLocalityLbEndpoints {
  locality?: { region: string };
  priority: number;
  lb_endpoints: EnvoyLbEndpoint[];
}
export interface EnvoyClusterLoadAssignment {
  "@type": typeof TYPE_URL.clusterLoadAssignment;
  cluster_name: string;
  endpoints: EnvoyLocalityLbEndpoints[];
  policy: { overprovisioning_factor: number };
}

/** A complete, checked, frozen xDS snapshot: what discovery.ts serves. */
export interface XdsSnapshot {
  readonly version: number;
  /** DiscoveryResponse.version_info for both CDS and EDS: the snapshot version, in decimal. */
  readonly version_info: string;
  readonly clusters: readonly EnvoyCluster[];
  readonly endpoints: readonly EnvoyClusterLoadAssignment[];
  readonly endpointsByName: ReadonlyMap<string, EnvoyClusterLoadAssignment>;
}

export interface XdsIssue {
  path: string;
  message: string;
}

export type BuildResult = { ok: true; snapshot: XdsSnapshot; warnings: XdsIssue[] } | { ok: false; issues: XdsIssue[]; warnings: XdsIssue[] };

// ---------------------------------------------------------------------------------------------
// Small pure helpers.

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Seconds → proto3-JSON Duration, millisecond precision ("5s", "0.250s"). */
export function duration(seconds: number): Duration {
  const ms = Math.round(seconds * 1000);
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${(ms / 1000).toFixed(3)}s`;
}

/** "10.0.0.1:8000" / "[2001:db8::1]:8000" → Envoy socket address (IPv6 without brackets). */
export function parseAddress(address: string): { ip: string; port: number; ipv6: boolean } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(address);
  if (!m) throw new Error(`not an ip:port address: ${address}`);
  return { ip: m[1] ?? m[2]!, port: Number(m[3]), ipv6: m[1] !== undefined };
}

/**
 * The canonical text of an `ip:port` (what Envoy prints for a host): IPv6 in RFC 5952 form (lower
 * case, longest zero run compressed) via the WHATWG URL parser; IPv4 is already canonical (contract 1
 * refuses leading zeros).
 */
export function canonicalAddress(address: string): string {
  const { ip, port, ipv6 } = parseAddress(address);
  if (!ipv6) return address;
  return `${new URL(`http://[${ip}]/`).hostname}:${port}`;
}

/** Our instance state → LbEndpoint.health_status (undefined = UNKNOWN). See README "Health". */
export function edsHealthStatus(state: InstanceState): EdsHealthStatus | undefined {
  switch (state) {
    case "ejected":
      return "UNHEALTHY";
    case "draining":
      return "DRAINING";
    case "active":
      return undefined;
  }
}

/** Load-balancing weight of the fallback policy: round_robin ignores weights (as the plugin does). */
export function endpointWeight(strategy: Strategy, inst: Pick<XdsInstance, "weight">): number {
  return strategy === "round_robin" ? 1 : inst.weight;
}

/**
 * Envoy priority of each instance: the tiers of the strategies that respect them (failover,
 * least_request, latency) renumbered densely (0, 1, 2… in order of the instances' `priority`);
 * round_robin and weighted_round_robin ignore tiers (as the plugin does) → all 0.
 */
export function envoyPriorities(d: Pick<XdsDeployment, "strategy" | "instances">): Map<string, number> {
  const out = new Map<string, number>();
  if (d.strategy === "round_robin" || d.strategy === "weighted_round_robin") {
    for (const i of d.instances) out.set(i.id, 0);
    return out;
  }
  const tiers = [...new Set(d.instances.map((i) => i.priority))].sort((a, b) => a - b);
  const rank = new Map(tiers.map((p, r) => [p, r]));
  for (const i of d.instances) out.set(i.id, rank.get(i.priority)!);
  return out;
}

/**
 * The route `retry_policy` the gateway route must carry (bootstrap.yaml and the snippets hold copies
 * that test/xds keeps equal to this). With override_host each retry takes the next address of
 * x-gateway-destination-endpoint, so num_retries = the plugin's `max_fallbacks`. Only failures before
 * any response byte are retried: a generation is not idempotent. per_try_idle_timeout bounds the wait
 * for the response headers and every gap between chunks (never a whole token stream); a timeout before
 * any byte moves on to the next address (`reset`).
 */
export function routeRetryPolicy(opts: { maxFallbacks?: number } = {}): { retry_on: string; num_retries: number; per_try_idle_timeout: string } {
  return { retry_on: "connect-failure,reset,refused-stream", num_retries: opts.maxFallbacks ?? 2, per_try_idle_timeout: "300s" };
}

function apiConfigSource(o: XdsBuildOptions): ApiConfigSource {
  return { api_type: "REST", transport_api_version: "V3", cluster_names: [o.controlCluster], refresh_delay: o.refreshDelay, request_timeout: o.requestTimeout };
}

export function healthCheck(hc: XdsHealthCheck, o: Pick<XdsBuildOptions, "healthEventLogPath">): EnvoyHealthCheck {
  const out: EnvoyHealthCheck = {
    timeout: duration(hc.timeout_seconds),
    interval: duration(hc.interval_seconds),
    // Spread probes of many Envoys/instances: up to 1 s, at most a fifth of the interval.
    interval_jitter: duration(Math.min(1, hc.interval_seconds / 5)),
    unhealthy_threshold: hc.unhealthy_threshold,
    healthy_threshold: hc.healthy_threshold,
    // Default 60 s: an idle deployment would be probed once a minute only.
    no_traffic_interval: duration(hc.interval_seconds),
    http_health_check: { path: hc.path, expected_statuses: [{ ...HEALTHY_STATUSES }] },
  };
  if (o.healthEventLogPath !== null) {
    out.always_log_health_check_failures = true;
    out.event_logger = [
      {
        name: "envoy.health_check.event_sink.file",
        typed_config: { "@type": HC_FILE_SINK, event_log_path: o.healthEventLogPath },
      },
    ];
  }
  return out;
}

/** TLS settings of one instance, resolved (the key groups identical ones into one socket match). */
interface ResolvedTls {
  key: string;
  sni?: string;
  caFile: string;
  san: { san_type: "DNS" | "IP_ADDRESS"; matcher: { exact: string } };
}

function resolveTls(inst: XdsInstance, tls: XdsTls, o: XdsBuildOptions): ResolvedTls {
  const caFile = tls.ca_file ?? o.defaultCaFile;
  if (tls.sni !== undefined) {
    const sni = tls.sni.toLowerCase();
    return { key: `dns ${sni} ${caFile}`, sni, caFile, san: { san_type: "DNS", matcher: { exact: sni } } };
  }
  // URL with an IP literal: no SNI; the certificate must carry that IP (as Node's client requires).
  const ip = parseAddress(canonicalAddress(inst.address)).ip;
  return { key: `ip ${ip} ${caFile}`, caFile, san: { san_type: "IP_ADDRESS", matcher: { exact: ip } } };
}

function tlsSocket(t: ResolvedTls): EnvoyTransportSocket {
  const ctx: TypedConfig = {
    "@type": UPSTREAM_TLS_CONTEXT,
    common_tls_context: {
      validation_context: { trusted_ca: { filename: t.caFile }, match_typed_subject_alt_names: [t.san] },
    },
  };
  if (t.sni !== undefined) ctx.sni = t.sni;
  return { name: "envoy.transport_sockets.tls", typed_config: ctx };
}

/** Distinct TLS settings of a deployment, sorted by key → match names tls-0, tls-1… */
function tlsMatches(d: XdsDeployment, o: XdsBuildOptions): { byInstance: Map<string, string>; matches: { name: string; tls: ResolvedTls }[] } {
  const resolved = new Map<string, ResolvedTls>();
  const keyOf = new Map<string, string>();
  for (const inst of d.instances) {
    if (!inst.tls) continue;
    const r = resolveTls(inst, inst.tls, o);
    resolved.set(r.key, r);
    keyOf.set(inst.id, r.key);
  }
  const keys = [...resolved.keys()].sort(cmp);
  const nameOf = new Map(keys.map((k, i) => [k, `tls-${i}`]));
  const byInstance = new Map<string, string>();
  for (const [id, k] of keyOf) byInstance.set(id, nameOf.get(k)!);
  return { byInstance, matches: keys.map((k) => ({ name: nameOf.get(k)!, tls: resolved.get(k)! })) };
}

// ---------------------------------------------------------------------------------------------
// The two resources of one deployment.

/** CDS resource of one deployment. */
export function buildCluster(d: XdsDeployment, options: Partial<XdsBuildOptions> = {}): EnvoyCluster {
  const o = { ...DEFAULT_BUILD_OPTIONS, ...options };
  const cluster: EnvoyCluster = {
    "@type": TYPE_URL.cluster,
    name: d.cluster,
    type: "EDS",
    eds_cluster_config: { service_name: d.cluster, eds_config: { resource_api_version: "V3", api_config_source: apiConfigSource(o) } },
    connect_timeout: o.connectTimeout,
    // The plugin's pick (and its fallbacks) in the header; missing/exhausted list → round robin over
    // healthy hosts, weighted by load_balancing_weight, by priority tier (all strategies).
    load_balancing_policy: {
      policies: [
        {
          typed_extension_config: {
            name: "envoy.load_balancing_policies.override_host",
            typed_config: {
              "@type": OVERRIDE_HOST,
              override_host_sources: [{ header: o.endpointHeader }],
              fallback_policy: {
                policies: [{ typed_extension_config: { name: "envoy.load_balancing_policies.round_robin", typed_config: { "@type": ROUND_ROBIN } } }],
              },
            },
          },
        },
      ],
    },
    // fail: 0 = never route to unhealthy hosts (none healthy → 503 no_healthy_upstream).
    // panic: 50 (Envoy's default), which with OVERPROVISIONING_FACTOR only engages when no host at
    // all is healthy — then Envoy uses every host, like the plugin's panic.
    common_lb_config: { healthy_panic_threshold: { value: d.on_unavailable === "panic" ? 50 : 0 } },
    health_checks: [healthCheck(d.health_check, o)],
    // Removed from EDS → gone at once, even while it still passes health checks.
    ignore_health_on_host_removal: true,
    // Passive ejection from the *fallback* choice on local-origin failures only (connect failure,
    // reset, timeout): 5 in a row → out for 30 s+ (at least one host, at most 10 %, Envoy defaults).
    // HTTP 5xx (an overloaded server answering 503/429) does not eject: that would push its load
    // onto its siblings. override_host ignores ejection: the plugin's pick is used regardless.
    outlier_detection: {
      split_external_local_origin_errors: true,
      consecutive_local_origin_failure: 5,
      enforcing_consecutive_local_origin_failure: 100,
      enforcing_local_origin_success_rate: 0,
      enforcing_consecutive_5xx: 0,
      enforcing_consecutive_gateway_failure: 0,
      enforcing_success_rate: 0,
      interval: "10s",
      base_ejection_time: "30s",
    },
    // Long-lived generation requests: room for 4096 concurrent per Envoy; retries budgeted (20 %)
    // rather than capped at Envoy's default of 3 concurrent retries.
    circuit_breakers: {
      thresholds: [{ priority: "DEFAULT", max_requests: 4096, retry_budget: { budget_percent: { value: 20 }, min_retry_concurrency: 16 } }],
    },
    metadata: { filter_metadata: { [METADATA_NAMESPACE]: { deployment: d.id } } },
  };
  const { matches } = tlsMatches(d, o);
  if (matches.length > 0) {
    cluster.transport_socket_matches = matches.map((m) => ({ name: m.name, match: { tls: m.name }, transport_socket: tlsSocket(m.tls) }));
  }
  return cluster;
}

/** EDS resource of one deployment. */
export function buildLoadAssignment(d: XdsDeployment, options: Partial<XdsBuildOptions> = {}): EnvoyClusterLoadAssignment {
  const o = { ...DEFAULT_BUILD_OPTIONS, ...options };
  const priorities = envoyPriorities(d);
  const { byInstance } = tlsMatches(d, o);
  const groups = new Map<string, { priority: number; region: string; instances: XdsInstance[] }>();
  for (const inst of d.instances) {
    const priority = priorities.get(inst.id)!;
    const k = `${String(priority).padStart(3, "0")}\0${inst.region}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { priority, region: inst.region, instances: [] }));
    g.instances.push(inst);
  }
  const endpoints = [...groups.keys()].sort(cmp).map((k): EnvoyLocalityLbEndpoints => {
    const g = groups.get(k)!;
    const lb_endpoints = [...g.instances].sort((a, b) => cmp(a.id, b.id)).map((i) => lbEndpoint(d, i, byInstance.get(i.id)));
    return { ...(g.region !== "" ? { locality: { region: g.region } } : {}), priority: g.priority, lb_endpoints };
  });
  return { "@type": TYPE_URL.clusterLoadAssignment, cluster_name: d.cluster, endpoints, policy: { overprovisioning_factor: OVERPROVISIONING_FACTOR } };
}

function lbEndpoint(d: XdsDeployment, inst: XdsInstance, tlsMatch: string | undefined): EnvoyLbEndpoint {
  const { ip, port } = parseAddress(inst.address);
  const sni = inst.tls?.sni?.toLowerCase();
  const status = edsHealthStatus(inst.state);
  const filter_metadata: Record<string, Record<string, string>> = { [METADATA_NAMESPACE]: { instance: inst.id } };
  if (tlsMatch !== undefined) filter_metadata[TRANSPORT_SOCKET_MATCH] = { tls: tlsMatch };
  return {
    endpoint: {
      address: { socket_address: { address: ip, port_value: port } },
      // Health-check Host header = the name the server is configured for (default: the cluster name).
      ...(sni !== undefined ? { hostname: sni, health_check_config: { hostname: sni } } : {}),
    },
    ...(status !== undefined ? { health_status: status } : {}),
    load_balancing_weight: endpointWeight(d.strategy, inst),
    metadata: { filter_metadata },
  };
}

// ---------------------------------------------------------------------------------------------
// Checking and building the whole snapshot.

/**
 * Rules beyond the zod contract: those that depend on Envoy or on the build options. Errors refuse
 * the snapshot; warnings are worth logging but the snapshot is served.
 */
export function checkSnapshot(input: XdsSnapshotInput, options: Partial<XdsBuildOptions> = {}): { errors: XdsIssue[]; warnings: XdsIssue[] } {
  const o = { ...DEFAULT_BUILD_OPTIONS, ...options };
  const errors: XdsIssue[] = [];
  const warnings: XdsIssue[] = [];
  input.deployments.forEach((d, i) => {
    const at = `deployments[${i}]`;
    if (d.cluster === o.controlCluster) {
      errors.push({ path: `${at}.cluster`, message: `cluster name ${d.cluster} is the control service's static cluster (Envoy refuses a CDS cluster shadowing a static one)` });
    }
    if (d.strategy === "failover") {
      const tiers = new Set(d.instances.map((x) => x.priority)).size;
      if (tiers - 1 > MAX_ENVOY_PRIORITY) errors.push({ path: `${at}.instances`, message: `${tiers} failover tiers: Envoy allows at most ${MAX_ENVOY_PRIORITY + 1} priorities` });
    }
    if (d.health_check.timeout_seconds > d.health_check.interval_seconds) {
      warnings.push({ path: `${at}.health_check.timeout_seconds`, message: "longer than the interval: probes overlap" });
    }
    d.instances.forEach((inst, j) => {
      const canonical = canonicalAddress(inst.address);
      if (canonical !== inst.address) {
        // Envoy prints (and override_host may compare) hosts in canonical form.
        warnings.push({ path: `${at}.instances[${j}].address`, message: `${inst.address} is not in canonical form (${canonical}): the plugin's x-gateway-destination-endpoint may not match the Envoy host` });
      }
    });
  });
  return { errors, warnings };
}

const zodIssues = (issues: { path: PropertyKey[]; message: string }[]): XdsIssue[] =>
  issues.map((i) => ({ path: i.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("").replace(/^\./, ""), message: i.message }));

function deepFreeze<T>(v: T): T {
  if (v && typeof v === "object" && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/**
 * The whole pipeline: parse (contract 4) → check → build every resource → freeze. Never throws on
 * bad input: `{ok: false, issues}` (nothing of it may be served).
 */
export function buildXdsSnapshot(input: unknown, options: Partial<XdsBuildOptions> = {}): BuildResult {
  const parsed = XdsSnapshotInput.safeParse(input);
  if (!parsed.success) return { ok: false, issues: zodIssues(parsed.error.issues), warnings: [] };
  const snap = parsed.data;
  const { errors, warnings } = checkSnapshot(snap, options);
  if (errors.length > 0) return { ok: false, issues: errors, warnings };
  const deployments = [...snap.deployments].sort((a, b) => cmp(a.cluster, b.cluster));
  const clusters = deployments.map((d) => buildCluster(d, options));
  const endpoints = deployments.map((d) => buildLoadAssignment(d, options));
  const snapshot: XdsSnapshot = {
    version: snap.version,
    version_info: String(snap.version),
    clusters: deepFreeze(clusters),
    endpoints: deepFreeze(endpoints),
    endpointsByName: new Map(endpoints.map((e) => [e.cluster_name, e])),
  };
  return { ok: true, snapshot: Object.freeze(snapshot), warnings };
}
