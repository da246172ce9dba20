// Propagation: a change in the control API → *every* worker VM of the local data plane routing by it.
// `npm run bench:propagation`.
//
// In-process, 127.0.0.1 only: Redis (test/support/redis.ts), one control replica, mock instances and the
// local data plane (build/plugin.wasm on envoy/local/host with Envoy's VM lifecycle: canary, main-thread
// VM, one VM per worker) — test/local/support.ts. Envoy runs one VM per worker (default: one per core);
// only one VM polls the control service, the others learn of a new table from it (plugin/control/notify.ts).
//
// Rows: workers 1, 4 and 8 with long-poll on (long_poll_seconds 20) at the default poll_interval_ms 1000 —
// so a worker that waited for its own tick would show up to a second here — and 4 workers with long-poll
// off (a plain poll every tick, poll_interval_ms 100) for comparison. Telemetry and passive ejection off.
// Changes (BENCH_CHANGES of each per row, default 50), on a round-robin deployment of 3 instances with
// max_fallbacks 2, so every routed request lists every eligible instance in x-gateway-destination-endpoint:
//   delete  DELETE …/instances/<id>: a worker routes by it once its endpoint list lacks the address;
//   add     POST …/instances (the same URL under a new id): once the list holds the address again.
// How a worker's routing is read: a request run on that worker VM directly (dp.host.request, in-process,
// nothing forwarded), every event-loop turn while the trial runs — the plugin's own decision, per worker.
// Times (ms, performance.now()) from the API call's start: the first worker routing by the change, every
// worker routing by it; and "first → every", the spread the nudge removes (issue 14's goal: p99 ≤ 100 ms at
// 8 workers, at any poll_interval_ms). A worker seen routing by the change and later not is a violation.
// Each trial starts once every worker routes by the previous state, after a random pause in [0, 100) ms.
import { controlVersion, dataplane, deploy, mocks, startEnv, type Env } from "../test/local/support.js";
import type { LocalDataPlane } from "../envoy/local/dataplane.js";
import { bounded, fmt, machineEnd, machineLines, machineStart, markdownTable, pct, sleep, writeResult } from "./support.js";

const CHANGES = Math.max(1, Number(process.env.BENCH_CHANGES ?? 50));
const LIMIT_MS = 170_000;
const TRIAL_TIMEOUT_MS = 10_000;
const MODEL = "prop-del";

interface Row {
  workers: number;
  mode: string;
  config: Record<string, unknown>;
}

const ROWS: Row[] = [
  { workers: 1, mode: "long-poll on, poll 1000 ms", config: { long_poll_seconds: 20, control_timeout_ms: 25_000, poll_interval_ms: 1000 } },
  { workers: 4, mode: "long-poll on, poll 1000 ms", config: { long_poll_seconds: 20, control_timeout_ms: 25_000, poll_interval_ms: 1000 } },
  { workers: 8, mode: "long-poll on, poll 1000 ms", config: { long_poll_seconds: 20, control_timeout_ms: 25_000, poll_interval_ms: 1000 } },
  { workers: 4, mode: "long-poll off, poll 100 ms", config: { long_poll_seconds: 0, control_timeout_ms: 5_000, poll_interval_ms: 100 } },
];

interface Trial {
  workers: number;
  mode: string;
  kind: "delete" | "add";
  /** API call start → the first worker / every worker routing by the change. */
  first: number;
  every: number;
  apiMs: number;
  violations: number;
}

/** The endpoint list worker `w` writes for a request naming MODEL right now ("" if it did not route it). */
function endpointsOf(dp: LocalDataPlane, w: number): string {
  const r = dp.host.request({
    worker: w,
    headers: [[":method", "POST"], [":path", "/v1/chat/completions"], [":authority", "bench"], ["x-model", MODEL]],
  });
  return r.upstreamHeaders?.find(([k]) => k === "x-gateway-destination-endpoint")?.[1] ?? "";
}

let env: Env | null = null;

