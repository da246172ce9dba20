// Propagation: a change in the control API → the first request through the local data plane whose pick
// reflects it. `npm run bench:propagation`.
//
// In-process, 127.0.0.1 only: Redis (test/support/redis.ts), one control replica, mock instances and the
// local data plane (build/plugin.wasm on the test host, 1 worker) — test/local/support.ts.
// Two plugin configurations, same tick (poll_interval_ms = BENCH_POLL_MS, default 100, the contract's minimum,
// to keep the run under 3 minutes; the "off" numbers scale with it):
//   long-poll on   long_poll_seconds 20 (the control answers a waiting ?wait= poll when the table changes)
//   long-poll off  long_poll_seconds 0  (a plain poll on every tick)
// Telemetry and passive ejection are off in the plugin so only the routing table drives the picks.
// Changes (BENCH_CHANGES of each, default 100, per configuration):
//   weight  PATCH …/instances/i1 {weight} on a smooth-WRR deployment of 2 instances, alternating 1 → 1000 → 1.
//           Reflected: with [1,1] the picks alternate strictly; with [1,1000] i1 is picked ~500 times in a row
//           from the table's adoption (worker 0 restarts the cycle at 0). The first reflecting request is the
//           second of 2 consecutive i1 picks (→1000: the first request only the new weights explain; late by at
//           most one request), resp. the first i0 pick (→1: exact); the requests after it must then alternate.
//   delete  DELETE …/instances/<id> on a round-robin deployment of 3 (max_fallbacks 2, so
//           x-gateway-destination-endpoint lists every eligible instance). Reflected: the first request whose
//           endpoint header (as the instance received it) no longer holds the deleted address. The instance is
//           then re-added (untimed) under a new id for the next trial.
// Changes are isolated: each trial starts once every worker has ticked since the previous change was adopted
// (dp.waitForTable: with long-poll on, the plugin re-issues its long-poll on that tick; a change landing
// before it waits for the tick, i.e. behaves like polling), then after a random pause in [0, poll interval)
// (so changes land at every phase of the tick),
// then issues the API call and, concurrently, back-to-back requests (concurrency 1) until the change is
// reflected and confirmed by the following requests (any later request contradicting it is a violation).
// Times (ms, performance.now()): from the API call's start, and from its response, to the *send* time of
// the first reflecting request; plus API start → the data plane's table gauge showing the new version
// (sampled every 1 ms). Negative "from response" values: the data plane had the change before the admin
// client had read the 2xx (the control publishes in the write transaction, then answers).
import { controlVersion, dataplane, deploy, mocks, startEnv, type Env } from "../test/local/support.js";
import type { LocalDataPlane } from "../envoy/local/dataplane.js";
import type { MockOpenAI } from "../envoy/local/mock-openai.js";
import { bounded, fmt, machineEnd, machineLines, machineStart, markdownTable, pct, shoot, sleep, trimRequests, writeResult, type Shot } from "./support.js";

const CHANGES = Math.max(1, Number(process.env.BENCH_CHANGES ?? 100));
const POLL_MS = Number(process.env.BENCH_POLL_MS ?? 100);
const LIMIT_MS = 170_000;
/** Requests after the reflecting one that must agree with it. */
const CONFIRM = 6;
const TRIAL_TIMEOUT_MS = 5_000;

interface Trial {
  kind: "weight" | "delete";
  mode: string;
  /** From the API call's start / its response to the send time of the first reflecting request. */
  fromStart: number;
  fromResponse: number;
  /** API call's start → the data plane gauge at the new version (null: not seen by the 1 ms sampler). */
  gaugeFromStart: number | null;
  apiMs: number;
  version: number;
  requests: number;
  violations: number;
  /** The reflecting request was sent while the gauge still showed an older version. */
  beforeGauge: boolean;
}

let env: Env | null = null;

