// Multi-replica phase of bench:control-scale: R control replicas (default 3) on one Redis share a fleet (default
// 30,000 instances) through the per-deployment probe leases, then one is SIGKILLed mid-run.
//   1. fresh redis-server; the fleet created through the API as in the single-process sizes (setup.ts), its mock
//      instances split over fleet processes of at most FLEET_MAX listeners each (a process may open 20,000 files);
//   2. R replicas (the real entry, REPLICA_ID r1..rR, LEASE_MS = leaseMs, production defaults otherwise) started
//      together on the populated Redis. Whoever starts first takes leases first; the fair share (prober.ts) hands
//      the excess over as those leases run out. Settled: every deployment held and each replica within 10 % (+1)
//      of its share, read from the lease keys in Redis (bounded: 3 lease periods + 2 N);
//   3. window 1 (windowS): per replica the deployments and instances it holds, the share of those instances whose
//      longest gap without a probe stayed ≤ N + slack (as the mock instances saw it), CPU and RSS (/proc);
//   4. the last replica is SIGKILLed (no release): the time until every one of its deployments' leases is held by
//      a survivor (Redis, polled every 100 ms) and until every one of its instances got a probe again (the mock
//      instances), and each such instance's probe gap across the kill — against the lease period;
//   5. window 2 (windowS, from the takeover): the survivors as in 3.
import { Redis } from "ioredis";
import { freePort, startRedis, type RedisServer } from "../../test/support/redis.js";
import { fmt, markdownTable, pct, sleep } from "../support.js";
import { startControlProcess, startFleet, type ControlProcess, type FleetProcess } from "./children.js";
import { createFleet } from "./setup.js";
import { Sampler, type Sample } from "./proc.js";
import type { FleetOptions } from "./fleet.js";

/** Listeners per fleet process (each also needs a file per probe connection in flight; the limit is 20,000). */
const FLEET_MAX = 12_000;

export interface ReplicasOptions {
  instances: number;
  replicas: number;
  perDeployment: number;
  n: number;
  t: number;
  leaseMs: number;
  windowS: number;
  slackMs: number;
  mockPort: number;
  setupPending: number;
  env: Record<string, string>;
  controlEnv: Record<string, string>;
  log: (s: string) => void;
}

interface ReplicaWindow {
  replica: string;
  deployments: number;
  instances: number;
  within: number;
  within_pct: number;
  cpu: { mean: number; p95: number };
  rss_mb_max: number;
  /** Event-loop utilisation (mean) and worst per-second p99 event-loop delay, from the replica's preload. */
  elu: number;
  loop_delay_p99_ms: number;
  /** Probes per second its instances received (as the mock instances counted them) vs instances / N. */
  probes_per_s: number;
  expected_per_s: number;
}

export interface ReplicasResult {
  instances: number;
  deployments: number;
  replicas: number;
  lease_ms: number;
  setup_seconds: number;
  settle_seconds: number;
  settled: boolean;
  window1: ReplicaWindow[];
  kill: {
    replica: string;
    deployments: number;
    instances: number;
    /** Kill → every one of its deployments' leases held by a survivor. */
    leases_taken_ms: number | null;
    /** Kill → every one of its instances probed again (max), and the median instance. */
    probed_again_ms: { p50: number; max: number } | null;
    not_probed_again: number;
    /** Per instance: its last probe before the kill → its first after (the probing gap the kill caused). */
    gap_ms: { p50: number; max: number } | null;
  };
  window2: ReplicaWindow[];
  redis_cpu: { window1: number; window2: number };
  mock_cpu: { window1: number; window2: number };
}

const mean = (xs: number[]) => (xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length);
const r1 = (x: number) => Math.round(x * 10) / 10;

