/**
 * Configuration from the environment, parsed once with zod and frozen.
 * `loadConfig(env)` returns issues instead of throwing so the entry point can print them and exit.
 */
import type { RedisTarget as ClientTarget } from "./redis/client.js";
import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import { hostname } from "node:os";
import { z } from "zod";

const tokenList = z
  .string()
  .optional()
  .transform((s) => (s ?? "").split(",").map((t) => t.trim()).filter((t) => t.length > 0))
  .pipe(z.array(z.string().min(16, "tokens must be at least 16 characters")));

const int = (min: number, max: number, def: number) => z.coerce.number().int().min(min).max(max).default(def);
const bool = (def: boolean) =>
  z
    .enum(["true", "false", "1", "0", "yes", "no"])
    .default(def ? "true" : "false")
    .transform((v) => v === "true" || v === "1" || v === "yes");

export const EnvSchema = z.object({
  CONTROL_HOST: z.string().min(1).default("127.0.0.1"),
  CONTROL_PORT: int(0, 65_535, 8080),
  REDIS_URL: z.string().regex(/^rediss?:\/\//, "redis://host:port or rediss://…").default("redis://127.0.0.1:6379"),
  /**
   * Redis Sentinel (redis/client.ts): comma-separated host:port list of sentinels. When set, the primary is
   * found through them (REDIS_MASTER_NAME) and REDIS_URL is not used; auth for the data nodes comes from
   * REDIS_USERNAME / REDIS_PASSWORD, for the sentinels from REDIS_SENTINEL_USERNAME / REDIS_SENTINEL_PASSWORD.
   */
  REDIS_SENTINELS: z.preprocess((v) => (v === "" ? undefined : v), z.string().optional().transform((s, ctx) => (s === undefined ? undefined : parseSentinels(s, ctx)))),
  REDIS_MASTER_NAME: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, "a sentinel master name (letters, digits, . _ -)").default("mymaster"),
  /** Auth for the Redis data nodes; override what REDIS_URL carries (redis://user:pass@host). */
  REDIS_USERNAME: z.string().min(1).optional(),
  REDIS_PASSWORD: z.string().min(1).optional(),
  REDIS_SENTINEL_USERNAME: z.string().min(1).optional(),
  REDIS_SENTINEL_PASSWORD: z.string().min(1).optional(),
  /**
   * After every commit, WAIT for this many replicas to acknowledge it before answering (redis/durability.ts).
   * `auto` (default): 1 when the primary reports connected replicas (INFO replication), else 0. 0: never wait.
   */
  REDIS_WAIT_REPLICAS: z.union([z.literal("auto"), z.coerce.number().int().min(0).max(16)], { error: "\"auto\" or a number of replicas 0–16" }).default("auto"),
  /** How long a commit waits for replica acknowledgement: below REDIS_COMMAND_TIMEOUT_MS (default: 500, at most half of it). */
  REDIS_WAIT_TIMEOUT_MS: z.preprocess((v) => (v === "" ? undefined : v), z.coerce.number().int().min(1).max(60_000).optional()),
  /** Every Redis key and the pub/sub channel start with this (several gateways can share one Redis). */
  REDIS_KEY_PREFIX: z.string().regex(/^[A-Za-z0-9:_.-]{1,64}$/).default("gw:"),
  CONTROL_ADMIN_TOKENS: tokenList,
  CONTROL_VIEWER_TOKENS: tokenList,
  CONTROL_PLUGIN_TOKENS: tokenList,
  /**
   * Create/scale-up wait this long for their instances' connectivity tests (run before anything is stored);
   * tests still running then stay `pending` (202) — only when an instance has passed or allow_unreachable is
   * set; else the wait goes on until a verdict, at most max(this, 2 × CONNECTIVITY_TIMEOUT_MS + 1 s).
   */
  CREATE_WAIT_MS: int(0, 60_000, 3_000),
  /** Per-request timeout of the connectivity test (connect + answer). */
  CONNECTIVITY_TIMEOUT_MS: int(50, 120_000, 5_000),
  /** Allow connectivity tests to link-local / cloud-metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254). */
  ALLOW_LINK_LOCAL: bool(false),
  /** How often each replica looks for pending work (connectivity tests, migrations). */
  WORKER_INTERVAL_MS: int(10, 60_000, 1_000),
  /** How often each replica looks for due health probes (0 disables the prober). */
  PROBE_TICK_MS: int(0, 60_000, 500),
  /** Engine load signals: at most one load-triggered routing-table version per this many ms (all replicas). */
  LOAD_PUBLISH_MS: int(50, 600_000, 1_000),
  /** Lease on a deployment's background work; a crashed replica's work is taken over after this. */
  LEASE_MS: int(200, 600_000, 30_000),
  /** Safety-net re-read of the routing table (pub/sub is the fast path). */
  TABLE_REFRESH_MS: int(50, 600_000, 5_000),
  /** Re-resolve instance hostnames this often (0 disables). */
  DNS_REFRESH_MS: int(0, 3_600_000, 30_000),
  /** Default drain timeout of a rolling migration. */
  DRAIN_TIMEOUT_SECONDS: z.coerce.number().min(0).max(3_600).default(30),
  /** A migration's new endpoint must pass its health checks within this time, else it rolls back. */
  MIGRATION_HEALTH_DEADLINE_SECONDS: z.coerce.number().min(0.1).max(86_400).default(300),
  /** Max long-poll wait accepted from ?wait= (seconds). */
  LONG_POLL_MAX_SECONDS: int(0, 60, 60),
  /**
   * A plugin naming its Envoy (x-gateway-node) gets only what that Envoy has ACKed over xDS
   * (routing-table/node-view.ts) — for at most this long while the Envoy is behind and has not NACKed;
   * then the complete table. 0 turns the ordering off (every plugin gets the complete table).
   */
  TABLE_XDS_WAIT_SECONDS: z.coerce.number().min(0).max(3_600).default(30),
  /**
   * Caps every route's own request-body limit (src/http/body.ts BODY_LIMITS: 64 KiB for models, settings,
   * instances and migrations, 1 MiB xDS, 2 MiB telemetry, 8 MiB deployment create). The default, 8 MiB,
   * is the largest of them: no cap. Lower it to bound them all.
   */
  BODY_LIMIT_BYTES: int(1_024, 64 * 1024 * 1024, 8 * 1024 * 1024),
  IDEMPOTENCY_TTL_SECONDS: int(1, 30 * 86_400, 86_400),
  REDIS_COMMAND_TIMEOUT_MS: int(50, 60_000, 2_000),
  /** Width of one telemetry time bucket (windows are whole buckets; the current one partial). */
  TELEMETRY_BUCKET_MS: int(100, 60_000, 10_000),
  /** Events kept per instance (newest first). */
  EVENTS_PER_INSTANCE: int(10, 10_000, 200),
  /** Open `GET /v1/events` streams per replica; more get 503 too_many_streams. */
  EVENTS_MAX_STREAMS: int(1, 100_000, 200),
  /** A comment on every event stream this often (keeps proxies from closing idle streams). */
  EVENTS_HEARTBEAT_MS: int(100, 300_000, 15_000),
  /** Unsent bytes a stream may hold; a client that does not read past this is dropped. */
  EVENTS_CLIENT_BUFFER_BYTES: int(4_096, 64 * 1024 * 1024, 256 * 1024),
  /** Peers that may scrape /metrics without a token; others need a viewer or admin token. Empty = token required. */
  METRICS_ALLOW_FROM: z
    .string()
    .default("127.0.0.1/32,::1/128")
    .transform((s) => s.split(",").map((t) => t.trim()).filter((t) => t.length > 0))
    .pipe(z.array(z.string().refine((c) => parseCidr(c) !== null, "an IP address or CIDR (10.0.0.0/8, fd00::/8)"))),
  /**
   * `allow-listed` (default): peers in METRICS_ALLOW_FROM / XDS_ALLOW_FROM (loopback by default) reach
   * /metrics and xDS without a token. `always`: a token is required from every peer, loopback included
   * (behind a sidecar or a local proxy every caller is loopback); both allow lists must then be empty or unset.
   */
  CONTROL_REQUIRE_TOKENS: z.enum(["allow-listed", "always"]).default("allow-listed"),
  REPLICA_ID: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/).optional(),
  LOG_LEVEL: z.enum(["debug", "info", "warn", "error"]).default("info"),
  /**
   * Envoy's REST xDS polls carry no bearer token: peers allowed without one (comma-separated IPs or CIDRs).
   * A plugin or admin token is accepted from anywhere. Empty = token required.
   */
  XDS_ALLOW_FROM: z
    .string()
    .default("127.0.0.1/32,::1/128")
    .transform((s) => s.split(",").map((t) => t.trim()).filter((t) => t.length > 0))
    .pipe(z.array(z.string().refine((c) => parseCidr(c) !== null, "an IP address or CIDR (10.0.0.0/8, fd00::/8)"))),
  /**
   * ADS — xDS over gRPC (control/xds/ads.ts): the port Envoy's `ads_config` connects to (the shipped
   * envoy/bootstrap.yaml expects 18000). Unset or empty: no gRPC server, REST xDS only (for Envoys set up
   * with envoy/snippets/xds-rest.yaml). 0: an ephemeral port. Who may connect:
   * the same rule as REST (XDS_ALLOW_FROM, else a plugin/admin token in the `authorization` metadata).
   */
  CONTROL_XDS_GRPC_PORT: z.preprocess((v) => (v === "" ? undefined : v), z.coerce.number().int().min(0).max(65_535).optional()),
  /** The address the ADS server binds (default: CONTROL_HOST). */
  CONTROL_XDS_GRPC_HOST: z.string().min(1).optional(),
});

