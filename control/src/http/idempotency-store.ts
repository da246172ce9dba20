/** Idempotency-Key records in Redis (SET NX with a TTL). */
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import { storeCall } from "../redis/client.js";
import type { Keys } from "../redis/keys.js";

export interface IdempotencyRecord {
  fingerprint: string;
  state: "in_progress" | "done";
  status?: number;
  headers?: Record<string, string>;
  body?: unknown;
}

export interface IdempotencyStore {
  /** Claim the key; returns the existing record if someone already did. */
  claim(scope: string, fingerprint: string): Promise<IdempotencyRecord | null>;
  complete(scope: string, record: IdempotencyRecord): Promise<void>;
  release(scope: string): Promise<void>;
}

export function createIdempotencyStore(deps: { redis: Redis; keys: Keys; ttlSeconds: number; inProgressSeconds: number }): IdempotencyStore {
  const { redis, keys, ttlSeconds } = deps;
  // A claim whose request died with the process (or with Redis) must not block retries for a day.
  const claimTtl = Math.min(ttlSeconds, deps.inProgressSeconds);
  const key = (scope: string) => keys.idem(createHash("sha256").update(scope).digest("hex"));
  return {
    claim: (scope, fingerprint) => storeCall(async () => {
      const rec: IdempotencyRecord = { fingerprint, state: "in_progress" };
      const ok = await redis.set(key(scope), JSON.stringify(rec), "EX", claimTtl, "NX");
      if (ok === "OK") return null;
      const raw = await redis.get(key(scope));
      return raw === null ? null : (JSON.parse(raw) as IdempotencyRecord);
    }),
    complete: (scope, record) => storeCall(async () => {
      await redis.set(key(scope), JSON.stringify(record), "EX", ttlSeconds);
    }),
    release: (scope) => storeCall(async () => {
      await redis.del(key(scope));
    }),
  };
}
