import { readFile } from "node:fs/promises";
import { LOG_LEVEL_NAMES, LogLevel, type LogLevelName } from "./abi.js";
import { HostError } from "./errors.js";
import { readImportSignatures } from "./wasm-binary.js";
import { ENV_SIGNATURES, WASI_MODULES, WASI_SIGNATURES } from "./imports.js";
import { Metrics, SharedData, SharedQueues } from "./stores.js";
import { WorkerVm } from "./worker.js";
import type {
  Chunk,
  ForeignCall,
  ForeignFunction,
  HostOptions,
  HttpCall,
  LogEntry,
  PropertyValue,
  Refusal,
  RequestOptions,
  RequestResult,
} from "./types.js";

export const DEFAULT_NOW_MS = 1_700_000_000_000;

/**
 * A proxy-wasm ABI 0.2.1 host that behaves like Envoy (proxy-wasm-cpp-host) for what our plugin uses.
 * Synchronous, single-threaded, virtual clock: "workers" are separate VMs driven in turn.
 */
export class ProxyWasmHost {
  readonly logs: LogEntry[] = [];
  readonly refusals: Refusal[] = [];
  /** Pending (unanswered) http calls of every worker, oldest first. */
  readonly httpCalls: HttpCall[] = [];
  private readonly foreignCallList: ForeignCall[] = [];
  /**
   * Fast-path clear_route_cache calls not yet in foreignCallList, run-length encoded as
   * (worker, first contextId, count) triples: runRequest gives consecutive ids, so a benchmark
   * loop keeps one triple however many requests it runs.
   */
  private readonly pendingRouteCacheClears: number[] = [];
  readonly sharedData: SharedData;
  readonly queues = new SharedQueues();
  readonly metrics = new Metrics();
  readonly workers: WorkerVm[] = [];
  onHttpCall: ((call: HttpCall) => void) | undefined;

  readonly vmId: string;
  readonly rootId: string;
  readonly pluginName: string;
  readonly clusters: ReadonlySet<string>;
  readonly allowOnHeadersStopIteration: boolean;
  readonly bufferLimitBytes: number;
  readonly logLevel: number;
  readonly vmConfiguration: Uint8Array;
  readonly configuration: Uint8Array;
  readonly properties: Map<string, PropertyValue>;
  readonly foreignFunctions = new Map<string, ForeignFunction | "clear_route_cache">();

  private nowMs: number;
  private roundRobin = 0;
  private depth = 0;
  private readonly deferred: Array<() => void> = [];
  private shutDown = false;

  private constructor(options: HostOptions) {
    this.vmId = options.vmId ?? "";
    this.rootId = options.rootId ?? "";
    this.pluginName = options.pluginName ?? "";
    this.clusters = new Set(options.clusters ?? []);
    this.allowOnHeadersStopIteration = options.allowOnHeadersStopIteration ?? false;
    this.bufferLimitBytes = options.bufferLimitBytes ?? 1 << 20;
    this.nowMs = options.now ?? DEFAULT_NOW_MS;
    this.logLevel = LogLevel[options.logLevel ?? "info"];
    this.vmConfiguration = toBytes(options.vmConfiguration ?? "");
    this.configuration = toBytes(options.configuration ?? "");
    this.properties = new Map(Object.entries(options.properties ?? {}));
    this.sharedData = options.sharedData ?? new SharedData();
    this.foreignFunctions.set("clear_route_cache", "clear_route_cache");
    for (const [name, f] of Object.entries(options.foreignFunctions ?? {})) this.foreignFunctions.set(name, f);
    this.onHttpCall = options.onHttpCall;
  }

  /** Loads the module like Envoy (compile once, one instance per worker) and starts every worker's plugin. */
  static async start(options: HostOptions): Promise<ProxyWasmHost> {
    let bytes: Uint8Array | null = null;
    let module: WebAssembly.Module;
    if (options.wasm instanceof WebAssembly.Module) module = options.wasm;
    else {
      bytes = typeof options.wasm === "string" ? new Uint8Array(await readFile(options.wasm)) : options.wasm;
      try {
        module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
      } catch (err) {
        throw new HostError(`Failed to load Wasm bytecode: ${(err as Error).message}`);
      }
    }
    checkModule(module, bytes);
    const host = new ProxyWasmHost(options);
    const n = options.workers ?? 1;
    for (let i = 0; i < n; i++) {
      const vm = new WorkerVm(host, i, module);
      host.workers.push(vm);
      vm.startVm();
      vm.startPlugin();
    }
    return host;
  }

