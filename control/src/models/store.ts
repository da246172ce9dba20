/** Models in Redis. The only module that knows the model keys. */
import type { Redis } from "ioredis";
import { AppError } from "../http/errors.js";
import { Txn, withRetry, type Commit } from "../redis/cas.js";
import { storeCall } from "../redis/client.js";
import type { Keys } from "../redis/keys.js";
import { Model, modelNames } from "./schemas.js";
import { TABLE_LIMITS } from "../../contracts/routing-table.js";

export interface ModelStore {
  get(id: string): Promise<Model | null>;
  list(): Promise<Model[]>;
  findIdByName(name: string): Promise<string | null>;
  create(model: Model): Promise<void>;
  /** Read-modify-write; `mutate` returns null for "nothing to change" (nothing is written). Retried on conflict. */
  update(id: string, mutate: (current: Model) => Model | null): Promise<Model>;
  remove(id: string, check: (current: Model) => void): Promise<void>;
}

const parse = (raw: string): Model => Model.parse(JSON.parse(raw));

export function createModelStore(deps: { redis: Redis; keys: Keys; commit: Commit }): ModelStore {
  const { redis, keys, commit } = deps;

  /** Guard every name we add: it must be free, or already ours. */
  const claimNames = async (txn: Txn, id: string, names: string[]) => {
    if (names.length === 0) return;
    const owners = await redis.hmget(keys.modelNames, ...names);
    names.forEach((name, i) => {
      const owner = owners[i] ?? null;
      if (owner !== null && owner !== id) throw new AppError("already_exists", `model name ${name} is already used by model ${owner}`);
      txn.guard(keys.modelNames, name, owner);
      txn.op("HSET", keys.modelNames, name, id);
    });
  };

  /**
   * The routing table maps at most TABLE_LIMITS.maxModelNames names: a write adding names checks the
   * registry's size first (every registered name may enter the table), and the commit checks it again.
   */
  const roomForNames = async (txn: Txn, adding: number, removing = 0) => {
    if (adding <= removing) return;
    const count = await redis.hlen(keys.modelNames);
    const max = TABLE_LIMITS.maxModelNames;
    if (count + adding - removing > max) {
      throw new AppError("limit_exceeded", `the gateway routes at most ${max} model names and aliases (${count} registered; this change adds ${adding - removing})`, [{ path: "aliases", message: `at most ${max} names across all models` }]);
    }
    txn.guardSize(keys.modelNames, max - (adding - removing));
  };

  return {
    get: (id) => storeCall(async () => {
      const raw = await redis.hget(keys.models, id);
      return raw === null ? null : parse(raw);
    }),
    list: () => storeCall(async () => (await redis.hvals(keys.models)).map(parse).sort((a, b) => a.id.localeCompare(b.id))),
    findIdByName: (name) => storeCall(async () => await redis.hget(keys.modelNames, name)),
    create: (model) => storeCall(async () => {
      await withRetry(async () => {
        if ((await redis.hexists(keys.models, model.id)) === 1) throw new AppError("already_exists", `model ${model.id} already exists`);
        const txn = new Txn().guard(keys.models, model.id, null);
        await roomForNames(txn, modelNames(model).length);
        await claimNames(txn, model.id, modelNames(model));
        txn.op("HSET", keys.models, model.id, JSON.stringify(model)).bump();
        return { txn, result: undefined };
      }, commit);
    }),
    update: (id, mutate) => storeCall(async () => {
      const { result } = await withRetry(async () => {
        const raw = await redis.hget(keys.models, id);
        if (raw === null) throw new AppError("not_found", `model ${id} not found`);
        const current = parse(raw);
        const next = mutate(current);
        const txn = new Txn().guard(keys.models, id, raw);
        // No ops and no bump: the commit only confirms what was read (no INCR, no PUBLISH).
        if (next === null) return { txn, result: current };
        const before = new Set(modelNames(current));
        const after = modelNames(next);
        const added = after.filter((n) => !before.has(n));
        await roomForNames(txn, added.length, [...before].filter((n) => !after.includes(n)).length);
        await claimNames(txn, id, added);
        for (const n of before) {
          if (!after.includes(n)) txn.guard(keys.modelNames, n, id).op("HDEL", keys.modelNames, n);
        }
        txn.op("HSET", keys.models, id, JSON.stringify(next)).bump();
        return { txn, result: next };
      }, commit);
      return result;
    }),
    remove: (id, check) => storeCall(async () => {
      await withRetry(async () => {
        const [raw, deployment] = await Promise.all([redis.hget(keys.models, id), redis.hget(keys.modelDeployment, id)]);
        if (raw === null) throw new AppError("not_found", `model ${id} not found`);
        const current = parse(raw);
        check(current);
        if (deployment !== null) throw new AppError("invalid_state", `model ${id} is used by deployment ${deployment}; delete the deployment first`);
        const txn = new Txn().guard(keys.models, id, raw).guard(keys.modelDeployment, id, null).op("HDEL", keys.models, id);
        for (const n of modelNames(current)) txn.op("HDEL", keys.modelNames, n);
        txn.bump();
        return { txn, result: undefined };
      }, commit);
    }),
  };
}
