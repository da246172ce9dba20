// Deployment storage at size: one deployment of 1,024 instances created and connectivity-tested, against the
// same at 16 instances (the baseline, same process, same machine). `npm run bench:storage`.
//
// Per size (BENCH_SIZES, default 16,1024; the first is the baseline), from scratch:
//   1. a fresh redis-server (test/support/redis.ts) and one control process (the real entry,
//      control/src/server.ts) with CREATE_WAIT_MS 0 and the prober off (PROBE_TICK_MS 0, so that what Redis
//      receives is the deployment's storage and nothing else), DNS refresh off, otherwise production defaults;
//   2. mock OpenAI instances on loopback: instance k listens on 127.20.x.y:port (BENCH_PORTS ports, default 4,
//      × as many 127.20/16 addresses as needed): every instance has its own ip:port, as a deployment requires
//      (duplicate_address), and 127.0.0.0/8 all reaches loopback on Linux;
//   3. measured: POST /v1/deployments with every instance and allow_unreachable (stored at once, every
//      instance `pending`), then the control's worker tests each one (GET /v1/models + a 1-token completion)
//      and commits its result; done when GET shows every instance `active`. Redis's INFO stats
//      `total_net_input_bytes` (CONFIG RESETSTAT first) counts every byte the control sent Redis meanwhile:
//      the create's one write of the whole deployment, then the results;
//   4. one-instance changes: BENCH_CHANGES (20) PATCHes of one instance's weight, one after the other, bytes
//      sent to Redis per change (the path of a probe verdict: read, change one instance, commit);
//   5. Redis used_memory, the control's peak RSS (VmHWM) and CPU time (utime+stime) over steps 3–4, then
//      DELETE of the deployment (status, ms).
// Ratios: each size against the baseline. Ideal: bytes per result and per change flat (one instance's bytes),
// create+test time and memory at most linear in the instances (1024/16 = 64×).
// Everything the bench starts is stopped on success, failure, timeout (BENCH_LIMIT_S, default 600) or signal;
// a size whose create+test does not finish within BENCH_SIZE_LIMIT_S (default 240) is reported as such.
import { Redis } from "ioredis";
import { startMockOpenAI, type MockOpenAI } from "../envoy/local/mock-openai.js";
import { freePort, startRedis, type RedisServer } from "../test/support/redis.js";
import { ADMIN, client, PLUGIN, VIEWER } from "../test/control/harness.js";
import { startControlProcess, type ControlProcess } from "./control-scale/children.js";
import { procMem } from "./control-scale/proc.js";
import { bounded, fmt, machineEnd, machineLines, machineStart, markdownTable, procStat, sleep, writeResult } from "./support.js";

