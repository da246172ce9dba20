/**
 * GET /v1/events — the change stream (server-sent events, viewer/admin token in `Authorization`; send
 * `Last-Event-ID` to resume). GET /v1/whoami — the role of the token sent (a client shows or hides
 * actions by it).
 */
import { Router } from "express";
import { READ_ROLES, requireRole, type Authenticator } from "../http/auth.js";
import { AppError } from "../http/errors.js";
import type { Logger } from "../log.js";
import type { EventHub } from "./hub.js";

export function eventRoutes(deps: { hub: EventHub; auth: Authenticator; log: Logger }): Router {
  const { hub, log } = deps;
  const r = Router();
  r.get("/v1/whoami", requireRole(deps.auth, "admin", "viewer", "plugin"), (req, res) => {
    res.setHeader("cache-control", "no-store");
    res.json({ role: req.role });
  });
  r.get("/v1/events", requireRole(deps.auth, ...READ_ROLES), (req, res) => {
    const started = Date.now();
    res.status(200);
    res.setHeader("content-type", "text/event-stream; charset=utf-8");
    res.setHeader("cache-control", "no-cache, no-store, no-transform");
    res.setHeader("x-accel-buffering", "no"); // nginx and friends: do not buffer the stream
    if (req.method === "HEAD") return void res.end();
    const stream = hub.attach(res, req.get("last-event-id"));
    if (!stream) {
      res.removeHeader("content-type");
      res.removeHeader("cache-control");
      res.removeHeader("x-accel-buffering");
      res.setHeader("retry-after", "5");
      throw new AppError("too_many_streams", "too many open event streams on this replica; retry later");
    }
    req.socket.setNoDelay(true);
    req.socket.setKeepAlive(true, 30_000);
    log.debug("event stream opened", { request_id: req.id, role: req.role, streams: hub.streams });
    res.on("error", () => stream.close());
    res.on("close", () => {
      stream.close();
      log.debug("event stream closed", { request_id: req.id, duration_ms: Date.now() - started, streams: hub.streams });
    });
  });
  return r;
}