export async function runReplicas(o: ReplicasOptions): Promise<ReplicasResult> {
  const { log } = o;
  const deps = Math.ceil(o.instances / o.perDeployment);
  const fleetBase: FleetOptions = { count: o.instances, perDeployment: o.perDeployment, modelPrefix: "rep-", basePort: o.mockPort, portsPerIp: 50 };
  const fleets: { f: FleetProcess; from: number; count: number }[] = [];
  const controls = new Map<string, ControlProcess>();
  let redisServer: RedisServer | null = null;
  let redis: Redis | null = null;
  let sampler: Sampler | null = null;
  try {
    log(`control-scale replicas: ${o.instances} instances, ${o.replicas} replicas, lease ${o.leaseMs} ms`);
    for (let from = 0; from < o.instances; from += FLEET_MAX) {
      const count = Math.min(FLEET_MAX, o.instances - from);
      fleets.push({ f: await startFleet({ ...fleetBase, from, count }, 120_000), from, count });
    }
    redisServer = await startRedis();
    redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
    const redisPid = Number(/^process_id:(\d+)/m.exec(await redis.info("server"))?.[1]);
    const setupCtl = await startControlProcess(
      { ...o.env, REDIS_URL: redisServer.url, PROBE_TICK_MS: "0", CREATE_WAIT_MS: "0", WORKER_INTERVAL_MS: "200", DNS_REFRESH_MS: "0", REDIS_COMMAND_TIMEOUT_MS: "10000" },
      { port: await freePort(), label: "setup control" },
    );
    controls.set("setup", setupCtl);
    const setup = await createFleet(setupCtl.url, { instances: o.instances, fleet: fleetBase, intervalSeconds: o.n, timeoutSeconds: o.t, maxPending: o.setupPending, concurrency: 48, timeoutMs: 150_000 + o.instances * 6 }, log);
    await setupCtl.stop();
    controls.delete("setup");
    log(`  setup: ${o.instances} instances in ${deps} deployments active after ${setup.seconds.toFixed(1)} s`);
    for (const { f } of fleets) await f.reset();

    const names = Array.from({ length: o.replicas }, (_, k) => `r${k + 1}`);
    const started = await Promise.all(
      names.map(async (name) => [name, await startControlProcess({ ...o.env, REDIS_URL: redisServer!.url, ...o.controlEnv, REPLICA_ID: name, LEASE_MS: String(o.leaseMs) }, { port: await freePort(), label: name, readyTimeoutMs: 60_000 })] as const),
    );
    for (const [name, c] of started) controls.set(name, c);
    const pids: Record<string, number | null> = { redis: redisPid };
    for (const [name, c] of started) pids[name] = c.pid;
    fleets.forEach(({ f }, k) => (pids[`mock${k}`] = f.pid));
    sampler = new Sampler(() => pids);
    sampler.phase = "settle";
    sampler.start();

    const leaseKeys = Array.from({ length: deps }, (_, d) => `gw:lease:probe:d${d}`);
    /** Holder of each deployment's probe lease (index d), from Redis. */
    const holders = async (): Promise<(string | null)[]> => {
      const out: (string | null)[] = [];
      for (let k = 0; k < leaseKeys.length; k += 5_000) {
        const tokens = await redis!.mget(...leaseKeys.slice(k, k + 5_000));
        for (const t of tokens) out.push(t === null ? null : t.slice(0, t.lastIndexOf(":")));
      }
      return out;
    };
    const countBy = (hs: (string | null)[]) => {
      const c = new Map<string, number>();
      for (const h of hs) if (h) c.set(h, (c.get(h) ?? 0) + 1);
      return c;
    };
    const instancesOf = (d: number) => Math.min(o.perDeployment, o.instances - d * o.perDeployment);

    // Settle.
    const t0 = performance.now();
    const settleLimit = 3 * o.leaseMs + 2 * o.n * 1000 + 10_000;
    let settled = false;
    let lastLog = 0;
    for (;;) {
      const hs = await holders();
      const c = countBy(hs);
      const share = Math.ceil(deps / o.replicas);
      const free = hs.filter((h) => h === null).length;
      settled = free === 0 && names.every((n) => Math.abs((c.get(n) ?? 0) - share) <= Math.ceil(share * 0.1) + 1);
      if (performance.now() - lastLog > 5_000 || settled) {
        lastLog = performance.now();
        log(`  settle ${((performance.now() - t0) / 1000).toFixed(0)} s: ${names.map((n) => `${n} ${c.get(n) ?? 0}`).join(", ")}, free ${free} (share ${share})`);
      }
      if (settled || performance.now() - t0 > settleLimit) break;
      await sleep(1_000);
    }
    const settleSeconds = (performance.now() - t0) / 1000;
    // Let the last hand-overs' first probes come in before the window (one interval).
    await sleep(o.n * 1000 + 1_000);

    const measure = async (phase: string, alive: string[]): Promise<ReplicaWindow[]> => {
      for (const { f } of fleets) await f.open(Number.MAX_SAFE_INTEGER);
      sampler!.phase = phase;
      const w0 = Date.now();
      await sleep(o.windowS * 1000);
      const reports = [];
      for (const { f } of fleets) reports.push(await f.close());
      const w1 = Date.now();
      sampler!.phase = `after-${phase}`;
      const gaps = reports.flatMap((r) => r.maxGapMs);
      const windowS = reports[0]!.windowMs / 1000;
      // Requests per instance in the window: the fleets count per second only; per instance, intervals + 1 ≈ count.
      const perInstance = reports.flatMap((r) => r.probesPerInstance ?? []);
      const hs = await holders();
      return alive.map((name) => {
        let dCount = 0;
        let iCount = 0;
        let within = 0;
        let probes = 0;
        hs.forEach((h, d) => {
          if (h !== name) return;
          dCount++;
          for (let k = d * o.perDeployment; k < d * o.perDeployment + instancesOf(d); k++) {
            iCount++;
            probes += perInstance[k] ?? 0;
            if (gaps[k]! <= o.n * 1000 + o.slackMs) within++;
          }
        });
        const s: Sample[] = sampler!.of(name, phase);
        const rt = controls.get(name)?.runtime.filter((x) => x.at > w0 && x.at <= w1 + 500) ?? [];
        return {
          replica: name, deployments: dCount, instances: iCount, within, within_pct: iCount > 0 ? r1((100 * within) / iCount) : NaN,
          cpu: { mean: r1(mean(s.map((x) => x.cpu))), p95: pct(s.map((x) => x.cpu), 95) }, rss_mb_max: pct(s.map((x) => x.rssMb), 100),
          elu: Math.round(mean(rt.map((x) => x.elu)) * 100) / 100, loop_delay_p99_ms: pct(rt.map((x) => x.delayP99Ms), 100),
          probes_per_s: r1(probes / windowS), expected_per_s: r1(iCount / o.n),
        };
      });
    };
    const cpuOf = (name: string, phase: string) => r1(mean(sampler!.of(name, phase).map((x) => x.cpu)));
    const mocksCpu = (phase: string) => r1(fleets.reduce((a, _, k) => a + cpuOf(`mock${k}`, phase), 0));

    const window1 = await measure("window1", names);
    for (const w of window1) log(`  window 1: ${w.replica} holds ${w.deployments} deployments / ${w.instances} instances, probes ${w.probes_per_s}/s of ${w.expected_per_s}/s, ${w.within_pct}% within N+${o.slackMs} ms, CPU ${w.cpu.mean}% (p95 ${w.cpu.p95}%), ELU ${w.elu}, loop delay p99 ${w.loop_delay_p99_ms} ms`);

    // Kill the last replica.
    const victim = names[names.length - 1]!;
    const before = await holders();
    const orphans = before.flatMap((h, d) => (h === victim ? [d] : []));
    const vc = controls.get(victim)!;
    const gone = new Promise<void>((r) => vc.child.once("exit", () => r()));
    const killedAt = performance.now();
    vc.child.kill("SIGKILL");
    await gone;
    for (const { f } of fleets) await f.mark();
    const markLag = performance.now() - killedAt;
    controls.delete(victim);
    pids[victim] = null;
    const survivors = names.filter((n) => n !== victim);
    log(`  killed ${victim} (SIGKILL) holding ${orphans.length} deployments`);
    let leasesTaken: number | null = null;
    const limit = o.leaseMs + 2 * o.n * 1000 + 10_000;
    while (performance.now() - killedAt < limit) {
      const hs = await holders();
      if (orphans.every((d) => hs[d] !== null && hs[d] !== victim)) {
        leasesTaken = Math.round(performance.now() - killedAt);
        break;
      }
      await sleep(100);
    }
    // Every orphaned instance probed again (the fleets' first request after the mark).
    const orphanInstances = orphans.flatMap((d) => Array.from({ length: instancesOf(d) }, (_, i) => d * o.perDeployment + i));
    let after: (number | null)[] = [];
    let beforeKill: (number | null)[] = [];
    while (performance.now() - killedAt < limit) {
      after = [];
      beforeKill = [];
      for (const { f } of fleets) {
        const r = await f.markReport();
        after.push(...r.after);
        beforeKill.push(...r.before);
      }
      if (orphanInstances.every((k) => after[k] !== null)) break;
      await sleep(500);
    }
    const again = orphanInstances.flatMap((k) => (after[k] === null ? [] : [after[k]! + markLag]));
    const gapsAcross = orphanInstances.flatMap((k) => (after[k] === null || beforeKill[k] === null ? [] : [after[k]! - beforeKill[k]!]));
    const kill: ReplicasResult["kill"] = {
      replica: victim,
      deployments: orphans.length,
      instances: orphanInstances.length,
      leases_taken_ms: leasesTaken,
      probed_again_ms: again.length > 0 ? { p50: Math.round(pct(again, 50)), max: Math.round(pct(again, 100)) } : null,
      not_probed_again: orphanInstances.length - again.length,
      gap_ms: gapsAcross.length > 0 ? { p50: Math.round(pct(gapsAcross, 50)), max: Math.round(pct(gapsAcross, 100)) } : null,
    };
    log(`  takeover: leases held by survivors after ${kill.leases_taken_ms ?? "-"} ms; every instance probed again after ${kill.probed_again_ms?.max ?? "-"} ms (p50 ${kill.probed_again_ms?.p50 ?? "-"}), ${kill.not_probed_again} not; probe gap across the kill p50 ${kill.gap_ms?.p50 ?? "-"} / max ${kill.gap_ms?.max ?? "-"} ms; lease ${o.leaseMs} ms`);

    // Survivors, from the takeover on.
    await sleep(1_000);
    const window2 = await measure("window2", survivors);
    for (const w of window2) log(`  window 2: ${w.replica} holds ${w.deployments} deployments / ${w.instances} instances, probes ${w.probes_per_s}/s of ${w.expected_per_s}/s, ${w.within_pct}% within N+${o.slackMs} ms, CPU ${w.cpu.mean}% (p95 ${w.cpu.p95}%), ELU ${w.elu}, loop delay p99 ${w.loop_delay_p99_ms} ms`);
    for (const [name, c] of controls) {
      for (const [m, n] of Object.entries(c.messages)) log(`    ${name}: ${n} × ${m}`);
    }
    return {
      instances: o.instances,
      deployments: deps,
      replicas: o.replicas,
      lease_ms: o.leaseMs,
      setup_seconds: r1(setup.seconds),
      settle_seconds: r1(settleSeconds),
      settled,
      window1,
      kill,
      window2,
      redis_cpu: { window1: cpuOf("redis", "window1"), window2: cpuOf("redis", "window2") },
      mock_cpu: { window1: mocksCpu("window1"), window2: mocksCpu("window2") },
    };
  } finally {
    sampler?.stop();
    await Promise.allSettled([...controls.values()].map((c) => c.stop()));
    redis?.disconnect();
    await redisServer?.close();
    await Promise.allSettled(fleets.map(({ f }) => f.stop()));
  }
}

