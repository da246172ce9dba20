// Per-instance counters of one worker VM (telemetry, contract 3) and its passive-ejection state.
// One InstanceStats per (deployment id, instance id, address), created when a table is compiled and
// carried over to the next table version when it keeps the same triple; allocated once, so counting
// a request allocates nothing.
//
// The counters themselves live in one flat block of fixed-size records owned by the registry, one
// per InstanceStats (its `slot`): observing a request's result touches one 64-byte line of that
// block, found through the slot the deployment's hot block holds for the pick — not a Position, an
// Instance, an InstanceStats and its histogram array scattered over the heap.
import { BUCKET_COUNT, MAX_COUNT, bucketOf } from "./buckets";
import { NO_METRIC } from "../abi/metrics";
import { Deployment, RoutingTable } from "../table/routing_table";

/** Bytes per counter record (a power of two; records are 64-byte aligned, see StatsRegistry.grow). */
export const STATS_RECORD_SHIFT: usize = 7;
/**
 * Counter record layout. Everything a request writes when its latency is ≤ 1 s sits in the first
 * 64 bytes: u32 requests, u32 upstream 5xx, u32 connect failures, i32 passive streak, u64 latency sum
 * (µs), u32 "passively ejected" (mirrors InstanceStats.ejectedUntil != 0), u32 pad, then the
 * LATENCY_BUCKETS_MS histogram (BUCKET_COUNT × u32, to byte 88).
 */
export namespace Rec {
  @inline export const REQUESTS: usize = 0;
  @inline export const UPSTREAM_5XX: usize = 4;
  @inline export const CONNECT_FAILURES: usize = 8;
  @inline export const STREAK: usize = 12;
  @inline export const LATENCY_SUM_US: usize = 16;
  @inline export const EJECTED: usize = 24;
  @inline export const BUCKETS: usize = 32;
  // Load state of the load-aware strategies (strategy/load.ts), after the histogram (to byte 112);
  // never sent, never cleared by a batch (clearCounts), zero for a new record:
  /** i32 requests routed to the instance by this worker whose stream has not ended (least_request, latency). */
  @inline export const IN_FLIGHT: usize = 88;
  /** u32 1 once the instance answered since it was added or re-admitted (0: on probation, latency). */
  @inline export const SAMPLED: usize = 92;
  /** f64 peak-EWMA of the time to first byte (µs) as of EWMA_STAMP (latency). */
  @inline export const EWMA_US: usize = 96;
  /** u64 clock (ns) of EWMA_US's last update. */
  @inline export const EWMA_STAMP: usize = 104;
  /** f32 the engine load score of the latest compiled table (load_aware; -1: none), written when compiled. */
  @inline export const LOAD_SCORE: usize = 112;
  /** f32 the engine's capacity (requests at once) of the latest compiled table (load_aware; 0: unknown). */
  @inline export const LOAD_CAPACITY: usize = 116;
  /** u64 Unix ms after which LOAD_SCORE is stale (scraped at + 3 × interval; 0: none). Record ends at 128. */
  @inline export const LOAD_UNTIL_MS: usize = 120;
}

export class InstanceStats {
  /** Record in the registry's counter block; -1 once the registry reclaimed it (no longer reachable). */
  slot: i32 = -1;
  /** Passively ejected until this time (ms); 0 = not ejected. */
  ejectedUntil: u64 = 0;
  ejectedGauge: u32 = NO_METRIC;
  ejectedGaugeDefined: bool = false;
  /** Deployment of the latest compiled table holding these stats (rebuilt on ejection/return). */
  owner: Deployment | null = null;
  /** The control service's state for the instance in the latest compiled table (255 before the first). */
  controlState: u8 = 255;
  /** The in-flight count last put in a telemetry batch (the sender reports it again only when it changed or is > 0). */
  reportedInFlight: i32 = 0;
  /** The batch (sender seq) this instance was last put in: one entry per instance per batch. */
  batchMark: u64 = 0;

  constructor(public deploymentId: string, public instanceId: string, public address: string) {}
}

/**
 * The VM's stats objects by key, their counter records, and the slots with counts to send.
 *
 * Slot lifetime: a slot is reclaimed (and may be handed to a new InstanceStats) only when no table a
 * request can still count into references it — the adopted table, and the older ones that in-flight
 * streams were routed with (`RoutingTable.observing` > 0) — and it has no counts to send and no
 * passive ejection running. So a slot a hot block or a stream holds always belongs to its instance.
 */
