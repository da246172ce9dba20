/**
 * Issue 17 — the routing table a plugin gets is ordered after its own Envoy's xDS ACK.
 *
 * The plugin names its Envoy (`x-gateway-node: <node.id>`) when it polls. If this replica knows that
 * node (an ADS stream, or REST polls in the last 30 s: control/xds/nodes.ts), the plugin gets the current
 * table *filtered to what that Envoy has*: a deployment only if its cluster is in the node's ACKed CDS
 * (with its endpoints ACKed), an instance only if its address is in the node's ACKed EDS for that
 * cluster. What the node has is read from the xDS snapshot at the version it has completely
 * (`nodes.ackedVersion`): this module keeps a compact index (cluster → addresses) of the last snapshots
 * it saw published, and of any older one a node still sits at. Removals need no filter — the current
 * table already lacks them — so deletes, ejections and drains reach every plugin at once, ACK or not.
 *
 * Versions. Every committed write moves the stored version to the next **even** number (the Lua scripts
 * in redis/cas.ts and version-floor.ts); a complete table keeps its (even) version V, and a filtered view
 * of V is served as V − 1, a number no complete table ever has. A plugin adopts only a higher version:
 * V − 1 < V, so when its Envoy's ACK completes V (or the bound below runs out) the long-poll is woken and
 * the plugin moves on to V; a newer table V + 2 (or its view V + 1) is above both. A replica that does not
 * know the node serves V, never V − 1, so a plugin polling several replicas still only sees its versions
 * rise. An odd current version (a store from before the even steps, or the first empty table "1") is
 * served whole: there is no free number below it.
 *
 * Which answer (`view`):
 * - ordering off (`waitMs` 0), no node id, a node this replica does not know or that is not connected
 *   (its stream ended: it is being fed by another replica) → the complete table (the documented
 *   fallback: with that Envoy, a new deployment may answer 503 `NC` until it has the cluster);
 * - the filter removes nothing → the complete table V (the node has everything V routes to);
 * - otherwise the view V − 1. While the node is *behind* (its complete version below V) and has not NACKed
 *   what it lacks, the view is served for at most `waitMs` (since this replica first found it behind),
 *   then the complete table: an ACK that never comes (a stuck Envoy, a REST Envoy polling other replicas)
 *   must not hide a deployment forever. A NACK is an answer — the node keeps the view, unbounded — and so
 *   is a node that has the newest snapshot this replica serves while it lacks a cluster the table has (a
 *   deployment xDS held back, a snapshot xDS refused): waiting would not change anything.
 * - a node known but with nothing complete yet (just connected) → `none`: the poll waits for its ACK
 *   (within the same bound); an empty table would make the plugin pass requests for our models through.
 *
 * The view is a function of (table V, the node's complete version): every replica that knows the node at
 * that version computes the same document. Pure parts (`holdingsOf`, `filterTable`) are exported for tests.
 */
import { Gauge, type Registry } from "prom-client";
import { tableEtag, type RoutingTable, type TableDeployment } from "../../contracts/routing-table.js";
import { TYPE_URL, type XdsSnapshot } from "../../xds/build.js";
import type { NodeStatus, XdsNodes } from "../../xds/nodes.js";
import type { Logger } from "../log.js";
import { withoutSecrets } from "./builder.js";
import type { CurrentTable } from "./cache.js";

/** The request header carrying the plugin's Envoy node id (plugin/control/poller.ts sends it). */
export const NODE_HEADER = "x-gateway-node";
/** Node ids longer than this are not looked up (nodes.ts keeps at most 1024 characters of an id). */
export const MAX_NODE_ID = 1024;

/** What an Envoy has: cluster name → the addresses of its ACKed endpoints, spelled as in the table. */
export type Holdings = ReadonlyMap<string, ReadonlySet<string>>;

/** A table document as served: version, ETag, the plugin's JSON (with secrets) and the public one. */
export interface ServedTable {
  version: number;
  etag: string;
  json: string;
  readonly publicJson: string;
}

export type ViewReason =
  | "off"
  | "no_node"
  | "unknown_node"
  | "disconnected"
  | "odd_version"
  | "complete"
  | "unknown_version"
  | "bound_elapsed"
  | "filtered"
  | "filtered_nacked"
  | "filtered_diverged"
  | "none";

export type NodeView =
  | {
      kind: "table";
      table: ServedTable;
      /** True for a view V − 1. */
      filtered: boolean;
      reason: ViewReason;
      /** In this many ms the answer may become the complete table (the bound); null: not before an event. */
      recheckInMs: number | null;
    }
  | { kind: "none"; reason: "none"; recheckInMs: number | null };

