import { randomFillSync } from "node:crypto";
import { BUFFER_TYPE_MAX, BufferType, Errno, MAP_TYPE_MAX, MapType, METRIC_TYPE_NAMES, Status, StreamType } from "./abi.js";
import { HostError, WasmTrap } from "./errors.js";
import { HeaderMap, parsePairs, pairsSize, writePairs } from "./header-map.js";
import { ALLOWED_DURING_MALLOC, ALLOWED_DURING_START, ENV_SIGNATURES, WASI_MODULES, WASI_SIGNATURES } from "./imports.js";
import type { PendingCall, ProxyWasmHost } from "./host.js";
import { HttpStream } from "./stream.js";
import { ContextTable } from "./context-table.js";
import type { PluginGeneration } from "./plugin.js";
import type { FastUpstream, HeaderPairs, HttpCallResponse, MetricSnapshot, PropertyValue } from "./types.js";

type Fn = (...args: number[]) => number;
/** Buffer's own slice decoders (what toString(encoding, start, end) dispatches to), minus the dispatch. */
type NodeBuffer = Buffer & { latin1Slice(start: number, end: number): string; utf8Slice(start: number, end: number): string };

/** The plugin's exported callbacks; absent ones are skipped like cpp-host does. */
interface Callbacks {
  malloc: Fn;
  _initialize?: Fn;
  main?: Fn;
  _start?: Fn;
  proxy_on_context_create?: Fn;
  proxy_on_vm_start?: Fn;
  proxy_on_configure?: Fn;
  proxy_on_tick?: Fn;
  proxy_on_done?: Fn;
  proxy_on_log?: Fn;
  proxy_on_delete?: Fn;
  proxy_on_request_headers?: Fn;
  proxy_on_request_body?: Fn;
  proxy_on_request_trailers?: Fn;
  proxy_on_response_headers?: Fn;
  proxy_on_response_body?: Fn;
  proxy_on_response_trailers?: Fn;
  proxy_on_http_call_response?: Fn;
  proxy_on_queue_ready?: Fn;
  proxy_on_foreign_function?: Fn;
}

/**
 * A root context: one per plugin configuration per VM (a configuration update starts a second one in the
 * same VM, cpp-host getOrCreateThreadLocalPlugin → WasmBase::start). It owns its timer (Envoy keys
 * Wasm::setTimerPeriod by root context id) and gets the answers of the http calls made from it.
 */
export class RootContext {
  readonly isRoot = true;
  /** proxy_get_status answer (set by a failed http call, like Envoy's Context::status_code_). */
  statusCode = 0;
  statusMessage = "";
  tickPeriodMs = 0;
  tickAt: number | null = null;
  /** on_done returned false: waiting for proxy_done (it keeps ticking meanwhile, as in cpp-host). */
  pendingDone = false;
  deleted = false;
  constructor(
    readonly id: number,
    /** The configuration it was started with (null for the VM context of module start). */
    readonly plugin: PluginGeneration | null,
  ) {}
}

export type Context = RootContext | HttpStream;

interface HttpCallResponseInFlight {
  headers: HeaderMap;
  trailers: HeaderMap | null;
  body: Uint8Array;
}

const EMPTY = new Uint8Array(0);
const STRING_CACHE_BITS = 9;
const STRING_CACHE_SIZE = 1 << STRING_CACHE_BITS;
const STRING_CACHE_MAX_LEN = 64;
const ASCII_WRITE_MAX_LEN = 256;
const NS_PER_MS = 1_000_000n;
/** The context of module start (_initialize/_start): no root context exists yet (cpp-host vm_context_, id 0). */
const VM_CONTEXT = new RootContext(0, null);

/** Thread of the main-thread VM (`worker` in logs, refusals and http calls). */
export const MAIN_THREAD = -1;
/** The configuration canary (a VM started, configured and killed on the main thread). */
export const CANARY = -2;

/**
 * One VM (module instance) on one Envoy thread: a worker (index 0…), the main thread (MAIN_THREAD) or
 * the configuration canary (CANARY). Its root contexts (one per plugin configuration), contexts, timers
 * and metric ids.
 */
export class WorkerVm {
  /** Live root contexts (started, not yet deleted), oldest first. */
  readonly roots: RootContext[] = [];
  /** The root new streams are created under: the newest configuration's. */
  active: RootContext | null = null;
  /** Live contexts by id (roots and streams); a ContextTable, not a Map: see context-table.ts. */
  readonly contexts = new ContextTable<Context>();
  /** Why the VM failed (set by a trap); every later call into it throws. */
  failure: string | null = null;
  /** The canary after its check: gone without on_done/on_delete (cpp-host WasmHandleBase::kill). */
  killed = false;
  /** Every root deleted after a shutdown: the VM is gone. */
  destroyed = false;

  /** @internal */ fn!: Callbacks;
  /** @internal */ stopNext = false;
  /** @internal */ lastStopNext = false;
  /** @internal The root whose on_configure runs (the plugin configuration buffer is readable then). */ configuring: RootContext | null = null;

  private readonly host: ProxyWasmHost;
  private instance!: WebAssembly.Instance;
  /** The module's linear memory (benchmarks read its size to measure growth per request). */
  memory!: WebAssembly.Memory;
  /** How many times the host called the module's allocator (to return data to it). */
  mallocCalls = 0;
  private ab: ArrayBuffer = new ArrayBuffer(0);
  private u8: Uint8Array = new Uint8Array(this.ab);
  private buf: NodeBuffer = Buffer.from(this.ab) as NodeBuffer;
  private dv: DataView = new DataView(this.ab);
  /** proxy_get_property paths as the module sends them (NUL-separated) → dotted names. */
  private readonly propertyPaths = new Map<string, string>();
  /** The virtual clock in ns for the virtual time nowNsAt, as two u32 halves (no BigInt per call). */
  private nowNsAt = NaN;
  private nowNsLo = 0;
  private nowNsHi = 0;
  /** Decoded short strings by memory slot (see stringSlot): where, how long, a copy of the bytes, the string. */
  private cacheFlip = 0;
  private readonly cachePtr = new Uint32Array(STRING_CACHE_SIZE);
  /** 0 = empty slot (empty strings are never cached). */
  private readonly cacheLen = new Uint8Array(STRING_CACHE_SIZE);
  private readonly cacheBytes = new Uint8Array(STRING_CACHE_SIZE * STRING_CACHE_MAX_LEN);
  private readonly cacheView = new DataView(this.cacheBytes.buffer);
  private readonly cacheStr: (string | undefined)[] = new Array<string | undefined>(STRING_CACHE_SIZE).fill(undefined);
  private readonly cacheLower: (string | undefined)[] = new Array<string | undefined>(STRING_CACHE_SIZE).fill(undefined);
  private nextContextId = 1;
  private current: Context | null = null;
  private effective: Context | null = null;
  /** Host calls allowed right now, or null when unrestricted (module start, allocator). */
  private restricted: ReadonlySet<string> | null = null;
  private restrictedPhase = "";
  /** Envoy callout ids: type in the low 2 bits (http = 0), step 4 (WasmBase::nextHttpCallId). */
  private lastHttpToken = 0;
  private httpResponse: HttpCallResponseInFlight | null = null;
  private readonly metricIds = new Map<number, MetricSnapshot>();
  private readonly nextMetricId = [0, 1, 2];
  private readonly fast: HttpStream;
  private fastActive = false;

  constructor(
    host: ProxyWasmHost,
    readonly index: number,
    private readonly module: WebAssembly.Module,
  ) {
    this.host = host;
    this.fast = new HttpStream(this, host, 0, null, VM_CONTEXT);
  }

  // ---------------------------------------------------------------- lifecycle

  /** Instantiates and runs _initialize (+ main) or _start with only Envoy's start-time imports usable. */
  startVm(): void {
    try {
      this.instance = new WebAssembly.Instance(this.module, this.buildImports());
    } catch (err) {
      throw new HostError(`Failed to link Wasm module: ${(err as Error).message}`);
    }
    const e = this.instance.exports as Record<string, unknown>;
    this.memory = e["memory"] as WebAssembly.Memory;
    const fns: Record<string, Fn> = {};
    for (const [name, v] of Object.entries(e)) if (typeof v === "function") fns[name] = v as Fn;
    this.fn = { ...(fns as unknown as Callbacks), malloc: fns["malloc"] ?? fns["proxy_on_memory_allocate"]! };
    this.refresh();
    this.restricted = ALLOWED_DURING_START;
    this.restrictedPhase = "module start (_initialize/_start)";
    const vmContext = VM_CONTEXT;
    try {
      if (this.fn._initialize) {
        this.invoke("_initialize", vmContext, this.fn._initialize);
        if (this.fn.main) this.invoke("main", vmContext, this.fn.main, 0, 0);
      } else if (this.fn._start) this.invoke("_start", vmContext, this.fn._start);
    } catch (err) {
      throw new HostError(`Failed to initialize Wasm code: ${(err as Error).message}`, this.host.logs);
    } finally {
      this.restricted = null;
    }
  }

