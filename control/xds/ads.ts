/**
 * ADS over gRPC: `envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources`,
 * state of the world, serving CDS and EDS from the same snapshot the REST transport serves
 * (publisher.ts `current()`, the resources selected by discovery.ts `renderResources`). Incremental
 * (delta) xDS is not served: DeltaAggregatedResources answers UNIMPLEMENTED.
 *
 * Protocol (envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol; discovery.proto), per type URL on
 * each stream:
 *   - every response carries a fresh nonce; version_info = the snapshot version (decimal);
 *   - the first request whose response_nonce is the last nonce sent is the answer to that response: ACK
 *     when error_detail is absent and version_info is the version sent; NACK when error_detail is set
 *     (version_info is then the version the client keeps). Both are recorded in nodes.ts. Further
 *     requests with that nonce only update the subscription (resource_names);
 *   - a request with any other nonce, once a response was sent, is stale and ignored entirely;
 *   - the first request of a type (no nonce yet) is always answered with the current state, whatever
 *     version_info it carries — a reconnecting Envoy (to this or any other replica) gets the current
 *     state at once. Every replica answers from its own snapshot, which is what every replica builds
 *     for the same version: a stream holds no state another replica would need;
 *   - CDS is wildcard (every cluster, whatever resource_names says: SotW requires the complete set);
 *     EDS follows resource_names (the cluster names Envoy learned from CDS; "*" = all; empty = none).
 *     A request adding names is answered at once with every subscribed assignment (even at an
 *     unchanged version); removing names needs no answer;
 *   - every new snapshot version is pushed to every open stream, for the types it subscribed to,
 *     CDS first then EDS ("make before break": Envoy learns a cluster before its endpoints, and
 *     pauses EDS while it applies CDS). Pushes do not wait for the previous ACK; a client answering
 *     an older nonce then is stale, as the protocol says. A stream whose writes back up gets only the
 *     latest state once it drains (SotW: an intermediate version is never needed);
 *   - after a NACK the same version is not sent again (it would be refused again); the next version is.
 *
 * Clusters are sent with `eds_config: {ads: {}}` instead of the REST api_config_source the builder
 * writes, so an Envoy on ADS also gets its endpoints over the stream (option `edsOverAds`).
 */
import { randomBytes } from "node:crypto";
import { BlockList, isIPv4, isIPv6 } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { TYPE_URL, type EnvoyCluster, type XdsSnapshot, type XdsTypeUrl } from "./build.js";
import { renderResources, userAgent, type RenderedResource, type XdsLogger } from "./discovery.js";
import type { XdsNodes } from "./nodes.js";
import { loadXdsProto, type EncodedAny, type JsonObject } from "./proto.js";

export const ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService";
export const ADS_METHOD = `/${ADS_SERVICE}/StreamAggregatedResources`;

const silent: XdsLogger = { debug() {}, info() {}, warn() {}, error() {} };

export type AdsAuthResult = { ok: true } | { ok: false; code: grpc.status; message: string };
export type AdsAuthorize = (ctx: { peer: string; metadata: grpc.Metadata }) => AdsAuthResult;

export interface AdsServerOptions {
  /** The snapshot to serve now (undefined before the first one: nothing is sent until it exists). */
  snapshot: () => XdsSnapshot | undefined;
  /** Called with a listener to run after each new snapshot (publisher.subscribe). Without it, `snapshot` is polled every pollMs. */
  subscribe?: (listener: () => void) => () => void;
  pollMs?: number;
  nodes?: XdsNodes;
  logger?: XdsLogger;
  /** Runs when a stream opens; refuse with a gRPC status. Omitted = open. */
  authorize?: AdsAuthorize;
  /** DiscoveryResponse.control_plane.identifier (shows in Envoy's config dump). */
  controlPlaneId?: string;
  /** Rewrite each cluster's eds_config to `{ads: {}}` (default true). */
  edsOverAds?: boolean;
  /** Open streams accepted (default 10,000); more get RESOURCE_EXHAUSTED. */
  maxStreams?: number;
  /** grpc-js server options (merged over ours: server keepalive pings every 30 s, 10 s timeout). */
  serverOptions?: grpc.ServerOptions;
}