const num = (name: string, def: number) => {
  const v = process.env[name];
  const n = v === undefined || v === "" ? def : Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number`);
  return n;
};
const SIZES = (process.env.BENCH_SIZES ?? "16,1024").split(",").map((s) => Math.max(1, Math.min(1024, Math.round(Number(s.trim()))))).filter((n) => Number.isFinite(n));
const PORTS = Math.max(1, Math.round(num("BENCH_PORTS", 4)));
const CHANGES = Math.max(1, Math.round(num("BENCH_CHANGES", 20)));
const LIMIT_S = num("BENCH_LIMIT_S", 600);
const SIZE_LIMIT_S = num("BENCH_SIZE_LIMIT_S", 240);
const MODEL = "storage-model";
const log = (s: string) => console.error(s);

interface SizeResult {
  instances: number;
  /** null: not finished within BENCH_SIZE_LIMIT_S. */
  create_test_seconds: number | null;
  active: number;
  create_status: number;
  redis_in_bytes_create_test: number;
  redis_in_bytes_per_instance: number;
  redis_in_bytes_per_change: number;
  change_ms_mean: number;
  redis_used_memory_mb: number;
  control_peak_rss_mb: number;
  control_cpu_seconds: number;
  delete_status: number;
  delete_ms: number;
  control_warnings: number;
  control_errors: number;
  control_messages: Record<string, number>;
}

let redisServer: RedisServer | null = null;
let rc: Redis | null = null;
let ctl: ControlProcess | null = null;
let mocks: MockOpenAI[] = [];

async function stopSize(): Promise<void> {
  await ctl?.stop();
  ctl = null;
  rc?.disconnect();
  rc = null;
  await redisServer?.close();
  redisServer = null;
}

async function stopMocks(): Promise<void> {
  await Promise.allSettled(mocks.map((m) => m.close()));
  mocks = [];
}

/** Instance k's listen address: 127.20.x.y, one of PORTS ports. */
const hostOf = (k: number) => {
  const a = Math.floor(k / PORTS);
  return `127.20.${Math.floor(a / 250)}.${(a % 250) + 1}`;
};

async function startMocks(n: number, ports: number[]): Promise<void> {
  for (let k = mocks.length; k < n; k += 64) {
    const batch = Array.from({ length: Math.min(64, n - k) }, (_, j) => k + j);
    mocks.push(...(await Promise.all(batch.map((i) => startMockOpenAI({ model: MODEL, host: hostOf(i), port: ports[i % PORTS]! })))));
  }
}

const inBytes = async (r: Redis) => Number(/^total_net_input_bytes:(\d+)/m.exec(await r.info("stats"))?.[1] ?? NaN);

async function runSize(n: number): Promise<SizeResult> {
  log(`storage: ${n} instances`);
  redisServer = await startRedis();
  rc = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
  ctl = await startControlProcess(
    {
      REDIS_URL: redisServer.url,
      CONTROL_ADMIN_TOKENS: ADMIN,
      CONTROL_VIEWER_TOKENS: VIEWER,
      CONTROL_PLUGIN_TOKENS: PLUGIN,
      CREATE_WAIT_MS: "0",
      PROBE_TICK_MS: "0",
      DNS_REFRESH_MS: "0",
      LOG_LEVEL: "warn",
    },
    { port: await freePort(), label: "control" },
  );
  const api = client(ctl.url);
  const reg = await api("POST", "/v1/models", { body: { id: MODEL, name: MODEL } });
  if (reg.status !== 201) throw new Error(`model: ${reg.status} ${reg.text}`);
  const instances = mocks.slice(0, n).map((m, k) => ({ id: `i${k}`, url: m.url }));

  const cpu0 = procStat(ctl.pid)?.cpuSeconds ?? NaN;
  await rc.config("RESETSTAT");
  const t0 = performance.now();
  const created = await api("POST", "/v1/deployments", { body: { id: "big", model: MODEL, allow_unreachable: true, instances } });
  if (created.status !== 201 && created.status !== 202) throw new Error(`create: ${created.status} ${created.text.slice(0, 300)}`);
  let active = 0;
  let seconds: number | null = null;
  const deadline = Date.now() + SIZE_LIMIT_S * 1000;
  for (;;) {
    const r = await api("GET", "/v1/deployments/big");
    if (r.status === 200) active = (r.body.instances as { state: string }[]).filter((i) => i.state === "active").length;
    if (active === n) {
      seconds = (performance.now() - t0) / 1000;
      break;
    }
    if (Date.now() > deadline) break;
    await sleep(50);
  }
  const createTestBytes = await inBytes(rc);
  log(`  create+test: ${seconds === null ? `not done after ${SIZE_LIMIT_S} s (${active}/${n} active)` : `${seconds.toFixed(2)} s`}, ${fmt(createTestBytes / 1048576, 2)} MB sent to Redis`);

  // One-instance changes, one after the other.
  let changeBytes = NaN;
  let changeMs = NaN;
  if (seconds !== null) {
    await sleep(300);
    await rc.config("RESETSTAT");
    const c0 = performance.now();
    for (let k = 0; k < CHANGES; k++) {
      const r = await api("PATCH", `/v1/deployments/big/instances/i${k % n}`, { body: { weight: 2 + k } });
      if (r.status !== 200) throw new Error(`patch: ${r.status} ${r.text.slice(0, 300)}`);
    }
    changeMs = (performance.now() - c0) / CHANGES;
    changeBytes = (await inBytes(rc)) / CHANGES;
  }
  const cpu = (procStat(ctl.pid)?.cpuSeconds ?? NaN) - cpu0;
  const usedMemory = Number(/^used_memory:(\d+)/m.exec(await rc.info("memory"))?.[1] ?? NaN);
  const peak = procMem(ctl.pid)?.hwmKb ?? NaN;
  const d0 = performance.now();
  const del = await api("DELETE", "/v1/deployments/big");
  const deleteMs = performance.now() - d0;
  const res: SizeResult = {
    instances: n,
    create_test_seconds: seconds === null ? null : Math.round(seconds * 1000) / 1000,
    active,
    create_status: created.status,
    redis_in_bytes_create_test: createTestBytes,
    redis_in_bytes_per_instance: Math.round(createTestBytes / n),
    redis_in_bytes_per_change: Math.round(changeBytes),
    change_ms_mean: Math.round(changeMs * 10) / 10,
    redis_used_memory_mb: Math.round((usedMemory / 1048576) * 10) / 10,
    control_peak_rss_mb: Math.round(peak / 1024),
    control_cpu_seconds: Math.round(cpu * 100) / 100,
    delete_status: del.status,
    delete_ms: Math.round(deleteMs),
    control_warnings: ctl.warnings,
    control_errors: ctl.errors,
    control_messages: ctl.messages,
  };
  log(`  changes: ${fmt(changeBytes / 1024, 1)} KB to Redis each (${fmt(changeMs, 1)} ms); DELETE ${del.status} in ${res.delete_ms} ms; control peak RSS ${res.control_peak_rss_mb} MB, CPU ${res.control_cpu_seconds} s; warnings ${ctl.warnings}, errors ${ctl.errors}`);
  for (const [m, c] of Object.entries(ctl.messages)) log(`    ${c} × ${m}`);
  await stopSize();
  return res;
}

await bounded(LIMIT_S * 1000, async () => {
  await stopSize();
  await stopMocks();
}, async () => {
  const machine = machineStart();
  const t0 = Date.now();
  const ports: number[] = [];
  while (ports.length < PORTS) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  await startMocks(Math.max(...SIZES), ports);
  log(`storage: ${mocks.length} mock instances on 127.20.x.y × ports ${ports.join(", ")}`);
  const results: SizeResult[] = [];
  for (const n of SIZES) results.push(await runSize(n));
  await stopMocks();
  machineEnd(machine);
  const wall = (Date.now() - t0) / 1000;

  const base = results[0]!;
  const ratio = (a: number | null, b: number | null) => (a === null || b === null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? "-" : `${fmt(a / b, 1)}×`);
  const head = ["instances", "create+test s", "KB to Redis per instance tested", "KB to Redis per one-instance change", "change ms", "Redis used MB", "control peak RSS MB", "control CPU s", "DELETE"];
  const rows: string[][] = [];
  for (const r of results) {
    rows.push([
      r === base ? `${r.instances} (baseline)` : String(r.instances),
      r.create_test_seconds === null ? `> ${SIZE_LIMIT_S} (${r.active} active)` : fmt(r.create_test_seconds, 2),
      fmt(r.redis_in_bytes_per_instance / 1024, 1),
      fmt(r.redis_in_bytes_per_change / 1024, 1),
      fmt(r.change_ms_mean, 1),
      fmt(r.redis_used_memory_mb, 1),
      String(r.control_peak_rss_mb),
      fmt(r.control_cpu_seconds, 2),
      `${r.delete_status} (${r.delete_ms} ms)`,
    ]);
    if (r !== base) {
      rows.push([
        `${r.instances} ÷ ${base.instances}`,
        ratio(r.create_test_seconds, base.create_test_seconds),
        ratio(r.redis_in_bytes_per_instance, base.redis_in_bytes_per_instance),
        ratio(r.redis_in_bytes_per_change, base.redis_in_bytes_per_change),
        ratio(r.change_ms_mean, base.change_ms_mean),
        ratio(r.redis_used_memory_mb, base.redis_used_memory_mb),
        ratio(r.control_peak_rss_mb, base.control_peak_rss_mb),
        ratio(r.control_cpu_seconds, base.control_cpu_seconds),
        "-",
      ]);
    }
  }
  console.log(`storage: one deployment created with every instance pending (allow_unreachable, CREATE_WAIT_MS 0) and connectivity-tested by one control process ` +
    `(control/src/server.ts, prober off) against mock instances on loopback (127.20.x.y × ${PORTS} ports); ${CHANGES} one-instance PATCHes; wall ${wall.toFixed(1)} s`);
  for (const l of machineLines(machine)) console.log(l);
  console.log(markdownTable(head, rows));
  console.log("KB to Redis: INFO stats total_net_input_bytes (all the control sent Redis) ÷ instances over the create and every test result, and per PATCH of one instance's weight.");
  console.log(`Ratios against the ${base.instances}-instance baseline of this run (instances ×${fmt(Math.max(...SIZES) / base.instances, 0)}): flat bytes per instance and per change mean one instance's change costs one instance's bytes.`);
  const file = writeResult("storage", {
    bench: "storage",
    date: new Date().toISOString(),
    machine,
    settings: { sizes: SIZES, ports: PORTS, changes: CHANGES, size_limit_seconds: SIZE_LIMIT_S },
    wall_seconds: wall,
    table: { head, rows },
    results,
  });
  console.log(`results: ${file}`);
});
