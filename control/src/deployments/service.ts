/**
 * Deployment lifecycle: create (instances start `pending` until their connectivity test passes),
 * read, update, scale (add/remove instances), delete. Background work (tests, migrations) is recorded in
 * the stored document and carried out by the worker (jobs/worker.ts), in any replica.
 */
import { randomBytes } from "node:crypto";
import { AppError } from "../http/errors.js";
import { checkIfMatch } from "../http/preconditions.js";
import type { Model } from "../models/schemas.js";
import type { DeploymentStore } from "./store.js";
import {
  activeMigrations,
  parseInstanceUrl,
  type Deployment,
  type DeploymentCreate,
  type DeploymentUpdate,
  type Instance,
  type InstanceCreate,
  type InstanceUpdate,
} from "./schemas.js";
import { TABLE_LIMITS } from "../../contracts/routing-table.js";

export type DeploymentService = ReturnType<typeof createDeploymentService>;

export const newId = (prefix: string) => `${prefix}-${randomBytes(4).toString("hex")}`;

/** A new `pending` instance record from its input. */
export function newInstance(input: InstanceCreate, id: string, at: string): Instance {
  const url = parseInstanceUrl(input.url);
  if (typeof url === "string") throw new AppError("validation_failed", "invalid url", [{ path: "url", message: url }]);
  return {
    id,
    url: input.url,
    ...url,
    address: null,
    weight: input.weight,
    priority: input.priority,
    region: input.region,
    gpu_count: input.gpu_count ?? null,
    gpu_memory_gb: input.gpu_memory_gb ?? null,
    has_api_key: input.api_key !== undefined,
    state: "pending",
    last_check: null,
    created_at: at,
    updated_at: at,
  };
}

export function findInstance(d: Deployment, instanceId: string): Instance {
  const inst = d.instances.find((i) => i.id === instanceId);
  if (!inst) throw new AppError("not_found", `instance ${instanceId} not found in deployment ${d.id}`);
  return inst;
}

function uniqueInstanceId(d: Pick<Deployment, "instances">, wanted: string | undefined): string {
  if (wanted !== undefined) {
    if (d.instances.some((i) => i.id === wanted)) throw new AppError("already_exists", `instance ${wanted} already exists`);
    return wanted;
  }
  for (;;) {
    const id = newId("i");
    if (!d.instances.some((i) => i.id === id)) return id;
  }
}

