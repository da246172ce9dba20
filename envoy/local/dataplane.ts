/**
 * The local data plane: the gateway without Envoy, for laptops and demos.
 *
 *   const dp = await startLocalDataPlane({ controlUrl, pluginToken, port: 10000 });
 *   // curl http://127.0.0.1:10000/v1/chat/completions ...
 *   await dp.close();
 *
 * It runs build/plugin.wasm on the same proxy-wasm host the tests use (envoy/local/host/, an Envoy-faithful
 * host in TypeScript) and puts a small Node HTTP forwarder behind it that does what Envoy's router does
 * with the plugin's decision (envoy/bootstrap.yaml):
 *
 * - strips x-gateway-cluster / x-gateway-destination-endpoint / x-model-deployment / x-model-instance
 *   from the client request before the plugin runs (Envoy's header_mutation filter);
 * - runs the request through the plugin (headers, then body chunks: a body-routed request is buffered by
 *   the plugin, every other body streams through chunk by chunk);
 * - sends to instances over keep-alive pools (upstream.ts, undici); a request whose body is all here (body-
 *   routed, or small with a content-length) goes out in one write, other bodies stream;
 * - `x-gateway-cluster` set → routed: tries the first `ip:port` of `x-gateway-destination-endpoint`, and on
 *   a connect failure / refusal / reset before any response byte the next one (Envoy's retry_policy
 *   `connect-failure,reset,refused-stream` with the override_host LB policy). Retries resend the request
 *   body, so they happen only while it fits the buffer limit (as in Envoy);
 * - timeouts as the bootstrap's: connect (the cluster's connect_timeout: a connect failure), then the route's
 *   per_try_idle_timeout — the response headers (first byte) and each gap between response body chunks.
 *   Before any response byte an expired attempt goes to the next endpoint like a reset, else 504 (flag UT,
 *   details upstream_per_try_idle_timeout); mid-stream the client's stream is cut;
 * - no cluster header → passthrough to `passthroughUrl` (Envoy's fall-through route), else no route (NR);
 * - local replies from the plugin (status, headers, body) go to the client as they are; the replies Envoy
 *   makes itself (no route, no healthy host, connect failure / reset, timeout, the buffer's 413, a failed
 *   VM) go out as envoy/bootstrap.yaml's local_reply_config makes them: OpenAI's error JSON
 *   (LOCAL_REPLY_MAPPERS, mapLocalReply);
 * - a reply sent while the client is still uploading (e.g. the plugin's 413) closes the connection
 *   gracefully: `connection: close`, then the rest of the request is read and discarded (bounded) before
 *   the close, so the client reads the reply instead of a reset (RFC 9112 §9.6; Envoy's delayed close);
 * - the response runs through the plugin too (on_response_headers/body) and streams to the client chunk
 *   by chunk (SSE token streams are not buffered);
 * - the upstream result is reported back to the plugin like Envoy does (`upstream.address` = the host of
 *   the last attempt, `response.code`, `response.flags` with UF/UR/URX/UH/NR/DC, `response.code_details`)
 *   before `on_log`, so its telemetry and passive ejection work.
 *
 * Requests round-robin over `workers` VMs (one per Envoy worker thread in Envoy). The plugin's http calls
 * (table long-poll, telemetry) go to the real control service through envoy/local/bridge.ts, which
 * also advances the host's virtual clock with real time.
 *
 * If a VM traps, its worker answers 503 for the stream that trapped and then bypasses the plugin (Envoy's
 * FAIL_OPEN, as configured in envoy/bootstrap.yaml): later requests on that worker are passed through.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { ProxyWasmHost, type HttpStream } from "./host/index.js";
import { bridgePlugin, type PluginBridge } from "./bridge.js";
import { lingerClose } from "../../control/src/http/linger.js";
import { CONNECT_TIMEOUT, Upstreams, type Target, type UpstreamEvents, type UpstreamRequest } from "./upstream.js";

export const DEFAULT_PLUGIN_WASM = fileURLToPath(new URL("../../build/plugin.wasm", import.meta.url));
export const CONTROL_CLUSTER = "gateway_control";

type Host = Awaited<ReturnType<typeof ProxyWasmHost.start>>;
type Pairs = Array<[string, string]>;

export interface LocalDataPlaneOptions {
  /**
   * Base URL of the control service, e.g. http://127.0.0.1:8080 — or of several replicas (an array, or a
   * comma-separated list): the plugin's calls go round-robin over those answering, as envoy/bootstrap.yaml's
   * gateway_control (bridge.ts).
   */
  controlUrl: string | string[];
  /** A token of CONTROL_PLUGIN_TOKENS (sent by the plugin as `authorization: Bearer …`). */
  pluginToken?: string;
  /** Listen port; 0 = any free port. Default 10000. */
  port?: number;
  /** Listen address. Default 127.0.0.1. */
  host?: string;
  /** Where requests without a cluster header go (models not managed here), e.g. https://api.openai.com. */
  passthroughUrl?: string | null;
  /** Plugin VMs (Envoy workers). Default 1. */
  workers?: number;
  /** Extra plugin configuration (contract 2), merged over the defaults below. */
  pluginConfig?: Record<string, unknown>;
  /** Path of the plugin module. Default build/plugin.wasm. */
  wasm?: string;
  /**
   * Request body bytes buffered for body routing and kept for retries (Envoy's listener
   * per_connection_buffer_limit_bytes). Default `2 × max_body_bytes` (2 MiB), as envoy/bootstrap.yaml: it has to
   * sit above the plugin's `max_body_bytes` by at least one read (Node hands bodies over in ≤ 64 KiB chunks), so
   * a body too large to route gets the plugin's JSON 413 `request_too_large` (which names the limit) rather than
   * the buffer's own 413.
   */
  bufferLimitBytes?: number;
  /** Connect timeout per upstream attempt (the per-deployment cluster's connect_timeout). Default 2000 ms. */
  connectTimeoutMs?: number;
  /**
   * How long an attempt may wait for the instance's response headers once the request has been sent — a slow
   * non-streaming generation sends nothing until it is done. Expired → the next listed endpoint if the body can
   * be resent (Envoy retries a per-try timeout under `retry_on: reset`), else 504 `upstream_timeout`; the plugin
   * sees flag UT (a failure of that instance for passive ejection). Default 300 000 ms: envoy/bootstrap.yaml's
   * route `retry_policy.per_try_idle_timeout`, which in Envoy bounds this wait and the gaps below alike.
   */
  firstByteTimeoutMs?: number;
  /**
   * Longest gap between two chunks of an instance's response body (a stalled token stream). Expired → the
   * client's stream is cut (its head is already sent), flag UT. Default 300 000 ms (per_try_idle_timeout).
   */
  idleTimeoutMs?: number;
  /**
   * Early replies (a local reply — e.g. the 413 — while the client is still uploading) close the connection
   * gracefully (RFC 9112 §9.6): the response goes out with `connection: close`, then the rest of the request
   * body is read and discarded until it ends — for at most `drainIdleMs` without data (default 1000 ms, Envoy's
   * delayed_close_timeout), `drainMaxBytes` (default 64 MiB) and `drainMaxMs` (default 30 000 ms) — and only
   * then is the connection closed (FIN, then closed once the client closes or after `drainIdleMs`).
   */
  drainIdleMs?: number;
  drainMaxBytes?: number;
  drainMaxMs?: number;
  /** Plugin log lines and data-plane messages. Default: stderr. */
  log?: (line: string) => void;
  /** Plugin log level. Default "info". */
  logLevel?: "trace" | "debug" | "info" | "warn" | "error" | "critical";
  /** Envoy node.id (telemetry `source` prefix). Default "local-dataplane". */
  nodeId?: string;
}

