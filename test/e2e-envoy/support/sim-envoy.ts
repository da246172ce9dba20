/**
 * SIMULATED ENVOY — NOT ENVOY. A stand-in executable for dry runs of the e2e test's *own* logic
 * (orchestration, waits, traces, exact-share arithmetic, cleanup) on machines without Envoy:
 *
 *   ENVOY_BIN=test/e2e-envoy/support/sim-envoy node --import tsx --test test/e2e-envoy/gateway.e2e.test.ts
 *
 * A pass against it says nothing about Envoy: it reimplements, from our notes, the slice of Envoy the
 * e2e touches — the real plugin (build/plugin.wasm) runs in our host (envoy/local/host, Envoy-like
 * proxy-wasm host) — and shares every misunderstanding those notes may hold. What it models:
 *   - `--version` (reports SIMULATED), serve mode with `-c`; `--mode validate` always fails (only a
 *     real Envoy can answer it);
 *   - listener: header_mutation removals → wasm filter (test host stream) → route: the route is
 *     chosen before the plugin runs and re-chosen only if the route cache was cleared (clear_route_cache,
 *     or any request-header change: ABI 0.2.1);
 *     `cluster_header` route when the header is present, else the prefix route (+ host_rewrite_literal);
 *   - override_host: attempt j takes the next listed address present in the cluster (no health
 *     check), then round robin over hosts without failure flags (lowest priority with any);
 *     retries on connect failure / reset before a response, `num_retries` from the route;
 *   - clusters from the control service, by the transport the bootstrap names:
 *       ADS (cds_config `ads: {}`, dynamic_resources.ads_config GRPC → its static cluster): one gRPC
 *       StreamAggregatedResources stream (state of the world), messages in Envoy's v3 protos
 *       (control/xds/proto.ts). Cited (envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol, read from
 *       envoyproxy/envoy docs/root/api-docs/xds_protocol.rst): the first request of a stream carries
 *       the node (every request unless set_node_on_first_message_only) and, per type, the last version
 *       accepted with no nonce (nonces do not survive a stream); Envoy subscribes to CDS as a wildcard
 *       (empty resource_names); every response is ACKed (same nonce, its version_info) or NACKed (same
 *       nonce, the previous version, error_detail — code INTERNAL as grpc_mux_impl.cc sets it), a
 *       response failing validation (envoy/validate, as the REST path does) changes nothing; CDS is
 *       state of the world (a cluster missing is removed); EDS names the ClusterLoadAssignments of
 *       the clusters learned by CDS, updated in one request after each CDS answer, answers for names
 *       not subscribed are ignored and a missing name changes nothing; after a stream ends,
 *       reconnect with jittered exponential backoff from 0.5 s up to 30 s
 *       (envoy/config/subscription_factory.h RetryInitialDelayMs / RetryMaxDelayMs; the exact jitter
 *       formula is ours). Cited from Envoy's source (cluster_manager_impl.cc updateClusterCounts):
 *       once initialised, CDS is paused while any cluster warms, so the CDS ACK (or NACK) goes out only
 *       when every cluster is warm. Inferred, not cited: the order of our EDS request and CDS ACK after
 *       a CDS answer, and that the EDS request of a new stream is sent right after the CDS one;
 *       REST-JSON (cds_config.api_config_source): CDS and per-cluster EDS polling of the control
 *       cluster (refresh_delay + 0–100 % jitter, 304);
 *   - cluster warming (arch overview "Cluster warming"; xds_protocol "Resource warming"): a cluster
 *     added or updated by CDS is unusable (a request naming it gets 503 NC when it is new; an updated
 *     one's predecessor keeps serving) until its first EDS answer arrived (or the EDS initial fetch
 *     timeout, default 15 s) and its first active health-check round is done; then it is swapped in;
 *   - active HTTP health checks (hosts added by EDS start pending until their first check);
 *   - admin /ready, /clusters?format=json, /stats?filter= (plugin stats under "wasmcustom.");
 *   - a listener from LDS in a file (dynamic_resources.lds_config.path_config_source, read at start and
 *     again when a file is moved onto the path): of an update only the plugin configuration is applied
 *     (the host's configuration update: canary, then a new root in every VM; refused → update_rejected),
 *     every stream at once (no connections, no draining filter chains).
 * Not modelled: HTTP/2 on the listener, circuit breakers, outlier detection, panic thresholds, timeouts,
 * TLS, delta xDS, LDS/RDS over ADS, xDS resource TTLs, the 15 s does-not-exist timeout of a named EDS
 * resource after warming; workers > 1 share one listener socket here too (requests go to worker 0).
 */
import { createServer, request as httpRequest, Agent, type IncomingMessage, type ServerResponse } from "node:http";
import { readFileSync, watch } from "node:fs";
import { basename, dirname } from "node:path";
import { parseArgs } from "node:util";
import { parseDocuments } from "../../../envoy/validate/documents.js";
import * as grpc from "@grpc/grpc-js";
import { formatIssue, TYPE_URLS, validateAnyResource, validateBootstrap } from "../../../envoy/validate/index.js";
import { loadXdsProto } from "../../../control/xds/proto.js";
import { ProxyWasmHost } from "../../../envoy/local/host/index.js";
import type { HttpCall } from "../../../envoy/local/host/types.js";
import { HCM, STRIP_FILTER, locate } from "./bootstrap.js";

