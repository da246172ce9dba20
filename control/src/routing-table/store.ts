/** Reads a consistent snapshot (version + all models + all deployments + upstream API keys) in one MULTI. */
import type { Redis } from "ioredis";
import { Deployment } from "../deployments/schemas.js";
import { Model } from "../models/schemas.js";
import { storeCall } from "../redis/client.js";
import type { Keys } from "../redis/keys.js";

export interface Snapshot {
  version: number;
  models: Model[];
  deployments: Deployment[];
  /** Upstream API keys by `<deployment>/<instance>`: secrets, for the plugin's view of the table only. */
  apiKeys: Record<string, string>;
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
  return {
    channel: keys.channel,
    ensureVersion: () => storeCall(async () => {
      await redis.set(keys.version, "1", "NX");
    }),
    snapshot: () => storeCall(async () => {
      const res = await redis.multi().get(keys.version).hvals(keys.models).hvals(keys.deployments).hgetall(keys.apiKeys).exec();
      if (!res) throw new Error("snapshot transaction aborted");
      for (const [err] of res) if (err) throw err;
      const version = Number(res[0]![1] ?? 0);
      const models = (res[1]![1] as string[]).map((r) => Model.parse(JSON.parse(r)));
      const deployments = (res[2]![1] as string[]).map((r) => Deployment.parse(JSON.parse(r)));
      return { version, models, deployments, apiKeys: (res[3]![1] ?? {}) as Record<string, string> };
    }),
  };
}
