// Per-request cost of build/plugin.wasm, decomposed, all driven through the test host's ABI in this
// process. `npm run bench:plugin`.
//
// Floors: the no-op filter (build/noop.wasm: the 5 callbacks, no host call) and the ABI floor
// (bench/noop-filter/abi_floor.ts: the same host calls a routed request needs, constant values, no
// logic; "observe" adds the calls of the upstream-result path). plugin − ABI floor = our own logic.
// Rows:
//   routed          header-routed, telemetry and passive ejection off: vs the ABI floor
//   routed+upstream header-routed with an upstream 200 (on_response_headers, upstream.address = the
//                   pick as override_host sets it), default config (telemetry + passive ejection on):
//                   vs the ABI floor "observe"
//   routed+upstream, 3 models  as routed+upstream on the 1000×16 table, but the requests name only 3
//                   models (the other rows spread them over 256): the table's size without the cache
//                   misses of spreading, so the difference to the 1000×16 row is what spreading costs
// Header-routed: the host's fast path (create, request headers with end_of_stream, [response headers],
// log, done, delete).
// Body-routed: a stream with headers (content-type JSON, no model header) + one 4 KB body chunk.
//
// Method: every case is set up first, then one full GC, a warm-up, and RUNS rounds; each round runs
// one batch of every case, starting from a different case each round, so machine noise (other
// processes on a shared machine) hits all cases alike. Ratios and differences are computed per round
// (case / floor of the same round), then the median over rounds is reported, with the p25–p75 spread
// of the header ns.
//
// Allocations: GC allocations per request are measured on a variant of the plugin built with AS's
// `stub` runtime (a bump allocator that never collects): linear-memory growth / requests. Host
// buffers (malloc'd by the host for header values etc.) are counted by wrapping the `malloc` export.
//
// Bare rows: the no-op module and the ABI floor module instantiated with imports that return at once
// and driven straight from JS: the wasm side and the JS↔wasm transitions without any host work.
import { mkdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import asc from "assemblyscript/asc";
import { DEFAULT_NOW_MS, ProxyWasmHost } from "../envoy/local/host/index.js";
import { machineEnd, machineLines, machineStart, markdownTable, writeResult } from "./support.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PLUGIN = `${ROOT}build/plugin.wasm`;
const NOOP = `${ROOT}build/noop.wasm`;
const STUB = `${ROOT}build/bench/plugin.stub.wasm`;
const FLOOR = `${ROOT}build/bench/abi-floor.wasm`;
const RUNS = Number(process.env.BENCH_RUNS ?? 31);
const N = Number(process.env.BENCH_N ?? 5_000);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 20_000);
// BENCH_CASES: a regex on case ids (e.g. "weighted_round_robin|affinity") to run a subset; see main().
const SIZES: [number, number][] = [[1, 4], [100, 10], [1000, 16]];

type Headers = [string, string][];
/** Upstream answer of the routed+upstream rows: 200, host = first address of the endpoint header. */
const UPSTREAM = { status: 200, headers: [["content-type", "application/json"]] as Headers, addressHeader: "x-gateway-destination-endpoint" };
/** Routed rows: observing upstream results off (no clock, no properties). */
const NO_OBSERVE = { telemetry_interval_ms: 0, passive_failures: 0 };
type Host = Awaited<ReturnType<typeof ProxyWasmHost.start>>;

/** `served`: every deployment's engine serves another name ("served-N"): requests naming model-N are rewritten. */
/** `only`: every deployment uses this strategy (default: round_robin, weighted_round_robin, failover in turn). */
/** `affinity`: every deployment has session affinity on the x-session-id header (plugin/strategy/affinity.ts). */
/** load_aware: every instance carries a fresh engine load score (scraped at the host's start time, every 60 s). */
function routingTable(deployments: number, instances: number, served = false, only?: string, affinity = false): string {
  const deps = [];
  const models: Record<string, string> = {};
  for (let d = 0; d < deployments; d++) {
    const inst = [];
    for (let i = 0; i < instances; i++) {
      const load = only === "load_aware" ? { load: { score: ((d * 7 + i * 13) % 10) / 4, at_ms: DEFAULT_NOW_MS, interval_ms: 60_000 } } : {};
      inst.push({ id: `i${i}`, address: `10.${d >> 8}.${d & 255}.${i + 1}:8000`, base_path: "/v1", weight: 1 + (i % 3), priority: i % 2, region: "r", state: i === 1 ? "draining" : "active", ...load });
    }
    const strategy = only ?? ["round_robin", "weighted_round_robin", "failover"][d % 3];
    deps.push({ id: `dep-${d}`, cluster: `gw.dep-${d}`, strategy, on_unavailable: "fail", ...(served ? { served_name: `served-${d}` } : {}), ...(affinity ? { affinity: { source: "header", header: "x-session-id" } } : {}), instances: inst });
    models[`model-${d}`] = `dep-${d}`;
  }
  return JSON.stringify({ schema: 1, version: 1, models, deployments: deps });
}

