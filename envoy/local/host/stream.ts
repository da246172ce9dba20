import { DataStatus, HeadersStatus, MapType, Status } from "./abi.js";
import { HeaderMap, serializePairs } from "./header-map.js";
import type { ProxyWasmHost } from "./host.js";
import type { Chunk, FastUpstream, ForeignCall, HeaderPairs, LocalReply, Outcome, PropertyValue, RequestResult, UpstreamResponse } from "./types.js";
import { serializeProperty, type RootContext, type WorkerVm } from "./worker.js";

const EMPTY = new Uint8Array(0);
const decoder = new TextDecoder();

/** Serialized int64 properties (response.code), shared: copyOut only reads them. */
const intBytes = new Map<number, Uint8Array>();
function codeBytes(code: number): Uint8Array {
  let b = intBytes.get(code);
  if (b === undefined) {
    b = serializeProperty(BigInt(code));
    if (intBytes.size < 1024) intBytes.set(code, b);
  }
  return b;
}

type Direction = "request" | "response";

/** Per-direction filter state, mirroring Envoy's filter manager around one wasm filter. */
class Side {
  headers: HeaderMap | null = null;
  /** Headers as they were sent on, when the plugin changed them afterwards. */
  sentHeaders: HeaderPairs | null = null;
  /** Envoy's request_headers_/response_headers_ pointer is set (map readable and writable). */
  mapOpen = false;
  /** Headers were passed on (upstream for requests, downstream for responses). */
  sent = false;
  /** Downstream/upstream signalled end of stream. */
  endSeen = false;
  /** End of stream was passed on: this direction is complete. */
  complete = false;
  /** Headers returned StopIteration with allow_on_headers_stop_iteration: body still reaches the plugin. */
  held = false;
  /** Headers returned StopAll*: the filter manager keeps body away from the plugin until continue. */
  stopAll = false;
  stopAllLimited = false;
  pendingAll: Uint8Array = EMPTY;
  /** Body callback returned StopIterationAndBuffer/Watermark: the next chunk is appended and the plugin sees all. */
  buffering = false;
  bufferingLimited = false;
  buffered: Uint8Array = EMPTY;
  /** What get_buffer_bytes sees now (the current chunk, or the whole buffer while buffering). */
  view: Uint8Array | null = null;
  forwarded: Uint8Array[] = [];
  trailers: HeaderMap | null = null;
  trailersOpen = false;
  continueRequested = false;
  processing = false;

  reset(): void {
    this.headers = null;
    this.sentHeaders = null;
    this.mapOpen = this.sent = this.endSeen = this.complete = this.held = this.stopAll = this.stopAllLimited = false;
    this.buffering = this.bufferingLimited = this.continueRequested = this.processing = this.trailersOpen = false;
    this.pendingAll = this.buffered = EMPTY;
    this.view = null;
    this.trailers = null;
    if (this.forwarded.length > 0) this.forwarded = [];
  }
}

/** One HTTP stream context (Envoy's wasm Context for an HTTP filter instance). */
export class HttpStream {
  readonly isRoot = false;
  id: number;
  readonly callbacks: string[] = [];
  readonly foreignCalls: ForeignCall[] = [];
  /**
   * Route cache clears on this stream: the clear_route_cache foreign function, and (ABI 0.2.1) every
   * change to the request headers while Envoy holds them (context.cc onHeadersModified; only modules
   * newer than ABI 0.2.1 lose the automatic clear, Envoy 1.33 changelog).
   */
  routeCacheClears = 0;
  localReply: LocalReply | null = null;
  accessLogPhase = false;
  private readonly req = new Side();
  private readonly resp = new Side();
  private created = false;
  private isReset = false;
  private finished = false;
  private upstreamStatus: number | null = null;
  private setProps: Map<string, Uint8Array> | null = null;
  /** `upstream.address` set by the fast path's upstream (Envoy's upstream host info). */
  private upstreamAddress: string | null = null;
  /** The fast path's last FastUpstream and its response header pairs (built once per object). */
  private fastUp: FastUpstream | null = null;
  private fastUpPairs: HeaderPairs = [];
  /** The fast path's request header map, reused across requests (see HeaderMap.reusable). */
  private fastMap: HeaderMap | null = null;
  private fastRespMap: HeaderMap | null = null;

