/** Leases in Redis: one replica at a time does a named piece of background work. */
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;

export interface Lease {
  renew(): Promise<boolean>;
  release(): Promise<void>;
}

export interface LeaseStore {
  acquire(name: string, ttlMs: number): Promise<Lease | null>;
  /** Milliseconds until the named lease expires (0 = free now). */
  remainingMs(name: string): Promise<number>;
  /** The replica holding each named lease (null = nobody). */
  holders(names: string[]): Promise<(string | null)[]>;
  /**
   * Presence in a group of replicas doing the same kind of work (e.g. probing): marks this replica present for
   * `ttlMs` and answers how many replicas are present (itself included). Absent in test doubles: one replica.
   */
  presence?(group: string, ttlMs: number): Promise<number>;
}

interface LeaseRedis extends Redis {
  gwLeaseRelease(key: string, token: string): Promise<number>;
  gwLeaseRenew(key: string, token: string, ttl: string): Promise<number>;
}

export function createLeaseStore(deps: { redis: Redis; keys: Keys; owner: string }): LeaseStore {
  const redis = deps.redis as unknown as LeaseRedis;
  if (!redis.gwLeaseRelease) {
    redis.defineCommand("gwLeaseRelease", { numberOfKeys: 1, lua: RELEASE });
    redis.defineCommand("gwLeaseRenew", { numberOfKeys: 1, lua: RENEW });
  }
  return {
    async acquire(name, ttlMs) {
      const key = deps.keys.lease(name);
      const token = `${deps.owner}:${randomBytes(6).toString("hex")}`;
      const ok = await redis.set(key, token, "PX", ttlMs, "NX");
      if (ok !== "OK") return null;
      return {
        renew: async () => (await redis.gwLeaseRenew(key, token, String(ttlMs))) === 1,
        release: async () => {
          await redis.gwLeaseRelease(key, token);
        },
      };
    },
    async remainingMs(name) {
      return Math.max(0, await redis.pttl(deps.keys.lease(name)));
    },
    async presence(group, ttlMs) {
      // A sorted set per group: member = replica, score = until when it counts as present (its clock).
      const key = deps.keys.lease(`presence:${group}`);
      const now = Date.now();
      const res = await redis.multi().zadd(key, now + ttlMs, deps.owner).zremrangebyscore(key, "-inf", now).zcard(key).pexpire(key, ttlMs * 2).exec();
      if (!res) throw new Error("presence transaction aborted");
      for (const [err] of res) if (err) throw err;
      return Math.max(1, Number(res[2]![1]));
    },
    async holders(names) {
      if (names.length === 0) return [];
      const tokens = await redis.mget(...names.map((n) => deps.keys.lease(n)));
      // token = "<owner>:<random>"
      return tokens.map((t) => (t === null ? null : t.slice(0, Math.max(0, t.lastIndexOf(":")))));
    },
  };
}
