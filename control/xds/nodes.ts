/**
 * What each Envoy (xDS node) has: per node id, per type URL, the last version sent, the last version
 * it ACKed, the last one it NACKed with Envoy's `error_detail`, when it connected and was last seen.
 * Fed by both transports — the ADS server (ads.ts: streams, nonces, real ACK/NACK) and the REST
 * polls (discovery.ts: no nonce, so a poll's `version_info` is simply what the node has) — and read
 * by the API (GET /v1/dataplanes), the metrics and, later, the routing-table ordering
 * (`ackedVersion(nodeId)`: a plugin is told about a cluster only once its own Envoy has it).
 *
 * Pure and in memory, per control replica: a node is known to the replica(s) it talks to. Times come
 * from an injectable clock. Disconnected nodes are remembered for `forgetAfterMs` (default 15 min),
 * at most `maxNodes` nodes (the oldest disconnected ones go first).
 */
import { TYPE_URL } from "./build.js";

export type XdsTransport = "ads" | "rest";

export interface NodeIdentity {
  id: string;
  cluster: string;
  /** Node.user_agent_name (+ version), e.g. "envoy 1.35.0". */
  user_agent?: string | null;
}

/** The state of the last response of a type: sent and not answered yet, ACKed, NACKed. */
export type ResponseState = "pending" | "acked" | "nacked";

export interface TypeStatus {
  type_url: string;
  resource: "clusters" | "endpoints" | "other";
  /** What the node subscribed to: `wildcard` (every resource) or `names` resource names. Null: unknown (REST CDS). */
  subscribed: { wildcard: boolean; names: number } | null;
  last_sent: { version: string; nonce: string | null; at: string; resources: number } | null;
  acked: { version: string; at: string } | null;
  nacked: { version: string | null; accepted_version: string; message: string; code: number; at: string } | null;
  state: ResponseState | null;
  acks_total: number;
  nacks_total: number;
}

export interface NodeStatus {
  id: string;
  cluster: string;
  user_agent: string | null;
  transport: XdsTransport;
  connected: boolean;
  /** Open ADS streams of this node id on this replica (0 for REST). */
  streams: number;
  connected_since: string | null;
  last_seen: string;
  disconnected_at: string | null;
  /**
   * The snapshot version this node has completely: CDS ACKed at ≥ it and an EDS ACK (≥ it) that
   * covered every cluster of that CDS ACK. Null until known.
   */
  acked_version: number | null;
  types: TypeStatus[];
}

export interface NackEvent {
  node: string;
  cluster: string;
  transport: XdsTransport;
  type_url: string;
  /** The version rejected (null: REST, where the rejected version is not known for sure). */
  version: string | null;
  /** The version the node keeps. */
  accepted_version: string;
  message: string;
  code: number;
  at: string;
}

export interface AckEvent {
  node: string;
  transport: XdsTransport;
  type_url: string;
  version: string;
  /** ackedVersion(node) after this ACK. */
  acked_version: number | null;
  at: string;
}

/** Anything a data-plane view shows changed for `node` (a stream opened or ended, an ACK, a NACK, a REST node appeared). */
export interface NodeChange {
  node: string;
  kind: "connected" | "disconnected" | "acked" | "nacked";
  at: string;
}

export interface XdsNodes {
  /** An ADS stream of `node` opened. */
  connect(node: NodeIdentity): void;
  /** An ADS stream of `nodeId` ended. */
  disconnect(nodeId: string): void;
  subscribed(nodeId: string, typeUrl: string, names: readonly string[] | "*"): void;
  sent(nodeId: string, typeUrl: string, r: { version: string; nonce: string | null; names: readonly string[] }): void;
  ack(nodeId: string, typeUrl: string, r: { version: string; names: readonly string[] | null }): void;
  nack(nodeId: string, typeUrl: string, r: { version: string | null; accepted_version: string; message: string; code: number }): void;
  /** A REST poll: `versionInfo` is what the node has; `served` what it was answered with (200), null for 304 / errors. */
  restPoll(p: {
    node: NodeIdentity;
    typeUrl: string;
    versionInfo: string;
    resourceNames: readonly string[];
    errorDetail?: { code?: number; message?: string } | undefined;
    served: { version: string; names: readonly string[] } | null;
  }): void;
  list(): NodeStatus[];
  get(id: string): NodeStatus | undefined;
  /** See NodeStatus.acked_version; undefined when not known (never connected, or not complete yet). */
  ackedVersion(id: string): number | undefined;
  counts(): { ads: number; rest: number };
  onNack(cb: (e: NackEvent) => void): () => void;
  onAck(cb: (e: AckEvent) => void): () => void;
  /** Called after every change listed in NodeChange (after the onAck / onNack listeners); not for responses sent. */
  onChange(cb: (e: NodeChange) => void): () => void;
}

