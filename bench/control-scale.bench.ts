// Control-plane scale: CPU and memory of ONE control process probing 1k and 10k instances at N = 5 s.
// `npm run bench:control-scale` (or `tsx bench/control-scale.bench.ts`).
//
// Loopback only (127.0.0.1, and 127.77.0.0/16 for the mock instances). Per size (BENCH_SIZES, default
// 1000,10000), from scratch:
//   1. a fresh redis-server (test/support/redis.ts);
//   2. setup, not measured: a control process with its prober off creates deployments of
//      BENCH_PER_DEPLOYMENT instances (default 10; one model each, as a model has one deployment) through the
//      real API, 48 calls in flight, at most BENCH_SETUP_PENDING (2000) instances untested at a time. The
//      connectivity test cannot be skipped: every instance passes it (GET /v1/models + a 1-token completion
//      against its mock) and becomes active. (Larger deployments are slow to create: each instance's result is
//      its own compare-and-set on the deployment document, so k concurrent tests cost O(k²) attempts.)
//      health_check: interval N = BENCH_N (default 5 s), timeout T = BENCH_T (default 2 s), the rest default
//      (probe: path, GET /health; unhealthy 3 / healthy 2; no traffic thresholds). Then it is stopped;
//   3. the process under measurement: the real entry (node --import tsx control/src/server.ts), production
//      defaults (PROBE_TICK_MS 500, TABLE_REFRESH_MS 5000, DNS_REFRESH_MS 30000, …; BENCH_CONTROL_ENV adds
//      JSON env, BENCH_CONTROL_NODE_ARGS node flags such as --cpu-prof), started on the populated Redis — like
//      a restart or a takeover: it acquires every probe lease and probes every instance every N s. A preload
//      (control-scale/reporter.ts) sends V8 heap and event-loop delay over IPC once a second; nothing else
//      differs from `npm run start:control`;
//   4. warm-up BENCH_WARMUP_S (default 2·N), a window of BENCH_WINDOW_S (default 30 s), then BENCH_TABLE_GETS
//      (10) GET /v1/routing-table and BENCH_METRICS_SCRAPES (3) /metrics scrapes 1 s apart (the first: the control's own count of ok / failed probes).
// The mock instances run in their own process (control-scale/fleet.ts): one listener per instance
// (127.77.x.y × 50 ports from BENCH_MOCK_PORT, default 18000), a raw-socket HTTP/1.1 answer per request.
// Measured in the window:
//   control / redis  CPU% of one core from /proc/<pid>/stat (utime+stime, all threads), 1-s samples: mean,
//                    p95; RSS (VmRSS) mean/max, VmHWM (peak since start, warm-up included); the control's V8
//                    heap and event-loop delay (worst per-second p99); Redis commands per probe (INFO
//                    commandstats);
//   probes           per second as the mock instances count them vs. expected (instances / N); the interval
//                    between consecutive probes of one instance (p50/p99/max; counted from the measured
//                    control's first probe); instances whose longest gap in the window (incl. last probe →
//                    window end) is ≤ N + BENCH_SLACK_MS (1000);
//   table            GET /v1/routing-table body size and latency; instances ejected at the end (should be 0).
// Then, unless BENCH_REPLICAS_INSTANCES is 0, the multi-replica phase (control-scale/replicas.ts, which documents
// itself): BENCH_REPLICAS (3) control processes on one Redis share BENCH_REPLICAS_INSTANCES (30000) instances through
// the per-deployment probe leases (LEASE_MS = BENCH_LEASE_MS, default 30000 as in production), windows of
// BENCH_REPLICAS_WINDOW_S (default BENCH_WINDOW_S), probe interval BENCH_REPLICAS_N (default 15 s, see REPLICAS_N); one replica is SIGKILLed between the two windows and the time
// until its deployments are held and probed again by the others is measured against the lease period.
// About 3–4 minutes for the sizes, most of it creating 10k instances, and about as long for the replicas. Everything the bench starts is stopped on success,
// failure, timeout (BENCH_LIMIT_S, default 300) or signal.
import { Redis } from "ioredis";
import { freePort, startRedis, type RedisServer } from "../test/support/redis.js";
import { ADMIN, client, PLUGIN, VIEWER } from "../test/control/harness.js";
import { bounded, fmt, machineEnd, machineLines, machineStart, markdownTable, pct, sleep, writeResult } from "./support.js";
import { startControlProcess, startFleet, type ControlProcess, type FleetProcess } from "./control-scale/children.js";
import { createFleet, tableCount } from "./control-scale/setup.js";
import { Sampler, type Sample } from "./control-scale/proc.js";
import type { FleetOptions, WindowReport } from "./control-scale/fleet.js";
import { replicasReport, replicasRows, runReplicas, type ReplicasResult } from "./control-scale/replicas.js";