/** The report's lines (markdown). */
export function replicasReport(r: ReplicasResult, o: { n: number; slackMs: number; windowS: number }): string[] {
  const head = ["replica", "deployments", "instances", "probes/s (expected)", `probed ≤ N+${o.slackMs / 1000}s`, "CPU % mean", "p95", "ELU", "loop delay p99 ms", "RSS MB max"];
  const row = (w: ReplicaWindow) => [w.replica, String(w.deployments), String(w.instances), `${fmt(w.probes_per_s, 0)} (${fmt(w.expected_per_s, 0)})`, `${w.within}/${w.instances} (${fmt(w.within_pct)}%)`, fmt(w.cpu.mean), fmt(w.cpu.p95), fmt(w.elu, 2), fmt(w.loop_delay_p99_ms, 0), fmt(w.rss_mb_max, 0)];
  const k = r.kill;
  return [
    `control-scale replicas: ${r.replicas} control processes on one Redis, ${r.instances} instances in ${r.deployments} deployments, N ${o.n} s, LEASE_MS ${r.lease_ms}; ` +
      `setup ${r.setup_seconds} s, shares settled after ${r.settle_seconds} s${r.settled ? "" : " (NOT settled within the limit)"}; windows of ${o.windowS} s`,
    "window 1 (all replicas):",
    markdownTable(head, r.window1.map(row)),
    `kill: ${k.replica} SIGKILLed holding ${k.deployments} deployments / ${k.instances} instances → leases all held by the survivors after ${k.leases_taken_ms ?? "-"} ms ` +
      `(lease period ${r.lease_ms} ms); every instance probed again after ${k.probed_again_ms?.max ?? "-"} ms (p50 ${k.probed_again_ms?.p50 ?? "-"} ms)${k.not_probed_again > 0 ? `, ${k.not_probed_again} NOT probed again` : ""}; ` +
      `probe gap across the kill p50 ${k.gap_ms?.p50 ?? "-"} / max ${k.gap_ms?.max ?? "-"} ms (bound: lease + N = ${r.lease_ms + o.n * 1000} ms)`,
    "window 2 (survivors, after the takeover):",
    markdownTable(head, r.window2.map(row)),
    `Redis CPU % ${r.redis_cpu.window1} / ${r.redis_cpu.window2}, mock fleet CPU % ${r.mock_cpu.window1} / ${r.mock_cpu.window2} (window 1 / 2)`,
  ];
}

