/**
 * Optimistic multi-key transactions without connection affinity.
 *
 * A caller reads what it needs, computes the change, then commits it with guards: the script checks that
 * every guarded hash field still holds exactly the value that was read (or is still absent), then applies
 * all writes, moves the table version to the next even number and PUBLISHes it — atomically, in one Lua script. A failed guard
 * means someone else changed the data in between: the caller re-reads and retries (the same semantics as
 * WATCH/MULTI/EXEC, but safe on a shared, pipelined connection).
 *
 * Unknown outcomes. A commit that was sent and got no answer (command timeout, connection lost in flight)
 * may still run later — Redis paused for writes runs it when it resumes. So it is never answered "not
 * made": it throws `outcome_unknown`. A request with an Idempotency-Key commits under a **fence**
 * (`fences`, an AsyncLocalStorage set by the idempotency middleware): the script runs only while the fence
 * key still names this attempt (else it returns -2 and does nothing), and when it writes it marks the fence
 * "applied", in the same script. Then the outcome can be learnt exactly (`Fence.resolve`, sent on the same
 * connection, so it runs after the lost commit): applied, or not — and then the fence is removed, so the
 * lost commit can never apply later. The request answers 503 `outcome_unknown` at once (`Fence.detach`) and
 * keeps going in the background: once applied, the handler finishes and its answer is recorded for a retry
 * with the same key (idempotency.ts).
 *
 * Durable answers. With replicas (`durability`, durability.ts) a commit that wrote is answered only once
 * enough replicas acknowledged it (WAIT): a primary failover then cannot lose it. When they do not in time
 * the change is applied on the primary but may be lost if the primary fails now — the same uncertainty as a
 * lost answer, answered the same way: 503 `outcome_unknown`. Under a fence the request is answered at once
 * and the outcome learnt as above (`Fence.resolve`, on whatever primary there is by then): applied → the
 * handler goes on and its answer is recorded for a retry with the same key; lost in a failover (the fence,
 * written by the same script, is not "applied" on the new primary) → not made, the key is freed.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Redis } from "ioredis";
import { AppError } from "../http/errors.js";
import { mayHaveRun, outcomeUnknown, storeUnavailable } from "./client.js";
import type { Durability } from "./durability.js";
import type { Logger } from "../log.js";

/**
 * Lua: moves the table version to the next even number and publishes it, returning it. Complete tables
 * have even versions (a node's filtered view of V is V - 1: routing-table/node-view.ts). One definition
 * for every script that moves the version (commits here, coalesced load scores in health/load.ts).
 */
export const LUA_NEXT_TABLE_VERSION = `
local function next_table_version(key, channel)
  local v = redis.call('INCR', key)
  if v % 2 == 1 then v = redis.call('INCR', key) end
  redis.call('PUBLISH', channel, tostring(v))
  return v
end
`;

const SCRIPT = `${LUA_NEXT_TABLE_VERSION}
local spec = cjson.decode(ARGV[1])
local function arg(i) return ARGV[i + 2] end
local fence
if spec.f then
  local raw = redis.call('GET', KEYS[spec.f[1]])
  if not raw then return -2 end
  fence = cjson.decode(raw)
  if fence.a ~= arg(spec.f[2]) then return -2 end
end
for _, l in ipairs(spec.l or {}) do
  if redis.call('HLEN', KEYS[l[1]]) > l[2] then return -1 end
end
for _, g in ipairs(spec.g) do
  local cur = redis.call('HGET', KEYS[g[1]], arg(g[2]))
  if g[3] == 0 then
    if cur ~= false then return -1 end
  elseif cur ~= arg(g[3]) then
    return -1
  end
end
local allowed = { HSET = true, HDEL = true, SADD = true, SREM = true, DEL = true }
for _, o in ipairs(spec.o) do
  if not allowed[o[1]] then return redis.error_reply('op not allowed') end
  local args = { o[1], KEYS[o[2]] }
  for i = 3, #o do args[#args + 1] = arg(o[i]) end
  redis.call(unpack(args))
end
local v = 0
if spec.v then
  v = next_table_version(KEYS[spec.v], ARGV[2])
end
if fence and #spec.o > 0 then
  fence.applied = true
  fence.v = v
  redis.call('SET', KEYS[spec.f[1]], cjson.encode(fence), 'EX', spec.f[3])
end
return v
`;

type Op = "HSET" | "HDEL" | "SADD" | "SREM" | "DEL";