/** `h1:26379,h2:26379` → [{host, port}]; a zod issue naming the bad entry otherwise. */
function parseSentinels(s: string, ctx: z.RefinementCtx): { host: string; port: number }[] {
  const out: { host: string; port: number }[] = [];
  for (const raw of s.split(",").map((t) => t.trim()).filter((t) => t.length > 0)) {
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(raw);
    const port = m ? Number(m[3]) : NaN;
    if (!m || port < 1 || port > 65_535) {
      ctx.addIssue({ code: "custom", message: `"${raw}" is not host:port (a comma-separated list of sentinels, e.g. 10.0.0.1:26379,[fd00::1]:26379)` });
      return z.NEVER;
    }
    out.push({ host: m[1] ?? m[2]!, port });
  }
  if (out.length === 0) {
    ctx.addIssue({ code: "custom", message: "at least one sentinel host:port" });
    return z.NEVER;
  }
  return out;
}

/** `10.0.0.0/8`, `fd00::/8` or a single address → [address, prefix, family]; null if invalid. */
export function parseCidr(s: string): [string, number, "ipv4" | "ipv6"] | null {
  const [addr, bits, ...rest] = s.split("/");
  if (addr === undefined || rest.length > 0) return null;
  const family = isIP(addr);
  if (family === 0) return null;
  const max = family === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (bits !== undefined && !/^\d+$/.test(bits))) return null;
  return [addr, prefix, family === 4 ? "ipv4" : "ipv6"];
}