  constructor(
    private readonly vm: WorkerVm,
    private readonly host: ProxyWasmHost,
    id: number,
    private properties: Map<string, PropertyValue> | null,
    /** The root context the stream was created under (on_context_create's parent). */
    public root: RootContext,
  ) {
    this.id = id;
  }

  /** The stream ended early (local reply or reset): no more input is processed. */
  get ended(): boolean {
    return this.localReply !== null || this.isReset || this.finished;
  }

  /** The whole request (end of stream) reached upstream. */
  get requestComplete(): boolean {
    return this.req.complete;
  }

  get outcome(): Outcome {
    if (this.isReset) return "reset";
    if (this.localReply) return "local_reply";
    if (this.req.complete && (this.upstreamStatus === null || this.resp.complete)) return "upstream";
    return "hung";
  }

  // ------------------------------------------------------------ request path

  /** Envoy decodeHeaders. Returns the plugin's raw action. */
  /**
   * `adopt`: the caller hands over `headers` — a fresh array of fresh pairs with lower-case keys, as a
   * codec delivers them — and the map uses it as it is instead of copying it (the local data plane).
   */
  requestHeaders(headers: HeaderPairs, endOfStream: boolean, adopt = false): number {
    if (this.created) throw new Error("requestHeaders() called twice on one stream");
    this.req.headers = adopt ? new HeaderMap(headers, true) : HeaderMap.fromInput(headers);
    this.req.endSeen = endOfStream;
    this.create();
    return this.headersCallback(this.req, endOfStream);
  }

  /** Envoy decodeData for one chunk. Returns the plugin's raw action, or -1 if the plugin was not called. */
  requestBody(chunk: Chunk, endOfStream: boolean): number {
    return this.bodyArrives(this.req, typeof chunk === "string" ? Buffer.from(chunk) : chunk, endOfStream);
  }

  /** Envoy decodeTrailers. */
  requestTrailers(trailers: HeaderPairs): number {
    return this.trailersArrive(this.req, trailers);
  }

  // ------------------------------------------------------------ response path

  /** Runs the upstream response through the plugin (needs the whole request to have reached upstream). */
  respond(response: UpstreamResponse): void {
    const chunks = response.body === undefined ? [] : (Array.isArray(response.body) ? response.body : [response.body]).map((c) => (typeof c === "string" ? Buffer.from(c) : c));
    const trailers = response.trailers;
    this.responseHeaders([[":status", String(response.status)], ...(response.headers ?? [])], chunks.length === 0 && !trailers);
    for (let i = 0; i < chunks.length && !this.ended; i++) this.responseBody(chunks[i]!, i === chunks.length - 1 && !trailers);
    if (trailers && !this.ended) this.trailersArrive(this.resp, trailers);
  }

  /** Envoy encodeHeaders (pairs should start with ":status"). `adopt`: as requestHeaders. */
  responseHeaders(headers: HeaderPairs, endOfStream: boolean, adopt = false): number {
    if (this.ended) return -1;
    this.resp.headers = adopt ? new HeaderMap(headers, true) : HeaderMap.fromInput(headers);
    this.resp.endSeen = endOfStream;
    const status = Number(this.resp.headers.get(":status"));
    this.upstreamStatus = Number.isFinite(status) ? status : 0;
    return this.headersCallback(this.resp, endOfStream);
  }

  /** Envoy encodeData for one chunk. */
  responseBody(chunk: Chunk, endOfStream: boolean): number {
    return this.bodyArrives(this.resp, typeof chunk === "string" ? Buffer.from(chunk) : chunk, endOfStream);
  }

  // ------------------------------------------------------------ end of stream

  /** Stream end: on_log (access log phase), then on_done, then on_delete (Envoy: log() before onDestroy()). */
  finish(): RequestResult {
    this.close();
    return this.result();
  }

  /** finish() without building the result (a proxy that has already forwarded everything). */
  close(): void {
    if (!this.finished) {
      this.finished = true;
      const fn = this.vm.fn;
      if (this.created) {
        this.accessLogPhase = true;
        try {
          if (fn.proxy_on_log) this.call("proxy_on_log", fn.proxy_on_log, this.id);
        } finally {
          this.accessLogPhase = false;
        }
        // Envoy's Context::onDestroy ignores on_done's answer for streams.
        if (fn.proxy_on_done) this.call("proxy_on_done", fn.proxy_on_done, this.id);
        if (fn.proxy_on_delete) this.call("proxy_on_delete", fn.proxy_on_delete, this.id);
      }
      this.vm.contexts.delete(this.id);
    }
  }

