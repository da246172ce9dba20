/**
 * Deployments in Redis. The only module that knows the deployment keys.
 *
 * A deployment is stored in two parts (keys.ts): its **head** — the document without its instances, plus
 * `seq` — in the `deployments` hash, and its **instances**, one per field of `deployment-instances:<id>` (the
 * instance's JSON plus `ord`, its place in the list). A write rewrites the head (`seq` + 1 at least) and only
 * the instances that changed or went away: one instance's change costs one instance's bytes, whatever the
 * deployment's size. The optimistic guard of every write is the head alone: each write of a deployment bumps
 * its `seq`, so an unchanged head means unchanged instances too. Reads take the head and the instances in one
 * MULTI (a consistent view); `list()` and the routing-table snapshot (`readDeployments`) read every head and
 * every instance hash in one MULTI.
 *
 * Documents written before this form (the whole document in the `deployments` hash, `instances` inside, no
 * `seq`) are read as they are. Any write of one rewrites it in the new form, and `upgrade()` — run once Redis is
 * ready, in every replica — rewrites all of them, each atomically (one script, guarded by the old document; no
 * revision, no table version, no event: the content is unchanged).
 */
import { isDeepStrictEqual } from "node:util";
import type { ChainableCommander, Redis } from "ioredis";
import type { z } from "zod";
import { AppError } from "../http/errors.js";
import { loadField } from "../health/load.js";
import { TABLE_LIMITS } from "../../contracts/routing-table.js";
import type { Logger } from "../log.js";
import { errorFields } from "../log.js";
import { Txn, withRetry, type Commit } from "../redis/cas.js";
import { isConnectionError, storeCall } from "../redis/client.js";
import type { Keys } from "../redis/keys.js";
import { Deployment, hasPendingWork, Instance } from "./schemas.js";

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

/** A deployment without its instances (what `updateInstance` reads and writes besides the one instance). */
export const DeploymentHead = Deployment.omit({ instances: true });
export type DeploymentHead = z.infer<typeof DeploymentHead>;

/** One instance's change: the head after it (revision, updated_at) and the instance after it. */
export interface InstanceChange {
  head: DeploymentHead;
  instance: Instance;
  /** Bump the table version (default true). */
  bump?: boolean;
}

export interface InstanceUpdated {
  head: DeploymentHead;
  /** null: no such instance. */
  instance: Instance | null;
  /** False when `mutate` returned null (nothing written). */
  changed: boolean;
}

export interface DeploymentStore {
  get(id: string): Promise<Deployment | null>;
  list(): Promise<Deployment[]>;
  create(d: Deployment, apiKeys: Record<string, string>): Promise<void>;
  /** Read-modify-write; `mutate` returns null for "nothing to change". Retried on conflict. */
  update(id: string, mutate: (current: Deployment) => Change | null): Promise<Deployment>;
  /**
   * Read-modify-write of one instance: reads the head and that instance only, writes them only (hot paths:
   * probe verdicts). `mutate` gets the instance (null: not there) and returns null for "nothing to change".
   * For changes that leave the deployment's background work as it is: no instance to or from `pending`, the
   * migrations unchanged (anything else goes through `update`). Retried on conflict.
   */
  updateInstance(id: string, instanceId: string, mutate: (head: DeploymentHead, instance: Instance | null) => InstanceChange | null): Promise<InstanceUpdated>;
  remove(id: string, check: (current: Deployment) => void): Promise<void>;
  /** The deployment serving a model, if any. */
  deploymentOf(modelId: string): Promise<string | null>;
  getApiKey(deploymentId: string, instanceId: string): Promise<string | null>;
  /** Deployment ids with background work. */
  listWork(): Promise<string[]>;
  /** Drop a work entry whose deployment no longer exists. */
  dropWork(id: string): Promise<void>;
  /** Rewrite every deployment stored in the old form (instances inside the document); returns how many. */
  upgrade(): Promise<number>;
}

/** The deployment's fields in schema order (what `Deployment.parse` answers), the instances in their place. */
const FIELDS = Object.keys(Deployment.shape) as (keyof Deployment)[];
function assemble(head: DeploymentHead, instances: Instance[]): Deployment {
  const out: Record<string, unknown> = {};
  for (const k of FIELDS) {
    const v = k === "instances" ? instances : (head as Record<string, unknown>)[k];
    // Optional fields a document does not have stay absent (as Deployment.parse answers them).
    if (v !== undefined) out[k] = v;
  }
  return out as Deployment;
}

