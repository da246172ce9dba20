/** GET /v1/deployments/{id}/instances/{iid}/events — the instance's event timeline, newest first. */
import { Router } from "express";
import { z } from "zod";
import { Id } from "../../contracts/routing-table.js";
import { READ_ROLES, requireRole, type Authenticator } from "../http/auth.js";
import { AppError } from "../http/errors.js";
import { parsePart } from "../http/validate.js";
import type { DeploymentService } from "../deployments/service.js";
import type { HealthStore } from "./store.js";

const Params = z.object({ id: Id, instanceId: Id });

export function healthRoutes(deps: { deployments: Pick<DeploymentService, "get">; health: Pick<HealthStore, "events">; auth: Authenticator; maxEvents: number }): Router {
  const r = Router();
  const Query = z.object({ limit: z.coerce.number().int().min(1).max(deps.maxEvents).default(Math.min(50, deps.maxEvents)) }).strip();
  r.get("/v1/deployments/:id/instances/:instanceId/events", requireRole(deps.auth, ...READ_ROLES), async (req, res) => {
    const { id, instanceId } = parsePart(Params, req.params, "path");
    const { limit } = parsePart(Query, req.query, "query");
    const d = await deps.deployments.get(id);
    if (!d.instances.some((i) => i.id === instanceId)) throw new AppError("not_found", `instance ${instanceId} not found in deployment ${id}`);
    res.json({ events: await deps.health.events(id, instanceId, limit) });
  });
  return r;
}
