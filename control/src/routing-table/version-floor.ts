/**
 * The table version never goes backwards for a consumer. A Redis restored from an older snapshot (or one
 * that lost its data) holds a lower version than plugins already have, and a plugin never adopts a version
 * at or below its own: without this, writes after the restore (a deleted instance) would not reach it
 * until the stored version caught up on its own. Moving the stored version past the highest one any
 * consumer is known to hold makes the next table — the restored state — newer than all of them.
 */
import type { Redis } from "ioredis";
import { storeCall } from "../redis/client.js";

const SCRIPT = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
-- Unchanged: answered negated, so the caller knows nothing moved.
local floor = tonumber(ARGV[1])
if cur >= floor then return -cur end
local v = floor + 2 + floor % 2
redis.call('SET', KEYS[1], tostring(v))
redis.call('PUBLISH', ARGV[2], tostring(v))
return v
`;

interface FloorRedis extends Redis {
  gwVersionFloor(numKeys: number, key: string, floor: string, channel: string): Promise<number>;
}

/**
 * `raise(floor)`: unless the stored version is at or above `floor` already (a replica merely behind
 * another), it becomes the next even number past floor + 1 (complete tables have even versions; a node's
 * filtered view of V is V − 1, see node-view.ts, and a plugin at that view may have seen V); returns it.
 */
export function createVersionFloor(redis: Redis, versionKey: string, channel: string) {
  if (!(redis as unknown as Partial<FloorRedis>).gwVersionFloor) redis.defineCommand("gwVersionFloor", { lua: SCRIPT });
  return async (floor: number): Promise<{ version: number; raised: boolean }> => {
    if (!Number.isSafeInteger(floor) || floor < 0 || floor >= Number.MAX_SAFE_INTEGER - 2) throw new RangeError(`not a table version: ${floor}`);
    const r = await storeCall(() => (redis as unknown as FloorRedis).gwVersionFloor(1, versionKey, String(floor), channel));
    return { version: Math.abs(r), raised: r > 0 };
  };
}
