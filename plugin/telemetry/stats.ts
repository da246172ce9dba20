// Per-instance counters of one worker VM (telemetry, contract 3) and its passive-ejection state.
// One InstanceStats per (deployment id, instance id, address), created when a table is compiled and
// carried over to the next table version when it keeps the same triple; allocated once, so counting
// a request allocates nothing.
import { BUCKET_COUNT, MAX_COUNT, bucketOf } from "./buckets";
import { NO_METRIC } from "../abi/metrics";
import { Deployment } from "../table/routing_table";

export class InstanceStats {
  requests: u32 = 0;
  upstream5xx: u32 = 0;
  connectFailures: u32 = 0;
  buckets: StaticArray<u32> = new StaticArray<u32>(BUCKET_COUNT);
  /** Sum of the observed latencies in microseconds. */
  latencySumUs: u64 = 0;
  /** In the registry's dirty list (has counts not yet sent). */
  dirty: bool = false;

  /** Consecutive failures seen by this worker. */
  streak: i32 = 0;
  /** Passively ejected until this time (ms); 0 = not ejected. */
  ejectedUntil: u64 = 0;
  ejectedGauge: u32 = NO_METRIC;
  ejectedGaugeDefined: bool = false;
  /** Deployment of the latest compiled table holding these stats (rebuilt on ejection/return). */
  owner: Deployment | null = null;

  constructor(public deploymentId: string, public instanceId: string, public address: string) {}

  /** Counts one request; false (and nothing counted) when the counters are saturated. */
  @inline canCount(): bool {
    return this.requests < MAX_COUNT;
  }

  recordLatency(us: u64): void {
    const b = bucketOf(us);
    unchecked(this.buckets[b] = unchecked(this.buckets[b]) + 1);
    this.latencySumUs += us;
  }

  clearCounts(): void {
    this.requests = 0;
    this.upstream5xx = 0;
    this.connectFailures = 0;
    for (let i = 0; i < BUCKET_COUNT; i++) unchecked(this.buckets[i] = 0);
    this.latencySumUs = 0;
  }
}

/** The VM's stats objects by key, and the ones with counts to send. */
export class StatsRegistry {
  byKey: Map<string, InstanceStats> = new Map<string, InstanceStats>();
  dirty: InstanceStats[] = [];

  /** The stats object for a triple, reused from the previous table when it had the same one. */
  take(next: Map<string, InstanceStats>, deploymentId: string, instanceId: string, address: string): InstanceStats {
    const key = deploymentId + "\n" + instanceId + "\n" + address;
    if (next.has(key)) return next.get(key);
    let s: InstanceStats;
    if (this.byKey.has(key)) s = this.byKey.get(key);
    else s = new InstanceStats(deploymentId, instanceId, address);
    next.set(key, s);
    return s;
  }

  @inline markDirty(s: InstanceStats): void {
    if (!s.dirty) {
      s.dirty = true;
      this.dirty.push(s);
    }
  }
}