  /**
   * A root context for `plugin`: on_context_create(root, 0), on_vm_start, on_configure (cpp-host
   * WasmBase::start → ContextBase::onStart, then configure). Every new root gets on_vm_start, not only the
   * VM's first. A false answer or a trap throws HostError.
   */
  startRoot(plugin: PluginGeneration): RootContext {
    this.assertUsable("startRoot()");
    const r = new RootContext(this.nextContextId++, plugin);
    this.contexts.set(r);
    this.roots.push(r);
    const where = this.index === CANARY ? "the configuration canary" : this.index === MAIN_THREAD ? "the main thread" : `worker ${this.index}`;
    try {
      if (this.fn.proxy_on_context_create) this.invoke("proxy_on_context_create", r, this.fn.proxy_on_context_create, r.id, 0);
      if (this.fn.proxy_on_vm_start && this.invoke("proxy_on_vm_start", r, this.fn.proxy_on_vm_start, r.id, this.host.vmConfiguration.length) === 0) {
        throw new HostError(`Failed to start thread-local Wasm on ${where}: proxy_on_vm_start returned false`, this.host.logs);
      }
      this.configuring = r;
      if (this.fn.proxy_on_configure && this.invoke("proxy_on_configure", r, this.fn.proxy_on_configure, r.id, plugin.configuration.length) === 0) {
        throw new HostError(`Failed to configure thread-local Wasm plugin on ${where}: proxy_on_configure returned false`, this.host.logs);
      }
    } catch (err) {
      if (err instanceof WasmTrap) throw new HostError(err.message, this.host.logs);
      throw err;
    } finally {
      this.configuring = null;
    }
    this.active = r;
    return r;
  }

  /** The live root of `plugin` on this VM, if it started here. */
  rootOf(plugin: PluginGeneration): RootContext | undefined {
    return this.roots.find((r) => r.plugin === plugin);
  }

  /**
   * @internal WasmBase::startShutdown(plugin key): on_done on that configuration's root; true → on_delete,
   * false → it waits for proxy_done (keeping its timer and http calls). Without `plugin`: every root.
   */
  shutdownPlugin(plugin?: PluginGeneration): void {
    if (this.failure !== null || this.killed) return;
    for (const r of [...this.roots]) {
      if ((plugin !== undefined && r.plugin !== plugin) || r.pendingDone) continue;
      const done = this.fn.proxy_on_done ? this.invoke("proxy_on_done", r, this.fn.proxy_on_done, r.id) !== 0 : true;
      if (done) this.deleteRoot(r);
      else r.pendingDone = true;
    }
  }

  private deleteRoot(r: RootContext): void {
    if (r.deleted) return;
    r.pendingDone = false;
    r.deleted = true;
    r.tickPeriodMs = 0;
    r.tickAt = null;
    // ~Context cancels the root's outstanding http calls: their answers never arrive.
    this.host.cancelHttpCalls(this, r.id);
    try {
      if (this.fn.proxy_on_delete) this.invoke("proxy_on_delete", r, this.fn.proxy_on_delete, r.id);
    } finally {
      this.contexts.delete(r.id);
      this.roots.splice(this.roots.indexOf(r), 1);
      if (this.active === r) this.active = this.roots[this.roots.length - 1] ?? null;
      this.host.rootDeleted(this);
    }
  }

  /**
   * The canary after its check (cpp-host WasmHandleBase::kill, then the VM is destroyed): no on_done or
   * on_delete, its timers die with it and its pending http calls are cancelled. What it wrote to shared
   * data and the queues it registered stay.
   */
  kill(): void {
    this.killed = true;
    for (const r of this.roots) {
      r.tickPeriodMs = 0;
      r.tickAt = null;
    }
    this.host.cancelHttpCalls(this);
  }

  /** A VM that can still run callbacks (not failed, killed or destroyed). */
  get usable(): boolean {
    return this.failure === null && !this.killed && !this.destroyed;
  }

  /** A new HTTP stream context on this worker (Envoy creates one per request and filter). */
  stream(properties?: Record<string, PropertyValue>): HttpStream {
    this.assertUsable("stream()");
    const root = this.active;
    if (root === null) throw new HostError(`stream(): no plugin configuration is active on worker ${this.index}`);
    const s = new HttpStream(this, this.host, this.nextContextId++, properties ? new Map(Object.entries(properties)) : null, root);
    this.contexts.set(s);
    return s;
  }

  /**
   * Fast path for benchmarks: create context, on_request_headers(end_of_stream), on_log, on_done,
   * on_delete. Reuses one stream object; header keys must already be lower-case. With `upstream`,
   * a request that went upstream gets that response (on_response_headers, end of stream) and
   * `upstream.address` before on_log. Returns the plugin's action on the request headers.
   */
  runRequest(headers: HeaderPairs, upstream?: FastUpstream): number {
    this.assertUsable("runRequest()");
    const s = this.fast;
    const root = this.active;
    if (root === null) throw new HostError(`runRequest(): no plugin configuration is active on worker ${this.index}`);
    s.resetFast(this.nextContextId++, headers, root);
    // Not put in `contexts`: lookups check the fast stream directly (saves a Map set/delete per request).
    this.fastActive = true;
    try {
      return s.runFast(upstream ?? null);
    } finally {
      this.fastActive = false;
    }
  }

  /** The root new streams go to (the newest configuration's), 0 if none. */
  get rootContextId(): number {
    return this.active?.id ?? 0;
  }

  /** When this VM's next on_tick is due (virtual ms, the earliest of its roots), or null if none is armed. */
  get nextTickAt(): number | null {
    if (!this.usable) return null;
    let at: number | null = null;
    for (const r of this.roots) if (r.tickAt !== null && (at === null || r.tickAt < at)) at = r.tickAt;
    return at;
  }

  /** The active root's tick period (ms); 0 when none is set. */
  get tickPeriod(): number {
    return this.active?.tickPeriodMs ?? 0;
  }

  /** @internal Envoy's Wasm::tickHandler for the root due first: on_tick, then re-arm one period from now. */
  fireTick(): void {
    const at = this.nextTickAt;
    const r = at === null ? undefined : this.roots.find((x) => x.tickAt === at);
    if (r === undefined) return;
    r.tickAt = null;
    // A module without proxy_on_tick: the handler returns before re-arming (Envoy tickHandler).
    if (!this.fn.proxy_on_tick) return;
    this.invoke("proxy_on_tick", r, this.fn.proxy_on_tick, r.id);
    if (!r.deleted && r.tickPeriodMs > 0 && r.tickAt === null) r.tickAt = this.host.now + r.tickPeriodMs;
  }

  /** @internal Delivers an http call answer (null = reset) to the root that made it (Envoy's onHttpCallSuccess/Failure). */
  deliverHttpCallResponse(rootId: number, token: number, response: HttpCallResponse | null): void {
    const r = this.liveRoot(rootId);
    if (r === undefined || !this.fn.proxy_on_http_call_response) return;
    let headers = 0;
    let body = 0;
    let trailers = 0;
    if (response) {
      const map = HeaderMap.fromInput([[":status", String(response.status)], ...(response.headers ?? [])]);
      const t = response.trailers && response.trailers.length > 0 ? HeaderMap.fromInput(response.trailers) : null;
      const b = response.body === undefined ? EMPTY : typeof response.body === "string" ? Buffer.from(response.body) : response.body;
      this.httpResponse = { headers: map, trailers: t, body: b };
      headers = map.size;
      body = b.length;
      trailers = t ? t.size : 0;
    } else {
      r.statusCode = Status.BrokenConnection;
      r.statusMessage = "reset";
    }
    try {
      this.invoke("proxy_on_http_call_response", r, this.fn.proxy_on_http_call_response, r.id, token, headers, body, trailers);
    } finally {
      this.httpResponse = null;
      r.statusMessage = "";
    }
  }

  /** A root of this VM that can still get callbacks. */
  private liveRoot(id: number): RootContext | undefined {
    if (!this.usable) return undefined;
    return this.roots.find((r) => r.id === id && !r.deleted);
  }

  // ---------------------------------------------------------------- calling into the module

  /**
   * Calls a module export with `ctx` as the current context. Unused trailing arguments are ignored
   * by the wasm function, so one fixed-arity method serves every callback without allocation.
   */
  invoke(name: string, ctx: Context, f: Fn, a = 0, b = 0, c = 0, d = 0, e = 0): number {
    const prevEffective = this.effective;
    const prev = this.enterCallback(name, ctx);
    let result: number;
    try {
      result = f(a, b, c, d, e);
    } catch (err) {
      this.leaveCallback(prev, prevEffective, false);
      throw this.callbackFailed(name, err);
    }
    this.leaveCallback(prev, prevEffective, true);
    return result;
  }

  /** @internal invoke() for the stream callbacks (at most 3 arguments, all given: no defaults to fill in). */
  invoke3(name: string, ctx: Context, f: Fn, a: number, b: number, c: number): number {
    const prevEffective = this.effective;
    const prev = this.enterCallback(name, ctx);
    let result: number;
    try {
      result = f(a, b, c);
    } catch (err) {
      this.leaveCallback(prev, prevEffective, false);
      throw this.callbackFailed(name, err);
    }
    this.leaveCallback(prev, prevEffective, true);
    return result;
  }

