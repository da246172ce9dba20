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

export interface HealthStore {
  states(deployment: string): Promise<Map<string, ProbeState>>;
  saveState(deployment: string, instance: string, s: ProbeState): Promise<void>;
  dropStates(deployment: string, keep: string[]): Promise<void>;
  addEvent(deployment: string, instance: string, e: InstanceEvent): Promise<void>;
  events(deployment: string, instance: string, limit: number): Promise<InstanceEvent[]>;
}

export function createHealthStore(deps: { redis: Redis; keys: Keys; eventsPerInstance: number }): HealthStore {
  const { redis, keys } = deps;
  const saveStates = coalesce<{ dep: string; inst: string; json: string }>((items) =>
    storeCall(async () => {
      const byDep = new Map<string, string[]>();
      for (const { dep, inst, json } of items) {
        let fields = byDep.get(dep);
        if (!fields) byDep.set(dep, (fields = []));
        fields.push(inst, json); // a later state of the same instance comes later: HSET keeps the last
      }
      const p = redis.pipeline();
      for (const [dep, fields] of byDep) p.hset(keys.health(dep), ...fields);
      for (const [err] of (await p.exec()) ?? []) if (err) throw err;
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
    saveState: (dep, inst, s) => saveStates({ dep, inst, json: JSON.stringify(s) }),
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
