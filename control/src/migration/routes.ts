/** /v1/deployments/:id/migrations — start a rolling endpoint change, read its progress, cancel it before the switch. */
import { Router, type RequestHandler } from "express";
import { z } from "zod";
import { Id } from "../../contracts/routing-table.js";
import { READ_ROLES, WRITE_ROLES, requireRole, type Authenticator } from "../http/auth.js";
import { bodyParsers, type BodyParsers } from "../http/body.js";
import { ifMatchOf, revisionEtag } from "../http/preconditions.js";
import { parseBody, parsePart } from "../http/validate.js";
import { MigrationCreate } from "../deployments/schemas.js";
import type { MigrationService } from "./service.js";

const DepParams = z.object({ id: Id });
const MigParams = z.object({ id: Id, migrationId: Id });

export function migrationRoutes(deps: { service: MigrationService; worker: { kick(id: string): Promise<void> }; auth: Authenticator; idempotency: RequestHandler; body?: Pick<BodyParsers, "migration"> }): Router {
  const { service } = deps;
  const body = (deps.body ?? bodyParsers()).migration; // read after the role check
  const r = Router();
  const read = requireRole(deps.auth, ...READ_ROLES);
  const write = requireRole(deps.auth, ...WRITE_ROLES);

  r.post("/v1/deployments/:id/migrations", write, body, deps.idempotency, async (req, res) => {
    const { id } = parsePart(DepParams, req.params, "path");
    const { deployment, migration } = await service.start(id, parseBody(MigrationCreate, req.body), ifMatchOf(req));
    void deps.worker.kick(id);
    res.status(202).setHeader("location", `/v1/deployments/${id}/migrations/${migration.id}`).setHeader("etag", revisionEtag(deployment.revision)).json(migration);
  });
  r.post("/v1/deployments/:id/migrations/:migrationId/cancel", write, async (req, res) => {
    const { id, migrationId } = parsePart(MigParams, req.params, "path");
    const { deployment, migration } = await service.cancel(id, migrationId, ifMatchOf(req));
    res.setHeader("etag", revisionEtag(deployment.revision)).json(migration);
  });
  r.get("/v1/deployments/:id/migrations", read, async (req, res) => {
    const { id } = parsePart(DepParams, req.params, "path");
    res.json({ migrations: await service.list(id) });
  });
  r.get("/v1/deployments/:id/migrations/:migrationId", read, async (req, res) => {
    const { id, migrationId } = parsePart(MigParams, req.params, "path");
    res.json(await service.get(id, migrationId));
  });
  return r;
}
