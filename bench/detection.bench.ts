// Detection: an instance killed (its mock's listener closed: connections refused) → ejected in the
// routing table and no longer picked; restarted on the same port → re-added. `npm run bench:detection`.
//
// In-process, 127.0.0.1 only: Redis, one control replica (prober tick 20 ms), 3 mock instances in a
// round-robin deployment, the local data plane (build/plugin.wasm on the test host, 1 worker, long-poll on,
// passive ejection and telemetry off, so only the control's health verdicts take an instance out).
// health_check: interval N = BENCH_N (default 0.5 s), timeout T = N/2, unhealthy_threshold 3,
// healthy_threshold 2. Bounds printed next to the measurements: ejection ≤ 3·N + T, re-add ≤ successes·N.
// BENCH_TRIALS trials (default 12), the victim rotating over the 3 instances; each trial starts after a
// random pause in [0, N) so kills land at every phase of the probe cycle.
// Measured from the moment the mock is stopped (resp. asked to listen again), ms:
//   control   the control service's routing table (GET /v1/routing-table, polled every 10 ms) shows the
//             instance ejected (resp. active);
//   dp table  the data plane's table-version gauge reaches that version (1 ms sampler);
//   picks     send time of the first request (one every 20 ms) whose x-gateway-destination-endpoint no
//             longer lists the instance (resp. lists it again), every later request of the phase agreeing.
import { dataplane, deploy, mocks, startEnv, type Env } from "../test/local/support.js";
import { PLUGIN } from "../test/control/harness.js";
import { bounded, fmt, machineEnd, machineLines, machineStart, markdownTable, pct, shoot, sleep, trimRequests, writeResult, type Shot } from "./support.js";

const N = Number(process.env.BENCH_N ?? 0.5);
const T = N / 2;
const UNHEALTHY = 3;
const HEALTHY = 2;
const TRIALS = Math.max(1, Number(process.env.BENCH_TRIALS ?? 12));
const LIMIT_MS = 170_000;
const PHASE_TIMEOUT_MS = Math.max(5_000, 4 * (UNHEALTHY * N + T) * 1000);
const SHOT_EVERY_MS = 20;
/** Requests after the phase's first reflecting one that must agree with it. */
const CONFIRM = 5;

interface Phase {
  control: number;
  dpTable: number | null;
  picks: number;
  version: number;
  /** Requests of the phase that failed (non-200). */
  failed: number;
  /** Later requests that contradicted the reflected state. */
  violations: number;
}

interface TrialResult {
  trial: number;
  instance: string;
  eject: Phase;
  readd: Phase;
}

let env: Env | null = null;