  result(): RequestResult {
    const up = this.req.forwarded.length === 1 ? this.req.forwarded[0]! : concat(this.req.forwarded);
    const down = this.localReply ? this.localReply.body : concat(this.resp.forwarded);
    let upText: string | null = null;
    return {
      outcome: this.outcome,
      worker: this.vm.index,
      contextId: this.id,
      upstreamHeaders: this.req.sent && this.req.headers ? (this.req.sentHeaders ?? this.req.headers.snapshot()) : null,
      upstreamBody: up,
      // Decoded when first read (an enumerable own property, like a plain value): most callers,
      // benchmarks among them, never look at the text.
      get upstreamBodyText(): string {
        return (upText ??= decoder.decode(up));
      },
      set upstreamBodyText(text: string) {
        upText = text;
      },
      upstreamTrailers: this.req.trailers && this.req.complete ? this.req.trailers.snapshot() : null,
      localReply: this.localReply,
      downstreamHeaders: this.localReply ? this.localReply.headers : this.resp.sent && this.resp.headers ? (this.resp.sentHeaders ?? this.resp.headers.snapshot()) : null,
      downstreamBody: down,
      foreignCalls: this.foreignCalls,
      routeCacheClears: this.routeCacheClears,
      callbacks: this.callbacks,
    };
  }

  // ------------------------------------------------------------ fast path (benchmarks)

  /** @internal */
  resetFast(id: number, headers: HeaderPairs, root: RootContext): void {
    this.id = id;
    this.root = root;
    this.routeCacheClears = 0;
    this.req.reset();
    this.resp.reset();
    const map = (this.fastMap ??= HeaderMap.reusable());
    map.reset(headers);
    this.req.headers = map;
    this.req.endSeen = true;
    this.localReply = null;
    this.isReset = this.finished = false;
    this.created = true;
    this.upstreamStatus = null;
    this.setProps = null;
    this.upstreamAddress = null;
    if (this.callbacks.length > 0) this.callbacks.length = 0;
    if (this.foreignCalls.length > 0) this.foreignCalls.length = 0;
  }

  /**
   * @internal create, request headers (end of stream), [upstream: response headers (end of stream)],
   * log, done, delete — no result object.
   */
  runFast(up: FastUpstream | null): number {
    const fn = this.vm.fn;
    const vm = this.vm;
    const id = this.id;
    if (fn.proxy_on_context_create) vm.invoke3("proxy_on_context_create", this, fn.proxy_on_context_create, id, this.root.id, 0);
    let action = 0;
    if (fn.proxy_on_request_headers) {
      this.req.mapOpen = true;
      this.req.processing = true;
      action = vm.invoke3("proxy_on_request_headers", this, fn.proxy_on_request_headers, id, this.req.headers!.size, 1);
      this.req.processing = false;
      if (!this.ended) this.applyHeadersStatus(this.req, this.convertHeaders(action, vm.lastStopNext), true);
    }
    if (up !== null && this.req.complete && !this.ended) this.fastResponse(up);
    this.finished = true;
    this.accessLogPhase = true;
    if (fn.proxy_on_log) vm.invoke3("proxy_on_log", this, fn.proxy_on_log, id, 0, 0);
    this.accessLogPhase = false;
    if (fn.proxy_on_done) vm.invoke3("proxy_on_done", this, fn.proxy_on_done, id, 0, 0);
    if (fn.proxy_on_delete) vm.invoke3("proxy_on_delete", this, fn.proxy_on_delete, id, 0, 0);
    return action;
  }

