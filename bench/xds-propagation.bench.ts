// xDS propagation (issue 17, "Must show"): a control API change → the first request each data plane
// routes by it, with Envoy's clusters pushed over ADS against today's REST polling, in one run.
// `npm run bench:xds`.
//
// 127.0.0.1 only, everything started here and stopped at the end (or on a hang: bounded()): Redis, one
// control replica with ADS on (CONTROL_XDS_GRPC_PORT=0), mock instances, a SaaS stand-in, and three
// data planes:
//   - sim-envoy, ADS: the SIMULATED Envoy (test/e2e-envoy/support/sim-envoy.ts — NOT Envoy: the real
//     plugin in envoy/local/host plus our reading of Envoy, incl. its ADS client and cluster warming) with
//     the e2e bootstrap generated from envoy/bootstrap.yaml as shipped (ADS on gateway_xds);
//   - sim-envoy, REST: the same with the documented REST fallback (envoy/snippets/xds-rest.yaml:
//     refresh_delay 5 s as shipped, + Envoy's 0–100 % jitter) — "today's" figure: it and its plugin talk
//     to a second replica (same Redis) with TABLE_XDS_WAIT_SECONDS=0, i.e. without the issue-17 ordering
//     of the plugin's table after its Envoy's ACK (BENCH_XDS_REST_ORDERED=1: to the first replica, with
//     ordering as configured — then a REST trial waits for two CDS polls or the 30 s bound);
//   - the local data plane (envoy/local/dataplane.ts): the plugin only, no clusters to wait for.
// Every plugin runs with the shipped settings (long poll 20 s, poll 1 s, passive ejection after 3
// failures for 10 s); telemetry off. Note the scale-up consequence of passive ejection: a request whose
// listed first address Envoy skipped counts as a connect failure of that address (plugin/README.md,
// "Retries", its documented limit), so 3 silent fall-throughs eject the new instance for 10 s. The first replica
// (API, sim-envoy ADS, local data plane) runs with the control service's defaults (ordering included, if
// the tree has it).
//
// Changes (BENCH_XDS_TRIALS of each, default 50):
//   create    register a model and POST a deployment of it (one new mock instance): each data plane's
//             first answer from that instance to a request naming the model;
//   scale-up  POST an instance to a failover deployment at a better tier than its one instance: each data
//             plane's first answer from the new instance (then the instance is deleted again, and the
//             next trial waits until every data plane answers from the old one).
// Each data plane is probed by its own client, one request at a time, PROBE_PACE_MS apart (header-routed
// chat completions), from just before the API call until it answers from the new instance. Times are ms
// from the API call's start. Answers counted on the way:
//   NC            sim-envoy's 503 for a cluster it does not have (Envoy: flag NC, cluster_not_found) —
//                 the plugin already routing to a deployment whose cluster Envoy has not (warm) yet;
//   fell through  scale-up: the plugin listed the new instance first, Envoy served another one (override_host
//                 skips an address not in the cluster yet: the silent idle instance of issue 17).
// Both counts depend on the probe pace; "trials with" does not. The plugin-side ordering (a plugin routes
// only to what its Envoy ACKed, issue 17) is not part of this tree's measurement unless it is in the tree:
// NC / fell-through answers here are what the tree does now.
// REST trials take 5–10 s each: BENCH_XDS_REST_TRIALS (default 8) of each change run with all three data
// planes (these count for ADS and the local data plane too), the rest without sim-envoy REST. Ratios are
// against the REST rows of the same run.
import { startMockOpenAI, type MockOpenAI } from "../envoy/local/mock-openai.js";
import { startLocalDataPlane, type LocalDataPlane } from "../envoy/local/dataplane.js";
import { PLUGIN, registerModel, startReplica, type Replica } from "../test/control/harness.js";
import { e2eBootstrap, REPO, type XdsTransport } from "../test/e2e-envoy/support/bootstrap.js";
import { SEQ_HEADER, header, send, type Sent } from "../test/e2e-envoy/support/client.js";
import { startEnvoy, type RunningEnvoy } from "../test/e2e-envoy/support/envoy.js";
import { startSaasStandIn, type SaasStandIn } from "../test/e2e-envoy/support/stack.js";
import { freePort, startRedis, type RedisServer } from "../test/support/redis.js";
import { bounded, fmt, machineEnd, machineLines, machineStart, markdownTable, pct, sleep, writeResult } from "./support.js";