/* eslint-disable @typescript-eslint/no-explicit-any */
type Pairs = [string, string][];

const { values } = parseArgs({
  options: {
    version: { type: "boolean" },
    mode: { type: "string" },
    c: { type: "string", short: "c" },
    concurrency: { type: "string" },
    "disable-hot-restart": { type: "boolean" },
    "log-level": { type: "string" },
  },
  strict: false,
});

if (values.version) {
  process.stdout.write("envoy  version: 0000000000000000000000000000000000000000/1.35.0/SIMULATED-NOT-ENVOY/RELEASE/none\n");
  process.exit(0);
}
const file = values.c;
if (typeof file !== "string") {
  process.stderr.write("sim-envoy: -c <bootstrap> required\n");
  process.exit(1);
}
const boot = parseDocuments(readFileSync(file, "utf8"), file)[0]!.value as Record<string, any>;
if (values.mode === "validate") {
  // Envoy's --mode validate checks what only Envoy knows (extensions compiled in, its own semantic
  // checks): a simulation must not pass for it. Report our validator's findings, then refuse.
  const r = validateBootstrap(boot);
  for (const e of r.errors) process.stderr.write(`${formatIssue(e)}\n`);
  process.stderr.write("sim-envoy: --mode validate needs a real Envoy (envoy/validate says: " + (r.ok ? "ok" : "errors") + ")\n");
  process.exit(1);
}

const log = (line: string) => process.stdout.write(`[sim-envoy] ${line}\n`);
// LDS from a file: its (one) listener stands in as the static listener; updates: "LDS file updates" below.
const ldsPath: string | undefined = boot.dynamic_resources?.lds_config?.path_config_source?.path;
const readLdsListener = (): Record<string, any> => {
  const { "@type": _t, ...l } = (parseDocuments(readFileSync(ldsPath!, "utf8"), ldsPath)[0]!.value as Record<string, any>).resources[0];
  return l;
};
if (ldsPath) boot.static_resources.listeners = [readLdsListener()];
const at = locate(boot);
const seconds = (d: unknown, dflt: number): number => (typeof d === "string" && /^[\d.]+s$/.test(d) ? Number(d.slice(0, -1)) : dflt);
const headerOf = (pairs: Pairs, name: string): string | undefined => pairs.find(([k]) => k === name)?.[1];

// ---------------------------------------------------------------------------------------------
// Static clusters.
const staticAddr = new Map<string, string>();
for (const c of at.clusters) {
  const sa = c.load_assignment?.endpoints?.[0]?.lb_endpoints?.[0]?.endpoint?.address?.socket_address;
  if (sa) staticAddr.set(c.name, `${sa.address}:${sa.port_value}`);
}

// ---------------------------------------------------------------------------------------------
// The plugin in the test host; http_call → static clusters; the virtual clock follows real time.
const wasmCfg = at.wasmConfig;
const agent = new Agent({ keepAlive: true });
let host: Awaited<ReturnType<typeof ProxyWasmHost.start>>;

const forwardCall = (call: HttpCall) => {
  const addr = staticAddr.get(call.cluster);
  if (!addr) return call.fail();
  const h = (n: string) => call.headers.find(([k]) => k === n)?.[1];
  const headers: Record<string, string> = {};
  for (const [k, v] of call.headers) if (!k.startsWith(":")) headers[k] = v;
  headers.host = h(":authority") ?? call.cluster;
  const req = httpRequest({ host: addr.split(":")[0], port: Number(addr.split(":")[1]), method: h(":method"), path: h(":path"), headers, agent }, (res) => {
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.on("end", () => {
      const pairs: Pairs = Object.entries(res.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(",") : String(v)]);
      try {
        call.respond({ status: res.statusCode ?? 0, headers: pairs, body: new Uint8Array(Buffer.concat(chunks)) });
      } catch {
        // timed out on the virtual clock already
      }
    });
  });
  req.on("error", () => {
    try {
      call.fail();
    } catch {
      // already answered
    }
  });
  if (call.body.length > 0) req.end(Buffer.from(call.body));
  else req.end();
};

host = await ProxyWasmHost.start({
  wasm: wasmCfg.vm_config.code.local.filename,
  workers: Number(values.concurrency ?? 1),
  configuration: wasmCfg.configuration.value,
  vmId: wasmCfg.vm_config.vm_id ?? "",
  rootId: wasmCfg.root_id ?? "",
  pluginName: wasmCfg.name ?? "",
  clusters: [...staticAddr.keys()],
  allowOnHeadersStopIteration: wasmCfg.allow_on_headers_stop_iteration === true,
  bufferLimitBytes: at.listener.per_connection_buffer_limit_bytes ?? 1 << 20,
  now: Date.now(),
  logLevel: "info",
  // Envoy's LocalInfo node id: property node.id in root contexts too (the plugin's poller names its Envoy).
  ...(typeof boot.node?.id === "string" && boot.node.id !== "" ? { nodeId: boot.node.id } : {}),
  properties: { "node.id": boot.node?.id ?? "" },
  onHttpCall: (c) => forwardCall(c),
});
for (const c of [...host.httpCalls]) forwardCall(c);
let last = performance.now();
setInterval(() => {
  const now = performance.now();
  const step = Math.floor(now - last);
  if (step > 0) {
    last += step;
    host.advance(step);
  }
  for (const l of host.logs.splice(0)) log(`wasm ${l.level} [worker ${l.worker}] ${l.message}`);
}, 10);

