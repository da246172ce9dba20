/** The OpenAPI 3.1 document, generated from the same zod schemas that validate requests. */
import { z } from "zod";
import { RoutingTable } from "../contracts/routing-table.js";
import {
  ConnectivityEvidence,
  Deployment,
  DeploymentCreate,
  DeploymentCreated,
  DeploymentUpdate,
  Instance,
  InstanceAdd,
  InstanceAdded,
  InstanceCreate,
  InstanceUpdate,
  Migration,
  MigrationCreate,
} from "./deployments/schemas.js";
import { Model, ModelCreate, ModelUpdate } from "./models/schemas.js";
import { STATUS } from "./http/errors.js";
import { TelemetryBatch } from "../contracts/telemetry.js";
import { EventList } from "./health/schemas.js";
import { StreamEvent, WhoAmI } from "./events/schemas.js";
import { InstanceHistory } from "./telemetry/history.js";
import { DataplaneList } from "../xds/dataplanes.js";

export const ErrorBody = z.object({
  error: z.object({
    code: z.enum(Object.keys(STATUS) as [keyof typeof STATUS, ...(keyof typeof STATUS)[]]),
    message: z.string(),
    request_id: z.string(),
    issues: z
      .array(z.object({ path: z.string(), message: z.string() }))
      .optional()
      .describe("Each bad field (validation errors); for connectivity_failed, each failed instance's URL field and what its test saw"),
    instances: z.array(ConnectivityEvidence).optional().describe("connectivity_failed: what each instance's connectivity test saw (nothing was stored)"),
  }),
});

type Schema = z.ZodType;
interface Op {
  method: "get" | "post" | "patch" | "delete";
  path: string;
  summary: string;
  roles: string;
  body?: string;
  ok: [number, string | null];
  /** Other success answers: status, schema, description. */
  also?: [number, string | null, string][];
  /** Errors of this operation; 400, 401, 403, 413, 415, 431 and 503 every operation may answer (COMMON). */
  errors: number[];
  headers?: string[];
  /** Response media type when not JSON. */
  contentType?: string;
}

const inputs: Record<string, Schema> = { ModelCreate, ModelUpdate, DeploymentCreate, DeploymentUpdate, InstanceCreate, InstanceAdd, InstanceUpdate, MigrationCreate, TelemetryBatch };
const outputs: Record<string, Schema> = {
  Model,
  Deployment,
  DeploymentCreated,
  Instance,
  InstanceAdded,
  ConnectivityEvidence,
  Migration,
  RoutingTable,
  Error: ErrorBody,
  ModelList: z.object({ models: z.array(Model) }),
  DeploymentList: z.object({ deployments: z.array(Deployment) }),
  MigrationList: z.object({ migrations: z.array(Migration) }),
  EventList,
  StreamEvent,
  WhoAmI,
  InstanceHistory,
  DataplaneList,
  TelemetryAck: z.object({
    duplicate: z.boolean().describe("(source, seq) was merged before: nothing changed"),
    accepted: z.number().int().describe("Instances merged into the windows"),
    ignored: z.number().int().describe("Instances not in the routing table (or all, for a duplicate)"),
  }),
};