async function start(wasm: string | WebAssembly.Module, doc: string | null, config: Record<string, unknown> | string = {}): Promise<Host> {
  const host = await ProxyWasmHost.start({
    wasm,
    configuration: typeof config === "string" ? config : JSON.stringify({ control_cluster: "control", max_table_bytes: 64 * 1024 * 1024, ...config }),
    clusters: ["control"],
    allowOnHeadersStopIteration: true,
    logLevel: "warn",
  });
  if (doc !== null) {
    for (let i = 0; i < 20 && host.httpCalls.length === 0; i++) host.advance(1000);
    const call = host.httpCalls[0];
    if (call) call.respond({ status: 200, body: doc });
  }
  return host;
}

function headerSets(deployments: number, withModel: boolean, session = false): Headers[] {
  const out: Headers[] = [];
  for (let k = 0; k < 256; k++) {
    const h: Headers = [[":method", "POST"], [":path", "/v1/chat/completions"], [":authority", "gw"], [":scheme", "http"], ["content-type", "application/json"], ["user-agent", "bench"]];
    if (withModel) h.push(["x-model", `model-${(k * 7919) % deployments}`]);
    if (session) h.push(["x-session-id", `3f2b8c1e-5d4a-4e7b-9c0d-${(k * 104729).toString(16).padStart(12, "0")}`]);
    out.push(h);
  }
  return out;
}

function body4k(model: string): Uint8Array {
  const head = `{"model":"${model}","messages":[{"role":"user","content":"`;
  const tail = `"}],"stream":false,"temperature":0.2}`;
  return new TextEncoder().encode(head + "x".repeat(4096 - head.length - tail.length) + tail);
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}
const median = (xs: number[]) => quantile(xs, 0.5);

/** A full GC (between setup and measuring: setup garbage, e.g. a 2 MB table document, is not collected during the rounds). */
function fullGc(): void {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
}

type Probe = { runRequest(h: Headers, up?: typeof UPSTREAM): number; memory: WebAssembly.Memory; fn: { malloc: (n: number) => number }; stream(): { requestHeaders(h: Headers, e: boolean): number; requestBody(b: Uint8Array, e: boolean): number; finish(): unknown } };

/** As allocations(), for body-routed requests. */
function bodyAllocations(host: Host, sets: Headers[], bodies: Uint8Array[]): { bytes: number; mallocs: number } {
  const w = host.worker(0) as unknown as Probe;
  const one = (k: number) => {
    const s = w.stream();
    s.requestHeaders(sets[k & 255]!, false);
    s.requestBody(bodies[k & 255]!, true);
    s.finish();
  };
  for (let k = 0; k < 2000; k++) one(k);
  const orig = w.fn.malloc;
  let mallocs = 0;
  w.fn.malloc = (n: number) => { mallocs++; return orig(n); };
  const before = w.memory.buffer.byteLength;
  const n = 20_000;
  for (let k = 0; k < n; k++) {
    one(k);
    if ((k & 1023) === 0) host.clearForeignCalls();
  }
  const grown = w.memory.buffer.byteLength - before;
  w.fn.malloc = orig;
  return { bytes: grown / n, mallocs: mallocs / n };
}