const TRIALS = Math.max(1, Number(process.env.BENCH_XDS_TRIALS ?? 50));
const REST_TRIALS = Math.min(TRIALS, Math.max(0, Number(process.env.BENCH_XDS_REST_TRIALS ?? 8)));
const LIMIT_MS = 290_000;
/** A trial waits at most this long for every data plane (REST: 10 s poll + warming). */
const REST_ORDERED = process.env.BENCH_XDS_REST_ORDERED === "1";
const TRIAL_TIMEOUT_MS = REST_ORDERED ? 40_000 : 15_000;
const PROBE_PACE_MS = 5;
const SIM = `${REPO}test/e2e-envoy/support/sim-envoy`;
/** The plugin's shipped timings (envoy/bootstrap.yaml), telemetry off. */
const PLUGIN_SETTINGS = { poll_interval_ms: 1_000, long_poll_seconds: 20, control_timeout_ms: 25_000, passive_failures: 3, passive_cooldown_ms: 10_000, telemetry_interval_ms: 0 } as const;
/** REST trials stop once the run is this old, whatever BENCH_XDS_REST_TRIALS says (the total stays < 5 min). */
const REST_BUDGET_MS = 170_000;
const HEALTH = { interval_seconds: 5, timeout_seconds: 1, unhealthy_threshold: 3, healthy_threshold: 1, path: "/health" } as const;

type PlaneId = "sim-ads" | "sim-rest" | "local";
interface Plane {
  id: PlaneId;
  label: string;
  url: string;
}
type Change = "create" | "scale-up";

interface Probe {
  /** ms from the API call's start to the first answer from the new instance; null: not within the trial. */
  routed: number | null;
  nc: number;
  fellThrough: number;
  answers: number;
  /** The last answer that was not from the new instance ("status text"), for a trial that never routed. */
  last: string;
  /** ms to the first answer showing the plugin had the change (NC, fell-through or routed). */
  pluginHad: number | null;
}
interface Trial {
  change: Change;
  k: number;
  apiMs: number;
  planes: Partial<Record<PlaneId, Probe>>;
}

let redis: RedisServer | null = null;
let control: Replica | null = null;
/** The REST sim's replica (today's behaviour: no table ordering), unless BENCH_XDS_REST_ORDERED. */
let controlRest: Replica | null = null;
let saas: SaasStandIn | null = null;
let dp: LocalDataPlane | null = null;
const envoys = new Map<PlaneId, RunningEnvoy>();
const mocks: MockOpenAI[] = [];

const isNoCluster = (r: Sent): boolean => r.status === 503 && (/cluster_not_found/.test(r.text) || r.text === "no cluster");

