/**
 * Deployment lifecycle: create, read, update, scale (add/remove instances), delete.
 *
 * Create and scale-up test the new instances' connectivity first (connectivity/preflight.ts) and store them
 * with the outcome: `active` (passed), `unreachable` (failed) or `pending` (still being tested when the wait
 * ended). When no instance passed, nothing is stored (422 connectivity_failed, with what each test saw)
 * unless the request sets `allow_unreachable`. Background work (tests of pending instances, migrations) is
 * recorded in the stored document and carried out by the worker (jobs/worker.ts), in any replica.
 */
import { randomBytes } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import { AppError } from "../http/errors.js";
import { checkIfMatch } from "../http/preconditions.js";
import { servedNameOf, type Model } from "../models/schemas.js";
import type { Preflight } from "../connectivity/preflight.js";
import { applyTestResult } from "../migration/steps.js";
import { sameInTable } from "../routing-table/builder.js";
import type { DeploymentStore } from "./store.js";
import {
  activeMigrations,
  isIpLiteral,
  parseInstanceUrl,
  type ConnectivityEvidence,
  type ConnectivityResult,
  type Deployment,
  type DeploymentCreate,
  type DeploymentUpdate,
  type Instance,
  type InstanceAdd,
  type InstanceCreate,
  type InstanceUpdate,
} from "./schemas.js";
import { TABLE_LIMITS } from "../../contracts/routing-table.js";
import { formatAddress } from "../connectivity/address-policy.js";

/** The stored document without what every write changes (revision, updated_at — its own and its instances'). */
function content(d: Deployment): unknown {
  const { revision: _r, updated_at: _u, ...rest } = d;
  return { ...rest, instances: d.instances.map(({ updated_at: _iu, ...i }) => i) };
}

/** A PATCH that would store the same document changes nothing: no write, no table version, no event. */
export const sameDocument = (a: Deployment, b: Deployment): boolean => isDeepStrictEqual(content(a), content(b));

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

/**
 * The routing table carries at most TABLE_LIMITS.maxInstancesPerDeployment instances per deployment, and
 * every stored instance may enter it (a migration's target included): a write that would store more is
 * refused before it commits, so no accepted write can produce a table the contract refuses.
 */