/** Linear memory bytes per request on the stub-runtime build, and host mallocs per request. */
function allocations(host: Host, sets: Headers[], up?: typeof UPSTREAM): { bytes: number; mallocs: number } {
  const w = host.worker(0) as unknown as Probe;
  for (let k = 0; k < 2000; k++) w.runRequest(sets[k & 255]!, up);
  const orig = w.fn.malloc;
  let mallocs = 0;
  w.fn.malloc = (n: number) => { mallocs++; return orig(n); };
  const before = w.memory.buffer.byteLength;
  const n = 100_000;
  for (let k = 0; k < n; k++) w.runRequest(sets[k & 255]!, up);
  const grown = w.memory.buffer.byteLength - before;
  w.fn.malloc = orig;
  host.clearForeignCalls();
  return { bytes: grown / n, mallocs: mallocs / n };
}

async function build(entry: string, outFile: string, runtime: string): Promise<void> {
  mkdirSync(`${ROOT}build/bench`, { recursive: true });
  const { error, stderr } = await asc.main([
    entry, "--outFile", outFile, "--runtime", runtime, "--exportStart", "_initialize", "--lib", "./plugin/lib",
    "--use", "abort=gateway_abort", "-O3",
  ], {});
  if (error) throw new Error(`${entry} build failed: ${stderr.toString()}`);
}

interface Case {
  /** Stable id (JSON). */
  id: string;
  name: string;
  table: string;
  host: Host | null;
  /** Bare rows: the module driven straight from JS, no host (n requests). */
  bare: ((n: number) => void) | null;
  /** The floor this row is compared with (null: none). */
  base: Case | null;
  upstream: typeof UPSTREAM | undefined;
  headerSets: Headers[];
  bodySets: Headers[] | null;
  bodies: Uint8Array[];
  hdr: number[];
  body: number[];
  alloc: string;
  mallocs: string;
}

function headerBatch(c: Case, n: number, offset: number): number {
  if (c.bare) {
    const t0 = performance.now();
    c.bare(n);
    return ((performance.now() - t0) * 1e6) / n;
  }
  const w = c.host!.worker(0);
  const sets = c.headerSets;
  const up = c.upstream;
  const t0 = performance.now();
  // runRequest keeps its clear_route_cache records in compact form (constant memory): nothing to drop.
  if (up) for (let k = 0; k < n; k++) w.runRequest(sets[(offset + k) & 255]!, up);
  else for (let k = 0; k < n; k++) w.runRequest(sets[(offset + k) & 255]!);
  return ((performance.now() - t0) * 1e6) / n;
}

function bodyBatch(c: Case, n: number, offset: number): number {
  const w = c.host!.worker(0);
  const sets = c.bodySets!;
  c.host!.clearForeignCalls(); // whole streams record one object per clear_route_cache
  const t0 = performance.now();
  for (let k = 0; k < n; k++) {
    const s = w.stream();
    s.requestHeaders(sets[(offset + k) & 255]!, false);
    s.requestBody(c.bodies[(offset + k) & 255]!, true);
    s.finish();
  }
  return ((performance.now() - t0) * 1e6) / n;
}

/**
 * A module instantiated with imports that return at once (Ok; NotFound for header gets, so nothing is
 * allocated), its 5 stream callbacks called straight from JS: what the wasm side and the JS↔wasm
 * transitions cost without any host work.
 */
function bareRunner(file: string, configuration: string): (n: number) => void {
  const module = new WebAssembly.Module(readFileSync(file));
  const imports: Record<string, Record<string, (...a: number[]) => number>> = {};
  for (const i of WebAssembly.Module.imports(module)) {
    (imports[i.module] ??= {})[i.name] = i.name === "proxy_get_header_map_value" ? () => 1 : () => 0;
  }
  const e = new WebAssembly.Instance(module, imports).exports as Record<string, (...a: number[]) => number>;
  e._initialize?.();
  e.proxy_on_context_create!(1, 0);
  e.proxy_on_configure!(1, configuration.length);
  let id = 2;
  const create = e.proxy_on_context_create!, headers = e.proxy_on_request_headers!, log = e.proxy_on_log!, done = e.proxy_on_done!, del = e.proxy_on_delete!;
  return (n: number) => {
    for (let k = 0; k < n; k++) {
      const i = id++;
      create(i, 1);
      headers(i, 7, 1);
      log(i);
      done(i);
      del(i);
    }
  };
}

