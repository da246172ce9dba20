/**
 * Idempotency-Key records in Redis, and the fence that makes a create with a key happen at most once.
 *
 * Two string keys per key scope (both JSON; `h` = SHA-256 of the scope):
 *   idem:<h>        the record: `{fingerprint, state: in_progress|done, attempt, status?, headers?, body?}`;
 *                   in progress for the claim time (CLAIM_MS), renewed while the request runs — a request
 *                   whose replica died blocks retries for seconds, not a day —, done for the TTL (the answer
 *                   replayed to a retry);
 *   idem:<h>:fence  `{a: attempt, fp, applied?, v?}`: the attempt allowed to commit (cas.ts checks it in the
 *                   commit script) and, once its change is applied, "applied" — written by that same script,
 *                   then kept for the TTL, so a retry never runs a change twice even when the answer is lost.
 *
 * Every step is one Lua script, so the order Redis runs them in decides: a claim that finds neither a
 * record nor an applied fence takes the key and moves the fence to the new attempt (an old attempt's
 * commit arriving late then does nothing); `resolve` learns whether an attempt's change was applied, and if
 * not removes its fence first (its commit can never apply after that).
 */
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import { isConnectionError, isTimeout, mayHaveRun, outcomeUnknown, storeCall } from "../redis/client.js";
import type { Resolved } from "../redis/cas.js";
import type { Durability } from "../redis/durability.js";
import type { Keys } from "../redis/keys.js";

export interface IdempotencyRecord {
  fingerprint: string;
  state: "in_progress" | "done";
  /** The attempt holding the key (records written before fences existed have none). */
  attempt?: string;
  status?: number;
  headers?: Record<string, string>;
  body?: unknown;
}

export type Claim =
  /** The key is this attempt's: run the request (under the fence). */
  | { kind: "run" }
  /** An earlier request with this key finished: replay its answer (if the fingerprint matches). */
  | { kind: "done"; record: IdempotencyRecord }
  /** Used with another request body. */
  | { kind: "reused" }
  /** An earlier request with this key is still running (or its outcome is being learnt). */
  | { kind: "running" }
  /** An earlier request with this key applied its change, and its answer cannot be replayed. */
  | { kind: "applied" };

/** What `complete` did: kept the answer; nothing (the key is another attempt's); or found the change lost. */
export type Completed = "kept" | "stale" | "lost";

export interface IdempotencyStore {
  /** Claim the key for `attempt` (atomic with moving the fence to it). */
  claim(scope: string, fingerprint: string, attempt: string): Promise<Claim>;
  /**
   * Keep the answer (while the key is still this attempt's); the answer is then replayed to retries.
   * `wrote`: the attempt's change was committed under its fence — then the answer is kept only if the fence
   * in the store says "applied" ("lost" otherwise: the change is not there, and the key is freed).
   */
  complete(scope: string, attempt: string, record: Omit<IdempotencyRecord, "attempt">, wrote: boolean): Promise<Completed>;
  /**
   * The attempt ended with an answer that is not kept (5xx, RETRYABLE): if it wrote nothing, the key is
   * freed (a retry runs again) and its fence removed; if it did write, "applied" stays.
   */
  release(scope: string, attempt: string): Promise<Resolved>;
  /** While the outcome of the attempt's commit is unknown: applied, or not (then its fence is removed). */
  resolve(scope: string, attempt: string): Promise<Resolved>;
  /** The fence key of a scope, and how long an applied fence is kept. */
  fenceOf(scope: string): { key: string; ttlSeconds: number };
  /**
   * Run `op` until Redis answers (a timeout is retried at once: the next try runs after the earlier ones on
   * the connection; no connection → backoff), until `deadline` (ms epoch): null = gave up.
   */
  persist<T>(op: () => Promise<T>, deadline: number): Promise<T | null>;
  /**
   * Keep the claim while the attempt runs (its replica is alive): every `claimMs / 3`. A claim not renewed
   * runs out after `claimMs`, so a retry takes over from a replica that died within seconds. False: the key
   * is no longer this attempt's in progress.
   */
  renew(scope: string, attempt: string): Promise<boolean>;
  /** How long a claim lasts without renewal (ms). */
  readonly claimMs: number;
  /**
   * The longest an attempt keeps its claim, and tries to learn or record its outcome in the background (ms):
   * past it nobody is waiting for the answer any more.
   */
  readonly settleMs: number;
}

/*
 * KEYS: record, fence. ARGV: in-progress record JSON, fence JSON, claim ms. A record or an applied fence
 * found is touched (its TTL set again, a write that replicates), so WAIT after the claim covers what it found.
 */