  /** The router's pick (override_host: first address of the endpoint header), then encodeHeaders. */
  private fastResponse(up: FastUpstream): void {
    if (this.fastUp !== up) {
      this.fastUp = up;
      this.fastUpPairs = [[":status", String(up.status)], ...(up.headers ?? [])];
    }
    let address = up.address ?? null;
    if (up.addressHeader !== undefined) {
      const first = this.req.headers!.firstListEntry(up.addressHeader);
      if (first !== undefined) address = first;
    }
    this.upstreamAddress = address;
    this.upstreamStatus = up.status;
    const side = this.resp;
    const map = (this.fastRespMap ??= HeaderMap.reusable());
    map.reset(this.fastUpPairs);
    side.headers = map;
    side.endSeen = true;
    const f = this.vm.fn.proxy_on_response_headers;
    if (!f) {
      side.sent = side.complete = true;
      return;
    }
    side.mapOpen = true;
    side.processing = true;
    const raw = this.vm.invoke3("proxy_on_response_headers", this, f, this.id, side.headers.size, 1);
    side.processing = false;
    if (!this.ended) this.applyHeadersStatus(side, this.convertHeaders(raw, this.vm.lastStopNext), true);
  }

  // ------------------------------------------------------------ called by host functions

  /** @internal Envoy getMap: the map while its pointer is set in the wasm Context. */
  mutableMap(type: number): HeaderMap | null {
    switch (type) {
      case MapType.RequestHeaders:
        return this.req.mapOpen ? this.req.headers : null;
      case MapType.ResponseHeaders:
        return this.resp.mapOpen ? this.resp.headers : null;
      case MapType.RequestTrailers:
        return this.req.trailersOpen ? this.req.trailers : null;
      case MapType.ResponseTrailers:
        return this.resp.trailersOpen ? this.resp.trailers : null;
      default:
        return null;
    }
  }

  /** @internal Envoy getConstMap: in on_log the access log's (final) maps are readable. */
  constMap(type: number): HeaderMap | null {
    if (this.accessLogPhase) {
      if (type === MapType.RequestHeaders) return this.req.headers;
      if (type === MapType.ResponseHeaders) return this.localReply ? HeaderMap.fromInput(this.localReply.headers) : this.resp.headers;
      if (type === MapType.ResponseTrailers) return this.resp.trailers;
    }
    return this.mutableMap(type);
  }

  /**
   * @internal The map already went on, so a change has no effect: keep what was sent (once) and
   * report true. Done lazily so streams whose headers are not touched late pay nothing.
   */
  freezeIfSent(type: number): boolean {
    const side = type === MapType.RequestHeaders ? this.req : type === MapType.ResponseHeaders ? this.resp : null;
    if (!side || !side.sent) return false;
    if (side.sentHeaders === null && side.headers) side.sentHeaders = side.headers.snapshot();
    return true;
  }

  /** @internal Envoy getBuffer(HttpRequestBody/HttpResponseBody). */
  bodyBuffer(dir: Direction): Uint8Array {
    const side = dir === "request" ? this.req : this.resp;
    if (side.buffering) return side.buffered;
    return side.view ?? EMPTY;
  }

  /** @internal Envoy Buffer::copyFrom on the body the plugin sees. */
  setBodyBytes(dir: Direction, start: number, length: number, data: Uint8Array): number {
    const side = dir === "request" ? this.req : this.resp;
    const cur = this.bodyBuffer(dir);
    let next: Uint8Array;
    if (start === 0 && length === 0) next = concat([data, cur]);
    else if (start === 0 && length >= cur.length) next = data.slice();
    else if (start >= cur.length) next = concat([cur, data]);
    else return Status.BadArgument;
    if (side.buffering) side.buffered = next;
    else side.view = next;
    return Status.Ok;
  }

  /**
   * The request headers as passed on upstream (null until they are): result().upstreamHeaders without
   * building the rest of the result (no body concatenation) — for a proxy, once per request.
   */
  upstreamHeaders(): HeaderPairs | null {
    return this.req.sent && this.req.headers ? (this.req.sentHeaders ?? this.req.headers.snapshot()) : null;
  }

  /** The response headers as passed on downstream (a local reply's included): result().downstreamHeaders alone. */
  downstreamHeaders(): HeaderPairs | null {
    return this.localReply ? this.localReply.headers : this.resp.sent && this.resp.headers ? (this.resp.sentHeaders ?? this.resp.headers.snapshot()) : null;
  }

  /** Whether this direction's headers, and its end of stream, were passed on (upstream / downstream). */
  passedOn(direction: "request" | "response"): { sent: boolean; complete: boolean } {
    const side = direction === "request" ? this.req : this.resp;
    return { sent: side.sent, complete: side.complete };
  }