/** The cases measured through the host. */
interface CaseSpec {
  id: string;
  name: string;
  wasm: string;
  doc: string | null;
  config: Record<string, unknown> | string;
  upstream: typeof UPSTREAM | undefined;
  deployments: number;
  /** Models the requests name (default: spread over min(256, deployments)). */
  models?: number;
  /** Requests carry an x-session-id (a UUID-like key, 256 distinct). */
  session?: boolean;
  base: string | null;
}

function caseSpecs(): CaseSpec[] {
  const specs: CaseSpec[] = [
    { id: "noop", name: "no-op floor", wasm: NOOP, doc: null, config: {}, upstream: undefined, deployments: 1, base: null },
    { id: "floor", name: "ABI floor: routed", wasm: FLOOR, doc: null, config: "", upstream: undefined, deployments: 1, base: "noop" },
    { id: "floor-upstream", name: "ABI floor: routed+upstream", wasm: FLOOR, doc: null, config: "observe", upstream: UPSTREAM, deployments: 1, base: "noop" },
  ];
  for (const [d, i] of SIZES) {
    const doc = routingTable(d, i);
    for (const observed of [false, true]) {
      specs.push({
        id: `plugin-${d}x${i}${observed ? "-upstream" : ""}`,
        name: `plugin ${d}×${i} ${observed ? "routed+upstream" : "routed"}`,
        wasm: PLUGIN, doc, config: observed ? {} : NO_OBSERVE, upstream: observed ? UPSTREAM : undefined, deployments: d,
        base: observed ? "floor-upstream" : "floor",
      });
    }
  }
  // Served names (plugin/filter/served_name.ts): header-routed requests without a body only test the
  // flag; the body column rewrites the 4 KB body's "model" (read, copy with the new name, replace).
  specs.push({
    id: "plugin-100x10-served", name: "plugin 100×10 routed, served-name rewrite",
    wasm: PLUGIN, doc: routingTable(100, 10, true), config: NO_OBSERVE, upstream: undefined, deployments: 100, base: "floor",
  });
  // Strategies compared on the same 100×10 table (weights 1–3, two tiers, one draining instance each):
  // least_request, latency and load_aware (plugin/strategy/load.ts; load_aware with fresh scores, so the
  // score path, not its stale fallback) against weighted round robin. Goal ≤ 1.3× its cost.
  for (const strategy of ["weighted_round_robin", "least_request", "latency", "load_aware"]) {
    const doc = routingTable(100, 10, false, strategy);
    for (const observed of [false, true]) {
      specs.push({
        id: `plugin-100x10-${strategy}${observed ? "-upstream" : ""}`,
        name: `plugin 100×10 ${strategy} ${observed ? "routed+upstream" : "routed"}`,
        wasm: PLUGIN, doc, config: observed ? {} : NO_OBSERVE, upstream: observed ? UPSTREAM : undefined, deployments: 100,
        base: observed ? "floor-upstream" : "floor",
      });
    }
  }
  // Session affinity (plugin/strategy/affinity.ts) on weighted round robin's table: every request keyed
  // by x-session-id (one more header read, rendezvous over the tier). Goal ≤ 1.3× weighted round robin.
  for (const observed of [false, true]) {
    specs.push({
      id: `plugin-100x10-affinity${observed ? "-upstream" : ""}`,
      name: `plugin 100×10 weighted_round_robin + affinity (keyed) ${observed ? "routed+upstream" : "routed"}`,
      wasm: PLUGIN, doc: routingTable(100, 10, false, "weighted_round_robin", true), config: observed ? {} : NO_OBSERVE,
      upstream: observed ? UPSTREAM : undefined, deployments: 100, session: true, base: observed ? "floor-upstream" : "floor",
    });
  }
  const [d, i] = SIZES[SIZES.length - 1]!;
  specs.push({
    id: `plugin-${d}x${i}-upstream-3`, name: `plugin ${d}×${i} routed+upstream, 3 models`,
    wasm: PLUGIN, doc: routingTable(d, i), config: {}, upstream: UPSTREAM, deployments: d, models: 3, base: "floor-upstream",
  });
  return specs;
}

