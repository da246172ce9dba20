/**
 * Contract 3 — the telemetry batch.
 *
 * Produced by the plugin (each worker's root context, every `telemetry_interval_ms`, by
 * proxy_http_call POST to `telemetry_path` on the control cluster), consumed by the control
 * service, which merges batches from every worker of every Envoy into per-instance sliding windows
 * (P95 latency, error rate). Counts are per instance actually used (`upstream.address`, i.e. after
 * retries) since the previous batch of the same sender; `in_flight` is the sender's count at end_ms. Losing a batch loses only those counts;
 * `seq` lets the consumer drop a duplicate delivery. Fixtures: test/fixtures/telemetry/.
 */
import { z } from "zod";
import { Address, Id } from "./routing-table.js";

export const TELEMETRY_SCHEMA = 1;

/**
 * Upper bounds (ms, inclusive) of the latency histogram buckets; a final implicit bucket holds
 * everything slower. Latency is request start → upstream response headers (time to first byte:
 * for a streamed completion, roughly time to first token).
 */
export const LATENCY_BUCKETS_MS = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000] as const;

export const TELEMETRY_LIMITS = {
  maxInstancesPerBatch: 2_048,
  maxCount: 1_000_000_000,
} as const;

const Count = z.number().int().min(0).max(TELEMETRY_LIMITS.maxCount);

export const InstanceTelemetry = z
  .object({
    deployment: Id,
    instance: Id,
    address: Address,
    /** Requests whose upstream was this instance (each retry attempt counts against the host it used). */
    requests: Count,
    /** Responses with status 5xx from the instance. */
    upstream_5xx: Count,
    /** Connection failures, resets and refused streams before any response (Envoy response flags UF/UR/UC/LR…). */
    connect_failures: Count,
    /** Counts per LATENCY_BUCKETS_MS bucket, plus the overflow bucket last. */
    latency_ms_buckets: z.array(Count).length(LATENCY_BUCKETS_MS.length + 1),
    /** Sum of the observed latencies, for the mean. */
    latency_ms_sum: z.number().min(0),
    /**
     * Requests this sender routed to the instance whose stream had not ended when the batch closed. A
     * sender reports an instance with no other counts too while this is > 0 (so a long stream stays
     * reported) and once when it changed to 0. Absent: a sender older than this field (unknown).
     */
    in_flight: Count.optional(),
  })
  .refine((t) => t.upstream_5xx + t.connect_failures <= t.requests, {
    path: ["requests"],
    message: "must be at least upstream_5xx + connect_failures",
  });

export const TelemetryBatch = z.object({
  schema: z.literal(TELEMETRY_SCHEMA),
  /** Sender: the Envoy node's wasm VM instance (root context), stable for the VM's life. */
  source: z.string().min(1).max(256),
  /** Per-source sequence number, starting at 1; a repeated (source, seq) is a duplicate. */
  seq: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  /** The routing-table version the sender was using when the batch closed. */
  table_version: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  /** Interval covered, sender's wall clock (ms since the epoch). */
  start_ms: z.number().int().min(0),
  end_ms: z.number().int().min(0),
  instances: z.array(InstanceTelemetry).max(TELEMETRY_LIMITS.maxInstancesPerBatch),
});

export type InstanceTelemetry = z.infer<typeof InstanceTelemetry>;
export type TelemetryBatch = z.infer<typeof TelemetryBatch>;
