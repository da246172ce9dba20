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
 * - `x-gateway-cluster` set → routed: tries the first `ip:port` of `x-gateway-destination-endpoint`, and on
 *   a connect failure / refusal / reset before any response byte the next one (Envoy's retry_policy
 *   `connect-failure,reset,refused-stream` with the override_host LB policy). Retries resend the request
 *   body, so they happen only while it fits the buffer limit (as in Envoy);
 * - no cluster header → passthrough to `passthroughUrl` (Envoy's fall-through route), else a 404 JSON
 *   "no route";
 * - local replies from the plugin (status, headers, body) go to the client as they are;
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
import { createServer, request as httpRequest, Agent, type ClientRequest, type IncomingMessage, type Server, type ServerResponse, type OutgoingHttpHeaders } from "node:http";
import { request as httpsRequest, Agent as HttpsAgent } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { ProxyWasmHost, type HttpStream } from "./host/index.js";
import { bridgePlugin, type PluginBridge } from "./bridge.js";

export const DEFAULT_PLUGIN_WASM = fileURLToPath(new URL("../../build/plugin.wasm", import.meta.url));
export const CONTROL_CLUSTER = "gateway_control";

type Host = Awaited<ReturnType<typeof ProxyWasmHost.start>>;
type Pairs = Array<[string, string]>;

export interface LocalDataPlaneOptions {
  /** Base URL of the control service, e.g. http://127.0.0.1:8080. */
  controlUrl: string;
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
  /** Request body bytes kept for retries / read for body routing (Envoy's per_connection_buffer_limit_bytes). */
  bufferLimitBytes?: number;
  /** Connect timeout per upstream attempt (Envoy's cluster connect_timeout). Default 2000 ms. */
  connectTimeoutMs?: number;
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
export const FLAG = { UH: 0x2n, LR: 0x8n, UR: 0x10n, UF: 0x20n, NR: 0x100n, DC: 0x4000n, URX: 0x8000n } as const;

/** Clients may never set these (envoy/bootstrap.yaml's header_mutation filter strips them before the plugin). */
export const INTERNAL_HEADERS = ["x-gateway-cluster", "x-gateway-destination-endpoint", "x-model-deployment", "x-model-instance"];
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "http2-settings"]);
const EMPTY = new Uint8Array(0);
const enc = new TextEncoder();

function int64(v: bigint): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(v);
  return new Uint8Array(b.buffer, b.byteOffset, 8);
}

const headerOf = (pairs: Pairs, name: string): string | undefined => pairs.find(([k]) => k === name)?.[1];


interface Target {
  /** What upstream.address reports (ip:port as in the routing table, or the passthrough host:port). */
  address: string;
  protocol: "http:" | "https:";
  hostname: string;
  port: number;
  pathPrefix: string;
  /** Host header override (passthrough: host_rewrite_literal). */
  authority?: string;
}