const NOT_MODIFIED: [number, null, string] = [304, null, "Not modified: If-None-Match names the current ETag (no body)"];
const PENDING = "Accepted: stored, and some instance's connectivity test was still running when the wait ended (it stays pending; the worker finishes it; GET to follow). Only when another instance passed, or allow_unreachable was set";
const ops: Op[] = [
  { method: "post", path: "/v1/models", summary: "Register a model", roles: "admin", body: "ModelCreate", ok: [201, "Model"], errors: [409, 422], headers: ["Idempotency-Key"] },
  { method: "get", path: "/v1/models", summary: "List models", roles: "admin, viewer", ok: [200, "ModelList"], errors: [] },
  { method: "get", path: "/v1/models/{id}", summary: "Read a model (ETag = revision; If-None-Match → 304)", roles: "admin, viewer", ok: [200, "Model"], also: [NOT_MODIFIED], errors: [404], headers: ["If-None-Match"] },
  { method: "patch", path: "/v1/models/{id}", summary: "Change a model", roles: "admin", body: "ModelUpdate", ok: [200, "Model"], errors: [404, 409, 412], headers: ["If-Match"] },
  { method: "delete", path: "/v1/models/{id}", summary: "Remove a model (not while deployed)", roles: "admin", ok: [204, null], errors: [404, 409, 412], headers: ["If-Match"] },
  {
    method: "post",
    path: "/v1/deployments",
    summary:
      "Create a deployment. Its instances' connectivity is tested before anything is stored: 201 when every test finished within CREATE_WAIT_MS (failed instances stored unreachable and listed in `warnings`), 202 when some were still running, 422 connectivity_failed (nothing stored, `error.instances` says what each test saw) when none passed — unless allow_unreachable",
    roles: "admin",
    body: "DeploymentCreate",
    ok: [201, "DeploymentCreated"],
    also: [[202, "DeploymentCreated", PENDING]],
    errors: [409, 422],
    headers: ["Idempotency-Key"],
  },
  { method: "get", path: "/v1/deployments", summary: "List deployments", roles: "admin, viewer", ok: [200, "DeploymentList"], errors: [] },
  { method: "get", path: "/v1/deployments/{id}", summary: "Read a deployment (ETag = revision; If-None-Match → 304)", roles: "admin, viewer", ok: [200, "Deployment"], also: [NOT_MODIFIED], errors: [404], headers: ["If-None-Match"] },
  { method: "patch", path: "/v1/deployments/{id}", summary: "Change strategy, policy or health checks", roles: "admin", body: "DeploymentUpdate", ok: [200, "Deployment"], errors: [404, 412], headers: ["If-Match"] },
  { method: "delete", path: "/v1/deployments/{id}", summary: "Delete a deployment (leaves the routing table at once)", roles: "admin", ok: [204, null], errors: [404, 412], headers: ["If-Match"] },
  {
    method: "post",
    path: "/v1/deployments/{id}/instances",
    summary: "Scale up: add an instance, connectivity-tested before it is stored (201, 202, or 422 connectivity_failed with nothing stored — unless allow_unreachable)",
    roles: "admin",
    body: "InstanceAdd",
    ok: [201, "InstanceAdded"],
    also: [[202, "InstanceAdded", PENDING]],
    errors: [404, 409, 412, 422],
    headers: ["Idempotency-Key", "If-Match"],
  },
  { method: "get", path: "/v1/deployments/{id}/instances/{instanceId}", summary: "Read an instance (ETag = the deployment's revision; If-None-Match → 304)", roles: "admin, viewer", ok: [200, "Instance"], also: [NOT_MODIFIED], errors: [404], headers: ["If-None-Match"] },
  { method: "patch", path: "/v1/deployments/{id}/instances/{instanceId}", summary: "Change weight, priority, region, GPU info or API key (the URL changes by migration)", roles: "admin", body: "InstanceUpdate", ok: [200, "Deployment"], errors: [404, 412], headers: ["If-Match"] },
  { method: "delete", path: "/v1/deployments/{id}/instances/{instanceId}", summary: "Scale down: remove an instance (leaves the routing table at once)", roles: "admin", ok: [204, null], errors: [404, 409, 412], headers: ["If-Match"] },
  {
    method: "post",
    path: "/v1/deployments/{id}/instances/{instanceId}/test",
    summary: "Re-run the connectivity test of an unreachable instance (200 with the result when it finished within CREATE_WAIT_MS, else 202)",
    roles: "admin",
    ok: [200, "Deployment"],
    also: [[202, "Deployment", "Accepted: the test is still running (the instance is pending; GET to follow)"]],
    errors: [404, 409],
  },
  { method: "post", path: "/v1/deployments/{id}/migrations", summary: "Change an instance's endpoint by rolling migration (202)", roles: "admin", body: "MigrationCreate", ok: [202, "Migration"], errors: [404, 409, 412, 422], headers: ["Idempotency-Key", "If-Match"] },
  { method: "get", path: "/v1/deployments/{id}/migrations", summary: "List migrations", roles: "admin, viewer", ok: [200, "MigrationList"], errors: [404] },
  { method: "get", path: "/v1/deployments/{id}/migrations/{migrationId}", summary: "Read a migration's progress (ETag = the deployment's revision; If-None-Match → 304)", roles: "admin, viewer", ok: [200, "Migration"], also: [NOT_MODIFIED], errors: [404], headers: ["If-None-Match"] },
  { method: "post", path: "/v1/deployments/{id}/migrations/{migrationId}/cancel", summary: "Cancel a migration before its switch: the new instance is removed, the old one kept serving (409 once switched or ended)", roles: "admin", ok: [200, "Migration"], errors: [404, 409, 412], headers: ["If-Match"] },
  { method: "get", path: "/v1/deployments/{id}/instances/{instanceId}/events", summary: "The instance's event timeline, newest first (?limit=, ≤ EVENTS_PER_INSTANCE): probe results on changes, ejections and re-admissions with reasons, threshold crossings", roles: "admin, viewer", ok: [200, "EventList"], errors: [404] },
  { method: "get", path: "/v1/deployments/{id}/instances/{instanceId}/history", summary: "The instance's statistics per telemetry bucket, oldest first (?seconds=, ≤ 600, default 300): requests, errors, error rate, P95, probes — what the dashboard charts", roles: "admin, viewer", ok: [200, "InstanceHistory"], errors: [404] },
  {
    method: "get",
    path: "/v1/events",
    summary:
      "Live change stream (server-sent events; each `data:` is one StreamEvent, `event:` its type, `id:` a position). Notifications only: re-read what an event names. Send Last-Event-ID to resume (replayed from this replica's recent events, else a `resync` event); a comment every EVENTS_HEARTBEAT_MS; a client not reading is dropped; at most EVENTS_MAX_STREAMS per replica (503 too_many_streams, Retry-After)",
    roles: "admin, viewer",
    ok: [200, "StreamEvent"],
    errors: [],
    headers: ["Last-Event-ID"],
    contentType: "text/event-stream",
  },
  { method: "get", path: "/v1/whoami", summary: "The role of the bearer token sent (clients show or hide actions by it)", roles: "admin, viewer, plugin", ok: [200, "WhoAmI"], errors: [] },
  { method: "post", path: "/v1/telemetry", summary: "A telemetry batch from the plugin (contract 3); a repeated (source, seq) is ignored", roles: "plugin, admin", body: "TelemetryBatch", ok: [200, "TelemetryAck"], errors: [] },
  { method: "get", path: "/metrics", summary: "Prometheus metrics (text format)", roles: "peers in METRICS_ALLOW_FROM without a token; else viewer, admin", ok: [200, null], errors: [] },
  { method: "get", path: "/v1/routing-table", summary: "The routing table (contract 1). ETag = version; If-None-Match → 304; ?wait=N long-polls. With x-gateway-node (the plugin's Envoy node id): only what that Envoy has ACKed over xDS, at version − 1 until it has all of it", roles: "plugin, admin, viewer", ok: [200, "RoutingTable"], also: [NOT_MODIFIED], errors: [] },
  { method: "get", path: "/v1/dataplanes", summary: "The Envoys (xDS nodes) this replica serves over ADS or REST: per type, the last version sent, ACKed and NACKed (with Envoy's error_detail)", roles: "admin, viewer", ok: [200, "DataplaneList"], errors: [] },
];

