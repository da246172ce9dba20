/**
 * Contract 1 — the routing-table document.
 *
 * Produced by the control service (GET /v1/routing-table), consumed by the Envoy plugin
 * (plugin/table/). This zod schema is the single definition; the plugin's AssemblyScript
 * parser implements the same rules and both sides are tested against the fixtures in
 * test/fixtures/routing-table/ (valid/ must be accepted, invalid/ refused by both).
 *
 * Compatibility: consumers ignore unknown fields (a newer control service may add some);
 * a breaking change bumps `schema`, which older plugins refuse (keeping their last table).
 */
import { z } from "zod";

export const ROUTING_TABLE_SCHEMA = 1;

/** Hard limits, shared with the plugin parser (plugin/table/limits.ts mirrors them). */
export const TABLE_LIMITS = {
  maxDeployments: 10_000,
  maxInstancesPerDeployment: 1_024,
  maxModelNames: 50_000,
  maxIdLength: 128,
  maxModelNameLength: 256,
  maxWeight: 10_000,
  maxPriority: 255,
  /** "Bearer " + an API key of at most 4,096 characters. */
  maxAuthorizationLength: 4_200,
  maxExtraPaths: 32,
  maxExtraPathLength: 128,
  /** An instance's `load.score` (requests waiting + KV usage) at most. */
  maxLoadScore: 1_000_000,
  /** An instance's `load.interval_ms` at most (one hour). */
  maxLoadIntervalMs: 3_600_000,
  /** An instance's `load.capacity` (requests the engine runs at once) at most. */
  maxLoadCapacity: 100_000,
} as const;

/** Same character set as instance/deployment ids everywhere in the product. */
export const Id = z
  .string()
  .min(1)
  .max(TABLE_LIMITS.maxIdLength)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "letters, digits, '.', '_' or '-', starting with a letter or digit");

/** A model name as clients send it (`model` in the body or the model header): printable ASCII. */
export const ModelName = z
  .string()
  .min(1)
  .max(TABLE_LIMITS.maxModelNameLength)
  .regex(/^[\x21-\x7e]+$/, "printable ASCII without spaces");

/**
 * The model name an engine serves (vLLM's --served-model-name): requests reach it with this name in the
 * body's top-level "model". Any non-whitespace, non-control characters (engines accept paths like
 * "mistralai/Mistral-7B-Instruct-v0.3" and non-ASCII names).
 */
export const ServedName = z
  .string()
  .min(1)
  .max(TABLE_LIMITS.maxModelNameLength)
  .regex(/^[^\s\x00-\x1f\x7f]+$/, "no whitespace or control characters");
/** A path relative to the API prefix: lower-case segments of letters, digits, '.', '_', '-' ("audio/transcriptions"). */
export const ExtraPath = z
  .string()
  .min(1)
  .max(TABLE_LIMITS.maxExtraPathLength)
  .regex(/^[a-z0-9][a-z0-9._-]*(?:\/[a-z0-9][a-z0-9._-]*)*$/, "lower-case segments of letters, digits, '.', '_' or '-', separated by '/'");
const ipv4 = String.raw`(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}`;
const ipv6 = String.raw`\[[0-9A-Fa-f:.]+\]`;
const port = String.raw`(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})`;

/** `ip:port` (IPv6 in brackets) — Envoy endpoints and override_host need literal addresses. */
export const Address = z
  .string()
  .regex(new RegExp(`^(?:${ipv4}|${ipv6}):${port}$`), "ip:port (IPv6 as [addr]:port)");

