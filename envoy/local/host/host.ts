import { readFile } from "node:fs/promises";
import { LOG_LEVEL_NAMES, LogLevel, type LogLevelName } from "./abi.js";
import { HostError } from "./errors.js";
import { readImportSignatures } from "./wasm-binary.js";
import { ENV_SIGNATURES, WASI_MODULES, WASI_SIGNATURES } from "./imports.js";
import { Metrics, SharedData, SharedQueues } from "./stores.js";
import { PluginGeneration } from "./plugin.js";
import { CANARY, MAIN_THREAD, WorkerVm } from "./worker.js";
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

/** An upstream cluster as Envoy's async client finds it for an http_call. */
export type ClusterState = "ok" | "no_healthy_upstream" | "overflow";

/**
 * A proxy-wasm ABI 0.2.1 host that behaves like Envoy (proxy-wasm-cpp-host) for what our plugin uses,
 * with Envoy's VM lifecycle: a configuration canary (started, configured, killed), a main-thread VM
 * that ticks but never gets streams, one VM per worker, and configuration updates as new root contexts
 * in the same VMs. Synchronous, single-threaded, virtual clock: the VMs are driven in turn.
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
  /** One VM per Envoy worker thread: requests run here. */
  readonly workers: WorkerVm[] = [];
  /** The main thread's VM (Envoy's ThreadLocal::SlotImpl::set runs the VM's init there too); null if disabled. */
  mainVm: WorkerVm | null = null;
  /** How many configuration canaries ran (one per new plugin configuration). */
  canaryRuns = 0;
  /** Plugin configurations loaded, oldest first; `current` gets new streams. */
  readonly generations: PluginGeneration[] = [];
  current!: PluginGeneration;
  onHttpCall: ((call: HttpCall) => void) | undefined;

  readonly vmId: string;
  /** The bootstrap's node.id (property `node.id` in every context); undefined: not configured. */
  readonly nodeId: string | undefined;
  readonly clusters: ReadonlySet<string>;
  readonly allowOnHeadersStopIteration: boolean;
  readonly bufferLimitBytes: number;
  readonly logLevel: number;
  /** HostOptions.recording: per-call records kept (tests) or not (production). */
  readonly recording: boolean;
  readonly vmConfiguration: Uint8Array;
  readonly properties: Map<string, PropertyValue>;
  readonly foreignFunctions = new Map<string, ForeignFunction | "clear_route_cache">();

  private nowMs: number;
  private roundRobin = 0;
  private depth = 0;
  private readonly deferred: Array<() => void> = [];
  private shutDown = false;
  private attached = false;
  private readonly canaryEnabled: boolean;
  /** cpp-host plugin_canary_cache_: a configuration key's canary result (a refusal is remembered too). */
  private readonly canaryResults = new Map<string, string | true>();
  private readonly clusterStates = new Map<string, ClusterState>();

  private constructor(
    options: HostOptions,
    private readonly module: WebAssembly.Module,
  ) {
    this.vmId = options.vmId ?? "";
    this.nodeId = options.nodeId;
    this.clusters = new Set(options.clusters ?? []);
    this.allowOnHeadersStopIteration = options.allowOnHeadersStopIteration ?? false;
    this.bufferLimitBytes = options.bufferLimitBytes ?? 1 << 20;
    this.nowMs = options.now ?? DEFAULT_NOW_MS;
    this.logLevel = LogLevel[options.logLevel ?? "info"];
    this.recording = options.recording ?? true;
    this.vmConfiguration = toBytes(options.vmConfiguration ?? "");
    this.properties = new Map(Object.entries(options.properties ?? {}));
    this.sharedData = options.sharedData ?? new SharedData();
    this.canaryEnabled = options.canary ?? true;
    this.foreignFunctions.set("clear_route_cache", "clear_route_cache");
    for (const [name, f] of Object.entries(options.foreignFunctions ?? {})) this.foreignFunctions.set(name, f);
    this.onHttpCall = options.onHttpCall;
  }

  /**
   * Loads the module like Envoy: compile once; the canary (a VM that starts, gets on_vm_start and
   * on_configure, then is killed; a refusal rejects the configuration: HostError); the main-thread VM;
   * one VM per worker, each with a root context for the configuration.
   */
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
    const host = new ProxyWasmHost(options, module);
    // The base VM holds the vm_id's shared data and queues until it is gone (cpp-host VmIdHandle).
    host.sharedData.attach(host.vmId);
    host.attached = true;
    const plugin = host.newGeneration(toBytes(options.configuration ?? ""), options.rootId ?? "", options.pluginName ?? "");
    host.runCanary(plugin);
    host.generations.push(plugin);
    host.current = plugin;
    if (options.mainThread ?? true) {
      const main = new WorkerVm(host, MAIN_THREAD, module);
      host.mainVm = main;
      main.startVm();
      main.startRoot(plugin);
    }
    const n = options.workers ?? 1;
    for (let i = 0; i < n; i++) {
      const vm = new WorkerVm(host, i, module);
      host.workers.push(vm);
      vm.startVm();
      vm.startRoot(plugin);
    }
    return host;
  }

  /** The next configuration, not yet loaded: it joins `generations` once its canary passed. */
  private newGeneration(configuration: Uint8Array, rootId: string, pluginName: string): PluginGeneration {
    return new PluginGeneration(this.generations.length + 1, configuration, rootId, pluginName);
  }

  /**
   * cpp-host WasmHandleBase::canary: a fresh VM runs module start, on_context_create, on_vm_start and
   * on_configure for the configuration, then is killed (no on_done / on_delete, no tick, its http calls
   * cancelled; its shared-data writes stay). Runs once per configuration key; a refusal (false or a
   * trap) rejects the configuration whatever failure_policy says, and is remembered.
   */
  private runCanary(plugin: PluginGeneration): void {
    if (!this.canaryEnabled) return;
    const cached = this.canaryResults.get(plugin.key);
    if (cached === true) return;
    if (cached !== undefined) throw new HostError(cached, this.logs);
    const vm = new WorkerVm(this, CANARY, this.module);
    this.canaryRuns++;
    try {
      vm.startVm();
      vm.startRoot(plugin);
    } catch (err) {
      const message = `configuration rejected by the canary: ${(err as Error).message}`;
      this.canaryResults.set(plugin.key, message);
      vm.kill();
      throw new HostError(message, this.logs);
    }
    vm.kill();
    this.canaryResults.set(plugin.key, true);
  }

  /**
   * A filter configuration update with the same VM (code, vm_id, vm configuration): the canary checks it,
   * then every VM (main thread and workers) starts a second root context for it, with a new context id;
   * new streams go to it. The previous configuration's roots keep running (ticks, http calls) until
   * `retire(previous)` (Envoy: when its filter chains have drained). The same configuration again is
   * the same plugin key: nothing new starts (cpp-host getOrCreateThreadLocalPlugin finds it).
   * A refused configuration throws HostError and changes nothing.
   */
  updateConfiguration(configuration: string | Uint8Array, opts: { rootId?: string; pluginName?: string } = {}): PluginGeneration {
    if (this.shutDown) throw new HostError("updateConfiguration(): host was shut down");
    const bytes = toBytes(configuration);
    const rootId = opts.rootId ?? this.current.rootId;
    const pluginName = opts.pluginName ?? this.current.pluginName;
    const same = this.generations.find((g) => !g.retired && g.rootId === rootId && Buffer.from(g.configuration).equals(Buffer.from(bytes)));
    if (same) {
      this.current = same;
      for (const vm of this.liveVms()) vm.active = vm.rootOf(same) ?? vm.active;
      return same;
    }
    const plugin = this.newGeneration(bytes, rootId, pluginName);
    this.runCanary(plugin);
    this.generations.push(plugin);
    this.current = plugin;
    for (const vm of this.liveVms()) vm.startRoot(plugin);
    return plugin;
  }

  /** The old configuration's filter chains drained: on_done (→ on_delete, or wait for proxy_done) on its roots. */
  retire(plugin: PluginGeneration): void {
    if (plugin.retired) return;
    if (plugin === this.current && !this.shutDown) throw new Error("retire(): that configuration is the current one; update first");
    plugin.retired = true;
    for (const vm of this.liveVms()) vm.shutdownPlugin(plugin);
  }

  /** The VMs that run callbacks: the main thread's, then the workers'. */
  liveVms(): WorkerVm[] {
    const out: WorkerVm[] = [];
    if (this.mainVm && this.mainVm.usable) out.push(this.mainVm);
    for (const w of this.workers) if (w.usable) out.push(w);
    return out;
  }

  /** @internal The VM now on a thread (queue notifications are posted to threads). */
  vmOnThread(thread: number): WorkerVm | null {
    if (thread === MAIN_THREAD) return this.mainVm;
    return this.workers[thread] ?? null;
  }

  /** Upstream state of a cluster for http_call (Envoy: no healthy host / circuit breaker → InternalFailure). */
  setClusterState(cluster: string, state: ClusterState): void {
    if (state === "ok") this.clusterStates.delete(cluster);
    else this.clusterStates.set(cluster, state);
  }

  /** @internal */
  clusterState(cluster: string): ClusterState {
    return this.clusterStates.get(cluster) ?? "ok";
  }

  /** The current configuration (what new roots and streams use). */
  get configuration(): Uint8Array {
    return this.current.configuration;
  }

  get rootId(): string {
    return this.current.rootId;
  }

  get pluginName(): string {
    return this.current.pluginName;
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
   * (ties: main thread, then lower worker first; ticks before timeouts).
   */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError("advance() needs a non-negative number of ms");
    const target = this.nowMs + ms;
    for (;;) {
      let at = Infinity;
      let fire: (() => void) | null = null;
      for (const w of this.liveVms()) {
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

  /**
   * Envoy shutdown / filter removal: on_done on every root context of every VM; true → on_delete, false →
   * wait for proxy_done. When the last root is gone the VMs are, and with them this vm_id's hold on
   * shared data and queues (deleted when no other VM of the same vm_id holds them).
   */
  shutdown(): void {
    if (this.shutDown) return;
    this.shutDown = true;
    for (const g of this.generations) g.retired = true;
    for (const w of this.liveVms()) w.shutdownPlugin();
    this.maybeRelease();
  }

  /** @internal A root was deleted: after shutdown, the VM goes with its last root. */
  rootDeleted(vm: WorkerVm): void {
    if (!this.shutDown) return;
    if (vm.roots.length === 0) vm.destroyed = true;
    this.maybeRelease();
  }

  private maybeRelease(): void {
    if (!this.attached) return;
    const vms = this.mainVm ? [this.mainVm, ...this.workers] : this.workers;
    if (vms.some((v) => v.failure === null && !v.destroyed && v.roots.length > 0)) return;
    for (const v of vms) v.destroyed = true;
    this.attached = false;
    if (this.sharedData.detach(this.vmId)) this.queues.deleteVmId(this.vmId);
  }

  /** @internal ~Context: the pending http calls of a root (or of a whole VM) are cancelled, never answered. */
  cancelHttpCalls(vm: WorkerVm, rootId?: number): void {
    for (const c of [...this.httpCalls] as PendingCall[]) if (c.vm === vm && (rootId === undefined || c.rootId === rootId)) c.cancel();
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
  readonly vm: WorkerVm;
  /** The root context the answer goes to (http calls are answered on the root, cpp-host exports http_call). */
  readonly rootId: number;
  deadline: number | null;
  timeOut(): void;
  cancel(): void;
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