  /**
   * For a proxy that forwards as it goes (the local data plane, an SSE answer): the body chunks passed on
   * in this direction since the last call, handed over and not kept (result() no longer holds them).
   */
  drain(direction: "request" | "response"): Uint8Array[] {
    const side = direction === "request" ? this.req : this.resp;
    const chunks = side.forwarded;
    if (chunks.length > 0) side.forwarded = [];
    return chunks;
  }

  /** proxy_set_property: Envoy keeps it in filter state under "wasm.<path>" (the local data plane sets upstream facts too). */
  setProperty(path: string, value: Uint8Array): void {
    (this.setProps ??= new Map()).set(path, value);
  }

  /** @internal proxy_get_property for a stream (path with "." between segments); a string is returned as UTF-8. */
  property(path: string): Uint8Array | string | undefined {
    const set = this.setProps?.get(path);
    if (set) return set;
    const given = this.properties?.get(path);
    if (given !== undefined) return serializeProperty(given);
    const derived = this.derivedProperty(path);
    if (derived !== undefined) return derived;
    return this.vm.rootProperty(path, this.root);
  }

  private derivedProperty(path: string): Uint8Array | string | undefined {
    const h = this.req.headers;
    switch (path) {
      case "request.path":
        return str(h?.get(":path"));
      case "request.url_path": {
        const p = h?.get(":path");
        return p === undefined ? undefined : Buffer.from(p.split("?")[0]!);
      }
      case "request.host":
        return str(h?.get(":authority"));
      case "request.method":
        return str(h?.get(":method"));
      case "request.scheme":
        return str(h?.get(":scheme"));
      case "request.id":
        return str(h?.get("x-request-id"));
      case "request.headers":
        // Envoy serializes CEL maps in the header-map format.
        return h ? serializePairs(h.entries()) : undefined;
      case "response.headers": {
        const r = this.localReply ? HeaderMap.fromInput(this.localReply.headers) : this.resp.headers;
        return r ? serializePairs(r.entries()) : undefined;
      }
      case "response.code": {
        const code = this.localReply ? this.localReply.status : this.upstreamStatus;
        return code === null ? undefined : codeBytes(code);
      }
      case "upstream.address":
        return this.upstreamAddress ?? undefined;
      case "response.code_details":
        if (this.localReply) return Buffer.from(this.localReply.details);
        return this.upstreamStatus === null ? undefined : Buffer.from("via_upstream");
    }
    return undefined;
  }

  /** @internal proxy_continue_stream: Envoy drops its map/body pointers at once and continues after the call. */
  requestContinue(dir: Direction): void {
    const side = dir === "request" ? this.req : this.resp;
    side.mapOpen = false;
    side.view = null;
    side.continueRequested = true;
    this.host.defer(() => {
      if (!side.processing && side.continueRequested) this.resume(side);
    });
  }

  /** @internal Envoy sendLocalReply (plugin's proxy_send_local_response, or the host's 413/500). */
  sendLocalReply(status: number, body: Uint8Array, extra: HeaderPairs, grpcStatus: number | null, details: string, by: "plugin" | "host"): void {
    if (this.finished || this.isReset) {
      this.host.refuse(this.vm.index, this.id, "proxy_send_local_response", Status.Ok, "stream already finished: no effect");
      return;
    }
    if (this.localReply) {
      this.host.refuse(this.vm.index, this.id, "proxy_send_local_response", Status.Ok, "a local reply was already sent: no effect");
      return;
    }
    if (this.resp.sent) {
      // Response headers already went downstream: Envoy can only reset the stream.
      this.isReset = true;
      return;
    }
    const headers: HeaderPairs = [[":status", String(status)], ...extra.map(([k, v]) => [k.toLowerCase(), v] as [string, string])];
    if (body.length > 0) {
      if (!headers.some(([k]) => k === "content-length")) headers.push(["content-length", String(body.length)]);
      if (!headers.some(([k]) => k === "content-type")) headers.push(["content-type", "text/plain"]);
    }
    const inResponse = this.resp.headers !== null;
    this.localReply = { status, headers, body, bodyText: decoder.decode(body), details, grpcStatus, by };
    this.req.mapOpen = false;
    this.req.held = this.req.stopAll = this.req.buffering = false;
    if (inResponse) return; // sent straight downstream, not through the encoder filters again
    // A local reply raised while decoding runs through the whole encoder filter chain, this filter included.
    const fn = this.vm.fn;
    const map = HeaderMap.fromInput(headers);
    this.resp.headers = map;
    this.resp.mapOpen = true;
    if (fn.proxy_on_response_headers) this.call("proxy_on_response_headers", fn.proxy_on_response_headers, this.id, map.size, body.length === 0 ? 1 : 0);
    this.resp.mapOpen = false;
    if (body.length > 0 && fn.proxy_on_response_body && !this.finished) {
      this.resp.view = body;
      this.call("proxy_on_response_body", fn.proxy_on_response_body, this.id, body.length, 1);
      this.resp.view = null;
    }
    this.localReply.headers = map.snapshot();
  }

