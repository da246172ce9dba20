/** Instance views with their health: window statistics (telemetry) + the prober's state. */
import type { Deployment, Instance } from "../deployments/schemas.js";
import type { TelemetryStore } from "../telemetry/store.js";
import { errorRate, errorsOf, quantile, round } from "../telemetry/window.js";
import type { InstanceHealth } from "./schemas.js";
import type { HealthStore } from "./store.js";

export type InstanceView = Instance & { health: InstanceHealth };
export type DeploymentView = Omit<Deployment, "instances"> & { instances: InstanceView[] };

export function createHealthView(deps: { telemetry: Pick<TelemetryStore, "window" | "inFlight">; health: Pick<HealthStore, "states"> }) {
  return {
    async deployment(d: Deployment): Promise<DeploymentView> {
      const hc = d.health_check;
      const ids = d.instances.map((i) => i.id);
      const [stats, states, flights] = await Promise.all([deps.telemetry.window(d.id, ids, hc.window_seconds), deps.health.states(d.id), deps.telemetry.inFlight(d.id, ids)]);
      return {
        ...d,
        instances: d.instances.map((i) => {
          const s = stats.get(i.id)!;
          const st = states.get(i.id);
          const health: InstanceHealth = {
            window_seconds: hc.window_seconds,
            requests: s.requests,
            errors: errorsOf(s),
            error_rate: round(errorRate(s), 4),
            p95_ms: round(quantile(s.latency_buckets, 0.95)),
            mean_ms: s.requests > 0 ? round(s.latency_sum_ms / s.requests) : null,
            probe_p95_ms: round(quantile(s.probe_buckets, 0.95)),
            probes: s.probes,
            last_probe: st?.recent[0] ?? null,
            consecutive_successes: st?.successes ?? 0,
            consecutive_failures: st?.failures ?? 0,
            reason: st?.reason ?? null,
            since: st?.since ?? null,
            in_flight: flights.get(i.id)?.total ?? null,
            in_flight_senders: flights.get(i.id)?.senders ?? 0,
          };
          return { ...i, health };
        }),
      };
    },
  };
}

export type HealthView = ReturnType<typeof createHealthView>;
