import type { LogLevelName, MetricTypeName } from "./abi.js";
import type { SharedData } from "./stores.js";

/** Header pairs as Envoy holds them: ordered, repeated keys allowed, keys lower-case. */
export type HeaderPairs = Array<[string, string]>;
export type Chunk = string | Uint8Array;
/** A property value as the test sets it; serialized like Envoy's CEL values (see API.md). */
export type PropertyValue = string | Uint8Array | bigint | number | boolean;

export interface HostOptions {
  /** Path, bytes or an already compiled module (then import signatures cannot be checked). */
  wasm: string | Uint8Array | WebAssembly.Module;
  /** One VM (instance) per Envoy worker thread. Default 1. */
  workers?: number;
  /** Run the configuration canary first (Envoy always does). Default true. */
  canary?: boolean;
  /** Start the main-thread VM (Envoy always does: it ticks and polls but never gets streams). Default true. */
  mainThread?: boolean;
  /** Plugin configuration, read in on_configure (buffer 7). */
  configuration?: string | Uint8Array;
  /** VM configuration, read in on_vm_start (buffer 6). */
  vmConfiguration?: string | Uint8Array;
  /** vm_config.vm_id: namespace of shared data and queues. Default "". */
  vmId?: string;
  /**
   * The bootstrap's `node.id` (or `--service-node`): property `node.id` in every context, root contexts
   * included (Envoy reads it from LocalInfo, not from a stream). Default: not configured (NotFound).
   */
  nodeId?: string;
  /** Filter config root_id (property plugin_root_id). Default "". */
  rootId?: string;
  /** Filter config name (property plugin_name). Default "". */
  pluginName?: string;
  /** Clusters Envoy knows; proxy_http_call to any other is refused with BadArgument. */
  clusters?: string[];
  /** Envoy ≥ 1.35 `allow_on_headers_stop_iteration`. Default false (StopIteration from headers stops everything). */
  allowOnHeadersStopIteration?: boolean;
  /** Per-connection buffer limit; buffering more request body → 413 local reply. Default 1 MiB. */
  bufferLimitBytes?: number;
  /** Virtual clock start, ms since epoch. Default 1_700_000_000_000. */
  now?: number;
  /** Envoy's wasm log level: proxy_get_log_level answer, and lines below it are dropped. Default "info". */
  logLevel?: LogLevelName;
  /** Properties every context can read (e.g. { "node.id": "gw-1" }); stream properties override them. */
  properties?: Record<string, PropertyValue>;
  /** Another host's store: the same Envoy process (a vm_id's data lives while any host holding it runs). */
  sharedData?: SharedData;
  /** Extra foreign functions besides Envoy's clear_route_cache. */
  foreignFunctions?: Record<string, ForeignFunction>;
  /** Called (after the calling callback returns, as Envoy's async client would) for each accepted http call. */
  onHttpCall?: (call: HttpCall) => void;
  /**
   * Keep per-call records for inspection (default true, what tests read): each stream's callback names,
   * foreign calls (host.foreignCalls, a stream's result().foreignCalls). false is the production path (the
   * local data plane): nothing is recorded per request, so nothing grows or has to be collected; the
   * behaviour seen by the module is the same (test/host/lean-path.test.ts).
   */
  recording?: boolean;
}

export interface LogEntry {
  worker: number;
  level: LogLevelName;
  message: string;
  /** Context that logged (0 while the module starts). */
  contextId: number;
}

/** A host call Envoy would refuse (status ≠ Ok), or accept without effect (status Ok, see detail). */
export interface Refusal {
  worker: number;
  contextId: number;
  call: string;
  status: number;
  statusName: string;
  detail: string;
}

export interface UpstreamResponse {
  status: number;
  headers?: HeaderPairs;
  body?: Chunk | Chunk[];
  trailers?: HeaderPairs;
}

