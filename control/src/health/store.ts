/**
 * The prober's per-instance state (`health:<dep>` hash: consecutive counts, recent probes, last
 * verdict) and the event timelines (`events:<dep>/<inst>` lists, newest first, capped). Only the
 * replica holding a deployment's probe lease writes its state, so a takeover continues the counts.
 */
import type { Redis } from "ioredis";
import { storeCall } from "../redis/client.js";
import { coalesce } from "../redis/coalesce.js";
import type { Keys } from "../redis/keys.js";
import type { InstanceEvent, ProbeResult } from "./schemas.js";

export interface ProbeState {
  probes: number;
  successes: number;
  failures: number;
  /** The last completion probe failed: every probe is a completion until one passes. */
  broken: boolean;
  recent: ProbeResult[];
  reason: string | null;
  since: string | null;
  /** Traffic thresholds look only at buckets starting at or after this (set at (re-)admission). */
  traffic_since_ms: number | null;
  /** Thresholds currently crossed (an event is written on each change). */
  crossed: string[];
}

export const RECENT_PROBES = 10;
const EVENTS_TTL_SECONDS = 7 * 86_400;

export const newProbeState = (): ProbeState => ({ probes: 0, successes: 0, failures: 0, broken: false, recent: [], reason: null, since: null, traffic_since_ms: null, crossed: [] });

/** Each probe result's JSON, written once: a result stays in `recent` for RECENT_PROBES saves (results are never changed). */
const resultJson = new WeakMap<ProbeResult, string>();
const KNOWN_KEYS = Object.keys(newProbeState()).length;
const numJson = (v: number) => (Number.isFinite(v) ? String(v) : "null");

/**
 * JSON.stringify(s), the same text, with each recent result serialized once (not once per save: at 2,000 probes a
 * second the ten recent results were most of the state's serialization). A state of another shape (unknown keys
 * from a newer replica, odd values from a damaged entry) goes through JSON.stringify.
 */
export function stateJson(s: ProbeState): string {
  if (
    typeof s.probes !== "number" || typeof s.successes !== "number" || typeof s.failures !== "number" || typeof s.broken !== "boolean" ||
    !Array.isArray(s.recent) || !(s.reason === null || typeof s.reason === "string") || !(s.since === null || typeof s.since === "string") ||
    !(s.traffic_since_ms === null || typeof s.traffic_since_ms === "number") || !Array.isArray(s.crossed) || Object.keys(s).length !== KNOWN_KEYS
  ) {
    return JSON.stringify(s);
  }
  let recent = "";
  for (let k = 0; k < s.recent.length; k++) {
    const r = s.recent[k]!;
    let j = typeof r === "object" && r !== null ? resultJson.get(r) : undefined;
    if (j === undefined) {
      j = JSON.stringify(r) ?? "null";
      if (typeof r === "object" && r !== null) resultJson.set(r, j);
    }
    recent += k === 0 ? j : `,${j}`;
  }
  return `{"probes":${numJson(s.probes)},"successes":${numJson(s.successes)},"failures":${numJson(s.failures)},"broken":${s.broken},"recent":[${recent}],` +
    `"reason":${JSON.stringify(s.reason)},"since":${JSON.stringify(s.since)},"traffic_since_ms":${s.traffic_since_ms === null ? "null" : numJson(s.traffic_since_ms)},"crossed":${JSON.stringify(s.crossed)}}`;
}

export interface HealthStore {
  states(deployment: string): Promise<Map<string, ProbeState>>;
  saveState(deployment: string, instance: string, s: ProbeState): Promise<void>;
  dropStates(deployment: string, keep: string[]): Promise<void>;
  addEvent(deployment: string, instance: string, e: InstanceEvent): Promise<void>;
  events(deployment: string, instance: string, limit: number): Promise<InstanceEvent[]>;
}

// KEYS = health hashes; ARGV = per key: the number of fields, then field, value, … (HSET, the last value of a field wins).
const SAVE_STATES = `
local a = 1
for i = 1, #KEYS do
  local n = tonumber(ARGV[a])
  redis.call('HSET', KEYS[i], unpack(ARGV, a + 1, a + 2 * n))
  a = a + 1 + 2 * n
end
return 1
`;

interface HealthRedis extends Redis {
  gwHealthSave(numKeys: number, ...args: string[]): Promise<number>;
}

export function createHealthStore(deps: { redis: Redis; keys: Keys; eventsPerInstance: number }): HealthStore {
  const { keys } = deps;
  const redis = deps.redis as HealthRedis;
  if (!redis.gwHealthSave) deps.redis.defineCommand("gwHealthSave", { lua: SAVE_STATES });
  const saveStates = coalesce<{ dep: string; inst: string; json: string }>((items) =>
    storeCall(async () => {
      const byDep = new Map<string, string[]>();
      for (const { dep, inst, json } of items) {
        let fields = byDep.get(dep);
        if (!fields) byDep.set(dep, (fields = []));
        fields.push(inst, json); // a later state of the same instance comes later: HSET keeps the last
      }
      // One command for the whole flush (an HSET per deployment inside): a flush carries probes of many deployments.
      const healthKeys: string[] = [];
      const args: string[] = [];
      for (const [dep, fields] of byDep) {
        healthKeys.push(keys.health(dep));
        args.push(String(fields.length / 2), ...fields);
      }
      await redis.gwHealthSave(healthKeys.length, ...healthKeys, ...args);
    }),
  );
  return {
    states: (dep) =>
      storeCall(async () => {
        const raw = await redis.hgetall(keys.health(dep));
        const out = new Map<string, ProbeState>();
        for (const [id, json] of Object.entries(raw)) {
          try {
            out.set(id, { ...newProbeState(), ...(JSON.parse(json) as Partial<ProbeState>) });
          } catch {
            /* a damaged entry restarts the counts */
          }
        }
        return out;
      }),
    // The states saved in one event-loop turn (one per finished probe) go out as one HSET per deployment.
    saveState: (dep, inst, s) => saveStates({ dep, inst, json: stateJson(s) }),
    dropStates: (dep, keep) =>
      storeCall(async () => {
        const ids = await redis.hkeys(keys.health(dep));
        const gone = ids.filter((i) => !keep.includes(i));
        if (gone.length > 0) await redis.hdel(keys.health(dep), ...gone);
      }),
    addEvent: (dep, inst, e) =>
      storeCall(async () => {
        const k = keys.events(dep, inst);
        await redis.multi().lpush(k, JSON.stringify(e)).ltrim(k, 0, deps.eventsPerInstance - 1).expire(k, EVENTS_TTL_SECONDS).exec();
      }),
    events: (dep, inst, limit) =>
      storeCall(async () => {
        const raw = await redis.lrange(keys.events(dep, inst), 0, Math.min(limit, deps.eventsPerInstance) - 1);
        return raw.flatMap((r) => {
          try {
            return [JSON.parse(r) as InstanceEvent];
          } catch {
            return [];
          }
        });
      }),
  };
}