  /** @internal proxy_close_stream / Envoy resetStream. */
  reset(): void {
    if (!this.finished) this.isReset = true;
  }

  // ------------------------------------------------------------ filter manager

  private create(): void {
    this.created = true;
    const f = this.vm.fn.proxy_on_context_create;
    if (f) this.call("proxy_on_context_create", f, this.id, this.root.id);
  }

  private call(name: string, f: (...a: number[]) => number, a: number, b = 0, c = 0): number {
    if (this.host.recording) this.callbacks.push(name);
    return this.vm.invoke3(name, this, f, a, b, c);
  }

  private headersCallback(side: Side, endOfStream: boolean): number {
    const isReq = side === this.req;
    const f = isReq ? this.vm.fn.proxy_on_request_headers : this.vm.fn.proxy_on_response_headers;
    side.mapOpen = true;
    side.processing = true;
    let raw = 0;
    try {
      if (f) raw = this.call(isReq ? "proxy_on_request_headers" : "proxy_on_response_headers", f, this.id, side.headers!.size, endOfStream ? 1 : 0);
    } finally {
      side.processing = false;
    }
    const stop = f ? this.vm.lastStopNext : false;
    if (this.ended) return raw;
    this.applyHeadersStatus(side, this.convertHeaders(raw, stop), endOfStream);
    this.afterCallback(side);
    return raw;
  }

  /** cpp-host convertVmCallResultToFilterHeadersStatus. */
  private convertHeaders(raw: number, stopNext: boolean): number {
    const r = raw >>> 0;
    if (stopNext || r > HeadersStatus.StopAllIterationAndWatermark) return HeadersStatus.StopAllIterationAndWatermark;
    if (r === HeadersStatus.StopIteration && !this.host.allowOnHeadersStopIteration) return HeadersStatus.StopAllIterationAndWatermark;
    return r;
  }

  private applyHeadersStatus(side: Side, status: number, endOfStream: boolean): void {
    switch (status) {
      case HeadersStatus.Continue:
        side.mapOpen = false; // Envoy: request_headers_ = nullptr once headers continue
        side.sent = true;
        if (endOfStream) side.complete = true;
        break;
      case HeadersStatus.ContinueAndEndStream:
        side.mapOpen = false;
        side.sent = true;
        side.complete = true;
        break;
      case HeadersStatus.StopIteration:
        side.held = true;
        break;
      default:
        side.stopAll = true;
        side.stopAllLimited = status === HeadersStatus.StopAllIterationAndBuffer;
    }
  }

  private bodyArrives(side: Side, chunk: Uint8Array, endOfStream: boolean): number {
    if (this.ended || !this.created) return -1;
    side.endSeen = endOfStream;
    if (side.stopAll) {
      // The filter manager holds body data for a StopAll filter and does not call it.
      side.pendingAll = concat([side.pendingAll, chunk]);
      if (side.stopAllLimited && side.pendingAll.length > this.host.bufferLimitBytes) this.tooLarge(side);
      return -1;
    }
    return this.deliverBody(side, chunk, endOfStream);
  }