async function main(): Promise<void> {
  const machine = machineStart();
  await build("plugin/index.ts", STUB, "stub");
  await build("bench/noop-filter/abi_floor.ts", FLOOR, "incremental");
  // BENCH_CASES=<regex>: only the cases whose id matches (the floors they are measured against are kept).
  const only = process.env.BENCH_CASES ? new RegExp(process.env.BENCH_CASES) : null;
  const specs = caseSpecs().filter((s) => only === null || s.base === null || s.id.startsWith("floor") || only.test(s.id));
  const pluginModule = new WebAssembly.Module(readFileSync(PLUGIN));
  const stubModule = new WebAssembly.Module(readFileSync(STUB));
  const byId = new Map<string, Case>();
  const cases: Case[] = [];
  const noopBodies = Array.from({ length: 256 }, () => body4k("model-0"));
  const bareCase = (id: string, name: string, runner: (n: number) => void): Case => ({
    id, name, table: "-", host: null, bare: runner, base: null, upstream: undefined, headerSets: [], bodySets: null, bodies: [],
    hdr: [], body: [], alloc: "-", mallocs: "-",
  });
  const bare = [
    bareCase("bare-noop", "bare no-op (no host)", bareRunner(NOOP, "")),
    bareCase("bare-floor", "bare ABI floor (no-op imports)", bareRunner(FLOOR, "")),
  ];
  for (const s of specs) {
    const plugin = s.wasm === PLUGIN;
    const host = await start(plugin ? pluginModule : s.wasm, s.doc, s.config);
    const sets = headerSets(s.models ?? s.deployments, true, s.session === true);
    let alloc = "-";
    let mallocs = "-";
    const withBody = s.id === "noop" || (plugin && s.upstream === undefined);
    const bodies = s.id === "noop" ? noopBodies : withBody ? Array.from({ length: 256 }, (_, k) => body4k(`model-${(k * 7919) % s.deployments}`)) : [];
    if (plugin) {
      const probe = host.request({ headers: sets[0]!, response: { status: 200 } });
      if (!probe.upstreamHeaders?.some(([k]) => k === "x-gateway-destination-endpoint")) throw new Error(`${s.name}: table not adopted`);
      const stub = await start(stubModule, s.doc, s.config);
      const stubProbe = stub.request({ headers: sets[0]!, response: { status: 200 } });
      if (!stubProbe.upstreamHeaders?.some(([k]) => k === "x-gateway-destination-endpoint")) throw new Error(`stub: ${s.name}: table not adopted`);
      const a = allocations(stub, sets, s.upstream);
      const b = withBody ? bodyAllocations(stub, headerSets(s.deployments, false, s.session === true), bodies) : null;
      stub.shutdown();
      alloc = b ? `${a.bytes.toFixed(2)} / ${b.bytes.toFixed(2)}` : a.bytes.toFixed(2);
      mallocs = b ? `${a.mallocs.toFixed(2)} / ${b.mallocs.toFixed(2)}` : a.mallocs.toFixed(2);
    }
    const c: Case = {
      id: s.id, name: s.name, table: s.doc === null ? "-" : `${(s.doc.length / 1024).toFixed(0)} KB`, host, bare: null,
      base: s.base === null ? null : byId.get(s.base)!, upstream: s.upstream,
      headerSets: sets, bodySets: withBody ? headerSets(s.deployments, false, s.session === true) : null, bodies,
      hdr: [], body: [], alloc, mallocs,
    };
    byId.set(s.id, c);
    cases.push(c);
  }
  const noop = byId.get("noop")!;
  const floor = byId.get("floor")!;
  const floorUp = byId.get("floor-upstream")!;
  cases.unshift(...bare);

  fullGc();
  for (const c of cases) {
    headerBatch(c, WARMUP, 0);
    if (c.bodySets) bodyBatch(c, WARMUP >> 2, 0);
  }
  const nb = Math.max(1000, N >> 2);
  for (let r = 0; r < RUNS; r++) {
    for (let i = 0; i < cases.length; i++) {
      const c = cases[(i + r) % cases.length]!;
      c.hdr.push(headerBatch(c, N, r * 17));
      if (c.bodySets) c.body.push(bodyBatch(c, nb, r * 17));
    }
  }
  for (const c of cases) c.host?.shutdown();

  machineEnd(machine);

  const ratio = (xs: number[], base: number[]) => median(xs.map((x, k) => x / base[k]!));
  const diff = (xs: number[], base: number[]) => median(xs.map((x, k) => x - base[k]!));
  const head = ["case", "table", "header ns/req", "p25–p75", "× no-op", "× ABI floor", "− floor ns", "body 4KB ns/req", "× no-op", "heap bytes/req (hdr / body)", "host mallocs/req (hdr / body)"];
  const rows = cases.map((c) => [
      c.name, c.table,
      median(c.hdr).toFixed(0), `${quantile(c.hdr, 0.25).toFixed(0)}–${quantile(c.hdr, 0.75).toFixed(0)}`,
      c === noop ? "-" : ratio(c.hdr, noop.hdr).toFixed(2),
      c.base && c.base !== noop ? ratio(c.hdr, c.base.hdr).toFixed(2) : "-",
      c.base ? diff(c.hdr, c.base.hdr).toFixed(0) : "-",
      c.bodySets ? median(c.body).toFixed(0) : "-", c.bodySets && c !== noop ? ratio(c.body, noop.body).toFixed(2) : "-",
      c.alloc, c.mallocs,
  ]);
  // Host calls: routed = get x-model (+ the host's malloc into the module), 4 × replace, clear_route_cache;
  // routed+upstream adds the clock at routing and in on_response_headers, upstream.address and
  // response.code in on_log (+ 2 mallocs) and one more callback (on_response_headers).
  const perCall = diff(floor.hdr, noop.hdr) / ROUTED_CALLS;
  const perBareCall = diff(bare[1]!.hdr, bare[0]!.hdr) / ROUTED_CALLS;
  const perCallUp = diff(floorUp.hdr, floor.hdr) / (OBSERVED_CALLS - ROUTED_CALLS);
  const notes = [
    `median of ${RUNS} interleaved rounds × ${N} requests (body: ${nb}) after a full GC and warm-up; ratios/differences = median of per-round values; p25–p75 = spread of the header ns over rounds`,
    ...machineLines(machine),
    `host calls per request: routed ${ROUTED_CALLS} (+1 malloc callback), routed+upstream ${OBSERVED_CALLS} (+3 malloc callbacks, +1 callback);` +
      ` ≈ ${perCall.toFixed(0)} ns per routed-path host call ((ABI floor − no-op) / ${ROUTED_CALLS}),` +
      ` ≈ ${perCallUp.toFixed(0)} ns per upstream-path call incl. on_response_headers ((floor+upstream − floor) / ${OBSERVED_CALLS - ROUTED_CALLS});` +
      ` bare: ≈ ${perBareCall.toFixed(0)} ns per call to an import that returns at once, module side included ((bare floor − bare no-op) / ${ROUTED_CALLS})`,
  ];
  console.log(notes[0]);
  for (const l of notes.slice(1, 1 + machineLines(machine).length)) console.log(l);
  console.log(markdownTable(head, rows));
  for (const l of notes.slice(1 + machineLines(machine).length)) console.log(l);
  const file = writeResult("plugin", {
    bench: "plugin",
    date: new Date().toISOString(),
    machine,
    runs: RUNS,
    requests_per_round: N,
    body_requests_per_round: nb,
    warmup: WARMUP,
    notes,
    ns_per_host_call: { routed: perCall, upstream: perCallUp, bare_import: perBareCall },
    cases: cases.map((c) => ({
      id: c.id, name: c.name, table: c.table, base: c.base?.id ?? null,
      header_ns: c.hdr, body_ns: c.bodySets ? c.body : null,
      header_median_ns: median(c.hdr), header_p25_ns: quantile(c.hdr, 0.25), header_p75_ns: quantile(c.hdr, 0.75),
      header_per_noop: c === noop ? null : ratio(c.hdr, noop.hdr),
      header_per_floor: c.base && c.base !== noop ? ratio(c.hdr, c.base.hdr) : null,
      header_minus_floor_ns: c.base ? diff(c.hdr, c.base.hdr) : null,
      body_median_ns: c.bodySets ? median(c.body) : null,
      body_per_noop: c.bodySets && c !== noop ? ratio(c.body, noop.body) : null,
      heap_bytes_per_request: c.alloc, host_mallocs_per_request: c.mallocs,
    })),
    table: { head, rows },
  });
  console.log(`results: ${file}`);
}

const ROUTED_CALLS = 6;
const OBSERVED_CALLS = 10;

await main();