// ---------------------------------------------------------------------------------------------
// Clusters: CDS / EDS (over ADS or REST), warming, health checks.
interface SimHost {
  address: string;
  priority: number;
  weight: number;
  eds: string;
  pending: boolean;
  failed: boolean;
  fails: number;
  oks: number;
}
interface SimCluster {
  name: string;
  cfg: Record<string, any>;
  hosts: Map<string, SimHost>;
  /** Its first EDS answer arrived (or the EDS initial fetch timeout passed). */
  edsDone: boolean;
  edsVersion: string;
  rejected: number;
  rr: number;
  stop: boolean;
  edsTimer?: NodeJS.Timeout;
}
/** Clusters routing sees (Envoy's active clusters). */
const dynamic = new Map<string, SimCluster>();
/** Added or updated by CDS, not usable yet: waiting for their EDS answer and first health-check round. */
const warming = new Map<string, SimCluster>();
let cdsVersion = "";
let cdsDone = false;
let cdsRejected = 0;
let cdsSuccess = 0;
/** Envoy's init is done (first /ready): from then on a warming cluster holds the CDS ACK (below). */
let initialized = false;
/** The ADS client (null: REST polling). */
let ads: ReturnType<typeof startAds> | null = null;

const TYPE_CDS = TYPE_URLS.cluster;
const TYPE_EDS = TYPE_URLS.clusterLoadAssignment;
const cdsOverAds = at.transport === "ads";
/** The static cluster of the xDS server: REST polls go there, or the ADS stream. */
const xdsCluster = at.xdsCluster as string;
if (!staticAddr.has(xdsCluster)) {
  process.stderr.write(`sim-envoy: the xDS config source names cluster "${xdsCluster}", which is not a static cluster\n`);
  process.exit(1);
}
const edsName = (c: SimCluster): string => c.cfg.eds_cluster_config?.service_name ?? c.name;
const edsOverAds = (c: SimCluster): boolean => c.cfg.eds_cluster_config?.eds_config?.ads !== undefined;

/** Envoy's checks of a Cluster beyond its protos that matter here: an EDS source it can use. */
function clusterProblem(c: Record<string, any>): string | null {
  const eds = c.eds_cluster_config?.eds_config;
  if (!eds) return null;
  if (eds.ads !== undefined) return cdsOverAds || boot.dynamic_resources?.ads_config ? null : `cluster '${c.name}': eds_config uses ADS but the bootstrap has no ads_config`;
  const names: string[] = eds.api_config_source?.cluster_names ?? [];
  const missing = names.find((n) => !staticAddr.has(n));
  return missing ? `cluster '${c.name}': eds_config names cluster '${missing}', which is not a static cluster` : null;
}

/** A CDS answer (state of the world): null when applied, else why it is rejected (nothing changes then). */
function applyCds(resources: Record<string, any>[], version: string): string | null {
  const seen = new Set<string>();
  for (const r of resources) {
    const v = validateAnyResource(r);
    if (!v.ok) return v.errors.map(formatIssue).join("; ");
    if (r["@type"] !== TYPE_CDS) return `resource of type ${String(r["@type"])} in a CDS answer`;
    if (seen.has(r.name)) return `duplicate cluster ${r.name} found`;
    seen.add(r.name);
    const p = clusterProblem(r);
    if (p) return p;
  }
  for (const r of resources) {
    const cur = warming.get(r.name) ?? dynamic.get(r.name);
    if (cur && JSON.stringify(cur.cfg) === JSON.stringify(r)) continue;
    const prev = warming.get(r.name);
    if (prev) stopCluster(prev);
    // Added or updated: a new cluster warms; an updated one's predecessor keeps serving meanwhile.
    const sc: SimCluster = { name: r.name, cfg: r, hosts: new Map(), edsDone: false, edsVersion: "", rejected: 0, rr: 0, stop: false };
    warming.set(r.name, sc);
    log(`cds: add/update cluster '${r.name}' (warming)`);
    const edsCfg = r.eds_cluster_config?.eds_config ?? {};
    sc.edsTimer = setTimeout(() => {
      if (sc.stop || sc.edsDone) return;
      log(`eds: cluster '${sc.name}' initial fetch timeout: initialized without endpoints`);
      edsApplied(sc);
    }, seconds(edsCfg.initial_fetch_timeout, 15) * 1000);
    if (!edsOverAds(sc)) void pollEds(sc);
  }
  for (const [n, c] of [...dynamic]) if (!seen.has(n)) (stopCluster(c), dynamic.delete(n), log(`cds: removed cluster '${n}'`));
  for (const [n, c] of [...warming]) if (!seen.has(n)) (stopCluster(c), warming.delete(n));
  cdsVersion = version;
  cdsSuccess++;
  cdsDone = true;
  return null;
}