const encodeHead = (head: DeploymentHead, seq: number) => JSON.stringify({ seq, ...head });
const encodeInstance = (inst: Instance, ord: number) => JSON.stringify({ ord, ...inst });

/** A stored instance: its value as stored, its place, and the parsed instance. */
interface Row {
  raw: string;
  ord: number;
  inst: Instance;
}

/** A deployment as read: what a write of it is guarded by and diffed against. */
interface Stored {
  /** The head as stored (the guard). */
  raw: string;
  deployment: Deployment;
  seq: number;
  /** Instance id → its stored row; null for a document in the old form (instances inside the head). */
  rows: Map<string, Row> | null;
}

const isOldForm = (doc: Record<string, unknown>) => Array.isArray(doc.instances);

function decodeRow(raw: string): Row {
  const o = JSON.parse(raw) as Record<string, unknown>;
  return { raw, ord: typeof o.ord === "number" ? o.ord : Number.MAX_SAFE_INTEGER, inst: Instance.parse(o) };
}

function decode(raw: string, instanceValues: string[]): Stored {
  const doc = JSON.parse(raw) as Record<string, unknown>;
  if (isOldForm(doc)) return { raw, deployment: Deployment.parse(doc), seq: 0, rows: null };
  const head = DeploymentHead.parse(doc);
  const rows = new Map<string, Row>();
  for (const v of instanceValues) {
    const row = decodeRow(v);
    rows.set(row.inst.id, row);
  }
  const instances = [...rows.values()].sort((a, b) => a.ord - b.ord).map((r) => r.inst);
  return { raw, deployment: assemble(head, instances), seq: typeof doc.seq === "number" ? doc.seq : 0, rows };
}

/** The id of a stored head (either form), without validating the rest. */
const headId = (raw: string): string => String((JSON.parse(raw) as { id?: unknown }).id);

/** Fields per HSET / HDEL op: a script call's arguments stay far below Lua's unpack limit. */
const CHUNK = 256;

/**
 * Queues the write of `next` (whose current state is `cur`; null: new) on `txn`: the head with `seq` + 1,
 * the instances that changed or are new, HDEL of those gone. A deployment in the old form (or a new one) gets
 * its instances hash written whole. Returns the deployment as stored.
 */
function queueWrite(txn: Txn, keys: Keys, id: string, cur: Stored | null, next: Deployment): Deployment {
  const head = DeploymentHead.parse(next);
  const instKey = keys.deploymentInstances(id);
  const rows = cur?.rows ?? null;
  // Places: kept instances keep theirs, new ones go after every stored one. If the list was reordered (no
  // caller does), every instance gets its index as its place.
  const seen = new Set<string>();
  let top = -1;
  if (rows) for (const r of rows.values()) top = Math.max(top, r.ord);
  const ords: number[] = [];
  let ordered = true;
  for (const i of next.instances) {
    if (seen.has(i.id)) throw new Error(`deployment ${id}: instance ${i.id} twice`);
    seen.add(i.id);
    const ord = rows?.get(i.id)?.ord ?? ++top;
    if (ords.length > 0 && ord <= ords[ords.length - 1]!) ordered = false;
    ords.push(ord);
  }
  if (!ordered || rows === null) for (let k = 0; k < ords.length; k++) ords[k] = k;

  const instances: Instance[] = [];
  const set: string[] = [];
  next.instances.forEach((i, k) => {
    const row = rows?.get(i.id);
    // Unchanged (the same value at the same place): not parsed again, not written.
    if (row && row.ord === ords[k] && encodeInstance(i, ords[k]!) === row.raw) {
      instances.push(i);
      return;
    }
    const parsed = Instance.parse(i);
    const raw = encodeInstance(parsed, ords[k]!);
    instances.push(parsed);
    if (row?.raw !== raw) set.push(parsed.id, raw);
  });
  const gone = rows ? [...rows.keys()].filter((iid) => !seen.has(iid)) : [];

  if (rows === null) txn.op("DEL", instKey); // new, or the old form: the instances hash is written whole
  for (let k = 0; k < set.length; k += 2 * CHUNK) txn.op("HSET", instKey, ...set.slice(k, k + 2 * CHUNK));
  for (let k = 0; k < gone.length; k += CHUNK) txn.op("HDEL", instKey, ...gone.slice(k, k + CHUNK));
  txn.op("HSET", keys.deployments, id, encodeHead(head, (cur?.seq ?? 0) + 1));
  return assemble(head, instances);
}