export interface XdsNodesOptions {
  now?: () => number;
  /** A disconnected node (REST: not seen for restActiveMs) is forgotten after this (default 15 min). */
  forgetAfterMs?: number;
  /** A REST node counts as connected while it polled within this (default 30 s; Envoy polls every 5–10 s). */
  restActiveMs?: number;
  maxNodes?: number;
  logger?: { warn(msg: string, fields?: Record<string, unknown>): void };
}

interface TypeState {
  subscribed: { wildcard: boolean; names: number } | null;
  sent: { version: string; nonce: string | null; at: number; names: readonly string[] } | null;
  acked: { version: string; at: number; names: readonly string[] | null } | null;
  nacked: { version: string | null; accepted_version: string; message: string; code: number; at: number } | null;
  state: ResponseState | null;
  acks: number;
  nacks: number;
  /** REST EDS: each cluster polls on its own, with its own version. */
  restNames?: Map<string, { version: string; at: number }>;
}

interface NodeRecord {
  id: string;
  cluster: string;
  userAgent: string | null;
  transport: XdsTransport;
  streams: number;
  connectedSince: number | null;
  lastSeen: number;
  disconnectedAt: number | null;
  types: Map<string, TypeState>;
  /** The last consistent (CDS, EDS) pair: see NodeStatus.acked_version. */
  complete: number | null;
}

const MAX_MESSAGE = 4096;
const MAX_ID = 1024;

const resourceOf = (typeUrl: string): TypeStatus["resource"] =>
  typeUrl === TYPE_URL.cluster ? "clusters" : typeUrl === TYPE_URL.clusterLoadAssignment ? "endpoints" : "other";

const versionNumber = (v: string | undefined | null): number | null => {
  if (v === undefined || v === null || !/^\d{1,16}$/.test(v)) return null;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : null;
};

