/**
 * Background work, in any replica: connectivity tests of pending instances and migration steps.
 * The work set and every step's state live in Redis; a lease per deployment makes one replica at a time
 * act on it. A replica that stops releases its leases; one that crashes loses them after LEASE_MS, so
 * pending work always resumes (after a restart, or in another replica).
 */
import type { ConnectivityTester } from "../connectivity/tester.js";
import { activeMigrations, type ConnectivityResult, type Deployment } from "../deployments/schemas.js";
import type { DeploymentStore, KeyChanges } from "../deployments/store.js";
import { errorFields, type Logger } from "../log.js";
import { applyDrainDone, applyProbe, applyTestResult, awaitsProbes, type StepResult } from "../migration/steps.js";
import { servedNameOf, type Model } from "../models/schemas.js";
import { sameInTable } from "../routing-table/builder.js";
import type { LeaseStore } from "./lease-store.js";
import { RequestFailed } from "../connectivity/http-client.js";

/**
 * Writes one batch at a time: the items given while a write runs go together into the next. Each call settles
 * with the write that carried its item.
 */
function serialBatches<T>(write: (items: T[]) => Promise<void>): (item: T) => Promise<void> {
  let queue: { item: T; done: (err: unknown) => void }[] = [];
  let running = false;
  const pump = async () => {
    running = true;
    while (queue.length > 0) {
      const batch = queue;
      queue = [];
      let err: unknown = null;
      try {
        await write(batch.map((b) => b.item));
      } catch (e) {
        err = e ?? new Error("write failed");
      }
      for (const b of batch) b.done(err);
    }
    running = false;
  };
  return (item) =>
    new Promise<void>((resolve, reject) => {
      queue.push({ item, done: (err) => (err === null ? resolve() : reject(err)) });
      if (!running) void pump();
    });
}

export interface Worker {
  start(): void;
  stop(): Promise<void>;
  /** Run this deployment's pending work now (if no other replica holds it). Resolves when done. */
  kick(deploymentId: string): Promise<void>;
}

export function createWorker(deps: {
  store: Pick<DeploymentStore, "get" | "update" | "getApiKey" | "listWork" | "dropWork">;
  models: { get(id: string): Promise<Model | null> };
  tester: ConnectivityTester;
  leases: LeaseStore;
  intervalMs: number;
  leaseMs: number;
  healthDeadlineSeconds: number;
  log: Logger;
}): Worker {
  const { store, tester, log } = deps;
  const running = new Map<string, Promise<void>>();
  const abort = new AbortController();
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;

  /** Commit a step; bump the table version only when the table can see the change. */
  const commit = (id: string, f: (d: Deployment) => StepResult | null) =>
    store.update(id, (cur) => {
      const r = f(cur);
      if (!r) return null;
      const next = { ...r.next, revision: cur.revision + 1, updated_at: new Date().toISOString() };
      return { next, keys: r.keys, bump: !sameInTable(cur, next) };
    });

  async function step(id: string): Promise<void> {
    const d = await store.get(id);
    if (!d) return void (await store.dropWork(id));
    const model = await deps.models.get(d.model_id);
    if (!model) return log.error("deployment refers to a missing model", { deployment: id, model: d.model_id });

    // 1. Connectivity tests of pending instances (new, scaled up, re-tested, or a migration's target). Their
    // results are written one write at a time, each carrying every result that came in meanwhile: a thousand
    // tests finishing together are a few writes, not a thousand writes racing for the same deployment.
    const pending = d.instances.filter((i) => i.state === "pending" && !awaitsProbes(d, i.id));
    const record = serialBatches<{ instance: string; result: ConnectivityResult }>(async (batch) => {
      await commit(id, (cur) => {
        let next = cur;
        let keys: KeyChanges | undefined;
        for (const { instance, result } of batch) {
          const r = applyTestResult(next, instance, result, Date.now(), deps.healthDeadlineSeconds);
          if (!r) continue;
          next = r.next;
          if (r.keys) keys = { set: { ...keys?.set, ...r.keys.set }, del: [...(keys?.del ?? []), ...(r.keys.del ?? [])] };
        }
        return next === cur ? null : { next, keys };
      });
    });
    await Promise.all(
      pending.map(async (inst) => {
        const apiKey = await store.getApiKey(id, inst.id);
        const result = await tester.test(inst, { model: servedNameOf(model), apiKey, signal: abort.signal });
        await record({ instance: inst.id, result });
        log.info("connectivity test", { deployment: id, instance: inst.id, ok: result.ok, error_code: result.error?.code ?? null, latency_ms: result.latency_ms.total, engine: result.engine });
      }),
    );

    // 2. Migration steps that are due.
    const now = await store.get(id);
    if (!now) return;
    for (const m of activeMigrations(now)) {
      if (m.phase === "health_checking" && m.next_probe_at !== null && Date.parse(m.next_probe_at) <= Date.now()) {
        const inst = now.instances.find((i) => i.id === m.to_instance);
        if (!inst) continue;
        const apiKey = await store.getApiKey(id, inst.id);
        const probe = await tester.probe(inst, { path: now.health_check.path, timeoutMs: now.health_check.timeout_seconds * 1000, apiKey, signal: abort.signal });
        const after = await commit(id, (cur) => applyProbe(cur, m.id, probe, Date.now()));
        const phase = after.migrations.find((x) => x.id === m.id)?.phase;
        if (phase !== "health_checking") log.info("migration step", { deployment: id, migration: m.id, phase });
      } else if (m.phase === "draining" && m.drain_until !== null && Date.parse(m.drain_until) <= Date.now()) {
        await commit(id, (cur) => applyDrainDone(cur, m.id, Date.now()));
        log.info("migration step", { deployment: id, migration: m.id, phase: "succeeded" });
      }
    }
  }

  function run(id: string): Promise<void> {
    const existing = running.get(id);
    if (existing) return existing;
    const p = (async () => {
      const lease = await deps.leases.acquire(`deployment:${id}`, deps.leaseMs);
      if (!lease) return;
      const renew = setInterval(() => void lease.renew().catch(() => undefined), Math.max(50, Math.floor(deps.leaseMs / 3)));
      try {
        await step(id);
      } finally {
        clearInterval(renew);
        await lease.release().catch(() => undefined);
      }
    })()
      .catch((e: unknown) => {
        if (e instanceof RequestFailed && e.code === "aborted") return;
        log.warn("background step failed; will retry", { deployment: id, ...errorFields(e) });
      })
      .finally(() => running.delete(id));
    running.set(id, p);
    return p;
  }

  async function tick() {
    if (stopped) return;
    let ids: string[];
    try {
      ids = await store.listWork();
    } catch {
      return; // Redis away: try again next tick
    }
    for (const id of ids) if (!running.has(id)) void run(id);
  }

  return {
    start() {
      timer = setInterval(() => void tick(), deps.intervalMs);
      timer.unref();
      void tick();
    },
    async stop() {
      stopped = true;
      if (timer) clearInterval(timer);
      abort.abort();
      await Promise.allSettled([...running.values()]);
    },
    kick: (id) => (stopped ? Promise.resolve() : run(id)),
  };
}