export interface Config {
  host: string;
  port: number;
  redisUrl: string;
  /** How to reach Redis: REDIS_URL, or the primary named by Sentinel (redis/client.ts). */
  redis: RedisTarget;
  /** Replicas that must acknowledge each commit ("auto": 1 if the primary has any) and how long to wait. */
  redisWait: { replicas: number | "auto"; timeoutMs: number };
  keyPrefix: string;
  tokens: { admin: string[]; viewer: string[]; plugin: string[] };
  /** Set when no token was configured and an admin token was generated at start (print it once). */
  generatedAdminToken: string | null;
  createWaitMs: number;
  connectivityTimeoutMs: number;
  allowLinkLocal: boolean;
  workerIntervalMs: number;
  probeTickMs: number;
  loadPublishMs: number;
  leaseMs: number;
  tableRefreshMs: number;
  dnsRefreshMs: number;
  drainTimeoutSeconds: number;
  migrationHealthDeadlineSeconds: number;
  longPollMaxSeconds: number;
  /** TABLE_XDS_WAIT_SECONDS in ms; 0 = the routing table is not ordered after xDS ACKs. */
  tableXdsWaitMs: number;
  bodyLimitBytes: number;
  idempotencyTtlSeconds: number;
  redisCommandTimeoutMs: number;
  replicaId: string;
  logLevel: "debug" | "info" | "warn" | "error";
  xdsAllowFrom: string[];
  /** The ADS (gRPC xDS) server's address; null: not started. */
  xdsGrpc: { host: string; port: number } | null;
  telemetryBucketMs: number;
  eventsPerInstance: number;
  metricsAllowFrom: string[];
  eventsMaxStreams: number;
  eventsHeartbeatMs: number;
  eventsClientBufferBytes: number;
}

/** Where Redis is: a URL, or the sentinels that know the primary (redis/client.ts builds the clients). */
export type RedisTarget = Exclude<ClientTarget, string>;

export type ConfigResult = { ok: true; config: Readonly<Config> } | { ok: false; issues: { path: string; message: string }[] };

