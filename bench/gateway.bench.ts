// Gateway overhead: the same weighted pool of mock upstreams behind our local data plane, a plain Node
// keep-alive proxy, the Portkey AI gateway and nginx, against direct-to-upstream, under the same closed-loop
// load in the same run. `tsx bench/gateway.bench.ts` (npm run bench:gateway). Issues 7 and 19.
//
// Upstreams: BENCH_UPSTREAMS = 4 lean OpenAI-compatible mocks (raw node:http, bench/gateway/upstreams.proc.ts)
// answering POST /v1/chat/completions with a fixed ~300-byte completion after BENCH_UPSTREAM_MS (default 1)
// ms; each names itself and counts what it served (the share check). Weights BENCH_WEIGHTS (default
// 1,2,3,4), the same in every gateway.
// Targets (127.0.0.1 only):
//   direct   autocannon straight to the upstreams, its connections spread evenly over them (connection
//            i → upstream i mod 4; with 1 connection: upstream 0). Identical mocks in one process, so
//            this is the no-gateway baseline the "+p50/+p99" columns subtract.
//   plain    the yardstick of issue 19: a ~50-line node:http reverse proxy (bench/gateway/plain-proxy.proc.ts)
//            with keep-alive agents to the upstreams, nginx's smooth weighted round robin over the same
//            weights, bodies streamed (pipe), status and headers forwarded. "CPU µs/req ÷ plain" divides by
//            its CPU per request at the same concurrency in this run (issue 19's goal for ours: ≤ 1.2).
//   ours     the local data plane (envoy/local/dataplane.ts: build/plugin.wasm on our TypeScript
//            proxy-wasm host + Node forwarder, 1 plugin VM, plugin defaults as `npm start`) fed by the
//            control service + Redis (bench/gateway/control.proc.ts: `npm start`'s control configuration,
//            BENCH_CONTROL_TEST_CONFIG=1 for the test harness's) with a weighted_round_robin deployment of the 4 upstreams; requests are header-routed (x-model)
//            and carry the model in the JSON body too. Counted as the whole stack: data plane, control
//            service and Redis (3 processes; `npm start`'s npm/tsx wrapper processes are not in the bench).
//   portkey  @portkey-ai/gateway (node build/start-server.js --headless), x-portkey-config
//            {strategy: loadbalance, targets: [{provider: openai, custom_host, weight}]} on every request
//            (bench/gateway/portkey.ts; weighted random pick).
//   nginx    Debian's nginx, 1 worker, weighted upstream with keep-alive (bench/gateway/nginx.ts): the
//            raw-proxy floor. Skipped with a message when nginx is not on PATH.
// Processes (2 cores): load generator (autocannon, bench/gateway/loadgen.proc.ts), mocks, and each gateway
// run in separate processes; this process only orchestrates. Ours is 3 processes: the data plane
// (bench/gateway/dataplane.proc.ts), the control service (bench/gateway/control.proc.ts, which only sees the
// data plane's long-poll, its 5 s telemetry and its own health probes while ours is loaded) and Redis (a
// child of the control process). The plain proxy, Portkey and nginx (master + 1 worker) are their own
// processes: every gateway gets one event loop / worker. Node children run under tsx (--import) like
// `npm start`; Portkey runs its shipped JS with plain node. Gateways stay up for the whole run; only the
// target under load is busy.
// Load: for each concurrency of BENCH_CONNECTIONS (default "32,1": saturated as issue 19 measures, then one
// request at a time, i.e. pure per-request overhead), BENCH_ROUNDS (default 2) rounds over the targets
// (order rotated per round), each a BENCH_WARMUP_S (default 1; 3 the first time a target is hit) warm-up
// then BENCH_DURATION_S (default 5) measured seconds of autocannon, keep-alive, pipelining 1, POST
// /v1/chat/completions with a small JSON body. Latencies: every 2xx response, sub-ms (autocannon's response
// event), pooled over rounds; req/s = 2xx / measured time, over rounds. Closed loop: at 32 connections
// p50 ≈ 32 / req/s, so there the latency columns mostly restate throughput; the 1-connection rows give
// added latency per request.
// Checks per target: non-2xx, connection errors and timeouts (should be 0), and each upstream's share of
// the chat completions served during the measured windows vs the weights (flagged beyond
// BENCH_SHARE_TOLERANCE percentage points, default 3, or 4 binomial standard deviations when larger, so
// Portkey's random pick is not flagged on small counts). Any failed check fails the bench (after the report).
// The issue-19 goals (ours ÷ plain CPU ≤ 1.2, data plane RSS ≤ 150 MB, stack ≤ 300 MB, req/s ≥ 10 × Portkey)
// are printed per concurrency, not enforced.
// CPU: user+system time of every process of the target during each measured window (/proc, Linux, 10 ms
// ticks) per 2xx response ("CPU µs/req"; ours: data plane + control + Redis, the split is printed): what a
// request costs, much less sensitive to other load on the machine than req/s (the JSON also has the mocks'
// and the load generator's). RSS: VmRSS of each process at the end of each measured window, the largest over
// the rounds; "RSS MB" is the serving process (ours: the data plane; nginx: its worker), "stack RSS MB" the
// sum over the target's processes (shared pages, e.g. nginx master/worker, count twice). A target's processes
// include their descendants (looked up each window, named by command: e.g. the esbuild service tsx starts
// when its transform cache misses). The JSON has the split per process and every process's peak (VmHWM)
// at the end of the run.
// Also: BENCH_TARGETS (subset of direct,plain,ours,portkey,nginx), BENCH_DP_WORKERS (plugin VMs, default 1),
// BENCH_DP_PROCESSES (data-plane processes on one port, GATEWAY_PROCESSES, default 1; their CPU and RSS count),
// BENCH_DP_PLUGIN_CONFIG (JSON merged into the plugin configuration of ours, for experiments: e.g.
// {"telemetry_interval_ms":0,"passive_failures":0}), BENCH_DP_WASM (another module for ours, e.g.
// build/noop.wasm: the forwarder and host without the plugin's work; unrouted requests go to upstream 1),
// NGINX_BIN, BENCH_RATE (requests/s over all connections: an open loop at the same load for every target; default 0 =
// closed loop, as issue 19 measures), BENCH_DP_NODE_ARGS / BENCH_PLAIN_NODE_ARGS (node/V8 options for the data-plane / plain proxy process, space-separated, e.g. "--trace-gc-nvp" or
// "--cpu-prof --cpu-prof-dir=/tmp/prof": NODE_OPTIONS refuses most V8 flags). Default run: ~3 min (BENCH_* settings
// above shorten it).
// Output: machine and load average lines, a markdown table, the issue-19 ratio lines,
// bench/results/gateway-<date>.json (raw numbers + the table).
import { PLUGIN } from "../test/control/harness.js";
import { bounded, fmt, machineEnd, machineLines, machineStart, markdownTable, stopInOrder, writeResult } from "./support.js";
import { forkChild, type Child } from "./gateway/ipc.js";
import type { RunArgs, RunResult } from "./gateway/loadgen.proc.js";
import { findNginx, startNginx, type Nginx } from "./gateway/nginx.js";
import { portkeyConfig, portkeyServer, startPortkey, type Portkey } from "./gateway/portkey.js";
import { childPids, cpuMs, descendants, pctSorted, pooled, procComm, procMemMb, procStartTicks, shareCheck, type ShareCheck } from "./gateway/stats.js";