  /** Makes `ctx` current for a callback; returns the context it replaces. */
  private enterCallback(name: string, ctx: Context): Context | null {
    if (this.failure !== null) throw new WasmTrap(name, this.index, `VM already failed: ${this.failure}`);
    const prev = this.current;
    this.current = ctx;
    this.effective = null;
    this.host.enter();
    return prev;
  }

  /** Restores the contexts a callback replaced; a returning callback's stop request is kept for the caller. */
  private leaveCallback(prev: Context | null, prevEffective: Context | null, returned: boolean): void {
    this.current = prev;
    this.effective = prevEffective;
    if (returned) this.lastStopNext = this.stopNext;
    this.stopNext = false;
    this.host.leave();
  }

  private callbackFailed(name: string, err: unknown): Error {
    if (err instanceof HostError) {
      this.failure = `${name}: ${err.message}`;
      return err;
    }
    if (err instanceof WasmTrap) return err;
    if (err instanceof WebAssembly.RuntimeError || (err instanceof RangeError && /call stack/.test(err.message))) {
      this.failure = `${name}: ${(err as Error).message}`;
      const recent = this.host.logs.filter((l) => l.worker === this.index).slice(-5);
      return new WasmTrap(name, this.index, (err as Error).message, recent);
    }
    return err as Error;
  }

  private assertUsable(what: string): void {
    if (this.failure !== null) throw new WasmTrap(what, this.index, `VM already failed: ${this.failure}`);
    if (this.host.isShutDown) throw new HostError(`${what}: host was shut down`);
    if (this.killed || this.destroyed) throw new HostError(`${what}: the VM on ${this.index === CANARY ? "the canary" : `thread ${this.index}`} is gone`);
  }

  // ---------------------------------------------------------------- memory

  /** Re-reads `memory.buffer` (a C++ getter): only when the cached views are too small. */
  private refresh(): void {
    if (this.memory.buffer !== this.ab) {
      this.ab = this.memory.buffer as ArrayBuffer;
      this.u8 = new Uint8Array(this.ab);
      this.buf = Buffer.from(this.ab) as NodeBuffer;
      this.dv = new DataView(this.ab);
    }
  }

  /**
   * Bounds check against the cached view. Growing a (non-shared) wasm memory detaches the old
   * ArrayBuffer (its views' length becomes 0), so a range inside the cached view is valid without
   * asking the memory; anything past it refreshes the views once and checks again. (The view's
   * length, not `ab.byteLength`: V8 inlines the former, the latter is a builtin call.)
   */
  private inBounds(ptr: number, len: number): boolean {
    if (ptr >= 0 && len >= 0 && ptr + len <= this.u8.length) return true;
    this.refresh();
    return ptr >= 0 && len >= 0 && ptr + len <= this.u8.length;
  }

  /**
   * Short ASCII strings the module passes (header names, constant values) are decoded once per
   * (ptr, len) slot and re-used while the bytes there are unchanged: a hit compares bytes only,
   * allocates nothing and returns the same string object (cheap === in header maps).
   */
  private stringSlot(ptr: number, len: number): number {
    // Two-way set: slots `set` and `set + 1`. Each slot keeps a copy of its bytes (cacheBytes) so a
    // hit is checked 4 bytes at a time. Used for names (header keys, property paths, metric names):
    // header values go through readValue, uncached. A miss is one scan that checks ASCII and copies
    // the bytes, and one latin1 decode.
    const set = (Math.imul(ptr ^ (len << 20), 0x9e3779b1) >>> (32 - STRING_CACHE_BITS)) & ~1;
    const cachePtr = this.cachePtr;
    const cacheLen = this.cacheLen;
    for (let slot = set; slot <= set + 1; slot++) {
      if (cachePtr[slot] === ptr && cacheLen[slot] === len && this.sameBytes(ptr, len, slot * STRING_CACHE_MAX_LEN)) return slot;
    }
    let slot = set;
    if (cacheLen[set] !== 0 && cachePtr[set] !== ptr) {
      if (cacheLen[set + 1] === 0 || cachePtr[set + 1] === ptr) slot = set + 1;
      else slot = set + (this.cacheFlip ^= 1);
    }
    const u8 = this.u8;
    const c = this.cacheBytes;
    const at = slot * STRING_CACHE_MAX_LEN;
    let upper = false;
    for (let i = 0; i < len; i++) {
      const b = u8[ptr + i]!;
      if (b > 0x7f) {
        cacheLen[slot] = 0; // its bytes are partly overwritten
        return -1;
      }
      if (b >= 65 && b <= 90) upper = true;
      c[at + i] = b;
    }
    const s = intern(this.buf.latin1Slice(ptr, ptr + len));
    cachePtr[slot] = ptr;
    cacheLen[slot] = len;
    this.cacheStr[slot] = s;
    this.cacheLower[slot] = upper ? intern(s.toLowerCase()) : s;
    return slot;
  }

  private sameBytes(ptr: number, len: number, at: number): boolean {
    const dv = this.dv;
    const cdv = this.cacheView;
    let i = 0;
    for (; i + 4 <= len; i += 4) if (dv.getUint32(ptr + i, true) !== cdv.getUint32(at + i, true)) return false;
    const u8 = this.u8;
    const c = this.cacheBytes;
    for (; i < len; i++) if (u8[ptr + i] !== c[at + i]) return false;
    return true;
  }

  /** @internal */
  readString(ptr: number, len: number): string | null {
    return this.readCached(ptr, len, false);
  }

  /**
   * @internal A header value: always decoded (not cached), so its cost is one ASCII scan and one
   * latin1 decode whatever the number of distinct values a module passes (a routing table's endpoint
   * lists) — like Envoy's copy into its header map. Non-ASCII → UTF-8 decode.
   */
  readValue(ptr: number, len: number): string | null {
    ptr >>>= 0;
    len >>>= 0;
    if (!this.inBounds(ptr, len)) return null;
    if (len === 0) return "";
    const u8 = this.u8;
    for (let i = ptr, end = ptr + len; i < end; i++) if (u8[i]! > 0x7f) return this.buf.utf8Slice(ptr, ptr + len);
    return this.buf.latin1Slice(ptr, ptr + len);
  }

  /** A header name, lower-cased like Envoy's LowerCaseString (no toLowerCase when it already is). */
  private readKey(ptr: number, len: number): string | null {
    return this.readCached(ptr, len, true);
  }

  /** Short strings come from the decoded-string cache (as written, or lower-cased); others are decoded. */
  private readCached(ptr: number, len: number, lower: boolean): string | null {
    ptr >>>= 0;
    len >>>= 0;
    if (!this.inBounds(ptr, len)) return null;
    if (len === 0) return "";
    if (len <= STRING_CACHE_MAX_LEN) {
      const slot = this.stringSlot(ptr, len);
      if (slot >= 0) return (lower ? this.cacheLower : this.cacheStr)[slot]!;
    }
    const s = this.buf.utf8Slice(ptr, ptr + len);
    return lower ? s.toLowerCase() : s;
  }

  /** @internal Copy of module memory (the module may reuse its buffer right after the call). */
  readBytes(ptr: number, len: number): Uint8Array | null {
    ptr >>>= 0;
    len >>>= 0;
    if (!this.inBounds(ptr, len)) return null;
    if (len === 0) return new Uint8Array(0);
    return this.u8.slice(ptr, ptr + len);
  }

  private writeU32(ptr: number, v: number): boolean {
    ptr >>>= 0;
    if (!this.inBounds(ptr, 4)) return false;
    this.dv.setUint32(ptr, v >>> 0, true);
    return true;
  }

  private writeU64(ptr: number, v: bigint): boolean {
    ptr >>>= 0;
    if (!this.inBounds(ptr, 8)) return false;
    this.dv.setBigUint64(ptr, BigInt.asUintN(64, v), true);
    return true;
  }

  /** Allocates `size` bytes with the module's allocator (malloc or proxy_on_memory_allocate). */
  private alloc(size: number): number {
    const outer = this.restricted;
    const outerPhase = this.restrictedPhase;
    this.restricted = ALLOWED_DURING_MALLOC;
    this.restrictedPhase = "the module's allocator (malloc)";
    this.mallocCalls++;
    try {
      return this.fn.malloc(size) >>> 0;
    } finally {
      this.restricted = outer;
      this.restrictedPhase = outerPhase;
    }
  }

  /** cpp-host copyToPointerSize: nothing allocated for an empty value (ptr 0, size 0). */
  private copyOut(bytes: Uint8Array, ptrPtr: number, sizePtr: number): number {
    let p = 0;
    if (bytes.length > 0) {
      p = this.alloc(bytes.length);
      if (p === 0 || !this.inBounds(p, bytes.length)) return Status.InvalidMemoryAccess;
      this.buf.set(bytes, p);
    }
    if (!this.writeU32(ptrPtr, p) || !this.writeU32(sizePtr, bytes.length)) return Status.InvalidMemoryAccess;
    return Status.Ok;
  }