export interface LocalDataPlane {
  /** http://host:port */
  readonly url: string;
  readonly port: number;
  readonly host: Host;
  readonly bridge: PluginBridge;
  /** The limits and timeouts in force (defaults applied). */
  readonly settings: LocalDataPlaneSettings;
  /** The newest routing-table version a worker adopted (gauge gateway.table.version), 0 before the first. */
  tableVersion(): number;
  /**
   * Resolves once every worker VM uses table `version` or newer (each logged adopting it; at log levels
   * above info: the gauge reached it and every worker has ticked since).
   */
  waitForTable(version: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

const LOG_RANK = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, critical: 5 } as const;

/** Envoy's legacy response-flag bits (StreamInfo::ResponseFlag), as the `response.flags` property carries them. */
export const FLAG = {
  UH: 0x2n,
  UT: 0x4n,
  LR: 0x8n,
  UR: 0x10n,
  UF: 0x20n,
  UC: 0x40n,
  UO: 0x80n,
  NR: 0x100n,
  DC: 0x4000n,
  URX: 0x8000n,
  SI: 0x10000n,
  UPE: 0x800000n,
} as const;

export interface LocalDataPlaneSettings {
  maxBodyBytes: number;
  bufferLimitBytes: number;
  connectTimeoutMs: number;
  firstByteTimeoutMs: number;
  idleTimeoutMs: number;
  drainIdleMs: number;
  drainMaxBytes: number;
  drainMaxMs: number;
}

/**
 * Defaults, each the value envoy/bootstrap.yaml (or the per-deployment cluster the control service builds)
 * uses; test/envoy/local-reply.test.ts checks they still agree.
 */
export const LOCAL_DEFAULTS: Readonly<LocalDataPlaneSettings> = {
  /** The plugin configuration's max_body_bytes. */
  maxBodyBytes: 1 << 20,
  /** The listener's per_connection_buffer_limit_bytes (2 × max_body_bytes). */
  bufferLimitBytes: 2 << 20,
  /** The per-deployment cluster's connect_timeout (control/xds/build.ts, envoy/per-deployment-cluster.example.yaml). */
  connectTimeoutMs: 2_000,
  /** The gateway route's retry_policy.per_try_idle_timeout. */
  firstByteTimeoutMs: 300_000,
  idleTimeoutMs: 300_000,
  /** The HTTP connection manager's delayed_close_timeout. */
  drainIdleMs: 1_000,
  drainMaxBytes: 64 << 20,
  drainMaxMs: 30_000,
};

// ---------------------------------------------------------------------------------------------------------
// Local replies in OpenAI's error shape: what envoy/bootstrap.yaml's `local_reply_config` does in Envoy.

export const NO_ROUTE_MESSAGE = "The model is not served by this gateway: no deployment serves it and no passthrough route matches the request";
export const REQUEST_TOO_LARGE_MESSAGE = "request body exceeds the gateway's buffer limit (per_connection_buffer_limit_bytes)";
export const PLUGIN_FAILURE_MESSAGE = "the gateway plugin failed on this request";
/** `code` of the catch-all mappers: the reply's response code details (e.g. `stream_idle_timeout`). */
export const CODE_FROM_DETAILS = "%RESPONSE_CODE_DETAILS%";

export interface LocalReplyMapper {
  /** Matches when the stream has any of these response flags (Envoy: response_flag_filter). */
  flags?: bigint;
  /** Matches when the response code details equal this (Envoy: CEL `response.code_details == '…'`). */
  details?: string;
  /** Matches any status in [lo, hi] (catch-all; Envoy: CEL on response.code). */
  status?: [number, number];
  /** Replaces the reply's body text (the `message`); Envoy: the mapper's `body`. */
  message?: string;
  type: "invalid_request_error" | "server_error";
  code: string;
}

/**
 * The mappers of envoy/bootstrap.yaml's local_reply_config, in its order (first match wins). Replies whose
 * code details start with `gateway_` (every reply the plugin sends) or are `direct_response`, and any status
 * below 400, match none: the plugin's replies are already JSON and stay as the plugin made them.
 */
export const LOCAL_REPLY_MAPPERS: readonly LocalReplyMapper[] = [
  { flags: FLAG.NR, message: NO_ROUTE_MESSAGE, type: "invalid_request_error", code: "model_not_found" },
  { flags: FLAG.UH, type: "server_error", code: "no_healthy_upstream" },
  { flags: FLAG.UT, type: "server_error", code: "upstream_timeout" },
  { flags: FLAG.UF | FLAG.UR | FLAG.UC | FLAG.LR | FLAG.URX, type: "server_error", code: "upstream_connect_error" },
  { details: "request_payload_too_large", message: REQUEST_TOO_LARGE_MESSAGE, type: "invalid_request_error", code: "request_too_large" },
  { details: "wasm_fail_stream", message: PLUGIN_FAILURE_MESSAGE, type: "server_error", code: "plugin_failure" },
  { status: [400, 499], type: "invalid_request_error", code: CODE_FROM_DETAILS },
  { status: [500, 599], type: "server_error", code: CODE_FROM_DETAILS },
];

/** True when envoy/bootstrap.yaml's mappers leave a local reply alone. */
export function keepsLocalReply(status: number, details: string): boolean {
  return status < 400 || details.startsWith("gateway_") || details === "direct_response";
}

/**
 * A local reply (status, the stream's response flags, its response code details, its body text) as
 * local_reply_config sends it: OpenAI's error JSON, or null when no mapper applies (the reply goes out as is).
 */
export function mapLocalReply(status: number, flags: bigint, details: string, body: string): { status: number; headers: Pairs; body: Uint8Array } | null {
  if (keepsLocalReply(status, details)) return null;
  for (const m of LOCAL_REPLY_MAPPERS) {
    const hit =
      (m.flags !== undefined && (flags & m.flags) !== 0n) ||
      (m.details !== undefined && details === m.details) ||
      (m.status !== undefined && status >= m.status[0] && status <= m.status[1]);
    if (!hit) continue;
    return jsonError(status, m.message ?? body, m.type, m.code === CODE_FROM_DETAILS ? details : m.code);
  }
  return null;
}

/** Clients may never set these (envoy/bootstrap.yaml's header_mutation filter strips them before the plugin). */
export const INTERNAL_HEADERS = ["x-gateway-cluster", "x-gateway-destination-endpoint", "x-model-deployment", "x-model-instance"];
/** Error code of our own first-byte timer (distinct from the connect timer's ETIMEDOUT). */
const UPSTREAM_TIMEOUT = "GATEWAY_UPSTREAM_TIMEOUT";
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "http2-settings"]);
/**
 * Not sent upstream either: `expect` (the client's 100-continue is answered here, as Envoy's connection
 * manager does with proxy_100_continue unset, which envoy/bootstrap.yaml leaves it: "Envoy will instead strip
 * the Expect: 100-continue header, and send a 100 Continue response itself", api/envoy/extensions/filters/
 * network/http_connection_manager/v3/http_connection_manager.proto; undici refuses to send it anyway).
 */
