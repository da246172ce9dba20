/**
 * GET /v1/routing-table — contract 1 for the plugin.
 * ETag = tableEtag(version); If-None-Match with the current version → 304, or with ?wait=N (≤ 60 s)
 * a long-poll answered as soon as any replica publishes a newer version.
 */
import { Router, type Request, type Response } from "express";
import { z } from "zod";
import { TABLE_ROLES, requireRole, type Authenticator } from "../http/auth.js";
import { AppError } from "../http/errors.js";
import { parsePart } from "../http/validate.js";
import type { CurrentTable, TableCache } from "./cache.js";

/** The newest version the client says it has (from If-None-Match), or null. */
function clientVersion(inm: string | undefined): number | null {
  if (inm === undefined) return null;
  let best: number | null = null;
  for (const tag of inm.split(",")) {
    const m = /^\s*(?:W\/)?"(\d{1,16})"\s*$/.exec(tag);
    if (m) best = Math.max(best ?? 0, Number(m[1]));
  }
  return best;
}

export function routingTableRoutes(deps: { cache: TableCache; auth: Authenticator; maxWaitSeconds: number }): Router {
  const { cache } = deps;
  const Query = z.object({ wait: z.coerce.number().int().min(0).max(deps.maxWaitSeconds).default(0) }).strip();
  const r = Router();

  // Upstream API keys go to the data plane only: a plugin token gets them, admins and viewers do not.
  const send = (req: Request, res: Response, t: CurrentTable) => {
    res.status(200).setHeader("etag", t.etag).setHeader("cache-control", "no-cache").type("application/json").send(req.role === "plugin" ? t.json : t.publicJson);
  };

  r.get("/v1/routing-table", requireRole(deps.auth, ...TABLE_ROLES), async (req, res) => {
    const { wait } = parsePart(Query, req.query, "query");
    const cur = cache.current();
    if (!cur) {
      res.setHeader("retry-after", "1");
      throw new AppError("table_unavailable", "no routing table yet (the state store has not been reachable since start)");
    }
    const have = clientVersion(req.get("if-none-match"));
    if (have === null || have < cur.version) return send(req, res, cur);
    if (wait > 0) {
      const ac = new AbortController();
      res.on("close", () => ac.abort());
      const changed = await cache.waitForNewer(have, wait * 1000, ac.signal);
      if (res.destroyed) return;
      const now = cache.current();
      if (changed && now) return send(req, res, now);
    }
    res.status(304).setHeader("etag", cur.etag).setHeader("cache-control", "no-cache").end();
  });
  return r;
}