export function createXdsNodes(opts: XdsNodesOptions = {}): XdsNodes {
  const now = opts.now ?? Date.now;
  const forgetAfterMs = opts.forgetAfterMs ?? 15 * 60_000;
  const restActiveMs = opts.restActiveMs ?? 30_000;
  const maxNodes = opts.maxNodes ?? 10_000;
  const nodes = new Map<string, NodeRecord>();
  const nackListeners = new Set<(e: NackEvent) => void>();
  const ackListeners = new Set<(e: AckEvent) => void>();
  const changeListeners = new Set<(e: NodeChange) => void>();
  const iso = (t: number): string => new Date(t).toISOString();

  const isConnected = (r: NodeRecord, t: number): boolean => (r.streams > 0 ? true : r.transport === "rest" && r.disconnectedAt === null && t - r.lastSeen <= restActiveMs);
  /** When a node stopped being connected (REST: restActiveMs after its last poll). */
  const goneAt = (r: NodeRecord, t: number): number | null => {
    if (isConnected(r, t)) return null;
    if (r.streams === 0 && r.transport === "rest" && r.disconnectedAt === null) return r.lastSeen + restActiveMs;
    return r.disconnectedAt;
  };

  let lastPrune = 0;
  function prune(t: number, force = false): void {
    if (!force && t - lastPrune < 1000 && nodes.size <= maxNodes) return;
    lastPrune = t;
    for (const [id, r] of nodes) {
      const gone = goneAt(r, t);
      if (gone !== null && t - gone > forgetAfterMs) nodes.delete(id);
    }
    if (nodes.size <= maxNodes) return;
    // Over the cap: the longest-gone nodes first, then the longest-silent REST ones; ADS streams stay.
    const evictable = [...nodes.values()].filter((r) => r.streams === 0).sort((a, b) => (goneAt(a, t) ?? a.lastSeen) - (goneAt(b, t) ?? b.lastSeen));
    for (const r of evictable) {
      if (nodes.size <= maxNodes) break;
      nodes.delete(r.id);
    }
  }

  function record(node: NodeIdentity, transport: XdsTransport, t: number): NodeRecord {
    const id = node.id.slice(0, MAX_ID);
    let r = nodes.get(id);
    if (!r) {
      r = { id, cluster: node.cluster.slice(0, MAX_ID), userAgent: node.user_agent?.slice(0, 256) ?? null, transport, streams: 0, connectedSince: null, lastSeen: t, disconnectedAt: null, types: new Map(), complete: null };
      nodes.set(id, r);
      prune(t);
    }
    if (node.cluster !== "") r.cluster = node.cluster.slice(0, MAX_ID);
    if (node.user_agent) r.userAgent = node.user_agent.slice(0, 256);
    return r;
  }

  function typeState(r: NodeRecord, typeUrl: string): TypeState {
    let s = r.types.get(typeUrl);
    if (!s) {
      if (r.types.size >= 16) r.types.clear(); // a client cycling through made-up type URLs
      s = { subscribed: null, sent: null, acked: null, nacked: null, state: null, acks: 0, nacks: 0 };
      r.types.set(typeUrl, s);
    }
    return s;
  }

  /** REST EDS: every cluster polled recently, at the lowest version among them. */
  function restEdsAcked(s: TypeState, t: number): TypeState["acked"] {
    if (!s.restNames) return s.acked;
    let min: { version: string; n: number } | null = null;
    const names: string[] = [];
    let latest = 0;
    for (const [name, e] of s.restNames) {
      if (t - e.at > restActiveMs) {
        s.restNames.delete(name);
        continue;
      }
      const n = versionNumber(e.version);
      if (n === null) return null; // a cluster without any version yet: the node does not have it
      if (min === null || n < min.n) min = { version: e.version, n };
      names.push(name);
      latest = Math.max(latest, e.at);
    }
    return min === null ? null : { version: min.version, at: latest, names };
  }

  const ackedOf = (r: NodeRecord, typeUrl: string, t: number): TypeState["acked"] => {
    const s = r.types.get(typeUrl);
    if (!s) return null;
    return r.transport === "rest" && typeUrl === TYPE_URL.clusterLoadAssignment ? restEdsAcked(s, t) : s.acked;
  };

  function refreshComplete(r: NodeRecord, t: number): number | null {
    const cds = ackedOf(r, TYPE_URL.cluster, t);
    const cdsV = versionNumber(cds?.version);
    if (!cds || cdsV === null) return r.complete;
    if (cds.names !== null && cds.names.length === 0) return (r.complete = cdsV);
    const eds = ackedOf(r, TYPE_URL.clusterLoadAssignment, t);
    const edsV = versionNumber(eds?.version);
    if (!eds || edsV === null) return r.complete;
    if (cds.names !== null && eds.names !== null && !eds.names.includes("*")) {
      const have = new Set(eds.names);
      if (!cds.names.every((n) => have.has(n))) return r.complete;
    }
    return (r.complete = Math.min(cdsV, edsV));
  }

  function emit<E>(listeners: Set<(e: E) => void>, e: E): void {
    for (const cb of listeners) {
      try {
        cb(e);
      } catch (err) {
        opts.logger?.warn("xds node listener failed", { error: (err as Error)?.message ?? String(err) });
      }
    }
  }

  function doAck(r: NodeRecord, typeUrl: string, version: string, names: readonly string[] | null, t: number): void {
    const s = typeState(r, typeUrl);
    s.acked = { version, at: t, names };
    s.state = "acked";
    s.acks++;
    const acked_version = refreshComplete(r, t);
    emit(ackListeners, { node: r.id, transport: r.transport, type_url: typeUrl, version, acked_version, at: iso(t) });
    emit(changeListeners, { node: r.id, kind: "acked", at: iso(t) });
  }

  function doNack(r: NodeRecord, typeUrl: string, n: { version: string | null; accepted_version: string; message: string; code: number }, t: number): void {
    const s = typeState(r, typeUrl);
    const message = n.message.slice(0, MAX_MESSAGE);
    s.nacked = { version: n.version, accepted_version: n.accepted_version, message, code: n.code, at: t };
    s.state = "nacked";
    s.nacks++;
    emit(nackListeners, { node: r.id, cluster: r.cluster, transport: r.transport, type_url: typeUrl, version: n.version, accepted_version: n.accepted_version, message, code: n.code, at: iso(t) });
    emit(changeListeners, { node: r.id, kind: "nacked", at: iso(t) });
  }

  function status(r: NodeRecord, t: number): NodeStatus {
    const connected = isConnected(r, t);
    const types: TypeStatus[] = [...r.types.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([typeUrl, s]) => {
        const acked = r.transport === "rest" && typeUrl === TYPE_URL.clusterLoadAssignment ? restEdsAcked(s, t) : s.acked;
        return {
          type_url: typeUrl,
          resource: resourceOf(typeUrl),
          subscribed: s.subscribed,
          last_sent: s.sent ? { version: s.sent.version, nonce: s.sent.nonce, at: iso(s.sent.at), resources: s.sent.names.length } : null,
          acked: acked ? { version: acked.version, at: iso(acked.at) } : null,
          nacked: s.nacked ? { version: s.nacked.version, accepted_version: s.nacked.accepted_version, message: s.nacked.message, code: s.nacked.code, at: iso(s.nacked.at) } : null,
          state: s.state,
          acks_total: s.acks,
          nacks_total: s.nacks,
        };
      });
    const gone = goneAt(r, t);
    return {
      id: r.id,
      cluster: r.cluster,
      user_agent: r.userAgent,
      transport: r.transport,
      connected,
      streams: r.streams,
      connected_since: connected && r.connectedSince !== null ? iso(r.connectedSince) : null,
      last_seen: iso(r.lastSeen),
      disconnected_at: gone === null ? null : iso(gone),
      acked_version: refreshComplete(r, t),
      types,
    };
  }

  return {
    connect(node) {
      const t = now();
      const r = record(node, "ads", t);
      if (r.streams === 0) r.connectedSince = t;
      r.transport = "ads";
      r.streams++;
      r.lastSeen = t;
      r.disconnectedAt = null;
      emit(changeListeners, { node: r.id, kind: "connected", at: iso(t) });
    },
    disconnect(nodeId) {
      const r = nodes.get(nodeId.slice(0, MAX_ID));
      if (!r || r.streams === 0) return;
      const t = now();
      r.streams--;
      r.lastSeen = t;
      if (r.streams === 0) r.disconnectedAt = t;
      emit(changeListeners, { node: r.id, kind: "disconnected", at: iso(t) });
    },
    subscribed(nodeId, typeUrl, names) {
      const r = nodes.get(nodeId.slice(0, MAX_ID));
      if (!r) return;
      r.lastSeen = now();
      typeState(r, typeUrl).subscribed = names === "*" ? { wildcard: true, names: 0 } : { wildcard: false, names: names.length };
    },
    sent(nodeId, typeUrl, x) {
      const r = nodes.get(nodeId.slice(0, MAX_ID));
      if (!r) return;
      const s = typeState(r, typeUrl);
      s.sent = { version: x.version, nonce: x.nonce, at: now(), names: [...x.names] };
      s.state = "pending";
    },
    ack(nodeId, typeUrl, x) {
      const r = nodes.get(nodeId.slice(0, MAX_ID));
      if (!r) return;
      const t = now();
      r.lastSeen = t;
      doAck(r, typeUrl, x.version, x.names === null ? null : [...x.names], t);
    },
    nack(nodeId, typeUrl, x) {
      const r = nodes.get(nodeId.slice(0, MAX_ID));
      if (!r) return;
      const t = now();
      r.lastSeen = t;
      doNack(r, typeUrl, x, t);
    },
    restPoll(p) {
      const t = now();
      const existing = nodes.get(p.node.id.slice(0, MAX_ID));
      const wasConnected = existing ? isConnected(existing, t) : false;
      const r = record(p.node, "rest", t);
      if (r.streams > 0) {
        // An ADS node that also polls REST (mixed bootstrap): keep its ADS view, note it was seen.
        r.lastSeen = t;
        return;
      }
      r.transport = "rest";
      if (!wasConnected) r.connectedSince = t;
      r.lastSeen = t;
      r.disconnectedAt = null;
      if (!wasConnected) emit(changeListeners, { node: r.id, kind: "connected", at: iso(t) });
      const s = typeState(r, p.typeUrl);
      const isEds = p.typeUrl === TYPE_URL.clusterLoadAssignment;
      s.subscribed = isEds ? (p.resourceNames.length === 0 ? { wildcard: true, names: 0 } : { wildcard: false, names: p.resourceNames.length }) : null;
      let edsChanged = false;
      if (isEds) {
        s.restNames ??= new Map();
        for (const name of p.resourceNames.length === 0 ? ["*"] : p.resourceNames) {
          if (s.restNames.size >= 100_000 && !s.restNames.has(name)) break;
          if (s.restNames.get(name)?.version !== p.versionInfo) edsChanged = true;
          s.restNames.set(name, { version: p.versionInfo, at: t });
        }
      }
      const sentBefore = s.sent;
      if (p.errorDetail) {
        const message = (p.errorDetail.message ?? "").slice(0, MAX_MESSAGE);
        const rejected = sentBefore && sentBefore.version !== p.versionInfo ? sentBefore.version : null;
        // A REST client repeats its error_detail on every poll until a version is accepted: one NACK each.
        if (!s.nacked || s.nacked.message !== message || s.nacked.accepted_version !== p.versionInfo || s.nacked.version !== rejected || s.state !== "nacked") {
          doNack(r, p.typeUrl, { version: rejected, accepted_version: p.versionInfo, message, code: p.errorDetail.code ?? 0 }, t);
        }
      } else if (p.versionInfo !== "" && (isEds ? edsChanged : s.acked?.version !== p.versionInfo || s.state !== "acked")) {
        // What it polls with is what it has: an ACK when that changed (REST EDS: per cluster, in restNames).
        const names = !isEds && sentBefore && sentBefore.version === p.versionInfo ? sentBefore.names : null;
        doAck(r, p.typeUrl, p.versionInfo, names, t);
      }
      if (p.served) {
        s.sent = { version: p.served.version, nonce: null, at: t, names: [...p.served.names] };
        s.state = "pending";
      }
    },
    list() {
      const t = now();
      prune(t, true);
      return [...nodes.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map((r) => status(r, t));
    },
    get(id) {
      const r = nodes.get(id.slice(0, MAX_ID));
      return r ? status(r, now()) : undefined;
    },
    ackedVersion(id) {
      const r = nodes.get(id.slice(0, MAX_ID));
      if (!r) return undefined;
      return refreshComplete(r, now()) ?? undefined;
    },
    counts() {
      const t = now();
      prune(t);
      let ads = 0;
      let rest = 0;
      for (const r of nodes.values()) {
        if (!isConnected(r, t)) continue;
        if (r.streams > 0) ads++;
        else rest++;
      }
      return { ads, rest };
    },
    onNack(cb) {
      nackListeners.add(cb);
      return () => void nackListeners.delete(cb);
    },
    onAck(cb) {
      ackListeners.add(cb);
      return () => void ackListeners.delete(cb);
    },
    onChange(cb) {
      changeListeners.add(cb);
      return () => void changeListeners.delete(cb);
    },
  };
}