const CLAIM = `
local function touch(k)
  local ttl = redis.call('PTTL', k)
  if ttl > 0 then redis.call('PEXPIRE', k, ttl) end
end
local raw = redis.call('GET', KEYS[1])
if raw then
  touch(KEYS[1])
  return {'record', raw}
end
local f = redis.call('GET', KEYS[2])
if f then
  local fence = cjson.decode(f)
  if fence.applied then
    touch(KEYS[2])
    return {'applied', fence.fp or ''}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return {'run', ''}
`;

/*
 * KEYS: record, fence. ARGV: attempt, done record JSON, TTL seconds, wrote ("1" | "0"). Returns 1 kept, 0 the
 * key is another attempt's (nothing changed), -1 the attempt wrote but its fence is not "applied" here: the
 * change is not in this store (a failover lost it after it was answered by the old primary), so no answer is
 * kept for it — a replay would report a change that does not exist — and the key is freed for a retry.
 */
const COMPLETE = `
local f = redis.call('GET', KEYS[2])
local fence = f and cjson.decode(f)
if fence and fence.a ~= ARGV[1] then return 0 end
if ARGV[4] == '1' and not (fence and fence.applied) then
  if fence then redis.call('DEL', KEYS[2]) end
  local raw = redis.call('GET', KEYS[1])
  if raw then
    local rec = cjson.decode(raw)
    if rec.attempt == ARGV[1] and rec.state ~= 'done' then redis.call('DEL', KEYS[1]) end
  end
  return -1
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
`;

/*
 * KEYS: record, fence. ARGV: attempt, claim ms. Extends the attempt's in-progress record and its fence (until
 * applied: then the fence is kept for the TTL anyway).
 */
const RENEW = `
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local rec = cjson.decode(raw)
if rec.attempt ~= ARGV[1] or rec.state == 'done' then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local f = redis.call('GET', KEYS[2])
if f then
  local fence = cjson.decode(f)
  if fence.a == ARGV[1] and not fence.applied then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
end
return 1
`;

/*
 * KEYS: record, fence. ARGV: attempt, mode ("resolve" | "release"). Returns {1, version} when the attempt's
 * change was applied, {0, 0} when not — and then the attempt's fence is gone (its late commit does nothing)
 * and its in-progress record with it. "release" (the attempt is over) also drops the in-progress record of
 * an applied attempt: retries then learn "applied" at once.
 */
const RESOLVE = `
local function mine()
  local raw = redis.call('GET', KEYS[1])
  if not raw then return false end
  local rec = cjson.decode(raw)
  return rec.attempt == ARGV[1] and rec.state ~= 'done'
end
local f = redis.call('GET', KEYS[2])
local fence = f and cjson.decode(f)
if fence and fence.a == ARGV[1] and fence.applied then
  if ARGV[2] == 'release' and mine() then redis.call('DEL', KEYS[1]) end
  return {1, fence.v or 0}
end
if fence and fence.a == ARGV[1] then redis.call('DEL', KEYS[2]) end
if mine() then redis.call('DEL', KEYS[1]) end
return {0, 0}
`;

