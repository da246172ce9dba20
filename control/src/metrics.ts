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

export interface ControlMetrics extends ProberMetrics {
  registry: Registry;
  render(): Promise<{ contentType: string; body: string }>;
}

export function createMetrics(deps: {
  replica: string;
  cache: Pick<TableCache, "current">;
  deployments: () => Promise<Deployment[]>;
  telemetry: Pick<TelemetryStore, "window">;
  leaseHolders: (names: string[]) => Promise<(string | null)[]>;
  log: Logger;
}): ControlMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ replica: deps.replica });
  const inst = ["deployment", "instance"] as const;

  const probeDuration = new Histogram({
    name: "gateway_probe_duration_seconds",
    help: "Health probe latency (probes made by this replica)",
    labelNames: [...inst, "kind", "result"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const ejections = new Counter({ name: "gateway_ejections_total", help: "Instances ejected by this replica, by reason", labelNames: ["deployment", "reason"], registers: [registry] });
  const readmissions = new Counter({ name: "gateway_readmissions_total", help: "Instances re-admitted by this replica", labelNames: ["deployment"], registers: [registry] });

  const up = new Gauge({
    name: "gateway_instance_up",
    help: "1 when the instance is active (in the pool) in this replica's routing table",
    labelNames: [...inst],
    registers: [registry],
    collect() {
      this.reset();
      ejected.reset();
      for (const d of deps.cache.current()?.table.deployments ?? []) {
        for (const i of d.instances) {
          this.set({ deployment: d.id, instance: i.id }, i.state === "active" ? 1 : 0);
          ejected.set({ deployment: d.id, instance: i.id }, i.state === "ejected" ? 1 : 0);
        }
      }
    },
  });
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
        const byInst = await deps.telemetry.window(d.id, d.instances.map((i) => i.id), d.health_check.window_seconds);
        for (const [id, s] of byInst) {
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
      probeDuration.observe({ deployment, instance, kind, result: ok ? "ok" : "failed" }, seconds);
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