/**
 * Every deployment, read in one MULTI together with the commands `extra` queues first (their replies come
 * back in `extra`): a consistent snapshot of both. `known` guesses the deployment ids (e.g. the last
 * snapshot's) to save a round trip; a deployment created meanwhile makes it read again with the ids seen.
 */
export async function readDeployments(
  redis: Redis,
  keys: Keys,
  opts: {
    extra?: (m: ChainableCommander) => void;
    known?: Iterable<string>;
    /**
     * Decoded deployments by id with the head they were decoded from: a head read again unchanged (every write
     * bumps its `seq`, so its instances are unchanged too) is not decoded again — at 10k instances, validating
     * every instance on every list was the prober's largest cost after its sockets. Kept to the ids read.
     */
    cache?: Map<string, { raw: string; deployment: Deployment }>;
  } = {},
): Promise<{ deployments: Deployment[]; extra: unknown[] }> {
  let ids = opts.known ? [...opts.known] : await redis.hkeys(keys.deployments);
  for (let attempt = 0; ; attempt++) {
    const m = redis.multi();
    const before = m.length; // a MULTI pipeline counts its own MULTI
    opts.extra?.(m);
    const n = m.length - before;
    m.hvals(keys.deployments);
    for (const id of ids) m.hvals(keys.deploymentInstances(id));
    const res = await m.exec();
    if (!res) throw new Error("snapshot transaction aborted");
    for (const [err] of res) if (err) throw err;
    const heads = (res[n]![1] as string[]).map((raw) => ({ raw, id: headId(raw) }));
    const byId = new Map(ids.map((id, k) => [id, res[n + 1 + k]![1] as string[]]));
    // A deployment created after the ids were read: read again with them (its instances were not in this read).
    if (heads.some((h) => !byId.has(h.id))) {
      if (attempt >= 20) throw new Error("deployments kept appearing while they were read; no consistent snapshot");
      ids = heads.map((h) => h.id);
      continue;
    }
    const cache = opts.cache;
    const deployments = heads
      .map((h) => {
        const hit = cache?.get(h.id);
        if (hit && hit.raw === h.raw) return hit.deployment;
        const deployment = decode(h.raw, byId.get(h.id)!).deployment;
        cache?.set(h.id, { raw: h.raw, deployment });
        return deployment;
      })
      .sort((a, b) => a.id.localeCompare(b.id));
    if (cache && cache.size > heads.length) {
      const live = new Set(heads.map((h) => h.id));
      for (const id of cache.keys()) if (!live.has(id)) cache.delete(id);
    }
    return { deployments, extra: res.slice(0, n).map((r) => r[1]) };
  }
}

