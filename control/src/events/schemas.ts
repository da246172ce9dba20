/**
 * The live change stream (`GET /v1/events`, server-sent events): small notifications, never state.
 * A client re-reads what an event names (the deployment, the instance's timeline) from the ordinary API.
 * zod: validates what arrives over Redis pub/sub, types, and the OpenAPI document.
 */
import { z } from "zod";
import { Id } from "../../contracts/routing-table.js";
import { InstanceLifecycle, MigrationPhase } from "../deployments/schemas.js";
import { EventType } from "../health/schemas.js";

const at = z.string().describe("When the change was committed (ISO 8601, the committing replica's clock)");

export const DeploymentCreated = z.object({ type: z.literal("deployment.created"), at, deployment: Id, revision: z.number().int() });
export const DeploymentUpdated = z
  .object({ type: z.literal("deployment.updated"), at, deployment: Id, revision: z.number().int() })
  .describe("Any change of the stored deployment document (settings, instances, migrations): re-read it");
export const DeploymentDeleted = z.object({ type: z.literal("deployment.deleted"), at, deployment: Id });
export const InstanceStateChanged = z
  .object({
    type: z.literal("instance.state"),
    at,
    deployment: Id,
    instance: Id,
    from: InstanceLifecycle.nullable().describe("null: the instance was added"),
    to: InstanceLifecycle.nullable().describe("null: the instance was removed"),
  })
  .describe("An instance was added, removed, or changed state (pending → active/unreachable, active ⇄ ejected, draining)");
export const InstanceChecked = z
  .object({
    type: z.literal("instance.checked"),
    at,
    deployment: Id,
    instance: Id,
    ok: z.boolean(),
    error_code: z.string().nullable(),
    engine: z.string().nullable(),
    latency_ms: z.number().nullable(),
  })
  .describe("A connectivity test finished (its full result is the instance's last_check)");
export const InstanceTimeline = z
  .object({ type: z.literal("instance.event"), at, deployment: Id, instance: Id, event: EventType, reason: z.string(), state: z.string().nullable() })
  .describe("An entry was added to the instance's event timeline (GET …/instances/{iid}/events)");
export const MigrationProgress = z
  .object({
    type: z.literal("migration"),
    at,
    deployment: Id,
    migration: Id,
    phase: MigrationPhase,
    from_instance: Id,
    to_instance: Id,
    consecutive_successes: z.number().int(),
    required_successes: z.number().int(),
  })
  .describe("A migration started, moved to another phase, or counted a health check");
export const TableVersion = z.object({ type: z.literal("table"), at, version: z.number().int() }).describe("A new routing-table version was published");
export const TableHeld = z
  .object({
    type: z.literal("table.held"),
    at,
    version: z.number().int().describe("The table version published without them"),
    held: z
      .array(
        z.object({
          deployment: Id,
          reasons: z.array(z.string()),
          serving: z.enum(["last_good", "none"]).describe("last_good: plugins keep routing by its last published entry; none: it is not in the table"),
        }),
      )
      .describe("Empty: every deployment publishes again"),
  })
  .describe("The set of deployments the routing table cannot carry as stored changed (each replica sends its own)");
/** Bounds of what an Envoy supplies in an `xds.nack` event (the full message, up to 4,096 characters, is in GET /v1/dataplanes). */
export const NACK_EVENT_LIMITS = { node: 1024, cluster: 1024, typeUrl: 256, version: 64, message: 1024 } as const;

export const XdsNack = z
  .object({
    type: z.literal("xds.nack"),
    at: z.string().describe("When the NACK was received (ISO 8601, the receiving replica's clock)"),
    replica: z.string().describe("The control replica the Envoy streams from or polls: each replica reports the Envoys connected to it"),
    node: z.string().max(NACK_EVENT_LIMITS.node).describe("Envoy's node.id (as the Envoy sent it: untrusted text)"),
    cluster: z.string().max(NACK_EVENT_LIMITS.cluster).describe("Envoy's node.cluster"),
    transport: z.enum(["ads", "rest"]),
    type_url: z.string().max(NACK_EVENT_LIMITS.typeUrl),
    resource: z.enum(["clusters", "endpoints", "other"]).describe("clusters (CDS), endpoints (EDS)"),
    version: z.string().max(NACK_EVENT_LIMITS.version).nullable().describe("The version rejected (null when not known: REST)"),
    accepted_version: z.string().max(NACK_EVENT_LIMITS.version).describe("The version the Envoy keeps (\"\": nothing accepted yet)"),
    message: z.string().max(NACK_EVENT_LIMITS.message).describe("Envoy's error_detail.message, cut to 1,024 characters (GET /v1/dataplanes has up to 4,096)"),
    message_truncated: z.boolean(),
    code: z.number().int().describe("error_detail.code (a gRPC status code)"),
  })
  .describe("An Envoy connected to this replica rejected an xDS response (NACK: Envoy keeps its previous configuration). At most 20 per second per replica; beyond, only `dataplanes` tells");
export const DataplanesChanged = z
  .object({ type: z.literal("dataplanes"), at, replica: z.string().describe("The replica whose xDS nodes changed") })
  .describe(
    "Something GET /v1/dataplanes shows changed on this replica (an Envoy connected or disconnected, ACKed or NACKed): re-read it. Coalesced: at most one per second per replica; never replayed (re-read on every (re)connect)",
  );
export const StatsTick = z
  .object({ type: z.literal("stats"), at, bucket_ms: z.number().int() })
  .describe("Sent once per telemetry bucket: window statistics (P95, error rate, last probe) may have changed; never replayed");
export const Resync = z
  .object({ type: z.literal("resync"), at, reason: z.enum(["unknown_last_event_id", "replay_gap"]) })
  .describe("Events may have been missed (reconnect to another replica, or too long away): re-read everything");

export const StreamEvent = z.discriminatedUnion("type", [
  DeploymentCreated,
  DeploymentUpdated,
  DeploymentDeleted,
  InstanceStateChanged,
  InstanceChecked,
  InstanceTimeline,
  MigrationProgress,
  TableVersion,
  TableHeld,
  XdsNack,
  DataplanesChanged,
  StatsTick,
  Resync,
]);

/** What one committed change publishes on Redis (the `changes` channel): one or more events. */
export const ChangeMessage = z.array(StreamEvent).min(1).max(4_096);

export const WhoAmI = z.object({ role: z.enum(["admin", "viewer", "plugin"]).describe("The role of the bearer token sent") });

export type StreamEvent = z.infer<typeof StreamEvent>;
export type EventKind = StreamEvent["type"];