export interface TableViews {
  /** The table a poll naming `node` gets now from `cur` (complete when ordering does not apply). */
  view(cur: CurrentTable, node: string | null): NodeView;
  /** Resolves on an ACK or NACK of `node` (what may change its view), after `ms`, or on abort. */
  changed(node: string, ms: number, signal?: AbortSignal): Promise<void>;
  /** Nodes this replica found behind their ACK and that have not caught up: `gateway_table_nodes_behind`. */
  behind(): number;
  stop(): void;
}

/** Envoy's `ip:port` back from an endpoint's socket address (IPv6 in brackets, as contract 1 spells it). */
const addressOf = (a: { address: string; port_value: number }): string => (a.address.includes(":") ? `[${a.address}]:${a.port_value}` : `${a.address}:${a.port_value}`);

/**
 * The clusters of a snapshot with the addresses of their endpoints. A cluster without a load assignment
 * is left out (Envoy would have it warming, unusable). `previous`: sets equal to its own are reused, so
 * a history of snapshots costs little more than one.
 */
export function holdingsOf(s: Pick<XdsSnapshot, "clusters" | "endpointsByName">, previous?: Holdings): Holdings {
  const out = new Map<string, ReadonlySet<string>>();
  for (const c of s.clusters) {
    const la = s.endpointsByName.get(c.name);
    if (!la) continue;
    const addrs = new Set<string>();
    for (const g of la.endpoints) for (const e of g.lb_endpoints) addrs.add(addressOf(e.endpoint.address.socket_address));
    const prev = previous?.get(c.name);
    out.set(c.name, prev && prev.size === addrs.size && [...addrs].every((a) => prev.has(a)) ? prev : addrs);
  }
  return out;
}

export interface Filtered {
  /** `t` itself when nothing was left out; else a copy without what the node lacks (same version). */
  table: RoutingTable;
  /** Deployment ids left out (their cluster is not held). */
  deployments: string[];
  /** `deployment/instance` ids left out (their address is not in the held cluster). */
  instances: string[];
}

/**
 * `t` restricted to what an Envoy holding `h` can route to (pure): deployments whose cluster it has,
 * their instances whose address it has (a deployment left with none stays, with none: the plugin answers
 * its 503 rather than passing the request through), model names of the deployments kept. Everything
 * else — states, weights, keys — is the table's own, so ejections and drains apply at once.
 */
export function filterTable(t: RoutingTable, h: Holdings): Filtered {
  const deployments: string[] = [];
  const instances: string[] = [];
  const kept: TableDeployment[] = [];
  for (const d of t.deployments) {
    const addrs = h.get(d.cluster);
    if (!addrs) {
      deployments.push(d.id);
      continue;
    }
    const inst = d.instances.filter((i) => addrs.has(i.address));
    if (inst.length !== d.instances.length) {
      for (const i of d.instances) if (!addrs.has(i.address)) instances.push(`${d.id}/${i.id}`);
      kept.push({ ...d, instances: inst });
    } else kept.push(d);
  }
  if (deployments.length === 0 && instances.length === 0) return { table: t, deployments, instances };
  const gone = new Set(deployments);
  const models: Record<string, string> = {};
  for (const name of Object.keys(t.models)) {
    const target = Object.getOwnPropertyDescriptor(t.models, name)!.value as string;
    // defineProperty: a "__proto__" model name stays an own key, as in the table (contract 1's ModelMap).
    if (!gone.has(target)) Object.defineProperty(models, name, { value: target, enumerable: true, writable: true, configurable: true });
  }
  return { table: { ...t, models, deployments: kept }, deployments, instances };
}

/** The version a filtered view of the complete table `v` is served at. */
export const viewVersion = (v: number): number => v - 1;

export interface TableViewsOptions {
  nodes: Pick<XdsNodes, "get" | "ackedVersion" | "onAck" | "onNack">;
  /** The xDS snapshot being served, and a subscription to newly served ones (control/xds/publisher.ts). */
  snapshot: () => XdsSnapshot | undefined;
  subscribe: (listener: (s: XdsSnapshot) => void) => () => void;
  /** How long a node that is behind (and has not NACKed) keeps getting a view; 0 = ordering off. */
  waitMs: number;
  /** Snapshots kept besides those a node sits at (default 32). */
  history?: number;
  now?: () => number;
  log?: Pick<Logger, "info" | "warn">;
}