  private copyOutString(s: string, ptrPtr: number, sizePtr: number): number {
    const len = s.length;
    let ascii = len <= ASCII_WRITE_MAX_LEN;
    for (let i = 0; ascii && i < len; i++) if (s.charCodeAt(i) > 0x7f) ascii = false;
    const n = ascii ? len : Buffer.byteLength(s);
    let p = 0;
    if (n > 0) {
      p = this.alloc(n);
      if (p === 0 || !this.inBounds(p, n)) return Status.InvalidMemoryAccess;
      if (ascii) {
        // 4 characters per store (DataView stores compile tighter than byte-wise typed-array ones).
        const dv = this.dv;
        let i = 0;
        for (; i + 4 <= len; i += 4) {
          dv.setUint32(p + i, s.charCodeAt(i) | (s.charCodeAt(i + 1) << 8) | (s.charCodeAt(i + 2) << 16) | (s.charCodeAt(i + 3) << 24), true);
        }
        const u8 = this.u8;
        for (; i < len; i++) u8[p + i] = s.charCodeAt(i);
      } else this.buf.write(s, p, n, "utf8");
    }
    if (!this.writeU32(ptrPtr, p) || !this.writeU32(sizePtr, n)) return Status.InvalidMemoryAccess;
    return Status.Ok;
  }

  private copyOutPairs(pairs: HeaderPairs, ptrPtr: number, sizePtr: number): number {
    if (pairs.length === 0) return this.copyOut(EMPTY, ptrPtr, sizePtr);
    const size = pairsSize(pairs);
    const p = this.alloc(size);
    if (p === 0 || !this.inBounds(p, size)) return Status.InvalidMemoryAccess;
    writePairs(this.buf, p, pairs);
    if (!this.writeU32(ptrPtr, p) || !this.writeU32(sizePtr, size)) return Status.InvalidMemoryAccess;
    return Status.Ok;
  }

  // ---------------------------------------------------------------- context helpers

  /** The context host calls act on: the effective one if set, else the one whose callback runs. */
  private ctx(): Context {
    return this.effective ?? this.current ?? VM_CONTEXT;
  }

  /** The root context of the context host calls act on (a stream's parent root). */
  private ctxRoot(): RootContext {
    const c = this.ctx();
    return c.isRoot ? c : c.root;
  }

  private stream_(): HttpStream | null {
    const c = this.ctx();
    return c.isRoot ? null : c;
  }

  private refuse(call: string, status: number, detail: string): number {
    return this.host.refuse(this.index, this.ctx().id, call, status, detail);
  }

  // ---------------------------------------------------------------- imports

  private buildImports(): WebAssembly.Imports {
    const env: Record<string, (...a: never[]) => unknown> = {
      // Each function checks the start/allocator restriction itself (this.open): no wrapper per call.
      proxy_log: (level: number, ptr: number, size: number) => this.proxyLog(level, ptr, size),
      proxy_get_log_level: (ptr: number) => this.open("env.proxy_get_log_level") && (this.writeU32(ptr, this.host.logLevel) ? Status.Ok : Status.InvalidMemoryAccess),
      proxy_get_status: (codePtr: number, pp: number, sp: number) => this.open("env.proxy_get_status") && this.getStatus(codePtr, pp, sp),
      proxy_set_property: (kp: number, ks: number, vp: number, vs: number) => this.open("env.proxy_set_property") && this.setProperty(kp, ks, vp, vs),
      proxy_get_property: (pp: number, ps: number, rp: number, rs: number) => this.open("env.proxy_get_property") && this.getProperty(pp, ps, rp, rs),
      proxy_send_local_response: (code: number, dp: number, ds: number, bp: number, bs: number, hp: number, hs: number, grpc: number) =>
        this.open("env.proxy_send_local_response") && this.sendLocalResponse(code, dp, ds, bp, bs, hp, hs, grpc),
      proxy_get_shared_data: (kp: number, ks: number, vpp: number, vsp: number, casp: number) => this.open("env.proxy_get_shared_data") && this.getSharedData(kp, ks, vpp, vsp, casp),
      proxy_set_shared_data: (kp: number, ks: number, vp: number, vs: number, cas: number) => this.open("env.proxy_set_shared_data") && this.setSharedData(kp, ks, vp, vs, cas),
      proxy_register_shared_queue: (np: number, ns: number, tp: number) => this.open("env.proxy_register_shared_queue") && this.registerQueue(np, ns, tp),
      proxy_resolve_shared_queue: (vp: number, vs: number, np: number, ns: number, tp: number) => this.open("env.proxy_resolve_shared_queue") && this.resolveQueue(vp, vs, np, ns, tp),
      proxy_dequeue_shared_queue: (token: number, pp: number, sp: number) => this.open("env.proxy_dequeue_shared_queue") && this.dequeue(token, pp, sp),
      proxy_enqueue_shared_queue: (token: number, dp: number, ds: number) => this.open("env.proxy_enqueue_shared_queue") && this.enqueue(token, dp, ds),
      proxy_get_header_map_value: (t: number, kp: number, ks: number, vpp: number, vsp: number) => this.open("env.proxy_get_header_map_value") && this.getHeaderValue(t, kp, ks, vpp, vsp),
      proxy_add_header_map_value: (t: number, kp: number, ks: number, vp: number, vs: number) => this.open("env.proxy_add_header_map_value") && this.setHeader(false, t, kp, ks, vp, vs),
      proxy_replace_header_map_value: (t: number, kp: number, ks: number, vp: number, vs: number) =>
        this.open("env.proxy_replace_header_map_value") && this.setHeader(true, t, kp, ks, vp, vs),
      proxy_remove_header_map_value: (t: number, kp: number, ks: number) => this.open("env.proxy_remove_header_map_value") && this.removeHeader(t, kp, ks),
      proxy_get_header_map_pairs: (t: number, pp: number, sp: number) => this.open("env.proxy_get_header_map_pairs") && this.getHeaderPairs(t, pp, sp),
      proxy_set_header_map_pairs: (t: number, p: number, s: number) => this.open("env.proxy_set_header_map_pairs") && this.setHeaderPairs(t, p, s),
      proxy_get_header_map_size: (t: number, rp: number) => this.open("env.proxy_get_header_map_size") && this.getHeaderMapSize(t, rp),
      proxy_get_buffer_status: (t: number, lp: number, fp: number) => this.open("env.proxy_get_buffer_status") && this.getBufferStatus(t, lp, fp),
      proxy_get_buffer_bytes: (t: number, start: number, len: number, pp: number, sp: number) => this.open("env.proxy_get_buffer_bytes") && this.getBufferBytes(t, start, len, pp, sp),
      proxy_set_buffer_bytes: (t: number, start: number, len: number, dp: number, ds: number) => this.open("env.proxy_set_buffer_bytes") && this.setBufferBytes(t, start, len, dp, ds),
      proxy_http_call: (up: number, us: number, hp: number, hs: number, bp: number, bs: number, tp: number, ts: number, timeout: number, tokenPtr: number) =>
        this.open("env.proxy_http_call") && this.httpCall(up, us, hp, hs, bp, bs, tp, ts, timeout, tokenPtr),
      proxy_grpc_call: () => this.open("env.proxy_grpc_call") && this.refuse("proxy_grpc_call", Status.Unimplemented, "gRPC calls are not simulated by the test host"),
      proxy_grpc_stream: () => this.open("env.proxy_grpc_stream") && this.refuse("proxy_grpc_stream", Status.Unimplemented, "gRPC streams are not simulated by the test host"),
      proxy_grpc_close: () => this.open("env.proxy_grpc_close") && this.refuse("proxy_grpc_close", Status.NotFound, "no gRPC call with this token"),
      proxy_grpc_cancel: () => this.open("env.proxy_grpc_cancel") && this.refuse("proxy_grpc_cancel", Status.NotFound, "no gRPC call with this token"),
      proxy_grpc_send: () => this.open("env.proxy_grpc_send") && this.refuse("proxy_grpc_send", Status.BadArgument, "no gRPC stream with this token"),
      proxy_set_tick_period_milliseconds: (ms: number) => this.open("env.proxy_set_tick_period_milliseconds") && this.setTickPeriod(ms),
      proxy_get_current_time_nanoseconds: (ptr: number) => this.open("env.proxy_get_current_time_nanoseconds") && (this.writeNow(ptr) ? Status.Ok : Status.InvalidMemoryAccess),
      proxy_define_metric: (type: number, np: number, ns: number, idp: number) => this.open("env.proxy_define_metric") && this.defineMetric(type, np, ns, idp),
      proxy_increment_metric: (id: number, offset: bigint) => this.open("env.proxy_increment_metric") && this.incrementMetric(id, offset),
      proxy_record_metric: (id: number, value: bigint) => this.open("env.proxy_record_metric") && this.recordMetric(id, value),
      proxy_get_metric: (id: number, rp: number) => this.open("env.proxy_get_metric") && this.getMetric(id, rp),
      proxy_set_effective_context: (id: number) => this.open("env.proxy_set_effective_context") && this.setEffectiveContext(id),
      proxy_done: () => this.open("env.proxy_done") && this.done(),
      proxy_call_foreign_function: (np: number, ns: number, ap: number, as: number, rp: number, rs: number) => this.open("env.proxy_call_foreign_function") && this.callForeign(np, ns, ap, as, rp, rs),
      proxy_continue_stream: (type: number) => this.open("env.proxy_continue_stream") && this.continueStream(type),
      proxy_close_stream: (type: number) => this.open("env.proxy_close_stream") && this.closeStream(type),
      pthread_equal: (a: number, b: number) => this.open("env.pthread_equal") && (a === b ? 1 : 0),
      emscripten_notify_memory_growth: () => {
        this.open("env.emscripten_notify_memory_growth");
        this.refresh();
      },
    };
    // WASI functions per module: a refusal names the module the call came through.
    const wasiFor = (m: string): Record<string, (...a: never[]) => unknown> => {
      const q = {
        fd_read: `${m}.fd_read`,
        fd_seek: `${m}.fd_seek`,
        fd_close: `${m}.fd_close`,
        fd_fdstat_get: `${m}.fd_fdstat_get`,
        environ_get: `${m}.environ_get`,
        environ_sizes_get: `${m}.environ_sizes_get`,
        args_get: `${m}.args_get`,
        args_sizes_get: `${m}.args_sizes_get`,
        random_get: `${m}.random_get`,
        proc_exit: `${m}.proc_exit`,
        path_open: `${m}.path_open`,
        fd_prestat_get: `${m}.fd_prestat_get`,
        fd_prestat_dir_name: `${m}.fd_prestat_dir_name`,
      };
      return {
        fd_write: (fd: number, iovs: number, n: number, wp: number) => this.fdWrite(fd, iovs, n, wp),
        fd_read: () => this.open(q.fd_read) && Errno.Nosys,
        fd_seek: () => this.open(q.fd_seek) && Errno.Success,
        fd_close: () => this.open(q.fd_close) && Errno.Success,
        fd_fdstat_get: (fd: number, out: number) => this.open(q.fd_fdstat_get) && this.fdstatGet(fd, out),
        environ_get: () => this.open(q.environ_get) && Errno.Success,
        environ_sizes_get: (cp: number, sp: number) => this.open(q.environ_sizes_get) && (this.writeU32(cp, 0) && this.writeU32(sp, 0) ? Errno.Success : Errno.Fault),
        args_get: () => this.open(q.args_get) && Errno.Success,
        args_sizes_get: (cp: number, sp: number) => this.open(q.args_sizes_get) && (this.writeU32(cp, 0) && this.writeU32(sp, 0) ? Errno.Success : Errno.Fault),
        clock_time_get: (id: number, _precision: bigint, rp: number) => (id !== 0 ? Errno.Notsup : this.writeNow(rp) ? Errno.Success : Errno.Fault),
        random_get: (p: number, n: number) => {
          this.open(q.random_get);
          if (!this.inBounds(p >>> 0, n >>> 0)) return Errno.Fault;
          randomFillSync(this.buf, p >>> 0, n >>> 0);
          return Errno.Success;
        },
        proc_exit: (code: number) => {
          this.open(q.proc_exit);
          // cpp-host only logs "wasi_unstable proc_exit" and returns to the module.
          this.refuse("proc_exit", Status.Ok, `proc_exit(${code}) ignored by Envoy`);
        },
        path_open: () => this.open(q.path_open) && Errno.Badf,
        fd_prestat_get: () => this.open(q.fd_prestat_get) && Errno.Badf,
        fd_prestat_dir_name: () => this.open(q.fd_prestat_dir_name) && Errno.Badf,
      };
    };
    const imports: WebAssembly.Imports = { env: pick("env", env, ENV_SIGNATURES) };
    for (const m of WASI_MODULES) imports[m] = pick(m, wasiFor(m), WASI_SIGNATURES);
    return imports;
  }