/** What every operation may answer, whatever it does (the request, the token, the state store). */
const COMMON: [number, string][] = [
  [400, "Bad request: a field or parameter is invalid (validation_failed, naming each in `issues`), malformed JSON, a path that is not valid percent-encoding, or an unparseable request"],
  [401, "No valid bearer token"],
  [403, "Role not allowed"],
  [413, "Request body over the route's limit (http/body.ts BODY_LIMITS, capped by BODY_LIMIT_BYTES); the message names it"],
  [415, "A request body that is not JSON, or is compressed"],
  [431, "Request headers too large"],
  [503, "Unavailable: the state store (store_unavailable: the change was not made; outcome_unknown: a change was sent and Redis did not answer, it may or may not be applied — retry with the same Idempotency-Key or read the resource; both with Retry-After), no routing table yet (table_unavailable), or too many event streams (too_many_streams)"],
];

const ERROR_TEXT: Record<number, string> = {
  404: "Not found",
  409: "Conflict: already exists, a state that does not allow it (invalid_state), the same Idempotency-Key still running (idempotency_in_progress), or applied with its answer lost (idempotency_applied: read the resource)",
  412: "If-Match does not match the current ETag",
  422: "Unprocessable: unknown_model, idempotency_key_reused (same key, other body), or connectivity_failed (no instance passed its connectivity test; nothing stored; `error.instances` has the evidence)",
};