  private deliverBody(side: Side, chunk: Uint8Array, endOfStream: boolean): number {
    const isReq = side === this.req;
    if (side.buffering) {
      // Envoy's decodeData: addDecodedData(chunk) first (may 413), then the plugin sees the whole buffer.
      side.buffered = concat([side.buffered, chunk]);
      if (side.bufferingLimited && side.buffered.length > this.host.bufferLimitBytes) {
        this.tooLarge(side);
        return -1;
      }
      side.view = side.buffered;
    } else side.view = chunk;
    const f = isReq ? this.vm.fn.proxy_on_request_body : this.vm.fn.proxy_on_response_body;
    let raw = 0;
    side.processing = true;
    try {
      if (f) raw = this.call(isReq ? "proxy_on_request_body" : "proxy_on_response_body", f, this.id, side.view.length, endOfStream ? 1 : 0);
    } finally {
      side.processing = false;
    }
    const stop = f ? this.vm.lastStopNext : false;
    if (this.ended) return raw;
    const r = raw >>> 0;
    const status = stop || r > DataStatus.StopIterationNoBuffer ? DataStatus.StopIterationNoBuffer : r;
    const seen = side.buffering ? side.buffered : (side.view ?? EMPTY);
    side.buffering = false;
    switch (status) {
      case DataStatus.Continue:
        if (!side.sent) side.sent = true; // held headers go on with the data
        side.forwarded.push(seen);
        side.buffered = EMPTY;
        side.view = null;
        side.held = false;
        if (endOfStream) side.complete = true;
        break;
      case DataStatus.StopIterationAndBuffer:
      case DataStatus.StopIterationAndWatermark:
        side.buffering = true;
        side.bufferingLimited = status === DataStatus.StopIterationAndBuffer;
        side.buffered = seen;
        if (side.bufferingLimited && seen.length > this.host.bufferLimitBytes) this.tooLarge(side);
        break;
      default:
        side.view = null; // StopIterationNoBuffer: this chunk is the plugin's business now
    }
    this.afterCallback(side);
    return raw;
  }

  private trailersArrive(side: Side, trailers: HeaderPairs): number {
    if (this.ended || !this.created) return -1;
    side.trailers = HeaderMap.fromInput(trailers);
    side.endSeen = true;
    if (side.stopAll) return -1;
    const isReq = side === this.req;
    const f = isReq ? this.vm.fn.proxy_on_request_trailers : this.vm.fn.proxy_on_response_trailers;
    side.trailersOpen = true;
    side.processing = true;
    let raw = 0;
    try {
      if (f) raw = this.call(isReq ? "proxy_on_request_trailers" : "proxy_on_response_trailers", f, this.id, side.trailers.size);
    } finally {
      side.processing = false;
    }
    if (this.ended) return raw;
    if ((raw >>> 0) === 0 && !this.vm.lastStopNext) {
      side.trailersOpen = false;
      if (side.buffering || side.held) this.resume(side);
      else {
        side.sent = true;
        side.complete = true;
      }
    }
    this.afterCallback(side);
    return raw;
  }

  private afterCallback(side: Side): void {
    if (side.continueRequested && !this.ended) this.resume(side);
  }

  /** Envoy continueDecoding/continueEncoding after proxy_continue_stream. */
  private resume(side: Side): void {
    side.continueRequested = false;
    if (this.ended) return;
    side.mapOpen = false;
    side.view = null;
    if (!side.sent) side.sent = true;
    side.held = false;
    if (side.stopAll) {
      side.stopAll = false;
      // StopAll: buffered body is dispatched starting from this filter, which has not seen it.
      if (side.pendingAll.length > 0) {
        const body = side.pendingAll;
        side.pendingAll = EMPTY;
        this.deliverBody(side, body, side.endSeen && side.trailers === null);
        return;
      }
    }
    if (side.buffering) {
      side.forwarded.push(side.buffered);
      side.buffered = EMPTY;
      side.buffering = false;
    }
    if (side.endSeen) side.complete = true;
  }

  private tooLarge(side: Side): void {
    side.buffering = false;
    side.stopAll = false;
    if (side === this.req) {
      this.sendLocalReply(413, Buffer.from("Payload Too Large"), [], null, "request_payload_too_large", "host");
    } else {
      this.sendLocalReply(500, Buffer.from("Internal Server Error"), [], null, "response_payload_too_large", "host");
    }
  }
}

function str(v: string | undefined): Uint8Array | undefined {
  return v === undefined ? undefined : Buffer.from(v);
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 0) return EMPTY;
  if (parts.length === 1) return parts[0]!;
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