export class StatsRegistry {
  byKey: Map<string, InstanceStats> = new Map<string, InstanceStats>();
  /** Slots with counts not yet sent (requests > 0), in the order they got their first count. */
  dirty: i32[] = [];

  /** Owns the records; `base` is its first 64-byte aligned address. */
  private block: ArrayBuffer = new ArrayBuffer(0);
  private base: usize = 0;
  /** Records available; record `capacity` is a sink for out-of-range slots (see at()). */
  private capacity: i32 = 0;
  /** The InstanceStats of every slot in use (null = free). */
  private owners: StaticArray<InstanceStats | null> = new StaticArray<InstanceStats | null>(0);
  private free: i32[] = [];
  private high: i32 = 0;

  /** The adopted table and older tables still observed by in-flight streams. */
  private current: RoutingTable | null = null;
  private retained: RoutingTable[] = [];

  constructor() {
    this.grow(64);
  }

  /**
   * Address of `slot`'s record. In bounds by construction: the block holds capacity + 1 records and
   * any slot outside [0, capacity) maps to the last one, a sink nobody reads.
   */
  @inline at(slot: i32): usize {
    const s = <u32>slot < <u32>this.capacity ? slot : this.capacity;
    return this.base + (<usize>s << STATS_RECORD_SHIFT);
  }

  /** Slots ever assigned: every slot in use is below this. */
  @inline get slotCount(): i32 { return this.high; }

  /** The stats object of a slot in use, else null. */
  statsAt(slot: i32): InstanceStats | null {
    if (slot < 0 || slot >= this.high) return null;
    return unchecked(this.owners[slot]);
  }

  /** The stats object for a triple, reused from the previous table when it had the same one. */
  take(next: Map<string, InstanceStats>, deploymentId: string, instanceId: string, address: string): InstanceStats {
    const key = deploymentId + "\n" + instanceId + "\n" + address;
    if (next.has(key)) return next.get(key);
    let s: InstanceStats;
    if (this.byKey.has(key)) s = this.byKey.get(key);
    else {
      s = new InstanceStats(deploymentId, instanceId, address);
      this.assign(s);
    }
    next.set(key, s);
    return s;
  }

  private assign(s: InstanceStats): void {
    let slot: i32;
    if (this.free.length > 0) slot = this.free.pop();
    else {
      if (this.high >= this.capacity) this.grow(this.capacity << 1);
      slot = this.high++;
    }
    memory.fill(this.at(slot), 0, <usize>1 << STATS_RECORD_SHIFT);
    unchecked(this.owners[slot] = s);
    s.slot = slot;
  }

  /**
   * Doubles the block (compile time only; nothing keeps record addresses across a compile). Bounded by
   * construction: max_table_bytes ≤ 64 MiB holds well under a million instances, so the block stays
   * far below ArrayBuffer's 1 GiB limit.
   */
  private grow(capacity: i32): void {
    const size = (<usize>(capacity + 1) << STATS_RECORD_SHIFT) + 63;
    const block = new ArrayBuffer(<i32>size);
    const base = (changetype<usize>(block) + 63) & ~<usize>63;
    if (this.capacity > 0) memory.copy(base, this.base, <usize>this.capacity << STATS_RECORD_SHIFT);
    const owners = new StaticArray<InstanceStats | null>(capacity);
    for (let i = 0; i < this.high; i++) unchecked(owners[i] = unchecked(this.owners[i]));
    this.block = block;
    this.base = base;
    this.capacity = capacity;
    this.owners = owners;
  }

  /** A table was adopted: its stats are the current ones; slots nothing can count into are reclaimed. */
  adopt(t: RoutingTable): void {
    const prev = this.current;
    if (prev !== null && prev !== t && prev.observing > 0) this.retained.push(prev);
    this.current = t;
    this.byKey = t.statsByKey;
    this.reclaim();
  }

  private reclaim(): void {
    const live = new StaticArray<bool>(this.high);
    markAll(live, this.byKey);
    const kept = new Array<RoutingTable>();
    for (let i = 0; i < this.retained.length; i++) {
      const t = unchecked(this.retained[i]);
      if (t.observing <= 0) continue;
      kept.push(t);
      markAll(live, t.statsByKey);
    }
    this.retained = kept;
    const dirty = this.dirty;
    for (let i = 0; i < dirty.length; i++) {
      const s = unchecked(dirty[i]);
      if (s >= 0 && s < live.length) unchecked(live[s] = true);
    }
    for (let slot = 0; slot < this.high; slot++) {
      const s = unchecked(this.owners[slot]);
      if (s === null || unchecked(live[slot]) || s.ejectedUntil != 0) continue;
      s.slot = -1;
      unchecked(this.owners[slot] = null);
      this.free.push(slot);
    }
  }