await bounded(
  LIMIT_MS,
  async () => {
    for (const e of envoys.values()) await e.stop();
    await dp?.close();
    for (const m of mocks) await m.close().catch(() => undefined);
    await saas?.close();
    await controlRest?.stop();
    await control?.stop();
    await redis?.close();
  },
  async () => {
    const machine = machineStart();
    const t0 = Date.now();
    redis = await startRedis();
    control = await startReplica(redis.url, { XDS_ALLOW_FROM: "127.0.0.1/32,::1/128", CONTROL_XDS_GRPC_PORT: "0", LOG_LEVEL: "warn" });
    controlRest = REST_ORDERED ? null : await startReplica(redis.url, { XDS_ALLOW_FROM: "127.0.0.1/32,::1/128", TABLE_XDS_WAIT_SECONDS: "0", LOG_LEVEL: "warn" });
    const api = control.api;
    saas = await startSaasStandIn();
    dp = await startLocalDataPlane({ controlUrl: control.url, pluginToken: PLUGIN, port: 0, log: () => undefined, pluginConfig: { ...PLUGIN_SETTINGS } });

    const startSim = async (xds: XdsTransport): Promise<RunningEnvoy> => {
      const adminPort = await freePort();
      let listenerPort = await freePort();
      while (listenerPort === adminPort) listenerPort = await freePort();
      const { bootstrap } = e2eBootstrap({
        nodeId: `bench-xds-${xds}-${process.pid}`,
        adminPort,
        listenerPort,
        controlPort: xds === "rest" && controlRest ? controlRest.control.port : control!.control.port,
        ...(xds === "ads" ? { adsPort: control!.control.adsPort! } : { xds: "rest" as const }),
        saasPort: saas!.port,
        pluginToken: PLUGIN,
        plugin: { ...PLUGIN_SETTINGS },
      });
      return await startEnvoy({ bin: SIM, bootstrap, adminPort, listenerPort, concurrency: 1, logLevel: "warn" });
    };
    envoys.set("sim-ads", await startSim("ads"));
    if (REST_TRIALS > 0) envoys.set("sim-rest", await startSim("rest"));
    const planes: Plane[] = [
      { id: "sim-ads", label: "sim-envoy (SIMULATED), ADS", url: envoys.get("sim-ads")!.listener },
      { id: "sim-rest", label: "sim-envoy (SIMULATED), REST 5 s, today", url: envoys.get("sim-rest")?.listener ?? "" },
      { id: "local", label: "local data plane (plugin only)", url: dp.url },
    ];
    const active = (k: number) => planes.filter((p) => p.id !== "sim-rest" || (k < REST_TRIALS && envoys.has("sim-rest")));

    /** Probes `p` until `isNew(answer)` (or `until` passes); `fellThrough(answer)` counts silent skips. */
    const probe = async (p: Plane, model: string, start: () => number, isNew: (r: Sent) => boolean, fellThrough: (r: Sent) => boolean, stop: () => boolean): Promise<Probe> => {
      const out: Probe = { routed: null, nc: 0, fellThrough: 0, answers: 0, last: "", pluginHad: null };
      while (!stop()) {
        let r: Sent;
        try {
          r = await send(p.url, { model, via: "header" });
        } catch {
          await sleep(PROBE_PACE_MS);
          continue;
        }
        out.answers++;
        const now = performance.now() - start();
        if (isNew(r)) {
          out.routed = now;
          out.pluginHad ??= now;
          break;
        }
        out.last = `${r.status} ${r.text.slice(0, 200)}`;
        const nc = isNoCluster(r);
        const fell = !nc && fellThrough(r);
        if (nc) out.nc++;
        if (fell) out.fellThrough++;
        if (nc || fell) out.pluginHad ??= now;
        await sleep(PROBE_PACE_MS);
      }
      return out;
    };

    /** Runs `change` while every active plane is probed; resolves when each answered from the new instance. */
    const trial = async (change: Change, k: number, model: string, isNew: (r: Sent) => boolean, fellThrough: (r: Sent) => boolean, call: () => Promise<void>): Promise<Trial> => {
      let tStart = Infinity;
      let timedOut = false;
      const deadline = setTimeout(() => (timedOut = true), TRIAL_TIMEOUT_MS);
      const ps = active(k);
      const probes = ps.map((p) => probe(p, model, () => tStart, isNew, fellThrough, () => timedOut));
      await sleep(3 * PROBE_PACE_MS); // every probe has answered at least once before the change
      tStart = performance.now();
      await call();
      const apiMs = performance.now() - tStart;
      const results = await Promise.all(probes);
      clearTimeout(deadline);
      return { change, k, apiMs, planes: Object.fromEntries(ps.map((p, i) => [p.id, results[i]!])) };
    };

    const trials: Trial[] = [];
    // ----------------------------------------------------------------- create
    for (let k = 0; k < TRIALS; k++) {
      const model = `xb-create-${k}`;
      const reply = `create-${k}`;
      const m = await startMockOpenAI({ model, reply });
      mocks.push(m);
      await registerModel(api, model);
      await sleep(Math.random() * 50);
      trials.push(
        await trial("create", k, model, (r) => r.status === 200 && r.content === reply, () => false, async () => {
          const r = await api("POST", "/v1/deployments", { body: { id: `xbc${k}`, model, strategy: "round_robin", health_check: HEALTH, instances: [{ id: "i0", url: m.url }] } });
          if (r.status !== 201) throw new Error(`create ${k}: ${r.status} ${r.text}`);
        }),
      );
      if (k === REST_TRIALS - 1 || Date.now() - t0 > REST_BUDGET_MS) await stopRest();
      progress(trials.at(-1)!);
    }
    if (envoys.has("sim-rest")) await stopRest();

    // ----------------------------------------------------------------- scale-up
    if (REST_TRIALS > 0 && Date.now() - t0 < REST_BUDGET_MS) envoys.set("sim-rest", await startSim("rest"));
    planes[1]!.url = envoys.get("sim-rest")?.listener ?? "";
    const model = "xb-scale";
    const old = await startMockOpenAI({ model, reply: "scale-old" });
    mocks.push(old);
    await registerModel(api, model);
    const created = await api("POST", "/v1/deployments", { body: { id: "xbs", model, strategy: "failover", health_check: HEALTH, instances: [{ id: "old", url: old.url, priority: 10 }] } });
    if (created.status !== 201) throw new Error(`scale deployment: ${created.status} ${created.text}`);
    const fromOld = (r: Sent) => r.status === 200 && r.content === "scale-old";
    const everyPlaneOnOld = async (k: number) => {
      const deadline = performance.now() + TRIAL_TIMEOUT_MS;
      for (const p of active(k)) {
        while (!fromOld(await send(p.url, { model, via: "header" }).catch(() => ({ status: 0 }) as Sent))) {
          if (performance.now() > deadline) throw new Error(`${p.label}: not answering from the old instance within ${TRIAL_TIMEOUT_MS} ms`);
          await sleep(PROBE_PACE_MS);
        }
      }
    };
    for (let k = 0; k < TRIALS; k++) {
      await everyPlaneOnOld(k);
      const reply = `scale-${k}`;
      const m = await startMockOpenAI({ model, reply });
      mocks.push(m);
      const newAddress = `127.0.0.1:${m.port}`;
      // The plugin put the new instance first (x-gateway-destination-endpoint) and the old one served.
      const fellThrough = (r: Sent) => {
        if (!fromOld(r)) return false;
        let rec: (typeof old.requests)[number] | undefined;
        for (let i = old.requests.length - 1; i >= 0 && !rec; i--) if (header(old.requests[i]!.headers, SEQ_HEADER) === r.seq) rec = old.requests[i];
        return (header(rec?.headers ?? {}, "x-gateway-destination-endpoint") ?? "").split(",")[0] === newAddress;
      };
      await sleep(Math.random() * 50);
      trials.push(
        await trial("scale-up", k, model, (r) => r.status === 200 && r.content === reply, fellThrough, async () => {
          const r = await api("POST", "/v1/deployments/xbs/instances", { body: { id: `n${k}`, url: m.url, priority: 0 } });
          if (r.status !== 201) throw new Error(`scale-up ${k}: ${r.status} ${r.text}`);
        }),
      );
      progress(trials.at(-1)!);
      const d = await api("DELETE", `/v1/deployments/xbs/instances/n${k}`);
      if (d.status !== 204) throw new Error(`instance delete ${k}: ${d.status} ${d.text}`);
      if (old.requests.length > 400) old.requests.splice(0, old.requests.length - 200);
      if (k === REST_TRIALS - 1 || Date.now() - t0 > REST_BUDGET_MS) await stopRest();
    }
    if (envoys.has("sim-rest")) await stopRest();
    const wall = (Date.now() - t0) / 1000;
    machineEnd(machine);

    // ----------------------------------------------------------------- table
    const head = ["data plane", "change", "n", "p50 ms", "p99 ms", "max ms", "after API 2xx p50", "p99", "not routed", "NC answers", "trials with NC", "fell-through answers", "trials with fell-through", "p50 ÷ REST", "p99 ÷ REST", "p99 ≤ 200 ms"];
    const rows: string[][] = [];
    const summary: Record<string, unknown>[] = [];
    type RowDef = { label: string; of: PlaneId[] };
    const defs: RowDef[] = [
      { label: "sim-envoy (SIMULATED), ADS", of: ["sim-ads"] },
      { label: `sim-envoy (SIMULATED), REST 5 s${REST_ORDERED ? ", ordered" : ", today"}`, of: ["sim-rest"] },
      { label: "local data plane (plugin only)", of: ["local"] },
      { label: "every data plane: sim ADS + local", of: ["sim-ads", "local"] },
      { label: "every data plane: sim REST + local", of: ["sim-rest", "local"] },
    ];
    const stat = (change: Change, of: PlaneId[]) => {
      const ts = trials.filter((t) => t.change === change && of.every((id) => t.planes[id]));
      const times = ts.map((t) => (of.some((id) => t.planes[id]!.routed === null) ? null : Math.max(...of.map((id) => t.planes[id]!.routed!))));
      const ok = times.filter((x): x is number => x !== null);
      const afterApi = ts.flatMap((t, i) => (times[i] === null ? [] : [times[i]! - t.apiMs]));
      const sum = (f: (p: Probe) => number) => ts.reduce((a, t) => a + of.reduce((b, id) => b + f(t.planes[id]!), 0), 0);
      const trialsWith = (f: (p: Probe) => number) => ts.filter((t) => of.some((id) => f(t.planes[id]!) > 0)).length;
      return { n: ts.length, p50: pct(ok, 50), p99: pct(ok, 99), max: pct(ok, 100), afterApiP50: pct(afterApi, 50), afterApiP99: pct(afterApi, 99), notRouted: times.length - ok.length, nc: sum((p) => p.nc), ncTrials: trialsWith((p) => p.nc), fell: sum((p) => p.fellThrough), fellTrials: trialsWith((p) => p.fellThrough), apiP50: pct(ts.map((t) => t.apiMs), 50) };
    };
    for (const change of ["create", "scale-up"] as const) {
      const restSingle = stat(change, ["sim-rest"]);
      const restEvery = stat(change, ["sim-rest", "local"]);
      for (const d of defs) {
        const s = stat(change, d.of);
        const base = d.of.length > 1 ? restEvery : restSingle;
        const isRest = d.of.includes("sim-rest");
        summary.push({ data_plane: d.label, planes: d.of, change, ...s });
        rows.push([
          d.label, change, String(s.n), fmt(s.p50), fmt(s.p99), fmt(s.max), fmt(s.afterApiP50), fmt(s.afterApiP99), String(s.notRouted),
          d.of.includes("sim-ads") || d.of.includes("sim-rest") ? String(s.nc) : "-",
          d.of.includes("sim-ads") || d.of.includes("sim-rest") ? `${s.ncTrials}/${s.n}` : "-",
          change === "scale-up" ? String(s.fell) : "-",
          change === "scale-up" ? `${s.fellTrials}/${s.n}` : "-",
          isRest ? "1.00" : fmt(s.p50 / base.p50, 3), isRest ? "1.00" : fmt(s.p99 / base.p99, 3),
          s.n === 0 ? "-" : s.p99 <= 200 && s.notRouted === 0 ? "yes" : "no",
        ]);
      }
    }
    console.log(`xds propagation: API change → the first request each data plane routes by it; ms from the API call's start; ${TRIALS} trials of each change (REST: ${REST_TRIALS}); probe every ${PROBE_PACE_MS} ms per data plane; wall ${wall.toFixed(1)} s`);
    for (const l of machineLines(machine)) console.log(l);
    console.log(markdownTable(head, rows));
    console.log(REST_ORDERED ? "REST rows: the REST sim-envoy and its plugin on the ordering replica (TABLE_XDS_WAIT_SECONDS as configured)." : "REST rows: today's behaviour — the REST sim-envoy and its plugin on a replica with TABLE_XDS_WAIT_SECONDS=0 (no ordering of the plugin's table after its Envoy's ACK).");
    console.log(`SIMULATED: the sim-envoy rows are test/e2e-envoy/support/sim-envoy.ts (not Envoy; its ADS client and cluster warming follow Envoy's docs and source as its header cites). REST: fewer trials (n column; at most ${REST_TRIALS}, and none started after ${REST_BUDGET_MS / 1000} s of run) — each takes 5–10 s; its ratios are 1.00 by definition.`);
    console.log("every data plane: a trial's time is the slowest of those data planes; NC: sim-envoy's 503 no-cluster answers (the plugin routed to a deployment whose cluster was not warm yet);");
    console.log("fell-through: the plugin listed the new instance first and Envoy served the old one (override_host skips an address not in its cluster). Counts depend on the probe pace, \"trials with\" does not.");
    console.log("after API 2xx: from the API's answer (the create runs the deployment's connectivity test before it) to the first routed answer; negative: routed before the client read the 2xx.");
    console.log(`API call p50: create ${fmt(stat("create", ["local"]).apiP50)} ms, scale-up ${fmt(stat("scale-up", ["local"]).apiP50)} ms (the connectivity test runs inside it).`);
    const file = writeResult("xds-propagation", { bench: "xds-propagation", date: new Date().toISOString(), machine, trials_per_change: TRIALS, rest_trials: REST_TRIALS, rest_ordered: REST_ORDERED, probe_pace_ms: PROBE_PACE_MS, wall_seconds: wall, table: { head, rows }, summary, trials });
    console.log(`results: ${file}`);
  },
);

async function stopRest(): Promise<void> {
  const e = envoys.get("sim-rest");
  envoys.delete("sim-rest");
  await e?.stop();
}

function progress(t: Trial): void {
  if ((t.k + 1) % 10 !== 0 && t.k !== 0 && Object.values(t.planes).every((p) => p.routed !== null)) return;
  const bits = Object.entries(t.planes).map(([id, p]) => `${id} ${p.routed === null ? `not routed (${p.answers} answers, last: ${p.last})` : `${p.routed.toFixed(1)} ms`} (plugin had it at ${p.pluginHad?.toFixed(1) ?? "-"} ms)${p.nc ? ` NC ${p.nc}` : ""}${p.fellThrough ? ` fell ${p.fellThrough}` : ""}`);
  process.stderr.write(`${t.change} ${t.k + 1}/${TRIALS}: ${bits.join(", ")}\n`);
}