await bounded(LIMIT_MS, async () => {
  await env?.stop();
}, async () => {
  const machine = machineStart();
  const t0 = Date.now();
  env = await startEnv();
  const e = env;
  const dp = await dataplane(e, {
    workers: 1,
    pluginConfig: { poll_interval_ms: 100, long_poll_seconds: 20, control_timeout_ms: 25_000, telemetry_interval_ms: 0, passive_failures: 0, max_fallbacks: 2 },
  });
  const ms = await mocks(e, "det", 3);
  const dep = await deploy(e, "det", ms.map((m) => m.url), {
    health_check: { interval_seconds: N, timeout_seconds: T, unhealthy_threshold: UNHEALTHY, healthy_threshold: HEALTHY },
  });
  const seen = new Map<number, number>();
  const sampler = setInterval(() => {
    const v = dp.tableVersion();
    if (!seen.has(v)) seen.set(v, performance.now());
  }, 1);

  /** Polls the control's routing table until `iid` has `state`; returns the time seen and the version. */
  const controlState = async (iid: string, state: string, since: number): Promise<{ at: number; version: number }> => {
    for (;;) {
      const r = await e.api("GET", "/v1/routing-table", { token: PLUGIN });
      const at = performance.now();
      if (r.status === 200) {
        const d = (r.body.deployments as { id: string; instances: { id: string; state: string }[] }[]).find((x) => x.id === dep.id);
        if (d?.instances.find((i) => i.id === iid)?.state === state) return { at, version: r.body.version as number };
      }
      if (at - since > PHASE_TIMEOUT_MS) throw new Error(`${iid} not ${state} in the control's table within ${PHASE_TIMEOUT_MS} ms`);
      await sleep(10);
    }
  };

  /** One phase: `act`, then watch control, data plane and picks until `listed(shot)` is the new normal. */
  const phase = async (iid: string, state: string, act: () => Promise<void>, reflected: (s: Shot) => boolean): Promise<Phase> => {
    const tAct = performance.now();
    await act();
    const shots: Shot[] = [];
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        const next = performance.now() + SHOT_EVERY_MS;
        shots.push(await shoot(dp, "det", ms));
        await sleep(Math.max(0, next - performance.now()));
      }
    })();
    try {
      const c = await controlState(iid, state, tAct);
      await dp.waitForTable(c.version, PHASE_TIMEOUT_MS);
      const first = () => {
        for (let i = 0; i < shots.length; i++) if (shots.slice(i).every(reflected)) return i;
        return -1;
      };
      const deadline = performance.now() + PHASE_TIMEOUT_MS;
      for (;;) {
        const f = first();
        if (f >= 0 && shots.length >= f + 1 + CONFIRM) break;
        if (performance.now() > deadline) throw new Error(`${iid} ${state}: the picks did not follow within ${PHASE_TIMEOUT_MS} ms`);
        await sleep(SHOT_EVERY_MS);
      }
      stop = true;
      await loop;
      // the first reflecting request such that every later one agrees; "violations" = a later request that does not
      let f = -1;
      for (let i = 0; i < shots.length; i++) if (reflected(shots[i]!)) { f = i; break; }
      const lastBad = shots.map((s, i) => (reflected(s) ? -1 : i)).reduce((a, b) => Math.max(a, b), -1);
      const violations = f < 0 ? 0 : shots.slice(f).filter((s) => !reflected(s)).length;
      const g = [...seen.entries()].filter(([v]) => v >= c.version).map(([, t]) => t);
      return {
        control: c.at - tAct,
        dpTable: g.length > 0 ? Math.min(...g) - tAct : null,
        picks: shots[lastBad + 1]!.sent - tAct,
        version: c.version,
        failed: shots.filter((s) => s.status !== 200).length,
        violations,
      };
    } finally {
      stop = true;
      await loop;
    }
  };

  const results: TrialResult[] = [];
  try {
    for (let k = 0; k < TRIALS; k++) {
      const idx = k % ms.length;
      const iid = `i${idx}`;
      const addr = `127.0.0.1:${ms[idx]!.port}`;
      await sleep(Math.random() * N * 1000);
      const lists = (s: Shot) => s.status === 200 && s.endpoints !== "" && s.endpoints.split(",").map((x) => x.trim()).includes(addr);
      const eject = await phase(iid, "ejected", () => ms[idx]!.stop(), (s) => s.status === 200 && s.endpoints !== "" && !lists(s));
      const readd = await phase(iid, "active", () => ms[idx]!.start(), lists);
      results.push({ trial: k, instance: iid, eject, readd });
      trimRequests(ms);
    }
  } finally {
    clearInterval(sampler);
  }
  const wall = (Date.now() - t0) / 1000;
  machineEnd(machine);

  const ejectBound = (UNHEALTHY * N + T) * 1000;
  const readdBound = HEALTHY * N * 1000;
  const rows: string[][] = [];
  const summary: Record<string, unknown>[] = [];
  for (const [what, key, bound, boundText] of [
    ["killed → ejected", "eject", ejectBound, `3·N + T = ${fmt(ejectBound, 0)}`],
    ["restarted → re-added", "readd", readdBound, `successes·N = ${fmt(readdBound, 0)}`],
  ] as const) {
    const ps = results.map((r) => r[key]);
    const c = ps.map((p) => p.control);
    const d = ps.map((p) => p.dpTable).filter((x): x is number => x !== null);
    const p = ps.map((p) => p.picks);
    const s = {
      what, trials: ps.length, bound_ms: bound,
      control_ms: { p50: pct(c, 50), max: pct(c, 100) },
      dp_table_ms: { p50: pct(d, 50), max: pct(d, 100), seen: d.length },
      picks_ms: { p50: pct(p, 50), max: pct(p, 100) },
      within_bound_picks: p.filter((x) => x <= bound).length,
      failed_requests: ps.reduce((a, x) => a + x.failed, 0),
      violations: ps.reduce((a, x) => a + x.violations, 0),
    };
    summary.push(s);
    rows.push([
      what, String(ps.length), boundText,
      fmt(s.control_ms.p50, 0), fmt(s.control_ms.max, 0),
      fmt(s.dp_table_ms.p50, 0), fmt(s.dp_table_ms.max, 0),
      fmt(s.picks_ms.p50, 0), fmt(s.picks_ms.max, 0),
      `${s.within_bound_picks}/${ps.length}`, String(s.failed_requests), String(s.violations),
    ]);
  }
  const head = ["event", "trials", "bound ms", "control p50", "max", "dp table p50", "max", "picks p50", "max", "picks ≤ bound", "failed req", "violations"];
  console.log(`detection: health_check interval N ${N} s, timeout T ${T} s, unhealthy_threshold ${UNHEALTHY}, healthy_threshold ${HEALTHY}; prober tick 20 ms; ` +
    `local data plane 1 worker, long-poll on, passive ejection off; one request every ${SHOT_EVERY_MS} ms; ms from kill / restart; wall ${wall.toFixed(1)} s`);
  for (const l of machineLines(machine)) console.log(l);
  console.log(markdownTable(head, rows));
  console.log("control: the control's routing table shows the verdict; dp table: the data plane's table gauge at that version; picks: send time of the first request from which on");
  console.log("x-gateway-destination-endpoint no longer lists (re-add: lists again) the instance. failed req: non-200 answers during the phases (the forwarder retries a refused pick on the next listed host).");
  const file = writeResult("detection", {
    bench: "detection", date: new Date().toISOString(), machine, n_seconds: N, timeout_seconds: T, unhealthy_threshold: UNHEALTHY, healthy_threshold: HEALTHY,
    bounds_ms: { eject: ejectBound, readd: readdBound }, wall_seconds: wall, table: { head, rows }, summary, trials: results,
  });
  console.log(`results: ${file}`);
});
