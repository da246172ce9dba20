/**
 * The Express application: middleware, routes, one error handler. Everything it needs is passed in
 * (control.ts wires the real services), so tests can build it the same way.
 */
import express, { type NextFunction, type Request, type RequestHandler, type Response } from "express";
import { passesWithoutToken, requirePeerOrRole, requireRole, tokenBeforeBody, type Authenticator } from "./http/auth.js";
import { BODY_LIMITS, bodyParsers, clientError, closeUnreadBody, requireJson } from "./http/body.js";
import { AppError, RETRY_AFTER, STATUS } from "./http/errors.js";
import { requestId } from "./http/request-id.js";
import { errorFields, type Logger } from "./log.js";
import { modelRoutes } from "./models/routes.js";
import type { ModelService } from "./models/service.js";
import { deploymentRoutes } from "./deployments/routes.js";
import type { DeploymentService } from "./deployments/service.js";
import { migrationRoutes } from "./migration/routes.js";
import type { MigrationService } from "./migration/service.js";
import { routingTableRoutes } from "./routing-table/routes.js";
import type { TableCache, TableStatus } from "./routing-table/cache.js";
import type { TableViews } from "./routing-table/node-view.js";
import { openApiDocument } from "./openapi.js";
import { createXdsRouter } from "../xds/discovery.js";
import { dataplaneRoutes } from "../xds/dataplanes.js";
import type { XdsNodes } from "../xds/nodes.js";
import { telemetryRoutes } from "./telemetry/routes.js";
import type { TelemetryStore } from "./telemetry/store.js";
import { healthRoutes } from "./health/routes.js";
import type { HealthStore } from "./health/store.js";
import type { HealthView } from "./health/view.js";
import type { XdsSnapshot } from "../xds/build.js";
import { eventRoutes } from "./events/routes.js";
import { dashboardRoutes } from "./events/dashboard.js";
import type { EventHub } from "./events/hub.js";
import { historyRoutes } from "./telemetry/history.js";

export interface AppDeps {
  auth: Authenticator;
  log: Logger;
  models: ModelService;
  deployments: DeploymentService;
  migrations: MigrationService;
  worker: { kick(id: string): Promise<void> };
  cache: TableCache;
  /** Issue 17: the table each plugin gets follows its own Envoy's xDS ACK (routing-table/node-view.ts); omitted = every plugin gets the complete table. */
  tableViews?: TableViews;
  idempotency: RequestHandler;
  health: () => Health;
  /** BODY_LIMIT_BYTES: caps every route's own body limit (http/body.ts BODY_LIMITS). */
  bodyLimitBytes: number;
  createWaitMs: number;
  longPollMaxSeconds: number;
  /** REST xDS for Envoy (control/xds): the snapshot built with each routing table, and who may poll it. */
  xds: {
    snapshot: () => XdsSnapshot | undefined;
    allowFrom: readonly [string, number, "ipv4" | "ipv6"][];
    /** What each Envoy has (control/xds/nodes.ts): REST polls are recorded there; GET /v1/dataplanes lists it. */
    nodes?: XdsNodes;
    replica?: string;
  };
  /** Telemetry intake, health views and events; Prometheus metrics (peers on the allow list, or viewer/admin token). */
  healthApi?: {
    telemetry: Pick<TelemetryStore, "applyBatch">;
    store: Pick<HealthStore, "events">;
    view: HealthView;
    maxEvents: number;
  };
  metrics?: { render(): Promise<{ contentType: string; body: string }>; allowFrom: readonly [string, number, "ipv4" | "ipv6"][] };
  /** The change stream (GET /v1/events), whoami, per-bucket history, and the dashboard at /ui. */
  events?: { hub: EventHub; telemetry: Pick<TelemetryStore, "series" | "bucketMs"> };
}

export interface Health {
  redis: "up" | "down";
  table_version: number | null;
  replica: string;
  table?: TableStatus;
}

/**
 * GET /healthz: `ok` (200); `degraded` (200: this replica serves, but the plugins do not get everything
 * stored — deployments held back, or the served table behind the stored version); `unavailable` (503:
 * Redis is unreachable, writes fail). Degraded stays 200 so a load balancer keeps the replica: every
 * replica serves the same table, taking them out would only add an outage.
 */
export function healthState(h: Health): { status: "ok" | "degraded" | "unavailable"; reasons: string[] } {
  const reasons: string[] = [];
  if (h.redis !== "up") reasons.push("redis_unreachable");
  if (h.table_version === null) reasons.push("no_table");
  if (h.table?.behind) reasons.push("table_behind_store");
  if ((h.table?.held.length ?? 0) > 0) reasons.push("deployments_held");
  return { status: h.redis !== "up" ? "unavailable" : reasons.length > 0 ? "degraded" : "ok", reasons };
}

