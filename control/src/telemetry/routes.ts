/**
 * POST /v1/telemetry — contract 3 batches from the plugin (plugin or admin token). Validated whole with
 * the contract's zod schema (400 naming each bad field); the body is read after the token check, within
 * BODY_LIMITS.telemetry (sized for the contract's largest batch; 413 over it). Instances not in this
 * replica's routing table are ignored (a removed instance, or a sender on an old table); a (source, seq)
 * seen before is ignored whole.
 */
import { Router } from "express";
import { TelemetryBatch } from "../../contracts/telemetry.js";
import { requireRole, type Authenticator } from "../http/auth.js";
import { bodyParsers, type BodyParsers } from "../http/body.js";
import { parseBody } from "../http/validate.js";
import type { TableCache } from "../routing-table/cache.js";
import type { TelemetryStore } from "./store.js";

export function telemetryRoutes(deps: { store: Pick<TelemetryStore, "applyBatch">; cache: Pick<TableCache, "current">; auth: Authenticator; body?: Pick<BodyParsers, "telemetry"> }): Router {
  const r = Router();
  r.post("/v1/telemetry", requireRole(deps.auth, "plugin", "admin"), (deps.body ?? bodyParsers()).telemetry, async (req, res) => {
    const batch = parseBody(TelemetryBatch, req.body);
    const known = new Set<string>();
    for (const d of deps.cache.current()?.table.deployments ?? []) for (const i of d.instances) known.add(`${d.id}/${i.id}`);
    const accepted = batch.instances.filter((i) => known.has(`${i.deployment}/${i.instance}`));
    const merged = await deps.store.applyBatch(batch.source, batch.seq, accepted, Date.now(), batch.end_ms - batch.start_ms);
    res.status(200).json({ duplicate: !merged, accepted: merged ? accepted.length : 0, ignored: merged ? batch.instances.length - accepted.length : batch.instances.length });
  });
  return r;
}