  /**
   * Envoy's restricted callbacks: while the module starts (_initialize/_start) or its allocator
   * runs, only some host calls are allowed (cpp-host WasmBase::startVm / allocMemory); others fail
   * the start. Called first by every host function that is not allowed in both phases (proxy_log,
   * fd_write, clock_time_get are); outside those phases it is one field check.
   */
  private open(full: string): true {
    if (this.restricted === null || this.restricted.has(full)) return true;
    this.host.refuse(this.index, 0, full, Status.InternalFailure, `restricted during ${this.restrictedPhase}`);
    throw new HostError(`host call ${full} during ${this.restrictedPhase} is refused by Envoy (restricted callback)`);
  }

  /** Writes the virtual clock (ns since epoch) as a little-endian u64. */
  private writeNow(ptr: number): boolean {
    // The virtual clock moves only with host.advance(): convert once per value.
    const now = this.host.now;
    if (now !== this.nowNsAt) {
      const ns = BigInt(Math.round(now)) * NS_PER_MS;
      this.nowNsAt = now;
      this.nowNsLo = Number(ns & 0xffffffffn);
      this.nowNsHi = Number((ns >> 32n) & 0xffffffffn);
    }
    ptr >>>= 0;
    if (!this.inBounds(ptr, 8)) return false;
    this.dv.setUint32(ptr, this.nowNsLo, true);
    this.dv.setUint32(ptr + 4, this.nowNsHi, true);
    return true;
  }

  private proxyLog(level: number, ptr: number, size: number): number {
    if (level >>> 0 > 5) return this.refuse("proxy_log", Status.BadArgument, `unknown log level ${level}`);
    // Below the log level Envoy drops the line: skip decoding it (keeps the bounds check).
    if (level < this.host.logLevel) return this.inBounds(ptr >>> 0, size >>> 0) ? Status.Ok : this.refuse("proxy_log", Status.InvalidMemoryAccess, "message out of bounds");
    const msg = this.readString(ptr, size);
    if (msg === null) return this.refuse("proxy_log", Status.InvalidMemoryAccess, "message out of bounds");
    this.host.log(this.index, this.ctx().id, level, msg);
    return Status.Ok;
  }

  private fdWrite(fd: number, iovs: number, n: number, writtenPtr: number): number {
    const level = fd === 1 ? 2 : fd === 2 ? 4 : -1;
    if (level < 0) return Errno.Badf;
    let text = "";
    for (let i = 0; i < n; i++) {
      if (!this.inBounds((iovs >>> 0) + i * 8, 8)) return Errno.Fault;
      const p = this.dv.getUint32((iovs >>> 0) + i * 8, true);
      const len = this.dv.getUint32((iovs >>> 0) + i * 8 + 4, true);
      const s = this.readString(p, len);
      if (s === null) return Errno.Fault;
      text += s;
    }
    const written = Buffer.byteLength(text);
    if (written > 0) this.host.log(this.index, this.ctx().id, level, text.endsWith("\n") ? text.slice(0, -1) : text);
    return this.writeU32(writtenPtr, written) ? Errno.Success : Errno.Fault;
  }

  private fdstatGet(fd: number, out: number): number {
    if (fd !== 1 && fd !== 2) return Errno.Badf;
    if (!this.inBounds(out >>> 0, 24)) return Errno.Fault;
    this.dv.setBigUint64(out >>> 0, 0n, true);
    this.dv.setBigUint64((out >>> 0) + 8, 64n, true); // fs_rights_base = FD_WRITE
    this.dv.setBigUint64((out >>> 0) + 16, 0n, true);
    return Errno.Success;
  }

  private getStatus(codePtr: number, pp: number, sp: number): number {
    const r = this.ctxRoot();
    if (!this.writeU32(codePtr, r.statusCode)) return Status.InvalidMemoryAccess;
    return this.copyOutString(r.statusMessage, pp, sp);
  }

  // ---- properties

  private setProperty(kp: number, ks: number, vp: number, vs: number): number {
    const path = this.readString(kp, ks);
    const value = this.readBytes(vp, vs);
    if (path === null || value === null) return this.refuse("proxy_set_property", Status.InvalidMemoryAccess, "out of bounds");
    const s = this.stream_();
    if (!s) return this.refuse("proxy_set_property", Status.NotFound, "a root context has no stream info to hold properties");
    s.setProperty(path, value);
    return Status.Ok;
  }

  private getProperty(pp: number, ps: number, rp: number, rs: number): number {
    const raw = this.readString(pp, ps);
    if (raw === null) return this.refuse("proxy_get_property", Status.InvalidMemoryAccess, "path out of bounds");
    // Envoy walks NUL-separated segments; a trailing NUL is harmless.
    let path = this.propertyPaths.get(raw);
    if (path === undefined) {
      // Interned: derivedProperty's switch then compares pointers, not characters.
      path = intern((raw.endsWith("\0") ? raw.slice(0, -1) : raw).split("\0").join("."));
      if (this.propertyPaths.size >= 1024) this.propertyPaths.clear();
      this.propertyPaths.set(raw, path);
    }
    const s = this.stream_();
    const value = s ? s.property(path) : this.rootProperty(path, this.ctxRoot());
    if (value === undefined) return Status.NotFound;
    return typeof value === "string" ? this.copyOutString(value, rp, rs) : this.copyOut(value, rp, rs);
  }

  /** @internal Properties a root context can read (no stream info in Envoy); plugin_* are its configuration's. */
  rootProperty(path: string, root: RootContext): Uint8Array | undefined {
    switch (path) {
      case "plugin_name":
        return Buffer.from(root.plugin?.pluginName ?? "");
      case "plugin_root_id":
        return Buffer.from(root.plugin?.rootId ?? "");
      case "plugin_vm_id":
        return Buffer.from(this.host.vmId);
      case "node.id":
        // Envoy: the LocalInfo node (bootstrap node.id), readable from root contexts too (context.cc FindValue).
        if (this.host.nodeId !== undefined) return Buffer.from(this.host.nodeId);
        break;
    }
    const v = this.host.properties.get(path);
    return v === undefined ? undefined : serializeProperty(v);
  }