/*
 * Values travel as plain ARGV (ioredis encodes them as UTF-8 exactly as it decodes replies), never inside
 * the JSON spec: the spec carries only op names and indexes, so a guard compares the very bytes stored.
 */
export class Txn {
  private readonly keys: string[] = [];
  private readonly args: string[] = [];
  private readonly guards: [number, number, number][] = [];
  private readonly sizeGuards: [number, number][] = [];
  private readonly ops: (string | number)[][] = [];
  private bumpVersion = false;

  private arg(v: string): number {
    return this.args.push(v);
  }
  private idx(key: string): number {
    let i = this.keys.indexOf(key);
    if (i < 0) i = this.keys.push(key) - 1;
    return i + 1;
  }
  /** The commit fails (and is retried by the caller) unless HGET key field still equals `expected` (null = absent). */
  guard(key: string, field: string, expected: string | null): this {
    this.guards.push([this.idx(key), this.arg(field), expected === null ? 0 : this.arg(expected)]);
    return this;
  }
  /**
   * The commit fails (and is retried) unless the hash `key` has at most `max` fields before the writes: a
   * caller adding n fields under a limit L passes L − n. Writes far from the limit never conflict; at the
   * limit, concurrent writers cannot all pass (the retry re-reads the size and refuses).
   */
  guardSize(key: string, max: number): this {
    this.sizeGuards.push([this.idx(key), max]);
    return this;
  }
  op(op: Op, key: string, ...args: string[]): this {
    this.ops.push([op, this.idx(key), ...args.map((a) => this.arg(a))]);
    return this;
  }
  /** Move the table version to the next even number and publish it, in the same script. */
  bump(): this {
    this.bumpVersion = true;
    return this;
  }
  /** Whether the commit writes anything (a commit without ops only confirms what was read). */
  get writes(): boolean {
    return this.ops.length > 0;
  }
  /** @internal */
  encode(versionKey: string, fence?: Pick<Fence, "key" | "attempt" | "ttlSeconds">): { keys: string[]; spec: string; args: string[] } {
    const keys = [...this.keys];
    const args = [...this.args];
    const idx = (key: string) => {
      let i = keys.indexOf(key);
      if (i < 0) i = keys.push(key) - 1;
      return i + 1;
    };
    const v = this.bumpVersion ? idx(versionKey) : undefined;
    const f = fence ? [idx(fence.key), args.push(fence.attempt), Math.max(1, Math.ceil(fence.ttlSeconds))] : undefined;
    return { keys, spec: JSON.stringify({ g: this.guards, o: this.ops, ...(this.sizeGuards.length > 0 ? { l: this.sizeGuards } : {}), ...(v ? { v } : {}), ...(f ? { f } : {}) }), args };
  }
}

export type CommitResult = { ok: true; version: number | null } | { ok: false };

/** What `Fence.resolve` learnt: the attempt's change was applied (with the version it bumped to, 0 = none), or not. */
export type Resolved = { applied: true; version: number } | { applied: false };

/**
 * The idempotency context of one request (set by the idempotency middleware for the handler's async
 * chain). `key` holds JSON `{a: attempt, applied?, v?}`: commits run only while `a` is this attempt.
 */
export interface Fence {
  key: string;
  attempt: string;
  /** How long the fence is kept once the change is applied (the idempotency records' TTL). */
  ttlSeconds: number;
  /**
   * False once the request answered (later commits are background work it started, not its change), and
   * after its first change was applied (the fence marks one change; a second writing commit in the same
   * request runs unfenced, and an unknown outcome of it is answered as for a request without a key).
   */
  active: boolean;
  /**
   * The request's change was committed under this fence (the commit marked it "applied"): its answer may be
   * kept for a retry only while the store's fence still says so (idempotency-store.ts COMPLETE).
   */
  wrote: boolean;
  /**
   * The commit's outcome is unknown: answer the client 503 `outcome_unknown` now and let the handler go on
   * in the background (its answer is then recorded, not sent). False when that is not possible.
   */
  detach(): boolean;
  /** Learn the outcome (retried until Redis answers, bounded): null = gave up. Not applied → the fence is gone. */
  resolve(): Promise<Resolved | null>;
}

/** The fence of the request being handled, if it has an Idempotency-Key. */
export const fences = new AsyncLocalStorage<Fence>();

interface CasRedis extends Redis {
  gwCas(numKeys: number, ...args: string[]): Promise<number>;
}

/**
 * `afterVersion` runs after a commit that bumped the version, before the caller answers: the control
 * service uses it to have its own routing table at that version first (read-your-writes per replica).
 */
