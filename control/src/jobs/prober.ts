/**
 * Active health checks → verdicts. One replica at a time probes a deployment (lease, kept while it runs
 * so the consecutive counts stay in its memory; another replica takes over when it goes away). An active
 * instance failing `unhealthy_threshold` consecutive probes becomes `ejected`; an ejected one passing
 * `healthy_threshold` consecutive probes becomes `active` again. Each verdict is a table version.
 * (Traffic telemetry from the plugin will feed the same verdicts later.)
 */
import type { ConnectivityTester } from "../connectivity/tester.js";
import type { Deployment } from "../deployments/schemas.js";
import type { DeploymentStore } from "../deployments/store.js";
import { errorFields, type Logger } from "../log.js";
import type { Lease, LeaseStore } from "./lease-store.js";

interface Count {
  successes: number;
  failures: number;
  nextAt: number;
}

const PROBED = new Set(["active", "ejected"]);

export function createProber(deps: {
  store: Pick<DeploymentStore, "list" | "update" | "getApiKey">;
  tester: Pick<ConnectivityTester, "probe">;
  leases: LeaseStore;
  tickMs: number;
  leaseMs: number;
  log: Logger;
}) {
  const { store, tester, log } = deps;
  const held = new Map<string, Lease>();
  const counts = new Map<string, Map<string, Count>>();
  const busy = new Set<string>();
  const abort = new AbortController();
  let timer: NodeJS.Timeout | null = null;
  let lastRenew = 0;

  async function verdict(d: Deployment, instanceId: string, to: "active" | "ejected", from: "active" | "ejected") {
    await store.update(d.id, (cur) => {
      const inst = cur.instances.find((i) => i.id === instanceId);
      if (!inst || inst.state !== from) return null;
      const at = new Date().toISOString();
      return { next: { ...cur, revision: cur.revision + 1, updated_at: at, instances: cur.instances.map((i) => (i.id === instanceId ? { ...i, state: to, updated_at: at } : i)) } };
    });
    log.info("health verdict", { deployment: d.id, instance: instanceId, state: to });
  }

  async function probeDeployment(d: Deployment) {
    const hc = d.health_check;
    const byInst = counts.get(d.id) ?? new Map<string, Count>();
    counts.set(d.id, byInst);
    for (const id of byInst.keys()) if (!d.instances.some((i) => i.id === id && PROBED.has(i.state))) byInst.delete(id);
    const now = Date.now();
    await Promise.all(
      d.instances
        .filter((i) => PROBED.has(i.state))
        .map(async (inst) => {
          const c = byInst.get(inst.id) ?? { successes: 0, failures: 0, nextAt: 0 };
          byInst.set(inst.id, c);
          if (now < c.nextAt) return;
          c.nextAt = now + hc.interval_seconds * 1000;
          const apiKey = await store.getApiKey(d.id, inst.id);
          const r = await tester.probe(inst, { path: hc.path, timeoutMs: hc.timeout_seconds * 1000, apiKey, signal: abort.signal });
          if (r.ok) {
            c.successes++;
            c.failures = 0;
          } else {
            c.failures++;
            c.successes = 0;
          }
          if (inst.state === "active" && c.failures >= hc.unhealthy_threshold) await verdict(d, inst.id, "ejected", "active");
          else if (inst.state === "ejected" && c.successes >= hc.healthy_threshold) await verdict(d, inst.id, "active", "ejected");
        }),
    );
  }

  async function tick() {
    let deployments: Deployment[];
    try {
      deployments = await store.list();
    } catch {
      return;
    }
    const live = new Set(deployments.map((d) => d.id));
    for (const [id, lease] of held) {
      if (!live.has(id)) {
        held.delete(id);
        counts.delete(id);
        void lease.release().catch(() => undefined);
      }
    }
    const renewNow = Date.now() - lastRenew > deps.leaseMs / 3;
    if (renewNow) lastRenew = Date.now();
    for (const d of deployments) {
      if (busy.has(d.id) || !d.instances.some((i) => PROBED.has(i.state))) continue;
      busy.add(d.id);
      void (async () => {
        try {
          let lease = held.get(d.id);
          if (lease && renewNow && !(await lease.renew())) {
            held.delete(d.id);
            counts.delete(d.id);
            lease = undefined;
          }
          if (!lease) {
            const got = await deps.leases.acquire(`probe:${d.id}`, deps.leaseMs);
            if (!got) return;
            held.set(d.id, got);
          }
          await probeDeployment(d);
        } catch (e) {
          if (!abort.signal.aborted) log.debug("probe round failed", { deployment: d.id, ...errorFields(e) });
        } finally {
          busy.delete(d.id);
        }
      })();
    }
  }

  return {
    start() {
      timer = setInterval(() => void tick(), deps.tickMs);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      abort.abort();
      await Promise.allSettled([...held.values()].map((l) => l.release()));
      held.clear();
    },
  };
}
