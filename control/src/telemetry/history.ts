/**
 * GET /v1/deployments/{id}/instances/{iid}/history — the instance's statistics per telemetry bucket
 * (the same Redis buckets the windows are summed from), oldest first: what the dashboard's P95 /
 * error-rate chart draws. Buckets live a little longer than the longest window (600 s), so that is
 * as far back as it goes; per bucket, P95 is over that bucket's requests only.
 */
import { Router } from "express";
import { z } from "zod";
import { Id } from "../../contracts/routing-table.js";
import { READ_ROLES, requireRole, type Authenticator } from "../http/auth.js";
import { AppError } from "../http/errors.js";
import { parsePart } from "../http/validate.js";
import type { DeploymentService } from "../deployments/service.js";
import { MAX_WINDOW_SECONDS, type TelemetryStore } from "./store.js";
import { errorRate, errorsOf, quantile, round } from "./window.js";

export const HistoryPoint = z.object({
  start: z.string().describe("Bucket start (ISO 8601); the last bucket is still filling"),
  requests: z.number().int(),
  errors: z.number().int().describe("upstream_5xx + connect_failures"),
  error_rate: z.number().nullable(),
  p95_ms: z.number().nullable().describe("Traffic P95 of this bucket's requests"),
  probes: z.number().int(),
  probe_failures: z.number().int(),
  probe_p95_ms: z.number().nullable(),
});

export const InstanceHistory = z.object({
  bucket_ms: z.number().int(),
  points: z.array(HistoryPoint),
});

const Params = z.object({ id: Id, instanceId: Id });
const Query = z.object({ seconds: z.coerce.number().int().min(1).max(MAX_WINDOW_SECONDS).default(300) }).strip();

export function historyRoutes(deps: { deployments: Pick<DeploymentService, "get">; telemetry: Pick<TelemetryStore, "series" | "bucketMs">; auth: Authenticator }): Router {
  const r = Router();
  r.get("/v1/deployments/:id/instances/:instanceId/history", requireRole(deps.auth, ...READ_ROLES), async (req, res) => {
    const { id, instanceId } = parsePart(Params, req.params, "path");
    const { seconds } = parsePart(Query, req.query, "query");
    const d = await deps.deployments.get(id);
    if (!d.instances.some((i) => i.id === instanceId)) throw new AppError("not_found", `instance ${instanceId} not found in deployment ${id}`);
    const series = await deps.telemetry.series(id, instanceId, seconds);
    res.json({
      bucket_ms: deps.telemetry.bucketMs,
      points: series.map(({ start, stats: s }) => ({
        start: new Date(start).toISOString(),
        requests: s.requests,
        errors: errorsOf(s),
        error_rate: round(errorRate(s), 4),
        p95_ms: round(quantile(s.latency_buckets, 0.95)),
        probes: s.probes,
        probe_failures: s.probe_failures,
        probe_p95_ms: round(quantile(s.probe_buckets, 0.95)),
      })),
    });
  });
  return r;
}