  /** Counts one observed request of `slot` (false when its counters are saturated: nothing counted). */
  @inline count(slot: i32): bool {
    const r = this.at(slot);
    const n = load<u32>(r, Rec.REQUESTS);
    if (n >= MAX_COUNT) return false;
    store<u32>(r, n + 1, Rec.REQUESTS);
    if (n == 0) this.dirty.push(slot); // requests > 0 ⇔ in `dirty`: the sender clears both together
    return true;
  }

  @inline bump(slot: i32, field: usize): void {
    const r = this.at(slot) + field;
    store<u32>(r, load<u32>(r) + 1);
  }

  recordLatency(slot: i32, us: u64): void {
    const r = this.at(slot);
    const b = r + Rec.BUCKETS + (<usize>bucketOf(us) << 2);
    store<u32>(b, load<u32>(b) + 1);
    store<u64>(r, load<u64>(r, Rec.LATENCY_SUM_US) + us, Rec.LATENCY_SUM_US);
  }

  @inline requests(slot: i32): u32 { return load<u32>(this.at(slot), Rec.REQUESTS); }
  @inline upstream5xx(slot: i32): u32 { return load<u32>(this.at(slot), Rec.UPSTREAM_5XX); }
  @inline connectFailures(slot: i32): u32 { return load<u32>(this.at(slot), Rec.CONNECT_FAILURES); }
  @inline bucket(slot: i32, b: i32): u32 {
    return <u32>b < <u32>BUCKET_COUNT ? load<u32>(this.at(slot) + Rec.BUCKETS + (<usize>b << 2)) : 0;
  }
  @inline latencySumUs(slot: i32): u64 { return load<u64>(this.at(slot), Rec.LATENCY_SUM_US); }

  @inline streak(slot: i32): i32 { return load<i32>(this.at(slot), Rec.STREAK); }
  @inline setStreak(slot: i32, v: i32): void { store<i32>(this.at(slot), v, Rec.STREAK); }
  @inline ejected(slot: i32): bool { return load<u32>(this.at(slot), Rec.EJECTED) != 0; }
  @inline setEjected(slot: i32, yes: bool): void { store<u32>(this.at(slot), yes ? 1 : 0, Rec.EJECTED); }

  /** Record address for the load-aware pick (strategy/load.ts): in bounds for any slot (see at()). */
  @inline record(slot: i32): usize { return this.at(slot); }
  @inline inFlight(slot: i32): i32 { return load<i32>(this.at(slot), Rec.IN_FLIGHT); }
  /** A stream routed to `slot` ended: −1, never below 0. */
  @inline endFlight(slot: i32): void {
    const r = this.at(slot);
    const n = load<i32>(r, Rec.IN_FLIGHT);
    store<i32>(r, n > 0 ? n - 1 : 0, Rec.IN_FLIGHT);
  }
  /** Puts the instance on probation (latency): its cost is the deployment's slowest until it answers. */
  @inline setProbation(slot: i32): void { store<u32>(this.at(slot), 0, Rec.SAMPLED); }
  /** The instance's engine load score as the latest compiled table has it (load_aware); score < 0: none. */
  setLoad(slot: i32, score: f64, capacity: i32, untilMs: u64): void {
    const r = this.at(slot);
    store<f32>(r, <f32>score, Rec.LOAD_SCORE);
    store<f32>(r, score < 0 ? 0 : <f32>capacity, Rec.LOAD_CAPACITY);
    store<u64>(r, score < 0 ? 0 : untilMs, Rec.LOAD_UNTIL_MS);
  }

  /** Zeroes the telemetry counters (not the passive state) once they were put in a batch. */
  clearCounts(slot: i32): void {
    const r = this.at(slot);
    store<u32>(r, 0, Rec.REQUESTS);
    store<u32>(r, 0, Rec.UPSTREAM_5XX);
    store<u32>(r, 0, Rec.CONNECT_FAILURES);
    store<u64>(r, 0, Rec.LATENCY_SUM_US);
    memory.fill(r + Rec.BUCKETS, 0, <usize>BUCKET_COUNT << 2);
  }
}

function markAll(live: StaticArray<bool>, m: Map<string, InstanceStats>): void {
  const vs = m.values();
  for (let i = 0; i < vs.length; i++) {
    const slot = unchecked(vs[i]).slot;
    if (slot >= 0 && slot < live.length) unchecked(live[slot] = true);
  }
}