await bounded(LIMIT_MS, async () => {
  await env?.stop();
}, async () => {
  const machine = machineStart();
  const t0 = Date.now();
  env = await startEnv();
  const e = env;
  const wm = await mocks(e, "prop-wrr", 2);
  const dm = await mocks(e, "prop-del", 3);
  const wdep = await deploy(e, "prop-wrr", wm.map((m) => m.url), { strategy: "weighted_round_robin" });
  const ddep = await deploy(e, "prop-del", dm.map((m) => m.url));
  const delUrl = dm[2]!.url;
  const delAddr = `127.0.0.1:${dm[2]!.port}`;
  let delId = "i2";
  let addSeq = 0;
  let weightNow = 1;

  const modes = [
    { name: "long-poll on (20 s)", config: { long_poll_seconds: 20, control_timeout_ms: 25_000 } },
    { name: "long-poll off", config: { long_poll_seconds: 0, control_timeout_ms: 5_000 } },
  ];
  const trials: Trial[] = [];

  for (const mode of modes) {
    const dp = await dataplane(e, {
      workers: 1,
      pluginConfig: { poll_interval_ms: POLL_MS, ...mode.config, telemetry_interval_ms: 0, passive_failures: 0, max_fallbacks: 2 },
    });
    await dp.waitForTable(await controlVersion(e));
    const seen = new Map<number, number>();
    const sampler = setInterval(() => {
      const v = dp.tableVersion();
      if (!seen.has(v)) seen.set(v, performance.now());
    }, 1);
    try {
      // Weight changes.
      for (let k = 0; k < CHANGES; k++) {
        const target = weightNow === 1 ? 1000 : 1;
        const reflect = target === 1000 ? secondOfRun(1) : firstPickOf(0);
        const contradicts = target === 1000 ? (s: Shot) => s.by !== 1 : null; // null: strict alternation
        trials.push(await trial(e, dp, seen, mode.name, "weight", "prop-wrr", wm, async () => {
          const r = await e.api("PATCH", `/v1/deployments/${wdep.id}/instances/i1`, { body: { weight: target } });
          if (r.status !== 200) throw new Error(`weight PATCH: ${r.status} ${r.text}`);
        }, reflect, contradicts));
        weightNow = target;
        trimRequests(wm);
      }
      // Deletes (each followed by an untimed re-add under a new id).
      for (let k = 0; k < CHANGES; k++) {
        const gone = (s: Shot) => s.status === 200 && s.endpoints !== "" && !s.endpoints.includes(delAddr);
        trials.push(await trial(e, dp, seen, mode.name, "delete", "prop-del", dm, async () => {
          const r = await e.api("DELETE", `/v1/deployments/${ddep.id}/instances/${delId}`);
          if (r.status !== 204) throw new Error(`instance DELETE: ${r.status} ${r.text}`);
        }, (shots) => shots.findIndex(gone), (s) => !gone(s) || s.by === 2));
        delId = `x${++addSeq}`;
        const r = await e.api("POST", `/v1/deployments/${ddep.id}/instances`, { body: { id: delId, url: delUrl } });
        if (r.status !== 201) throw new Error(`instance re-add: ${r.status} ${r.text}`);
        await dp.waitForTable(await controlVersion(e));
        trimRequests(dm);
      }
    } finally {
      clearInterval(sampler);
      await dp.close();
      e.dataplanes.splice(e.dataplanes.indexOf(dp), 1);
    }
  }
  const wall = (Date.now() - t0) / 1000;
  machineEnd(machine);

  // Report.
  const rows: string[][] = [];
  const summary: Record<string, unknown>[] = [];
  for (const mode of modes) {
    for (const kind of ["weight", "delete"] as const) {
      const ts = trials.filter((t) => t.mode === mode.name && t.kind === kind);
      const fs = ts.map((t) => t.fromStart);
      const fr = ts.map((t) => t.fromResponse);
      const gs = ts.map((t) => t.gaugeFromStart).filter((x): x is number => x !== null);
      const api = ts.map((t) => t.apiMs);
      const s = {
        mode: mode.name, kind, changes: ts.length,
        from_start_ms: { p50: pct(fs, 50), p99: pct(fs, 99), max: pct(fs, 100) },
        from_response_ms: { p50: pct(fr, 50), p99: pct(fr, 99), max: pct(fr, 100) },
        gauge_from_start_ms: { p50: pct(gs, 50), p99: pct(gs, 99), seen: gs.length },
        api_call_ms_p50: pct(api, 50),
        requests_per_trial_p50: pct(ts.map((t) => t.requests), 50),
        violations: ts.reduce((a, t) => a + t.violations, 0),
        reflected_before_gauge: ts.filter((t) => t.beforeGauge).length,
      };
      summary.push(s);
      rows.push([
        mode.name, kind, String(ts.length),
        fmt(s.from_start_ms.p50), fmt(s.from_start_ms.p99), fmt(s.from_start_ms.max),
        fmt(s.from_response_ms.p50), fmt(s.from_response_ms.p99),
        fmt(s.gauge_from_start_ms.p50), fmt(s.gauge_from_start_ms.p99),
        fmt(s.api_call_ms_p50), String(s.violations),
      ]);
    }
  }
  const head = ["plugin poll", "change", "n", "start→pick p50", "p99", "max", "response→pick p50", "p99", "start→dp table p50", "p99", "API call p50", "violations"];
  console.log(`propagation: control API change → first request through the local data plane (1 worker) whose pick reflects it; ms; poll_interval_ms ${POLL_MS}; ${CHANGES} changes of each kind per row; wall ${wall.toFixed(1)} s`);
  for (const l of machineLines(machine)) console.log(l);
  console.log(markdownTable(head, rows));
  console.log("start→pick: API call start → send time of the first reflecting request; response→pick: from the API's 2xx read by the client (negative: the data plane had it first);");
  console.log("start→dp table: API call start → the data plane's table-version gauge at the new version (1 ms sampler); violations: later requests of a trial contradicting the change.");
  const file = writeResult("propagation", {
    bench: "propagation", date: new Date().toISOString(), machine, poll_interval_ms: POLL_MS, changes_per_row: CHANGES, wall_seconds: wall,
    table: { head, rows }, summary, trials,
  });
  console.log(`results: ${file}`);
  const bad = summary.reduce((a, s) => a + (s.violations as number), 0);
  if (bad > 0) throw new Error(`${bad} requests contradicted a change after it was reflected`);
});