const num = (name: string, def: number, min: number, max: number): number => {
  const v = process.env[name] === undefined || process.env[name] === "" ? def : Number(process.env[name]);
  if (!Number.isFinite(v) || v < min || v > max) throw new Error(`${name} must be a number in ${min}..${max}`);
  return v;
};
const list = (name: string, def: string): number[] =>
  (process.env[name] ?? def)
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map(Number);

const TARGET_KEYS = ["direct", "plain", "ours", "portkey", "nginx"];
const S = {
  upstreams: Math.round(num("BENCH_UPSTREAMS", 4, 1, 16)),
  upstreamMs: num("BENCH_UPSTREAM_MS", 1, 0, 1_000),
  weights: list("BENCH_WEIGHTS", "1,2,3,4"),
  connections: list("BENCH_CONNECTIONS", "32,1"),
  rounds: Math.round(num("BENCH_ROUNDS", 2, 1, 20)),
  warmupS: Math.round(num("BENCH_WARMUP_S", 1, 0, 60)),
  durationS: Math.round(num("BENCH_DURATION_S", 5, 1, 120)),
  shareTolerance: num("BENCH_SHARE_TOLERANCE", 3, 0, 100),
  dpWorkers: Math.round(num("BENCH_DP_WORKERS", 1, 1, 64)),
  dpProcesses: Math.round(num("BENCH_DP_PROCESSES", 1, 1, 64)),
  dpNodeArgs: (process.env.BENCH_DP_NODE_ARGS ?? "").split(" ").filter((a) => a !== ""),
  plainNodeArgs: (process.env.BENCH_PLAIN_NODE_ARGS ?? "").split(" ").filter((a) => a !== ""),
  /** BENCH_RATE: requests/s over all connections (0 = closed loop, as issue 19 measures). */
  rate: Math.round(num("BENCH_RATE", 0, 0, 1_000_000)),
  targets: (process.env.BENCH_TARGETS || TARGET_KEYS.join(",")).split(",").map((s) => s.trim()).filter((s) => s !== ""),
  model: "bench-gw",
};
if (S.weights.length !== S.upstreams || S.weights.some((w) => !Number.isInteger(w) || w < 1 || w > 100)) {
  throw new Error(`BENCH_WEIGHTS must be ${S.upstreams} integers in 1..100`);
}
if (S.connections.length === 0 || S.connections.some((c) => !Number.isInteger(c) || c < 1 || c > 1_000)) {
  throw new Error("BENCH_CONNECTIONS must be a list of integers in 1..1000");
}
if (S.targets.some((t) => !TARGET_KEYS.includes(t))) throw new Error(`BENCH_TARGETS must be a subset of ${TARGET_KEYS.join(",")}`);