/**
 * An upstream answer for the benchmark fast path (worker.runRequest): after the request headers went
 * upstream, Envoy's router picks the host (override_host: the first address of `addressHeader`, or
 * `address`), which becomes the `upstream.address` property; the response headers then run through
 * on_response_headers (end of stream) before on_log. Reuse one object across requests: its header
 * map is prepared once.
 */
export interface FastUpstream {
  status: number;
  /** Response headers besides :status, keys lower-case. */
  headers?: HeaderPairs;
  /** `upstream.address` (absent: none, unless addressHeader gives one). */
  address?: string;
  /** Request header holding the endpoint list (`ip:port[,ip:port…]`): its first entry is the host used. */
  addressHeader?: string;
}

export interface RequestOptions {
  /** Worker (VM) to run on; default round robin. */
  worker?: number;
  headers: HeaderPairs;
  /** Body chunks; omit for a header-only request. */
  body?: Chunk | Chunk[];
  trailers?: HeaderPairs;
  /** Upstream answer, used only if the request reaches upstream. */
  response?: UpstreamResponse;
  /** Stream properties, e.g. { "upstream.address": "10.0.0.5:8000" }. */
  properties?: Record<string, PropertyValue>;
}

export interface LocalReply {
  status: number;
  headers: HeaderPairs;
  body: Uint8Array;
  bodyText: string;
  /** Response code details (spaces replaced by "_" like Envoy), e.g. "request_payload_too_large". */
  details: string;
  /** gRPC status, or null when the plugin passed an out-of-range value (-1). */
  grpcStatus: number | null;
  /** Who sent it: the plugin or the host (413 etc). */
  by: "plugin" | "host";
}

export interface ForeignCall {
  name: string;
  args: Uint8Array;
  contextId: number;
  worker: number;
}

export type Outcome = "upstream" | "local_reply" | "hung" | "reset";

export interface RequestResult {
  outcome: Outcome;
  worker: number;
  contextId: number;
  /** Headers as forwarded upstream (after the plugin's changes); null if never forwarded. */
  upstreamHeaders: HeaderPairs | null;
  upstreamBody: Uint8Array;
  upstreamBodyText: string;
  upstreamTrailers: HeaderPairs | null;
  localReply: LocalReply | null;
  /** The response sent downstream (upstream's after the plugin's changes, or the local reply). */
  downstreamHeaders: HeaderPairs | null;
  downstreamBody: Uint8Array;
  foreignCalls: ForeignCall[];
  /** Route cache clears: clear_route_cache calls plus (ABI 0.2.1) every effective request-header change. */
  routeCacheClears: number;
  /** Callbacks invoked on this stream, in order (e.g. "proxy_on_log"). */
  callbacks: string[];
}

export interface HttpCallResponse {
  status: number;
  headers?: HeaderPairs;
  body?: Chunk;
  trailers?: HeaderPairs;
}

export interface HttpCall {
  readonly worker: number;
  readonly token: number;
  readonly cluster: string;
  readonly headers: HeaderPairs;
  readonly body: Uint8Array;
  readonly bodyText: string;
  readonly trailers: HeaderPairs;
  /** 0 = no timeout. */
  readonly timeoutMs: number;
  /** Deliver a response → proxy_on_http_call_response on the calling root context. */
  respond(response: HttpCallResponse): void;
  /** Reset (Envoy's onFailure): the plugin sees 0 headers, 0 body, status BrokenConnection "reset". */
  fail(): void;
  /** The calling root context (or its VM) went away first: Envoy cancelled the request; answers are ignored. */
  readonly cancelled: boolean;
}

export interface MetricSnapshot {
  type: MetricTypeName;
  /** Counter/gauge value; for histograms the number of recorded values. */
  value: number;
  /** Histogram samples (empty for counters and gauges). */
  samples: number[];
}

export type ForeignFunction = (args: Uint8Array, call: { worker: number; contextId: number }) => Uint8Array | string | void | { status: number; result?: Uint8Array };
