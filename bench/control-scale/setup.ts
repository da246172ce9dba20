// Creates the fleet's models and deployments through the real API (setup, not measured): one model per
// deployment (a model is served by one deployment), `perDeployment` instances each, health_check
// interval N / timeout T. With `allow_unreachable` and the setup control's CREATE_WAIT_MS 0, a create is stored
// at once with its instances `pending` (202; without it, a create would wait for a first passed test); the
// control's worker runs each one's connectivity test (GET /v1/models, a 1-token completion) and makes it `active`. Creation is bounded: at most
// `maxPending` instances wait for their test at a time, `concurrency` API calls in flight.
import { client, PLUGIN, type Api } from "../../test/control/harness.js";
import { sleep } from "../support.js";
import { instanceAddress, type FleetOptions } from "./fleet.js";

export interface SetupOptions {
  instances: number;
  fleet: FleetOptions;
  intervalSeconds: number;
  timeoutSeconds: number;
  maxPending: number;
  concurrency: number;
  timeoutMs: number;
}

export interface TableCount {
  version: number;
  active: number;
  ejected: number;
  other: number;
  deployments: number;
  bytes: number;
}

export async function tableCount(api: Api): Promise<TableCount> {
  const r = await api("GET", "/v1/routing-table", { token: PLUGIN });
  if (r.status !== 200) throw new Error(`routing table: ${r.status} ${r.text.slice(0, 200)}`);
  const t = r.body as { version: number; deployments: { instances: { state: string }[] }[] };
  const c: TableCount = { version: t.version, active: 0, ejected: 0, other: 0, deployments: t.deployments.length, bytes: Buffer.byteLength(r.text) };
  for (const d of t.deployments) for (const i of d.instances) c[i.state === "active" ? "active" : i.state === "ejected" ? "ejected" : "other"]++;
  return c;
}

/** Runs `f` over `items` with at most `n` in flight. */
async function pool<T>(items: T[], n: number, f: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) await f(items[next++]!);
  }));
}

/**
 * POST with retries: a busy setup control may answer 503 (Redis command timeout) or drop the connection;
 * our ids are fixed, so "already exists" after a retry means the first attempt went through.
 */
async function create(api: Api, path: string, body: unknown, what: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    let status = 0;
    let text = "";
    try {
      const r = await api("POST", path, { body });
      status = r.status;
      text = r.text;
    } catch (e) {
      text = e instanceof Error ? e.message : String(e);
    }
    if (status === 201 || status === 202) return;
    if (attempt > 1 && status === 409 && text.includes("already_exists")) return;
    if ((status !== 0 && status !== 503) || attempt >= 6) throw new Error(`${what}: ${status} ${text.slice(0, 300)}`);
    await sleep(250 * attempt);
  }
}

export async function createFleet(url: string, o: SetupOptions, log: (s: string) => void): Promise<{ deployments: number; seconds: number }> {
  const api = client(url);
  const t0 = performance.now();
  const deadline = Date.now() + o.timeoutMs;
  const per = o.fleet.perDeployment;
  const deps = Math.ceil(o.instances / per);
  const ids = Array.from({ length: deps }, (_, d) => d);
  // Every create bumps the table version and answers once this replica's table has it: many in flight.
  await pool(ids, o.concurrency, async (d) => {
    await create(api, "/v1/models", { id: `${o.fleet.modelPrefix}${d}`, name: `${o.fleet.modelPrefix}${d}` }, `model ${d}`);
  });
  log(`  setup: ${deps} models registered, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  let created = 0;
  let active = 0;
  let other = 0;
  let lastLog = performance.now();
  let failed: Error | null = null;
  // One poller of the routing table; creators wait while `maxPending` instances are still being tested.
  let polling = true;
  const poller = (async () => {
    while (polling) {
      try {
        const c = await tableCount(api);
        active = c.active;
        other = c.other;
      } catch (e) {
        failed = e as Error;
      }
      if (performance.now() - lastLog > 5_000) {
        lastLog = performance.now();
        log(`  setup: ${active}/${o.instances} instances active (${created} created), ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      }
      await sleep(200);
    }
  })();
  const check = () => {
    if (failed) throw failed;
    if (Date.now() > deadline) throw new Error(`setup: only ${active} of ${o.instances} instances active within ${o.timeoutMs} ms (${created} created, ${other} in other table states)`);
  };
  try {
    await pool(ids, o.concurrency, async (d) => {
      const n = Math.min(per, o.instances - d * per);
      while (created + n - active > o.maxPending) {
        check();
        await sleep(50);
      }
      created += n;
      const instances = Array.from({ length: n }, (_, i) => {
        const k = d * per + i;
        const { ip, port } = instanceAddress(k, o.fleet);
        return { id: `i${k}`, url: `http://${ip}:${port}/v1` };
      });
      const body = { id: `d${d}`, model: `${o.fleet.modelPrefix}${d}`, health_check: { interval_seconds: o.intervalSeconds, timeout_seconds: o.timeoutSeconds }, instances, allow_unreachable: true };
      await create(api, "/v1/deployments", body, `deployment ${d}`);
    });
    while (active < o.instances) {
      check();
      await sleep(50);
    }
  } finally {
    polling = false;
    await poller;
  }
  return { deployments: deps, seconds: (performance.now() - t0) / 1000 };
}
