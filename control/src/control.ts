/**
 * Wires one control replica: Redis connections, stores, services, worker, table cache, HTTP server.
 * `startControl` is used by the entry point (server.ts) and by the tests.
 */
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { STATUS_CODES, type Server } from "node:http";
import { createApp } from "./app.js";
import { STATUS, type ErrorCode } from "./http/errors.js";
import type { Config } from "./config.js";
import { createAuthenticator } from "./http/auth.js";
import { idempotency } from "./http/idempotency.js";
import { createIdempotencyStore } from "./http/idempotency-store.js";
import { createLogger, errorFields, type LogSink, type Logger } from "./log.js";
import { createModelStore } from "./models/store.js";
import { createModelService } from "./models/service.js";
import { createDeploymentStore } from "./deployments/store.js";
import { createDeploymentService } from "./deployments/service.js";
import type { Deployment } from "./deployments/schemas.js";
import { createMigrationService } from "./migration/service.js";
import { createConnectivityTester } from "./connectivity/tester.js";
import { createPreflight, verdictBoundMs } from "./connectivity/preflight.js";
import { createLeaseStore } from "./jobs/lease-store.js";
import { createWorker } from "./jobs/worker.js";
import { createProber } from "./jobs/prober.js";
import { createLoadStore } from "./health/load.js";
import { createCas } from "./redis/cas.js";
import { createCommandClient, createSubscriber } from "./redis/client.js";
import { createDurability } from "./redis/durability.js";
import { createPrimaryCheck } from "./redis/primary.js";
import { createKeys } from "./redis/keys.js";
import { createTableCache, type TableCache } from "./routing-table/cache.js";
import { createVersionFloor } from "./routing-table/version-floor.js";
import { createTableViews, registerTableViewMetrics } from "./routing-table/node-view.js";
import { createTableStore } from "./routing-table/store.js";
import { createDnsRefresher } from "./routing-table/dns-refresh.js";
import { parseCidr } from "./config.js";
import { createXdsPublisher } from "../xds/publisher.js";
import { xdsSnapshotFromTable } from "../xds/from-table.js";
import { createXdsNodes } from "../xds/nodes.js";
import { createAdsServer, peerOrTokenAuthorizer, type AdsServer } from "../xds/ads.js";
import { registerXdsNodeMetrics } from "../xds/dataplanes.js";
import { createTelemetryStore } from "./telemetry/store.js";
import { createHealthStore } from "./health/store.js";
import { createHealthView } from "./health/view.js";
import { createMetrics } from "./metrics.js";
import { createEventHub } from "./events/hub.js";
import { notifyingDeploymentStore, notifyingHealthStore } from "./events/hooks.js";
import { xdsEvents } from "./events/xds.js";

export interface Control {
  url: string;
  port: number;
  log: Logger;
  cache: TableCache;
  dns: { refreshOnce(): Promise<number> };
  replica: string;
  /** Deployments whose probe lease this replica holds. */
  probing(): string[];
  /** The ADS (xDS over gRPC) server's port; null when CONTROL_XDS_GRPC_PORT is not set. */
  adsPort: number | null;
  stop(): Promise<void>;
  /** Like a killed process: no lease released, nothing finished (tests of takeover). */
  crash(): Promise<void>;
}

/**
 * Envoy's active health check (contract 4) knows only the HTTP probe's settings; the prober's other
 * settings (probe kind, completions, traffic thresholds) stay with the control service.
 */
const forEnvoy = (d: Deployment): Deployment => {
  const { interval_seconds, timeout_seconds, unhealthy_threshold, healthy_threshold, path } = d.health_check;
  return { ...d, health_check: { interval_seconds, timeout_seconds, unhealthy_threshold, healthy_threshold, path } as Deployment["health_check"] };
};

export interface ControlOptions {
  logSink?: LogSink;
  /** Replace dns.lookup (tests). */
  lookup?: (host: string) => Promise<string>;
}