  // ---- local reply and stream control

  private sendLocalResponse(code: number, dp: number, ds: number, bp: number, bs: number, hp: number, hs: number, grpc: number): number {
    const details = this.readString(dp, ds);
    const body = this.readBytes(bp, bs);
    const headerBytes = this.readBytes(hp, hs);
    if (details === null || body === null || headerBytes === null) return this.refuse("proxy_send_local_response", Status.InvalidMemoryAccess, "out of bounds");
    const headers = parsePairs(headerBytes);
    this.stopNext = true;
    const s = this.stream_();
    if (!s) return this.refuse("proxy_send_local_response", Status.Ok, "no stream on a root context: Envoy ignores it");
    const grpcStatus = grpc >= 0 && grpc <= 16 ? grpc : null;
    this.host.defer(() => s.sendLocalReply(code >>> 0, body, headers, grpcStatus, details.replace(/\s/g, "_"), "plugin"));
    return Status.Ok;
  }

  private continueStream(type: number): number {
    if (type >>> 0 > StreamType.Upstream) return this.refuse("proxy_continue_stream", Status.BadArgument, `unknown stream type ${type}`);
    if (type === StreamType.Upstream) return this.refuse("proxy_continue_stream", Status.Unimplemented, "continuing upstream is not implemented in Envoy");
    if (type === StreamType.Downstream) return Status.Ok;
    const s = this.stream_();
    if (!s) return this.refuse("proxy_continue_stream", Status.Ok, "root context has no stream to continue");
    s.requestContinue(type === StreamType.HttpRequest ? "request" : "response");
    return Status.Ok;
  }

  private closeStream(type: number): number {
    if (type >>> 0 > StreamType.Upstream) return this.refuse("proxy_close_stream", Status.BadArgument, `unknown stream type ${type}`);
    const s = this.stream_();
    if (s && type <= StreamType.HttpResponse) this.host.defer(() => s.reset());
    return Status.Ok;
  }

  // ---- shared data and queues

  private getSharedData(kp: number, ks: number, vpp: number, vsp: number, casp: number): number {
    const key = this.readString(kp, ks);
    if (key === null) return this.refuse("proxy_get_shared_data", Status.InvalidMemoryAccess, "key out of bounds");
    const entry = this.host.sharedData.get(key, this.host.vmId);
    if (!entry) return Status.NotFound;
    const st = this.copyOut(entry.value, vpp, vsp);
    if (st !== Status.Ok) return st;
    return this.writeU32(casp, entry.cas) ? Status.Ok : Status.InvalidMemoryAccess;
  }

  private setSharedData(kp: number, ks: number, vp: number, vs: number, cas: number): number {
    const key = this.readString(kp, ks);
    const value = this.readBytes(vp, vs);
    if (key === null || value === null) return this.refuse("proxy_set_shared_data", Status.InvalidMemoryAccess, "out of bounds");
    const st = this.host.sharedData.set(key, value, cas >>> 0, this.host.vmId);
    if (st !== Status.Ok) return this.refuse("proxy_set_shared_data", st, `stale cas ${cas >>> 0} for key "${key}"`);
    return st;
  }

  private registerQueue(np: number, ns: number, tp: number): number {
    const name = this.readString(np, ns);
    if (name === null) return this.refuse("proxy_register_shared_queue", Status.InvalidMemoryAccess, "out of bounds");
    // onQueueReady goes to the root context even if a stream registers (cpp-host registerSharedQueue).
    // The canary runs on the main thread: what it registers is delivered there (cpp-host looks the
    // context up by vm_key and id on the owner's thread).
    const thread = this.index === CANARY ? MAIN_THREAD : this.index;
    const token = this.host.queues.register(this.host.vmId, name, thread, this.ctxRoot().id);
    return this.writeU32(tp, token) ? Status.Ok : Status.InvalidMemoryAccess;
  }

  private resolveQueue(vp: number, vs: number, np: number, ns: number, tp: number): number {
    const vmId = this.readString(vp, vs);
    const name = this.readString(np, ns);
    if (vmId === null || name === null) return this.refuse("proxy_resolve_shared_queue", Status.InvalidMemoryAccess, "out of bounds");
    const token = this.host.queues.resolve(vmId === "" ? this.host.vmId : vmId, name);
    if (token === 0) return Status.NotFound;
    return this.writeU32(tp, token) ? Status.Ok : Status.InvalidMemoryAccess;
  }

  private dequeue(token: number, pp: number, sp: number): number {
    const q = this.host.queues.queues.get(token >>> 0);
    if (!q) return this.refuse("proxy_dequeue_shared_queue", Status.NotFound, `no queue ${token}`);
    const item = q.items.shift();
    if (!item) return Status.Empty;
    return this.copyOut(item, pp, sp);
  }

  private enqueue(token: number, dp: number, ds: number): number {
    const data = this.readBytes(dp, ds);
    if (data === null) return this.refuse("proxy_enqueue_shared_queue", Status.InvalidMemoryAccess, "out of bounds");
    const q = this.host.queues.queues.get(token >>> 0);
    if (!q) return this.refuse("proxy_enqueue_shared_queue", Status.NotFound, `no queue ${token}`);
    q.items.push(data);
    // Envoy posts on_queue_ready to the registering thread's dispatcher, never inline; the VM now on that
    // thread gets it if it has a root with that id (else it is dropped and the data stays queued).
    const thread = q.worker;
    const contextId = q.contextId;
    this.host.defer(() => this.host.vmOnThread(thread)?.queueReady(contextId, token >>> 0));
    return Status.Ok;
  }

  /** @internal */
  queueReady(rootId: number, token: number): void {
    const r = this.liveRoot(rootId);
    if (r === undefined || !this.fn.proxy_on_queue_ready) return;
    this.invoke("proxy_on_queue_ready", r, this.fn.proxy_on_queue_ready, r.id, token);
  }

  // ---- header maps

  /** Envoy Context::getMap: the mutable map, or null when it is not available now. */
  private mutableMap(type: number): HeaderMap | null {
    const s = this.stream_();
    if (!s) return null;
    return s.mutableMap(type);
  }

  /** Envoy Context::getConstMap: adds the access-log view and the http call response maps. */
  private constMap(type: number): HeaderMap | null {
    if (type === MapType.HttpCallResponseHeaders) return this.httpResponse ? this.httpResponse.headers : null;
    if (type === MapType.HttpCallResponseTrailers) return this.httpResponse ? this.httpResponse.trailers : null;
    const s = this.stream_();
    return s ? s.constMap(type) : null;
  }

  private getHeaderValue(type: number, kp: number, ks: number, vpp: number, vsp: number): number {
    if (type >>> 0 > MAP_TYPE_MAX) return this.refuse("proxy_get_header_map_value", Status.BadArgument, `unknown map type ${type}`);
    const key = this.readKey(kp, ks);
    if (key === null) return this.refuse("proxy_get_header_map_value", Status.InvalidMemoryAccess, "key out of bounds");
    const map = this.constMap(type);
    if (!map) {
      const s = this.stream_();
      if (s && s.accessLogPhase) return Status.NotFound;
      return this.refuse("proxy_get_header_map_value", Status.BadArgument, `map ${mapName(type)} is not available in this callback`);
    }
    const value = map.get(key);
    if (value === undefined) return Status.NotFound;
    return this.copyOutString(value, vpp, vsp);
  }

  /**
   * proxy_add/replace_header_map_value. The value is handed to the map as bytes of module memory:
   * the map copies them at once (Envoy copies into its HeaderString) and decodes them to a string
   * when something reads it (see HeaderMap).
   */
  private setHeader(replace: boolean, type: number, kp: number, ks: number, vp: number, vs: number): number {
    const call = replace ? "proxy_replace_header_map_value" : "proxy_add_header_map_value";
    if (type >>> 0 > MAP_TYPE_MAX) return this.refuse(call, Status.BadArgument, `unknown map type ${type}`);
    const lower = this.readKey(kp, ks);
    vp >>>= 0;
    vs >>>= 0;
    if (lower === null || !this.inBounds(vp, vs)) return this.refuse(call, Status.InvalidMemoryAccess, "out of bounds");
    const s = this.stream_();
    const map = s === null ? null : s.mutableMap(type);
    if (!map) return this.refuse(call, Status.BadArgument, `map ${mapName(type)} is not modifiable in this callback`);
    if (s!.freezeIfSent(type)) this.lateChange(call, type, lower);
    else if (type === MapType.RequestHeaders) s!.routeCacheClears++;
    if (replace) map.replaceBytes(lower, this.buf, this.dv, vp, vs);
    else map.addBytes(lower, this.buf, this.dv, vp, vs);
    return Status.Ok;
  }

  private removeHeader(type: number, kp: number, ks: number): number {
    const call = "proxy_remove_header_map_value";
    if (type >>> 0 > MAP_TYPE_MAX) return this.refuse(call, Status.BadArgument, `unknown map type ${type}`);
    const lower = this.readKey(kp, ks);
    if (lower === null) return this.refuse(call, Status.InvalidMemoryAccess, "out of bounds");
    const s = this.stream_();
    const map = s === null ? null : s.mutableMap(type);
    if (!map) return this.refuse(call, Status.BadArgument, `map ${mapName(type)} is not modifiable in this callback`);
    if (s!.freezeIfSent(type)) this.lateChange(call, type, lower);
    else if (type === MapType.RequestHeaders) s!.routeCacheClears++;
    map.remove(lower);
    return Status.Ok;
  }