/** Issue 19's goals for ours (printed per concurrency, not enforced). */
const GOAL = { cpuVsPlain: 1.2, dpRssMb: 150, stackRssMb: 300, rpsVsPortkey: 10 };

const BODY = JSON.stringify({ model: S.model, messages: [{ role: "user", content: "Say hi." }], max_tokens: 16 });
/** The first warm-up of a target is this much longer (JIT, connection pools). */
const FIRST_WARMUP_EXTRA_S = 2;
/** Setup ~10 s; per slot warm-up + measured time (whole seconds: autocannon stops on its 1 s tick) + slack. */
const estimateS = 15 + S.targets.length * (S.connections.length * S.rounds * (S.warmupS + S.durationS + 0.5) + FIRST_WARMUP_EXTRA_S);
const LIMIT_MS = Math.max(170_000, Math.ceil(estimateS * 1.5) * 1000);

/** One process of a target. */
interface Proc {
  name: string;
  pid: number;
}

interface Target {
  key: string;
  label: string;
  url: string | string[];
  headers: Record<string, string>;
  /**
   * The target's processes (CPU time and RSS summed); none for direct. The first serves the requests. Their
   * descendants count too (e.g. an esbuild service tsx started), named by command, looked up per window.
   */
  procs: Proc[];
}

/** The target's processes now: its own, then every descendant of them, named by command name. */
function members(t: Target): Proc[] {
  const own = t.procs.map((p) => p.pid);
  return [...t.procs, ...descendants(own).map((pid) => ({ name: procComm(pid) || "other", pid }))];
}

/** One measured window: the load generator's counts (its raw latencies pooled apart) plus what the bench saw. */
interface Round extends Omit<RunResult, "latencies"> {
  round: number;
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Chat completions each upstream served during the measured window. */
  upstream: number[];
  /** TCP connections the upstreams accepted during the measured window (keep-alive reuse check). */
  upstreamConnections: number;
  /** CPU ms used during the measured window by the target's processes / the mocks / the load generator (null: no /proc). */
  cpu: { gateway: number | null; upstreams: number | null; loadgen: number | null };
  /** CPU ms per process of the target during the measured window. */
  cpuByProcess: Record<string, number | null>;
  /** VmRSS MB per process of the target at the end of the measured window. */
  rssByProcess: Record<string, number | null>;
}

interface Cell {
  target: string;
  connections: number;
  rounds: Round[];
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  samples: number;
  ok2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  upstream: number[];
  upstreamConnections: number;
  /** CPU µs per 2xx response of the target's processes (all of them) / the mocks / the load generator. */
  cpuUsPerRequest: { gateway: number | null; upstreams: number | null; loadgen: number | null };
  /** CPU µs per 2xx response of each process of the target. */
  cpuUsPerRequestByProcess: Record<string, number | null>;
  /** VmRSS MB at the end of the measured windows, largest over the rounds: the serving process, the sum over the target's processes, each. */
  rssMb: { process: number | null; stack: number | null; byProcess: Record<string, number | null> };
  share: ShareCheck | null;
}

let upstreams: Child | null = null;
let loadgen: Child | null = null;
let control: Child | null = null;
/** The control's redis-server, with its start time (the last-resort kill spares a reused pid). */
let redis: { pid: number; started: number | null } | null = null;
let dpChild: Child | null = null;
let plain: Child | null = null;
let portkey: Portkey | null = null;
let nginx: Nginx | null = null;

process.on("exit", () => {
  // Last resort (bounded() exits after cleanup; this only matters if cleanup itself failed).
  for (const c of [loadgen, dpChild, plain, control, upstreams]) c?.killNow();
  if (redis !== null && redis.started !== null && procStartTicks(redis.pid) === redis.started) {
    try {
      process.kill(redis.pid, "SIGKILL"); // still the control's redis-server: its stop failed
    } catch {
      // gone meanwhile
    }
  }
  portkey?.killNow();
  nginx?.killNow();
});

