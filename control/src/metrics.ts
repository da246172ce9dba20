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

const WINDOW_READS_IN_FLIGHT = 16;

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
  const inst = ["deployment", "instance"] as const;

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

  /** This replica's last probe of each instance, by `deployment/instance`; pruned to the table at each scrape. */
  const lastProbes = new Map<string, { ok: boolean; seconds: number }>();
  const up = new Gauge({
    name: "gateway_instance_up",
    help: "1 when the instance is active (in the pool) in this replica's routing table",
    labelNames: [...inst],
    registers: [registry],
    collect() {
      this.reset();
      ejected.reset();
      lastProbeSeconds.reset();
      lastProbeOk.reset();
      const seen = new Set<string>();
      for (const d of deps.cache.current()?.table.deployments ?? []) {
        for (const i of d.instances) {
          const labels = { deployment: d.id, instance: i.id };
          this.set(labels, i.state === "active" ? 1 : 0);
          ejected.set(labels, i.state === "ejected" ? 1 : 0);
          const key = `${d.id}/${i.id}`;
          const last = lastProbes.get(key);
          if (!last) continue;
          seen.add(key);
          lastProbeSeconds.set(labels, last.seconds);
          lastProbeOk.set(labels, last.ok ? 1 : 0);
        }
      }
      // Instances gone from the table (deleted, or probed by another replica now) leave no stale series.
      for (const key of lastProbes.keys()) if (!seen.has(key)) lastProbes.delete(key);
    },
  });
  const lastProbeSeconds = new Gauge({ name: "gateway_instance_last_probe_seconds", help: "Latency of this replica's last probe of the instance", labelNames: [...inst], registers: [registry] });
  const lastProbeOk = new Gauge({ name: "gateway_instance_last_probe_ok", help: "1 when this replica's last probe of the instance passed", labelNames: [...inst], registers: [registry] });
  const ejected = new Gauge({ name: "gateway_instance_ejected", help: "1 when the instance is ejected", labelNames: [...inst], registers: [registry] });
  // Filled from Redis by render() before the registry is serialized (prom-client runs collectors concurrently).
  const p95 = new Gauge({ name: "gateway_instance_latency_p95_seconds", help: "Traffic P95 over the deployment's window (telemetry, all Envoys merged)", labelNames: [...inst], registers: [registry] });
  const errRate = new Gauge({ name: "gateway_instance_error_rate", help: "(upstream_5xx + connect_failures) / requests over the window", labelNames: [...inst], registers: [registry] });
  const requests = new Gauge({ name: "gateway_instance_window_requests", help: "Requests in the window", labelNames: [...inst], registers: [registry] });
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
    p95.reset();
    errRate.reset();
    requests.reset();
    holder.reset();
    try {
      const deployments = await deps.deployments();
      const holders = await deps.leaseHolders(deployments.map((d) => probeLeaseName(d.id)));
      for (const [k, d] of deployments.entries()) {
        const h = holders[k];
        if (h) holder.set({ deployment: d.id, holder: h }, 1);
      }
      // WINDOW_READS_IN_FLIGHT deployments at a time: one after the other, 1000 deployments were 1000 round trips.
      const windows = await mapBounded(deployments, WINDOW_READS_IN_FLIGHT, (d) => deps.telemetry.window(d.id, d.instances.map((i) => i.id), d.health_check.window_seconds));
      for (const [k, d] of deployments.entries()) {
        for (const [id, s] of windows[k]!) {
          const labels = { deployment: d.id, instance: id };
          requests.set(labels, s.requests);
          const q = quantile(s.latency_buckets, 0.95);
          if (q !== null) p95.set(labels, q / 1000);
          const e = errorRate(s);
          if (e !== null) errRate.set(labels, e);
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
      lastProbes.set(`${deployment}/${instance}`, { ok, seconds });
    },
    verdict(deployment, _instance, to, reason) {
      if (to === "ejected") ejections.inc({ deployment, reason });
      else readmissions.inc({ deployment });
    },
    async render() {
      await fromRedis();
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