function stopCluster(c: SimCluster): void {
  c.stop = true;
  clearTimeout(c.edsTimer);
}

/** A ClusterLoadAssignment for `c`; hosts keep their health state across updates (Envoy #27900). */
function applyEds(c: SimCluster, cla: Record<string, any> | undefined, version: string): void {
  const next = new Map<string, SimHost>();
  for (const g of cla?.endpoints ?? []) {
    for (const e of g.lb_endpoints ?? []) {
      const sa = e.endpoint.address.socket_address;
      const address = `${sa.address}:${sa.port_value}`;
      const old = c.hosts.get(address);
      next.set(address, { ...(old ?? { pending: true, failed: false, fails: 0, oks: 0 }), address, priority: g.priority ?? 0, weight: e.load_balancing_weight ?? 1, eds: e.health_status ?? "HEALTHY" });
    }
  }
  c.hosts = next;
  c.edsVersion = version;
  if (!c.edsDone) edsApplied(c);
}

/** First endpoints (or the fetch timeout): the health checker starts; its first round ends the warming. */
function edsApplied(c: SimCluster): void {
  c.edsDone = true;
  clearTimeout(c.edsTimer);
  if (!c.cfg.health_checks?.[0]) return warmed(c);
  void healthRound(c).then(() => {
    warmed(c);
    setTimeout(() => void healthLoop(c), seconds(c.cfg.health_checks[0].interval, 5) * 1000);
  });
}

/** Warming done: the cluster becomes usable (replacing its predecessor at once). */
function warmed(c: SimCluster): void {
  if (c.stop || warming.get(c.name) !== c) return;
  warming.delete(c.name);
  const old = dynamic.get(c.name);
  if (old) stopCluster(old);
  dynamic.set(c.name, c);
  log(`cds: cluster '${c.name}' warmed (${c.hosts.size} hosts)`);
  if (warming.size === 0) ads?.warmingDone();
}

