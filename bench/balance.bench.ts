// Load balancing under real capacity (issue 18): does a balancer find the capacity of unequal instances?
// `tsx bench/balance.bench.ts` (npm run bench:balance).
//
// Engines: 4 capacity mocks (envoy/local/mock-openai.ts: BENCH_SLOTS slots, default 12,12,12,4 — one with a
// third of the others' — a FIFO queue beyond them, BENCH_TOKENS_PER_SECOND per slot, default 200), one
// child process (bench/balance/mocks.proc.ts). A request's service time = prompt / prefill rate +
// max_tokens / rate; the mock answers it in x-mock-service-time-ms.
// Load: **open loop** (bench/balance/loadgen.proc.ts, own process): Poisson arrivals at BENCH_LOAD (default
// 0.8) of the engines' total capacity for BENCH_DURATION_S (default 12) s, mixed sizes: BENCH_LONG_SHARE
// (default 0.15) long generations (BENCH_LONG_TOKENS, 384), the rest short (BENCH_SHORT_TOKENS, 32). The
// same seeded schedule for every row. Each request times out after BENCH_TIMEOUT_S (default 15) s.
// Rows (ROWS below, keyed by name; BENCH_ROWS selects a subset):
//   ours: the local data plane (envoy/local: build/plugin.wasm on our proxy-wasm host, own process with
//   BENCH_DP_WORKERS workers — default one per core, like Envoy's --concurrency — fed by
//   the control service + Redis), one deployment per row with the row's strategy and weights ("capacity":
//   proportional to slots; "equal"); a strategy the control refuses is skipped with its answer.
//   HAProxy `balance leastconn`; nginx `least_conn` (Debian packages; skipped with a message if absent);
//   HAProxy leastconn with `maxconn` = slots per server (a central queue: the floor).
// Columns: req/s (2xx / arrival window), errors (non-2xx, connection errors, timeouts), p50/p99 latency,
// p99 wait = latency − the engine's service time (queueing in the engine or the balancer, plus proxying:
// the part a balancer controls), its ratio to weighted round robin's in the same run, share per instance
// (completions each engine finished). Output: a markdown table and bench/results/balance-<date>.json.
import { availableParallelism } from "node:os";
import { controlVersion, startEnv, type Env } from "../test/local/support.js";
import { prng } from "../test/support/prng.js";
import { PLUGIN, registerModel } from "../test/control/harness.js";
import { bounded, fmt, machineEnd, machineLines, machineStart, markdownTable, pct, sleep, stopInOrder, writeResult } from "./support.js";
import { forkChild, type Child } from "./gateway/ipc.js";
import type { Arrival, Outcome, RunArgs } from "./balance/loadgen.proc.js";
import { findBin, startHaproxy, startNginx, type Proxy } from "./balance/proxies.js";

const num = (name: string, def: number, min: number, max: number): number => {
  const v = process.env[name] === undefined || process.env[name] === "" ? def : Number(process.env[name]);
  if (!Number.isFinite(v) || v < min || v > max) throw new Error(`${name} must be a number in ${min}..${max}`);
  return v;
};

const S = {
  slots: (process.env.BENCH_SLOTS ?? "12,12,12,4").split(",").map(Number),
  tokensPerSecond: num("BENCH_TOKENS_PER_SECOND", 200, 1, 100_000),
  prefillTokensPerSecond: num("BENCH_PREFILL_TOKENS_PER_SECOND", 5_000, 0, 1_000_000),
  load: num("BENCH_LOAD", 0.8, 0.05, 2),
  durationS: num("BENCH_DURATION_S", 12, 1, 120),
  timeoutS: num("BENCH_TIMEOUT_S", 15, 1, 120),
  shortTokens: Math.round(num("BENCH_SHORT_TOKENS", 32, 1, 4_000)),
  longTokens: Math.round(num("BENCH_LONG_TOKENS", 384, 1, 4_000)),
  longShare: num("BENCH_LONG_SHARE", 0.15, 0, 1),
  seed: Math.round(num("BENCH_SEED", 18, 0, 2 ** 31)),
  /** Data-plane workers (one VM each, as Envoy's --concurrency): one per core by default. */
  workers: Math.round(num("BENCH_DP_WORKERS", availableParallelism(), 1, 64)),
  model: "bench-balance",
};
if (S.slots.length < 2 || S.slots.some((s) => !Number.isInteger(s) || s < 1 || s > 1_000)) throw new Error("BENCH_SLOTS must be integers in 1..1000");