const NOT_UPSTREAM = new Set([...HOP_BY_HOP, "expect"]);
/** Request bodies up to this size (announced by content-length) are sent upstream with the head, in one write. */
const SMALL_BODY = 64 * 1024;
/** Connect failures (Envoy: UF, "connection failure"/"connection timeout"): retried on the next endpoint. */
const CONNECT_FAILURES = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", CONNECT_TIMEOUT, "EADDRNOTAVAIL", "ENOTFOUND", "EAI_AGAIN"]);
/** undici refusing the request itself (a header or path it will not send): not the instance's fault. */
const REQUEST_REFUSED = new Set(["UND_ERR_INVALID_ARG", "UND_ERR_NOT_SUPPORTED"]);
const EMPTY = new Uint8Array(0);
const enc = new TextEncoder();

function int64(v: bigint): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(v);
  return new Uint8Array(b.buffer, b.byteOffset, 8);
}

const headerOf = (pairs: Pairs, name: string): string | undefined => pairs.find(([k]) => k === name)?.[1];

/** An attempt's first-byte timer (one shared callback: no closure per request). */
function firstByteTimedOut(up: UpstreamRequest): void {
  up.timer = null;
  up.abort(Object.assign(new Error("upstream request timeout"), { code: UPSTREAM_TIMEOUT }));
}

function clearFirstByte(up: UpstreamRequest): void {
  if (up.timer) clearTimeout(up.timer);
  up.timer = null;
}

/** Parsed endpoints by address (read-only Targets shared by exchanges), bounded: cleared when full. */
const targetCache = new Map<string, Target | null>();
const TARGET_CACHE_MAX = 4096;

function endpointTarget(ep: string): Target | null {
  const cached = targetCache.get(ep);
  if (cached !== undefined) return cached;
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+):(\d{1,5})$/.exec(ep.trim());
  let t: Target | null = null;
  if (m) {
    const hostname = m[1]!.startsWith("[") ? m[1]!.slice(1, -1) : m[1]!;
    t = Object.freeze({ address: ep.trim(), protocol: "http:", hostname, port: Number(m[2]), pathPrefix: "" });
  }
  if (targetCache.size >= TARGET_CACHE_MAX) targetCache.clear();
  targetCache.set(ep, t);
  return t;
}

function passthroughTarget(url: string): Target {
  const u = new URL(url);
  const protocol = u.protocol === "https:" ? "https:" : "http:";
  const port = u.port === "" ? (protocol === "https:" ? 443 : 80) : Number(u.port);
  const hostname = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  return { address: `${u.hostname}:${port}`, protocol, hostname, port, pathPrefix: u.pathname.replace(/\/+$/, ""), authority: u.host };
}

function jsonError(status: number, message: string, type: string, code: string): { status: number; headers: Pairs; body: Uint8Array } {
  const body = enc.encode(JSON.stringify({ error: { message, type, param: null, code } }));
  return { status, headers: [["content-type", "application/json"], ["content-length", String(body.length)]], body };
}

