/**
 * The fault scenario of issue 20, shared by its CI test (short form, test/faults/faults.test.ts) and
 * `npm run bench:faults` (long form, the README table). Everything real, on loopback:
 *
 *   Redis: 1 primary + 2 replicas + 3 sentinels (`redis-server`, `redis-server --sentinel`);
 *   3 control replicas, each its own process (control/src/server.ts), finding Redis only through the
 *   sentinels, WAIT `auto`;
 *   2 local data planes, each with all 3 control URLs (the second through relays the test can cut);
 *   4 mock vLLM instances behind one deployment probed every second;
 *   steady traffic through both data planes (the official `openai` SDK, no client retries) and a steady
 *   stream of API writes (models and deployments, each with an Idempotency-Key, retried with the same key
 *   on the next replica after a 503 / 409-in-progress / a dead connection, as a client does).
 *
 * Faults, one at a time, each followed by its recovery: SIGKILL the Redis primary; SIGKILL the control replica
 * holding the fleet's probe lease (as Redis names it); cut one data plane's control connections (every
 * connection reset, new ones refused) for a while. Per fault the row says: client requests sent and failed,
 * write attempts failed and the time until writes succeed again, acknowledged writes lost, the time until
 * every instance is probed again, and at the end whether each data plane is on the store's table version.
 */
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import { startLocalDataPlane, type LocalDataPlane } from "../../envoy/local/dataplane.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { ADMIN, client, PLUGIN, registerModel, VIEWER, waitFor, type Api, type Res } from "../control/harness.js";
import { startControlProcess, type ControlProcess } from "../support/control-process.js";
import { LOG_DIR } from "../support/redis.js";
import { startSentinelSet, type SentinelSet } from "../support/redis-sentinel.js";
import { startTcpCut, type TcpCut } from "../support/tcp-cut.js";

export interface FleetOptions {
  /** Concurrent client loops per data plane. */
  clientsPerDataPlane: number;
  /** Pause between one client loop's requests (ms). */
  paceMs: number;
  /** Concurrent API writers. */
  writers: number;
  /** Steady time before the first fault and after each recovery (ms). */
  steadyMs: number;
  /** How long the data plane's control connections stay cut (ms). */
  cutMs: number;
  /** Control probe lease (LEASE_MS). */
  leaseMs: number;
  log?: (line: string) => void;
}

export const SHORT: FleetOptions = { clientsPerDataPlane: 2, paceMs: 20, writers: 2, steadyMs: 1_500, cutMs: 3_000, leaseMs: 2_000 };
export const LONG: FleetOptions = { clientsPerDataPlane: 8, paceMs: 0, writers: 4, steadyMs: 10_000, cutMs: 10_000, leaseMs: 5_000 };

export interface FaultRow {
  fault: string;
  /** Client requests started from the fault until the phase ended. */
  requests: number;
  failed: number;
  /** The first few failures, for the test's message. */
  failures: string[];
  writeAttempts: number;
  writeFailures: number;
  /** Why write attempts failed: "replica: status code" → count. */
  writeFailureKinds: Record<string, number>;
  /** The longest an acknowledged write took (first attempt → acknowledgement, retries included), of those acknowledged in the phase. */
  longestWriteMs: number;
  /** Fault → the end of the first write (started after the fault) that succeeded after the last failure; 0 when none failed. */
  writesBackMs: number;
  /** Fault → every instance has a stored probe newer than the fault. */
  probesBackMs: number;
  /** Fault (or restore, for a cut) → every data plane on the store's version as it was then. */
  tablesBackMs: number;
}

export interface FleetResult {
  rows: FaultRow[];
  acknowledged: number;
  lost: string[];
  unexpected: string[];
  storeVersion: number;
  dataPlaneVersions: number[];
  /** Data planes on the store's version once writes stopped, and how long that took. */
  convergedMs: number;
  totalRequests: number;
}

const MODEL = "fleet-llama";
const DEPLOYMENT = "fleet";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Attempt {
  start: number;
  end: number;
  ok: boolean;
  /** replica: status code, or "no answer" */
  why: string;
}

/**
 * Fault (t0) → the end of the first write attempt that succeeded after the last failed one; 0 when none failed
 * (and one succeeded); null while no attempt has succeeded since the last failure.
 */