/** Prompt tokens of the load generator's chat under the mock's template (BOS + 4 + message 5 + 3 words). */
const PROMPT_TOKENS = 13;
const meanTokens = S.longShare * S.longTokens + (1 - S.longShare) * S.shortTokens;
const meanServiceS = meanTokens / S.tokensPerSecond + (S.prefillTokensPerSecond > 0 ? PROMPT_TOKENS / S.prefillTokensPerSecond : 0);
const totalSlots = S.slots.reduce((a, b) => a + b, 0);
/** Requests/s the engines serve at most: every slot busy. */
const capacityRps = totalSlots / meanServiceS;
const rate = S.load * capacityRps;

// ---------------------------------------------------------------- rows
type Weights = "equal" | "capacity";
type RowSpec =
  | { key: string; label: string; via: "ours"; strategy: string; weights: Weights }
  | { key: string; label: string; via: "haproxy"; maxconn: boolean }
  | { key: string; label: string; via: "nginx" };
/** One row per strategy; a new plugin strategy is one line here (the control refusing it skips it). */
const ROWS: RowSpec[] = [
  { key: "round_robin", label: "ours: round robin", via: "ours", strategy: "round_robin", weights: "equal" },
  { key: "weighted_round_robin", label: "ours: weighted RR, capacity weights", via: "ours", strategy: "weighted_round_robin", weights: "capacity" },
  { key: "least_request", label: "ours: least_request, equal weights", via: "ours", strategy: "least_request", weights: "equal" },
  { key: "latency", label: "ours: latency, equal weights", via: "ours", strategy: "latency", weights: "equal" },
  { key: "load_aware", label: "ours: load_aware, equal weights", via: "ours", strategy: "load_aware", weights: "equal" },
  { key: "haproxy_leastconn", label: "HAProxy leastconn", via: "haproxy", maxconn: false },
  { key: "nginx_least_conn", label: "nginx least_conn", via: "nginx" },
  { key: "haproxy_leastconn_maxconn", label: "HAProxy leastconn + maxconn (central queue)", via: "haproxy", maxconn: true },
];
const BASELINE = "weighted_round_robin";
const selected = process.env.BENCH_ROWS ? process.env.BENCH_ROWS.split(",").map((s) => s.trim()) : ROWS.map((r) => r.key);
for (const k of selected) if (!ROWS.some((r) => r.key === k)) throw new Error(`BENCH_ROWS: unknown row ${k} (${ROWS.map((r) => r.key).join(", ")})`);

function schedule(): Arrival[] {
  const r = prng(S.seed); // seeded: every row gets the same arrivals
  const out: Arrival[] = [];
  for (let at = 0; ; ) {
    at += (-Math.log(1 - r()) / rate) * 1000; // exponential inter-arrival times: Poisson arrivals
    if (at >= S.durationS * 1000) return out;
    out.push({ at, maxTokens: r() < S.longShare ? S.longTokens : S.shortTokens });
  }
}
const SCHEDULE = schedule();
const runnable = selected.length;
const LIMIT_MS = Math.max(180_000, (40 + runnable * (S.durationS + S.timeoutS + 10)) * 1000);

interface Target {
  row: RowSpec;
  url: string;
  headers: Record<string, string>;
  /** Before the row: configure the gateway; a message when the row must be skipped. */
  prepare?: () => Promise<string | null>;
}
interface Result {
  key: string;
  label: string;
  sent: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  rps: number;
  p50: number;
  p99: number;
  p50Wait: number;
  p99Wait: number;
  /** p99 wait is a lower bound: failed requests (counted with their elapsed time) reach it. */
  p99WaitLowerBound: boolean;
  maxLateMs: number;
  served: number[];
  aborted: number[];
}