export interface AdsServer {
  /** Binds and starts; resolves to the bound port (0 = an ephemeral one). */
  listen(host: string, port: number): Promise<number>;
  /** Ends every stream with UNAVAILABLE (the clients reconnect, to any replica) and stops. */
  stop(graceMs?: number): Promise<void>;
  /** Open streams. */
  streams(): number;
  /** Pushes the current snapshot to every stream that lacks it (also what `subscribe` triggers). */
  notify(): void;
}

/** What we read of a DiscoveryRequest (protobufjs toObject, snake_case). */
interface Req {
  version_info?: string;
  node?: { id?: string; cluster?: string } & Record<string, unknown>;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string } | null;
}

interface Sub {
  typeUrl: XdsTypeUrl;
  names: Set<string> | "*";
  /** Nonce of the last response sent (null: none yet). */
  nonce: string | null;
  sentVersion: string | null;
  sentNames: readonly string[];
  /** A response is owed whatever the version (new subscription, names added). */
  force: boolean;
  /** The last response was ACKed or NACKed already: later requests with its nonce only change the subscription. */
  answered: boolean;
}

interface Stream {
  id: number;
  call: grpc.ServerDuplexStream<Req, Buffer>;
  peer: string;
  node: { id: string; cluster: string } | null;
  subs: Map<XdsTypeUrl, Sub>;
  blocked: boolean;
  closed: boolean;
  unsupported: Set<string>;
}

const TYPE_ORDER: readonly XdsTypeUrl[] = [TYPE_URL.cluster, TYPE_URL.clusterLoadAssignment];
const MAX_NAMES = 100_000;

/** The cluster as sent over ADS: its endpoints come over the same stream. */
export function adsCluster(c: EnvoyCluster): JsonObject {
  return { ...c, eds_cluster_config: { service_name: c.eds_cluster_config.service_name, eds_config: { resource_api_version: "V3", ads: {} } } };
}

