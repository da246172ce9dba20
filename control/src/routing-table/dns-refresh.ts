/**
 * Re-resolves instance hostnames periodically (one replica at a time, by lease). A changed address is
 * written with a table version bump, so every plugin sees it.
 */
import type { Deployment } from "../deployments/schemas.js";
import { isIpLiteral } from "../deployments/schemas.js";
import type { DeploymentStore } from "../deployments/store.js";
import type { ConnectivityTester } from "../connectivity/tester.js";
import type { LeaseStore } from "../jobs/lease-store.js";
import { errorFields, type Logger } from "../log.js";
import { sameInTable } from "./builder.js";

const TABLE_STATES = new Set(["active", "draining", "ejected"]);

export function createDnsRefresher(deps: {
  store: Pick<DeploymentStore, "list" | "update">;
  tester: Pick<ConnectivityTester, "resolve">;
  leases: LeaseStore;
  intervalMs: number;
  log: Logger;
}) {
  const { store, tester, log } = deps;
  let timer: NodeJS.Timeout | null = null;

  async function refreshOnce(): Promise<number> {
    const lease = await deps.leases.acquire("dns-refresh", Math.max(deps.intervalMs, 1_000));
    if (!lease) return 0;
    let changed = 0;
    try {
      for (const d of await store.list()) {
        const fresh = new Map<string, string>();
        for (const i of d.instances) {
          if (!TABLE_STATES.has(i.state) || isIpLiteral(i.host)) continue;
          const r = await tester.resolve(i.host, i.port);
          if (!r.ok) {
            log.warn("instance hostname did not resolve; keeping its last address", { deployment: d.id, instance: i.id, reason: r.code });
            continue;
          }
          if (r.address !== i.address) fresh.set(i.id, r.address);
        }
        if (fresh.size === 0) continue;
        await store.update(d.id, (cur): { next: Deployment; bump: boolean } | null => {
          const next: Deployment = { ...cur, instances: cur.instances.map((i) => (fresh.has(i.id) && TABLE_STATES.has(i.state) ? { ...i, address: fresh.get(i.id)! } : i)) };
          if (sameInTable(cur, next)) return null;
          return { next: { ...next, revision: cur.revision + 1, updated_at: new Date().toISOString() }, bump: true };
        });
        changed += fresh.size;
        log.info("instance addresses changed", { deployment: d.id, instances: [...fresh.keys()] });
      }
    } finally {
      await lease.release();
    }
    return changed;
  }

  return {
    refreshOnce,
    start() {
      if (deps.intervalMs <= 0) return;
      timer = setInterval(() => {
        refreshOnce().catch((e: unknown) => log.debug("dns refresh skipped", errorFields(e)));
      }, deps.intervalMs);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
    },
  };
}