export function createCas(
  redis: Redis,
  versionKey: string,
  channel: string,
  afterVersion?: (version: number) => Promise<void>,
  opts: { durability?: Durability; log?: Logger } = {},
) {
  if (!(redis as unknown as Partial<CasRedis>).gwCas) redis.defineCommand("gwCas", { lua: SCRIPT });
  /**
   * Errors: a connection failure before the script was sent → thrown as is (the store's `storeCall` makes it
   * 503 `store_unavailable`: not made). Sent, no answer → 503 `outcome_unknown`; under a fence the request
   * is answered that way at once and this call waits for the real outcome (see the module comment).
   */
  return async function commit(txn: Txn): Promise<CommitResult> {
    const current = fences.getStore();
    const fence = current?.active ? current : undefined;
    const { keys, spec, args } = txn.encode(versionKey, fence);
    const ready = redis.status === "ready";
    // The connection the script goes out on: durability asks about that one (and knows if it was replaced).
    const socket: unknown = redis.stream;
    let r: number;
    let detached = false;
    /**
     * The outcome is in doubt: the client gets outcome_unknown now (Fence.detach, once), and what follows
     * is only recorded for a retry with the same key. Returns the version once the change is known to be
     * on the primary; not applied → the fence is gone, the lost commit can never run its writes — truly
     * not made (store_unavailable).
     */
    const settle = async (): Promise<number> => {
      if (!fence) throw outcomeUnknown();
      if (!detached) {
        if (!fence.detach()) throw outcomeUnknown();
        detached = true;
      }
      const resolved = await fence.resolve();
      if (resolved === null) throw outcomeUnknown();
      if (!resolved.applied) throw storeUnavailable();
      return resolved.version;
    };
    try {
      r = await (redis as unknown as CasRedis).gwCas(keys.length, ...keys, spec, channel, ...args);
    } catch (err) {
      if (!mayHaveRun(err, ready)) throw err;
      r = await settle();
    }
    if (r === -2) {
      throw new AppError("write_conflict", "another request with the same Idempotency-Key has taken over (this one ran past its claim); nothing was written by this one");
    }
    if (r === -1) return { ok: false };
    if (opts.durability && (txn.writes || r > 0)) {
      const ack = await opts.durability.acknowledged(socket);
      if (!ack.ok) {
        opts.log?.warn("write not acknowledged: answered outcome_unknown", { why: ack.why, needed: ack.needed, acked: ack.acked, version: r });
        // Before going on, learn whether the change is on the primary now: after a failover that lost it,
        // the fence there is not "applied" — going on would record an answer for a change that does not exist.
        await settle();
      }
    }
    if (fence && txn.writes) {
      fence.active = false;
      fence.wrote = true;
    }
    if (r > 0 && afterVersion) await afterVersion(r);
    return { ok: true, version: r > 0 ? r : null };
  };
}

export type Commit = ReturnType<typeof createCas>;

/**
 * How hard `withRetry` tries before giving up on a contended write. Every failed attempt means another
 * write committed in between (progress overall), so the budget is generous: up to `maxAttempts` attempts
 * within `budgetMs`, with full-jitter exponential backoff (random in [0, min(capMs, baseMs·2^i)]) so that
 * writers racing for one document spread out instead of colliding again in lockstep.
 */
export const RETRY = { maxAttempts: 200, budgetMs: 5_000, baseMs: 2, capMs: 100 };

/**
 * Read → compute → commit, retried on conflict. `attempt` returns the transaction or throws an AppError.
 * Retries exhausted → 409 write_conflict (nothing was written; sending the request again may succeed),
 * never a 500.
 */
export async function withRetry<T>(
  attempt: () => Promise<{ txn: Txn; result: T }>,
  commit: Commit,
  opts: Partial<typeof RETRY> = {},
): Promise<{ result: T; version: number | null }> {
  const { maxAttempts, budgetMs, baseMs, capMs } = { ...RETRY, ...opts };
  const t0 = Date.now();
  for (let i = 0; ; i++) {
    const { txn, result } = await attempt();
    const r = await commit(txn);
    if (r.ok) return { result, version: r.version };
    const delay = Math.random() * Math.min(capMs, baseMs * 2 ** Math.min(i, 20));
    if (i + 1 >= maxAttempts || Date.now() - t0 + delay > budgetMs) break;
    await new Promise((res) => setTimeout(res, delay));
  }
  throw new AppError("write_conflict", "too many concurrent changes to the same data; nothing was written, retry the request");
}