export function createAdsServer(opts: AdsServerOptions): AdsServer {
  const log = opts.logger ?? silent;
  const proto = loadXdsProto();
  const edsOverAds = opts.edsOverAds ?? true;
  const maxStreams = opts.maxStreams ?? 10_000;
  const controlPlane = opts.controlPlaneId ? { identifier: opts.controlPlaneId } : undefined;
  const noncePrefix = `${randomBytes(3).toString("hex")}-`;
  let nonceCounter = 0;
  let streamCounter = 0;
  const open = new Set<Stream>();
  let stopping = false;

  // Encoded resources: per snapshot, keyed by their JSON text; the previous snapshot's are reused
  // when a resource did not change (one Any encoding per changed resource per version).
  let cacheSnap: XdsSnapshot | undefined;
  let cacheCur = new Map<string, EncodedAny>();
  let cachePrev = new Map<string, EncodedAny>();
  const unencodable = new WeakSet<XdsSnapshot>();

  function encoded(snap: XdsSnapshot, typeUrl: XdsTypeUrl, r: RenderedResource): EncodedAny {
    if (snap !== cacheSnap) {
      cachePrev = cacheCur;
      cacheCur = new Map();
      cacheSnap = snap;
    }
    let e = cacheCur.get(r.json) ?? cachePrev.get(r.json);
    if (!e) e = proto.encodeAny(typeUrl === TYPE_URL.cluster && edsOverAds ? adsCluster(r.resource as EnvoyCluster) : (r.resource as unknown as JsonObject));
    cacheCur.set(r.json, e);
    return e;
  }

  const service: grpc.ServiceDefinition = {
    StreamAggregatedResources: {
      path: ADS_METHOD,
      requestStream: true,
      responseStream: true,
      requestSerialize: (m: JsonObject) => Buffer.from(proto.DiscoveryRequest.encode(proto.DiscoveryRequest.fromObject(m)).finish()),
      requestDeserialize: (b: Buffer) => proto.DiscoveryRequest.toObject(proto.DiscoveryRequest.decode(b), { longs: String, enums: String }) as Req,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
      originalName: "streamAggregatedResources",
    },
  };

  const server = new grpc.Server({
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    ...opts.serverOptions,
  });
  server.addService(service, { StreamAggregatedResources: (call: grpc.ServerDuplexStream<Req, Buffer>) => onStream(call) });

  function onStream(call: grpc.ServerDuplexStream<Req, Buffer>): void {
    const peer = call.getPeer();
    if (stopping) return void call.emit("error", { code: grpc.status.UNAVAILABLE, details: "the control service is shutting down" });
    const auth = opts.authorize?.({ peer, metadata: call.metadata });
    if (auth && !auth.ok) {
      log.warn("ads stream refused", { peer, code: grpc.status[auth.code], reason: auth.message });
      return void call.emit("error", { code: auth.code, details: auth.message });
    }
    if (open.size >= maxStreams) {
      log.warn("ads stream refused: too many streams", { peer, max: maxStreams });
      return void call.emit("error", { code: grpc.status.RESOURCE_EXHAUSTED, details: `at most ${maxStreams} ADS streams per control replica` });
    }
    const st: Stream = { id: ++streamCounter, call, peer, node: null, subs: new Map(), blocked: false, closed: false, unsupported: new Set() };
    open.add(st);
    call.on("data", (req: Req) => {
      try {
        onRequest(st, req);
      } catch (e) {
        log.error("ads request failed", { stream: st.id, node: st.node?.id ?? null, error: (e as Error)?.message ?? String(e) });
      }
    });
    call.on("end", () => {
      close(st, "client half-closed");
      call.end();
    });
    call.on("cancelled", () => close(st, "cancelled"));
    call.on("error", (e: Error) => close(st, e?.message ?? "error"));
    call.on("close", () => close(st, "closed"));
    call.on("drain", () => {
      st.blocked = false;
      flush(st);
    });
  }

  function close(st: Stream, why: string): void {
    if (st.closed) return;
    st.closed = true;
    open.delete(st);
    if (st.node) {
      opts.nodes?.disconnect(st.node.id);
      log.info("ads stream closed", { stream: st.id, node: st.node.id, peer: st.peer, reason: why });
    }
  }

  function onRequest(st: Stream, req: Req): void {
    if (st.closed) return;
    if (!st.node) {
      // Only the first request is guaranteed to carry the node (xDS protocol); later ones may not.
      st.node = { id: String(req.node?.id ?? ""), cluster: String(req.node?.cluster ?? "") };
      opts.nodes?.connect({ ...st.node, user_agent: userAgent(req.node) });
      log.info("ads stream opened", { stream: st.id, node: st.node.id, cluster: st.node.cluster, peer: st.peer, user_agent: userAgent(req.node) });
    }
    const nodeId = st.node.id;
    const typeUrl = req.type_url ?? "";
    if (typeUrl !== TYPE_URL.cluster && typeUrl !== TYPE_URL.clusterLoadAssignment) {
      // Not ours (LDS, RDS, SDS…): never answered — an empty LDS/RDS answer would delete the client's listeners/routes.
      if (!st.unsupported.has(typeUrl) && st.unsupported.size < 16) {
        st.unsupported.add(typeUrl);
        log.warn("ads: type not served (CDS and EDS only); not answered", { node: nodeId, type_url: typeUrl });
      }
      return;
    }
    const nonce = req.response_nonce ?? "";
    let sub = st.subs.get(typeUrl);
    if (sub && sub.nonce !== null && nonce !== sub.nonce) {
      log.debug("ads: stale nonce ignored", { node: nodeId, type_url: typeUrl, nonce, current: sub.nonce });
      return;
    }
    const requested = req.resource_names ?? [];
    if (requested.length > MAX_NAMES) {
      st.call.emit("error", { code: grpc.status.INVALID_ARGUMENT, details: `at most ${MAX_NAMES} resource_names` });
      return;
    }
    const names: Set<string> | "*" = typeUrl === TYPE_URL.cluster || requested.includes("*") ? "*" : new Set(requested);

    if (sub && sub.nonce !== null) {
      // The answer to our last response of this type (the first request carrying its nonce; later ones,
      // e.g. Envoy changing its EDS names before the next response, are subscription updates).
      const version = req.version_info ?? "";
      const err = req.error_detail;
      if (sub.answered) {
        // already recorded
      } else if (err) {
        const message = String(err.message ?? "");
        opts.nodes?.nack(nodeId, typeUrl, { version: sub.sentVersion, accepted_version: version, message, code: Number(err.code ?? 0) });
        log.warn("envoy rejected an xds response (NACK)", { node: nodeId, type_url: typeUrl, rejected_version: sub.sentVersion, accepted_version: version, code: err.code ?? 0, detail: message.slice(0, 1000) });
      } else if (version === sub.sentVersion) {
        opts.nodes?.ack(nodeId, typeUrl, { version, names: sub.sentNames });
        log.debug("ads ack", { node: nodeId, type_url: typeUrl, version });
      } else {
        // Neither an ACK (other version) nor a NACK (no error_detail): the client kept another version.
        opts.nodes?.nack(nodeId, typeUrl, { version: sub.sentVersion, accepted_version: version, message: `(no error_detail; the client kept version "${version}")`, code: 0 });
        log.warn("ads: a response was answered with another version and no error_detail", { node: nodeId, type_url: typeUrl, sent: sub.sentVersion, kept: version });
      }
      sub.answered = true;
      if (namesAdded(sub.names, names)) sub.force = true;
      sub.names = names;
    } else {
      // First request of this type on the stream (or before any response of it): answer it.
      if (!sub) {
        sub = { typeUrl, names, nonce: null, sentVersion: null, sentNames: [], force: true, answered: false };
        st.subs.set(typeUrl, sub);
      }
      sub.names = names;
      sub.force = true;
    }
    opts.nodes?.subscribed(nodeId, typeUrl, names === "*" ? "*" : [...names]);
    flush(st);
  }

  function namesAdded(before: Set<string> | "*", after: Set<string> | "*"): boolean {
    if (after === "*") return before !== "*";
    if (before === "*") return false;
    for (const n of after) if (!before.has(n)) return true;
    return false;
  }

  /** Sends what the stream lacks: CDS first, then EDS. */
  function flush(st: Stream): void {
    if (st.closed || st.blocked || stopping) return;
    const snap = opts.snapshot();
    if (!snap || unencodable.has(snap)) return;
    for (const typeUrl of TYPE_ORDER) {
      const sub = st.subs.get(typeUrl);
      if (!sub) continue;
      if (sub.names !== "*" && sub.names.size === 0) {
        sub.force = false; // subscribed to nothing (yet): no answer needed
        continue;
      }
      if (!sub.force && sub.sentVersion === snap.version_info) continue;
      if (!send(st, sub, snap)) return;
    }
  }

  /** False when nothing more should be written now (encoding failed, or the stream is backed up). */
  function send(st: Stream, sub: Sub, snap: XdsSnapshot): boolean {
    const rendered = renderResources(snap, sub.typeUrl, sub.names === "*" ? "*" : [...sub.names]);
    let resources: EncodedAny[];
    try {
      resources = rendered.map((r) => encoded(snap, sub.typeUrl, r));
    } catch (e) {
      // Never send part of a SotW answer (a cluster left out of CDS is a cluster deleted): keep the last one.
      unencodable.add(snap);
      log.error("ads: snapshot cannot be encoded as protobuf; the streams keep the previous version", { version: snap.version_info, error: (e as Error)?.message ?? String(e) });
      return false;
    }
    const nonce = `${noncePrefix}${(++nonceCounter).toString(36)}`;
    const body = Buffer.from(
      proto.DiscoveryResponse.encode({ version_info: snap.version_info, resources, type_url: sub.typeUrl, nonce, ...(controlPlane ? { control_plane: controlPlane } : {}) }).finish(),
    );
    sub.nonce = nonce;
    sub.answered = false;
    sub.sentVersion = snap.version_info;
    sub.sentNames = rendered.map((r) => r.name);
    sub.force = false;
    opts.nodes?.sent(st.node!.id, sub.typeUrl, { version: snap.version_info, nonce, names: sub.sentNames });
    log.debug("ads response", { node: st.node!.id, type_url: sub.typeUrl, version: snap.version_info, nonce, resources: resources.length, bytes: body.length });
    const ok = st.call.write(body);
    if (!ok) st.blocked = true;
    return ok;
  }

  function notify(): void {
    for (const st of open) flush(st);
  }

  let unsubscribe: (() => void) | undefined;
  let poll: NodeJS.Timeout | undefined;
  if (opts.subscribe) unsubscribe = opts.subscribe(() => notify());
  else {
    let seen = opts.snapshot();
    poll = setInterval(() => {
      const s = opts.snapshot();
      if (s !== seen) {
        seen = s;
        notify();
      }
    }, opts.pollMs ?? 100);
    poll.unref();
  }

  return {
    listen(host, port) {
      const address = host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
      return new Promise((resolve, reject) => {
        server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
      });
    },
    async stop(graceMs = 1000) {
      if (stopping) return;
      stopping = true;
      unsubscribe?.();
      if (poll) clearInterval(poll);
      for (const st of [...open]) {
        st.call.emit("error", { code: grpc.status.UNAVAILABLE, details: "the control service is shutting down; reconnect" });
        close(st, "server stopping");
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        t.unref();
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
    },
    streams: () => open.size,
    notify,
  };
}

// ---------------------------------------------------------------------------------------------
// Who may open a stream.

/** "ipv4:10.0.0.1:5000", "[::1]:5000", "10.0.0.1:5000" → the IP. */
export function peerIp(peer: string): string {
  const p = peer.replace(/^ipv[46]:/, "");
  const m = /^\[([^\]]+)\]:\d+$/.exec(p);
  const ip = m ? m[1]! : p.includes(":") && p.indexOf(":") === p.lastIndexOf(":") ? p.slice(0, p.lastIndexOf(":")) : p;
  return ip.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, "$1");
}