export async function startLocalDataPlane(opts: LocalDataPlaneOptions): Promise<LocalDataPlane> {
  const workers = Math.max(1, Math.floor(opts.workers ?? 1));
  const log = opts.log ?? ((line: string) => process.stderr.write(line + "\n"));
  const passthrough = opts.passthroughUrl ? passthroughTarget(opts.passthroughUrl) : null;
  // max_body_bytes (the plugin's 413) below the buffer limit (the host's 413), as in envoy/bootstrap.yaml.
  const configuredMax = opts.pluginConfig?.max_body_bytes;
  const maxBodyBytes =
    typeof configuredMax === "number"
      ? configuredMax
      : opts.bufferLimitBytes !== undefined
        ? Math.min(16 << 20, Math.max(64, Math.floor(opts.bufferLimitBytes / 2)))
        : LOCAL_DEFAULTS.maxBodyBytes;
  const settings: LocalDataPlaneSettings = {
    maxBodyBytes,
    bufferLimitBytes: opts.bufferLimitBytes ?? Math.max(2 * maxBodyBytes, maxBodyBytes + (64 << 10)),
    connectTimeoutMs: opts.connectTimeoutMs ?? LOCAL_DEFAULTS.connectTimeoutMs,
    firstByteTimeoutMs: opts.firstByteTimeoutMs ?? LOCAL_DEFAULTS.firstByteTimeoutMs,
    idleTimeoutMs: opts.idleTimeoutMs ?? LOCAL_DEFAULTS.idleTimeoutMs,
    drainIdleMs: opts.drainIdleMs ?? LOCAL_DEFAULTS.drainIdleMs,
    drainMaxBytes: opts.drainMaxBytes ?? LOCAL_DEFAULTS.drainMaxBytes,
    drainMaxMs: opts.drainMaxMs ?? LOCAL_DEFAULTS.drainMaxMs,
  };
  const bufferLimit = settings.bufferLimitBytes;
  if (bufferLimit < maxBodyBytes + (64 << 10)) {
    log(`[dataplane] warning: buffer limit ${bufferLimit} B is not above max_body_bytes ${maxBodyBytes} B by a read (64 KiB): bodies too large to route may get the buffer's 413 instead of the plugin's`);
  }

  const configuration = {
    control_cluster: CONTROL_CLUSTER,
    ...(opts.pluginToken ? { control_token: opts.pluginToken } : {}),
    poll_interval_ms: 500,
    long_poll_seconds: 20,
    control_timeout_ms: 25_000,
    ...opts.pluginConfig,
    max_body_bytes: maxBodyBytes,
  };
  const host = await ProxyWasmHost.start({
    wasm: opts.wasm ?? DEFAULT_PLUGIN_WASM,
    workers,
    configuration: JSON.stringify(configuration),
    vmId: "model_gateway",
    rootId: "model_gateway",
    pluginName: "model_gateway",
    clusters: [CONTROL_CLUSTER],
    allowOnHeadersStopIteration: true,
    recording: false, // the production path: no per-request records (host/types.ts HostOptions.recording)
    bufferLimitBytes: bufferLimit,
    now: Date.now(),
    logLevel: opts.logLevel ?? "info",
    properties: { "node.id": opts.nodeId ?? "local-dataplane" },
  });
  const controlUrls = (Array.isArray(opts.controlUrl) ? opts.controlUrl : opts.controlUrl.split(",")).map((u) => u.trim()).filter((u) => u !== "");
  const bridge = bridgePlugin(host, { clusters: { [CONTROL_CLUSTER]: controlUrls } });

  // Per worker VM, the newest table version it logged adopting ("adopted routing table version N …", info).
  const adopted = new Map<number, number>();
  const ADOPTED = /^adopted routing table version (\d+) /;
  // The host keeps logs, refusals and foreign calls in plain arrays: hand the logs on and empty them.
  const drain = () => {
    for (const l of host.logs.splice(0)) {
      const m = ADOPTED.exec(l.message);
      if (m && l.worker >= 0) adopted.set(l.worker, Math.max(adopted.get(l.worker) ?? 0, Number(m[1])));
      log(`[plugin ${l.worker >= 0 ? `w${l.worker}` : l.worker === -1 ? "main" : "canary"}] ${l.level}: ${l.message}`);
    }
    if (host.refusals.length > 0) host.refusals.length = 0;
    const fc = host.foreignCalls;
    if (fc.length > 0) fc.length = 0;
  };
  const drainTimer = setInterval(drain, 250);
  drain();

  /** Sockets closing gracefully after an early reply (rare: a Set is fine here), until they close. */
  const lingering = new Set<Socket>();
  /** RFC 9112 §9.6: a reply before the whole request closes gracefully (control/src/http/linger.ts). */
  const lingerLimits = { idleMs: settings.drainIdleMs, maxBytes: settings.drainMaxBytes, maxMs: settings.drainMaxMs };

  const upstreams = new Upstreams(settings.connectTimeoutMs);
  let nextWorker = 0;
  /**
   * The exchanges in progress (close() ends them), as an intrusive doubly linked list (Exchange.openPrev /
   * openNext), not a Set: a long-lived Set or Map that gets an entry added and deleted per request makes V8
   * keep whole requests alive through scavenges (its hash table, in old space, is rebuilt as the count
   * moves, and the tables it leaves behind still point at the requests that were in them until the next
   * full GC), so ~20 % of the young generation survived and was promoted. README "Cost per request".
   */
  let openFirst: Exchange | null = null;

  // ------------------------------------------------------------------ one request
  class Exchange implements UpstreamEvents {
    /** Neighbours in the list of exchanges in progress (openFirst); both null once finished. */
    openPrev: Exchange | null = null;
    openNext: Exchange | null = null;
    private s: HttpStream | null;
    private done = false;
    private upstreamStarted = false;
    private upstreamHeaders: Pairs | null = null;
    private targets: Target[] = [];
    /** The current attempt (null when there is none or it was dropped: its late events are ignored). */
    private up: UpstreamRequest | null = null;
    private gotResponse = false;
    /** Request body forwarded upstream so far (kept for retries while within the buffer limit). */
    private sentChunks: Uint8Array[] = [];
    private sentBytes = 0;
    private retainBody = true;
    private requestEnded = false;
    private retriedSameHost = false;
    private responseNoBody = false;
    private downstreamStarted = false;

    constructor(
      private readonly req: IncomingMessage,
      private readonly res: ServerResponse,
      private readonly worker: number,
    ) {
      const vm = host.worker(worker);
      this.s = vm.failure === null ? vm.stream() : null;
    }

    start(): void {
      const req = this.req;
      const pairs: Pairs = [
        [":method", req.method ?? "GET"],
        [":path", req.url ?? "/"],
        [":authority", ""],
        [":scheme", "http"],
      ];
      // From the raw headers (req.headers would build a second, object copy of them).
      const raw = req.rawHeaders;
      let authority: string | undefined;
      let te: string | undefined;
      let cl: string | undefined;
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const k = raw[i]!.toLowerCase();
        if (k === "host") {
          authority ??= raw[i + 1]!;
          continue;
        }
        if (k === "transfer-encoding") te = raw[i + 1]!;
        else if (k === "content-length") cl ??= raw[i + 1]!;
        if (HOP_BY_HOP.has(k) || INTERNAL_HEADERS.includes(k)) continue;
        pairs.push([k, raw[i + 1]!]);
      }
      pairs[2]![1] = authority ?? "";
      const hasBody = te !== undefined || (cl !== undefined && cl !== "0");
      this.bodyless = !hasBody;
      this.declaredLength = te === undefined && cl !== undefined && /^\d{1,9}$/.test(cl) ? Number(cl) : null;
      this.res.on("close", () => {
        if (!this.done && !this.res.writableFinished) this.clientGone();
      });
      this.run(() => this.s!.requestHeaders(pairs, !hasBody, true), pairs, !hasBody);
      if (!hasBody) {
        req.resume();
        return;
      }
      req.on("data", (chunk: Buffer) => {
        if (this.done) return;
        this.run(() => this.s!.requestBody(chunk, false), null, false, chunk);
      });
      req.on("end", () => {
        if (this.done) return;
        this.run(() => this.s!.requestBody(EMPTY, true), null, true, EMPTY);
      });
    }

    // -------------------------------------------------------------- request path

    /** Runs one plugin step (or the pass-through equivalent when the VM failed), then acts on its output. */
    private run(step: () => unknown, headers: Pairs | null, endOfStream: boolean, chunk?: Uint8Array): void {
      if (this.s === null) {
        // Plugin bypassed (FAIL_OPEN): forward as it is.
        if (headers) {
          this.upstreamHeaders = headers;
          if (endOfStream) this.requestEnded = true;
          this.startUpstream(headers);
        } else {
          if (chunk && chunk.length > 0) this.writeUpstream(chunk);
          if (endOfStream) this.endUpstreamRequest();
        }
        return;
      }
      try {
        step();
      } catch (e) {
        this.pluginFailed(e);
        return;
      }
      this.pumpRequest();
    }

    private pumpRequest(): void {
      const s = this.s;
      if (this.done || s === null) return;
      if (s.localReply) return this.sendLocalReply();
      if (s.ended) return this.abort("the plugin reset the stream");
      if (!this.upstreamStarted && s.passedOn("request").sent) {
        const h = s.upstreamHeaders();
        if (h) {
          this.upstreamHeaders = h;
          if (s.passedOn("request").complete) {
            // The whole request is here (a buffered, body-routed one, or none): head and body in one write.
            const whole: Uint8Array[] = [];
            for (const c of s.drain("request")) {
              if (c.length === 0) continue;
              whole.push(c);
              this.retain(c);
            }
            this.wholeBody = whole;
            this.requestEnded = true;
          }
          this.startUpstream(h);
        }
      }
      if (this.upstreamStarted) {
        for (const c of s.drain("request")) if (c.length > 0) this.writeUpstream(c);
        if (s.passedOn("request").complete) this.endUpstreamRequest();
      }
    }

    private startUpstream(h: Pairs): void {
      this.upstreamStarted = true;
      const cluster = headerOf(h, "x-gateway-cluster");
      if (cluster !== undefined) {
        const eps = (headerOf(h, "x-gateway-destination-endpoint") ?? "").split(",").filter((e) => e.trim() !== "");
        this.targets = eps.map(endpointTarget).filter((t): t is Target => t !== null);
        if (this.targets.length === 0) {
          // override_host with no usable address → the cluster's fallback; it has no hosts here.
          return this.routerReply(503, FLAG.UH, "no_healthy_upstream", "no healthy upstream");
        }
      } else if (passthrough) {
        this.targets = [passthrough];
      } else {
        // No route matches (Envoy: NR, an empty 404 that local_reply_config turns into model_not_found).
        return this.routerReply(404, FLAG.NR, "route_not_found", "");
      }
      if (!this.requestEnded && this.declaredLength !== null && this.declaredLength <= Math.min(SMALL_BODY, bufferLimit)) {
        // A small body of announced length (a chat request) goes out with the head in one write once it is
        // all here; node:http's ClientRequest did the same by holding its head until the first body write.
        this.heldForBody = true;
        return;
      }
      this.attempt(0);
    }

    /** The request's content-length, when it has one and no transfer-encoding. */
    private declaredLength: number | null = null;
    /** The first attempt waits for the rest of a small body (startUpstream). */
    private heldForBody = false;

    /** The whole body when it was all here before the first attempt (sent even if too large to keep for retries). */
    private wholeBody: Uint8Array[] | null = null;

    /** Keeps a body chunk for retries while within the buffer limit. */
    private retain(c: Uint8Array): void {
      if (!this.retainBody) return;
      this.sentChunks.push(c);
      this.sentBytes += c.length;
      if (this.sentBytes > bufferLimit) {
        // Too large to resend: no more retries for this request (Envoy: retry needs the buffered body).
        this.retainBody = false;
        this.sentChunks = [];
      }
    }

    private writeUpstream(c: Uint8Array): void {
      this.retain(c);
      const up = this.up;
      if (up && !up.finished && !this.done && !up.write(c) && !this.req.isPaused()) {
        this.req.pause();
        up.onDrain(() => this.req.resume());
      }
    }

    private endUpstreamRequest(): void {
      if (this.requestEnded) return;
      this.requestEnded = true;
      if (this.heldForBody) {
        this.heldForBody = false;
        if (!this.done) this.attempt(0);
      } else if (this.up && !this.up.finished) this.up.end();
    }

    /** Forgets the current attempt and cuts it (its events no longer reach this exchange). */
    private dropUpstream(): void {
      const up = this.up;
      this.up = null;
      up?.abort();
    }

    /**
     * One attempt on targets[i]. Timeouts as Envoy's: the cluster's connect_timeout (a connect failure, UF:
     * retried on the next endpoint), then the route's per-try idle timeout — from the request fully sent to the
     * response headers (`firstByteTimeoutMs`) and between response body chunks (`idleTimeoutMs`). Before any
     * response byte a timeout is retried like a reset (retry_on `reset`), else it is a 504 with flag UT.
     */
    private attempt(i: number, sameHostAgain = false): void {
      const t = this.targets[i]!;
      const h = this.upstreamHeaders!;
      const headers: string[] = [];
      let authority = headerOf(h, ":authority") ?? "";
      if (t.authority) authority = t.authority;
      headers.push("host", authority);
      for (const [k, v] of h) if (!k.startsWith(":") && !NOT_UPSTREAM.has(k)) headers.push(k, v);
      const path = t.pathPrefix + (headerOf(h, ":path") ?? "/");
      const method = headerOf(h, ":method") ?? "GET";
      // A request already whole goes out in one write; otherwise what was forwarded so far, then the rest as it comes.
      let body: Uint8Array[] | "stream" = "stream";
      if (this.requestEnded) {
        body = this.retainBody ? this.sentChunks : (this.wholeBody ?? []);
        this.wholeBody = null;
      }
      const up = upstreams.request(t, method, path, headers, body, this, sameHostAgain);
      up.index = i;
      this.up = up;
      up.start();
      // Resend what was already forwarded (retries), then go on streaming.
      if (body === "stream" && this.up === up) for (const c of this.sentChunks) up.write(c);
    }

    // ---- the attempt's events (UpstreamEvents): methods, not closures per attempt

    /**
     * The per-try idle timer starts once the whole request is on the wire (Envoy: request complete and a
     * connection obtained) and waits for the response headers.
     */
    upstreamSent(up: UpstreamRequest): void {
      if (this.up !== up || this.done || this.gotResponse) return;
      up.timer = setTimeout(firstByteTimedOut, settings.firstByteTimeoutMs, up);
    }

    upstreamHead(up: UpstreamRequest, status: number, raw: string[]): void {
      clearFirstByte(up);
      if (this.up !== up || this.done) return up.abort();
      this.onUpstreamResponse(status, raw, up.target);
    }

    /** A response body chunk; false holds the instance (the client is slower). */
    upstreamData(up: UpstreamRequest, c: Buffer): boolean {
      if (this.done || this.up !== up) return false;
      if (!up.isPaused) this.armIdle(up.target);
      this.respStep(() => this.s!.responseBody(c, false), null, false, c);
      return !up.isPaused;
    }

    upstreamEnd(up: UpstreamRequest): void {
      if (this.up !== up) return;
      this.armIdle(null);
      if (this.done) return;
      if (this.responseNoBody) return this.pumpResponse();
      this.respStep(() => this.s!.responseBody(EMPTY, true), null, true, EMPTY);
    }

    upstreamError(up: UpstreamRequest, err: Error & { code?: string }): void {
      clearFirstByte(up);
      if (this.up !== up || this.done) return;
      const t = up.target;
      const i = up.index;
      if (this.gotResponse) return this.upstreamResetMidStream(t);
      if (REQUEST_REFUSED.has(err.code ?? "")) return this.internalError(`the request cannot be sent to ${t.address}: ${err.message}`);
      const timedOut = err.code === UPSTREAM_TIMEOUT;
      const connectFailure = !timedOut && CONNECT_FAILURES.has(err.code ?? "");
      // A kept-alive connection the server closed as we wrote: retry once on a connection of its own to the
      // same host (the pool could hand out another such one). undici's socket errors say how much the
      // connection had read before (0: it was new).
      const reused = ((err as { socket?: { bytesRead?: number } }).socket?.bytesRead ?? 1) > 0;
      if (!timedOut && !connectFailure && reused && !up.fresh && !this.retriedSameHost && this.canResend()) {
        this.retriedSameHost = true;
        return this.attempt(i, true);
      }
      if (i + 1 < this.targets.length && this.canResend()) {
        log(`[dataplane] ${t.address}: ${timedOut ? `no response headers within ${settings.firstByteTimeoutMs} ms` : (err.code ?? err.message)} before any response byte; retrying on ${this.targets[i + 1]!.address}`);
        return this.attempt(i + 1);
      }
      this.setProp("upstream.address", enc.encode(t.address));
      const retried = i > 0 ? FLAG.URX : 0n;
      if (timedOut) return this.routerReply(504, FLAG.UT | retried, "upstream_per_try_idle_timeout", "upstream request timeout");
      // Envoy's router: the reset reason in the body and the details (spaces → underscores).
      const reason = !connectFailure ? "remote reset" : err.code === CONNECT_TIMEOUT ? "connection timeout" : "connection failure";
      const text = `upstream connect error or disconnect/reset before headers. ${i > 0 ? "retried and the latest " : ""}reset reason: ${reason}`;
      this.routerReply(503, (connectFailure ? FLAG.UF : FLAG.UR) | retried, `upstream_reset_before_response_started{${reason.replace(/ /g, "_")}}`, text);
    }

    /** A retry must resend the whole request body forwarded so far. */
    private canResend(): boolean {
      return this.retainBody;
    }

    // -------------------------------------------------------------- response path

    private idleTimer: NodeJS.Timeout | null = null;

    private idleTarget: Target | null = null;

    /** (Re)arms the per-try idle timer between response body chunks (one Timeout, refreshed); null clears it. */
    private armIdle(t: Target | null): void {
      if (t !== null && !this.done && this.idleTimer !== null && this.idleTarget === t) {
        this.idleTimer.refresh();
        return;
      }
      if (this.idleTimer) clearTimeout(this.idleTimer);
      this.idleTimer = null;
      this.idleTarget = t;
      if (t === null || this.done) return;
      this.idleTimer = setTimeout(() => this.upstreamIdleTimeout(t), settings.idleTimeoutMs);
    }

    private onUpstreamResponse(status: number, raw: string[], t: Target): void {
      this.gotResponse = true;
      this.upTarget = t;
      this.setProp("upstream.address", enc.encode(t.address));
      const pairs: Pairs = [[":status", String(status)]];
      let emptyBody = false;
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const k = raw[i]!.toLowerCase();
        if (k === "content-length" && raw[i + 1]!.trim() === "0") emptyBody = true;
        if (!HOP_BY_HOP.has(k)) pairs.push([k, raw[i + 1]!]);
      }
      this.responseNoBody = this.req.method === "HEAD" || status === 204 || status === 304 || emptyBody;
      if (!this.responseNoBody) this.armIdle(t);
      this.respStep(() => this.s!.responseHeaders(pairs, this.responseNoBody, true), pairs, this.responseNoBody);
    }

    private upTarget: Target | null = null;
    private bypassResp: { headers: Pairs | null; chunks: Uint8Array[]; complete: boolean } = { headers: null, chunks: [], complete: false };

    private respStep(step: () => unknown, headers: Pairs | null, endOfStream: boolean, chunk?: Uint8Array): void {
      if (this.s === null) {
        if (headers) this.bypassResp.headers = headers;
        if (chunk && chunk.length > 0) this.bypassResp.chunks.push(chunk);
        if (endOfStream) this.bypassResp.complete = true;
        return this.pumpResponse();
      }
      try {
        step();
      } catch (e) {
        this.pluginFailed(e);
        return;
      }
      this.pumpResponse();
    }

    private pumpResponse(): void {
      if (this.done) return;
      const res = this.res;
      let headers: Pairs | null;
      let chunks: Uint8Array[];
      let complete: boolean;
      if (this.s === null) {
        headers = this.bypassResp.headers;
        chunks = this.bypassResp.chunks;
        this.bypassResp.chunks = [];
        complete = this.bypassResp.complete;
      } else {
        const s = this.s;
        if (s.localReply) return this.sendLocalReply();
        if (s.ended) return this.abort("the plugin reset the stream");
        const side = s.passedOn("response");
        headers = side.sent && !this.downstreamStarted ? s.downstreamHeaders() : null;
        chunks = side.sent ? s.drain("response") : [];
        complete = side.complete;
      }
      let headed = false;
      if (!this.downstreamStarted && headers) {
        this.downstreamStarted = true;
        this.writeHead(headers);
        headed = true;
      }
      if (!this.downstreamStarted) return;
      let wrote = false;
      for (const c of chunks) {
        if (c.length === 0) continue;
        wrote = true;
        if (!res.write(c) && this.up && !this.up.isPaused && !this.up.finished) {
          // The client reads slower than the instance writes: hold the instance (and its idle timer — a slow
          // client is not a stalled instance) until the client has caught up.
          const up = this.up;
          up.pause();
          this.armIdle(null);
          res.once("drain", () => {
            if (this.done || up.finished) return;
            this.armIdle(this.upTarget);
            up.resume();
          });
        }
      }
      if (complete || (this.responseNoBody && this.up?.complete)) {
        res.end();
        this.finish();
      } else if (headed && !wrote) {
        // Headers with no body yet. A body read with them is emitted in a later tick (the response stream
        // resumes on nextTick) and then carries them in one write; a stream still waiting for its first
        // token gets them at the end of this turn of the event loop, as Envoy sends them at once.
        setImmediate(() => {
          if (!this.done && !this.bodyStarted) res.flushHeaders();
        });
      }
      if (wrote) this.bodyStarted = true;
    }

    /** A response body chunk went to the client (with it, the headers). */
    private bodyStarted = false;

    private writeHead(headers: Pairs): void {
      const status = Number(headerOf(headers, ":status") ?? 502);
      const flat: string[] = [];
      for (const [k, v] of headers) if (!k.startsWith(":") && !HOP_BY_HOP.has(k)) flat.push(k, v);
      if (this.replyEarly) flat.push("connection", "close");
      this.res.writeHead(status, flat);
    }

    /**
     * Set while the gateway replies on its own (a local reply) before the client has sent its whole request:
     * that response closes the connection, gracefully (see `lingerClose`).
     */
    private replyEarly = false;

    private bodyless = false;

    private markEarlyReply(): void {
      if (this.bodyless || this.req.complete || this.replyEarly) return;
      this.replyEarly = true;
      lingerClose(this.req, lingerLimits, lingering);
    }

    /**
     * A reply Envoy's router makes itself (no route, no host, connect failure, timeout): local_reply_config
     * turns it into OpenAI's error JSON; then it runs through the encoder filters, so the plugin's
     * on_response_* see it, with the flags and details Envoy sets.
     */
    private routerReply(status: number, flags: bigint, details: string, bodyText: string): void {
      this.setProp("response.flags", int64(flags));
      this.setProp("response.code_details", enc.encode(details));
      const mapped = mapLocalReply(status, flags, details, bodyText);
      const body = mapped ? mapped.body : enc.encode(bodyText);
      const headers: Pairs = mapped ? mapped.headers : [["content-type", "text/plain"], ["content-length", String(body.length)]];
      this.markEarlyReply();
      this.responseNoBody = body.length === 0;
      const pairs: Pairs = [[":status", String(status)], ...headers];
      this.respStep(() => this.s!.responseHeaders(pairs, body.length === 0), pairs, body.length === 0);
      if (body.length > 0 && !this.done) this.respStep(() => this.s!.responseBody(body, true), null, true, body);
      if (!this.done && body.length === 0) {
        this.res.end();
        this.finish();
      }
    }

    /** The plugin's local reply as it made it; a host reply (the buffer's 413) as local_reply_config maps it. */
    private sendLocalReply(): void {
      const lr = this.s!.localReply!;
      const res = this.res;
      if (res.headersSent) return this.abort("local reply after the response started");
      this.dropUpstream();
      this.armIdle(null);
      const mapped = mapLocalReply(lr.status, 0n, lr.details, lr.bodyText);
      const flat: string[] = [];
      for (const [k, v] of lr.headers) {
        if (k.startsWith(":") || HOP_BY_HOP.has(k)) continue;
        if (mapped && (k === "content-type" || k === "content-length")) continue;
        flat.push(k, v);
      }
      if (mapped) for (const [k, v] of mapped.headers) flat.push(k, v);
      this.markEarlyReply();
      if (this.replyEarly) flat.push("connection", "close");
      res.writeHead(mapped?.status ?? lr.status, flat);
      res.end(Buffer.from(mapped ? mapped.body : lr.body));
      this.req.resume(); // discard what the client still sends
      this.finish();
    }

    /** A request the forwarder cannot send at all (not the instance's fault): 500, as the server's own catch. */
    private internalError(why: string): void {
      log(`[dataplane] internal error: ${why}`);
      this.routerReply(500, 0n, "local_dataplane_internal_error", "internal error in the local data plane");
    }

    private upstreamResetMidStream(t: Target): void {
      if (this.done) return;
      this.armIdle(null);
      this.setProp("upstream.address", enc.encode(t.address));
      this.setProp("response.flags", int64(FLAG.UR));
      this.abort(`upstream ${t.address} reset the stream`);
    }

    /** No response body data for idleTimeoutMs: Envoy's per-try idle timeout after the response started (UT, stream reset). */
    private upstreamIdleTimeout(t: Target): void {
      this.idleTimer = null;
      if (this.done) return;
      this.setProp("upstream.address", enc.encode(t.address));
      this.setProp("response.flags", int64(FLAG.UT));
      this.setProp("response.code_details", enc.encode("upstream_per_try_idle_timeout"));
      this.abort(`upstream ${t.address}: no response data for ${settings.idleTimeoutMs} ms; stream cut`);
    }

    private clientGone(): void {
      if (this.done) return;
      this.setProp("response.flags", int64(FLAG.DC));
      this.dropUpstream();
      this.finish();
    }

    private abort(why: string): void {
      if (this.done) return;
      log(`[dataplane] ${why}`);
      this.dropUpstream();
      this.res.destroy();
      this.finish();
    }

    private pluginFailed(e: unknown): void {
      log(`[dataplane] plugin failure on worker ${this.worker}: ${e instanceof Error ? e.message : String(e)}`);
      const res = this.res;
      if (this.done) return;
      if (res.headersSent) return this.abort("plugin failed mid-stream");
      // Envoy's wasm filter: an empty 503 "wasm_fail_stream", which local_reply_config makes plugin_failure.
      const r = mapLocalReply(503, 0n, "wasm_fail_stream", "")!;
      this.dropUpstream();
      this.markEarlyReply();
      res.writeHead(r.status, [...r.headers.flat(), ...(this.replyEarly ? ["connection", "close"] : [])]);
      res.end(Buffer.from(r.body));
      this.req.resume();
      this.s = null;
      this.finish();
    }

    private setProp(path: string, value: Uint8Array): void {
      if (this.s) this.s.setProperty(path, value);
    }

    linkOpen(): void {
      this.openNext = openFirst;
      if (openFirst !== null) openFirst.openPrev = this;
      openFirst = this;
    }

    private unlinkOpen(): void {
      const prev = this.openPrev;
      const next = this.openNext;
      if (prev !== null) prev.openNext = next;
      else if (openFirst === this) openFirst = next;
      if (next !== null) next.openPrev = prev;
      this.openPrev = this.openNext = null;
    }

    /** on_log, on_done, on_delete (Envoy ends the stream once both directions are over). */
    finish(): void {
      if (this.done) return;
      this.done = true;
      this.unlinkOpen();
      this.armIdle(null);
      if (this.up && !this.up.finished) this.dropUpstream();
      const s = this.s;
      this.s = null;
      if (s) {
        try {
          s.close();
        } catch (e) {
          log(`[dataplane] plugin failure at stream end on worker ${this.worker}: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    }
  }

  const server: Server = createServer((req, res) => {
    const w = nextWorker;
    nextWorker = (nextWorker + 1) % workers;
    let ex: Exchange | null = null;
    try {
      ex = new Exchange(req, res, w);
      ex.linkOpen();
      ex.start();
    } catch (e) {
      log(`[dataplane] internal error: ${e instanceof Error ? e.stack : String(e)}`);
      const r = mapLocalReply(500, 0n, "local_dataplane_internal_error", "internal error in the local data plane")!;
      if (!res.headersSent) res.writeHead(r.status, r.headers.flat());
      res.end(Buffer.from(r.body));
      ex?.finish();
    }
  });
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = 0; // token streams may take long; no total cap (Envoy: request_timeout 0s)
  const listenHost = opts.host ?? "127.0.0.1";
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(opts.port ?? 10_000, listenHost, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (e) {
    clearInterval(drainTimer);
    await bridge.stop();
    host.shutdown();
    throw e;
  }
  const port = (server.address() as AddressInfo).port;
  const tableVersion = () => host.metrics.get("gateway.table.version")?.value ?? 0;
  let closing: Promise<void> | null = null;

  return {
    url: `http://${listenHost.includes(":") ? `[${listenHost}]` : listenHost}:${port}`,
    port,
    host,
    bridge,
    settings,
    tableVersion,
    async waitForTable(version, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      // Each worker's own adoption, from its log line (info); below info, the fallback: the gauge reached
      // the version and every worker has ticked since (a tick reads shared data).
      const logged = LOG_RANK[opts.logLevel ?? "info"] <= LOG_RANK.info;
      let seenAt: number | null = null;
      for (;;) {
        drain();
        if (logged) {
          if (Array.from({ length: workers }, (_, i) => i).every((i) => host.worker(i).failure !== null || (adopted.get(i) ?? 0) >= version)) return;
        } else {
          if (seenAt === null && tableVersion() >= version) seenAt = host.now;
          if (seenAt !== null) {
            const since = seenAt;
            const all = Array.from({ length: workers }, (_, i) => host.worker(i)).every(
              (w) => w.failure !== null || (w.nextTickAt !== null && w.nextTickAt - w.tickPeriod > since),
            );
            if (all) return;
          }
        }
        if (Date.now() > deadline) throw new Error(`the data plane did not get routing table version ${version} within ${timeoutMs} ms (has ${tableVersion()})`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        const inProgress: Exchange[] = [];
        for (let ex = openFirst; ex !== null; ex = ex.openNext) inProgress.push(ex);
        for (const ex of inProgress) ex.finish();
        // Every connection (node:http tracks them; no per-connection Set here, for the reason above), and
        // those lingering after an early reply, which it may no longer count.
        server.closeAllConnections();
        for (const s of [...lingering]) s.destroy();
        await closed;
        await upstreams.close();
        await bridge.stop();
        clearInterval(drainTimer);
        try {
          host.shutdown();
        } catch {
          // a failed VM: nothing more to stop
        }
        drain();
      })();
      return closing;
    },
  };
}
