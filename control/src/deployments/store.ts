/** Deployments in Redis. The only module that knows the deployment keys. */
import type { Redis } from "ioredis";
import { AppError } from "../http/errors.js";
import { Txn, withRetry, type Commit } from "../redis/cas.js";
import { storeCall } from "../redis/client.js";
import type { Keys } from "../redis/keys.js";
import { Deployment, hasPendingWork } from "./schemas.js";

/** Secret changes that go with a document change: set or delete API keys by instance id. */
export interface KeyChanges {
  set?: Record<string, string>;
  del?: string[];
}

export interface Change {
  next: Deployment;
  keys?: KeyChanges;
  /** Bump the table version (default true). Off for changes the table cannot see (probe counters). */
  bump?: boolean;
}

export interface DeploymentStore {
  get(id: string): Promise<Deployment | null>;
  list(): Promise<Deployment[]>;
  create(d: Deployment, apiKeys: Record<string, string>): Promise<void>;
  /** Read-modify-write; `mutate` returns null for "nothing to change". Retried on conflict. */
  update(id: string, mutate: (current: Deployment) => Change | null): Promise<Deployment>;
  remove(id: string, check: (current: Deployment) => void): Promise<void>;
  /** The deployment serving a model, if any. */
  deploymentOf(modelId: string): Promise<string | null>;
  getApiKey(deploymentId: string, instanceId: string): Promise<string | null>;
  /** Deployment ids with background work. */
  listWork(): Promise<string[]>;
  /** Drop a work entry whose deployment no longer exists. */
  dropWork(id: string): Promise<void>;
}

const parse = (raw: string): Deployment => Deployment.parse(JSON.parse(raw));

export function createDeploymentStore(deps: { redis: Redis; keys: Keys; commit: Commit }): DeploymentStore {
  const { redis, keys, commit } = deps;
  const keyField = (dep: string, inst: string) => `${dep}/${inst}`;

  const applyKeys = (txn: Txn, depId: string, changes: KeyChanges | undefined) => {
    for (const [inst, key] of Object.entries(changes?.set ?? {})) txn.op("HSET", keys.apiKeys, keyField(depId, inst), key);
    for (const inst of changes?.del ?? []) txn.op("HDEL", keys.apiKeys, keyField(depId, inst));
  };
  const workOp = (txn: Txn, d: Deployment) => (hasPendingWork(d) ? txn.op("SADD", keys.work, d.id) : txn.op("SREM", keys.work, d.id));

  return {
    get: (id) => storeCall(async () => {
      const raw = await redis.hget(keys.deployments, id);
      return raw === null ? null : parse(raw);
    }),
    list: () => storeCall(async () => (await redis.hvals(keys.deployments)).map(parse).sort((a, b) => a.id.localeCompare(b.id))),
    create: (d, apiKeys) => storeCall(async () => {
      await withRetry(async () => {
        const [existing, modelRaw, deployedAs] = await Promise.all([
          redis.hexists(keys.deployments, d.id),
          redis.hget(keys.models, d.model_id),
          redis.hget(keys.modelDeployment, d.model_id),
        ]);
        if (existing === 1) throw new AppError("already_exists", `deployment ${d.id} already exists`);
        if (modelRaw === null) throw new AppError("unknown_model", `model ${d.model_id} is not registered`);
        if (deployedAs !== null) throw new AppError("already_exists", `model ${d.model_id} is already served by deployment ${deployedAs}`);
        const txn = new Txn()
          .guard(keys.deployments, d.id, null)
          .guard(keys.models, d.model_id, modelRaw)
          .guard(keys.modelDeployment, d.model_id, null)
          .op("HSET", keys.deployments, d.id, JSON.stringify(d))
          .op("HSET", keys.modelDeployment, d.model_id, d.id);
        applyKeys(txn, d.id, { set: apiKeys });
        workOp(txn, d);
        txn.bump();
        return { txn, result: undefined };
      }, commit);
    }),
    update: (id, mutate) => storeCall(async () => {
      const { result } = await withRetry(async () => {
        const raw = await redis.hget(keys.deployments, id);
        if (raw === null) throw new AppError("not_found", `deployment ${id} not found`);
        const current = parse(raw);
        const change = mutate(current);
        const txn = new Txn().guard(keys.deployments, id, raw);
        if (change === null) return { txn, result: current };
        const next = Deployment.parse(change.next);
        txn.op("HSET", keys.deployments, id, JSON.stringify(next));
        applyKeys(txn, id, change.keys);
        workOp(txn, next);
        if (change.bump !== false) txn.bump();
        return { txn, result: next };
      }, commit);
      return result;
    }),
    remove: (id, check) => storeCall(async () => {
      await withRetry(async () => {
        const raw = await redis.hget(keys.deployments, id);
        if (raw === null) throw new AppError("not_found", `deployment ${id} not found`);
        const current = parse(raw);
        check(current);
        const txn = new Txn()
          .guard(keys.deployments, id, raw)
          .op("HDEL", keys.deployments, id)
          .op("HDEL", keys.modelDeployment, current.model_id)
          .op("SREM", keys.work, id);
        applyKeys(txn, id, { del: current.instances.map((i) => i.id) });
        txn.bump();
        return { txn, result: undefined };
      }, commit);
    }),
    deploymentOf: (modelId) => storeCall(async () => await redis.hget(keys.modelDeployment, modelId)),
    getApiKey: (dep, inst) => storeCall(async () => await redis.hget(keys.apiKeys, keyField(dep, inst))),
    listWork: () => storeCall(async () => await redis.smembers(keys.work)),
    dropWork: (id) => storeCall(async () => {
      await commit(new Txn().guard(keys.deployments, id, null).op("SREM", keys.work, id));
    }),
  };
}