function writesBack(attempts: Attempt[], t0: number): number | null {
  const lastFail = attempts.reduce((m, a) => (a.ok ? m : Math.max(m, a.start)), -1);
  if (lastFail < 0) return attempts.some((a) => a.ok) ? 0 : null;
  const back = attempts.find((a) => a.ok && a.start > lastFail);
  return back ? back.end - t0 : null;
}

export async function runFleet(o: FleetOptions): Promise<FleetResult> {
  const log = o.log ?? (() => undefined);
  const cleanup: (() => Promise<unknown>)[] = [];
  try {
    // --- Redis, control replicas, instances, data planes -------------------------------------------------
    const set: SentinelSet = await startSentinelSet({ replicas: 2, sentinels: 3, downAfterMs: 500, failoverTimeoutMs: 2_000 });
    cleanup.push(() => set.close());
    // The harness's test settings (fast ticks, short timeouts), as environment for the real entry point.
    const env = {
      REDIS_URL: "redis://127.0.0.1:1", // unused: REDIS_SENTINELS wins
      REDIS_SENTINELS: set.sentinelList,
      REDIS_MASTER_NAME: set.masterName,
      REDIS_COMMAND_TIMEOUT_MS: "1000",
      CONTROL_ADMIN_TOKENS: ADMIN,
      CONTROL_VIEWER_TOKENS: VIEWER,
      CONTROL_PLUGIN_TOKENS: PLUGIN,
      CREATE_WAIT_MS: "3000",
      CONNECTIVITY_TIMEOUT_MS: "2000",
      WORKER_INTERVAL_MS: "20",
      PROBE_TICK_MS: "20",
      LEASE_MS: String(o.leaseMs),
      TABLE_REFRESH_MS: "200",
      DNS_REFRESH_MS: "0",
      DRAIN_TIMEOUT_SECONDS: "0.2",
      LOG_LEVEL: "warn",
    };
    const controls: (ControlProcess & { api: Api })[] = [];
    cleanup.push(() => Promise.all(controls.map((c) => c.kill())));
    for (let i = 0; i < 3; i++) {
      const c = await startControlProcess(env, { replica: `fleet-ctl-${i}` });
      controls.push(Object.assign(c, { api: client(c.url) }));
    }
    const live = () => controls.filter((c) => c.running);

    const mocks: MockOpenAI[] = [];
    for (let i = 0; i < 4; i++) mocks.push(await startMockOpenAI({ model: MODEL }));
    cleanup.push(() => Promise.all(mocks.map((m) => m.close())));
    await registerModel(controls[0]!.api, MODEL);
    const created = await controls[0]!.api("POST", "/v1/deployments", {
      body: { id: DEPLOYMENT, model: MODEL, instances: mocks.map((m, i) => ({ id: `i${i}`, url: m.url })), health_check: { interval_seconds: 1, timeout_seconds: 1 } },
    });
    if (created.status !== 201) throw new Error(`fleet deployment: ${created.status} ${created.text}`);

    const relays: TcpCut[] = [];
    for (const c of controls) relays.push(await startTcpCut({ host: "127.0.0.1", port: c.port }));
    cleanup.push(() => Promise.all(relays.map((r) => r.close())));
    const pluginConfig = { poll_interval_ms: 100, long_poll_seconds: 2, telemetry_interval_ms: 500, control_timeout_ms: 6_000 };
    const dps: LocalDataPlane[] = [];
    dps.push(await startLocalDataPlane({ controlUrl: controls.map((c) => c.url), pluginToken: PLUGIN, port: 0, log: () => undefined, pluginConfig }));
    dps.push(await startLocalDataPlane({ controlUrl: relays.map((r) => r.url), pluginToken: PLUGIN, port: 0, log: () => undefined, pluginConfig }));
    cleanup.push(() => Promise.all(dps.map((d) => d.close())));

    const storeVersion = async (): Promise<number> => {
      for (;;) {
        const port = await set.masterPort();
        const v = port === null ? null : await set.call(port, "GET", "gw:table:version");
        if (v !== null) return Number(v);
        await sleep(50);
      }
    };
    const v0 = await storeVersion();
    await Promise.all(dps.map((d) => d.waitForTable(v0, 20_000)));
    log(`fleet up: table v${v0}, 3 control replicas, 2 data planes, 4 instances`);

    // --- steady traffic --------------------------------------------------------------------------------------
    let stop = false;
    const requests: { at: number; ok: boolean; dp: number; err: string }[] = [];
    const clientLoop = async (dp: number) => {
      const client = new OpenAI({ baseURL: `${dps[dp]!.url}/v1`, apiKey: "sk-fleet", maxRetries: 0, timeout: 10_000 });
      while (!stop) {
        const at = Date.now();
        try {
          const r = await client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 4 });
          requests.push({ at, ok: r.choices.length === 1, dp, err: "" });
        } catch (e) {
          requests.push({ at, ok: false, dp, err: e instanceof Error ? e.message.slice(0, 160) : String(e) });
        }
        if (o.paceMs > 0) await sleep(o.paceMs);
      }
    };
    const clients = dps.flatMap((_, dp) => Array.from({ length: o.clientsPerDataPlane }, () => clientLoop(dp)));

    // --- steady API writes -----------------------------------------------------------------------------------
    const acked: { path: string }[] = [];
    const attempts: Attempt[] = [];
    /** Acknowledged writes: from the first attempt to the acknowledgement (retries included). */
    const writes: { start: number; end: number }[] = [];
    const unexpected: string[] = [];
    // With TEST_LOG_DIR: every write attempt, to line up with the control and Redis logs there.
    const writesLog = LOG_DIR ? createWriteStream(join(LOG_DIR, "writes.jsonl")) : null;
    cleanup.push(async () => writesLog?.end());
    let next = 0;
    /** The answer that acknowledged the write (201, or 409 idempotency_applied), null when given up. */
    const send = async (method: string, path: string, body: unknown, key: string): Promise<Res | null> => {
      const first = Date.now();
      for (let turn = 0; !stop || turn === 0; turn++) {
        const all = live();
        // Each attempt (retries too) goes to the next replica, as a client behind a load balancer would.
        const c = all[next++ % all.length]!;
        const start = Date.now();
        const r: Res | null = await c.api(method, path, { body, headers: { "idempotency-key": key } }).catch(() => null);
        const ok = r !== null && (r.status === 201 || (r.status === 409 && r.body?.error?.code === "idempotency_applied"));
        attempts.push({ start, end: Date.now(), ok, why: `${c.replica}: ${r === null ? "no answer" : `${r.status} ${r.body?.error?.code ?? ""}`}` });
        writesLog?.write(`${JSON.stringify({ start: new Date(start).toISOString(), ms: Date.now() - start, key, replica: c.replica, status: r?.status ?? null, code: r?.body?.error?.code ?? null, request_id: r?.headers.get("x-request-id") ?? null })}\n`);
        if (ok) {
          writes.push({ start: first, end: Date.now() });
          return r;
        }
        const code = r?.body?.error?.code;
        if (r !== null && !(r.status === 503 || (r.status === 409 && code === "idempotency_in_progress"))) {
          unexpected.push(`${method} ${path} ${key}: ${r.status} ${r.text.slice(0, 200)}`);
          return null;
        }
        await sleep(50);
      }
      return null;
    };
    const writer = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const name = `fleet-w${w}-${i}`;
        const model = await send("POST", "/v1/models", { name }, `model-${name}`);
        if (!model) continue;
        // An applied create whose answer was lost has no id to read: find it by name at the end.
        acked.push({ path: model.status === 201 ? `/v1/models/${encodeURIComponent(model.body.id)}` : `name:${name}` });
        const dep = `dep-${name}`;
        // An empty deployment: every one moves the routing table the data planes follow.
        if (await send("POST", "/v1/deployments", { id: dep, model: name, instances: [] }, `dep-${name}`)) acked.push({ path: `/v1/deployments/${dep}` });
      }
    };
    const writers = Array.from({ length: o.writers }, (_, w) => writer(w));

    // --- faults ----------------------------------------------------------------------------------------------
    const probesAfter = async (t: number): Promise<boolean> => {
      for (const c of live()) {
        const r = await c.api("GET", `/v1/deployments/${DEPLOYMENT}`).catch(() => null);
        if (r?.status !== 200) continue;
        return (r.body.instances as { health: { last_probe: { at: string } | null } }[]).every((i) => Date.parse(i.health.last_probe?.at ?? "0") > t);
      }
      return false;
    };
    const tablesAt = async (v: number) => dps.every((d) => d.tableVersion() >= v);
    const rows: FaultRow[] = [];
    const phase = async (fault: string, inject: () => Promise<void>, restore?: () => Promise<void>) => {
      await sleep(o.steadyMs);
      const t0 = Date.now();
      const r0 = requests.length;
      const a0 = attempts.length;
      const w0 = writes.length;
      log(`fault: ${fault}`);
      await inject();
      let probesBackMs = -1;
      let tablesBackMs = -1;
      let writesBackMs = -1;
      let target: number | null = null;
      if (!restore) void storeVersion().then((v) => (target = v));
      let tRestore = t0;
      // Watched from the fault on (also while a cut lasts); the tables once the cut is over.
      const watching = waitFor(
        async () => {
          if (probesBackMs < 0 && (await probesAfter(t0))) probesBackMs = Date.now() - t0;
          if (target !== null && tablesBackMs < 0 && (await tablesAt(target))) tablesBackMs = Date.now() - tRestore;
          if (writesBackMs < 0) writesBackMs = writesBack(attempts.slice(a0), t0) ?? -1;
          return probesBackMs >= 0 && tablesBackMs >= 0 && writesBackMs >= 0;
        },
        60_000,
        `recovery from: ${fault}`,
        50,
      );
      if (restore) {
        await sleep(o.cutMs);
        await restore();
        tRestore = Date.now();
        target = await storeVersion();
      }
      await watching;
      // Let requests sent during the fault finish before counting them.
      await sleep(Math.min(o.steadyMs, 1_000));
      const mine = attempts.slice(a0);
      // Over the whole phase now (the watcher stopped at the first success after a failure it had seen).
      writesBackMs = writesBack(mine, t0) ?? writesBackMs;
      const reqs = requests.slice(r0);
      const acknowledgedHere = writes.slice(w0);
      const fails = reqs.filter((r) => !r.ok);
      rows.push({
        fault,
        requests: reqs.length,
        failed: fails.length,
        failures: fails.slice(0, 5).map((f) => `dp${f.dp}: ${f.err}`),
        writeAttempts: mine.length,
        writeFailures: mine.filter((a) => !a.ok).length,
        writeFailureKinds: mine.filter((a) => !a.ok).reduce<Record<string, number>>((m, a) => ((m[a.why] = (m[a.why] ?? 0) + 1), m), {}),
        longestWriteMs: acknowledgedHere.reduce((m, w) => Math.max(m, w.end - w.start), 0),
        writesBackMs,
        probesBackMs,
        tablesBackMs,
      });
      log(`  ${JSON.stringify(rows.at(-1))}`);
    };

    await phase("none (steady state)", async () => undefined);
    await phase("Redis primary SIGKILLed", async () => {
      await set.kill(set.primary);
    });
    await phase("control replica holding the probe lease SIGKILLed", async () => {
      let holder: (typeof controls)[number] | undefined;
      await waitFor(
        async () => {
          const port = await set.masterPort();
          const token = port === null ? null : await set.call(port, "GET", `gw:lease:probe:${DEPLOYMENT}`);
          holder = live().find((c) => typeof token === "string" && token.startsWith(`${c.replica}:`));
          return holder !== undefined;
        },
        10_000,
        "the replica holding the fleet's probe lease",
        50,
      );
      await holder!.kill();
    });
    await phase(
      "data plane 2's control connections cut",
      async () => {
        for (const r of relays) r.cut();
      },
      async () => {
        for (const r of relays) r.restore();
      },
    );

    // --- end: stop, then check nothing acknowledged was lost and every data plane is on the store's version --
    await sleep(o.steadyMs);
    stop = true;
    await Promise.all([...writers, ...clients]);
    const finalVersion = await storeVersion();
    const tEnd = Date.now();
    await waitFor(() => dps.every((d) => d.tableVersion() === finalVersion), 20_000, `data planes on v${finalVersion}`, 20).catch(() => undefined);
    const convergedMs = Date.now() - tEnd;
    const lost: string[] = [];
    const names = new Set<string>(((await live()[0]!.api("GET", "/v1/models")).body?.models ?? []).map((m: { name: string }) => m.name));
    for (const a of acked) {
      if (a.path.startsWith("name:")) {
        if (!names.has(a.path.slice(5))) lost.push(a.path);
        continue;
      }
      const r = await live()[0]!.api("GET", a.path);
      if (r.status !== 200) lost.push(`${a.path}: ${r.status}`);
    }
    return {
      rows,
      acknowledged: acked.length,
      lost,
      unexpected,
      storeVersion: finalVersion,
      dataPlaneVersions: dps.map((d) => d.tableVersion()),
      convergedMs,
      totalRequests: requests.length,
    };
  } finally {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  }
}