export function ensureRoom(d: Pick<Deployment, "id" | "instances">, adding = 1): void {
  const max = TABLE_LIMITS.maxInstancesPerDeployment;
  if (d.instances.length + adding > max) {
    throw new AppError("limit_exceeded", `deployment ${d.id} has ${d.instances.length} instances (a migration's new instance counts too); a deployment has at most ${max}`);
  }
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

/** A failed instance as evidence (422 `error.instances`, 201/202 `warnings`). */
/**
 * A target the address policy refuses (link-local, cloud metadata, in any spelling) is refused at write
 * time, allow_unreachable or not: it is never stored.
 */
function refuseBlocked(instances: Instance[], path: (k: number) => string): void {
  const blocked = instances.flatMap((i, k) => (i.last_check?.error?.code === "blocked_address" ? [{ path: path(k), message: i.last_check.error.message }] : []));
  if (blocked.length > 0) throw new AppError("blocked_address", `${blocked.length === 1 ? "the target address is" : "target addresses are"} not allowed: ${blocked[0]!.message}`, blocked);
}

/**
 * A server the deployment already has — the same canonical ip:port under another spelling
 * (`[::ffff:127.0.0.1]:P` is `127.0.0.1:P`) or another instance id — is refused at write time (409),
 * allow_unreachable or not: Envoy keys a cluster's hosts by address, so it could never be a second instance.
 */
function refuseDuplicates(instances: Instance[], path: (k: number) => string): void {
  const dup = instances.flatMap((i, k) => (i.last_check?.error?.code === "duplicate_address" ? [{ path: path(k), message: i.last_check.error.message }] : []));
  if (dup.length > 0) throw new AppError("duplicate_address", `the deployment already has this server: ${dup[0]!.message}`, dup);
}

/** The server an instance names: its tested address, or — before any test — its URL's IP literal (canonical). */
function serverOf(i: Pick<Instance, "host" | "port" | "address">): string | null {
  if (i.address !== null) return i.address.toLowerCase();
  return isIpLiteral(i.host) ? formatAddress(i.host, i.port).toLowerCase() : null;
}

/**
 * The same server twice, known before any test (an IP literal, in any spelling): refused at once, so the
 * answer does not depend on whether the connectivity test finishes within the wait.
 */
function refuseSameServer(existing: Instance[], candidates: { inst: Instance; path: string }[]): void {
  const seen = new Map<string, string>();
  for (const e of existing) {
    const a = serverOf(e);
    if (a !== null) seen.set(a, e.id);
  }
  const issues: { path: string; message: string }[] = [];
  for (const { inst, path } of candidates) {
    const a = serverOf(inst);
    if (a === null) continue;
    const other = seen.get(a);
    if (other !== undefined) issues.push({ path, message: `${a} is already served by instance ${other} of this deployment` });
    else seen.set(a, inst.id);
  }
  if (issues.length > 0) throw new AppError("duplicate_address", `the deployment already has this server: ${issues[0]!.message}`, issues);
}

export function evidenceOf(i: Instance): ConnectivityEvidence {
  const check = i.last_check!;
  return { instance_id: i.id, url: i.url, code: check.error?.code ?? "failed", message: check.error?.message ?? "the connectivity test failed", check };
}

/** One line per failure, for `issues` (shown at the instance's URL field by clients such as the dashboard). */
function evidenceLine(e: ConnectivityEvidence): string {
  const c = e.check;
  const extra = [c.address ? `at ${c.address}` : null, c.detail ? `“${c.detail}”` : null].filter((x) => x !== null);
  return `connectivity test failed: ${e.code} — ${e.message}${extra.length > 0 ? ` (${extra.join(", ")})` : ""}`;
}

function connectivityFailed(what: string, failed: { evidence: ConnectivityEvidence; path: string }[]): AppError {
  const list = failed.map((f) => `${f.evidence.instance_id}: ${f.evidence.code}`).join(", ");
  return new AppError(
    "connectivity_failed",
    `${what}: no instance passed its connectivity test (${list}); nothing was stored. Fix the instances and retry, or send allow_unreachable: true to store them anyway`,
    failed.map((f) => ({ path: f.path, message: evidenceLine(f.evidence) })),
    { instances: failed.map((f) => f.evidence) },
  );
}

/** Results of tests run before storing, applied as the worker applies its own (duplicate addresses included). */
function withResults(d: Deployment, results: Map<string, ConnectivityResult>, at: number): Deployment {
  let next = d;
  for (const inst of d.instances) {
    const r = results.get(inst.id);
    // Not a migration's target: the health deadline (last argument) does not apply.
    if (r) next = applyTestResult(next, inst.id, r, at, 0)?.next ?? next;
  }
  return next;
}

export interface Created<T> {
  /** What was stored. */
  value: T;
  deployment: Deployment;
  /** Failed instances stored anyway (allow_unreachable, or another instance passed). */
  warnings: ConnectivityEvidence[];
  /** Some instance is still `pending` (its test outlasted the wait; the worker finishes it): 202. */
  pending: boolean;
}

export function createDeploymentService(deps: {
  store: Pick<DeploymentStore, "get" | "list" | "create" | "update" | "remove" | "deploymentOf">;
  models: { resolve(ref: string): Promise<Model | null> };
  preflight: Preflight;
  now?: () => Date;
}) {
  const { store } = deps;
  const now = () => (deps.now?.() ?? new Date()).toISOString();
  const touch = (d: Deployment, at: string): Deployment => ({ ...d, revision: d.revision + 1, updated_at: at });
  const get = async (id: string): Promise<Deployment> => {
    const d = await store.get(id);
    if (!d) throw new AppError("not_found", `deployment ${id} not found`);
    return d;
  };

  return {
    /**
     * Test the instances, then store the deployment with the outcome (one write, one table version). No
     * instance passed → 422 connectivity_failed and nothing stored, unless `allow_unreachable`.
     */
    async create(input: DeploymentCreate): Promise<Created<Deployment>> {
      const model = await deps.models.resolve(input.model);
      if (!model) throw new AppError("unknown_model", `model ${input.model} is not registered`, [{ path: "model", message: "not a registered model id, name or alias" }]);
      // What the store would refuse, refused before the tests (they take up to seconds); the store checks again.
      if (input.id !== undefined && (await store.get(input.id))) throw new AppError("already_exists", `deployment ${input.id} already exists`);
      const servedBy = await store.deploymentOf(model.id);
      if (servedBy !== null) throw new AppError("already_exists", `model ${model.id} is already served by deployment ${servedBy}`);
      const at = now();
      const d: Deployment = {
        id: input.id ?? newId("d"),
        model_id: model.id,
        strategy: input.strategy,
        on_unavailable: input.on_unavailable,
        forward_client_credentials: input.forward_client_credentials,
        extra_paths: input.extra_paths,
        ...(input.affinity !== undefined ? { affinity: input.affinity } : {}),
        load_signals: input.load_signals,
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
      refuseSameServer([], d.instances.map((inst, k) => ({ inst, path: `instances.${k}.url` })));
      const outcome = await deps.preflight.run(
        d.instances.map((i) => ({ id: i.id, target: i, apiKey: apiKeys[i.id] ?? null })),
        { model: servedNameOf(model), allowUnreachable: input.allow_unreachable, log: { deployment: d.id } },
      );
      const tested = withResults(d, outcome.results, Date.now());
      refuseBlocked(tested.instances, (k) => `instances.${k}.url`);
      refuseDuplicates(tested.instances, (k) => `instances.${k}.url`);
      const failed = tested.instances.flatMap((i, k) => (i.state === "unreachable" ? [{ evidence: evidenceOf(i), path: `instances.${k}.url` }] : []));
      if (tested.instances.length > 0 && !tested.instances.some((i) => i.state === "active") && !input.allow_unreachable) {
        throw connectivityFailed(input.id !== undefined ? `deployment ${input.id}` : "the deployment", failed);
      }
      await store.create(tested, apiKeys);
      return { value: tested, deployment: tested, warnings: failed.map((f) => f.evidence), pending: tested.instances.some((i) => i.state === "pending") };
    },
    list: () => store.list(),
    get,
    update(id: string, patch: DeploymentUpdate, ifMatch: string | undefined): Promise<Deployment> {
      return store.update(id, (cur) => {
        checkIfMatch(ifMatch, cur.revision);
        const next = touch(cur, now());
        if (patch.strategy !== undefined) next.strategy = patch.strategy;
        if (patch.on_unavailable !== undefined) next.on_unavailable = patch.on_unavailable;
        if (patch.forward_client_credentials !== undefined) next.forward_client_credentials = patch.forward_client_credentials;
        if (patch.extra_paths !== undefined) next.extra_paths = patch.extra_paths;
        if (patch.affinity === null) delete next.affinity;
        else if (patch.affinity !== undefined) next.affinity = patch.affinity;
        if (patch.load_signals !== undefined) next.load_signals = patch.load_signals;
        if (patch.health_check !== undefined) next.health_check = { ...cur.health_check, ...patch.health_check };
        // Nothing changes: answer the current document, write nothing (no new table version, no event).
        if (sameDocument(cur, next)) return null;
        return { next };
      });
    },
    remove(id: string, ifMatch: string | undefined): Promise<void> {
      return store.remove(id, (cur) => checkIfMatch(ifMatch, cur.revision));
    },
    /**
     * Scale up: the new instance is tested, then stored with the outcome (`active` joins the table in the
     * same write). A failed test → 422 connectivity_failed and nothing stored, unless `allow_unreachable`.
     */
    async addInstance(id: string, input: InstanceAdd, ifMatch: string | undefined): Promise<Created<Instance>> {
      const canAdd = (cur: Deployment, instanceId: string | undefined): string => {
        checkIfMatch(ifMatch, cur.revision);
        ensureRoom(cur);
        return uniqueInstanceId(cur, instanceId);
      };
      // What the write would refuse, refused before the test (it takes up to seconds); the write checks again.
      const before = await get(id);
      const instanceId = canAdd(before, input.id);
      const model = await deps.models.resolve(before.model_id);
      if (!model) throw new AppError("invalid_state", `deployment ${id} refers to a missing model ${before.model_id}`);
      const candidate = newInstance(input, instanceId, now());
      refuseSameServer(before.instances, [{ inst: candidate, path: "url" }]);
      const outcome = await deps.preflight.run([{ id: instanceId, target: candidate, apiKey: input.api_key ?? null }], {
        model: servedNameOf(model),
        allowUnreachable: input.allow_unreachable,
        log: { deployment: id },
      });
      let added: Instance | undefined;
      const deployment = await store.update(id, (cur) => {
        canAdd(cur, instanceId);
        refuseSameServer(cur.instances, [{ inst: candidate, path: "url" }]);
        const at = now();
        let next = touch(cur, at);
        next.instances = [...cur.instances, { ...candidate, created_at: at, updated_at: at }];
        // Applied to the current pool: a passed test on an address the pool already serves is duplicate_address.
        next = withResults(next, outcome.results, Date.now());
        added = next.instances.find((i) => i.id === instanceId)!;
        refuseBlocked([added], () => "url");
        refuseDuplicates([added], () => "url");
        if (added.state === "unreachable" && !input.allow_unreachable) throw connectivityFailed(`instance ${instanceId}`, [{ evidence: evidenceOf(added), path: "url" }]);
        return { next, keys: input.api_key !== undefined ? { set: { [instanceId]: input.api_key } } : undefined, bump: !sameInTable(cur, next) };
      });
      const inst = added!;
      return { value: inst, deployment, warnings: inst.state === "unreachable" ? [evidenceOf(inst)] : [], pending: inst.state === "pending" };
    },
    async updateInstance(id: string, instanceId: string, patch: InstanceUpdate, ifMatch: string | undefined): Promise<Deployment> {
      return store.update(id, (cur) => {
        checkIfMatch(ifMatch, cur.revision);
        const inst = findInstance(cur, instanceId);
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
        // Removing a key the instance does not have is no key change.
        const keys =
          patch.api_key === undefined || (patch.api_key === null && !inst.has_api_key)
            ? undefined
            : patch.api_key === null
              ? { del: [instanceId] }
              : { set: { [instanceId]: patch.api_key } };
        // Nothing changes (a new key value is a change even though the document only says has_api_key).
        if (keys === undefined && sameDocument(cur, next)) return null;
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
