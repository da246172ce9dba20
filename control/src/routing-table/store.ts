/**
 * Reads a consistent snapshot (version + all models + all deployments with their instances + upstream API keys)
 * in one MULTI.
 */
import type { Redis } from "ioredis";
import type { Deployment } from "../deployments/schemas.js";
import { readDeployments } from "../deployments/store.js";
import { Model } from "../models/schemas.js";
import { storeCall } from "../redis/client.js";
import type { Keys } from "../redis/keys.js";
import { parseLoadHash, type LoadEntry } from "../health/load.js";

export interface Snapshot {
  version: number;
  models: Model[];
  deployments: Deployment[];
  /** Upstream API keys by `<deployment>/<instance>`: secrets, for the plugin's view of the table only. */
  apiKeys: Record<string, string>;
  /** Engine load scores by `<deployment>/<instance>` (health/load.ts); absent in older test doubles. */
  loads?: ReadonlyMap<string, LoadEntry>;
}

export interface TableStore {
  /** Make sure a version exists (a fresh store starts at 1). */
  ensureVersion(): Promise<void>;
  snapshot(): Promise<Snapshot>;
  /** Pub/sub channel carrying new versions. */
  readonly channel: string;
}

export function createTableStore(deps: { redis: Redis; keys: Keys }): TableStore {
  const { redis, keys } = deps;
  /** The deployment ids of the last snapshot: the next one reads their instances without asking first. */
  let known: string[] | undefined;
  return {
    channel: keys.channel,
    ensureVersion: () => storeCall(async () => {
      await redis.set(keys.version, "1", "NX");
    }),
    snapshot: () => storeCall(async () => {
      // One MULTI: the version, the models, the API keys, every deployment head and every instance hash.
      const { deployments, extra } = await readDeployments(redis, keys, {
        known,
        extra: (m) => m.get(keys.version).hvals(keys.models).hgetall(keys.apiKeys).hgetall(keys.load),
      });
      known = deployments.map((d) => d.id);
      const version = Number(extra[0] ?? 0);
      const models = (extra[1] as string[]).map((r) => Model.parse(JSON.parse(r)));
      return { version, models, deployments, apiKeys: (extra[2] ?? {}) as Record<string, string>, loads: parseLoadHash((extra[3] ?? {}) as Record<string, string>) };
    }),
  };
}
