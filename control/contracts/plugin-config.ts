/**
 * Contract 2 — the plugin configuration.
 *
 * The JSON string Envoy hands the wasm filter (`config.configuration`, a google.protobuf.StringValue).
 * This zod schema is the single definition (defaults included); the plugin's parser
 * (plugin/config.ts) implements the same rules and both are tested against
 * test/fixtures/plugin-config/. Unknown keys are refused: a typo must fail plugin start
 * (on_configure → false) rather than silently use a default.
 */
import { z } from "zod";

const HeaderName = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[a-z0-9!#$%&'*+.^_`|~-]+$/, "lower-case HTTP header name (RFC 9110 token)");

export const PluginConfig = z
  .object({
    /** Envoy cluster (static or CDS) that reaches the control service. Required. */
    control_cluster: z.string().min(1).max(256),
    /** :authority sent to the control service. */
    control_authority: z.string().min(1).max(256).default("gateway-control"),
    /** Path of the routing-table endpoint. */
    table_path: z.string().regex(/^\/[^\s?#]*$/, "absolute path without query").default("/v1/routing-table"),
    /** Bearer token for the plugin-facing endpoints; a secret, never logged. */
    control_token: z.string().min(1).max(512).optional(),
    /** Root-context tick: how often each worker checks shared data and (if it holds the poll) the control service. */
    poll_interval_ms: z.number().int().min(100).max(60_000).default(1_000),
    /** Long-poll wait sent as ?wait=; 0 polls without waiting. */
    long_poll_seconds: z.number().int().min(0).max(60).default(20),
    /** http_call timeout; must exceed the long-poll wait. */
    control_timeout_ms: z.number().int().min(100).max(120_000).default(25_000),
    /** Largest routing table accepted, in bytes. */
    max_table_bytes: z.number().int().min(1_024).max(64 * 1024 * 1024).default(16 * 1024 * 1024),
    /** Request header naming the model; takes precedence over the body. */
    model_header: HeaderName.default("x-model"),
    /** Models we do not manage: leave the request to the rest of the route table, or answer 404. */
    unknown_model: z.enum(["passthrough", "reject"]).default("passthrough"),
    /**
     * Before the first routing table (Envoy start, hot restart, a new filter configuration with nothing in
     * shared data yet) no request can be told to be ours: requests naming a model get 503
     * table_not_loaded with retry-after, or, opted in, pass through to the rest of the route table.
     */
    before_first_table: z.enum(["reject", "passthrough"]).default("reject"),
    /** Read the OpenAI JSON body's `model` when the header is absent (needs allow_on_headers_stop_iteration). */
    body_routing: z.boolean().default(true),
    /** Largest body buffered to find the model; larger → 413. */
    max_body_bytes: z.number().int().min(64).max(16 * 1024 * 1024).default(1024 * 1024),
    /** Eligible instances listed after the pick in the endpoint header, for Envoy retries. */
    max_fallbacks: z.number().int().min(0).max(8).default(2),
    /** The API prefix clients use; rewritten to an instance's base path when they differ. */
    api_prefix: z.string().regex(/^(?:\/[^\s/?#]+)*$/, "empty or '/segment…' without a trailing slash").default("/v1"),
    /** Retry-After (seconds) on 503 when a deployment has no eligible instance under policy `fail`. */
    retry_after_seconds: z.number().int().min(0).max(3_600).default(5),
    /** Path the root context POSTs telemetry batches to (contract 3, control/contracts/telemetry.ts). */
    telemetry_path: z.string().regex(/^\/[^\s?#]*$/, "absolute path without query").default("/v1/telemetry"),
    /** How often each worker sends its telemetry batch; 0 turns telemetry off. */
    telemetry_interval_ms: z.number().int().min(0).max(300_000).default(5_000),
    /** Consecutive real-traffic failures (connect failure, reset, 5xx) that take an instance out of this worker's picks; 0 turns passive ejection off. */
    passive_failures: z.number().int().min(0).max(100).default(3),
    /** How long a passively ejected instance stays out of this worker's picks (the next table version decides after that). */
    passive_cooldown_ms: z.number().int().min(1_000).max(600_000).default(10_000),
    /** `GET|HEAD {api_prefix}/models[/{name}]`: answered by the plugin from the routing table (OpenAI list format), or left to the route table. */
    models_endpoint: z.enum(["local", "passthrough"]).default("local"),
    endpoint_header: HeaderName.default("x-gateway-destination-endpoint"),
    cluster_header: HeaderName.default("x-gateway-cluster"),
    deployment_header: HeaderName.default("x-model-deployment"),
    instance_header: HeaderName.default("x-model-instance"),
  })
  .strict()
  .refine((c) => c.long_poll_seconds * 1000 < c.control_timeout_ms, {
    path: ["control_timeout_ms"],
    message: "must exceed long_poll_seconds × 1000",
  });

export type PluginConfigInput = z.input<typeof PluginConfig>;
export type PluginConfig = z.output<typeof PluginConfig>;