  /**
   * Forgets every recorded foreign call (as `host.foreignCalls.length = 0`, without first building the
   * records of the fast path's compact ones: benchmarks call it between batches).
   */
  clearForeignCalls(): void {
    this.pendingRouteCacheClears.length = 0;
    this.foreignCallList.length = 0;
  }

  /** Every foreign call, all workers, in call order (a plain array: tests may empty it). */
  get foreignCalls(): ForeignCall[] {
    if (this.pendingRouteCacheClears.length > 0) this.flushRouteCacheClears();
    return this.foreignCallList;
  }

  /** Virtual time in ms since epoch. */
  get now(): number {
    return this.nowMs;
  }

  get logLevelName(): LogLevelName {
    return LOG_LEVEL_NAMES[this.logLevel]!;
  }

  worker(index: number): WorkerVm {
    const w = this.workers[index];
    if (!w) throw new RangeError(`no worker ${index} (host has ${this.workers.length})`);
    return w;
  }

  /**
   * Moves the virtual clock forward, firing every due on_tick and http call timeout in time order
   * (ties: lower worker first, ticks before timeouts).
   */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError("advance() needs a non-negative number of ms");
    const target = this.nowMs + ms;
    for (;;) {
      let at = Infinity;
      let fire: (() => void) | null = null;
      for (const w of this.workers) {
        const t = w.nextTickAt;
        if (t !== null && t <= target && t < at) {
          at = t;
          fire = () => w.fireTick();
        }
      }
      for (const call of this.httpCalls) {
        const d = (call as PendingCall).deadline;
        if (d !== null && d <= target && d < at) {
          at = d;
          fire = () => (call as PendingCall).timeOut();
        }
      }
      if (!fire) break;
      this.nowMs = at;
      fire();
    }
    this.nowMs = target;
  }

  /** One whole stream: headers, body chunks, trailers, optional upstream response, then log/done/delete. */
  request(options: RequestOptions): RequestResult {
    const vm = this.worker(options.worker ?? this.roundRobin++ % this.workers.length);
    const s = vm.stream(options.properties);
    const chunks = normalizeChunks(options.body);
    const trailers = options.trailers;
    s.requestHeaders(options.headers, chunks.length === 0 && !trailers);
    for (let i = 0; i < chunks.length && !s.ended; i++) s.requestBody(chunks[i]!, i === chunks.length - 1 && !trailers);
    if (trailers && !s.ended) s.requestTrailers(trailers);
    if (options.response && s.requestComplete && !s.ended) s.respond(options.response);
    return s.finish();
  }

  /** Envoy shutdown / config removal: on_done on every root context; true → on_delete, false → wait for proxy_done. */
  shutdown(): void {
    if (this.shutDown) return;
    this.shutDown = true;
    for (const w of this.workers) w.shutdownPlugin();
  }

  get isShutDown(): boolean {
    return this.shutDown;
  }

  // ---- internals shared by workers and streams ----

  /** @internal */
  log(worker: number, contextId: number, level: number, message: string): void {
    if (level >= this.logLevel) this.logs.push({ worker, level: LOG_LEVEL_NAMES[level]!, message, contextId });
  }

  /** @internal Records a refused (or ineffective) call and returns its status for the module. */
  refuse(worker: number, contextId: number, call: string, status: number, detail: string): number {
    this.refusals.push({ worker, contextId, call, status, statusName: STATUS_NAME[status] ?? String(status), detail });
    return status;
  }

  /** @internal */
  recordForeignCall(call: ForeignCall): void {
    if (this.pendingRouteCacheClears.length > 0) this.flushRouteCacheClears();
    this.foreignCallList.push(call);
  }

  /** @internal clear_route_cache with no arguments from worker.runRequest: no record object per call. */
  recordRouteCacheClear(worker: number, contextId: number): void {
    const p = this.pendingRouteCacheClears;
    const n = p.length;
    if (n > 0 && p[n - 3] === worker && p[n - 2]! + p[n - 1]! === contextId) p[n - 1]!++;
    else p.push(worker, contextId, 1);
  }

  private flushRouteCacheClears(): void {
    const p = this.pendingRouteCacheClears;
    for (let i = 0; i < p.length; i += 3) {
      const worker = p[i]!;
      const first = p[i + 1]!;
      for (let k = 0; k < p[i + 2]!; k++) this.foreignCallList.push({ name: "clear_route_cache", args: new Uint8Array(0), contextId: first + k, worker });
    }
    p.length = 0;
  }

  /** @internal Runs `action` once no callback is executing (Envoy's "after VM call" actions). */
  defer(action: () => void): void {
    if (this.depth === 0) action();
    else this.deferred.push(action);
  }

  /** @internal */
  enter(): void {
    this.depth++;
  }

  /** @internal */
  leave(): void {
    // Small enough to be inlined into every callback invocation; the queue runs out of line.
    if (--this.depth === 0 && this.deferred.length > 0) this.runDeferred();
  }

  private runDeferred(): void {
    this.depth++;
    try {
      // Actions may enqueue more actions; run them all, in order, outside any callback.
      while (this.deferred.length > 0) {
        const next = this.deferred.shift()!;
        this.depth--;
        try {
          next();
        } finally {
          this.depth++;
        }
      }
    } finally {
      this.depth--;
    }
  }

  /** @internal */
  get inCallback(): boolean {
    return this.depth > 0;
  }

  /** @internal */
  addHttpCall(call: PendingCall): void {
    this.httpCalls.push(call);
    const hook = this.onHttpCall;
    if (hook) this.defer(() => hook(call));
  }

  /** @internal */
  removeHttpCall(call: PendingCall): void {
    const i = this.httpCalls.indexOf(call);
    if (i >= 0) this.httpCalls.splice(i, 1);
  }
}

