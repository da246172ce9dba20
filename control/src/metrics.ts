/**
 * Prometheus metrics of one control replica (prom-client, a registry per replica). Probe latency,
 * verdict counters: what this replica did (sum over replicas). Instance state, window P95 / error rate,
 * table version and probe lease holders: the shared view, read at scrape time from the routing table
 * in memory and from Redis, so any replica answers the same.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Deployment } from "./deployments/schemas.js";
import type { ProberMetrics } from "./jobs/prober.js";
import { probeLeaseName } from "./jobs/prober.js";
import type { Logger } from "./log.js";
import { errorFields } from "./log.js";
import type { TableCache } from "./routing-table/cache.js";
import type { TelemetryStore } from "./telemetry/store.js";
import { errorRate, quantile } from "./telemetry/window.js";

/** Deployments whose windows are read at once (each one pipeline): the whole fleet's reads leave in one turn. */
// As prom-client writes them (lib/registry.js, lib/util.js).
const escapeString = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
const escapeLabelValue = (s: string) => escapeString(s).replace(/"/g, '\\"');
const valueAsString = (v: number) => (Number.isNaN(v) ? "Nan" : !Number.isFinite(v) ? (v < 0 ? "-Inf" : "+Inf") : `${v}`);

const WINDOW_READS_IN_FLIGHT = 4_096;
/** The families below show requests, P95 and error rate only: the window read skips the probe fields. */
const TRAFFIC_ONLY = { trafficOnly: true } as const;

/** f over xs with at most `limit` calls in flight; results in the order of xs. */
async function mapBounded<T, R>(xs: readonly T[], limit: number, f: (x: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(xs.length);
  let next = 0;
  const lane = async () => {
    while (next < xs.length) {
      const k = next++;
      out[k] = await f(xs[k]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, xs.length) }, lane));
  return out;
}

export interface ControlMetrics extends ProberMetrics {
  registry: Registry;
  render(): Promise<{ contentType: string; body: string }>;
}

export function createMetrics(deps: {
  replica: string;
  cache: Pick<TableCache, "current" | "status">;
  deployments: () => Promise<Deployment[]>;
  telemetry: Pick<TelemetryStore, "window">;
  leaseHolders: (names: string[]) => Promise<(string | null)[]>;
  log: Logger;
}): ControlMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ replica: deps.replica });

  // Per deployment, not per instance: a histogram is 14 series, and with one per instance a 10k-instance
  // fleet's scrape was 21 MB and took longer than Prometheus' default 10 s timeout. Per instance: the last probe.
  const probeDuration = new Histogram({
    name: "gateway_probe_duration_seconds",
    help: "Health probe latency (probes made by this replica)",
    labelNames: ["deployment", "kind", "result"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const ejections = new Counter({ name: "gateway_ejections_total", help: "Instances ejected by this replica, by reason", labelNames: ["deployment", "reason"], registers: [registry] });
  const readmissions = new Counter({ name: "gateway_readmissions_total", help: "Instances re-admitted by this replica", labelNames: ["deployment"], registers: [registry] });

  /**
   * This replica's last probe of each instance, by deployment then instance (updated in place: no allocation per
   * probe); pruned to the table at each scrape.
   */
  const lastProbes = new Map<string, Map<string, { ok: boolean; seconds: number }>>();
  /**
   * The per-instance families (up, ejected, last probe, window P95 / error rate / requests: 7 series per instance)
   * are written as text here, not through prom-client gauges: at 10k instances, 70k labelled set() calls and their
   * serialization took ~400 ms of the replica's event loop per scrape. Same text as prom-client writes (labels
   * deployment, instance, then the default label replica; values as prom-client formats them).
   */
  const replicaLabel = `replica="${escapeLabelValue(deps.replica)}"`;
  const family = (name: string, help: string) => ({ name, head: `# HELP ${name} ${escapeString(help)}\n# TYPE ${name} gauge`, lines: [] as string[] });
  const perInstance = {
    up: family("gateway_instance_up", "1 when the instance is active (in the pool) in this replica's routing table"),
    lastProbeSeconds: family("gateway_instance_last_probe_seconds", "Latency of this replica's last probe of the instance"),
    lastProbeOk: family("gateway_instance_last_probe_ok", "1 when this replica's last probe of the instance passed"),
    ejected: family("gateway_instance_ejected", "1 when the instance is ejected"),
    p95: family("gateway_instance_latency_p95_seconds", "Traffic P95 over the deployment's window (telemetry, all Envoys merged)"),
    errRate: family("gateway_instance_error_rate", "(upstream_5xx + connect_failures) / requests over the window"),
    requests: family("gateway_instance_window_requests", "Requests in the window"),
  };
  const labelsOf = (deployment: string, instance: string) => `{deployment="${escapeLabelValue(deployment)}",instance="${escapeLabelValue(instance)}",${replicaLabel}}`;
  const line = (f: { name: string; lines: string[] }, labels: string, v: number) => void f.lines.push(`${f.name}${labels} ${valueAsString(v)}`);

  /** The table's instances (state) and this replica's last probes of them. */
  function fromTable(): void {
    const f = perInstance;
    f.up.lines = [];
    f.ejected.lines = [];
    f.lastProbeSeconds.lines = [];
    f.lastProbeOk.lines = [];
    const seen = new Map<string, Set<string>>();
    for (const d of deps.cache.current()?.table.deployments ?? []) {
      const probes = lastProbes.get(d.id);
      let seenHere: Set<string> | undefined;
      for (const i of d.instances) {
        const labels = labelsOf(d.id, i.id);
        line(f.up, labels, i.state === "active" ? 1 : 0);
        line(f.ejected, labels, i.state === "ejected" ? 1 : 0);
        const last = probes?.get(i.id);
        if (!last) continue;
        if (!seenHere) seen.set(d.id, (seenHere = new Set()));
        seenHere.add(i.id);
        line(f.lastProbeSeconds, labels, last.seconds);
        line(f.lastProbeOk, labels, last.ok ? 1 : 0);
      }
    }
    // Instances gone from the table (deleted, or probed by another replica now) leave no stale series.
    for (const [dep, m] of lastProbes) {
      const keep = seen.get(dep);
      if (!keep) lastProbes.delete(dep);
      else for (const id of m.keys()) if (!keep.has(id)) m.delete(id);
    }
  }
  const version = new Gauge({
    name: "gateway_routing_table_version",
    help: "Routing-table version served by this replica",
    registers: [registry],
    collect() {
      const v = deps.cache.current()?.version;
      if (v !== undefined) this.set(v);
    },
  });
  new Gauge({
    name: "gateway_routing_table_held_deployments",
    help: "Deployments whose stored state the routing table cannot carry (they keep their last good entry or are left out; see GET /healthz)",
    registers: [registry],
    collect() {
      this.set(deps.cache.status().held.length);
    },
  });
  new Gauge({
    name: "gateway_routing_table_behind",
    help: "1 while this replica's served routing table has lagged the stored version for longer than the grace period",
    registers: [registry],
    collect() {
      this.set(deps.cache.status().behind ? 1 : 0);
    },
  });
  const holder = new Gauge({ name: "gateway_probe_lease_holder", help: "1 for the replica (label holder) holding each deployment's probe lease", labelNames: ["deployment", "holder"], registers: [registry] });

  async function fromRedis(): Promise<void> {
    perInstance.p95.lines = [];
    perInstance.errRate.lines = [];
    perInstance.requests.lines = [];
    holder.reset();
    try {
      const deployments = await deps.deployments();
      // The lease holders and every deployment's window are asked for in the same turn: their commands leave
      // together (one round trip, not one per deployment or per lane; with 16 lanes, 10k instances on a replica
      // busy probing took 63 round trips through a loaded event loop: seconds).
      const [holders, windows] = await Promise.all([
        deps.leaseHolders(deployments.map((d) => probeLeaseName(d.id))),
        mapBounded(deployments, WINDOW_READS_IN_FLIGHT, (d) => deps.telemetry.window(d.id, d.instances.map((i) => i.id), d.health_check.window_seconds, undefined, undefined, TRAFFIC_ONLY)),
      ]);
      for (const [k, d] of deployments.entries()) {
        const h = holders[k];
        if (h) holder.set({ deployment: d.id, holder: h }, 1);
      }
      for (const [k, d] of deployments.entries()) {
        for (const [id, s] of windows[k]!) {
          const labels = labelsOf(d.id, id);
          line(perInstance.requests, labels, s.requests);
          const q = quantile(s.latency_buckets, 0.95);
          if (q !== null) line(perInstance.p95, labels, q / 1000);
          const e = errorRate(s);
          if (e !== null) line(perInstance.errRate, labels, e);
        }
      }
    } catch (e) {
      deps.log.debug("metrics: state store unavailable", errorFields(e));
    }
  }

  return {
    registry,
    probe(deployment, instance, kind, ok, seconds) {
      probeDuration.observe({ deployment, kind, result: ok ? "ok" : "failed" }, seconds);
      let m = lastProbes.get(deployment);
      if (!m) lastProbes.set(deployment, (m = new Map()));
      const last = m.get(instance);
      if (last) {
        last.ok = ok;
        last.seconds = seconds;
      } else m.set(instance, { ok, seconds });
    },
    verdict(deployment, _instance, to, reason) {
      if (to === "ejected") ejections.inc({ deployment, reason });
      else readmissions.inc({ deployment });
    },
    async render() {
      await fromRedis();
      fromTable();
      const f = perInstance;
      const text = [f.up, f.lastProbeSeconds, f.lastProbeOk, f.ejected, f.p95, f.errRate, f.requests].map((x) => (x.lines.length > 0 ? `${x.head}\n${x.lines.join("\n")}` : x.head)).join("\n\n");
      for (const x of Object.values(f)) x.lines = [];
      return { contentType: registry.contentType, body: `${text}\n\n${await registry.metrics()}` };
    },
  };
}