async function xds(path: string, typeUrl: string, version: string, names: string[]): Promise<{ status: number; body: any }> {
  const addr = staticAddr.get(xdsCluster)!;
  const r = await fetch(`http://${addr}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ version_info: version, node: boot.node, resource_names: names, type_url: typeUrl }),
    signal: AbortSignal.timeout(3_000),
  });
  const text = await r.text();
  return { status: r.status, body: r.status === 200 ? JSON.parse(text) : null };
}

const jitter = (s: number) => s * 1000 * (1 + Math.random());

async function pollCds(): Promise<void> {
  try {
    const r = await xds("/v3/discovery:clusters", TYPE_CDS, cdsVersion, []);
    if (r.status === 200) {
      const why = applyCds(r.body.resources, r.body.version_info);
      if (why !== null) {
        cdsRejected++;
        log(`REST config for /v3/discovery:clusters rejected: ${why}`);
      }
    }
    cdsDone = true;
  } catch (e) {
    log(`REST update for /v3/discovery:clusters failed: ${String(e)}`);
  }
  setTimeout(() => void pollCds(), jitter(seconds(at.cdsSource.refresh_delay, 5)));
}

async function pollEds(c: SimCluster): Promise<void> {
  if (c.stop) return;
  const src = c.cfg.eds_cluster_config.eds_config.api_config_source;
  try {
    const r = await xds("/v3/discovery:endpoints", TYPE_EDS, c.edsVersion, [edsName(c)]);
    if (c.stop) return;
    if (r.status === 200) {
      const cla = r.body.resources[0];
      const v = cla ? validateAnyResource(cla) : null;
      if (v && !v.ok) {
        c.rejected++;
        log(`REST config for /v3/discovery:endpoints (${c.name}) rejected: ${v.errors.map(formatIssue).join("; ")}`);
      } else applyEds(c, cla, r.body.version_info);
    } else if (r.status === 304 && !c.edsDone) edsApplied(c);
  } catch (e) {
    log(`REST update for /v3/discovery:endpoints (${c.name}) failed: ${String(e)}`);
  }
  setTimeout(() => void pollEds(c), jitter(seconds(src.refresh_delay, 5)));
}

async function healthRound(c: SimCluster): Promise<void> {
  const hc = c.cfg.health_checks?.[0];
  if (!hc || c.stop) return;
  const timeout = seconds(hc.timeout, 1) * 1000;
  await Promise.all(
    [...c.hosts.values()].map(async (h) => {
      let ok = false;
      // Like Envoy: Host = http_health_check.host, else the cluster name.
      ok = await new Promise<boolean>((resolve) => {
        const [ip, port] = [h.address.slice(0, h.address.lastIndexOf(":")), Number(h.address.slice(h.address.lastIndexOf(":") + 1))];
        const req = httpRequest({ host: ip, port, path: hc.http_health_check.path, headers: { host: hc.http_health_check.host ?? c.name }, timeout }, (res) => {
          res.resume();
          res.on("end", () => resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300));
        });
        req.on("timeout", () => req.destroy());
        req.on("error", () => resolve(false));
        req.end();
      });
      if (ok) {
        h.fails = 0;
        h.oks++;
        if (h.pending || (h.failed && h.oks >= hc.healthy_threshold)) h.failed = false;
      } else {
        h.oks = 0;
        h.fails++;
        if (h.pending || h.fails >= hc.unhealthy_threshold) h.failed = true;
      }
      h.pending = false;
    }),
  );
}

async function healthLoop(c: SimCluster): Promise<void> {
  const hc = c.cfg.health_checks?.[0];
  if (!hc || c.stop) return;
  await healthRound(c);
  setTimeout(() => void healthLoop(c), seconds(hc.interval, 5) * 1000);
}

// ---------------------------------------------------------------------------------------------
// ADS: one gRPC stream (StreamAggregatedResources, state of the world) for CDS and EDS, when the
// bootstrap's cds_config says `ads: {}`. Protocol as envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol
// documents it (see the header); messages encoded with Envoy's protos (control/xds/proto.ts).
const ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
/** Envoy's NACK status code (grpc_mux_impl.cc: error_detail code INTERNAL). */
const GRPC_INTERNAL = 13;

interface DiscoveryRequestOut {
  version_info: string;
  node?: unknown;
  resource_names: string[];
  type_url: string;
  response_nonce: string;
  error_detail?: { code: number; message: string };
}

function startAds() {
  const adsConfig = boot.dynamic_resources.ads_config as Record<string, any>;
  const proto = loadXdsProto();
  const addr = staticAddr.get(xdsCluster)!;
  const nodeOnFirstOnly = adsConfig.set_node_on_first_message_only === true;
  const metadata = new grpc.Metadata();
  for (const m of (adsConfig.grpc_services?.[0]?.initial_metadata ?? []) as { key: string; value: string }[]) metadata.add(m.key, m.value);
  const client = new grpc.Client(addr, grpc.credentials.createInsecure());
  let call: grpc.ClientDuplexStream<DiscoveryRequestOut, any> | null = null;
  let firstOnStream = true;
  let retries = 0;
  let stopped = false;
  const eds = { version: "", nonce: "", names: [] as string[], rejected: 0 };
  /** The CDS request owed (ACK or NACK); held while a cluster warms, once init is done (see header). */
  let cdsOwed: DiscoveryRequestOut | null = null;
  let cdsNonce = "";
  const stats = { connected: 0, streams: 0 };

  const send = (req: DiscoveryRequestOut) => {
    if (!call) return;
    if (!nodeOnFirstOnly || firstOnStream) req.node = boot.node;
    firstOnStream = false;
    call.write(req);
  };
  const flushCds = () => {
    if (!cdsOwed || !call) return;
    if (initialized && warming.size > 0) return;
    const r = cdsOwed;
    cdsOwed = null;
    send(r);
  };
  const edsNames = () => [...new Set([...warming.values(), ...dynamic.values()].filter(edsOverAds).map(edsName))].sort();

  /** The response's resources as JSON, or why they cannot be read (then the response is NACKed). */
  function decodeResources(resp: any): { docs: Record<string, any>[]; why: string | null } {
    try {
      return { docs: (resp.resources as { type_url: string; value: Uint8Array }[]).map((a) => proto.anyToJson(a)), why: null };
    } catch (e) {
      return { docs: [], why: `cannot decode a resource: ${String(e)}` };
    }
  }

  function onCds(resp: any): void {
    const decoded = decodeResources(resp);
    const docs = decoded.docs;
    let why = decoded.why;
    why ??= applyCds(docs, String(resp.version_info));
    cdsNonce = String(resp.nonce);
    if (why !== null) {
      cdsRejected++;
      log(`gRPC config for ${TYPE_CDS} rejected: ${why}`);
      cdsOwed = { version_info: cdsVersion, resource_names: [], type_url: TYPE_CDS, response_nonce: cdsNonce, error_detail: { code: GRPC_INTERNAL, message: why.slice(0, 4096) } };
    } else {
      // EDS, paused while CDS applies, resumes with every ADS-EDS cluster's name (one request).
      const names = edsNames();
      if (names.join("\n") !== eds.names.join("\n")) {
        eds.names = names;
        send({ version_info: eds.version, resource_names: names, type_url: TYPE_EDS, response_nonce: eds.nonce });
      }
      cdsOwed = { version_info: cdsVersion, resource_names: [], type_url: TYPE_CDS, response_nonce: cdsNonce };
    }
    flushCds();
  }

  function onEds(resp: any): void {
    const decoded = decodeResources(resp);
    const docs = decoded.docs;
    let why = decoded.why;
    const seen = new Set<string>();
    for (const d of docs) {
      if (why) break;
      const v = validateAnyResource(d);
      if (!v.ok) why = v.errors.map(formatIssue).join("; ");
      else if (d["@type"] !== TYPE_EDS) why = `resource of type ${String(d["@type"])} in an EDS answer`;
      else if (seen.has(d.cluster_name)) why = `duplicate ClusterLoadAssignment ${d.cluster_name}`;
      seen.add(d.cluster_name);
    }
    if (why !== null) {
      eds.rejected++;
      for (const c of [...warming.values(), ...dynamic.values()]) if (seen.has(edsName(c))) c.rejected++;
      log(`gRPC config for ${TYPE_EDS} rejected: ${why}`);
      eds.nonce = String(resp.nonce);
      send({ version_info: eds.version, resource_names: eds.names, type_url: TYPE_EDS, response_nonce: eds.nonce, error_detail: { code: GRPC_INTERNAL, message: why.slice(0, 4096) } });
      return;
    }
    const version = String(resp.version_info);
    // Only subscribed names count (an extra one is ignored); a subscribed name missing changes nothing.
    for (const d of docs) {
      for (const c of [...warming.values(), ...dynamic.values()]) if (edsOverAds(c) && edsName(c) === d.cluster_name) applyEds(c, d, version);
    }
    eds.version = version;
    eds.nonce = String(resp.nonce);
    send({ version_info: eds.version, resource_names: eds.names, type_url: TYPE_EDS, response_nonce: eds.nonce });
  }

  function connect(): void {
    if (stopped) return;
    firstOnStream = true;
    cdsOwed = null;
    // Nonces do not survive a stream.
    cdsNonce = "";
    eds.nonce = "";
    const c = client.makeBidiStreamRequest<DiscoveryRequestOut, any>(
      ADS_METHOD,
      (m) => Buffer.from(proto.DiscoveryRequest.encode(proto.DiscoveryRequest.fromObject(m as unknown as Record<string, unknown>)).finish()),
      (b) => proto.DiscoveryResponse.toObject(proto.DiscoveryResponse.decode(b), { longs: String, enums: String, defaults: true }),
      metadata,
    );
    call = c;
    stats.streams++;
    c.on("metadata", () => void (stats.connected = 1));
    c.on("data", (resp: any) => {
      if (call !== c) return;
      stats.connected = 1;
      retries = 0;
      if (resp.type_url === TYPE_CDS) onCds(resp);
      else if (resp.type_url === TYPE_EDS) onEds(resp);
      else log(`ads: response of unsubscribed type ${String(resp.type_url)} ignored`);
    });
    c.on("error", () => undefined);
    c.on("status", (st: grpc.StatusObject) => {
      if (call !== c) return;
      call = null;
      stats.connected = 0;
      if (stopped) return;
      // Envoy's backoff: jittered exponential from 500 ms, at most 30 s (envoy/config/subscription_factory.h).
      const ceiling = Math.min(500 * 2 ** retries, 30_000);
      retries++;
      const delay = Math.floor(Math.random() * ceiling);
      log(`StreamAggregatedResources gRPC config stream to ${xdsCluster} closed: ${st.code}, ${st.details}; retrying in ${delay} ms`);
      setTimeout(connect, delay);
    });
    // A new stream: a request per subscribed type, with the last accepted version and no nonce
    // (nonces do not survive a stream).
    send({ version_info: cdsVersion, resource_names: [], type_url: TYPE_CDS, response_nonce: "" });
    if (eds.names.length > 0) send({ version_info: eds.version, resource_names: eds.names, type_url: TYPE_EDS, response_nonce: "" });
  }

  connect();
  return {
    warmingDone: flushCds,
    stats: () => [`control_plane.connected_state: ${stats.connected}`, `cluster_manager.ads.streams_opened: ${stats.streams}`, `cluster_manager.eds.update_rejected: ${eds.rejected}`],
    stop() {
      stopped = true;
      call?.cancel();
      client.close();
    },
  };
}

ads = cdsOverAds ? startAds() : null;
if (!cdsOverAds) void pollCds();
// cds_config.initial_fetch_timeout: Envoy initialises (and listens) without its first CDS answer.
setTimeout(() => void (cdsDone = true), seconds(at.cds.initial_fetch_timeout, 15) * 1000);

// LDS file updates: a move onto the path → the new plugin configuration, or a rejection.
const lds = { success: ldsPath ? 1 : 0, rejected: 0, modified: 0 };
if (ldsPath) {
  let cfg = String(wasmCfg.configuration.value);
  watch(dirname(ldsPath), (_event, name) => {
    if (name !== basename(ldsPath)) return;
    let next: string;
    try {
      next = String(locate({ ...boot, static_resources: { ...boot.static_resources, listeners: [readLdsListener()] } }).wasmConfig.configuration.value);
    } catch {
      return; // not (yet) a complete file: Envoy counts update_failure; not modelled
    }
    if (next === cfg) return;
    try {
      host.updateConfiguration(next);
      cfg = next;
      lds.success++;
      lds.modified++;
      log("lds: listener updated (plugin configuration)");
    } catch (e) {
      lds.rejected++;
      log(`lds: update rejected: ${String(e).split("\n")[0]}`);
    }
  });
}
const ready = (): boolean => {
  const r = cdsDone && warming.size === 0 && [...dynamic.values()].every((c) => c.edsDone);
  if (r && !initialized) {
    initialized = true;
    ads?.warmingDone();
  }
  return r;
};

// ---------------------------------------------------------------------------------------------
// Listener.
const strip = new Set<string>((at.strip.typed_config.mutations.request_mutations as { remove?: string }[]).map((m) => m.remove ?? ""));
const gw = at.gatewayRoute;
const saasRoute = at.saasRoute;
const gatewayHeader: string = gw.match.headers[0].name;

type Route = { kind: "gateway"; cluster: string } | { kind: "static"; cluster: string; hostRewrite?: string } | null;
function route(pairs: Pairs): Route {
  const path = headerOf(pairs, ":path") ?? "/";
  const ch = headerOf(pairs, gatewayHeader);
  if (ch !== undefined && path.startsWith(gw.match.prefix)) return { kind: "gateway", cluster: headerOf(pairs, gw.route.cluster_header) ?? "" };
  if (path.startsWith(saasRoute.match.prefix)) return { kind: "static", cluster: saasRoute.route.cluster, hostRewrite: saasRoute.route.host_rewrite_literal };
  return null;
}

const usable = (h: SimHost) => !h.failed && !h.pending && h.eds !== "UNHEALTHY" && h.eds !== "DRAINING";
function fallback(c: SimCluster): SimHost | undefined {
  const ok = [...c.hosts.values()].filter(usable);
  if (ok.length === 0) return undefined;
  const top = Math.min(...ok.map((h) => h.priority));
  const tier = ok.filter((h) => h.priority === top);
  return tier[c.rr++ % tier.length];
}

interface UpstreamAnswer {
  status: number;
  headers: Pairs;
  body: Buffer;
}
function forward(address: string, method: string, path: string, headers: Pairs, body: Uint8Array): Promise<UpstreamAnswer> {
  return new Promise((resolve, reject) => {
    const hdrs: Record<string, string> = {};
    for (const [k, v] of headers) if (!k.startsWith(":") && k !== "content-length" && k !== "transfer-encoding" && k !== "connection") hdrs[k] = hdrs[k] === undefined ? v : `${hdrs[k]},${v}`;
    const [ip, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
    const req = httpRequest({ host: ip, port, method, path, headers: { ...hdrs, "content-length": String(body.length) }, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: Object.entries(res.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(",") : String(v)]), body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(Buffer.from(body));
  });
}

const FLAG_UF = 0x20n;
const FLAG_UH = 0x2n;
const FLAG_URX = 0x8000n;
const int64 = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(v);
  return new Uint8Array(b);
};

async function handle(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> {
  const t0 = Date.now();
  let pairs: Pairs = [
    [":method", req.method ?? "GET"],
    [":path", req.url ?? "/"],
    [":authority", req.headers.host ?? ""],
    [":scheme", "http"],
  ];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const k = req.rawHeaders[i]!.toLowerCase();
    if (k === "host" || k === "connection" || k === "keep-alive") continue;
    pairs.push([k, req.rawHeaders[i + 1]!]);
  }
  pairs = pairs.filter(([k]) => !strip.has(k)); // header_mutation, before the plugin
  const before = route(pairs);
  const s = host.worker(0).stream();
  s.requestHeaders(pairs, body.length === 0);
  if (body.length > 0 && !s.ended) s.requestBody(new Uint8Array(body), true);
  const mid = s.result();
  if (s.localReply) {
    const r = s.finish();
    const lr = r.localReply!;
    res.writeHead(lr.status, Object.fromEntries(lr.headers.filter(([k]) => !k.startsWith(":"))));
    res.end(Buffer.from(lr.body));
    log(`"${req.method} ${req.url}" ${lr.status} local_reply`);
    return;
  }
  const up = mid.upstreamHeaders;
  if (!up) {
    s.finish();
    res.writeHead(500).end("sim-envoy: the plugin never continued the request (hung)");
    return;
  }
  // clear_route_cache, or (ABI 0.2.1) any change to the request headers the plugin made.
  const cleared = mid.routeCacheClears > 0;
  const r = cleared ? route(up) : before;
  const method = headerOf(up, ":method") ?? "GET";
  const path = headerOf(up, ":path") ?? "/";
  const upBody = mid.upstreamBody;
  let answer: UpstreamAnswer | null = null;
  let used: string | null = null;
  let flags = 0n;
  let attempts = 0;
  let clusterName = "-";
  if (r === null) {
    answer = { status: 404, headers: [], body: Buffer.alloc(0) };
    flags |= 0x10000n; // NR
  } else if (r.kind === "static") {
    clusterName = r.cluster;
    const addr = staticAddr.get(r.cluster)!;
    const hdrs: Pairs = up.filter(([k]) => !k.startsWith(":"));
    hdrs.push(["host", r.hostRewrite ?? headerOf(up, ":authority") ?? ""]);
    attempts = 1;
    try {
      answer = await forward(addr, method, path, hdrs, upBody);
      used = addr;
    } catch {
      flags |= FLAG_UF;
    }
  } else {
    clusterName = r.cluster;
    const c = dynamic.get(r.cluster);
    if (!c) {
      answer = { status: 503, headers: [], body: Buffer.from("no cluster") };
      flags |= 0x200n; // NC
    } else {
      // override_host: the header named by the cluster's override_host_sources.
      const override = c.cfg.load_balancing_policy?.policies?.[0]?.typed_extension_config?.typed_config?.override_host_sources?.[0]?.header as string | undefined;
      const listed = override ? (headerOf(up, override) ?? "").split(",").map((x) => x.trim()).filter((x) => x !== "") : [];
      const retries = Number(gw.route.retry_policy?.num_retries ?? 0);
      const hdrs: Pairs = up.filter(([k]) => !k.startsWith(":"));
      hdrs.push(["host", headerOf(up, ":authority") ?? ""]);
      for (let i = 0; i <= retries; i++) {
        let target: SimHost | undefined;
        while (listed.length > 0 && !target) target = c.hosts.get(listed.shift()!);
        target ??= fallback(c);
        if (!target) {
          flags |= FLAG_UH;
          answer = { status: 503, headers: [], body: Buffer.from("no healthy upstream") };
          break;
        }
        attempts++;
        used = target.address;
        try {
          answer = await forward(target.address, method, path, hdrs, upBody);
          break;
        } catch {
          flags |= FLAG_UF;
          if (i < retries) flags |= FLAG_URX;
        }
      }
      if (!answer && !(flags & FLAG_UH)) answer = { status: 503, headers: [], body: Buffer.from("upstream connect error") };
    }
  }
  if (used) s.setProperty("upstream.address", new TextEncoder().encode(used));
  if (flags !== 0n) s.setProperty("response.flags", int64(flags));
  if (answer) s.respond({ status: answer.status, headers: answer.headers, body: new Uint8Array(answer.body) });
  s.finish();
  const a = answer ?? { status: 503, headers: [], body: Buffer.alloc(0) };
  res.writeHead(a.status, Object.fromEntries(a.headers.filter(([k]) => k !== "content-length" && k !== "transfer-encoding" && k !== "connection")));
  res.end(a.body);
  log(`"${method} ${path}" ${a.status} flags=${flags.toString(16)} cluster=${clusterName} host=${used ?? "-"} attempts=${attempts} dur=${Date.now() - t0}ms`);
}

const listenerAddr = at.listener.address.socket_address;
const listenerServer = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    handle(req, res, Buffer.concat(chunks)).catch((e: unknown) => {
      log(`handler error: ${String(e)}`);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
});
// Like Envoy, whose workers start serving only once initialisation is done (/ready): listen then.
const listenWhenReady = () => (ready() ? listenerServer.listen(listenerAddr.port_value, listenerAddr.address) : setTimeout(listenWhenReady, 10));
listenWhenReady();

// ---------------------------------------------------------------------------------------------
// Admin.
const adminAddr = boot.admin.address.socket_address;
createServer((req, res) => {
  const u = new URL(req.url ?? "/", "http://admin");
  if (u.pathname === "/ready") {
    // LIVE once initialised; clusters warming later (CDS updates) do not change it, as in Envoy.
    const live = initialized || ready();
    res.writeHead(live ? 200 : 503).end(live ? "LIVE\n" : "PRE_INITIALIZING\n");
    return;
  }
  if (u.pathname === "/clusters") {
    const statuses: unknown[] = [...staticAddr.entries()].map(([name, addr]) => ({
      name,
      host_statuses: [{ address: { socket_address: { address: addr.split(":")[0], port_value: Number(addr.split(":")[1]) } }, health_status: { eds_health_status: "HEALTHY" }, weight: 1 }],
    }));
    for (const c of dynamic.values()) {
      statuses.push({
        name: c.name,
        added_via_api: true,
        host_statuses: [...c.hosts.values()].map((h) => ({
          address: { socket_address: { address: h.address.split(":")[0], port_value: Number(h.address.split(":")[1]) } },
          health_status: { ...(h.failed ? { failed_active_health_check: true } : {}), ...(h.pending ? { pending_active_hc: true } : {}), eds_health_status: h.eds === "HEALTHY" ? "HEALTHY" : "UNHEALTHY" },
          weight: h.weight,
          priority: h.priority,
        })),
      });
    }
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ cluster_statuses: statuses }));
    return;
  }
  if (u.pathname === "/stats") {
    const re = new RegExp(u.searchParams.get("filter") ?? "");
    const lines: string[] = [
      `cluster_manager.cds.update_rejected: ${cdsRejected}`,
      `cluster_manager.cds.update_success: ${cdsSuccess}`,
      `cluster_manager.active_clusters: ${staticAddr.size + dynamic.size}`,
      `cluster_manager.warming_clusters: ${warming.size}`,
      ...(ads?.stats() ?? []),
    ];
    for (const c of dynamic.values()) lines.push(`cluster.${c.name}.update_rejected: ${c.rejected}`);
    if (ldsPath) {
      lines.push(`listener_manager.lds.update_success: ${lds.success}`, `listener_manager.lds.update_rejected: ${lds.rejected}`);
      lines.push(`listener_manager.listener_modified: ${lds.modified}`, `listener_manager.listener_in_place_updated: ${lds.modified}`, "listener_manager.total_listeners_warming: 0");
    }
    for (const name of host.metrics.names()) {
      const m = host.metrics.get(name)!;
      if (m.type !== "histogram") lines.push(`wasmcustom.${name}: ${m.value}`);
    }
    res.writeHead(200, { "content-type": "text/plain" }).end(lines.filter((l) => re.test(l.slice(0, l.indexOf(":")))).join("\n") + "\n");
    return;
  }
  res.writeHead(404).end();
}).listen(adminAddr.port_value, adminAddr.address);

log(`SIMULATED Envoy (not Envoy) serving ${listenerAddr.address}:${listenerAddr.port_value}, admin ${adminAddr.address}:${adminAddr.port_value}; filters ${HCM} / ${STRIP_FILTER}`);
process.on("SIGTERM", () => {
  ads?.stop();
  host.shutdown();
  process.exit(0);
});