/**
 * The replicas' rows of the bench's table (`width` cells each, "-" where a column does not apply): per replica its share
 * in window 1 (the killed one's row says how long the takeover took) and, for the survivors, in window 2.
 */
export function replicasRows(r: ReplicasResult, width: number): string[][] {
  const k = r.kill;
  const s = (ms: number | null | undefined) => (ms === null || ms === undefined ? "-" : `${fmt(ms / 1000, 1)} s`);
  const takeover = `leases held by the others after ${s(k.leases_taken_ms)}, every instance probed again after ${s(k.probed_again_ms?.max)} (lease ${fmt(r.lease_ms / 1000, 0)} s)` +
    (k.not_probed_again > 0 ? `; ${k.not_probed_again} NOT probed again` : "");
  const before = new Map(r.window1.map((w) => [w.replica, w.deployments]));
  const row = (w: ReplicaWindow, run: string, redisCpu: number, last: string) => {
    const cells = [
      run, String(w.instances), String(w.deployments), `${fmt(w.probes_per_s, 0)} (${fmt(w.expected_per_s, 0)})`, `${w.within}/${w.instances} (${fmt(w.within_pct)}%)`, "-",
      fmt(w.cpu.mean), fmt(w.cpu.p95), "-", fmt(w.rss_mb_max, 0), "-", fmt(w.loop_delay_p99_ms, 0), fmt(redisCpu), "-", "-", "-", "-", "-", "-", "-", last,
    ];
    if (cells.length !== width) throw new Error(`replicasRows: ${cells.length} cells for ${width} columns`);
    return cells;
  };
  return [
    ...r.window1.map((w) => row(w, `${w.replica} of ${r.replicas}, window 1`, r.redis_cpu.window1, w.replica === k.replica ? `SIGKILLed: ${takeover}` : "-")),
    ...r.window2.map((w) => row(w, `${w.replica}, window 2`, r.redis_cpu.window2, `took over ${w.deployments - (before.get(w.replica) ?? 0)} deployments`)),
  ];
}