/**
 * → weight 1000: the second of two consecutive picks of `who` (impossible with equal weights, which
 * alternate strictly): the first request only the new weights explain. The first of the two may already
 * be a new-table pick, so this is late by at most one request.
 */
function secondOfRun(who: number): (shots: Shot[]) => number {
  return (shots) => {
    for (let i = 1; i < shots.length; i++) if (shots[i]!.by === who && shots[i - 1]!.by === who) return i;
    return -1;
  };
}

/**
 * → weight 1: the first pick of `who` (weight 1 of 1001: smooth WRR, restarted at each adopted table,
 * picks it first at ~pick 500, far more requests than a trial sends): exact.
 */
function firstPickOf(who: number): (shots: Shot[]) => number {
  return (shots) => shots.findIndex((s) => s.by === who);
}

async function trial(
  e: Env, dp: LocalDataPlane, seen: Map<number, number>, mode: string, kind: Trial["kind"], model: string, ms: MockOpenAI[],
  change: () => Promise<void>,
  reflect: (shots: Shot[]) => number,
  /** A request after the reflecting one contradicts the change (null: check strict alternation). */
  contradicts: ((s: Shot) => boolean) | null,
): Promise<Trial> {
  await sleep(Math.random() * POLL_MS);
  if (process.env.BENCH_VERBOSE) process.stderr.write(`${mode} ${kind} t=${(performance.now() / 1000).toFixed(2)}\n`);
  const tStart = performance.now();
  let tResp = 0;
  let version = 0;
  let failure: unknown = null;
  const changed = (async () => {
    await change();
    tResp = performance.now();
    version = await controlVersion(e);
  })().catch((err) => {
    failure = err;
  });
  const shots: Shot[] = [];
  let found = -1;
  while (performance.now() - tStart < TRIAL_TIMEOUT_MS && failure === null) {
    const s = await shoot(dp, model, ms);
    if (s.status !== 200) throw new Error(`${kind} trial: request ${s.id} → ${s.status} ${s.error ?? ""}`);
    shots.push(s);
    if (found < 0) found = reflect(shots);
    if (found >= 0 && shots.length >= found + CONFIRM && version > 0) break;
  }
  await changed;
  if (failure !== null) throw failure;
  await dp.waitForTable(version);
  if (found < 0) throw new Error(`${mode} ${kind}: not reflected within ${TRIAL_TIMEOUT_MS} ms (table ${dp.tableVersion()}, control ${version})`);
  const after = shots.slice(found);
  const violations = contradicts ? after.filter(contradicts).length : after.filter((s, j) => j > 0 && s.by === after[j - 1]!.by).length;
  const first = shots[found]!;
  const g = [...seen.entries()].filter(([v]) => v >= version).map(([, t]) => t);
  return {
    kind, mode,
    fromStart: first.sent - tStart,
    fromResponse: first.sent - tResp,
    gaugeFromStart: g.length > 0 ? Math.min(...g) - tStart : null,
    apiMs: tResp - tStart,
    version,
    requests: shots.length,
    violations,
    beforeGauge: first.version < version,
  };
}
