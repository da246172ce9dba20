/** The OpenAPI 3.1 document, generated from the same zod schemas that validate requests. */
import { z } from "zod";
import { RoutingTable } from "../contracts/routing-table.js";
import { Deployment, DeploymentCreate, DeploymentUpdate, Instance, InstanceCreate, InstanceUpdate, Migration, MigrationCreate } from "./deployments/schemas.js";
import { Model, ModelCreate, ModelUpdate } from "./models/schemas.js";
import { STATUS } from "./http/errors.js";
import { TelemetryBatch } from "../contracts/telemetry.js";
import { EventList } from "./health/schemas.js";
import { StreamEvent, WhoAmI } from "./events/schemas.js";
import { InstanceHistory } from "./telemetry/history.js";

export const ErrorBody = z.object({
  error: z.object({
    code: z.enum(Object.keys(STATUS) as [keyof typeof STATUS, ...(keyof typeof STATUS)[]]),
    message: z.string(),
    request_id: z.string(),
    issues: z.array(z.object({ path: z.string(), message: z.string() })).optional().describe("Each bad field (validation errors)"),
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
  errors: number[];
  headers?: string[];
  /** Response media type when not JSON. */
  contentType?: string;
}

const inputs: Record<string, Schema> = { ModelCreate, ModelUpdate, DeploymentCreate, DeploymentUpdate, InstanceCreate, InstanceUpdate, MigrationCreate, TelemetryBatch };
const outputs: Record<string, Schema> = {
  Model,
  Deployment,
  Instance,
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
  TelemetryAck: z.object({
    duplicate: z.boolean().describe("(source, seq) was merged before: nothing changed"),
    accepted: z.number().int().describe("Instances merged into the windows"),
    ignored: z.number().int().describe("Instances not in the routing table (or all, for a duplicate)"),
  }),
};

const ops: Op[] = [
  { method: "post", path: "/v1/models", summary: "Register a model", roles: "admin", body: "ModelCreate", ok: [201, "Model"], errors: [400, 409, 415, 422], headers: ["Idempotency-Key"] },
  { method: "get", path: "/v1/models", summary: "List models", roles: "admin, viewer", ok: [200, "ModelList"], errors: [] },
  { method: "get", path: "/v1/models/{id}", summary: "Read a model", roles: "admin, viewer", ok: [200, "Model"], errors: [404] },
  { method: "patch", path: "/v1/models/{id}", summary: "Change a model", roles: "admin", body: "ModelUpdate", ok: [200, "Model"], errors: [400, 404, 409, 412, 415], headers: ["If-Match"] },
  { method: "delete", path: "/v1/models/{id}", summary: "Remove a model (not while deployed)", roles: "admin", ok: [204, null], errors: [404, 409, 412], headers: ["If-Match"] },
  { method: "post", path: "/v1/deployments", summary: "Create a deployment; its instances are connectivity-tested (201 when done within CREATE_WAIT_MS, else 202 with pending instances)", roles: "admin", body: "DeploymentCreate", ok: [201, "Deployment"], errors: [400, 409, 415, 422], headers: ["Idempotency-Key"] },
  { method: "get", path: "/v1/deployments", summary: "List deployments", roles: "admin, viewer", ok: [200, "DeploymentList"], errors: [] },
  { method: "get", path: "/v1/deployments/{id}", summary: "Read a deployment (ETag)", roles: "admin, viewer", ok: [200, "Deployment"], errors: [404] },
  { method: "patch", path: "/v1/deployments/{id}", summary: "Change strategy, policy or health checks", roles: "admin", body: "DeploymentUpdate", ok: [200, "Deployment"], errors: [400, 404, 412, 415], headers: ["If-Match"] },
  { method: "delete", path: "/v1/deployments/{id}", summary: "Delete a deployment (leaves the routing table at once)", roles: "admin", ok: [204, null], errors: [404, 412], headers: ["If-Match"] },
  { method: "post", path: "/v1/deployments/{id}/instances", summary: "Scale up: add an instance (tested before it joins; 201 or 202)", roles: "admin", body: "InstanceCreate", ok: [201, "Instance"], errors: [400, 404, 409, 412, 415], headers: ["Idempotency-Key", "If-Match"] },
  { method: "get", path: "/v1/deployments/{id}/instances/{instanceId}", summary: "Read an instance", roles: "admin, viewer", ok: [200, "Instance"], errors: [404] },
  { method: "patch", path: "/v1/deployments/{id}/instances/{instanceId}", summary: "Change weight, priority, region, GPU info or API key (the URL changes by migration)", roles: "admin", body: "InstanceUpdate", ok: [200, "Deployment"], errors: [400, 404, 412, 415], headers: ["If-Match"] },
  { method: "delete", path: "/v1/deployments/{id}/instances/{instanceId}", summary: "Scale down: remove an instance (leaves the routing table at once)", roles: "admin", ok: [204, null], errors: [404, 409, 412], headers: ["If-Match"] },
  { method: "post", path: "/v1/deployments/{id}/instances/{instanceId}/test", summary: "Re-run the connectivity test of an unreachable instance", roles: "admin", ok: [200, "Deployment"], errors: [404, 409] },
  { method: "post", path: "/v1/deployments/{id}/migrations", summary: "Change an instance's endpoint by rolling migration (202)", roles: "admin", body: "MigrationCreate", ok: [202, "Migration"], errors: [400, 404, 409, 412, 415], headers: ["Idempotency-Key", "If-Match"] },
  { method: "get", path: "/v1/deployments/{id}/migrations", summary: "List migrations", roles: "admin, viewer", ok: [200, "MigrationList"], errors: [404] },
  { method: "get", path: "/v1/deployments/{id}/migrations/{migrationId}", summary: "Read a migration's progress", roles: "admin, viewer", ok: [200, "Migration"], errors: [404] },
  { method: "post", path: "/v1/deployments/{id}/migrations/{migrationId}/cancel", summary: "Cancel a migration before its switch: the new instance is removed, the old one kept serving (409 once switched or ended)", roles: "admin", ok: [200, "Migration"], errors: [404, 409, 412], headers: ["If-Match"] },
  { method: "get", path: "/v1/deployments/{id}/instances/{instanceId}/events", summary: "The instance's event timeline, newest first (?limit=, ≤ EVENTS_PER_INSTANCE): probe results on changes, ejections and re-admissions with reasons, threshold crossings", roles: "admin, viewer", ok: [200, "EventList"], errors: [400, 404] },
  { method: "get", path: "/v1/deployments/{id}/instances/{instanceId}/history", summary: "The instance's statistics per telemetry bucket, oldest first (?seconds=, ≤ 600, default 300): requests, errors, error rate, P95, probes — what the dashboard charts", roles: "admin, viewer", ok: [200, "InstanceHistory"], errors: [400, 404] },
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
  { method: "post", path: "/v1/telemetry", summary: "A telemetry batch from the plugin (contract 3); a repeated (source, seq) is ignored", roles: "plugin, admin", body: "TelemetryBatch", ok: [200, "TelemetryAck"], errors: [400, 413, 415] },
  { method: "get", path: "/metrics", summary: "Prometheus metrics (text format)", roles: "peers in METRICS_ALLOW_FROM without a token; else viewer, admin", ok: [200, null], errors: [] },
  { method: "get", path: "/v1/routing-table", summary: "The routing table (contract 1). ETag = version; If-None-Match → 304; ?wait=N long-polls", roles: "plugin, admin, viewer", ok: [200, "RoutingTable"], errors: [304, 503] },
];

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
    const responses: Record<string, unknown> = {
      [op.ok[0]]: op.ok[1] ? { description: "OK", content: { [op.contentType ?? "application/json"]: { schema: ref(op.ok[1]) } } } : { description: "Done" },
      "401": { description: "No valid bearer token", content: { "application/json": { schema: ref("Error") } } },
      "403": { description: "Role not allowed", content: { "application/json": { schema: ref("Error") } } },
    };
    for (const s of op.errors) responses[s] = s === 304 ? { description: "Not modified" } : { description: "Error", content: { "application/json": { schema: ref("Error") } } };
    if (op.method !== "get" || op.path !== "/v1/routing-table") responses["503"] = { description: "State store unavailable", content: { "application/json": { schema: ref("Error") } } };
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