/** An http call as the host tracks it. */
export interface PendingCall extends HttpCall {
  deadline: number | null;
  timeOut(): void;
}

const STATUS_NAME: Record<number, string> = {
  0: "Ok",
  1: "NotFound",
  2: "BadArgument",
  3: "SerializationFailure",
  4: "ParseFailure",
  5: "BadExpression",
  6: "InvalidMemoryAccess",
  7: "Empty",
  8: "CasMismatch",
  9: "ResultMismatch",
  10: "InternalFailure",
  11: "BrokenConnection",
  12: "Unimplemented",
};

const utf8 = new TextEncoder();

export function toBytes(c: Chunk): Uint8Array {
  return typeof c === "string" ? utf8.encode(c) : c;
}

function normalizeChunks(body: Chunk | Chunk[] | undefined): Uint8Array[] {
  if (body === undefined) return [];
  return (Array.isArray(body) ? body : [body]).map(toBytes);
}

/** Envoy's checks before a module runs: imports it can link, ABI version marker, allocator, memory. */
function checkModule(module: WebAssembly.Module, bytes: Uint8Array | null): void {
  // Same order as cpp-host: ABI version when loading, imports when linking, allocator after.
  const exports = new Map(WebAssembly.Module.exports(module).map((e) => [e.name, e.kind]));
  if (!exports.has("proxy_abi_version_0_2_1")) {
    const other = ["proxy_abi_version_0_2_0", "proxy_abi_version_0_1_0"].find((n) => exports.has(n));
    throw new HostError(other ? `Module declares ${other}; this host implements ABI 0.2.1 only` : "Missing or unknown Proxy-Wasm ABI version (export proxy_abi_version_0_2_1)");
  }
  const signatures = bytes ? readImportSignatures(bytes) : null;
  const imports = WebAssembly.Module.imports(module);
  for (let i = 0; i < imports.length; i++) {
    const imp = imports[i]!;
    const expected = imp.module === "env" ? ENV_SIGNATURES[imp.name] : (WASI_MODULES as readonly string[]).includes(imp.module) ? WASI_SIGNATURES[imp.name] : undefined;
    if (imp.kind !== "function" || expected === undefined) {
      throw new HostError(`Failed to load Wasm module due to a missing import: ${imp.module}.${imp.name}`);
    }
    const actual = signatures?.[i]?.signature;
    if (actual !== undefined && actual !== expected) {
      throw new HostError(`Failed to load Wasm module due to an import type mismatch: ${imp.module}.${imp.name} is (${actual}), Envoy provides (${expected})`);
    }
  }
  if (exports.get("malloc") !== "function" && exports.get("proxy_on_memory_allocate") !== "function") {
    throw new HostError("Wasm module is missing malloc function.");
  }
  if (exports.get("memory") !== "memory") throw new HostError("Wasm module does not export its memory");
}
