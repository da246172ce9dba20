/**
 * Optimistic multi-key transactions without connection affinity.
 *
 * A caller reads what it needs, computes the change, then commits it with guards: the script checks that
 * every guarded hash field still holds exactly the value that was read (or is still absent), then applies
 * all writes, INCRs the table version and PUBLISHes it — atomically, in one Lua script. A failed guard
 * means someone else changed the data in between: the caller re-reads and retries (the same semantics as
 * WATCH/MULTI/EXEC, but safe on a shared, pipelined connection).
 */
import type { Redis } from "ioredis";
import { AppError } from "../http/errors.js";

const SCRIPT = `
local spec = cjson.decode(ARGV[1])
local function arg(i) return ARGV[i + 2] end
for _, g in ipairs(spec.g) do
  local cur = redis.call('HGET', KEYS[g[1]], arg(g[2]))
  if g[3] == 0 then
    if cur ~= false then return -1 end
  elseif cur ~= arg(g[3]) then
    return -1
  end
end
local allowed = { HSET = true, HDEL = true, SADD = true, SREM = true }
for _, o in ipairs(spec.o) do
  if not allowed[o[1]] then return redis.error_reply('op not allowed') end
  local args = { o[1], KEYS[o[2]] }
  for i = 3, #o do args[#args + 1] = arg(o[i]) end
  redis.call(unpack(args))
end
if spec.v then
  local v = redis.call('INCR', KEYS[spec.v])
  redis.call('PUBLISH', ARGV[2], tostring(v))
  return v
end
return 0
`;

type Op = "HSET" | "HDEL" | "SADD" | "SREM";

/*
 * Values travel as plain ARGV (ioredis encodes them as UTF-8 exactly as it decodes replies), never inside
 * the JSON spec: the spec carries only op names and indexes, so a guard compares the very bytes stored.
 */
export class Txn {
  private readonly keys: string[] = [];
  private readonly args: string[] = [];
  private readonly guards: [number, number, number][] = [];
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
  op(op: Op, key: string, ...args: string[]): this {
    this.ops.push([op, this.idx(key), ...args.map((a) => this.arg(a))]);
    return this;
  }
  /** INCR the table version and publish it, in the same script. */
  bump(): this {
    this.bumpVersion = true;
    return this;
  }
  /** @internal */
  encode(versionKey: string): { keys: string[]; spec: string; args: string[] } {
    const v = this.bumpVersion ? this.idx(versionKey) : undefined;
    return { keys: this.keys, spec: JSON.stringify({ g: this.guards, o: this.ops, ...(v ? { v } : {}) }), args: this.args };
  }
}

export type CommitResult = { ok: true; version: number | null } | { ok: false };

interface CasRedis extends Redis {
  gwCas(numKeys: number, ...args: string[]): Promise<number>;
}

/**
 * `afterVersion` runs after a commit that bumped the version, before the caller answers: the control
 * service uses it to have its own routing table at that version first (read-your-writes per replica).
 */
export function createCas(redis: Redis, versionKey: string, channel: string, afterVersion?: (version: number) => Promise<void>) {
  if (!(redis as unknown as Partial<CasRedis>).gwCas) redis.defineCommand("gwCas", { lua: SCRIPT });
  return async function commit(txn: Txn): Promise<CommitResult> {
    const { keys, spec, args } = txn.encode(versionKey);
    const r = await (redis as unknown as CasRedis).gwCas(keys.length, ...keys, spec, channel, ...args);
    if (r === -1) return { ok: false };
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
