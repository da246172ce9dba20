/**
 * Where stream events come from: the deployment store and the health store, decorated. Every write of a
 * deployment document (API, worker, prober, migrations, DNS refresh — in any replica) goes through
 * `DeploymentStore`, every timeline entry through `HealthStore.addEvent`; after a successful write the
 * decorator publishes what changed (`changeEvents`, a pure diff) on Redis, and every replica's hub fans
 * it out to its streams. Publishing is best effort and after the commit: a lost notification is repaired
 * by the client's next re-read (and `resync` on reconnect), never by the state being wrong.
 */
import type { Deployment, Instance } from "../deployments/schemas.js";
import type { DeploymentHead, DeploymentStore } from "../deployments/store.js";
import type { HealthStore } from "../health/store.js";
import type { StreamEvent } from "./schemas.js";

export type Publish = (events: StreamEvent[]) => void;

/** What changed between two versions of a deployment document (next = null: deleted). */
export function changeEvents(cur: Deployment | null, next: Deployment | null, at = new Date().toISOString()): StreamEvent[] {
  if (next === null) return cur === null ? [] : [{ type: "deployment.deleted", at, deployment: cur.id }];
  const out: StreamEvent[] = [cur === null ? { type: "deployment.created", at, deployment: next.id, revision: next.revision } : { type: "deployment.updated", at, deployment: next.id, revision: next.revision }];
  const before = new Map((cur?.instances ?? []).map((i) => [i.id, i]));
  for (const i of next.instances) {
    const b = before.get(i.id);
    before.delete(i.id);
    if (!b || b.state !== i.state) out.push({ type: "instance.state", at, deployment: next.id, instance: i.id, from: b?.state ?? null, to: i.state });
    if (i.last_check && i.last_check.checked_at !== b?.last_check?.checked_at) {
      const c = i.last_check;
      out.push({ type: "instance.checked", at, deployment: next.id, instance: i.id, ok: c.ok, error_code: c.error?.code ?? null, engine: c.engine, latency_ms: c.latency_ms.total });
    }
  }
  for (const b of before.values()) out.push({ type: "instance.state", at, deployment: next.id, instance: b.id, from: b.state, to: null });
  const migBefore = new Map((cur?.migrations ?? []).map((m) => [m.id, m]));
  for (const m of next.migrations) {
    const b = migBefore.get(m.id);
    if (b && b.phase === m.phase && b.consecutive_successes === m.consecutive_successes && b.probes === m.probes) continue;
    out.push({
      type: "migration",
      at,
      deployment: next.id,
      migration: m.id,
      phase: m.phase,
      from_instance: m.from_instance,
      to_instance: m.to_instance,
      consecutive_successes: m.consecutive_successes,
      required_successes: m.required_successes,
    });
  }
  return out;
}

/** The store, publishing what each successful write changed. */
export function notifyingDeploymentStore(store: DeploymentStore, publish: Publish): DeploymentStore {
  return {
    ...store,
    async create(d, apiKeys) {
      await store.create(d, apiKeys);
      publish(changeEvents(null, d));
    },
    async update(id, mutate) {
      // The mutation runs once per attempt (conflicts are retried): the last call saw what was committed.
      const last: { seen?: Deployment; changed?: boolean } = {};
      const next = await store.update(id, (cur) => {
        const change = mutate(cur);
        last.seen = cur;
        last.changed = change !== null;
        return change;
      });
      if (last.changed && last.seen) publish(changeEvents(last.seen, next));
      return next;
    },
    async updateInstance(id, instanceId, mutate) {
      // One instance's change: the diff of the head and that instance is the diff of the whole document.
      const last: { head?: DeploymentHead; inst?: Instance | null } = {};
      const r = await store.updateInstance(id, instanceId, (head, inst) => {
        last.head = head;
        last.inst = inst;
        return mutate(head, inst);
      });
      if (r.changed && last.head && r.instance) publish(changeEvents({ ...last.head, instances: last.inst ? [last.inst] : [] }, { ...r.head, instances: [r.instance] }));
      return r;
    },
    async remove(id, check) {
      const last: { seen?: Deployment } = {};
      await store.remove(id, (cur) => {
        check(cur);
        last.seen = cur;
      });
      if (last.seen) publish(changeEvents(last.seen, null));
    },
  };
}

/** The health store, publishing each timeline entry. */
export function notifyingHealthStore(store: HealthStore, publish: Publish): HealthStore {
  return {
    ...store,
    async addEvent(deployment, instance, e) {
      await store.addEvent(deployment, instance, e);
      publish([{ type: "instance.event", at: e.at, deployment, instance, event: e.type, reason: e.reason, state: e.state }]);
    },
  };
}