export function createApp(deps: AppDeps): express.Express {
  const { log } = deps;
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.set("query parser", "simple");

  app.use(requestId);
  app.use((req, res, next) => {
    const started = performance.now();
    res.on("finish", () => {
      // Envoy's xDS polls (every few seconds per cluster per Envoy) would drown the log: debug level.
      const level = req.path.startsWith("/v3/discovery") && res.statusCode < 400 ? "debug" : "info";
      log[level]("request", {
        request_id: req.id,
        method: req.method,
        path: req.path,
        status: res.statusCode,
        duration_ms: Math.round((performance.now() - started) * 10) / 10,
        role: req.role ?? null,
      });
    });
    next();
  });
  // Bodies: the token is checked before one is read (401 unread, the connection closed rather than drained);
  // each route reads its own, after its role check, within its own limit (http/body.ts BODY_LIMITS).
  const body = bodyParsers(deps.bodyLimitBytes);
  // The one route taking a body without a token: xDS from an allow-listed peer (any spelling the router may match).
  const xdsTokenless = passesWithoutToken(deps.xds.allowFrom);
  app.use(closeUnreadBody);
  app.use(tokenBeforeBody(deps.auth, (req) => req.path.toLowerCase().startsWith("/v3/discovery") && xdsTokenless(req)));
  app.use(requireJson);

  app.get("/healthz", (_req, res) => {
    const h = deps.health();
    const { status, reasons } = healthState(h);
    res.status(status === "unavailable" ? 503 : 200).json({ status, reasons, ...h });
  });
  const doc = openApiDocument();
  app.get("/openapi.json", (_req, res) => {
    res.json(doc);
  });
  if (deps.events) {
    // The service's root leads a browser to the dashboard (not to a 401): the page asks for a token itself.
    // A `#token=…` fragment on the link survives the redirect (the browser keeps it; it never reaches us).
    app.get("/", (_req, res) => {
      res.setHeader("cache-control", "no-cache");
      res.redirect(302, "/ui/");
    });
    app.use(dashboardRoutes());
  }

  if (deps.metrics) {
    const m = deps.metrics;
    app.get("/metrics", requirePeerOrRole(deps.auth, m.allowFrom, "viewer", "admin"), async (_req, res) => {
      const { contentType, body } = await m.render();
      res.status(200).type(contentType).send(body);
    });
  }
  app.use(modelRoutes({ service: deps.models, auth: deps.auth, idempotency: deps.idempotency, body }));
  app.use(deploymentRoutes({ service: deps.deployments, worker: deps.worker, auth: deps.auth, idempotency: deps.idempotency, createWaitMs: deps.createWaitMs, view: deps.healthApi?.view, body }));
  if (deps.healthApi) {
    app.use(healthRoutes({ deployments: deps.deployments, health: deps.healthApi.store, auth: deps.auth, maxEvents: deps.healthApi.maxEvents }));
    app.use(telemetryRoutes({ store: deps.healthApi.telemetry, cache: deps.cache, auth: deps.auth, body }));
  }
  if (deps.events) {
    app.use(eventRoutes({ hub: deps.events.hub, auth: deps.auth, log }));
    app.use(historyRoutes({ deployments: deps.deployments, telemetry: deps.events.telemetry, auth: deps.auth }));
  }
  app.use(migrationRoutes({ service: deps.migrations, worker: deps.worker, auth: deps.auth, idempotency: deps.idempotency, body }));
  app.use(routingTableRoutes({ cache: deps.cache, auth: deps.auth, maxWaitSeconds: deps.longPollMaxSeconds, views: deps.tableViews }));
  if (deps.xds.nodes) app.use(dataplaneRoutes({ nodes: deps.xds.nodes, authorize: requireRole(deps.auth, "admin", "viewer"), replica: deps.xds.replica ?? "" }));
  app.use(
    createXdsRouter({
      snapshot: deps.xds.snapshot,
      logger: log.child({ component: "xds" }),
      // Our parser (size and depth bounds) reads the DiscoveryRequest after the peer/token check; the router's own is then a no-op.
      authorize: [requirePeerOrRole(deps.auth, deps.xds.allowFrom, "plugin", "admin"), body.xds],
      bodyLimitBytes: Math.min(deps.bodyLimitBytes, BODY_LIMITS.xds),
      nodes: deps.xds.nodes,
    }),
  );

  // Unknown paths: authenticate first so the API surface is not enumerable without a token.
  app.use(requireRole(deps.auth, "admin", "viewer", "plugin"), (req: Request) => {
    throw new AppError("not_found", `no route for ${req.method} ${req.path}`);
  });

  // The one error handler.
  app.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    const appErr = err instanceof AppError ? err : clientError(err);
    if (!appErr) {
      log.error("unhandled error", { request_id: req.id, method: req.method, path: req.path, ...errorFields(err) });
    } else if (appErr.status >= 500) {
      log.warn("request failed", { request_id: req.id, code: appErr.code });
    }
    const e = appErr ?? new AppError("internal", "internal error");
    const retryAfter = RETRY_AFTER[e.code];
    if (retryAfter !== undefined) res.setHeader("retry-after", retryAfter);
    res.status(STATUS[e.code]).json({
      error: { ...e.details, code: e.code, message: e.message, request_id: req.id, ...(e.issues ? { issues: e.issues } : {}) },
    });
  });
  return app;
}