await bounded(
  LIMIT_MS,
  () =>
    stopInOrder([
      ["load generator", () => loadgen?.stop()],
      ["Portkey", () => portkey?.stop()],
      ["nginx", () => nginx?.stop()],
      ["plain proxy", () => plain?.stop()],
      ["local data plane", () => dpChild?.stop()],
      ["control + Redis", () => control?.stop()],
      ["upstreams", () => upstreams?.stop()],
    ]),
  async () => {
    const machine = machineStart();
    const t0 = Date.now();
    const notes: string[] = [];

    // ---------------------------------------------------------------- setup
    upstreams = await forkChild("upstreams", "./upstreams.proc.ts", {
      BENCH_UPSTREAMS: String(S.upstreams),
      BENCH_UPSTREAM_MS: String(S.upstreamMs),
      BENCH_MODEL: S.model,
    });
    const ports = (upstreams.ready as { ports: number[] }).ports;
    const bases = ports.map((p) => `http://127.0.0.1:${p}/v1`);
    const counts = () => upstreams!.call<{ served: number[]; connections: number[] }>("counts");

    const targets: Target[] = [];
    if (S.targets.includes("direct")) {
      targets.push({ key: "direct", label: "direct (no gateway)", url: bases.map((b) => `${b}/chat/completions`), headers: { "content-type": "application/json" }, procs: [] });
    }
    if (S.targets.includes("plain")) {
      plain = await forkChild("plain proxy", "./plain-proxy.proc.ts", {
        BENCH_PLAIN_UPSTREAMS: JSON.stringify(ports.map((port, i) => ({ port, weight: S.weights[i]! }))),
      }, 30_000, S.plainNodeArgs);
      const url = (plain.ready as { url: string }).url;
      targets.push({ key: "plain", label: "plain Node proxy (keep-alive, SWRR)", url: `${url}/v1/chat/completions`, headers: { "content-type": "application/json" }, procs: [{ name: "proxy", pid: plain.pid }] });
    }
    if (S.targets.includes("ours")) {
      control = await forkChild(
        "control + Redis",
        "./control.proc.ts",
        { BENCH_MODEL: S.model, BENCH_BASES: JSON.stringify(bases), BENCH_WEIGHTS_JSON: JSON.stringify(S.weights), BENCH_STRATEGY: "weighted_round_robin" },
        60_000,
      );
      const ctl = control.ready as { url: string; version: number; redisPid: number | null };
      const redisPid = ctl.redisPid;
      redis = redisPid === null ? null : { pid: redisPid, started: procStartTicks(redisPid) };
      if (redisPid === null) notes.push("ours: redis-server not identified under the control process (counted among its descendants by command name if it runs there)");
      dpChild = await forkChild("local data plane", "./dataplane.proc.ts", {
        BENCH_CONTROL_URL: ctl.url,
        BENCH_PLUGIN_TOKEN: PLUGIN,
        BENCH_TABLE_VERSION: String(ctl.version),
        BENCH_DP_WORKERS: String(S.dpWorkers),
        BENCH_DP_PROCESSES: String(S.dpProcesses),
        // BENCH_DP_WASM (another module, e.g. build/noop.wasm): what it does not route goes to the first upstream.
        ...(process.env.BENCH_DP_WASM ? { BENCH_DP_PASSTHROUGH: `http://127.0.0.1:${ports[0]}` } : {}),
      }, 30_000, S.dpNodeArgs);
      const url = (dpChild.ready as { url: string }).url;
      targets.push({
        key: "ours",
        label: "ours (local data plane + control + Redis)",
        url: `${url}/v1/chat/completions`,
        headers: { "content-type": "application/json", "x-model": S.model },
        procs: [{ name: "data plane", pid: dpChild.pid }, { name: "control", pid: control.pid }, ...(redisPid !== null ? [{ name: "Redis", pid: redisPid }] : [])],
      });
    }
    let portkeyVersion: string | null = null;
    if (S.targets.includes("portkey")) {
      if (portkeyServer() === null) {
        const msg = "Portkey skipped: @portkey-ai/gateway is not installed (npm install)";
        console.log(msg);
        notes.push(msg);
      } else {
        portkey = await startPortkey();
        portkeyVersion = portkey.version;
        targets.push({
          key: "portkey",
          label: `Portkey ${portkey.version} loadbalance`,
          url: `${portkey.url}/v1/chat/completions`,
          headers: { "content-type": "application/json", "x-portkey-config": portkeyConfig(bases.map((url, i) => ({ url, weight: S.weights[i]! }))) },
          procs: [{ name: "server", pid: portkey.pid }],
        });
      }
    }
    let nginxVersion: string | null = null;
    if (S.targets.includes("nginx")) {
      const bin = findNginx();
      if (bin === null) {
        const msg = "nginx skipped: not installed (apt-get install nginx)";
        console.log(msg);
        notes.push(msg);
      } else {
        nginx = await startNginx(bin, ports.map((port, i) => ({ port, weight: S.weights[i]! })), Math.max(...S.connections));
        nginxVersion = nginx.version;
        const workers = childPids(nginx.pid);
        targets.push({
          key: "nginx",
          label: `nginx ${nginx.version}`,
          url: `${nginx.url}/v1/chat/completions`,
          headers: { "content-type": "application/json" },
          procs: [...workers.map((pid, i) => ({ name: workers.length > 1 ? `worker ${i}` : "worker", pid })), { name: "master", pid: nginx.pid }],
        });
      }
    }
    if (targets.length === 0) throw new Error("no targets (BENCH_TARGETS)");
    loadgen = await forkChild("load generator", "./loadgen.proc.ts", {});

    // One request per target: a completion from one of the upstreams, or stop here.
    for (const t of targets) {
      const url = Array.isArray(t.url) ? t.url[0]! : t.url;
      const res = await fetch(url, { method: "POST", headers: t.headers, body: BODY });
      const text = await res.text();
      if (res.status !== 200 || !/hi from upstream #\d/.test(text)) throw new Error(`${t.label}: sanity request → ${res.status} ${text.slice(0, 500)}`);
    }
    const setupS = (Date.now() - t0) / 1000;
    console.error(`gateway bench: ${targets.map((t) => t.key).join(", ")} ready in ${setupS.toFixed(1)} s; concurrency ${S.connections.join(", ")}, ${S.rounds} rounds × (${S.warmupS} s warm-up + ${S.durationS} s), ~${Math.round(estimateS)} s`);

    // ---------------------------------------------------------------- load
    const run = (t: Target, connections: number, durationS: number, collect: boolean) =>
      loadgen!.call<RunResult>("run", { url: t.url, headers: t.headers, body: BODY, connections, durationS, collect, ...(S.rate > 0 ? { rate: S.rate } : {}) } satisfies RunArgs, (durationS + 30) * 1000);
    const cpuByPid = (procs: Proc[]) => new Map(procs.map((p) => [p.pid, cpuMs([p.pid])]));
    const raw = new Map<string, { rounds: Round[]; lat: Float64Array[] }>();
    const warmed = new Set<string>();
    for (const c of S.connections) {
      for (let r = 0; r < S.rounds; r++) {
        const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
        for (const t of order) {
          const first = !warmed.has(t.key);
          warmed.add(t.key);
          const warm = S.warmupS + (first ? FIRST_WARMUP_EXTRA_S : 0);
          if (warm > 0) await run(t, c, warm, false);
          const before = await counts();
          const cpu0 = { upstreams: cpuMs([upstreams.pid]), loadgen: cpuMs([loadgen.pid]) };
          const byPid0 = cpuByPid(members(t));
          const res = await run(t, c, S.durationS, true);
          const cpu1 = { upstreams: cpuMs([upstreams.pid]), loadgen: cpuMs([loadgen.pid]) };
          const now = members(t);
          const byPid1 = cpuByPid(now);
          const rssByProcess: Record<string, number | null> = {};
          const cpuByProcess: Record<string, number | null> = {};
          for (const p of now) {
            // A process that started during the window: all its CPU time is in it (one that ended is lost).
            const used = byPid1.get(p.pid) == null ? null : byPid1.get(p.pid)! - (byPid0.get(p.pid) ?? 0);
            const rss = procMemMb(p.pid)?.rss ?? null;
            const add = (m: Record<string, number | null>, v: number | null) => {
              m[p.name] = m[p.name] === null || v === null ? null : (m[p.name] ?? 0) + v;
            };
            add(cpuByProcess, used);
            add(rssByProcess, rss);
          }
          const gatewayCpu = t.procs.length === 0 || Object.values(cpuByProcess).some((v) => v === null) ? null : Object.values(cpuByProcess).reduce<number>((a, v) => a + v!, 0);
          const after = await counts();
          const used = (k: keyof typeof cpu0) => (cpu0[k] !== null && cpu1[k] !== null ? cpu1[k]! - cpu0[k]! : null);
          const { latencies, ...counted } = res;
          const s = latencies.sort();
          const round: Round = {
            ...counted,
            round: r,
            rps: res.ok2xx / res.durationS,
            p50: pctSorted(s, 50),
            p90: pctSorted(s, 90),
            p99: pctSorted(s, 99),
            max: pctSorted(s, 100),
            upstream: after.served.map((x, i) => x - before.served[i]!),
            upstreamConnections: after.connections.reduce((a, x, i) => a + x - before.connections[i]!, 0),
            cpu: { gateway: gatewayCpu, upstreams: used("upstreams"), loadgen: used("loadgen") },
            cpuByProcess,
            rssByProcess,
          };
          const k = `${t.key}@${c}`;
          const e = raw.get(k) ?? { rounds: [], lat: [] };
          e.rounds.push(round);
          e.lat.push(s);
          raw.set(k, e);
          const rss = Object.values(rssByProcess);
          console.error(
            `  c=${c} round ${r + 1}/${S.rounds} ${t.key.padEnd(7)} ${fmt(round.rps, 0).padStart(6)} req/s  p50 ${fmt(round.p50, 2)}  p99 ${fmt(round.p99, 2)} ms  ` +
              `non-2xx ${round.non2xx}  errors ${round.errors}  upstreams ${round.upstream.join("/")} (${round.upstreamConnections} new conns)` +
              (round.cpu.gateway !== null ? `  CPU ${fmt((1000 * round.cpu.gateway) / Math.max(1, round.ok2xx), 0)} µs/req` : "") +
              (rss.length > 0 && rss.every((x) => x !== null) ? `  RSS ${Object.entries(rssByProcess).map(([n, v]) => `${n} ${fmt(v!, 0)}`).join(", ")} MB` : ""),
          );
        }
      }
    }
    const wall = (Date.now() - t0) / 1000;
    machineEnd(machine);
    const peakRssMb = Object.fromEntries(targets.map((t) => [t.key, members(t).map((p) => ({ ...p, peak: procMemMb(p.pid)?.peak ?? null }))]));

    // ---------------------------------------------------------------- report
    const cells: Cell[] = [];
    for (const c of S.connections) {
      for (const t of targets) {
        const e = raw.get(`${t.key}@${c}`)!;
        const lat = pooled(e.lat);
        const sum = (f: (r: Round) => number) => e.rounds.reduce((a, r) => a + f(r), 0);
        const upstream = Array.from({ length: S.upstreams }, (_, i) => sum((r) => r.upstream[i]!));
        const ok2xx = sum((r) => r.ok2xx);
        const perReq = (k: keyof Round["cpu"]) => (e.rounds.every((r) => r.cpu[k] !== null) && ok2xx > 0 ? (1000 * sum((r) => r.cpu[k]!)) / ok2xx : null);
        // Processes by name over the rounds (a descendant may be there in some rounds only: 0 CPU, no RSS in the others).
        const names = [...new Set(e.rounds.flatMap((r) => Object.keys(r.cpuByProcess)))];
        const perReqOf = (name: string) => (e.rounds.every((r) => r.cpuByProcess[name] !== null) && ok2xx > 0 ? (1000 * sum((r) => r.cpuByProcess[name] ?? 0)) / ok2xx : null);
        const maxRss = (f: (r: Round) => number | null | undefined) => {
          const xs = e.rounds.map(f).filter((x) => x !== undefined);
          return xs.length > 0 && xs.every((x) => x !== null) ? Math.max(...(xs as number[])) : null;
        };
        const stackOf = (r: Round) => (Object.values(r.rssByProcess).every((v) => v !== null) ? Object.values(r.rssByProcess).reduce<number>((a, v) => a + v!, 0) : null);
        cells.push({
          target: t.key,
          connections: c,
          rounds: e.rounds,
          rps: sum((r) => r.ok2xx) / sum((r) => r.durationS),
          p50: pctSorted(lat, 50),
          p90: pctSorted(lat, 90),
          p99: pctSorted(lat, 99),
          p999: pctSorted(lat, 99.9),
          max: pctSorted(lat, 100),
          samples: lat.length,
          ok2xx,
          non2xx: sum((r) => r.non2xx),
          errors: sum((r) => r.errors),
          timeouts: sum((r) => r.timeouts),
          upstream,
          upstreamConnections: sum((r) => r.upstreamConnections),
          cpuUsPerRequest: { gateway: perReq("gateway"), upstreams: perReq("upstreams"), loadgen: perReq("loadgen") },
          cpuUsPerRequestByProcess: Object.fromEntries(names.map((n) => [n, perReqOf(n)])),
          rssMb:
            t.procs.length === 0
              ? { process: null, stack: null, byProcess: {} }
              : {
                  process: maxRss((r) => r.rssByProcess[t.procs[0]!.name] ?? null),
                  stack: maxRss(stackOf),
                  byProcess: Object.fromEntries(names.map((n) => [n, maxRss((r) => r.rssByProcess[n])])),
                },
          share: t.key === "direct" ? null : shareCheck(upstream, S.weights, S.shareTolerance),
        });
      }
    }
    const cell = (key: string, c: number) => cells.find((x) => x.target === key && x.connections === c);
    const ratio = (a: number | null | undefined, b: number | null | undefined) => (a != null && b != null && b > 0 ? `${(a / b).toFixed(2)}` : "-");
    const head = [
      "target",
      "conns",
      "req/s",
      "p50 ms",
      "p99 ms",
      "+p50 ms",
      "+p99 ms",
      "req/s ÷ nginx",
      "req/s ÷ Portkey",
      "CPU µs/req",
      "CPU µs/req ÷ plain",
      "RSS MB",
      "stack RSS MB",
      "errors",
      `upstream share % (w ${S.weights.join(":")})`,
    ];
    const rows: string[][] = [];
    for (const x of cells) {
      const t = targets.find((y) => y.key === x.target)!;
      const direct = cell("direct", x.connections);
      const added = (f: (y: Cell) => number) => (direct && x.target !== "direct" ? fmt(f(x) - f(direct), 2) : "-");
      const bad = x.non2xx + x.errors;
      const shares = x.upstream.reduce((a, v) => a + v, 0) > 0 ? x.upstream.map((v) => ((100 * v) / x.upstream.reduce((a, y) => a + y, 0)).toFixed(1)).join("/") : "none";
      rows.push([
        t.label,
        String(x.connections),
        fmt(x.rps, 0),
        fmt(x.p50, 2),
        fmt(x.p99, 2),
        added((y) => y.p50),
        added((y) => y.p99),
        x.target === "nginx" ? "1.00" : ratio(x.rps, cell("nginx", x.connections)?.rps),
        x.target === "portkey" ? "1.00" : ratio(x.rps, cell("portkey", x.connections)?.rps),
        x.cpuUsPerRequest.gateway === null ? "-" : fmt(x.cpuUsPerRequest.gateway, 0),
        x.target === "direct" ? "-" : x.target === "plain" ? "1.00" : ratio(x.cpuUsPerRequest.gateway, cell("plain", x.connections)?.cpuUsPerRequest.gateway),
        x.rssMb.process === null ? "-" : fmt(x.rssMb.process, 0),
        x.rssMb.stack === null ? "-" : fmt(x.rssMb.stack, 0),
        bad === 0 ? "0" : `${bad} (${x.non2xx} non-2xx, ${x.errors} err${x.timeouts > 0 ? `, ${x.timeouts} timeouts` : ""})`,
        x.share === null ? `${shares} (by connection)` : `${shares} ${x.share.ok ? "ok" : `OFF by ${x.share.maxDeviation.toFixed(1)} pts`}`,
      ]);
    }

    // Issue 19: ours against the plain proxy and Portkey, per concurrency (printed, not enforced).
    const goals: Array<Record<string, unknown>> = [];
    const goalLines: string[] = [];
    for (const c of S.connections) {
      const o = cell("ours", c);
      if (!o) continue;
      const p = cell("plain", c);
      const k = cell("portkey", c);
      const cpuRatio = p?.cpuUsPerRequest.gateway && o.cpuUsPerRequest.gateway !== null ? o.cpuUsPerRequest.gateway / p.cpuUsPerRequest.gateway : null;
      const rpsRatio = k && k.rps > 0 ? o.rps / k.rps : null;
      const verdict = (ok: boolean | null) => (ok === null ? "" : ok ? " ok" : " MISSED");
      goals.push({ connections: c, cpuVsPlain: cpuRatio, dpRssMb: o.rssMb.process, stackRssMb: o.rssMb.stack, rpsVsPortkey: rpsRatio, goal: GOAL });
      const split = Object.entries(o.cpuUsPerRequestByProcess)
        .map(([n, v]) => `${n} ${v === null ? "-" : fmt(v, 0)}`)
        .join(" + ");
      goalLines.push(
        `issue 19 @ ${c} conns: ours ÷ plain CPU/req ${cpuRatio === null ? "- (no plain)" : `${cpuRatio.toFixed(2)} (${fmt(o.cpuUsPerRequest.gateway!, 0)} ÷ ${fmt(p!.cpuUsPerRequest.gateway!, 0)} µs; goal ≤ ${GOAL.cpuVsPlain})${verdict(cpuRatio <= GOAL.cpuVsPlain)}`}; ` +
          `RSS data plane ${o.rssMb.process === null ? "-" : `${fmt(o.rssMb.process, 0)} MB (≤ ${GOAL.dpRssMb})${verdict(o.rssMb.process <= GOAL.dpRssMb)}`}, ` +
          `stack ${o.rssMb.stack === null ? "-" : `${fmt(o.rssMb.stack, 0)} MB (≤ ${GOAL.stackRssMb})${verdict(o.rssMb.stack <= GOAL.stackRssMb)}`}; ` +
          `req/s ÷ Portkey ${rpsRatio === null ? "- (no Portkey)" : `${rpsRatio.toFixed(1)} (≥ ${GOAL.rpsVsPortkey})${verdict(rpsRatio >= GOAL.rpsVsPortkey)}`}; ` +
          `ours by process: CPU µs/req ${split}; RSS MB ${Object.entries(o.rssMb.byProcess)
            .map(([n, v]) => `${n} ${v === null ? "-" : fmt(v, 0)}`)
            .join(" + ")}`,
      );
    }

    const blocked = portkey?.blocked() ?? [];
    if (portkey) notes.push(`Portkey outbound non-loopback connection attempts blocked: ${blocked.length}${blocked.length > 0 ? ` (${[...new Set(blocked)].join(", ")})` : ""}`);
    const dpStats = dpChild ? await dpChild.call<{ logLines: number; warnings: number; tableVersion: number }>("stats") : null;
    const controlStats = control ? await control.call<{ logLines: number; config: string }>("stats") : null;
    if (controlStats) notes.push(`ours: control service with ${controlStats.config === "test" ? "the test harness's configuration (BENCH_CONTROL_TEST_CONFIG=1: 20 ms ticks, debug logs)" : "npm start's configuration (defaults, LOG_LEVEL info)"}, Redis in memory; ${controlStats.logLines} control log lines`);
    if (dpStats && dpStats.warnings > 0) notes.push(`local data plane: ${dpStats.warnings} warning/error log lines (see stderr)`);

    console.log(
      `gateway overhead: ${S.upstreams} mock upstreams (${S.upstreamMs} ms, weights ${S.weights.join(":")}), autocannon closed loop, ` +
        `${S.rounds} × ${S.durationS} s measured per row (after ${S.warmupS} s warm-up each), POST /v1/chat/completions; wall ${wall.toFixed(1)} s`,
    );
    for (const l of machineLines(machine)) console.log(l);
    console.log(markdownTable(head, rows));
    for (const l of goalLines) console.log(l);
    console.log(
      "+p50/+p99: minus direct at the same concurrency; req/s ÷ X: req/s over X's at the same concurrency (same run). " +
        "CPU: user+system CPU time of all the target's processes per 2xx response (ours: data plane + control + Redis; nginx: master + worker; " +
        "with their descendants, e.g. an esbuild service tsx started); " +
        "÷ plain: over the plain Node proxy's at the same concurrency. RSS MB: the serving process (ours: the data plane; nginx: the worker), " +
        "stack RSS MB: summed over the target's processes; VmRSS at the end of each measured window, largest over the rounds. " +
        "errors: non-2xx + connection errors/timeouts. Shares: chat completions each upstream served in the measured windows.",
    );
    const procs = { plain: "plain: 1 Node process", ours: "ours: data plane + control (Node) + Redis", portkey: "Portkey: 1 Node process", nginx: "nginx: master + 1 worker" } as Record<string, string>;
    console.log(
      `Processes: load generator, mocks and each gateway apart (${machine.cores} cores shared; ${targets.flatMap((t) => procs[t.key] ?? []).join(", ")}). ` +
        "The fastest rows' req/s is bounded by the load generator and the Node mocks, not by the gateway.",
    );
    for (const n of notes) console.log(n);

    const file = writeResult("gateway", {
      bench: "gateway",
      date: new Date().toISOString(),
      machine,
      settings: { ...S, body: BODY, limit_s: LIMIT_MS / 1000, autocannon: { pipelining: 1, timeout_s: 10 } },
      versions: { node: process.version, portkey: portkeyVersion, nginx: nginxVersion },
      arrangement: {
        upstreams: "one child process, raw node:http servers",
        load_generator: "one child process, autocannon",
        plain: "one child process: node:http reverse proxy, keep-alive agents, smooth weighted round robin, piped bodies (bench/gateway/plain-proxy.proc.ts)",
        ours: `local data plane child process (${S.dpWorkers} plugin VM), control service child process, Redis its child; CPU and RSS summed over the three`,
        portkey: "node build/start-server.js --headless, own process, loopback-only preload",
        nginx: "own instance, master + 1 worker",
        direct: "autocannon connection i → upstream i mod n",
      },
      processes: Object.fromEntries(targets.map((t) => [t.key, members(t)])),
      peak_rss_mb_at_end: peakRssMb,
      setup_seconds: setupS,
      wall_seconds: wall,
      targets: targets.map((t) => ({ key: t.key, label: t.label, url: t.url, headers: t.headers })),
      results: cells,
      issue19: goals,
      dataplane: dpStats,
      control: controlStats,
      portkey_blocked_connections: blocked,
      notes,
      table: { head, rows },
    });
    console.log(`results: ${file}`);

    const failed = cells.filter((x) => x.non2xx + x.errors > 0 || (x.share !== null && !x.share.ok));
    if (failed.length > 0) {
      throw new Error(`checks failed: ${failed.map((x) => `${x.target}@${x.connections} (${x.non2xx} non-2xx, ${x.errors} errors${x.share && !x.share.ok ? `, share off by ${x.share.maxDeviation.toFixed(1)} pts` : ""})`).join("; ")}`);
    }
  },
);