export function createDeploymentService(deps: {
  store: Pick<DeploymentStore, "get" | "list" | "create" | "update" | "remove">;
  models: { resolve(ref: string): Promise<Model | null> };
  now?: () => Date;
}) {
  const { store } = deps;
  const now = () => (deps.now?.() ?? new Date()).toISOString();
  const touch = (d: Deployment, at: string): Deployment => ({ ...d, revision: d.revision + 1, updated_at: at });

  return {
    async create(input: DeploymentCreate): Promise<Deployment> {
      const model = await deps.models.resolve(input.model);
      if (!model) throw new AppError("unknown_model", `model ${input.model} is not registered`, [{ path: "model", message: "not a registered model id, name or alias" }]);
      const at = now();
      const d: Deployment = {
        id: input.id ?? newId("d"),
        model_id: model.id,
        strategy: input.strategy,
        on_unavailable: input.on_unavailable,
        health_check: input.health_check,
        instances: [],
        migrations: [],
        revision: 1,
        created_at: at,
        updated_at: at,
      };
      const apiKeys: Record<string, string> = {};
      for (const i of input.instances) {
        const inst = newInstance(i, uniqueInstanceId(d, i.id), at);
        d.instances.push(inst);
        if (i.api_key !== undefined) apiKeys[inst.id] = i.api_key;
      }
      await store.create(d, apiKeys);
      return d;
    },
    list: () => store.list(),
    async get(id: string): Promise<Deployment> {
      const d = await store.get(id);
      if (!d) throw new AppError("not_found", `deployment ${id} not found`);
      return d;
    },
    update(id: string, patch: DeploymentUpdate, ifMatch: string | undefined): Promise<Deployment> {
      return store.update(id, (cur) => {
        checkIfMatch(ifMatch, cur.revision);
        const next = touch(cur, now());
        if (patch.strategy !== undefined) next.strategy = patch.strategy;
        if (patch.on_unavailable !== undefined) next.on_unavailable = patch.on_unavailable;
        if (patch.health_check !== undefined) next.health_check = { ...cur.health_check, ...patch.health_check };
        return { next };
      });
    },
    remove(id: string, ifMatch: string | undefined): Promise<void> {
      return store.remove(id, (cur) => checkIfMatch(ifMatch, cur.revision));
    },
    /** Scale up: the new instance is `pending` until its connectivity test passes. */
    async addInstance(id: string, input: InstanceCreate, ifMatch: string | undefined): Promise<{ deployment: Deployment; instance: Instance }> {
      let added: Instance | undefined;
      const deployment = await store.update(id, (cur) => {
        checkIfMatch(ifMatch, cur.revision);
        if (cur.instances.length >= TABLE_LIMITS.maxInstancesPerDeployment) throw new AppError("invalid_state", `a deployment has at most ${TABLE_LIMITS.maxInstancesPerDeployment} instances`);
        const at = now();
        added = newInstance(input, uniqueInstanceId(cur, input.id), at);
        const next = touch(cur, at);
        next.instances = [...cur.instances, added];
        return { next, keys: input.api_key !== undefined ? { set: { [added.id]: input.api_key } } : undefined, bump: false };
      });
      return { deployment, instance: added! };
    },
    async updateInstance(id: string, instanceId: string, patch: InstanceUpdate, ifMatch: string | undefined): Promise<Deployment> {
      return store.update(id, (cur) => {
        checkIfMatch(ifMatch, cur.revision);
        findInstance(cur, instanceId);
        const at = now();
        const next = touch(cur, at);
        next.instances = cur.instances.map((i) => {
          if (i.id !== instanceId) return i;
          const n = { ...i, updated_at: at };
          if (patch.weight !== undefined) n.weight = patch.weight;
          if (patch.priority !== undefined) n.priority = patch.priority;
          if (patch.region !== undefined) n.region = patch.region;
          if (patch.gpu_count !== undefined) n.gpu_count = patch.gpu_count;
          if (patch.gpu_memory_gb !== undefined) n.gpu_memory_gb = patch.gpu_memory_gb;
          if (patch.api_key !== undefined) n.has_api_key = patch.api_key !== null;
          return n;
        });
        const keys = patch.api_key === undefined ? undefined : patch.api_key === null ? { del: [instanceId] } : { set: { [instanceId]: patch.api_key } };
        return { next, keys };
      });
    },
    /** Scale down: the instance leaves the routing table in the same transaction (new version). */
    removeInstance(id: string, instanceId: string, ifMatch: string | undefined): Promise<Deployment> {
      return store.update(id, (cur) => {
        checkIfMatch(ifMatch, cur.revision);
        findInstance(cur, instanceId);
        const m = activeMigrations(cur).find((x) => x.from_instance === instanceId || x.to_instance === instanceId);
        if (m) throw new AppError("invalid_state", `instance ${instanceId} is part of migration ${m.id} (phase ${m.phase}); wait for it to finish`);
        const next = touch(cur, now());
        next.instances = cur.instances.filter((i) => i.id !== instanceId);
        return { next, keys: { del: [instanceId] } };
      });
    },
    /** Run the connectivity test again for an unreachable instance. */
    retest(id: string, instanceId: string): Promise<Deployment> {
      return store.update(id, (cur) => {
        const inst = findInstance(cur, instanceId);
        if (inst.state !== "unreachable") throw new AppError("invalid_state", `instance ${instanceId} is ${inst.state}; only unreachable instances can be re-tested`);
        const at = now();
        const next = touch(cur, at);
        next.instances = cur.instances.map((i) => (i.id === instanceId ? { ...i, state: "pending" as const, updated_at: at } : i));
        return { next, bump: false };
      });
    },
  };
}