function endpointTarget(ep: string): Target | null {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+):(\d{1,5})$/.exec(ep.trim());
  if (!m) return null;
  const hostname = m[1]!.startsWith("[") ? m[1]!.slice(1, -1) : m[1]!;
  return { address: ep.trim(), protocol: "http:", hostname, port: Number(m[2]), pathPrefix: "" };
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
  const bufferLimit = opts.bufferLimitBytes ?? 1 << 20;
  const connectTimeoutMs = opts.connectTimeoutMs ?? 2_000;
  const log = opts.log ?? ((line: string) => process.stderr.write(line + "\n"));
  const passthrough = opts.passthroughUrl ? passthroughTarget(opts.passthroughUrl) : null;

  const configuration = {
    control_cluster: CONTROL_CLUSTER,
    ...(opts.pluginToken ? { control_token: opts.pluginToken } : {}),
    poll_interval_ms: 500,
    long_poll_seconds: 20,
    control_timeout_ms: 25_000,
    max_body_bytes: Math.min(bufferLimit, 16 * 1024 * 1024),
    ...opts.pluginConfig,
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
    bufferLimitBytes: bufferLimit,
    now: Date.now(),
    logLevel: opts.logLevel ?? "info",
    properties: { "node.id": opts.nodeId ?? "local-dataplane" },
  });
  const bridge = bridgePlugin(host, { clusters: { [CONTROL_CLUSTER]: opts.controlUrl } });

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

  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 256 });
  let nextWorker = 0;
  const open = new Set<Exchange>();

  // ------------------------------------------------------------------ one request
  class Exchange {
    private s: HttpStream | null;
    private done = false;
    private upstreamStarted = false;
    private upstreamHeaders: Pairs | null = null;
    private targets: Target[] = [];
    private cr: ClientRequest | null = null;
    private upRes: IncomingMessage | null = null;
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
        [":authority", req.headers.host ?? ""],
        [":scheme", "http"],
      ];
      const raw = req.rawHeaders;
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const k = raw[i]!.toLowerCase();
        if (k === "host" || HOP_BY_HOP.has(k) || INTERNAL_HEADERS.includes(k)) continue;
        pairs.push([k, raw[i + 1]!]);
      }
      const te = req.headers["transfer-encoding"];
      const cl = req.headers["content-length"];
      const hasBody = te !== undefined || (cl !== undefined && cl !== "0");
      this.res.on("close", () => {
        if (!this.done && !this.res.writableFinished) this.clientGone();
      });
      this.run(() => this.s!.requestHeaders(pairs, !hasBody), pairs, !hasBody);
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
          this.startUpstream(headers);
          if (endOfStream) this.endUpstreamRequest();
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
        const h = s.result().upstreamHeaders;
        if (h) {
          this.upstreamHeaders = h;
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
          const e = jsonError(503, `no healthy upstream for cluster ${cluster}`, "server_error", "no_healthy_upstream");
          return this.gatewayReply(e.status, e.headers, e.body, FLAG.UH, "no_healthy_upstream");
        }
      } else if (passthrough) {
        this.targets = [passthrough];
      } else {
        const e = jsonError(404, "no route: the model is not managed by this gateway and no passthrough upstream is configured (PASSTHROUGH_URL)", "invalid_request_error", "no_route");
        return this.gatewayReply(e.status, e.headers, e.body, FLAG.NR, "route_not_found");
      }
      this.attempt(0);
    }

    private writeUpstream(c: Uint8Array): void {
      if (this.retainBody) {
        this.sentChunks.push(c);
        this.sentBytes += c.length;
        if (this.sentBytes > bufferLimit) {
          // Too large to resend: no more retries for this request (Envoy: retry needs the buffered body).
          this.retainBody = false;
          this.sentChunks = [];
        }
      }
      const cr = this.cr;
      if (cr && !cr.destroyed && !this.done && !cr.write(c) && !this.req.isPaused()) {
        this.req.pause();
        cr.once("drain", () => this.req.resume());
      }
    }

    private endUpstreamRequest(): void {
      if (this.requestEnded) return;
      this.requestEnded = true;
      if (this.cr && !this.cr.destroyed) this.cr.end();
    }

    private attempt(i: number, sameHostAgain = false): void {
      const t = this.targets[i]!;
      const h = this.upstreamHeaders!;
      const headers: string[] = [];
      let authority = headerOf(h, ":authority") ?? "";
      if (t.authority) authority = t.authority;
      headers.push("host", authority);
      for (const [k, v] of h) if (!k.startsWith(":") && !HOP_BY_HOP.has(k)) headers.push(k, v);
      const path = t.pathPrefix + (headerOf(h, ":path") ?? "/");
      const method = headerOf(h, ":method") ?? "GET";
      const requester = t.protocol === "https:" ? httpsRequest : httpRequest;
      const cr = requester({
        protocol: t.protocol,
        hostname: t.hostname,
        port: t.port,
        method,
        path,
        headers: headers as unknown as OutgoingHttpHeaders, // raw [k, v, k, v…] keeps repeated headers
        agent: t.protocol === "https:" ? httpsAgent : agent,
        servername: t.protocol === "https:" ? t.hostname : undefined,
      });
      this.cr = cr;
      let connectTimer: NodeJS.Timeout | null = null;
      cr.on("socket", (sock: Socket) => {
        if (!sock.connecting) return;
        connectTimer = setTimeout(() => cr.destroy(Object.assign(new Error("connect timeout"), { code: "ETIMEDOUT" })), connectTimeoutMs);
        sock.once("connect", () => connectTimer && clearTimeout(connectTimer));
      });
      cr.on("response", (up) => {
        if (connectTimer) clearTimeout(connectTimer);
        if (this.cr !== cr || this.done) {
          up.destroy();
          return;
        }
        this.onUpstreamResponse(up, t);
      });
      cr.on("error", (err: NodeJS.ErrnoException) => {
        if (connectTimer) clearTimeout(connectTimer);
        if (this.cr !== cr || this.done) return;
        if (this.gotResponse) return this.upstreamResetMidStream(t);
        const connectFailure = ["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "EADDRNOTAVAIL", "ENOTFOUND", "EAI_AGAIN"].includes(err.code ?? "");
        // A kept-alive connection the server had just closed: retry once on a fresh connection to the same host.
        if (!connectFailure && cr.reusedSocket && !sameHostAgain && !this.retriedSameHost && this.canResend()) {
          this.retriedSameHost = true;
          return this.attempt(i, true);
        }
        if (i + 1 < this.targets.length && this.canResend()) {
          log(`[dataplane] ${t.address}: ${err.code ?? err.message} before any response byte; retrying on ${this.targets[i + 1]!.address}`);
          return this.attempt(i + 1);
        }
        this.setProp("upstream.address", enc.encode(t.address));
        const flags = (connectFailure ? FLAG.UF : FLAG.UR) | (i > 0 ? FLAG.URX : 0n);
        const reason = connectFailure ? "connection_failure" : "remote_reset";
        const body = enc.encode(`upstream connect error or disconnect/reset before headers. reset reason: ${connectFailure ? "connection failure" : "remote reset"}`);
        this.gatewayReply(503, [["content-type", "text/plain"], ["content-length", String(body.length)]], body, flags, `upstream_reset_before_response_started{${reason}}`);
      });
      // Resend what was already forwarded (retries), then go on streaming.
      for (const c of this.sentChunks) cr.write(c);
      if (this.requestEnded) cr.end();
    }

    /** A retry must resend the whole request body forwarded so far. */
    private canResend(): boolean {
      return this.retainBody;
    }

    // -------------------------------------------------------------- response path

    private onUpstreamResponse(up: IncomingMessage, t: Target): void {
      this.gotResponse = true;
      this.upRes = up;
      this.setProp("upstream.address", enc.encode(t.address));
      const pairs: Pairs = [[":status", String(up.statusCode ?? 502)]];
      const raw = up.rawHeaders;
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const k = raw[i]!.toLowerCase();
        if (!HOP_BY_HOP.has(k)) pairs.push([k, raw[i + 1]!]);
      }
      const status = up.statusCode ?? 502;
      this.responseNoBody = this.req.method === "HEAD" || status === 204 || status === 304 || up.headers["content-length"] === "0";
      this.respStep(() => this.s!.responseHeaders(pairs, this.responseNoBody), pairs, this.responseNoBody);
      up.on("data", (c: Buffer) => {
        if (this.done) return;
        this.respStep(() => this.s!.responseBody(c, false), null, false, c);
      });
      up.on("end", () => {
        if (this.done) return;
        if (this.responseNoBody) return this.pumpResponse();
        this.respStep(() => this.s!.responseBody(EMPTY, true), null, true, EMPTY);
      });
      up.on("error", () => this.upstreamResetMidStream(t));
      up.on("aborted", () => this.upstreamResetMidStream(t));
    }

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
        headers = side.sent && !this.downstreamStarted ? s.result().downstreamHeaders : null;
        chunks = side.sent ? s.drain("response") : [];
        complete = side.complete;
      }
      if (!this.downstreamStarted && headers) {
        this.downstreamStarted = true;
        this.writeHead(headers);
      }
      if (!this.downstreamStarted) return;
      for (const c of chunks) {
        if (c.length === 0) continue;
        if (!res.write(c) && this.upRes && !this.upRes.isPaused()) {
          const up = this.upRes;
          up.pause();
          res.once("drain", () => up.resume());
        }
      }
      if (complete || (this.responseNoBody && this.upRes?.complete)) {
        res.end();
        this.finish();
      }
    }

    private writeHead(headers: Pairs): void {
      const status = Number(headerOf(headers, ":status") ?? 502);
      const flat: string[] = [];
      for (const [k, v] of headers) if (!k.startsWith(":") && !HOP_BY_HOP.has(k)) flat.push(k, v);
      this.res.writeHead(status, flat);
      this.res.flushHeaders();
    }

    /**
     * A reply Envoy's router makes itself (no route, no host, connect failure): it runs through the
     * encoder filters, so the plugin's on_response_* see it, with the flags and details Envoy sets.
     */
    private gatewayReply(status: number, headers: Pairs, body: Uint8Array, flags: bigint, details: string): void {
      this.setProp("response.flags", int64(flags));
      this.setProp("response.code_details", enc.encode(details));
      this.responseNoBody = body.length === 0;
      this.respStep(() => this.s!.responseHeaders([[":status", String(status)], ...headers], body.length === 0), [[":status", String(status)], ...headers], body.length === 0);
      if (body.length > 0 && !this.done) this.respStep(() => this.s!.responseBody(body, true), null, true, body);
      if (!this.done && body.length === 0) {
        this.res.end();
        this.finish();
      }
    }

    private sendLocalReply(): void {
      const lr = this.s!.localReply!;
      const res = this.res;
      if (res.headersSent) return this.abort("local reply after the response started");
      this.cr?.destroy();
      const flat: string[] = [];
      for (const [k, v] of lr.headers) if (!k.startsWith(":") && !HOP_BY_HOP.has(k)) flat.push(k, v);
      res.writeHead(lr.status, flat);
      res.end(Buffer.from(lr.body));
      this.req.resume(); // discard what the client still sends
      this.finish();
    }

    private upstreamResetMidStream(t: Target): void {
      if (this.done) return;
      this.setProp("upstream.address", enc.encode(t.address));
      this.setProp("response.flags", int64(FLAG.UR));
      this.abort(`upstream ${t.address} reset the stream`);
    }

    private clientGone(): void {
      if (this.done) return;
      this.setProp("response.flags", int64(FLAG.DC));
      this.cr?.destroy();
      this.finish();
    }

    private abort(why: string): void {
      if (this.done) return;
      log(`[dataplane] ${why}`);
      this.cr?.destroy();
      this.res.destroy();
      this.finish();
    }

    private pluginFailed(e: unknown): void {
      log(`[dataplane] plugin failure on worker ${this.worker}: ${e instanceof Error ? e.message : String(e)}`);
      const res = this.res;
      if (this.done) return;
      if (res.headersSent) return this.abort("plugin failed mid-stream");
      const r = jsonError(503, "the gateway plugin failed on this request", "server_error", "plugin_failure");
      this.cr?.destroy();
      res.writeHead(r.status, r.headers.flat());
      res.end(Buffer.from(r.body));
      this.req.resume();
      this.s = null;
      this.finish();
    }

    private setProp(path: string, value: Uint8Array): void {
      if (this.s) this.s.setProperty(path, value);
    }

    /** on_log, on_done, on_delete (Envoy ends the stream once both directions are over). */
    finish(): void {
      if (this.done) return;
      this.done = true;
      open.delete(this);
      if (this.cr && !this.cr.destroyed && !(this.upRes?.complete ?? false)) this.cr.destroy();
      const s = this.s;
      this.s = null;
      if (s) {
        try {
          s.finish();
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
      open.add(ex);
      ex.start();
    } catch (e) {
      log(`[dataplane] internal error: ${e instanceof Error ? e.stack : String(e)}`);
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end("internal error");
      ex?.finish();
    }
  });
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = 0; // token streams may take long; no total cap (Envoy: request_timeout 0s)
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
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
        for (const ex of [...open]) ex.finish();
        for (const s of sockets) s.destroy();
        await closed;
        agent.destroy();
        httpsAgent.destroy();
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