export async function startControl(config: Readonly<Config>, opts: ControlOptions = {}): Promise<Control> {
  const log = createLogger({ level: config.logLevel, sink: opts.logSink, base: { replica: config.replicaId } });
  const keys = createKeys(config.keyPrefix);
  const redis = createCommandClient(config.redis, { commandTimeoutMs: config.redisCommandTimeoutMs, log, name: `gw-control-${config.replicaId}` });
  const sub = createSubscriber(config.redis, { log, name: `gw-control-sub-${config.replicaId}` });
  // Commits are answered once enough replicas have them (REDIS_WAIT_REPLICAS; none without replicas) and,
  // with Sentinel, once the sentinels confirm the node written to is still the primary.
  const redisLog = log.child({ component: "redis" });
  const primary = config.redis.kind === "sentinel" ? createPrimaryCheck(redis, sub, config.redis, { timeoutMs: config.redisWait.timeoutMs, log: redisLog }) : undefined;
  const durability = createDurability(redis, { ...config.redisWait, log: redisLog, ...(primary ? { primary } : {}) });
  // Set once the cache exists: a write answers after this replica's table includes it (bounded wait).
  let afterVersion = async (_version: number): Promise<void> => undefined;
  const commit = createCas(redis, keys.version, keys.channel, (v) => afterVersion(v), { durability, log });

  const modelStore = createModelStore({ redis, keys, commit });
  // Live changes for GET /v1/events: every committed deployment change and timeline entry is published.
  const hub = createEventHub({
    send: (message) => redis.publish(keys.changes, message),
    log: log.child({ component: "events" }),
    maxStreams: config.eventsMaxStreams,
    maxBufferBytes: config.eventsClientBufferBytes,
    heartbeatMs: config.eventsHeartbeatMs,
    statsMs: config.telemetryBucketMs,
  });
  const deploymentStore = notifyingDeploymentStore(createDeploymentStore({ redis, keys, commit, log }), (e) => hub.publish(e));
  const tableStore = createTableStore({ redis, keys });
  const leases = createLeaseStore({ redis, keys, owner: config.replicaId });
  const tester = createConnectivityTester({ timeoutMs: config.connectivityTimeoutMs, allowLinkLocal: config.allowLinkLocal, lookup: opts.lookup });

  const models = createModelService({ store: modelStore });
  // Create and scale-up test their instances before storing them: they wait CREATE_WAIT_MS, longer (up to the
  // verdict bound) only while no instance has passed yet (connectivity/preflight.ts).
  const verdictMs = verdictBoundMs(config.createWaitMs, config.connectivityTimeoutMs);
  const preflight = createPreflight({ tester, waitMs: config.createWaitMs, verdictMs, log: log.child({ component: "preflight" }) });
  const deployments = createDeploymentService({ store: deploymentStore, models, preflight });
  const migrations = createMigrationService({ store: deploymentStore, defaultDrainSeconds: config.drainTimeoutSeconds });
  const worker = createWorker({
    store: deploymentStore,
    models: modelStore,
    tester,
    leases,
    intervalMs: config.workerIntervalMs,
    leaseMs: config.leaseMs,
    healthDeadlineSeconds: config.migrationHealthDeadlineSeconds,
    log,
  });
  // Envoy's clusters (xDS) are built from the very snapshot each routing table is built from: same version.
  const xds = createXdsPublisher({ logger: log.child({ component: "xds" }) });
  // What each Envoy has (ADS ACK/NACK, REST polls): GET /v1/dataplanes, /metrics.
  const xdsNodes = createXdsNodes({ logger: log.child({ component: "xds" }) });
  // …and on GET /v1/events: every NACK with its message (`xds.nack`), and `dataplanes` (re-read, ≤ 1/s) when
  // a node connects, disconnects, ACKs or NACKs. Local: each replica reports the Envoys connected to it.
  const xdsStream = xdsEvents({ nodes: xdsNodes, emit: (e) => hub.local(e), replica: config.replicaId, log: log.child({ component: "events" }) });
  // Issue 17: a plugin naming its Envoy gets the table that Envoy has ACKed (created before the first publish: it indexes every snapshot).
  const tableViews = createTableViews({
    nodes: xdsNodes,
    snapshot: xds.current,
    subscribe: (listener) => xds.subscribe(listener),
    waitMs: config.tableXdsWaitMs,
    log: log.child({ component: "table-views" }),
  });
  const cache = createTableCache({
    store: tableStore,
    log,
    refreshMs: config.tableRefreshMs,
    raiseVersion: createVersionFloor(redis, keys.version, keys.channel),
    onHeld: (held, version) => hub.local({ type: "table.held", at: new Date().toISOString(), version, held }),
    onPublish: (table, snap) => void xds.publish(xdsSnapshotFromTable(table, snap.deployments.map(forEnvoy))),
  });
  afterVersion = async (v) => {
    cache.notify(v);
    await cache.waitForNewer(v - 1, 250);
  };
  const telemetry = createTelemetryStore({ redis, keys, bucketMs: config.telemetryBucketMs });
  const healthStore = notifyingHealthStore(createHealthStore({ redis, keys, eventsPerInstance: config.eventsPerInstance }), (e) => hub.publish(e));
  const metrics = createMetrics({
    replica: config.replicaId,
    cache,
    deployments: () => deploymentStore.list(),
    telemetry,
    leaseHolders: (names) => leases.holders(names),
    log,
  });
  registerXdsNodeMetrics(metrics.registry, xdsNodes);
  registerTableViewMetrics(metrics.registry, tableViews);
  const prober = createProber({
    store: deploymentStore,
    models: modelStore,
    tester,
    leases,
    health: healthStore,
    telemetry,
    metrics,
    tickMs: config.probeTickMs,
    loads: createLoadStore({ redis, keys, publishMs: config.loadPublishMs }),
    loadPublishMs: config.loadPublishMs,
    leaseMs: config.leaseMs,
    replica: config.replicaId,
    log: log.child({ component: "prober" }),
  });
  const dns = createDnsRefresher({ store: deploymentStore, tester, leases, intervalMs: config.dnsRefreshMs, log });

  // Pub/sub: every replica hears every new version; on (re)connect, re-read in case we missed one.
  sub.on("message", (channel: string, message: string) => {
    if (channel === keys.changes) return hub.receive(message);
    const v = Number(message);
    if (Number.isSafeInteger(v)) {
      cache.notify(v);
      hub.local({ type: "table", at: new Date().toISOString(), version: v });
    }
  });
  // After a reconnect the resubscription may land just after a publish: read again shortly after, too.
  sub.on("ready", () => {
    cache.notify(Number.MAX_SAFE_INTEGER);
    setTimeout(() => cache.notify(Number.MAX_SAFE_INTEGER), 250).unref();
  });
  redis.on("ready", () => {
    tableStore.ensureVersion().then(() => cache.refresh()).catch((e: unknown) => log.warn("initial table load failed", errorFields(e)));
  });
  sub.subscribe(keys.channel, keys.changes).catch((e: unknown) => log.warn("subscribe failed", errorFields(e)));

  // Give Redis a moment at start; serve anyway (writes 503, table unavailable) if it is not there.
  await new Promise<void>((resolve) => {
    if (redis.status === "ready") return resolve();
    const t = setTimeout(resolve, 2_000);
    redis.once("ready", () => {
      clearTimeout(t);
      resolve();
    });
  });
  await tableStore.ensureVersion().then(() => cache.refresh()).catch(() => undefined);

  const app = createApp({
    auth: createAuthenticator(config.tokens),
    log,
    models,
    deployments,
    migrations,
    worker,
    cache,
    tableViews,
    idempotency: idempotency(createIdempotencyStore({ redis, keys, ttlSeconds: config.idempotencyTtlSeconds, inProgressSeconds: Math.ceil(verdictMs / 1000) + 60, durability }), log),
    health: () => ({ redis: redis.status === "ready" ? "up" : "down", table_version: cache.current()?.version ?? null, replica: config.replicaId, table: cache.status() }),
    bodyLimitBytes: config.bodyLimitBytes,
    createWaitMs: config.createWaitMs,
    longPollMaxSeconds: config.longPollMaxSeconds,
    xds: { snapshot: xds.current, allowFrom: config.xdsAllowFrom.map((c) => parseCidr(c)!), nodes: xdsNodes, replica: config.replicaId },
    healthApi: { telemetry, store: healthStore, view: createHealthView({ telemetry, health: healthStore }), maxEvents: config.eventsPerInstance },
    metrics: { render: () => metrics.render(), allowFrom: config.metricsAllowFrom.map((c) => parseCidr(c)!) },
    events: { hub, telemetry },
  });

  // ADS (xDS over gRPC, control/xds/ads.ts): the same snapshot as REST xDS, pushed on every new version.
  let ads: AdsServer | null = null;
  let adsPort: number | null = null;
  if (config.xdsGrpc) {
    ads = createAdsServer({
      snapshot: xds.current,
      subscribe: (listener) => xds.subscribe(listener),
      nodes: xdsNodes,
      logger: log.child({ component: "ads" }),
      authorize: peerOrTokenAuthorizer(createAuthenticator(config.tokens), config.xdsAllowFrom.map((c) => parseCidr(c)!), ["plugin", "admin"]),
      controlPlaneId: `model-gateway/${config.replicaId}`,
    });
    adsPort = await ads.listen(config.xdsGrpc.host, config.xdsGrpc.port);
    log.info("ads (xDS over gRPC) listening", { host: config.xdsGrpc.host, port: adsPort });
  }

  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(config.port, config.host, (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  // Requests Node's HTTP parser refuses never reach Express: answer them in the API's error shape too.
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || err.code === "ECONNRESET") return socket.destroy();
    const code: ErrorCode = err.code === "HPE_HEADER_OVERFLOW" ? "headers_too_large" : "malformed_request";
    const status = STATUS[code];
    const requestId = randomUUID();
    const message = code === "headers_too_large" ? "request headers are too large" : "the request could not be parsed as HTTP";
    // A HEAD answer carries no body (the client would read it as the start of the next response).
    const isHead = (err as { rawPacket?: Buffer }).rawPacket?.subarray(0, 5).toString("latin1") === "HEAD ";
    const body = isHead ? "" : JSON.stringify({ error: { code, message, request_id: requestId } });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
        `x-request-id: ${requestId}\r\ncontent-length: ${isHead ? 0 : Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = (config.longPollMaxSeconds + 30) * 1000;
  const port = (server.address() as AddressInfo).port;
  cache.start();
  worker.start();
  if (config.probeTickMs > 0) prober.start();
  dns.start();
  log.info("control service listening", { host: config.host, port });

  let stopping: Promise<void> | null = null;
  return {
    url: `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`,
    port,
    log,
    cache,
    dns,
    replica: config.replicaId,
    probing: () => prober.held(),
    adsPort,
    async crash() {
      // The process is gone: its connections drop first, so nothing it had is released or finished.
      prober.halt();
      xdsStream.stop();
      hub.stop();
      durability.stop();
      redis.disconnect();
      sub.disconnect();
      dns.stop();
      cache.stop();
      tableViews.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await ads?.stop(0);
      await worker.stop();
      log.info("control service crashed (test)");
    },
    stop() {
      stopping ??= (async () => {
        xdsStream.stop();
        hub.stop();
        // Envoys get UNAVAILABLE and reconnect (to another replica) at once.
        await ads?.stop();
        dns.stop();
        cache.stop();
        tableViews.stop();
        await worker.stop();
        await prober.stop();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        sub.disconnect();
        durability.stop();
        redis.disconnect();
        log.info("control service stopped");
      })();
      return stopping;
    },
  };
}