/**
 * The gRPC twin of the REST xDS rule (http/auth.ts requirePeerOrRole): a peer on the allow list passes
 * without a token; anyone else sends `authorization: Bearer <token>` metadata (Envoy:
 * `grpc_services[].initial_metadata`) of one of `roles`. A stream that sends a token is judged by it.
 */
export function peerOrTokenAuthorizer(auth: { roleOf(token: string): string | null }, allowFrom: readonly [string, number, "ipv4" | "ipv6"][], roles: readonly string[]): AdsAuthorize {
  const list = new BlockList();
  for (const [addr, prefix, family] of allowFrom) list.addSubnet(addr, prefix, family);
  return ({ peer, metadata }) => {
    const header = metadata.get("authorization")[0];
    if (header !== undefined) {
      const m = /^Bearer[ ]+([\x21-\x7e]+)\s*$/i.exec(String(header));
      const role = m ? auth.roleOf(m[1]!) : null;
      if (role === null) return { ok: false, code: grpc.status.UNAUTHENTICATED, message: "a valid bearer token is required" };
      if (!roles.includes(role)) return { ok: false, code: grpc.status.PERMISSION_DENIED, message: `role ${role} may not subscribe to xDS` };
      return { ok: true };
    }
    const ip = peerIp(peer);
    const family = isIPv4(ip) ? "ipv4" : isIPv6(ip) ? "ipv6" : null;
    if (family !== null && list.check(ip, family)) return { ok: true };
    return { ok: false, code: grpc.status.UNAUTHENTICATED, message: "this peer address needs a bearer token (authorization metadata) of a plugin or admin" };
  };
}