interface HistoryEntry {
  version: number;
  holdings: Holdings;
}

const MAX_TRACKED = 10_000;

export function createTableViews(o: TableViewsOptions): TableViews {
  const now = o.now ?? Date.now;
  const keep = Math.max(2, o.history ?? 32);
  /** Ascending by version. */
  const history: HistoryEntry[] = [];
  /** node → the history version its last view was computed from (kept from eviction while it is). */
  const pinned = new Map<string, number>();
  /** node → since when this replica found it behind (the bound runs from there). */
  const behind = new Map<string, number>();
  /** Views computed for the current table version, by holdings version. */
  let viewsOf: { table: CurrentTable; full: RoutingTable | null; byHoldings: Map<number, ServedTable | null> } | null = null;
  const waiters = new Map<string, Set<() => void>>();
  const logged = new Set<string>();
  const once = (key: string, f: () => void) => {
    if (logged.has(key)) return;
    if (logged.size > 10_000) logged.clear();
    logged.add(key);
    f();
  };

  function record(s: XdsSnapshot): void {
    const last = history.at(-1);
    if (last && s.version <= last.version) return;
    history.push({ version: s.version, holdings: holdingsOf(s, last?.holdings) });
    if (history.length <= keep) return;
    // Evict the oldest that no node sits at (a NACKing node may sit at an old version for long); the
    // newest `keep` always stay.
    const sitting = new Set<number>();
    for (const [node, v] of pinned) {
      if (o.nodes.ackedVersion(node) === undefined) pinned.delete(node);
      else sitting.add(v);
    }
    for (let i = 0; i < history.length - keep; ) {
      if (sitting.has(history[i]!.version)) i++;
      else history.splice(i, 1);
    }
  }
  const first = o.snapshot();
  if (first) record(first);
  const unsubscribe = o.subscribe(record);

  /** The newest history entry at or below `v` (REST nodes may report a version this replica skipped). */
  function holdingsAt(v: number): HistoryEntry | undefined {
    for (let i = history.length - 1; i >= 0; i--) if (history[i]!.version <= v) return history[i];
    return undefined;
  }

  const wake = (node: string) => {
    const ws = waiters.get(node);
    if (ws) for (const w of [...ws]) w();
  };
  const offAck = o.nodes.onAck((e) => wake(e.node));
  const offNack = o.nodes.onNack((e) => wake(e.node));

  const complete = (cur: CurrentTable, reason: ViewReason, node: string | null): NodeView => {
    // Past the bound the node stays "behind" (its next versions are served whole too, until it catches up).
    if (node !== null && reason !== "bound_elapsed") behind.delete(node);
    return { kind: "table", table: cur, filtered: false, reason, recheckInMs: null };
  };

  /** Has the node refused (NACKed) a version above `c` — i.e. something it lacks? */
  const nacked = (st: NodeStatus, c: number | null): boolean =>
    st.types.some((t) => (t.type_url === TYPE_URL.cluster || t.type_url === TYPE_URL.clusterLoadAssignment) && t.nacked !== null && (t.nacked.version === null ? t.state === "nacked" : Number(t.nacked.version) > (c ?? 0)));

  /** The view of `cur` for a node holding `h`; null when the filter leaves nothing out (serve `cur`). */
  function served(cur: CurrentTable, h: HistoryEntry): ServedTable | null {
    if (!viewsOf || viewsOf.table !== cur) viewsOf = { table: cur, full: null, byHoldings: new Map() };
    const memo = viewsOf.byHoldings.get(h.version);
    if (memo !== undefined) return memo;
    if (viewsOf.byHoldings.size >= 16) viewsOf.byHoldings.clear();
    // Clusters and addresses are the same with or without secrets: the public table (already parsed)
    // tells whether anything is left out; the plugin's document is parsed only when something is.
    if (filterTable(cur.table, h.holdings).table === cur.table) {
      viewsOf.byHoldings.set(h.version, null);
      return null;
    }
    const full = (viewsOf.full ??= JSON.parse(cur.json) as RoutingTable);
    const version = viewVersion(cur.version);
    const table: RoutingTable = { ...filterTable(full, h.holdings).table, version };
    let publicJson: string | null = null;
    const view: ServedTable = {
      version,
      etag: tableEtag(version),
      json: JSON.stringify(table),
      get publicJson() {
        return (publicJson ??= JSON.stringify(withoutSecrets(table)));
      },
    };
    viewsOf.byHoldings.set(h.version, view);
    return view;
  }

  /**
   * The node is behind (lacks part of V): is its view still due? The bound starts when this replica first
   * finds it behind; a node that NACKed a version above the one it has keeps its view without bound.
   */
  function stillWaiting(node: string, st: NodeStatus, c: number | null, v: number): { wait: boolean; exempt: boolean; inMs: number | null } {
    const t = now();
    let since = behind.get(node);
    if (since === undefined) {
      if (behind.size >= MAX_TRACKED) behind.delete(behind.keys().next().value!);
      behind.set(node, (since = t));
    }
    if (nacked(st, c)) return { wait: true, exempt: true, inMs: null };
    const left = since + o.waitMs - t;
    if (left > 0) return { wait: true, exempt: false, inMs: left };
    const from = since;
    once(`bound ${node} ${from}`, () =>
      o.log?.warn("routing table: the node has not acknowledged the xDS version within the bound; its plugin gets the complete table", { node, complete_version: c, table_version: v, waited_ms: t - from }),
    );
    return { wait: false, exempt: false, inMs: null };
  }

  return {
    view(cur, node) {
      if (o.waitMs <= 0) return complete(cur, "off", null);
      if (node === null || node === "" || node.length > MAX_NODE_ID) return complete(cur, "no_node", null);
      const st = o.nodes.get(node);
      if (!st) return complete(cur, "unknown_node", node);
      if (!st.connected) return complete(cur, "disconnected", node);
      const v = cur.version;
      if (v % 2 === 1) {
        if (v > 1) once(`odd ${v}`, () => o.log?.warn("routing table: odd version, served whole to every node (ordering after xDS needs the stored version to move by even steps)", { version: v }));
        return complete(cur, "odd_version", node);
      }
      const c = st.acked_version;
      if (c === null) {
        // Nothing complete yet (a stream just opened): wait for its first ACK, within the bound.
        const w = stillWaiting(node, st, c, v);
        return w.wait ? { kind: "none", reason: "none", recheckInMs: w.inMs } : complete(cur, "bound_elapsed", node);
      }
      const h = holdingsAt(c);
      if (!h) {
        once(`unknown-version ${node} ${c}`, () => o.log?.info("routing table: the node's xDS version is older than any snapshot this replica kept; its plugin gets the complete table", { node, complete_version: c }));
        return complete(cur, "unknown_version", node);
      }
      if (pinned.size >= MAX_TRACKED && !pinned.has(node)) pinned.delete(pinned.keys().next().value!);
      pinned.set(node, h.version);
      const view = served(cur, h);
      if (view === null) return complete(cur, "complete", node);
      if (c >= v || c >= history.at(-1)!.version) {
        // It has the newest snapshot this replica serves, which lacks something the table has (a deployment
        // xDS held back, or a whole snapshot xDS refused): no ACK will change that.
        behind.delete(node);
        return { kind: "table", table: view, filtered: true, reason: "filtered_diverged", recheckInMs: null };
      }
      const w = stillWaiting(node, st, c, v);
      if (!w.wait) return complete(cur, "bound_elapsed", node);
      return { kind: "table", table: view, filtered: true, reason: w.exempt ? "filtered_nacked" : "filtered", recheckInMs: w.inMs };
    },
    changed(node, ms, signal) {
      return new Promise<void>((resolve) => {
        let set = waiters.get(node);
        if (!set) waiters.set(node, (set = new Set()));
        const s = set;
        const done = () => {
          clearTimeout(timer);
          s.delete(done);
          if (s.size === 0 && waiters.get(node) === s) waiters.delete(node);
          signal?.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, Math.max(0, ms));
        s.add(done);
        if (signal?.aborted) return done();
        signal?.addEventListener("abort", done, { once: true });
      });
    },
    behind: () => behind.size,
    stop() {
      unsubscribe();
      offAck();
      offNack();
      for (const set of waiters.values()) for (const w of [...set]) w();
    },
  };
}

/** `gateway_table_nodes_behind`: nodes whose plugins this replica found behind their Envoy's xDS ACK. */
export function registerTableViewMetrics(registry: Registry, views: Pick<TableViews, "behind">): void {
  new Gauge({
    name: "gateway_table_nodes_behind",
    help: "Nodes whose Envoy lacks part of the routing table (not ACKed yet, or NACKed) as found by their plugin's polls on this replica: their plugin gets a filtered table, waits for a first ACK or, past TABLE_XDS_WAIT_SECONDS without a NACK, the complete table",
    registers: [registry],
    collect() {
      this.set(views.behind());
    },
  });
}