await bounded(LIMIT_MS, async () => {
  await env?.stop();
}, async () => {
  const machine = machineStart();
  const t0 = Date.now();
  env = await startEnv();
  const e = env;
  const dm = await mocks(e, MODEL, 3);
  const dep = await deploy(e, MODEL, dm.map((m) => m.url));
  const moving = dm[2]!;
  const address = `127.0.0.1:${moving.port}`;
  let movingId = "i2";
  let seq = 0;
  const trials: Trial[] = [];

  for (const row of ROWS) {
    const dp = await dataplane(e, {
      workers: row.workers,
      pluginConfig: { ...row.config, telemetry_interval_ms: 0, passive_failures: 0, max_fallbacks: 2 },
    });
    await dp.waitForTable(await controlVersion(e));
    const workers = Array.from({ length: row.workers }, (_, i) => i);
    try {
      for (let k = 0; k < CHANGES; k++) {
        for (const kind of ["delete", "add"] as const) {
          const present = kind === "add";
          // Every worker routes by the current state before the change.
          await until(() => workers.every((w) => endpointsOf(dp, w).includes(address) === !present), `${row.workers} workers before ${kind}`);
          await sleep(Math.random() * 100);
          const t = await trial(dp, workers, (ep) => ep !== "" && ep.includes(address) === present, async () => {
            if (kind === "delete") {
              const r = await e.api("DELETE", `/v1/deployments/${dep.id}/instances/${movingId}`);
              if (r.status !== 204) throw new Error(`instance DELETE: ${r.status} ${r.text}`);
            } else {
              movingId = `x${++seq}`;
              const r = await e.api("POST", `/v1/deployments/${dep.id}/instances`, { body: { id: movingId, url: moving.url } });
              if (r.status !== 201) throw new Error(`instance add: ${r.status} ${r.text}`);
            }
          });
          trials.push({ workers: row.workers, mode: row.mode, kind, ...t });
        }
      }
    } finally {
      await dp.close();
      e.dataplanes.splice(e.dataplanes.indexOf(dp), 1);
    }
  }
  const wall = (Date.now() - t0) / 1000;
  machineEnd(machine);

  const rows: string[][] = [];
  const summary: Record<string, unknown>[] = [];
  for (const row of ROWS) {
    for (const kind of ["delete", "add"] as const) {
      const ts = trials.filter((t) => t.workers === row.workers && t.mode === row.mode && t.kind === kind);
      const first = ts.map((t) => t.first);
      const every = ts.map((t) => t.every);
      const spread = ts.map((t) => t.every - t.first);
      const afterResponse = ts.map((t) => t.every - t.apiMs);
      const base = trials.filter((t) => t.workers === 1 && t.mode === ROWS[0]!.mode && t.kind === kind).map((t) => t.every);
      const s = {
        workers: row.workers, mode: row.mode, kind, changes: ts.length,
        first_ms: { p50: pct(first, 50), p99: pct(first, 99) },
        every_ms: { p50: pct(every, 50), p99: pct(every, 99), max: pct(every, 100) },
        first_to_every_ms: { p50: pct(spread, 50), p99: pct(spread, 99), max: pct(spread, 100) },
        api_call_ms_p50: pct(ts.map((t) => t.apiMs), 50),
        response_to_every_ms: { p50: pct(afterResponse, 50), p99: pct(afterResponse, 99) },
        every_p99_vs_1_worker: pct(every, 99) / pct(base, 99),
        violations: ts.reduce((a, t) => a + t.violations, 0),
      };
      summary.push(s);
      rows.push([
        String(row.workers), row.mode, kind, String(ts.length),
        fmt(s.first_ms.p50), fmt(s.first_ms.p99),
        fmt(s.every_ms.p50), fmt(s.every_ms.p99), fmt(s.every_ms.max),
        fmt(s.first_to_every_ms.p50), fmt(s.first_to_every_ms.p99), fmt(s.first_to_every_ms.max),
        fmt(s.api_call_ms_p50), fmt(s.response_to_every_ms.p50), fmt(s.response_to_every_ms.p99),
        fmt(s.every_p99_vs_1_worker, 2), String(s.violations),
      ]);
    }
  }
  const head = ["workers", "plugin poll", "change", "n", "start→first worker p50", "p99", "start→every worker p50", "p99", "max", "first→every p50", "p99", "max", "API call p50", "response→every p50", "p99", "every p99 ÷ 1 worker", "violations"];
  console.log(`propagation: control API change → every worker VM of the local data plane routing by it; ms; ${CHANGES} changes of each kind per row; wall ${wall.toFixed(1)} s`);
  for (const l of machineLines(machine)) console.log(l);
  console.log(markdownTable(head, rows));
  console.log("start: the API call's start; a worker routes by the change when a request run on that VM does (its endpoint list lacks / holds the address);");
  console.log("first→every: from the first worker routing by it to the last; response→every: from the API's 2xx read by the client (negative: every worker had it first);");
  console.log("every p99 ÷ 1 worker: against the 1-worker long-poll row of the same run; violations: a worker seen routing by the change and later not.");
  const file = writeResult("propagation", {
    bench: "propagation", date: new Date().toISOString(), machine, changes_per_row: CHANGES, wall_seconds: wall,
    table: { head, rows }, summary, trials,
  });
  console.log(`results: ${file}`);
  const bad = summary.reduce((a, s) => a + (s.violations as number), 0);
  if (bad > 0) throw new Error(`${bad} times a worker went back to the old state after routing by a change`);
});

/** Waits (yielding to the event loop) until cond() holds. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + TRIAL_TIMEOUT_MS;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/**
 * Runs `change` and, every event-loop turn meanwhile, asks each worker that has not switched yet how it
 * routes; records when the first and the last one route by the change (`routes`), and any worker that
 * switches back.
 */
async function trial(
  dp: LocalDataPlane,
  workers: number[],
  routes: (endpoints: string) => boolean,
  change: () => Promise<void>,
): Promise<{ first: number; every: number; apiMs: number; violations: number }> {
  const tStart = performance.now();
  let tResp = 0;
  let failure: unknown = null;
  const changed = change().then(() => (tResp = performance.now()), (err: unknown) => (failure = err));
  const at = new Map<number, number>();
  let violations = 0;
  while (at.size < workers.length && failure === null) {
    if (performance.now() - tStart > TRIAL_TIMEOUT_MS) throw new Error(`not every worker routed by the change within ${TRIAL_TIMEOUT_MS} ms (${at.size} of ${workers.length})`);
    const now = performance.now();
    for (const w of workers) {
      const yes = routes(endpointsOf(dp, w));
      if (yes && !at.has(w)) at.set(w, now - tStart);
      else if (!yes && at.has(w)) violations++;
    }
    await new Promise((r) => setImmediate(r));
  }
  await changed;
  if (failure !== null) throw failure;
  // A few more rounds: nobody goes back.
  for (let k = 0; k < 5; k++) {
    for (const w of workers) if (!routes(endpointsOf(dp, w))) violations++;
    await new Promise((r) => setImmediate(r));
  }
  const times = [...at.values()];
  return { first: Math.min(...times), every: Math.max(...times), apiMs: tResp - tStart, violations };
}