const toSchema = (s: Schema, io: "input" | "output") => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(s, { io, unrepresentable: "any", target: "draft-2020-12" }) as Record<string, unknown>;
  return rest;
};

export function openApiDocument(): Record<string, unknown> {
  const schemas: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(inputs)) schemas[name] = toSchema(s, "input");
  for (const [name, s] of Object.entries(outputs)) schemas[name] = toSchema(s, "output");
  const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of ops) {
    const params = [...op.path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1], in: "path", required: true, schema: { type: "string" } }));
    for (const h of op.headers ?? []) params.push({ name: h, in: "header", required: false, schema: { type: "string" } });
    if (op.path === "/v1/routing-table") {
      params.push({ name: "wait", in: "query", required: false, schema: { type: "integer", minimum: 0, maximum: 60 } as never });
      params.push({ name: "If-None-Match", in: "header", required: false, schema: { type: "string" } });
    }
    if (op.path.endsWith("/history")) params.push({ name: "seconds", in: "query", required: false, schema: { type: "integer", minimum: 1, maximum: 600 } as never });
    if (op.path.endsWith("/instances/{instanceId}/events")) params.push({ name: "limit", in: "query", required: false, schema: { type: "integer", minimum: 1 } as never });
    const success = (schema: string | null, description: string) =>
      schema ? { description, content: { [op.contentType ?? "application/json"]: { schema: ref(schema) } } } : { description };
    const error = (description: string) => ({ description, content: { "application/json": { schema: ref("Error") } } });
    const responses: Record<string, unknown> = { [op.ok[0]]: success(op.ok[1], op.ok[0] === 204 ? "Done (no body)" : "OK") };
    for (const [status, schema, description] of op.also ?? []) responses[status] = success(schema, description);
    for (const st of op.errors) responses[st] = error(ERROR_TEXT[st] ?? "Error");
    for (const [st, description] of COMMON) responses[st] = error(description);
    // Express answers any GET 304 when If-None-Match matches the response's ETag — or is `*` (RFC 9110: the
    // resource exists), which needs no ETag: every GET but the event stream can answer it.
    if (op.method === "get" && op.contentType === undefined) responses["304"] ??= { description: "Not modified: If-None-Match is `*` (no body)" };
    (paths[op.path] ??= {})[op.method] = {
      summary: op.summary,
      description: `Roles: ${op.roles}`,
      security: [{ bearer: [] }],
      parameters: params,
      ...(op.body ? { requestBody: { required: true, content: { "application/json": { schema: ref(op.body) } } } } : {}),
      responses,
    };
  }
  return {
    openapi: "3.1.0",
    info: { title: "Model gateway control service", version: "0.1.0" },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } }, schemas },
    paths,
  };
}
