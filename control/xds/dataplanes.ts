/**
 * What each Envoy has, for people and monitoring: `GET /v1/dataplanes` (admin, viewer) lists the xDS
 * nodes this replica serves (ADS streams and REST polls) with their ACK/NACK state per type, and
 * `registerXdsNodeMetrics` adds the same as Prometheus series to a registry.
 *
 * Per replica: a node shows on the replica(s) it streams from or polls (`replica` in the answer).
 */
import { Router, type RequestHandler } from "express";
import { Counter, Gauge, type Registry } from "prom-client";
import { z } from "zod";
import type { XdsNodes } from "./nodes.js";

const at = z.string().describe("ISO 8601, this replica's clock");

export const DataplaneTypeStatus = z.object({
  type_url: z.string(),
  resource: z.enum(["clusters", "endpoints", "other"]),
  subscribed: z
    .object({ wildcard: z.boolean(), names: z.number().int() })
    .nullable()
    .describe("What the node subscribed to: every resource (CDS) or `names` resource names (EDS); null when not known (REST CDS)"),
  last_sent: z
    .object({ version: z.string(), nonce: z.string().nullable().describe("null over REST (no nonce)"), at, resources: z.number().int() })
    .nullable()
    .describe("The last response sent"),
  acked: z.object({ version: z.string(), at }).nullable().describe("The last version the node ACKed (REST: the version it polls with)"),
  nacked: z
    .object({
      version: z.string().nullable().describe("The version rejected (null when not known: REST)"),
      accepted_version: z.string().describe("The version the node keeps"),
      message: z.string().describe("Envoy's error_detail.message"),
      code: z.number().int().describe("error_detail.code (a gRPC status code)"),
      at,
    })
    .nullable()
    .describe("The last NACK, kept after later ACKs"),
  state: z.enum(["pending", "acked", "nacked"]).nullable().describe("The last response's fate: sent and unanswered, ACKed, NACKed"),
  acks_total: z.number().int(),
  nacks_total: z.number().int(),
});

export const Dataplane = z.object({
  id: z.string().describe("Envoy's node.id"),
  cluster: z.string().describe("Envoy's node.cluster"),
  user_agent: z.string().nullable().describe("node.user_agent_name and version, e.g. `envoy 1.35.0`"),
  transport: z.enum(["ads", "rest"]),
  connected: z.boolean().describe("ADS: a stream is open; REST: polled within the last 30 s"),
  streams: z.number().int().describe("Open ADS streams of this node id on this replica"),
  connected_since: at.nullable(),
  last_seen: at,
  disconnected_at: at.nullable().describe("Disconnected nodes are listed for 15 minutes"),
  acked_version: z
    .number()
    .int()
    .nullable()
    .describe("The snapshot (routing-table) version this node has completely: clusters ACKed at ≥ it and endpoints ACKed (≥ it) for every one of those clusters"),
  types: z.array(DataplaneTypeStatus),
});

export const DataplaneList = z.object({
  replica: z.string().describe("The control replica answering: each replica knows the nodes connected to it"),
  dataplanes: z.array(Dataplane),
});

export type Dataplane = z.infer<typeof Dataplane>;
export type DataplaneList = z.infer<typeof DataplaneList>;

/** `authorize`: the control service's requireRole(auth, "admin", "viewer"). */
export function dataplaneRoutes(deps: { nodes: XdsNodes; authorize: RequestHandler; replica: string }): Router {
  const r = Router();
  r.get("/v1/dataplanes", deps.authorize, (_req, res) => {
    const body: DataplaneList = { replica: deps.replica, dataplanes: deps.nodes.list() };
    res.setHeader("cache-control", "no-store");
    res.json(body);
  });
  return r;
}

const TYPE_LABEL: Record<string, string> = { clusters: "cds", endpoints: "eds" };

/**
 * Prometheus series of the xDS nodes, read at scrape time from `nodes`:
 *   gateway_xds_connected_nodes{transport}              nodes connected (ADS streams / REST polls)
 *   gateway_xds_node_acked_version{node,type}           the last version ACKed (cds / eds)
 *   gateway_xds_node_complete_version{node}             acked_version: what the node has completely
 *   gateway_xds_node_nacked{node,type}                  1 while the last response of that type is NACKed
 *   gateway_xds_nacks_total{node,type}                  NACKs since this replica first saw the node
 * (the registry adds the replica label).
 */
export function registerXdsNodeMetrics(registry: Registry, nodes: XdsNodes): void {
  const typeOf = (resource: string, typeUrl: string): string => TYPE_LABEL[resource] ?? typeUrl.slice(typeUrl.lastIndexOf(".") + 1);
  // Every series is read from `nodes` at scrape time, each metric by its own collector (prom-client
  // runs them concurrently): series of forgotten nodes disappear.
  const perType = (f: (labels: { node: string; type: string }, t: ReturnType<XdsNodes["list"]>[number]["types"][number]) => void) => () => {
    for (const n of nodes.list()) for (const t of n.types) f({ node: n.id, type: typeOf(t.resource, t.type_url) }, t);
  };
  new Gauge({
    name: "gateway_xds_connected_nodes",
    help: "xDS nodes connected to this replica: ADS streams open, or REST polls in the last 30 s",
    labelNames: ["transport"],
    registers: [registry],
    collect() {
      const c = nodes.counts();
      this.set({ transport: "ads" }, c.ads);
      this.set({ transport: "rest" }, c.rest);
    },
  });
  new Gauge({
    name: "gateway_xds_node_acked_version",
    help: "Last xDS version the node ACKed, per type (cds, eds)",
    labelNames: ["node", "type"],
    registers: [registry],
    collect() {
      this.reset();
      perType((labels, t) => {
        const v = t.acked ? Number(t.acked.version) : NaN;
        if (Number.isFinite(v)) this.set(labels, v);
      })();
    },
  });
  new Gauge({
    name: "gateway_xds_node_complete_version",
    help: "Snapshot version the node has completely (clusters and their endpoints ACKed)",
    labelNames: ["node"],
    registers: [registry],
    collect() {
      this.reset();
      for (const n of nodes.list()) if (n.acked_version !== null) this.set({ node: n.id }, n.acked_version);
    },
  });
  new Gauge({
    name: "gateway_xds_node_nacked",
    help: "1 while the last xDS response of this type was NACKed by the node",
    labelNames: ["node", "type"],
    registers: [registry],
    collect() {
      this.reset();
      perType((labels, t) => this.set(labels, t.state === "nacked" ? 1 : 0))();
    },
  });
  new Counter({
    name: "gateway_xds_nacks_total",
    help: "xDS responses the node NACKed, per type (since this replica first saw the node)",
    labelNames: ["node", "type"],
    registers: [registry],
    collect() {
      this.reset();
      perType((labels, t) => this.inc(labels, t.nacks_total))();
    },
  });
}
