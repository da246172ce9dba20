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
// Header-routed: the host's fast path (create, request headers with end_of_stream, [response headers],
// log, done, delete).
// Body-routed: a stream with headers (content-type JSON, no model header) + one 4 KB body chunk.
// Allocations: GC allocations per request are measured on a variant of the plugin built with AS's
// `stub` runtime (a bump allocator that never collects): linear-memory growth / requests. Host
// buffers (malloc'd by the host for header values etc.) are counted by wrapping the `malloc` export.
import { performance } from "node:perf_hooks";
import { mkdirSync, readFileSync } from "node:fs";
import { machineEnd, machineLines, machineStart, markdownTable, writeResult } from "./support.js";
import { fileURLToPath } from "node:url";
import asc from "assemblyscript/asc";
import { ProxyWasmHost } from "../test/host/index.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PLUGIN = `${ROOT}build/plugin.wasm`;
const NOOP = `${ROOT}build/noop.wasm`;
const STUB = `${ROOT}build/bench/plugin.stub.wasm`;
const FLOOR = `${ROOT}build/bench/abi-floor.wasm`;
const RUNS = Number(process.env.BENCH_RUNS ?? 21);
const N = Number(process.env.BENCH_N ?? 6_000);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 20_000);

type Headers = [string, string][];
/** Upstream answer of the routed+upstream rows: 200, host = first address of the endpoint header. */
const UPSTREAM = { status: 200, headers: [["content-type", "application/json"]] as Headers, addressHeader: "x-gateway-destination-endpoint" };
/** Routed rows: observing upstream results off (no clock, no properties). */
const NO_OBSERVE = { telemetry_interval_ms: 0, passive_failures: 0 };
type Host = Awaited<ReturnType<typeof ProxyWasmHost.start>>;