export function createDeploymentStore(deps: { redis: Redis; keys: Keys; commit: Commit; log?: Logger; upgradeOnReady?: boolean }): DeploymentStore {
  const { redis, keys, commit } = deps;
  const keyField = (dep: string, inst: string) => `${dep}/${inst}`;
  let known: string[] | undefined;
  /** list()'s decoded deployments (readDeployments `cache`); what it returns is shared: callers never mutate it. */
  const listCache = new Map<string, { raw: string; deployment: Deployment }>();

  const applyKeys = (txn: Txn, depId: string, changes: KeyChanges | undefined) => {
    for (const [inst, key] of Object.entries(changes?.set ?? {})) txn.op("HSET", keys.apiKeys, keyField(depId, inst), key);
    for (const inst of changes?.del ?? []) txn.op("HDEL", keys.apiKeys, keyField(depId, inst));
  };
  const workOp = (txn: Txn, d: Deployment) => (hasPendingWork(d) ? txn.op("SADD", keys.work, d.id) : txn.op("SREM", keys.work, d.id));

  /** The head and the instances of one deployment, in one MULTI. */
  const read = async (id: string): Promise<Stored | null> => {
    const res = await redis.multi().hget(keys.deployments, id).hvals(keys.deploymentInstances(id)).exec();
    if (!res) throw new Error("read transaction aborted");
    for (const [err] of res) if (err) throw err;
    const raw = res[0]![1] as string | null;
    return raw === null ? null : decode(raw, res[1]![1] as string[]);
  };
  const mustRead = async (id: string): Promise<Stored> => {
    const cur = await read(id);
    if (!cur) throw new AppError("not_found", `deployment ${id} not found`);
    return cur;
  };

  /** Rewrites the deployments stored in the old form; one that fails is left as it is (and logged). */
  const upgrade = async (): Promise<{ upgraded: number; failed: number }> => {
    let upgraded = 0;
    let failed = 0;
    for (const [id, raw] of Object.entries(await redis.hgetall(keys.deployments))) {
      try {
        if (!isOldForm(JSON.parse(raw) as Record<string, unknown>)) continue;
        const { result } = await withRetry(async () => {
          const cur = await read(id);
          // Gone, or upgraded meanwhile (another replica, a write): nothing to do (the empty commit changes nothing).
          if (!cur || cur.rows !== null) return { txn: new Txn(), result: false };
          const txn = new Txn().guard(keys.deployments, id, cur.raw);
          queueWrite(txn, keys, id, cur, cur.deployment);
          return { txn, result: true };
        }, commit);
        if (result) upgraded++;
      } catch (e) {
        if (isConnectionError(e)) throw e;
        failed++;
        deps.log?.error("deployment not upgraded to per-instance storage; it stays in the old form (still read)", { deployment: id, ...errorFields(e) });
      }
    }
    return { upgraded, failed };
  };

  const store: DeploymentStore = {
    get: (id) => storeCall(async () => (await read(id))?.deployment ?? null),
    list: () => storeCall(async () => {
      const { deployments } = await readDeployments(redis, keys, { known, cache: listCache });
      known = deployments.map((d) => d.id);
      return deployments;
    }),
    create: (d, apiKeys) => storeCall(async () => {
      await withRetry(async () => {
        const [existing, modelRaw, deployedAs, count] = await Promise.all([
          redis.hexists(keys.deployments, d.id),
          redis.hget(keys.models, d.model_id),
          redis.hget(keys.modelDeployment, d.model_id),
          redis.hlen(keys.deployments),
        ]);
        if (existing === 1) throw new AppError("already_exists", `deployment ${d.id} already exists`);
        // Every deployment enters the routing table: its limit is checked before the commit, and guarded.
        if (count >= TABLE_LIMITS.maxDeployments) throw new AppError("limit_exceeded", `the gateway holds at most ${TABLE_LIMITS.maxDeployments} deployments`);
        if (d.instances.length > TABLE_LIMITS.maxInstancesPerDeployment) throw new AppError("limit_exceeded", `a deployment has at most ${TABLE_LIMITS.maxInstancesPerDeployment} instances`);
        if (modelRaw === null) throw new AppError("unknown_model", `model ${d.model_id} is not registered`);
        if (deployedAs !== null) throw new AppError("already_exists", `model ${d.model_id} is already served by deployment ${deployedAs}`);
        const txn = new Txn()
          .guardSize(keys.deployments, TABLE_LIMITS.maxDeployments - 1)
          .guard(keys.deployments, d.id, null)
          .guard(keys.models, d.model_id, modelRaw)
          .guard(keys.modelDeployment, d.model_id, null);
        queueWrite(txn, keys, d.id, null, Deployment.parse(d));
        txn.op("HSET", keys.modelDeployment, d.model_id, d.id);
        applyKeys(txn, d.id, { set: apiKeys });
        workOp(txn, d);
        txn.bump();
        return { txn, result: undefined };
      }, commit);
    }),
    update: (id, mutate) => storeCall(async () => {
      const { result } = await withRetry(async () => {
        const cur = await mustRead(id);
        const change = mutate(cur.deployment);
        const txn = new Txn().guard(keys.deployments, id, cur.raw);
        if (change === null) return { txn, result: cur.deployment };
        const next = queueWrite(txn, keys, id, cur, change.next);
        applyKeys(txn, id, change.keys);
        workOp(txn, next);
        if (change.bump !== false) txn.bump();
        return { txn, result: next };
      }, commit);
      return result;
    }),
    updateInstance: (id, instanceId, mutate) => storeCall(async () => {
      const { result } = await withRetry(async () => {
        const res = await redis.multi().hget(keys.deployments, id).hget(keys.deploymentInstances(id), instanceId).exec();
        if (!res) throw new Error("read transaction aborted");
        for (const [err] of res) if (err) throw err;
        const raw = res[0]![1] as string | null;
        if (raw === null) throw new AppError("not_found", `deployment ${id} not found`);
        const txn = new Txn().guard(keys.deployments, id, raw);
        const doc = JSON.parse(raw) as Record<string, unknown>;
        const old = isOldForm(doc) ? decode(raw, []) : null;
        const headOf = (d: Deployment): DeploymentHead => {
          const { instances: _i, ...h } = d;
          return h;
        };
        const head = old ? headOf(old.deployment) : DeploymentHead.parse(doc);
        const instRaw = res[1]![1] as string | null;
        const row = old ? null : instRaw === null ? null : decodeRow(instRaw);
        const inst = old ? (old.deployment.instances.find((i) => i.id === instanceId) ?? null) : (row?.inst ?? null);
        const change = mutate(head, inst);
        if (change === null) return { txn, result: { head, instance: inst, changed: false } };
        if (inst === null || change.instance.id !== instanceId) throw new Error(`updateInstance changes an existing instance only (${id}/${instanceId})`);
        if ((inst.state === "pending") !== (change.instance.state === "pending") || !isDeepStrictEqual(head.migrations, change.head.migrations)) {
          throw new Error("updateInstance cannot change pending instances or migrations (the deployment's background work): use update");
        }
        if (change.bump !== false) txn.bump();
        if (old) {
          // The old form: the whole document is rewritten in the new form, with the change.
          const next = queueWrite(txn, keys, id, old, assemble(change.head, old.deployment.instances.map((i) => (i.id === instanceId ? change.instance : i))));
          return { txn, result: { head: headOf(next), instance: next.instances.find((i) => i.id === instanceId)!, changed: true } };
        }
        const nextHead = DeploymentHead.parse(change.head);
        const nextInst = Instance.parse(change.instance);
        txn.op("HSET", keys.deploymentInstances(id), instanceId, encodeInstance(nextInst, row!.ord));
        txn.op("HSET", keys.deployments, id, encodeHead(nextHead, (typeof doc.seq === "number" ? doc.seq : 0) + 1));
        return { txn, result: { head: nextHead, instance: nextInst, changed: true } };
      }, commit);
      return result;
    }),
    remove: (id, check) => storeCall(async () => {
      await withRetry(async () => {
        const cur = await mustRead(id);
        check(cur.deployment);
        const txn = new Txn()
          .guard(keys.deployments, id, cur.raw)
          .op("HDEL", keys.deployments, id)
          .op("DEL", keys.deploymentInstances(id))
          .op("HDEL", keys.modelDeployment, cur.deployment.model_id)
          .op("SREM", keys.work, id);
        applyKeys(txn, id, { del: cur.deployment.instances.map((i) => i.id) });
        // Its instances' engine load scores (health/load.ts) go with it.
        for (const i of cur.deployment.instances) txn.op("HDEL", keys.load, loadField(id, i.id));
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
    upgrade: () => storeCall(async () => (await upgrade()).upgraded),
  };

  // Documents in the old form are rewritten once Redis is ready (again after a reconnect until it succeeded).
  if (deps.upgradeOnReady !== false) {
    let done = false;
    let running = false;
    const run = () => {
      if (done || running) return;
      running = true;
      upgrade()
        .then(({ upgraded, failed }) => {
          done = failed === 0;
          if (upgraded > 0) deps.log?.info("deployments upgraded to per-instance storage", { deployments: upgraded });
        })
        .catch((e: unknown) => deps.log?.warn("deployment storage upgrade failed; retried on the next connection", errorFields(e)))
        .finally(() => {
          running = false;
        });
    };
    redis.on("ready", run);
    if (redis.status === "ready") run();
  }
  return store;
}
