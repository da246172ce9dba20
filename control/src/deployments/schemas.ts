/**
 * Deployments, instances and migrations: request schemas and the stored/returned documents.
 * The stored document is exactly what the API returns: upstream API keys live apart (never in it).
 */
import { isIP } from "node:net";
import { z } from "zod";
import { AffinityHeaderName, BasePath, ExtraPath, Id, Strategy, TABLE_LIMITS, UnavailablePolicy } from "../../contracts/routing-table.js";
import { InstanceHealth } from "../health/schemas.js";

export interface ParsedUrl {
  scheme: "http" | "https";
  host: string;
  port: number;
  base_path: string;
}

/**
 * A label shown to people and carried in logs and the routing table (region, display name): no control
 * characters (CR, LF, NUL, …) and no lone UTF-16 surrogates (not text; they cannot be encoded as UTF-8).
 */
export const LabelText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !/[\x00-\x1f\x7f-\x9f]/.test(s), "no control characters (CR, LF, NUL, …)")
    .refine((s) => !/[\uD800-\uDFFF]/u.test(s), "no lone surrogates (not valid Unicode text)");

/** `http(s)://host[:port][/base/path]` without credentials, query or fragment; trailing slash dropped. */
export function parseInstanceUrl(input: string): ParsedUrl | string {
  // The URL parser drops tabs and newlines anywhere and trims spaces and controls at the ends, so a stored
  // `url` would keep characters the parsed one never had: refuse them instead.
  if (/[\x00-\x20\x7f]/.test(input)) return "no whitespace or control characters";
  if (/[\uD800-\uDFFF]/u.test(input)) return "no lone surrogates";
  // "http:///v1" and "http:\\h" parse (the URL parser skips extra slashes and reads "\\" as "/"):
  // the authority must follow "scheme://" directly.
  if (!/^https?:/i.test(input)) return "scheme must be http or https";
  if (!/^https?:\/\/[^/\\?#@]/i.test(input)) return "expected http(s)://host[:port][/path]";
  let u: URL;
  try {
    u = new URL(input);
  } catch {
    return "not a valid URL";
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return "scheme must be http or https";
  if (u.username !== "" || u.password !== "") return "credentials in the URL are not allowed (use api_key)";
  if (u.search !== "" || u.hash !== "" || input.includes("?") || input.includes("#")) return "query and fragment are not allowed";
  if (u.hostname === "") return "a host is required";
  const base = u.pathname.replace(/\/+$/, "");
  if (!BasePath.safeParse(base).success) return "invalid base path";
  const scheme = u.protocol === "https:" ? "https" : "http";
  const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  const port = u.port === "" ? (scheme === "https" ? 443 : 80) : Number(u.port);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) return "port must be 1..65535";
  return { scheme, host, port, base_path: base };
}

export const InstanceUrl = z
  .string()
  .max(2_048)
  .superRefine((s, ctx) => {
    const r = parseInstanceUrl(s);
    if (typeof r === "string") ctx.addIssue({ code: "custom", message: r });
  })
  .describe("OpenAI API base URL, e.g. http://10.0.0.5:8000/v1");

// Sent upstream as `Authorization: Bearer <key>`: only characters a header value can carry (a key with a
// control character or non-ASCII could never be sent, and left its instance untestable).
const ApiKey = z
  .string()
  .min(1)
  .max(4_096)
  .regex(/^[\x21-\x7e]+$/, "printable ASCII without spaces (sent as a bearer token)")
  .describe("Bearer token for the upstream; write-only, never returned");

export const InstanceCreate = z
  .object({
    id: Id.optional().describe("Generated when absent; unique within the deployment"),
    url: InstanceUrl,
    weight: z.number().int().min(1).max(TABLE_LIMITS.maxWeight).default(1),
    priority: z.number().int().min(0).max(TABLE_LIMITS.maxPriority).default(0).describe("Failover tier, 0 = primary"),
    region: LabelText(64).default(""),
    gpu_count: z.number().int().min(0).max(1_024).optional(),
    gpu_memory_gb: z.number().min(0).max(1_000_000).optional(),
    api_key: ApiKey.optional(),
  })
  .strict();

const AllowUnreachable = z
  .boolean()
  .default(false)
  .describe(
    "Store the instances even when no connectivity test passes (they stay unreachable until re-tested). Without it a create or scale-up whose instances all fail answers 422 connectivity_failed and stores nothing",
  );

/** POST /v1/deployments/{id}/instances: one instance, and whether to keep it when its test fails. */
export const InstanceAdd = InstanceCreate.extend({ allow_unreachable: AllowUnreachable });

export const InstanceUpdate = z
  .object({
    weight: z.number().int().min(1).max(TABLE_LIMITS.maxWeight).optional(),
    priority: z.number().int().min(0).max(TABLE_LIMITS.maxPriority).optional(),
    region: LabelText(64).optional(),
    gpu_count: z.number().int().min(0).max(1_024).nullable().optional(),
    gpu_memory_gb: z.number().min(0).max(1_000_000).nullable().optional(),
    api_key: ApiKey.nullable().optional().describe("null removes the key"),
    url: z.never({ error: "the URL changes by rolling migration: POST /v1/deployments/{id}/migrations" }).optional(),
  })
  .strict();

/**
 * Health settings of a deployment. Each field is written once here (`HEALTH_FIELDS`, no defaults) and
 * the create schema adds the defaults: a PATCH of one field must not reset the others (zod 4 applies
 * defaults inside `.partial()`).
 */
const HEALTH_FIELDS = {
  interval_seconds: z.number().min(0.05).max(3_600).describe("Probe every N seconds (per instance)"),
  timeout_seconds: z.number().min(0.05).max(600).describe("A probe not answered within this fails"),
  unhealthy_threshold: z.number().int().min(1).max(100).describe("Consecutive failed probes to eject"),
  healthy_threshold: z.number().int().min(1).max(100).describe("Consecutive successful probes to (re-)add"),
  // Envoy probes the same path (contract 4 refuses anything else, and one refused xDS snapshot froze
  // every deployment's clusters): printable ASCII, no query or fragment; percent-encode the rest.
  path: z
    .string()
    .max(256)
    .regex(/^\/[\x21-\x22\x24-\x3e\x40-\x7e]*$/, "absolute path of printable ASCII without query or fragment")
    .describe("Probe path on the instance's host (probe: path)"),
  probe: z
    .enum(["path", "models"])
    .describe("path: GET {scheme}://{host}:{port}{path}; models: GET {base}/models (the OpenAI model list)"),
  completion_every: z
    .number()
    .int()
    .min(0)
    .max(1_000)
    .describe("Every k-th probe is a 1-token chat completion (catches 'up but broken'); 0 = never. After a failed one, every probe is a completion until one passes"),
  window_seconds: z.number().min(1).max(600).describe("Sliding window of the traffic statistics (P95, error rate)"),
  max_error_rate: z
    .number()
    .min(0)
    .max(1)
    .nullable()
    .describe("Eject when (upstream_5xx + connect_failures) / requests in the window exceeds this (null = off)"),
  min_requests: z.number().int().min(1).max(1_000_000).describe("Traffic thresholds apply only with at least this many requests in the window"),
  max_p95_ms: z
    .number()
    .min(1)
    .max(600_000)
    .nullable()
    .describe("Eject when the window's P95 latency exceeds this (null = off); never the last eligible instance"),
};

export const HEALTH_DEFAULTS = {
  interval_seconds: 10,
  timeout_seconds: 2,
  unhealthy_threshold: 3,
  healthy_threshold: 2,
  path: "/health",
  probe: "path" as const,
  completion_every: 0,
  window_seconds: 60,
  max_error_rate: null,
  min_requests: 20,
  max_p95_ms: null,
};

const withDefaults = () => {
  const f = HEALTH_FIELDS;
  const d = HEALTH_DEFAULTS;
  return {
    interval_seconds: f.interval_seconds.default(d.interval_seconds),
    timeout_seconds: f.timeout_seconds.default(d.timeout_seconds),
    unhealthy_threshold: f.unhealthy_threshold.default(d.unhealthy_threshold),
    healthy_threshold: f.healthy_threshold.default(d.healthy_threshold),
    path: f.path.default(d.path),
    probe: f.probe.default(d.probe),
    completion_every: f.completion_every.default(d.completion_every),
    window_seconds: f.window_seconds.default(d.window_seconds),
    max_error_rate: f.max_error_rate.default(d.max_error_rate),
    min_requests: f.min_requests.default(d.min_requests),
    max_p95_ms: f.max_p95_ms.default(d.max_p95_ms),
  };
};

export const HealthCheck = z.object(withDefaults()).strict();
const HealthCheckPatch = z.object(HEALTH_FIELDS).partial().strict();

/** Requests routed here keep the client's authorization / x-api-key (engines that authenticate end users). */
const ForwardCredentials = z
  .boolean()
  .describe("Forward the client's authorization and x-api-key to the instances (default false: removed; an instance's own API key replaces authorization either way)");
/** Paths served besides the OpenAI inference API (chat/completions, completions, embeddings, models). */
const ExtraPaths = z
  .array(ExtraPath)
  .max(TABLE_LIMITS.maxExtraPaths)
  .refine((a) => new Set(a).size === a.length, "duplicate path")
  .describe("Paths under the API prefix this deployment serves besides chat/completions, completions, embeddings and models, e.g. rerank, score, audio/transcriptions, responses");

/** Engine load signals (issue 18): scrape each instance's Prometheus /metrics on its probe beat. */
const LoadSignals = z
  .boolean()
  .describe("Read each instance's Prometheus /metrics (vLLM: requests waiting, KV-cache usage) on its probe beat and publish a load score in the routing table for the load_aware strategy (default false). A failed scrape never ejects.");

/** Session affinity (contract 1 `affinity`), unknown keys refused. */
const AffinityLoadFactor = z
  .number()
  .min(1)
  .max(10)
  .describe("c of consistent hashing with bounded loads: an instance over ceil(c × average in flight) is skipped for the next in hash order (default 1.25)");
export const DeploymentAffinity = z
  .discriminatedUnion("source", [
    z.object({ source: z.literal("header"), header: AffinityHeaderName.describe("Request header carrying the session key, lower-case, e.g. x-session-id"), load_factor: AffinityLoadFactor.optional() }).strict(),
    z.object({ source: z.literal("user"), load_factor: AffinityLoadFactor.optional() }).strict(),
  ])
  .describe("Session affinity: requests with the same key (a header, or the body's top-level \"user\" — body-routed requests only) go to the same instance while it is eligible and under its load bound; requests without a key use the strategy");

export const DeploymentCreate = z
  .object({
    id: Id.optional().describe("Generated when absent"),
    model: z.string().min(1).max(256).describe("A registered model: its id, name or alias"),
    strategy: Strategy.default("round_robin"),
    on_unavailable: UnavailablePolicy.default("fail").describe("All instances unhealthy: fail (503) or panic (use them anyway)"),
    forward_client_credentials: ForwardCredentials.default(false),
    extra_paths: ExtraPaths.default([]),
    affinity: DeploymentAffinity.optional(),
    load_signals: LoadSignals.default(false),
    health_check: HealthCheck.prefault({}),
    instances: z.array(InstanceCreate).max(TABLE_LIMITS.maxInstancesPerDeployment).default([]),
    allow_unreachable: AllowUnreachable,
  })
  .strict()
  .superRefine((d, ctx) => {
    const ids = new Set<string>();
    d.instances.forEach((inst, i) => {
      if (inst.id === undefined) return;
      if (ids.has(inst.id)) ctx.addIssue({ code: "custom", path: ["instances", i, "id"], message: `duplicate instance id ${inst.id}` });
      ids.add(inst.id);
    });
  });

export const DeploymentUpdate = z
  .object({
    strategy: Strategy.optional(),
    on_unavailable: UnavailablePolicy.optional(),
    forward_client_credentials: ForwardCredentials.optional(),
    extra_paths: ExtraPaths.optional(),
    affinity: DeploymentAffinity.nullable().optional().describe("null removes the affinity"),
    load_signals: LoadSignals.optional(),
    health_check: HealthCheckPatch.optional(),
  })
  .strict();

export const MigrationCreate = z
  .object({
    instance_id: Id.describe("The instance whose endpoint changes"),
    url: InstanceUrl.describe("The new endpoint"),
    new_instance_id: Id.optional().describe("Id of the replacement instance; generated when absent"),
    api_key: ApiKey.nullable().optional().describe("Absent: keep the old instance's key; null: none"),
    drain_timeout_seconds: z.number().min(0).max(3_600).optional(),
  })
  .strict();

export const Engine = z.enum(["vllm", "sglang", "tgi", "ollama"]);

export const ConnectivityResult = z.object({
  ok: z.boolean(),
  checked_at: z.string(),
  address: z.string().nullable().describe("ip:port the test connected to"),
  engine: Engine.nullable(),
  latency_ms: z.object({ models: z.number().nullable(), completion: z.number().nullable(), total: z.number() }),
  models_served: z.array(z.string()).describe("Model ids listed by GET /models (first 20)"),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  // Optional: results stored before these fields existed have neither.
  http_status: z.number().int().nullable().optional().describe("Status of the instance's HTTP answer that failed the test (http_error), else null"),
  detail: z
    .string()
    .nullable()
    .optional()
    .describe("The instance's own words about the failure (e.g. the engine's error message), at most 300 characters, the API key removed; else null"),
});

/**
 * What one instance's connectivity test saw, when it failed: the body of a 422 `connectivity_failed`
 * (`error.instances`) and of the `warnings` of a create or scale-up that stored the instance anyway.
 */
export const ConnectivityEvidence = z.object({
  instance_id: Id,
  url: z.string(),
  code: z
    .string()
    .describe("dns_failed, blocked_address, refused, timeout, network_error, tls_error, http_error, bad_response, wrong_model, too_large, duplicate_address"),
  message: z.string(),
  check: ConnectivityResult.describe("The full test result (also the instance's last_check when stored)"),
});

export const InstanceLifecycle = z.enum(["pending", "active", "draining", "ejected", "unreachable"]);

export const Instance = z.object({
  id: Id,
  url: z.string(),
  scheme: z.enum(["http", "https"]),
  host: z.string(),
  port: z.number().int(),
  base_path: z.string(),
  address: z.string().nullable().describe("Resolved ip:port served in the routing table"),
  weight: z.number().int(),
  priority: z.number().int(),
  region: z.string(),
  gpu_count: z.number().int().nullable(),
  gpu_memory_gb: z.number().nullable(),
  has_api_key: z.boolean(),
  state: InstanceLifecycle,
  last_check: ConnectivityResult.nullable(),
  created_at: z.string(),
  updated_at: z.string(),
  /** Added by reads (GET); never stored. */
  health: InstanceHealth.optional(),
});

export const MigrationPhase = z.enum(["testing", "health_checking", "draining", "succeeded", "rolled_back"]);

export const Migration = z.object({
  id: Id,
  from_instance: Id,
  to_instance: Id,
  url: z.string(),
  phase: MigrationPhase,
  required_successes: z.number().int(),
  consecutive_successes: z.number().int(),
  consecutive_failures: z.number().int(),
  probes: z.number().int(),
  next_probe_at: z.string().nullable(),
  health_deadline: z.string().nullable(),
  drain_timeout_seconds: z.number(),
  drain_until: z.string().nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  history: z.array(z.object({ phase: MigrationPhase, at: z.string(), note: z.string().optional() })),
  started_at: z.string(),
  updated_at: z.string(),
  finished_at: z.string().nullable(),
});

export const Deployment = z.object({
  id: Id,
  model_id: Id,
  strategy: Strategy,
  on_unavailable: UnavailablePolicy,
  forward_client_credentials: ForwardCredentials.default(false),
  extra_paths: ExtraPaths.default([]),
  affinity: DeploymentAffinity.optional(),
  /** Absent in documents written before it existed (and in test doubles): off. */
  load_signals: LoadSignals.optional(),
  // Stored documents written before a field existed get its default when read; one written under the
  // looser path rule of before stays readable (a PATCH fixes it).
  health_check: z.object({ ...withDefaults(), path: z.string().max(256).regex(/^\/[^\s?#]*$/).default(HEALTH_DEFAULTS.path) }),
  instances: z.array(Instance),
  migrations: z.array(Migration),
  revision: z.number().int(),
  created_at: z.string(),
  updated_at: z.string(),
});

const Warnings = z
  .array(ConnectivityEvidence)
  .describe("Instances stored although their connectivity test failed (unreachable: no traffic until re-tested), and why");

/** The answer to a create: the stored deployment and its failed instances (not stored: a response field). */
export const DeploymentCreated = Deployment.extend({ warnings: Warnings });
/** The answer to a scale-up: the stored instance, and its failure when it was kept anyway. */
export const InstanceAdded = Instance.extend({ warnings: Warnings });

export type InstanceCreate = z.output<typeof InstanceCreate>;
export type InstanceAdd = z.output<typeof InstanceAdd>;
export type ConnectivityEvidence = z.infer<typeof ConnectivityEvidence>;
export type InstanceUpdate = z.output<typeof InstanceUpdate>;
export type DeploymentCreate = z.output<typeof DeploymentCreate>;
export type DeploymentUpdate = z.output<typeof DeploymentUpdate>;
export type MigrationCreate = z.output<typeof MigrationCreate>;
export type ConnectivityResult = z.infer<typeof ConnectivityResult>;
export type Instance = z.infer<typeof Instance>;
export type Migration = z.infer<typeof Migration>;
export type Deployment = z.infer<typeof Deployment>;
export type InstanceLifecycle = z.infer<typeof InstanceLifecycle>;

export const isIpLiteral = (host: string): boolean => isIP(host) !== 0;

/** Migrations still running. */
export const activeMigrations = (d: Deployment): Migration[] => d.migrations.filter((m) => m.phase !== "succeeded" && m.phase !== "rolled_back");

/** Background work left for this deployment (connectivity tests, migrations). */
export const hasPendingWork = (d: Deployment): boolean => d.instances.some((i) => i.state === "pending") || activeMigrations(d).length > 0;