function routingTable(deployments: number, instances: number): string {
  const deps = [];
  const models: Record<string, string> = {};
  for (let d = 0; d < deployments; d++) {
    const inst = [];
    for (let i = 0; i < instances; i++) {
      inst.push({ id: `i${i}`, address: `10.${d >> 8}.${d & 255}.${i + 1}:8000`, base_path: "/v1", weight: 1 + (i % 3), priority: i % 2, region: "r", state: i === 1 ? "draining" : "active" });
    }
    const strategy = ["round_robin", "weighted_round_robin", "failover"][d % 3];
    deps.push({ id: `dep-${d}`, cluster: `gw.dep-${d}`, strategy, on_unavailable: "fail", instances: inst });
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

function headerSets(deployments: number, withModel: boolean): Headers[] {
  const out: Headers[] = [];
  for (let k = 0; k < 256; k++) {
    const h: Headers = [[":method", "POST"], [":path", "/v1/chat/completions"], [":authority", "gw"], [":scheme", "http"], ["content-type", "application/json"], ["user-agent", "bench"]];
    if (withModel) h.push(["x-model", `model-${(k * 7919) % deployments}`]);
    out.push(h);
  }
  return out;
}

function body4k(model: string): Uint8Array {
  const head = `{"model":"${model}","messages":[{"role":"user","content":"`;
  const tail = `"}],"stream":false,"temperature":0.2}`;
  return new TextEncoder().encode(head + "x".repeat(4096 - head.length - tail.length) + tail);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** The host records every foreign call (clear_route_cache) in a process-wide list; drop it between batches. */
function forgetForeignCalls(host: Host): void {
  const h = host as unknown as { foreignCalls?: unknown[] };
  if (Array.isArray(h.foreignCalls)) h.foreignCalls.length = 0;
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
    if ((k & 1023) === 0) forgetForeignCalls(host);
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
  for (let k = 0; k < n; k++) {
    w.runRequest(sets[k & 255]!, up);
    if ((k & 1023) === 0) forgetForeignCalls(host);
  }
  const grown = w.memory.buffer.byteLength - before;
  w.fn.malloc = orig;
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

async function buildStub(): Promise<void> {
  await build("plugin/index.ts", STUB, "stub");
  await build("bench/noop-filter/abi_floor.ts", FLOOR, "incremental");
}

interface Case {
  name: string;
  table: string;
  host: Host;
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
  const w = c.host.worker(0);
  forgetForeignCalls(c.host);
  const t0 = performance.now();
  const up = c.upstream;
  if (up) for (let k = 0; k < n; k++) w.runRequest(c.headerSets[(offset + k) & 255]!, up);
  else for (let k = 0; k < n; k++) w.runRequest(c.headerSets[(offset + k) & 255]!);
  return ((performance.now() - t0) * 1e6) / n;
}

function bodyBatch(c: Case, n: number, offset: number): number {
  const w = c.host.worker(0);
  const sets = c.bodySets!;
  forgetForeignCalls(c.host);
  const t0 = performance.now();
  for (let k = 0; k < n; k++) {
    const s = w.stream();
    s.requestHeaders(sets[(offset + k) & 255]!, false);
    s.requestBody(c.bodies[(offset + k) & 255]!, true);
    s.finish();
  }
  return ((performance.now() - t0) * 1e6) / n;
}

async function main(): Promise<void> {
  const machine = machineStart();
  await buildStub();
  const sizes: [number, number][] = [[1, 4], [100, 10], [1000, 16]];
  const cases: Case[] = [];
  const noopBodies = Array.from({ length: 256 }, () => body4k("model-0"));
  const noop: Case = { name: "no-op floor", table: "-", host: await start(NOOP, null), base: null, upstream: undefined, headerSets: headerSets(1, true), bodySets: headerSets(1, false), bodies: noopBodies, hdr: [], body: [], alloc: "-", mallocs: "-" };
  const floor: Case = { name: "ABI floor: routed", table: "-", host: await start(FLOOR, null, ""), base: noop, upstream: undefined, headerSets: headerSets(1, true), bodySets: null, bodies: [], hdr: [], body: [], alloc: "-", mallocs: "-" };
  const floorUp: Case = { name: "ABI floor: routed+upstream", table: "-", host: await start(FLOOR, null, "observe"), base: noop, upstream: UPSTREAM, headerSets: headerSets(1, true), bodySets: null, bodies: [], hdr: [], body: [], alloc: "-", mallocs: "-" };
  cases.push(noop, floor, floorUp);
  const pluginModule = new WebAssembly.Module(readFileSync(PLUGIN));
  const stubModule = new WebAssembly.Module(readFileSync(STUB));
  for (const [d, i] of sizes) {
    const doc = routingTable(d, i);
    const bodies = Array.from({ length: 256 }, (_, k) => body4k(`model-${(k * 7919) % d}`));
    for (const observed of [false, true]) {
      const config = observed ? {} : NO_OBSERVE;
      const up = observed ? UPSTREAM : undefined;
      const host = await start(pluginModule, doc, config);
      const probe = host.request({ headers: headerSets(d, true)[0]!, response: { status: 200 } });
      if (!probe.upstreamHeaders?.some(([k]) => k === "x-gateway-destination-endpoint")) throw new Error(`table ${d}×${i} not adopted`);
      const stub = await start(stubModule, doc, config);
      const stubProbe = stub.request({ headers: headerSets(d, true)[0]!, response: { status: 200 } });
      if (!stubProbe.upstreamHeaders?.some(([k]) => k === "x-gateway-destination-endpoint")) throw new Error(`stub: table ${d}×${i} not adopted`);
      const alloc = allocations(stub, headerSets(d, true), up);
      const balloc = observed ? null : bodyAllocations(stub, headerSets(d, false), bodies);
      stub.shutdown();
      cases.push({
        name: `plugin ${d}×${i} ${observed ? "routed+upstream" : "routed"}`, table: `${(doc.length / 1024).toFixed(0)} KB`, host,
        base: observed ? floorUp : floor, upstream: up,
        headerSets: headerSets(d, true), bodySets: observed ? null : headerSets(d, false), bodies: observed ? [] : bodies,
        hdr: [], body: [],
        alloc: balloc ? `${alloc.bytes.toFixed(2)} / ${balloc.bytes.toFixed(2)}` : alloc.bytes.toFixed(2),
        mallocs: balloc ? `${alloc.mallocs.toFixed(2)} / ${balloc.mallocs.toFixed(2)}` : alloc.mallocs.toFixed(2),
      });
    }
  }
  // Warm-up, then rounds that interleave every case, so machine noise hits all of them alike.
  for (const c of cases) {
    headerBatch(c, WARMUP, 0);
    if (c.bodySets) bodyBatch(c, WARMUP >> 2, 0);
  }
  const nb = Math.max(1000, N >> 2);
  for (let r = 0; r < RUNS; r++) {
    for (const c of cases) {
      c.hdr.push(headerBatch(c, N, r * 17));
      if (c.bodySets) c.body.push(bodyBatch(c, nb, r * 17));
    }
  }
  const ratio = (xs: number[], base: number[]) => median(xs.map((x, k) => x / base[k]!));
  const diff = (xs: number[], base: number[]) => median(xs.map((x, k) => x - base[k]!));
  const rows = cases.map((c) => [
    c.name, c.table,
    median(c.hdr).toFixed(0), c === noop ? "-" : ratio(c.hdr, noop.hdr).toFixed(2),
    c.base && c.base !== noop ? ratio(c.hdr, c.base.hdr).toFixed(2) : "-",
    c.base ? diff(c.hdr, c.base.hdr).toFixed(0) : "-",
    c.bodySets ? median(c.body).toFixed(0) : "-", c.bodySets ? ratio(c.body, noop.body).toFixed(2) : "-",
    c.alloc, c.mallocs,
  ]);
  for (const c of cases) c.host.shutdown();
  const head = ["case", "table", "header ns/req", "× no-op", "× ABI floor", "− floor ns", "body 4KB ns/req", "× no-op", "heap bytes/req (hdr / body)", "host mallocs/req (hdr / body)"];
  machineEnd(machine);
  console.log(`median of ${RUNS} interleaved rounds × ${N} requests (body: ${nb}) after warm-up; ratios/differences = median of per-round values; node ${process.version}`);
  for (const l of machineLines(machine)) console.log(l);
  console.log(markdownTable(head, rows));
  // Host calls: routed = get x-model (+ the host's malloc into the module), 4 × replace, clear_route_cache;
  // routed+upstream adds the clock at routing and in on_response_headers, upstream.address and
  // response.code in on_log (+ 2 mallocs) and one more callback (on_response_headers).
  const perCall = diff(floor.hdr, noop.hdr) / ROUTED_CALLS;
  const perCallUp = diff(floorUp.hdr, floor.hdr) / (OBSERVED_CALLS - ROUTED_CALLS);
  console.log(`host calls per request: routed ${ROUTED_CALLS} (+1 malloc callback), routed+upstream ${OBSERVED_CALLS} (+3 malloc callbacks, +1 callback);` +
    ` ≈ ${perCall.toFixed(0)} ns per routed-path host call ((ABI floor − no-op) / ${ROUTED_CALLS}),` +
    ` ≈ ${perCallUp.toFixed(0)} ns per upstream-path call incl. on_response_headers ((floor+upstream − floor) / ${OBSERVED_CALLS - ROUTED_CALLS})`);
  const file = writeResult("plugin", {
    bench: "plugin", date: new Date().toISOString(), machine, runs: RUNS, requests_per_round: N, body_requests_per_round: nb,
    ns_per_host_call: { routed: perCall, upstream: perCallUp },
    cases: cases.map((c) => ({ name: c.name, table: c.table, header_ns: c.hdr, body_ns: c.body })),
    table: { head, rows },
  });
  console.log(`results: ${file}`);
}

const ROUTED_CALLS = 6;
const OBSERVED_CALLS = 10;

await main();