/** Path prefix the instance serves the OpenAI API under, e.g. "/v1" or "/openai/v1"; "" for the root. */
export const BasePath = z
  .string()
  .max(256)
  .regex(/^(?:\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$/, "empty or '/segment…' without a trailing slash, query or fragment");

export const InstanceState = z.enum(["active", "draining", "ejected"]);
/**
 * How the plugin picks among a deployment's eligible instances:
 * - `round_robin`, `weighted_round_robin` (nginx's smooth WRR): tiers (`priority`) ignored;
 * - `failover`: the lowest tier with an eligible instance, rotated (smooth WRR when its weights differ);
 * - `least_request`: per Envoy worker, the in-flight requests per instance; two instances sampled in
 *   proportion to their weight, the one with the higher `weight / (in_flight + 1)` wins (Envoy's
 *   LEAST_REQUEST P2C; its dynamic weight with active_request_bias 1). Lowest eligible tier only.
 * - `latency`: peak-EWMA (Finagle/Linkerd) of each instance's time to first byte × (in_flight + 1),
 *   over the weight; two weighted samples, the cheaper wins; new/re-admitted instances start on
 *   probation at the deployment's slowest recent time. Lowest eligible tier only.
 *
 * Compatibility (decision): `least_request` and `latency` were added without bumping `schema` (it stays
 * 1). Every field keeps its meaning, and a plugin that does not know a strategy value refuses the whole
 * table (validation is whole-document) and keeps routing with its last adopted table (logging the
 * refusal), which is the safe outcome a `schema` bump would give too — but a bump would also make those
 * plugins refuse tables that use only the old strategies. So: upgrade the plugins before setting a
 * deployment to one of the new strategies; until then, old plugins keep the previous table version.
 * - `load_aware`: the engine's own load as the control service scraped it (an instance's `load`, below)
 *   combined with the in-flight requests of this worker: two weighted samples, the cheaper
 *   (in_flight × w_min/w + 1) × (1 + score) wins; when either sample has no fresh score (absent, or
 *   older than 3 × its `interval_ms`) the pair is compared as `least_request` does. Lowest eligible tier
 *   only. Same compatibility rule as the two above (plugins first).
 */
export const Strategy = z.enum(["round_robin", "weighted_round_robin", "failover", "least_request", "latency", "load_aware"]);
export const UnavailablePolicy = z.enum(["fail", "panic"]);

/** A request header name as Envoy's header maps hold it: a lower-case HTTP token (no pseudo-headers). */
export const AffinityHeaderName = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[a-z0-9!#$%&'*+.^_`|~-]+$/, "a lower-case HTTP header name");
/** Default of `affinity.load_factor` (c in Mirrokni, Thorup & Zadimoghaddam's bounded loads). */
export const AFFINITY_DEFAULT_LOAD_FACTOR = 1.25;
/**
 * c: an instance takes an affine request only while its in-flight count (per Envoy worker) is below
 * ceil(c × (in-flight of the tier + 1) × its weight / the tier's weights); 1..10, default 1.25.
 */
const LoadFactor = z.number().min(1).max(10);
/**
 * Session affinity (optional, per deployment): requests carrying a key — the value of a request header,
 * or the body's top-level "user" string — go to the instance that wins weighted rendezvous hashing
 * (highest random weight) of the key over the instances the base strategy picks from (the lowest eligible
 * tier for failover/least_request/latency, every candidate otherwise), so a conversation returns to the
 * instance holding its KV prefix cache and adding or removing an instance remaps only its share. Bounded
 * load ("Consistent Hashing with Bounded Loads", Mirrokni, Thorup, Zadimoghaddam, SODA 2018): an
 * instance over ceil(load_factor × average) in flight is skipped for the next in hash order. Requests
 * without a key use `strategy`. `user` needs the body: only body-routed requests (no model header) have it.
 * Added without bumping `schema` (as least_request/latency): plugins that predate it ignore the field
 * and route by `strategy` alone.
 */
export const Affinity = z.discriminatedUnion("source", [
  z.object({ source: z.literal("header"), header: AffinityHeaderName, load_factor: LoadFactor.optional() }),
  z.object({ source: z.literal("user"), load_factor: LoadFactor.optional() }),
]);

export const TableInstance = z.object({
  id: Id,
  address: Address,
  base_path: BasePath,
  weight: z.number().int().min(1).max(TABLE_LIMITS.maxWeight),
  /** Failover tier: 0 is the primary; higher tiers serve only when every lower one is ejected. */
  priority: z.number().int().min(0).max(TABLE_LIMITS.maxPriority),
  region: z.string().max(64),
  state: InstanceState,
  /**
   * The `Authorization` value the gateway sends to this instance in place of the client's
   * ("Bearer <the instance's API key>"). Absent: the request's own header goes upstream unchanged.
   * A secret: only the plugin's view of the table carries it (GET /v1/routing-table with a plugin
   * token); admins and viewers get the table without it.
   */
  authorization: z
    .string()
    .min(1)
    .max(TABLE_LIMITS.maxAuthorizationLength)
    .regex(/^[\x21-\x7e]+(?: [\x21-\x7e]+)*$/, "printable ASCII, single spaces between words")
    .optional(),
  /**
   * The engine's own load (deployments with `load_signals`), scraped from the instance's Prometheus
   * /metrics by the control service on its probe beat: `score` = requests waiting + KV-cache usage (0..1),
   * so 0 is idle, below 1 nothing is queued, each queued request adds 1; `at_ms` = when it was scraped
   * (Unix ms, the control service's clock); `interval_ms` = how often a fresh score is expected. A
   * consumer ignores a score older than 3 × interval_ms (stale load must not attract traffic). Absent:
   * no signal (load_signals off, unknown engine, failed scrape). Load-only changes are coalesced: at most
   * one table version per load publish interval (control/src/health/load.ts). `capacity` (optional): how
   * many requests the engine runs at once, as learned from its gauges — the running count seen while
   * requests waited (its slots: --max-num-seqs or what its KV cache holds), or at least the most it was
   * seen running; absent until the engine was seen running anything.
   */
  load: z
    .object({
      score: z.number().min(0).max(TABLE_LIMITS.maxLoadScore),
      at_ms: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
      interval_ms: z.number().int().min(1).max(TABLE_LIMITS.maxLoadIntervalMs),
      capacity: z.number().int().min(1).max(TABLE_LIMITS.maxLoadCapacity).optional(),
    })
    .optional(),
});

export const TableDeployment = z.object({
  id: Id,
  /** Envoy cluster carrying this deployment's endpoints (routed by `cluster_header`). */
  cluster: z.string().min(1).max(256).regex(/^[\x21-\x7e]+$/, "printable ASCII without spaces"),
  strategy: Strategy,
  on_unavailable: UnavailablePolicy,
  /**
   * The name the deployment's engine serves. A request naming the deployment by any other name (the
   * model's public name, an alias) reaches the engine with the body's top-level "model" rewritten to it.
   * Absent: requests go upstream with the name they used.
   */
  served_name: ServedName.optional(),
  /**
   * Client credentials (`authorization`, `x-api-key`) on requests routed to this deployment: absent or
   * false, they are removed (an instance's own key, when it has one, replaces `authorization`), so a
   * client's SaaS key never reaches a self-hosted engine; true forwards them (engines that authenticate
   * end users; an instance key still replaces `authorization`).
   */
  forward_client_credentials: z.boolean().optional(),
  /**
   * Paths under the API prefix this deployment serves besides the OpenAI inference API
   * (chat/completions, completions, embeddings, models), e.g. "rerank", "score", "audio/transcriptions",
   * "responses". A routed request on any other path gets 404 and is never forwarded.
   */
  extra_paths: z.array(ExtraPath).max(TABLE_LIMITS.maxExtraPaths).optional(),
  /** Session affinity by a header or the body's "user" (see Affinity); absent: none. */
  affinity: Affinity.optional(),
  instances: z.array(TableInstance).max(TABLE_LIMITS.maxInstancesPerDeployment),
});

/**
 * Model name or alias → deployment id. Every own key counts, "__proto__" included: z.record drops a
 * "__proto__" key from its output (and so from the name count and the target check), while JSON.parse —
 * and the plugin's parser — keep it as an ordinary name. The value is returned as given (no copy that
 * could lose a key), so a table built with Object.fromEntries keeps every name.
 */
export const ModelMap = z
  .custom<Record<string, string>>(
    (v) => typeof v === "object" && v !== null && !Array.isArray(v) && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null),
    "expected an object of model name → deployment id",
  )
  .superRefine((v, ctx) => {
    for (const name of Object.keys(v)) {
      if (!ModelName.safeParse(name).success) ctx.addIssue({ code: "custom", path: [name], message: "model names are printable ASCII without spaces (1..256)" });
      if (!Id.safeParse(Object.getOwnPropertyDescriptor(v, name)?.value).success) ctx.addIssue({ code: "custom", path: [name], message: "expected a deployment id" });
    }
  })
  .meta({ type: "object", propertyNames: { type: "string", minLength: 1, maxLength: TABLE_LIMITS.maxModelNameLength, pattern: "^[\\x21-\\x7e]+$" }, additionalProperties: { type: "string" } });

export const RoutingTable = z
  .object({
    schema: z.literal(ROUTING_TABLE_SCHEMA),
    /** Monotonic; the ETag. A plugin never adopts a version lower than or equal to the one it has. */
    version: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    /** Model name or alias → deployment id. */
    models: ModelMap,
    deployments: z.array(TableDeployment).max(TABLE_LIMITS.maxDeployments),
  })
  .superRefine((table, ctx) => {
    const ids = new Set<string>();
    table.deployments.forEach((d, i) => {
      if (ids.has(d.id)) ctx.addIssue({ code: "custom", path: ["deployments", i, "id"], message: `duplicate deployment id ${d.id}` });
      ids.add(d.id);
      const instanceIds = new Set<string>();
      d.instances.forEach((inst, j) => {
        if (instanceIds.has(inst.id)) {
          ctx.addIssue({ code: "custom", path: ["deployments", i, "instances", j, "id"], message: `duplicate instance id ${inst.id}` });
        }
        instanceIds.add(inst.id);
      });
    });
    const names = Object.keys(table.models);
    if (names.length > TABLE_LIMITS.maxModelNames) {
      ctx.addIssue({ code: "custom", path: ["models"], message: `more than ${TABLE_LIMITS.maxModelNames} model names` });
    }
    for (const name of names) {
      const target = Object.getOwnPropertyDescriptor(table.models, name)!.value as string;
      if (!ids.has(target)) ctx.addIssue({ code: "custom", path: ["models", name], message: `unknown deployment ${target}` });
    }
  });

export type RoutingTable = z.infer<typeof RoutingTable>;
export type TableDeployment = z.infer<typeof TableDeployment>;
export type TableInstance = z.infer<typeof TableInstance>;
export type InstanceState = z.infer<typeof InstanceState>;
export type Strategy = z.infer<typeof Strategy>;
export type UnavailablePolicy = z.infer<typeof UnavailablePolicy>;
export type Affinity = z.infer<typeof Affinity>;

/** The ETag for a table version: a strong validator, quoted per RFC 9110. */
export function tableEtag(version: number): string {
  return `"${version}"`;
}