  private lateChange(call: string, type: number, key: string): void {
    this.refuse(call, Status.Ok, `${mapName(type)} "${key}" changed after they were sent on: no effect`);
  }

  private getHeaderPairs(type: number, pp: number, sp: number): number {
    if (type >>> 0 > MAP_TYPE_MAX) return this.refuse("proxy_get_header_map_pairs", Status.BadArgument, `unknown map type ${type}`);
    const map = this.constMap(type);
    if (!map) {
      this.refuse("proxy_get_header_map_pairs", Status.Ok, `map ${mapName(type)} is not available in this callback: Envoy returns an empty map`);
      return this.copyOut(EMPTY, pp, sp);
    }
    return this.copyOutPairs(map.entries(), pp, sp);
  }

  private setHeaderPairs(type: number, p: number, size: number): number {
    if (type >>> 0 > MAP_TYPE_MAX) return this.refuse("proxy_set_header_map_pairs", Status.BadArgument, `unknown map type ${type}`);
    const bytes = this.readBytes(p, size);
    if (bytes === null) return this.refuse("proxy_set_header_map_pairs", Status.InvalidMemoryAccess, "out of bounds");
    // Envoy setHeaderMapPairs removes every header (pseudo-headers too), then adds the pairs: an empty
    // or malformed list (toPairs → empty) leaves the map empty, and the answer is Ok.
    const pairs = parsePairs(bytes);
    const map = this.mutableMap(type);
    if (!map) return this.refuse("proxy_set_header_map_pairs", Status.BadArgument, `map ${mapName(type)} is not modifiable in this callback`);
    const s = this.stream_()!;
    if (s.freezeIfSent(type)) this.lateChange("proxy_set_header_map_pairs", type, "*");
    else if (type === MapType.RequestHeaders) s.routeCacheClears++;
    map.setAll(pairs);
    return Status.Ok;
  }

  private getHeaderMapSize(type: number, rp: number): number {
    if (type >>> 0 > MAP_TYPE_MAX) return this.refuse("proxy_get_header_map_size", Status.BadArgument, `unknown map type ${type}`);
    const map = this.mutableMap(type);
    if (!map) return this.refuse("proxy_get_header_map_size", Status.BadArgument, `map ${mapName(type)} is not available in this callback`);
    return this.writeU32(rp, map.byteSize()) ? Status.Ok : Status.InvalidMemoryAccess;
  }

  // ---- buffers

  /** Envoy Context::getBuffer: bytes, or null when the buffer is not available (NotFound). */
  private buffer(type: number): Uint8Array | null {
    switch (type) {
      case BufferType.HttpRequestBody:
      case BufferType.HttpResponseBody: {
        const s = this.stream_();
        return s ? s.bodyBuffer(type === BufferType.HttpRequestBody ? "request" : "response") : EMPTY;
      }
      case BufferType.HttpCallResponseBody:
        return this.httpResponse ? this.httpResponse.body : null;
      case BufferType.VmConfiguration:
        return this.host.vmConfiguration;
      case BufferType.PluginConfiguration:
        return this.configuring?.plugin?.configuration ?? null;
      default:
        return EMPTY;
    }
  }

  private getBufferStatus(type: number, lp: number, fp: number): number {
    if (type >>> 0 > BUFFER_TYPE_MAX) return this.refuse("proxy_get_buffer_status", Status.BadArgument, `unknown buffer type ${type}`);
    const b = this.buffer(type);
    if (!b) return this.refuse("proxy_get_buffer_status", Status.NotFound, `buffer ${bufferName(type)} is not available in this callback`);
    return this.writeU32(lp, b.length) && this.writeU32(fp, 0) ? Status.Ok : Status.InvalidMemoryAccess;
  }

  private getBufferBytes(type: number, start: number, length: number, pp: number, sp: number): number {
    if (type >>> 0 > BUFFER_TYPE_MAX) return this.refuse("proxy_get_buffer_bytes", Status.BadArgument, `unknown buffer type ${type}`);
    const b = this.buffer(type);
    if (!b) return this.refuse("proxy_get_buffer_bytes", Status.NotFound, `buffer ${bufferName(type)} is not available in this callback`);
    start >>>= 0;
    length >>>= 0;
    // cpp-host get_buffer_bytes: start + length overflowing is BadArgument; the length is clamped to the
    // buffer, and nothing to copy writes ptr 0 and size 0 (Ok).
    if (start + length > 0xffffffff) return this.refuse("proxy_get_buffer_bytes", Status.BadArgument, "start + length overflows");
    if (start > b.length) length = 0;
    else if (start + length > b.length) length = b.length - start;
    if (length === 0) return this.writeU32(pp, 0) && this.writeU32(sp, 0) ? Status.Ok : Status.InvalidMemoryAccess;
    return this.copyOut(b.subarray(start, start + length), pp, sp);
  }

  private setBufferBytes(type: number, start: number, length: number, dp: number, ds: number): number {
    if (type >>> 0 > BUFFER_TYPE_MAX) return this.refuse("proxy_set_buffer_bytes", Status.BadArgument, `unknown buffer type ${type}`);
    const data = this.readBytes(dp, ds);
    if (data === null) return this.refuse("proxy_set_buffer_bytes", Status.InvalidMemoryAccess, "out of bounds");
    const s = this.stream_();
    if ((type !== BufferType.HttpRequestBody && type !== BufferType.HttpResponseBody) || !s) {
      return this.refuse("proxy_set_buffer_bytes", this.buffer(type) ? Status.BadArgument : Status.NotFound, `buffer ${bufferName(type)} is not modifiable`);
    }
    const st = s.setBodyBytes(type === BufferType.HttpRequestBody ? "request" : "response", start >>> 0, length >>> 0, data);
    return st === Status.Ok ? st : this.refuse("proxy_set_buffer_bytes", st, "Envoy supports prepend (0,0), replace all (0,≥size) and append (≥size) only");
  }

  // ---- http calls

  private httpCall(up: number, us: number, hp: number, hs: number, bp: number, bs: number, tp: number, ts: number, timeout: number, tokenPtr: number): number {
    const call = "proxy_http_call";
    const cluster = this.readString(up, us);
    const headerBytes = this.readBytes(hp, hs);
    const body = this.readBytes(bp, bs);
    const trailerBytes = this.readBytes(tp, ts);
    if (cluster === null || headerBytes === null || body === null || trailerBytes === null) return this.refuse(call, Status.InvalidMemoryAccess, "out of bounds");
    if (!this.writeU32(tokenPtr, 0)) return this.refuse(call, Status.InvalidMemoryAccess, "token pointer out of bounds");
    if (timeout < 0) return this.refuse(call, Status.BadArgument, `negative timeout ${timeout}`);
    if (!this.host.clusters.has(cluster)) return this.refuse(call, Status.BadArgument, `unknown cluster "${cluster}"`);
    // Malformed pairs become an empty map (cpp-host PairsUtil::toPairs), so the check below refuses them.
    const headers = HeaderMap.fromInput(parsePairs(headerBytes));
    const missing = [":method", ":path", ":authority"].filter((k) => headers.get(k) === undefined);
    if (missing.length > 0) return this.refuse(call, Status.BadArgument, `missing ${missing.join(", ")} (Envoy needs :method, :path and :authority)`);
    // The async client completes inline (router local reply before any upstream) when the cluster has no
    // healthy host or its circuit breaker overflows: send() returns null → InternalFailure, and the
    // deferred answer finds no handler: no callback, ever (Envoy context.cc httpCall/onHttpCallSuccess).
    const state = this.host.clusterState(cluster);
    if (state !== "ok") return this.refuse(call, Status.InternalFailure, `cluster "${cluster}": ${state === "no_healthy_upstream" ? "no healthy upstream" : "circuit breaker overflow"} (the request failed inline)`);
    if (body.length > 0) headers.replace("content-length", String(body.length));
    const token = (this.lastHttpToken += 4);
    const vm = this;
    const host = this.host;
    const rootId = this.ctxRoot().id;
    // answered: respond/fail/timeout happened; cancelled: the calling root or VM went away first.
    let answered = false;
    let cancelled = false;
    const pending: PendingCall = {
      vm,
      rootId,
      worker: this.index,
      token,
      cluster,
      headers: headers.entries(),
      body,
      bodyText: Buffer.from(body).toString("utf8"),
      trailers: parsePairs(trailerBytes),
      timeoutMs: timeout,
      deadline: timeout > 0 ? host.now + timeout : null,
      get cancelled() {
        return cancelled;
      },
      respond(response: HttpCallResponse) {
        if (cancelled) return;
        if (answered) throw new Error(`http call ${token} on worker ${vm.index} was already answered`);
        answered = true;
        host.removeHttpCall(pending);
        host.defer(() => vm.deliverHttpCallResponse(rootId, token, response));
      },
      fail() {
        if (cancelled) return;
        if (answered) throw new Error(`http call ${token} on worker ${vm.index} was already answered`);
        answered = true;
        host.removeHttpCall(pending);
        host.defer(() => vm.deliverHttpCallResponse(rootId, token, null));
      },
      cancel() {
        if (answered || cancelled) return;
        cancelled = true;
        host.removeHttpCall(pending);
      },
      timeOut() {
        // Envoy's async client goes through the router: a timeout is a 504 local reply, delivered as a response.
        pending.respond({ status: 504, headers: [["content-length", "24"], ["content-type", "text/plain"]], body: "upstream request timeout" });
      },
    };
    host.addHttpCall(pending);
    return this.writeU32(tokenPtr, token) ? Status.Ok : Status.InvalidMemoryAccess;
  }