const num = (name: string, def: number) => {
  const v = process.env[name];
  const n = v === undefined || v === "" ? def : Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number`);
  return n;
};
/** BENCH_SIZES=0: no single-process size (only the replicas phase). */
const SIZES = (process.env.BENCH_SIZES ?? "1000,10000").split(",").map((s) => Math.round(Number(s.trim()))).filter((n) => Number.isFinite(n) && n > 0);
const N = num("BENCH_N", 5);
const T = num("BENCH_T", 2);
const WINDOW_S = num("BENCH_WINDOW_S", 30);
const WARMUP_S = num("BENCH_WARMUP_S", 2 * N);
const PER_DEPLOYMENT = Math.max(1, Math.min(1024, Math.round(num("BENCH_PER_DEPLOYMENT", 10))));
const SLACK_MS = num("BENCH_SLACK_MS", 1000);
const LIMIT_S = num("BENCH_LIMIT_S", 300 + (num("BENCH_REPLICAS_INSTANCES", 30_000) > 0 ? 600 : 0));
const TABLE_GETS = Math.max(1, Math.round(num("BENCH_TABLE_GETS", 10)));
/** /metrics scrapes after the window, 1 s apart (the first is the one compared with earlier runs). */
const METRICS_SCRAPES = Math.max(1, Math.round(num("BENCH_METRICS_SCRAPES", 3)));
const MOCK_PORT = Math.round(num("BENCH_MOCK_PORT", 18000));
const SETUP_PENDING = Math.max(PER_DEPLOYMENT, Math.round(num("BENCH_SETUP_PENDING", 2000)));
const CONTROL_ENV = JSON.parse(process.env.BENCH_CONTROL_ENV ?? "{}") as Record<string, string>;
/** Extra node flags for the measured control (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"). */
const CONTROL_NODE_ARGS = (process.env.BENCH_CONTROL_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");
const MAX = Math.max(0, ...SIZES);
const REPLICAS = Math.max(2, Math.round(num("BENCH_REPLICAS", 3)));
const REPLICAS_INSTANCES = Math.max(0, Math.round(num("BENCH_REPLICAS_INSTANCES", 30_000)));
const REPLICAS_WINDOW_S = num("BENCH_REPLICAS_WINDOW_S", WINDOW_S);
/**
 * The replicas phase's probe interval: 15 s by default, so 30k instances cost the 2,000 probes/s that one process
 * does at 10k / 5 s. 30k at 5 s is 6,000 probes/s (≈ 1.5 cores of control plus the mock fleet answering them):
 * more than a 2-core machine has; BENCH_REPLICAS_N=5 runs it where there are cores.
 */
const REPLICAS_N = num("BENCH_REPLICAS_N", 15);
const LEASE_MS = Math.round(num("BENCH_LEASE_MS", 30_000));

const TOKENS = { CONTROL_ADMIN_TOKENS: ADMIN, CONTROL_VIEWER_TOKENS: VIEWER, CONTROL_PLUGIN_TOKENS: PLUGIN };
const log = (s: string) => console.error(s);

interface SizeResult {
  instances: number;
  deployments: number;
  setup_seconds: number;
  window_seconds: number;
  control_pid: number;
  control: ProcSummary & { heap_used_mb: { mean: number; max: number }; elu_mean: number; loop_delay_p99_ms_worst: number; loop_delay_max_ms: number; warnings: number; errors: number; log_messages: Record<string, number> };
  redis: ProcSummary & { used_memory_mb: number; commands_per_s: number; commands_per_probe: number; commands: Record<string, number> };
  mock: { cpu_mean: number };
  probes: {
    expected_per_s: number;
    done_per_s: number;
    per_second: { min: number; p50: number; max: number };
    interval_ms: { p50: number; p99: number; max: number; count: number };
    within_n_plus_slack: number;
    silent: number;
    worst_gap_ms: number;
  };
  table: { bytes: number; get_ms: { p50: number; max: number }; active: number; ejected: number; other: number };
  /** scrape_ms: the first scrape; scrapes_ms: every scrape (BENCH_METRICS_SCRAPES, 1 s apart). */
  metrics: { scrape_ms: number; scrapes_ms: number[]; bytes: number; probes_ok: number; probes_failed: number } | { error: string };
  samples: { control: Sample[]; redis: Sample[]; mock: Sample[]; runtime: unknown[]; probes_per_second: number[] };
}

interface ProcSummary {
  cpu: { mean: number; p95: number; max: number };
  rss_mb: { mean: number; max: number };
  hwm_mb: number;
}

const mean = (xs: number[]) => (xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length);
const r1 = (x: number) => Math.round(x * 10) / 10;

function procSummary(s: Sample[]): ProcSummary {
  const cpu = s.map((x) => x.cpu);
  const rss = s.map((x) => x.rssMb);
  return {
    cpu: { mean: r1(mean(cpu)), p95: pct(cpu, 95), max: pct(cpu, 100) },
    rss_mb: { mean: r1(mean(rss)), max: pct(rss, 100) },
    hwm_mb: s.length > 0 ? s[s.length - 1]!.hwmMb : NaN,
  };
}

/** INFO commandstats → calls per command. */
async function commandCalls(redis: Redis): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of (await redis.info("commandstats")).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

async function redisInfo(redis: Redis, field: string, section: string): Promise<string> {
  return new RegExp(`^${field}:(.*)$`, "m").exec(await redis.info(section))?.[1]?.trim() ?? "";
}

let fleet: FleetProcess | null = null;
let redisServer: RedisServer | null = null;
let redisClient: Redis | null = null;
const controls = new Set<ControlProcess>();

async function stopSize(): Promise<void> {
  await Promise.allSettled([...controls].map((c) => c.stop()));
  controls.clear();
  redisClient?.disconnect();
  redisClient = null;
  await redisServer?.close();
  redisServer = null;
}

async function runSize(n: number, f: FleetProcess, fleetOpts: FleetOptions): Promise<SizeResult> {
  log(`control-scale: ${n} instances`);
  redisServer = await startRedis();
  redisClient = new Redis(redisServer.url, { lazyConnect: false, maxRetriesPerRequest: 1 });
  const redisPid = Number(await redisInfo(redisClient, "process_id", "server"));
  const base = { REDIS_URL: redisServer.url, ...TOKENS, LOG_LEVEL: "info" };

  // Setup: prober off, create answers at once (202: CREATE_WAIT_MS 0 and allow_unreachable in setup.ts), tests
  // retried quickly, patient with a busy Redis.
  const setupCtl = await startControlProcess(
    { ...base, PROBE_TICK_MS: "0", CREATE_WAIT_MS: "0", WORKER_INTERVAL_MS: "200", DNS_REFRESH_MS: "0", REDIS_COMMAND_TIMEOUT_MS: "10000" },
    { port: await freePort(), label: "setup control" },
  );
  controls.add(setupCtl);
  const setup = await createFleet(setupCtl.url, { instances: n, fleet: fleetOpts, intervalSeconds: N, timeoutSeconds: T, maxPending: SETUP_PENDING, concurrency: 48, timeoutMs: 150_000 }, log);
  await setupCtl.stop();
  controls.delete(setupCtl);
  log(`  setup: ${n} instances in ${setup.deployments} deployments active after ${setup.seconds.toFixed(1)} s`);

  // The process under measurement.
  await f.reset();
  const ctl = await startControlProcess({ ...base, ...CONTROL_ENV }, { port: await freePort(), label: "control", nodeArgs: CONTROL_NODE_ARGS });
  controls.add(ctl);
  const api = client(ctl.url);
  const sampler = new Sampler(() => ({ control: ctl.pid, redis: redisPid, mock: f.pid }));
  sampler.phase = "warmup";
  sampler.start();
  try {
    await sleep(WARMUP_S * 1000);
    const cmd0 = await commandCalls(redisClient);
    await f.open(n);
    sampler.phase = "window";
    const w0 = Date.now();
    await sleep(WINDOW_S * 1000);
    const report: WindowReport = await f.close();
    sampler.phase = "after";
    const w1 = Date.now();
    const cmd1 = await commandCalls(redisClient);
    const usedMemory = Number(await redisInfo(redisClient, "used_memory", "memory"));

    // After the window: the routing table as the plugins read it, then one /metrics scrape.
    const getMs: number[] = [];
    let bytes = 0;
    for (let k = 0; k < TABLE_GETS; k++) {
      const r = await api("GET", "/v1/routing-table", { token: PLUGIN });
      if (r.status !== 200) throw new Error(`routing table: ${r.status}`);
      getMs.push(r.ms);
      bytes = Buffer.byteLength(r.text);
    }
    const counts = await tableCount(api);
    let metrics: SizeResult["metrics"];
    try {
      const scrapes: { ms: number; text: string }[] = [];
      for (let k = 0; k < METRICS_SCRAPES; k++) {
        if (k > 0) await sleep(1_000);
        const r = await api("GET", "/metrics", { token: VIEWER, signal: AbortSignal.timeout(15_000) });
        if (r.status !== 200) throw new Error(`/metrics: ${r.status}`);
        scrapes.push({ ms: r.ms, text: r.text });
      }
      const first = scrapes[0]!;
      const sum = (result: string) => [...first.text.matchAll(new RegExp(`^gateway_probe_duration_seconds_count\\{[^}]*result="${result}"[^}]*\\} (\\d+)`, "gm"))].reduce((a, m) => a + Number(m[1]), 0);
      metrics = { scrape_ms: Math.round(first.ms), scrapes_ms: scrapes.map((x) => Math.round(x.ms)), bytes: Buffer.byteLength(first.text), probes_ok: sum("ok"), probes_failed: sum("failed") };
    } catch (e) {
      metrics = { error: e instanceof Error ? e.message : String(e) };
    }

    const windowS = report.windowMs / 1000;
    const cs = sampler.of("control", "window");
    const runtime = ctl.runtime.filter((x) => x.at > w0 && x.at <= w1 + 500);
    const commands: Record<string, number> = {};
    let totalCmds = 0;
    for (const [k, v] of Object.entries(cmd1)) {
      const d = v - (cmd0[k] ?? 0);
      if (d > 0 && k !== "info") {
        commands[k] = d;
        totalCmds += d;
      }
    }
    const within = report.maxGapMs.filter((g) => g <= N * 1000 + SLACK_MS).length;
    const res: SizeResult = {
      instances: n,
      deployments: setup.deployments,
      setup_seconds: r1(setup.seconds),
      window_seconds: r1(windowS),
      control_pid: ctl.pid,
      control: {
        ...procSummary(cs),
        heap_used_mb: { mean: r1(mean(runtime.map((x) => x.heapUsedMb))), max: pct(runtime.map((x) => x.heapUsedMb), 100) },
        elu_mean: Math.round(mean(runtime.map((x) => x.elu)) * 1000) / 1000,
        loop_delay_p99_ms_worst: pct(runtime.map((x) => x.delayP99Ms), 100),
        loop_delay_max_ms: pct(runtime.map((x) => x.delayMaxMs), 100),
        warnings: ctl.warnings,
        errors: ctl.errors,
        log_messages: ctl.messages,
      },
      redis: {
        ...procSummary(sampler.of("redis", "window")),
        used_memory_mb: r1(usedMemory / 1048576),
        commands_per_s: r1(totalCmds / windowS),
        commands_per_probe: report.requests > 0 ? Math.round((totalCmds / report.requests) * 100) / 100 : NaN,
        commands,
      },
      mock: { cpu_mean: r1(mean(sampler.of("mock", "window").map((x) => x.cpu))) },
      probes: {
        expected_per_s: r1(n / N),
        done_per_s: r1(report.requests / windowS),
        per_second: { min: pct(report.perSecond, 0), p50: pct(report.perSecond, 50), max: pct(report.perSecond, 100) },
        interval_ms: { p50: pct(report.intervalsMs, 50), p99: pct(report.intervalsMs, 99), max: pct(report.intervalsMs, 100), count: report.intervalsMs.length },
        within_n_plus_slack: within,
        silent: report.silent,
        worst_gap_ms: pct(report.maxGapMs, 100),
      },
      table: { bytes, get_ms: { p50: r1(pct(getMs, 50)), max: r1(pct(getMs, 100)) }, active: counts.active, ejected: counts.ejected, other: counts.other },
      metrics,
      samples: { control: sampler.samples.get("control") ?? [], redis: sampler.samples.get("redis") ?? [], mock: sampler.samples.get("mock") ?? [], runtime: ctl.runtime, probes_per_second: report.perSecond },
    };
    log(`  window: control CPU ${res.control.cpu.mean}% (p95 ${res.control.cpu.p95}%), RSS ${res.control.rss_mb.max} MB; probes ${res.probes.done_per_s}/s of ${res.probes.expected_per_s}/s; ` +
      `${within}/${n} within N+${SLACK_MS} ms; ejected ${counts.ejected}; control warnings ${ctl.warnings}, errors ${ctl.errors}`);
    for (const [m, c] of Object.entries(ctl.messages)) log(`    ${c} × ${m}`);
    for (const l of ctl.tail.filter((x) => /"level":"(warn|error)"/.test(x)).slice(-3)) log(`    ${l}`);
    return res;
  } finally {
    sampler.stop();
    await stopSize();
  }
}

await bounded(LIMIT_S * 1000, async () => {
  await stopSize();
  await fleet?.stop();
}, async () => {
  const machine = machineStart();
  const t0 = Date.now();
  const fleetOpts: FleetOptions = { count: MAX, perDeployment: PER_DEPLOYMENT, modelPrefix: "scale-", basePort: MOCK_PORT, portsPerIp: 50 };
  const results: SizeResult[] = [];
  if (SIZES.length > 0) {
    fleet = await startFleet(fleetOpts);
    log(`control-scale: mock fleet of ${MAX} listeners up (pid ${fleet.pid})`);
    for (const n of SIZES) results.push(await runSize(n, fleet, fleetOpts));
    await fleet.stop();
    fleet = null;
  }
  let replicas: ReplicasResult | null = null;
  if (REPLICAS_INSTANCES > 0) {
    replicas = await runReplicas({
      instances: REPLICAS_INSTANCES, replicas: REPLICAS, perDeployment: PER_DEPLOYMENT, n: REPLICAS_N, t: T, leaseMs: LEASE_MS, windowS: REPLICAS_WINDOW_S, slackMs: SLACK_MS,
      mockPort: MOCK_PORT, setupPending: SETUP_PENDING, env: { ...TOKENS, LOG_LEVEL: "info" }, controlEnv: CONTROL_ENV, log,
    });
  }
  machineEnd(machine);
  const wall = (Date.now() - t0) / 1000;

  // One table for both phases (the README's bench block shows a bench's one table): a row per single-process size,
  // then per replica its share in window 1 and, after the SIGKILL, in window 2 (the killed one's row: the takeover).
  const head = [
    "run", "instances", "deps", "probes/s (expected)", `gap ≤ N+${SLACK_MS / 1000}s`, "interval p50 / p99 / max ms",
    "control CPU % mean", "p95", "RSS MB mean", "max", "heap MB", "loop delay p99 ms",
    "Redis CPU % mean", "p95", "Redis RSS MB", "cmds/probe", "table KB", "table GET ms", "ejected", "/metrics s (MB)", "takeover after SIGKILL",
  ];
  const metricsCell = (m: SizeResult["metrics"]) =>
    "error" in m ? "failed" : `${m.scrapes_ms.map((x) => fmt(x / 1000, 2)).join(" / ")} (${fmt(m.bytes / 1048576, 1)})`;
  const rows = results.map((r) => [
    "1 process", String(r.instances), String(r.deployments),
    `${fmt(r.probes.done_per_s, 0)} (${fmt(r.probes.expected_per_s, 0)})`,
    `${r.probes.within_n_plus_slack}/${r.instances}`,
    `${fmt(r.probes.interval_ms.p50, 0)} / ${fmt(r.probes.interval_ms.p99, 0)} / ${fmt(r.probes.interval_ms.max, 0)}`,
    fmt(r.control.cpu.mean), fmt(r.control.cpu.p95), fmt(r.control.rss_mb.mean, 0), fmt(r.control.rss_mb.max, 0), fmt(r.control.heap_used_mb.max, 0),
    fmt(r.control.loop_delay_p99_ms_worst, 0),
    fmt(r.redis.cpu.mean), fmt(r.redis.cpu.p95), fmt(r.redis.rss_mb.max, 0), fmt(r.redis.commands_per_probe, 2),
    fmt(r.table.bytes / 1024, 0), `${fmt(r.table.get_ms.p50)} (max ${fmt(r.table.get_ms.max)})`, String(r.table.ejected), metricsCell(r.metrics), "-",
  ]);
  if (replicas) rows.push(...replicasRows(replicas, head.length));
  console.log(`control-scale: one control process (control/src/server.ts, production defaults: prober tick 500 ms) probing mock instances on loopback; ` +
    `health_check N ${N} s, T ${T} s, probe GET /health; ${PER_DEPLOYMENT} instances per deployment; warm-up ${WARMUP_S} s, window ${WINDOW_S} s per size; wall ${wall.toFixed(1)} s`);
  if (replicas) {
    console.log(`then ${replicas.replicas} control replicas on one Redis sharing ${replicas.instances} instances through the probe leases (LEASE_MS ${replicas.lease_ms}), windows of ${REPLICAS_WINDOW_S} s: ` +
      `"rK, window 1" = replica K's share with all running; the last one is SIGKILLed; "rK, window 2" = the survivors after the takeover`);
  }
  for (const l of machineLines(machine)) console.log(l);
  console.log(markdownTable(head, rows));
  console.log("CPU % of one core (utime+stime from /proc, 1-s samples in the window); RSS from /proc VmRSS; heap: V8 heapUsed (max); loop delay: worst per-second p99 event-loop delay.");
  console.log(`probes/s and intervals as the mock instances saw them; gap ≤ N+${SLACK_MS / 1000}s: instances whose longest time without a probe in the window (incl. to its end) stayed within it.`);
  console.log("cmds/probe: Redis commands in the window (INFO commandstats) per probe; table: GET /v1/routing-table after the window (body size, latency); ejected: instances ejected at the end.");
  console.log(`/metrics: ${METRICS_SCRAPES} scrapes after the window, 1 s apart (s each), body MB. Replica rows: gap = that replica's instances probed within N+${SLACK_MS / 1000}s; Redis CPU of the window; takeover: kill → every lease of the killed replica held by a survivor, and → every one of its instances probed again.`);
  for (const r of results) {
    const m = "error" in r.metrics ? `/metrics failed: ${r.metrics.error}` : `/metrics ${fmt(r.metrics.bytes / 1048576, 1)} MB in ${r.metrics.scrape_ms} ms, probe outcomes since start ok ${r.metrics.probes_ok} failed ${r.metrics.probes_failed}`;
    const top = Object.entries(r.redis.commands).sort((a, b) => b[1] - a[1]).slice(0, 6).map(([k, v]) => `${k} ${fmt(v / r.window_seconds, 0)}/s`).join(", ");
    console.log(`${r.instances}: setup ${r.setup_seconds} s; control VmHWM ${r.control.hwm_mb} MB, ELU ${r.control.elu_mean}; Redis used_memory ${r.redis.used_memory_mb} MB, ${r.redis.commands_per_s} cmds/s (${top}); mock CPU ${r.mock.cpu_mean}%; ${m}`);
  }
  if (replicas) for (const l of replicasReport(replicas, { n: REPLICAS_N, slackMs: SLACK_MS, windowS: REPLICAS_WINDOW_S })) console.log(l);
  const file = writeResult("control-scale", {
    bench: "control-scale",
    date: new Date().toISOString(),
    machine,
    settings: { sizes: SIZES, n_seconds: N, timeout_seconds: T, warmup_seconds: WARMUP_S, window_seconds: WINDOW_S, per_deployment: PER_DEPLOYMENT, slack_ms: SLACK_MS, mock_base_port: MOCK_PORT, control_env: CONTROL_ENV, table_gets: TABLE_GETS, metrics_scrapes: METRICS_SCRAPES,
      replicas: { count: REPLICAS, instances: REPLICAS_INSTANCES, n_seconds: REPLICAS_N, window_seconds: REPLICAS_WINDOW_S, lease_ms: LEASE_MS } },
    wall_seconds: wall,
    table: { head, rows },
    results,
    replicas,
  });
  console.log(`results: ${file}`);
});