interface IdemRedis extends Redis {
  gwIdemClaim(numKeys: number, ...args: string[]): Promise<[string, string]>;
  gwIdemComplete(numKeys: number, ...args: string[]): Promise<1 | 0 | -1>;
  gwIdemResolve(numKeys: number, ...args: string[]): Promise<[number, number]>;
  gwIdemRenew(numKeys: number, ...args: string[]): Promise<number>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

/** How long a claim lasts without renewal: a retry waits at most this long after the replica running the first attempt died. */
export const CLAIM_MS = 5_000;

export function createIdempotencyStore(deps: {
  redis: Redis;
  keys: Keys;
  ttlSeconds: number;
  inProgressSeconds: number;
  claimMs?: number;
  /**
   * A replay (a kept answer, or "applied") reports a change as made, like the commit's own answer did: it is
   * given only once the change is as safe as a commit's (replicas, and with Sentinel the node is the primary).
   * Without this, a retry could be answered from a primary about to be replaced, and the change be lost.
   */
  durability?: Durability;
}): IdempotencyStore {
  const { keys, ttlSeconds } = deps;
  const redis = deps.redis as IdemRedis;
  if (!redis.gwIdemClaim) {
    redis.defineCommand("gwIdemClaim", { lua: CLAIM });
    redis.defineCommand("gwIdemComplete", { lua: COMPLETE });
    redis.defineCommand("gwIdemResolve", { lua: RESOLVE });
    redis.defineCommand("gwIdemRenew", { lua: RENEW });
  }
  // A claim whose request died with the process (or with Redis) must not block retries for long: it is short
  // and renewed while the request runs. Taking over is safe at any time — the claim moves the fence, so the
  // old attempt can no longer commit — the claim only keeps a live attempt from being overtaken needlessly.
  const settleMs = Math.max(1, Math.round(Math.min(ttlSeconds, deps.inProgressSeconds) * 1000));
  const claimMs = Math.min(settleMs, deps.claimMs ?? CLAIM_MS);
  const hash = (scope: string) => createHash("sha256").update(scope).digest("hex");
  const recordKey = (scope: string) => keys.idem(hash(scope));
  const fenceKey = (scope: string) => keys.idem(`${hash(scope)}:fence`);

  const persist = async <T>(op: () => Promise<T>, deadline: number): Promise<T | null> => {
    for (let i = 0; ; i++) {
      try {
        return await op();
      } catch (err) {
        if (!isConnectionError(err)) throw err;
        // Past the claim nobody waits for this any more; a closed connection (the replica stopping) never returns.
        if (Date.now() >= deadline || redis.status === "end") return null;
        if (!isTimeout(err)) await sleep(Math.min(1_000, 25 * 2 ** Math.min(i, 6)));
      }
    }
  };
  /** A write after the answer: tried once in line; if Redis did not take it, again in the background. */
  const settle = async <T>(op: () => Promise<T>): Promise<T> => {
    try {
      return await op();
    } catch (err) {
      if (isConnectionError(err)) void persist(op, Date.now() + settleMs).catch(() => undefined);
      throw err;
    }
  };
  const resolveOp = (scope: string, attempt: string, mode: "resolve" | "release") => async (): Promise<Resolved> => {
    const [applied, version] = await redis.gwIdemResolve(2, recordKey(scope), fenceKey(scope), attempt, mode);
    return applied === 1 ? { applied: true, version: Number(version) } : { applied: false };
  };

  /** Not yet safe: 503 outcome_unknown, and a retry asks again (the claim changed nothing but a TTL). */
  const confirmed = async (socket: unknown, claim: Claim): Promise<Claim> => {
    if (!deps.durability) return claim;
    const ack = await deps.durability.acknowledged(socket);
    if (!ack.ok) throw outcomeUnknown();
    return claim;
  };

  return {
    claimMs,
    settleMs,
    persist,
    renew: async (scope, attempt) => (await redis.gwIdemRenew(2, recordKey(scope), fenceKey(scope), attempt, String(claimMs))) === 1,
    fenceOf: (scope) => ({ key: fenceKey(scope), ttlSeconds }),
    claim: (scope, fingerprint, attempt) =>
      storeCall(async () => {
        const record: IdempotencyRecord = { fingerprint, state: "in_progress", attempt };
        const ready = redis.status === "ready";
        const socket: unknown = redis.stream;
        let kind: string;
        let raw: string;
        try {
          [kind, raw] = await redis.gwIdemClaim(2, recordKey(scope), fenceKey(scope), JSON.stringify(record), JSON.stringify({ a: attempt, fp: fingerprint }), String(claimMs));
        } catch (err) {
          // The claim may still run later: then undo it (it changed nothing else), so the key is not held
          // by a request that already answered 503.
          if (mayHaveRun(err, ready)) void persist(resolveOp(scope, attempt, "release"), Date.now() + settleMs).catch(() => undefined);
          throw err;
        }
        if (kind === "run") return { kind: "run" };
        if (kind === "applied") return raw === fingerprint ? confirmed(socket, { kind: "applied" }) : { kind: "reused" };
        const existing = JSON.parse(raw) as IdempotencyRecord;
        if (existing.fingerprint !== fingerprint) return { kind: "reused" };
        if (existing.state === "done" && existing.status !== undefined) return confirmed(socket, { kind: "done", record: existing });
        return { kind: "running" };
      }),
    complete: (scope, attempt, record, wrote) =>
      settle(async (): Promise<Completed> => {
        const r = await redis.gwIdemComplete(2, recordKey(scope), fenceKey(scope), attempt, JSON.stringify({ ...record, attempt }), String(ttlSeconds), wrote ? "1" : "0");
        return r === 1 ? "kept" : r === 0 ? "stale" : "lost";
      }),
    release: (scope, attempt) => settle(resolveOp(scope, attempt, "release")),
    resolve: (scope, attempt) => resolveOp(scope, attempt, "resolve")(),
  };
}