  // ---- timers

  private setTickPeriod(ms: number): number {
    // Envoy's Wasm::setTimerPeriod: replaces the timer; a positive period arms it one period from now.
    // Per root context (cpp-host ContextBase::setTimerPeriod passes root_context()->id()).
    const r = this.ctxRoot();
    r.tickPeriodMs = ms >>> 0;
    r.tickAt = r.tickPeriodMs > 0 && !this.killed ? this.host.now + r.tickPeriodMs : null;
    return Status.Ok;
  }

  // ---- metrics

  private defineMetric(type: number, np: number, ns: number, idp: number): number {
    if (type >>> 0 > 2) return this.refuse("proxy_define_metric", Status.BadArgument, `unknown metric type ${type}`);
    const name = this.readString(np, ns);
    if (name === null) return this.refuse("proxy_define_metric", Status.InvalidMemoryAccess, "name out of bounds");
    // Envoy ids carry the type in the low 2 bits and step by 4 (Wasm::nextCounterMetricId etc).
    const id = (this.nextMetricId[type] = this.nextMetricId[type]! + 4);
    this.metricIds.set(id, this.host.metrics.stat(METRIC_TYPE_NAMES[type]!, name));
    return this.writeU32(idp, id) ? Status.Ok : Status.InvalidMemoryAccess;
  }

  private incrementMetric(id: number, offset: bigint): number {
    const m = this.metricIds.get(id >>> 0);
    const type = id & 3;
    if (type === 2 || type === 3) return this.refuse("proxy_increment_metric", Status.BadArgument, "histograms cannot be incremented");
    if (!m) return this.refuse("proxy_increment_metric", Status.NotFound, `no metric with id ${id}`);
    if (m.type === "counter" && offset <= 0n) return this.refuse("proxy_increment_metric", Status.BadArgument, `counter "${id}" cannot change by ${offset}`);
    m.value += Number(offset);
    return Status.Ok;
  }

  private recordMetric(id: number, value: bigint): number {
    const m = this.metricIds.get(id >>> 0);
    if (!m) return this.refuse("proxy_record_metric", Status.NotFound, `no metric with id ${id}`);
    const v = Number(BigInt.asUintN(64, value));
    if (m.type === "counter") m.value += v;
    else if (m.type === "gauge") m.value = v;
    else {
      m.samples.push(v);
      m.value = m.samples.length;
    }
    return Status.Ok;
  }

  private getMetric(id: number, rp: number): number {
    const m = this.metricIds.get(id >>> 0);
    const type = id & 3;
    if (type === 2 || type === 3) return this.refuse("proxy_get_metric", Status.BadArgument, "histograms cannot be read");
    if (!m) return this.refuse("proxy_get_metric", Status.NotFound, `no metric with id ${id}`);
    return this.writeU64(rp, BigInt(m.value)) ? Status.Ok : Status.InvalidMemoryAccess;
  }

  // ---- contexts, foreign functions

  /** @internal A context by id, including the fast-path stream while it runs. */
  context(id: number): Context | undefined {
    if (this.fastActive && this.fast.id === id) return this.fast;
    return this.contexts.get(id);
  }

  private setEffectiveContext(id: number): number {
    const c = this.context(id >>> 0);
    if (!c) return this.refuse("proxy_set_effective_context", Status.BadArgument, `no context ${id} on worker ${this.index}`);
    this.effective = c;
    return Status.Ok;
  }

  private done(): number {
    const c = this.ctx();
    if (!c.isRoot || !c.pendingDone) return this.refuse("proxy_done", Status.NotFound, `context ${c.id} is not waiting for proxy_done`);
    // cpp-host defers on_delete so it never runs inside proxy_done.
    this.host.defer(() => this.deleteRoot(c));
    return Status.Ok;
  }

  private callForeign(np: number, ns: number, ap: number, as: number, rp: number, rs: number): number {
    const name = this.readString(np, ns);
    if (name === null || !this.inBounds(ap >>> 0, as >>> 0)) return this.refuse("proxy_call_foreign_function", Status.InvalidMemoryAccess, "out of bounds");
    const f = this.host.foreignFunctions.get(name);
    if (!f) return this.refuse("proxy_call_foreign_function", Status.NotFound, `no foreign function "${name}"`);
    const c = this.ctx();
    let args: Uint8Array = EMPTY;
    if (f === "clear_route_cache" && as >>> 0 === 0 && !this.host.recording) {
      // Production path: nothing recorded (HostOptions.recording).
    } else if (f === "clear_route_cache" && as >>> 0 === 0 && c === this.fast && this.fastActive) {
      // Benchmark fast path: the stream's own list is never read, and the host's list gets the
      // call in compact form (materialized when host.foreignCalls is read).
      this.host.recordRouteCacheClear(this.index, c.id);
    } else {
      args = this.readBytes(ap, as)!;
      const record = { name, args, contextId: c.id, worker: this.index };
      this.host.recordForeignCall(record);
      if (!c.isRoot) c.foreignCalls.push(record);
    }
    let status: number = Status.Ok;
    let result: Uint8Array = EMPTY;
    if (f === "clear_route_cache") {
      if (!c.isRoot) c.routeCacheClears++;
    } else {
      const r = f(args, { worker: this.index, contextId: c.id });
      if (typeof r === "string") result = Buffer.from(r);
      else if (r instanceof Uint8Array) result = r;
      else if (r) {
        status = r.status;
        result = r.result ?? EMPTY;
      }
    }
    // cpp-host writes the results pointer/size when the module passed pointers for them.
    if (rp !== 0 || rs !== 0) {
      let p = 0;
      if (result.length > 0 && rp !== 0) {
        p = this.alloc(result.length);
        if (!this.inBounds(p, result.length)) return Status.InvalidMemoryAccess;
        this.buf.set(result, p);
      }
      if (rp !== 0 && !this.writeU32(rp, p)) return Status.InvalidMemoryAccess;
      if (rs !== 0 && !this.writeU32(rs, result.length)) return Status.InvalidMemoryAccess;
    }
    return status;
  }
}

/**
 * The internalized copy of a string (V8 internalizes property names). Cached names are compared with
 * header keys on every lookup: two internalized strings compare by pointer, inline, while a fresh
 * string against another string of the same length goes to the StringEqual builtin.
 */
function intern(s: string): string {
  const o: Record<string, number> = { [s]: 0 };
  for (const k in o) return k;
  return s;
}

export function serializeProperty(v: PropertyValue): Uint8Array {
  if (typeof v === "string") return Buffer.from(v);
  if (v instanceof Uint8Array) return v;
  if (typeof v === "boolean") return Uint8Array.of(v ? 1 : 0);
  const b = Buffer.alloc(8);
  // Envoy serializeValue: int64 as 8 little-endian bytes, double as 8-byte IEEE 754.
  if (typeof v === "bigint") b.writeBigInt64LE(v);
  else if (Number.isInteger(v)) b.writeBigInt64LE(BigInt(v));
  else b.writeDoubleLE(v);
  return new Uint8Array(b.buffer, b.byteOffset, 8);
}

/** Host functions without a restriction check (this.open): Envoy allows them during start and in the allocator. */
const UNRESTRICTED = ["env.proxy_log", ...WASI_MODULES.flatMap((m) => [`${m}.fd_write`, `${m}.clock_time_get`])];
for (const full of UNRESTRICTED) {
  if (!ALLOWED_DURING_START.has(full) || !ALLOWED_DURING_MALLOC.has(full)) throw new Error(`${full} is restricted: it needs a this.open() check`);
}

/** The import object for one module: exactly the names Envoy links (an implementation for each). */
function pick(module: string, fns: Record<string, (...a: never[]) => unknown>, known: Readonly<Record<string, string>>): WebAssembly.ModuleImports {
  const out: WebAssembly.ModuleImports = {};
  for (const name of Object.keys(known)) {
    const f = fns[name];
    if (!f) throw new Error(`test host has no implementation of ${module}.${name}`);
    out[name] = f as WebAssembly.ImportValue;
  }
  return out;
}

function mapName(type: number): string {
  return ["request headers", "request trailers", "response headers", "response trailers", "gRPC initial metadata", "gRPC trailing metadata", "http call response headers", "http call response trailers"][type] ?? `map ${type}`;
}

function bufferName(type: number): string {
  return ["request body", "response body", "downstream data", "upstream data", "http call response body", "gRPC message", "VM configuration", "plugin configuration", "foreign function arguments"][type] ?? `buffer ${type}`;
}
