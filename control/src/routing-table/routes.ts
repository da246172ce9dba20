/**
 * GET /v1/routing-table — contract 1 for the plugin.
 * ETag = tableEtag(version); If-None-Match with the current version → 304, or with ?wait=N (≤ 60 s)
 * a long-poll answered as soon as any replica publishes a newer version.
 * With `x-gateway-node` (the plugin's Envoy node id) and `views` (node-view.ts), the answer is the table
 * that node's Envoy can serve (a view at version − 1 until it ACKed the xDS version), and the long-poll
 * also wakes when that node's ACK changes what it gets.
 */
import { Router, type Request, type Response } from "express";
import { z } from "zod";
import { TABLE_ROLES, requireRole, type Authenticator } from "../http/auth.js";
import { AppError } from "../http/errors.js";
import { parsePart } from "../http/validate.js";
import type { CurrentTable, TableCache } from "./cache.js";
import { NODE_HEADER, type NodeView, type ServedTable, type TableViews } from "./node-view.js";

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

export function routingTableRoutes(deps: { cache: TableCache; auth: Authenticator; maxWaitSeconds: number; views?: TableViews }): Router {
  const { cache, views } = deps;
  const Query = z.object({ wait: z.coerce.number().int().min(0).max(deps.maxWaitSeconds).default(0) }).strip();
  const r = Router();

  // Upstream API keys go to the data plane only: a plugin token gets them, admins and viewers do not.
  const send = (req: Request, res: Response, t: ServedTable) => {
    res.status(200).setHeader("etag", t.etag).setHeader("cache-control", "no-cache").type("application/json").send(req.role === "plugin" ? t.json : t.publicJson);
  };
  const complete = (cur: CurrentTable): NodeView => ({ kind: "table", table: cur, filtered: false, reason: "off", recheckInMs: null });
  /** The table to send when it is newer than what the client has (null: it has nothing), else null. */
  const newer = (v: NodeView, have: number | null): ServedTable | null => (v.kind === "table" && (have === null || v.table.version > have) ? v.table : null);

  r.get("/v1/routing-table", requireRole(deps.auth, ...TABLE_ROLES), async (req, res) => {
    const { wait } = parsePart(Query, req.query, "query");
    let cur = cache.current();
    if (!cur) {
      res.setHeader("retry-after", "1");
      throw new AppError("table_unavailable", "no routing table yet (the state store has not been reachable since start)");
    }
    const node = views ? (req.get(NODE_HEADER) ?? null) : null;
    const viewOf = (t: CurrentTable): NodeView => (views ? views.view(t, node) : complete(t));
    let v = viewOf(cur);
    const have = clientVersion(req.get("if-none-match"));
    let out = newer(v, have);
    if (out) return send(req, res, out);
    // A plugin ahead of us: the store went back in time. Move past it so the stored state reaches it.
    // (Compared with the complete version: a node's view, V − 1, is below it.)
    if (have !== null && have > cur.version && req.role === "plugin") {
      await cache.raiseFloor(have);
      const now = cache.current();
      if (now) {
        cur = now;
        v = viewOf(cur);
        if ((out = newer(v, have))) return send(req, res, out);
      }
    }
    if (wait > 0) {
      const ac = new AbortController();
      res.on("close", () => ac.abort());
      const deadline = Date.now() + wait * 1000;
      for (;;) {
        const left = deadline - Date.now();
        if (left <= 0 || ac.signal.aborted) break;
        // A newer table; for a node, also its ACK/NACK (what it has changed), and the end of its bound.
        const ms = v.recheckInMs === null ? left : Math.min(left, v.recheckInMs + 1);
        const round = new AbortController();
        const stop = () => round.abort();
        ac.signal.addEventListener("abort", stop, { once: true });
        const waits: Promise<unknown>[] = [cache.waitForNewer(cur.version, ms, round.signal)];
        if (node !== null && views && v.reason !== "off" && v.reason !== "no_node") waits.push(views.changed(node, ms, round.signal));
        await Promise.race(waits);
        round.abort();
        ac.signal.removeEventListener("abort", stop);
        if (res.destroyed) return;
        cur = cache.current() ?? cur;
        v = viewOf(cur);
        if ((out = newer(v, have))) return send(req, res, out);
      }
      if (res.destroyed) return;
    }
    if (v.kind === "none" && have === null) {
      // The node's Envoy has no xDS version completely yet: no table it could serve (an empty one would
      // make the plugin pass requests for our models through). The plugin retries.
      res.setHeader("retry-after", "1");
      throw new AppError("table_unavailable", "this node's Envoy has not acknowledged any xDS version yet (its routing table follows its first ACK)");
    }
    res.status(304).setHeader("etag", v.kind === "table" ? v.table.etag : cur.etag).setHeader("cache-control", "no-cache").end();
  });
  return r;
}
