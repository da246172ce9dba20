/** Starting and reading rolling migrations (the steps run in the worker). */
import { AppError } from "../http/errors.js";
import { checkIfMatch } from "../http/preconditions.js";
import { ensureRoom, findInstance, newId, newInstance } from "../deployments/service.js";
import type { DeploymentStore } from "../deployments/store.js";
import { activeMigrations, type Deployment, type Migration, type MigrationCreate } from "../deployments/schemas.js";
import { sameInTable } from "../routing-table/builder.js";
import { CANCELLABLE, cancel } from "./steps.js";

const KEEP_FINISHED = 20;

export type MigrationService = ReturnType<typeof createMigrationService>;

export function createMigrationService(deps: {
  store: Pick<DeploymentStore, "update" | "get" | "getApiKey">;
  defaultDrainSeconds: number;
  now?: () => Date;
}) {
  const { store } = deps;
  const now = () => deps.now?.() ?? new Date();
  return {
    async start(deploymentId: string, input: MigrationCreate, ifMatch: string | undefined): Promise<{ deployment: Deployment; migration: Migration }> {
      // Carry the old instance's key over unless the request sets (or clears) one.
      const inheritedKey = input.api_key === undefined ? await store.getApiKey(deploymentId, input.instance_id) : null;
      let started: Migration | undefined;
      const deployment = await store.update(deploymentId, (cur) => {
        checkIfMatch(ifMatch, cur.revision);
        const old = findInstance(cur, input.instance_id);
        if (old.state !== "active" && old.state !== "ejected") throw new AppError("invalid_state", `instance ${old.id} is ${old.state}; only an instance in the pool (active or ejected) can be migrated`);
        const running = activeMigrations(cur).find((m) => m.from_instance === old.id || m.to_instance === old.id);
        if (running) throw new AppError("invalid_state", `instance ${old.id} is already migrating (${running.id})`);
        // The new instance is stored next to the old one until the switch: it needs room in the table.
        ensureRoom(cur);
        const toId = input.new_instance_id ?? newId(old.id.slice(0, 100));
        if (cur.instances.some((i) => i.id === toId)) throw new AppError("already_exists", `instance ${toId} already exists`);
        const at = now().toISOString();
        const key = input.api_key === undefined ? inheritedKey : input.api_key;
        const inst = newInstance(
          { url: input.url, weight: old.weight, priority: old.priority, region: old.region, gpu_count: old.gpu_count ?? undefined, gpu_memory_gb: old.gpu_memory_gb ?? undefined, api_key: key ?? undefined },
          toId,
          at,
        );
        started = {
          id: newId("mig"),
          from_instance: old.id,
          to_instance: toId,
          url: input.url,
          phase: "testing",
          required_successes: cur.health_check.healthy_threshold,
          consecutive_successes: 0,
          consecutive_failures: 0,
          probes: 0,
          next_probe_at: null,
          health_deadline: null,
          drain_timeout_seconds: input.drain_timeout_seconds ?? deps.defaultDrainSeconds,
          drain_until: null,
          error: null,
          history: [{ phase: "testing", at }],
          started_at: at,
          updated_at: at,
          finished_at: null,
        };
        const finished = cur.migrations.filter((m) => m.phase === "succeeded" || m.phase === "rolled_back");
        const drop = new Set(finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED + 1)).map((m) => m.id));
        const next: Deployment = {
          ...cur,
          revision: cur.revision + 1,
          updated_at: at,
          instances: [...cur.instances, inst],
          migrations: [...cur.migrations.filter((m) => !drop.has(m.id)), started],
        };
        return { next, keys: key ? { set: { [toId]: key } } : undefined, bump: false };
      });
      return { deployment, migration: started! };
    },
    /**
     * Stops a migration before its switch: the new instance is removed, the old one never stopped serving.
     * After the switch the old instance is already out of rotation, so there is nothing to cancel: the
     * drain just runs out (409 says when).
     */
    async cancel(deploymentId: string, migrationId: string, ifMatch: string | undefined): Promise<{ deployment: Deployment; migration: Migration }> {
      let cancelled: Migration | undefined;
      const deployment = await store.update(deploymentId, (cur) => {
        checkIfMatch(ifMatch, cur.revision);
        const m = cur.migrations.find((x) => x.id === migrationId);
        if (!m) throw new AppError("not_found", `migration ${migrationId} not found`);
        if (m.phase === "draining") {
          throw new AppError("invalid_state", `migration ${m.id} has switched: ${m.to_instance} serves and ${m.from_instance} drains until ${m.drain_until}; it cannot be cancelled`);
        }
        if (!CANCELLABLE.has(m.phase)) throw new AppError("invalid_state", `migration ${m.id} has already ended (${m.phase})`);
        const r = cancel(cur, m, now().getTime());
        const next = { ...r.next, revision: cur.revision + 1, updated_at: now().toISOString() };
        cancelled = next.migrations.find((x) => x.id === m.id);
        return { next, keys: r.keys, bump: !sameInTable(cur, next) };
      });
      return { deployment, migration: cancelled! };
    },
    async get(deploymentId: string, migrationId: string): Promise<Migration> {
      const d = await store.get(deploymentId);
      if (!d) throw new AppError("not_found", `deployment ${deploymentId} not found`);
      const m = d.migrations.find((x) => x.id === migrationId);
      if (!m) throw new AppError("not_found", `migration ${migrationId} not found`);
      return m;
    },
    async list(deploymentId: string): Promise<Migration[]> {
      const d = await store.get(deploymentId);
      if (!d) throw new AppError("not_found", `deployment ${deploymentId} not found`);
      return d.migrations;
    },
  };
}
