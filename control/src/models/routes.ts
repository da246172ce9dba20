/** /v1/models — thin handlers: parse, call the service, answer. */
import { Router } from "express";
import { z } from "zod";
import { Id } from "../../contracts/routing-table.js";
import { READ_ROLES, WRITE_ROLES, requireRole, type Authenticator } from "../http/auth.js";
import { bodyParsers, type BodyParsers } from "../http/body.js";
import { ifMatchOf, revisionEtag } from "../http/preconditions.js";
import { parseBody, parsePart } from "../http/validate.js";
import { ModelCreate, ModelUpdate } from "./schemas.js";
import type { ModelService } from "./service.js";
import type { RequestHandler } from "express";

const Params = z.object({ id: Id });

export function modelRoutes(deps: { service: ModelService; auth: Authenticator; idempotency: RequestHandler; body?: Pick<BodyParsers, "model"> }): Router {
  const { service, auth } = deps;
  const body = (deps.body ?? bodyParsers()).model; // read after the role check
  const r = Router();
  const read = requireRole(auth, ...READ_ROLES);
  const write = requireRole(auth, ...WRITE_ROLES);

  r.post("/v1/models", write, body, deps.idempotency, async (req, res) => {
    const model = await service.create(parseBody(ModelCreate, req.body));
    res.status(201).setHeader("etag", revisionEtag(model.revision)).setHeader("location", `/v1/models/${model.id}`).json(model);
  });
  r.get("/v1/models", read, async (_req, res) => {
    res.json({ models: await service.list() });
  });
  r.get("/v1/models/:id", read, async (req, res) => {
    const { id } = parsePart(Params, req.params, "path");
    const model = await service.get(id);
    res.setHeader("etag", revisionEtag(model.revision)).json(model);
  });
  r.patch("/v1/models/:id", write, body, async (req, res) => {
    const { id } = parsePart(Params, req.params, "path");
    const model = await service.update(id, parseBody(ModelUpdate, req.body), ifMatchOf(req));
    res.setHeader("etag", revisionEtag(model.revision)).json(model);
  });
  r.delete("/v1/models/:id", write, async (req, res) => {
    const { id } = parsePart(Params, req.params, "path");
    await service.remove(id, ifMatchOf(req));
    res.status(204).end();
  });
  return r;
}
