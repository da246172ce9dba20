/** Instance health as the API shows it, and the event timeline (zod: validation, types, OpenAPI). */
import { z } from "zod";

export const ProbeKind = z.enum(["path", "models", "completion"]);

export const ProbeResult = z.object({
  ok: z.boolean(),
  at: z.string(),
  kind: ProbeKind,
  latency_ms: z.number(),
  error: z.string().nullable(),
});

export const EventType = z.enum([
  "probe_failed", // a probe failed after passing (or the first probe failed)
  "probe_passed", // a probe passed after failing
  "ejected",
  "readmitted",
  "threshold_crossed", // error rate or P95 went over the deployment's threshold
  "threshold_cleared",
  "ejection_skipped", // over a threshold but not ejected (the last eligible instance, for slowness)
]);

export const InstanceEvent = z.object({
  at: z.string(),
  type: EventType,
  reason: z.string().describe("probe_failures, probes_passed, error_rate, p95_latency, last_eligible_instance, …"),
  state: z.string().nullable().describe("The instance's state after the event"),
  replica: z.string().describe("The control replica that recorded it"),
  evidence: z.record(z.string(), z.unknown()).describe("Probe results, window statistics, thresholds"),
});

export const EventList = z.object({ events: z.array(InstanceEvent) });

export const InstanceHealth = z
  .object({
    window_seconds: z.number(),
    requests: z.number().int().describe("Requests in the window (traffic telemetry)"),
    errors: z.number().int().describe("upstream_5xx + connect_failures in the window"),
    error_rate: z.number().nullable(),
    p95_ms: z.number().nullable().describe("Traffic P95 (time to first byte), interpolated from the merged histogram"),
    mean_ms: z.number().nullable(),
    probe_p95_ms: z.number().nullable().describe("P95 of the probes' own latency in the window (a separate histogram)"),
    probes: z.number().int().describe("Probes in the window"),
    last_probe: ProbeResult.nullable(),
    consecutive_successes: z.number().int(),
    consecutive_failures: z.number().int(),
    reason: z.string().nullable().describe("Why the instance is in its current state (last verdict)"),
    since: z.string().nullable().describe("When the last verdict was made"),
    in_flight: z
      .number()
      .int()
      .nullable()
      .describe("Requests in flight to the instance now, summed over every data-plane worker that reported a count in its last telemetry batch (within 3 of its intervals); null: none did"),
    in_flight_senders: z.number().int().describe("Data-plane workers (wasm VMs) whose count is in in_flight"),
  })
  .describe("Computed when read; never stored in the deployment document");

export type ProbeResult = z.infer<typeof ProbeResult>;
export type InstanceEvent = z.infer<typeof InstanceEvent>;
export type EventType = z.infer<typeof EventType>;
export type InstanceHealth = z.infer<typeof InstanceHealth>;