let env: Env | null = null;
let mocks: Child | null = null;
let loadgen: Child | null = null;
let dp: Child | null = null;
const proxies: Proxy[] = [];
process.on("exit", () => {
  for (const c of [loadgen, dp, mocks]) c?.killNow();
  for (const p of proxies) p.killNow();
});

await bounded(
  LIMIT_MS,
  () =>
    stopInOrder([
      ["load generator", () => loadgen?.stop()],
      ...proxies.map((p): [string, () => Promise<void>] => ["proxy", () => p.stop()]),
      ["local data plane", () => dp?.stop()],
      ["control + Redis", () => env?.stop()],
      ["mocks", () => mocks?.stop()],
    ]),
  async () => {
    const machine = machineStart();
    const t0 = Date.now();
    const notes: string[] = [];
    const note = (m: string) => (console.log(m), notes.push(m));

    mocks = await forkChild("mocks", "../balance/mocks.proc.ts", {
      BENCH_SLOTS: S.slots.join(","),
      BENCH_MODEL: S.model,
      BENCH_TOKENS_PER_SECOND: String(S.tokensPerSecond),
      BENCH_PREFILL_TOKENS_PER_SECOND: String(S.prefillTokensPerSecond),
      BENCH_REPLY_TOKENS: String(Math.max(S.shortTokens, S.longTokens) + 10),
    });
    const ports = (mocks.ready as { ports: number[] }).ports;
    const bases = ports.map((p) => `http://127.0.0.1:${p}/v1`);
    type Counts = Array<{ served: number; aborted: number; running: number; waiting: number }>;
    const counts = () => mocks!.call<Counts>("counts");
    loadgen = await forkChild("load generator", "../balance/loadgen.proc.ts", {});

    const targets: Target[] = [];
    const rows = ROWS.filter((r) => selected.includes(r.key));
    const ours = rows.filter((r): r is Extract<RowSpec, { via: "ours" }> => r.via === "ours");
    if (ours.length > 0) {
      env = await startEnv();
      // One deployment of the 4 engines; before each of its rows the strategy and weights are PATCHed and
      // the data plane waits for that table version. A strategy the control refuses skips its row.
      const g = S.slots.reduce((a, b) => gcd(a, b));
      await registerModel(env.api, S.model);
      const dep = "dep-balance";
      const created = await env.api("POST", "/v1/deployments", {
        body: { id: dep, model: S.model, strategy: "round_robin", instances: bases.map((url, i) => ({ id: `i${i}`, url, weight: 1 })) },
      });
      if (created.status !== 201) throw new Error(`deployment create: ${created.status} ${created.text}`);
      dp = await forkChild("local data plane", "../gateway/dataplane.proc.ts", {
        BENCH_CONTROL_URL: env.control.url,
        BENCH_PLUGIN_TOKEN: PLUGIN,
        BENCH_TABLE_VERSION: String(await controlVersion(env)),
        BENCH_DP_WORKERS: String(S.workers),
      });
      const url = (dp.ready as { url: string }).url;
      for (const row of ours) {
        targets.push({
          row,
          url: `${url}/v1/chat/completions`,
          headers: { "x-model": S.model },
          async prepare() {
            // load_aware reads the engines' /metrics on the probe beat (issue 18): on, with a short beat.
            const signals = row.strategy === "load_aware" ? { load_signals: true, health_check: { interval_seconds: 0.25, timeout_seconds: 0.2 } } : {};
            const r = await env!.api("PATCH", `/v1/deployments/${dep}`, { body: { strategy: row.strategy, ...signals } });
            if (r.status !== 200) return `the control refuses strategy ${row.strategy} (${r.status} ${JSON.stringify(r.body?.error?.message ?? r.text).slice(0, 160)})`;
            for (let i = 0; i < bases.length; i++) {
              const w = await env!.api("PATCH", `/v1/deployments/${dep}/instances/i${i}`, { body: { weight: row.weights === "capacity" ? S.slots[i]! / g : 1 } });
              if (w.status !== 200) throw new Error(`instance weight: ${w.status} ${w.text}`);
            }
            const version = await controlVersion(env!);
            const until = Date.now() + 15_000;
            while ((await dp!.call<{ tableVersion: number }>("stats")).tableVersion < version) {
              if (Date.now() > until) throw new Error(`the data plane did not reach table ${version}`);
              await sleep(50);
            }
            return null;
          },
        });
      }
    }
    const upstreams = ports.map((port, i) => ({ port, slots: S.slots[i]! }));
    for (const row of rows) {
      if (row.via === "haproxy") {
        const bin = findBin("haproxy");
        if (!bin) {
          note(`${row.label} skipped: haproxy is not installed (apt-get install haproxy)`);
          continue;
        }
        const p = await startHaproxy(bin, upstreams.map((u) => ({ port: u.port, maxconn: row.maxconn ? u.slots : undefined })), S.timeoutS);
        proxies.push(p);
        targets.push({ row: { ...row, label: `${row.label} (${p.version})` }, url: `${p.url}/v1/chat/completions`, headers: {} });
      } else if (row.via === "nginx") {
        const bin = findBin("nginx");
        if (!bin) {
          note(`${row.label} skipped: nginx is not installed (apt-get install nginx)`);
          continue;
        }
        const p = await startNginx(bin, upstreams, S.timeoutS);
        proxies.push(p);
        targets.push({ row: { ...row, label: `${row.label} (${p.version})` }, url: `${p.url}/v1/chat/completions`, headers: {} });
      }
    }
    targets.sort((a, b) => rows.indexOf(rows.find((r) => r.key === a.row.key)!) - rows.indexOf(rows.find((r) => r.key === b.row.key)!));
    if (targets.length === 0) throw new Error("no rows to run");

    const modelOf = (_t: Target) => S.model;
    // One request per target, or stop here.
    const skipped = new Set<Target>();
    for (const t of targets) {
      const why = t.prepare ? await t.prepare() : null;
      if (why !== null) {
        note(`${t.row.label} skipped: ${why}`);
        skipped.add(t);
        continue;
      }
      const res = await fetch(t.url, { method: "POST", headers: { "content-type": "application/json", ...t.headers }, body: JSON.stringify({ model: modelOf(t), messages: [{ role: "user", content: "hi" }], max_tokens: 2 }) });
      const text = await res.text();
      if (res.status !== 200 || !res.headers.get("x-mock-service-time-ms")) throw new Error(`${t.row.label}: sanity request → ${res.status} ${text.slice(0, 300)}`);
    }
    const setupS = (Date.now() - t0) / 1000;
    console.error(
      `balance bench: ${targets.map((t) => t.row.key).join(", ")} ready in ${setupS.toFixed(1)} s (${targets.filter((t) => !skipped.has(t)).length} rows); ${SCHEDULE.length} arrivals over ${S.durationS} s ` +
        `(${rate.toFixed(1)}/s = ${(S.load * 100).toFixed(0)} % of ${capacityRps.toFixed(1)}/s) per row`,
    );

    const idle = async () => {
      const until = Date.now() + S.timeoutS * 1000 + 10_000;
      for (;;) {
        const c = await counts();
        if (c.every((x) => x.running === 0 && x.waiting === 0)) return;
        if (Date.now() > until) throw new Error(`engines still busy before the next row: ${JSON.stringify(c)}`);
        await sleep(100);
      }
    };

    const results: Result[] = [];
    for (const t of targets) {
      if (skipped.has(t)) continue;
      if (t.prepare && (await t.prepare()) !== null) throw new Error(`${t.row.label}: refused after a sanity request passed`);
      await idle();
      const before = await counts();
      const out = await loadgen.call<Outcome[]>(
        "run",
        { url: t.url, headers: t.headers, model: modelOf(t), schedule: SCHEDULE, timeoutMs: S.timeoutS * 1000 } satisfies RunArgs,
        (S.durationS + S.timeoutS + 30) * 1000,
      );
      await idle().catch((e) => note(`${t.row.label}: ${(e as Error).message}`));
      const after = await counts();
      const ok = out.filter((o) => o.status === 200 && o.error === null);
      const failed = out.filter((o) => !(o.status === 200 && o.error === null));
      const lat = ok.map((o) => o.latency);
      const waits = [...ok.map((o) => o.latency - o.serviceMs), ...failed.map((o) => o.latency)];
      const p99Wait = pct(waits, 99);
      const r: Result = {
        key: t.row.key,
        label: t.row.label,
        sent: out.length,
        ok: ok.length,
        non2xx: out.filter((o) => o.status !== 0 && o.status !== 200).length,
        errors: out.filter((o) => o.status === 0 && !o.timedOut).length,
        timeouts: out.filter((o) => o.timedOut).length,
        rps: ok.length / S.durationS,
        p50: pct(lat, 50),
        p99: pct(lat, 99),
        p50Wait: pct(waits, 50),
        p99Wait,
        p99WaitLowerBound: failed.some((o) => o.latency >= p99Wait),
        maxLateMs: Math.max(...out.map((o) => o.late)),
        served: after.map((x, i) => x.served - before[i]!.served),
        aborted: after.map((x, i) => x.aborted - before[i]!.aborted),
      };
      results.push(r);
      console.error(`  ${r.label}: ${r.ok}/${r.sent} ok, p99 wait ${fmt(r.p99Wait, 0)} ms`);
    }
    machineEnd(machine);
    const wall = (Date.now() - t0) / 1000;

    const base = results.find((r) => r.key === BASELINE);
    const head = ["row", "req/s", "errors", "p50 ms", "p99 ms", "p99 wait ms", "p99 wait ÷ WRR", `share % (slots ${S.slots.join(":")})`];
    const rowsOut = results.map((r) => {
      const bad = r.non2xx + r.errors + r.timeouts;
      const total = r.served.reduce((a, b) => a + b, 0);
      return [
        r.label,
        fmt(r.rps, 1),
        bad === 0 ? "0" : `${bad} (${r.timeouts} timeouts${r.non2xx ? `, ${r.non2xx} non-2xx` : ""}${r.errors ? `, ${r.errors} conn` : ""})`,
        fmt(r.p50, 0),
        fmt(r.p99, 0),
        `${r.p99WaitLowerBound ? "≥ " : ""}${fmt(r.p99Wait, 0)}`,
        base && base.p99Wait > 0 ? (r.key === BASELINE ? "1.00" : (r.p99Wait / base.p99Wait).toFixed(2)) : "-",
        total > 0 ? r.served.map((v) => ((100 * v) / total).toFixed(1)).join("/") : "none",
      ];
    });
    const capShare = S.slots.map((s) => ((100 * s) / totalSlots).toFixed(1)).join("/");
    console.log(
      `balance: ${S.slots.length} capacity mocks (slots ${S.slots.join(",")}, ${S.tokensPerSecond} tokens/s per slot), open-loop Poisson ${rate.toFixed(1)} req/s ` +
        `(${(S.load * 100).toFixed(0)} % of ${capacityRps.toFixed(1)}/s) for ${S.durationS} s = ${SCHEDULE.length} requests per row, ` +
        `${(100 * (1 - S.longShare)).toFixed(0)} % max_tokens ${S.shortTokens} / ${(100 * S.longShare).toFixed(0)} % ${S.longTokens}; timeout ${S.timeoutS} s; ` +
        `ours: ${S.workers} data-plane worker${S.workers === 1 ? "" : "s"} (BENCH_DP_WORKERS; one VM each, per-worker in-flight counts); wall ${wall.toFixed(1)} s`,
    );
    for (const l of machineLines(machine)) console.log(l);
    console.log(markdownTable(head, rowsOut));
    console.log(
      `wait = latency − the engine's service time (x-mock-service-time-ms): queueing in the engines or the balancer plus proxying; ` +
        `failed requests count with their elapsed time ("≥": the p99 is among them). Capacity share ${capShare}. ` +
        `req/s: 2xx per second of the arrival window.`,
    );
    for (const n of notes) console.log(n);
    const file = writeResult("balance", {
      bench: "balance",
      date: new Date().toISOString(),
      machine,
      settings: { ...S, rate, capacity_rps: capacityRps, mean_service_s: meanServiceS, arrivals: SCHEDULE.length, limit_s: LIMIT_MS / 1000 },
      setup_seconds: setupS,
      wall_seconds: wall,
      rows: ROWS,
      results,
      notes,
      table: { head, rows: rowsOut },
    });
    console.log(`results: ${file}`);
  },
);

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
