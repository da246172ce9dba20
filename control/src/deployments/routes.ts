/** /v1/deployments and their instances — thin handlers over the deployment service. */
import { Router, type RequestHandler, type Response } from "express";
import { z } from "zod";
import { Id } from "../../contracts/routing-table.js";
import { READ_ROLES, WRITE_ROLES, requireRole, type Authenticator } from "../http/auth.js";
import { bodyParsers, type BodyParsers } from "../http/body.js";
import { AppError } from "../http/errors.js";
import { ifMatchOf, revisionEtag } from "../http/preconditions.js";
import { parseBody, parsePart } from "../http/validate.js";
import { DeploymentCreate, DeploymentUpdate, InstanceAdd, InstanceUpdate, type Deployment } from "./schemas.js";
import type { DeploymentService } from "./service.js";

const DepParams = z.object({ id: Id });
const InstParams = z.object({ id: Id, instanceId: Id });

/** Wait for background work up to `ms`, without failing the request if it fails. */
export async function waitBounded(p: Promise<unknown>, ms: number): Promise<void> {
  let t: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => undefined), new Promise<void>((r) => (t = setTimeout(r, ms)))]);
  clearTimeout(t);
}

export function sendDeployment(res: Response, d: Deployment, status = 200): void {
  res.status(status).setHeader("etag", revisionEtag(d.revision)).json(d);
}

export function deploymentRoutes(deps: {
  service: DeploymentService;
  worker: { kick(id: string): Promise<void> };
  auth: Authenticator;
  idempotency: RequestHandler;
  createWaitMs: number;
  /** Adds each instance's health (window statistics, last probe) to reads. */
  view?: { deployment(d: Deployment): Promise<Deployment> };
  /** Body parsers (limits per kind), each mounted after the role check. */
  body?: Pick<BodyParsers, "deploymentCreate" | "deploymentUpdate" | "instance">;
}): Router {
  const { service, worker } = deps;
  const withHealth = (d: Deployment) => (deps.view ? deps.view.deployment(d) : Promise.resolve(d));
  const r = Router();
  const read = requireRole(deps.auth, ...READ_ROLES);
  const write = requireRole(deps.auth, ...WRITE_ROLES);
  const body = deps.body ?? bodyParsers();

  /**
   * Re-test: let the connectivity test finish within the bound; then answer with what is stored. Another
   * replica's worker may have taken the work (lease): then watch the stored document until the bound.
   */
  const afterTests = async (d: Deployment): Promise<{ d: Deployment; pending: boolean }> => {
    const deadline = Date.now() + deps.createWaitMs;
    await waitBounded(worker.kick(d.id), deps.createWaitMs);
    for (;;) {
      const now = await service.get(d.id).catch(() => d);
      const pending = now.instances.some((i) => i.state === "pending");
      if (!pending || Date.now() >= deadline) return { d: now, pending };
      await new Promise((r) => setTimeout(r, Math.min(25, Math.max(1, deadline - Date.now()))));
    }
  };

  // Create: the instances are tested before anything is stored (service.create, connectivity/preflight.ts).
  // 201: every test finished; 202: some still running (the worker finishes them) while one passed or
  // allow_unreachable is set; 422 connectivity_failed: none passed, nothing stored.
  r.post("/v1/deployments", write, body.deploymentCreate, deps.idempotency, async (req, res) => {
    const { deployment: d, warnings, pending } = await service.create(parseBody(DeploymentCreate, req.body));
    if (pending) void worker.kick(d.id);
    res.setHeader("location", `/v1/deployments/${d.id}`);
    res.status(pending ? 202 : 201).setHeader("etag", revisionEtag(d.revision)).json({ ...d, warnings });
  });
  r.get("/v1/deployments", read, async (_req, res) => {
    res.json({ deployments: await Promise.all((await service.list()).map(withHealth)) });
  });
  r.get("/v1/deployments/:id", read, async (req, res) => {
    const { id } = parsePart(DepParams, req.params, "path");
    sendDeployment(res, await withHealth(await service.get(id)));
  });
  r.patch("/v1/deployments/:id", write, body.deploymentUpdate, async (req, res) => {
    const { id } = parsePart(DepParams, req.params, "path");
    sendDeployment(res, await service.update(id, parseBody(DeploymentUpdate, req.body), ifMatchOf(req)));
  });
  r.delete("/v1/deployments/:id", write, async (req, res) => {
    const { id } = parsePart(DepParams, req.params, "path");
    await service.remove(id, ifMatchOf(req));
    res.status(204).end();
  });

  // Scale up: add an instance, tested before it is stored (same answers as create).
  r.post("/v1/deployments/:id/instances", write, body.instance, deps.idempotency, async (req, res) => {
    const { id } = parsePart(DepParams, req.params, "path");
    const { value: inst, deployment: d, warnings, pending } = await service.addInstance(id, parseBody(InstanceAdd, req.body), ifMatchOf(req));
    if (pending) void worker.kick(id);
    res.setHeader("location", `/v1/deployments/${id}/instances/${inst.id}`).setHeader("etag", revisionEtag(d.revision));
    res.status(pending ? 202 : 201).json({ ...inst, warnings });
  });
  r.get("/v1/deployments/:id/instances/:instanceId", read, async (req, res) => {
    const { id, instanceId } = parsePart(InstParams, req.params, "path");
    const d = await withHealth(await service.get(id));
    const inst = d.instances.find((i) => i.id === instanceId);
    if (!inst) throw new AppError("not_found", `instance ${instanceId} not found in deployment ${id}`);
    res.setHeader("etag", revisionEtag(d.revision)).json(inst);
  });
  r.patch("/v1/deployments/:id/instances/:instanceId", write, body.instance, async (req, res) => {
    const { id, instanceId } = parsePart(InstParams, req.params, "path");
    sendDeployment(res, await service.updateInstance(id, instanceId, parseBody(InstanceUpdate, req.body), ifMatchOf(req)));
  });
  // Scale down: out of the routing table at once.
  r.delete("/v1/deployments/:id/instances/:instanceId", write, async (req, res) => {
    const { id, instanceId } = parsePart(InstParams, req.params, "path");
    const d = await service.removeInstance(id, instanceId, ifMatchOf(req));
    res.status(204).setHeader("etag", revisionEtag(d.revision)).end();
  });
  r.post("/v1/deployments/:id/instances/:instanceId/test", write, async (req, res) => {
    const { id, instanceId } = parsePart(InstParams, req.params, "path");
    const { d, pending } = await afterTests(await service.retest(id, instanceId));
    sendDeployment(res, d, pending ? 202 : 200);
  });
  return r;
}