export function loadConfig(env: Record<string, string | undefined>): ConfigResult {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    return { ok: false, issues: parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })) };
  }
  const e = parsed.data;
  if (e.CONTROL_REQUIRE_TOKENS === "always") {
    const contradicting = (["METRICS_ALLOW_FROM", "XDS_ALLOW_FROM"] as const).filter((k) => e[k].length > 0 && (env[k] ?? "").trim() !== "");
    if (contradicting.length > 0) {
      return { ok: false, issues: contradicting.map((k) => ({ path: k, message: "must be empty or unset with CONTROL_REQUIRE_TOKENS=always (no peer passes without a token)" })) };
    }
    // No peer passes without a token: the allow lists' defaults (loopback) do not apply.
    e.METRICS_ALLOW_FROM = [];
    e.XDS_ALLOW_FROM = [];
  }
  const waitTimeoutMs = e.REDIS_WAIT_TIMEOUT_MS ?? Math.min(500, Math.floor(e.REDIS_COMMAND_TIMEOUT_MS / 2));
  if (waitTimeoutMs >= e.REDIS_COMMAND_TIMEOUT_MS) {
    return { ok: false, issues: [{ path: "REDIS_WAIT_TIMEOUT_MS", message: `must be below REDIS_COMMAND_TIMEOUT_MS (${e.REDIS_COMMAND_TIMEOUT_MS}): WAIT answers only after it` }] };
  }
  const auth = { ...(e.REDIS_USERNAME ? { username: e.REDIS_USERNAME } : {}), ...(e.REDIS_PASSWORD ? { password: e.REDIS_PASSWORD } : {}) };
  const redis: RedisTarget = e.REDIS_SENTINELS
    ? {
        kind: "sentinel",
        sentinels: e.REDIS_SENTINELS,
        masterName: e.REDIS_MASTER_NAME,
        ...auth,
        ...(e.REDIS_SENTINEL_USERNAME ? { sentinelUsername: e.REDIS_SENTINEL_USERNAME } : {}),
        ...(e.REDIS_SENTINEL_PASSWORD ? { sentinelPassword: e.REDIS_SENTINEL_PASSWORD } : {}),
      }
    : { kind: "url", url: e.REDIS_URL, ...auth };
  const tokens = { admin: e.CONTROL_ADMIN_TOKENS, viewer: e.CONTROL_VIEWER_TOKENS, plugin: e.CONTROL_PLUGIN_TOKENS };
  let generatedAdminToken: string | null = null;
  if (tokens.admin.length === 0) {
    // Never run open: without an admin token, generate one for this run (printed once by the entry point).
    generatedAdminToken = randomBytes(24).toString("base64url");
    tokens.admin = [generatedAdminToken];
  }
  const config: Config = {
    host: e.CONTROL_HOST,
    port: e.CONTROL_PORT,
    redisUrl: e.REDIS_URL,
    redis,
    redisWait: { replicas: e.REDIS_WAIT_REPLICAS, timeoutMs: waitTimeoutMs },
    keyPrefix: e.REDIS_KEY_PREFIX,
    tokens,
    generatedAdminToken,
    createWaitMs: e.CREATE_WAIT_MS,
    connectivityTimeoutMs: e.CONNECTIVITY_TIMEOUT_MS,
    allowLinkLocal: e.ALLOW_LINK_LOCAL,
    workerIntervalMs: e.WORKER_INTERVAL_MS,
    probeTickMs: e.PROBE_TICK_MS,
    loadPublishMs: e.LOAD_PUBLISH_MS,
    leaseMs: e.LEASE_MS,
    tableRefreshMs: e.TABLE_REFRESH_MS,
    dnsRefreshMs: e.DNS_REFRESH_MS,
    drainTimeoutSeconds: e.DRAIN_TIMEOUT_SECONDS,
    migrationHealthDeadlineSeconds: e.MIGRATION_HEALTH_DEADLINE_SECONDS,
    longPollMaxSeconds: e.LONG_POLL_MAX_SECONDS,
    tableXdsWaitMs: Math.round(e.TABLE_XDS_WAIT_SECONDS * 1000),
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    idempotencyTtlSeconds: e.IDEMPOTENCY_TTL_SECONDS,
    redisCommandTimeoutMs: e.REDIS_COMMAND_TIMEOUT_MS,
    replicaId: e.REPLICA_ID ?? `${hostname().replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 40)}-${process.pid}-${randomBytes(3).toString("hex")}`,
    logLevel: e.LOG_LEVEL,
    xdsAllowFrom: e.XDS_ALLOW_FROM,
    xdsGrpc: e.CONTROL_XDS_GRPC_PORT === undefined ? null : { host: e.CONTROL_XDS_GRPC_HOST ?? e.CONTROL_HOST, port: e.CONTROL_XDS_GRPC_PORT },
    telemetryBucketMs: e.TELEMETRY_BUCKET_MS,
    eventsPerInstance: e.EVENTS_PER_INSTANCE,
    metricsAllowFrom: e.METRICS_ALLOW_FROM,
    eventsMaxStreams: e.EVENTS_MAX_STREAMS,
    eventsHeartbeatMs: e.EVENTS_HEARTBEAT_MS,
    eventsClientBufferBytes: e.EVENTS_CLIENT_BUFFER_BYTES,
  };
  return { ok: true, config: Object.freeze(config) };
}
