// least_request and latency: load-aware picks made inside the proxy from this worker's own state, with
// no I/O per request. Both pick among the lowest failover tier that has an eligible candidate (the
// candidate set itself — active, not passively ejected; panic set — is rebuildDeployment's, as for
// every strategy), with "power of two choices": two candidates sampled in proportion to their weight
// (Vose's alias table, built when the hot block is compiled: O(1), no allocation; when both draws
// coincide, the second is replaced by a uniform draw among the others), the cheaper wins, a tie keeps
// the first sample. Per-instance state lives in the instance's stats record (telemetry/stats.ts
// Rec.IN_FLIGHT, SAMPLED, EWMA_US, EWMA_STAMP), so it survives table versions that keep the instance.
//
// least_request — Envoy's LEAST_REQUEST semantics (envoy.load_balancing_policies.least_request,
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/load_balancing_policies/least_request/v3/least_request.proto
// and the "Weighted least request" section of Envoy's load balancer overview): "choice_count … the
// number of random healthy hosts from which the host with the fewest active requests will be chosen.
// Defaults to 2"; with unequal weights the dynamic weight "weight = load_balancing_weight /
// (active_requests + 1)^active_request_bias" (bias default 1.0) drives an EDF schedule. With equal
// weights ours is exactly that P2C on active requests. With unequal weights (decision) we keep P2C,
// O(1) instead of Envoy's O(log n) schedule: the samples are drawn in proportion to the weight and the
// one with fewer active requests per unit of weight wins (a/w, bias 1, cross-multiplied so no
// division; Envoy's "+ 1" only avoids a division by zero, and with it the heavier instance would win
// every idle tie, counting its weight twice). Equal load (a tie) keeps the first, weighted, sample,
// so idle shares are the weights; under load in-flight counts settle in proportion to the weights.
// Active requests = this worker's routed streams that have not ended: +1 when routed, −1 when the stream
// ends (on_log, or the stream context's release if on_log never came). Envoy's retries to the fallbacks
// of the endpoint list stay counted on the pick: the plugin learns which host served only in on_log.
//
// latency — peak-EWMA as in Finagle's PeakEwma / Linkerd's balancer: per instance an exponentially
// weighted moving average of the time to first byte (response headers), decaying with time constant
// TAU (10 s, Finagle's and Linkerd's default): on a sample rtt at time t, w = exp(−(t − stamp)/TAU);
// rtt > ewma → ewma = rtt (the peak is taken at once), else ewma = ewma·w + rtt·(1 − w). Read at pick
// time decayed towards 0 (ewma·exp(−age/TAU)), so an idle slow instance is retried eventually. Cost =
// (ewma + 1 µs) × (in-flight × w_min/w + 1) — Finagle's ewma × (pending + 1) with equal weights; the
// in-flight count scaled down for heavier instances (samples are already drawn by weight, so at equal
// cost the weights decide); the + 1 µs makes an all-unknown deployment pick by in-flight counts alone.
// Probation (decision): an instance that has not answered since it was added or re-admitted (control
// ejected → active, end of a passive ejection) is costed with the deployment's slowest recent time to
// first byte — a decaying maximum over every sample of the deployment (SEED below), carried across
// rebuilds and table versions — instead of 0, which would make it the cheapest and flood it. Its first
// own sample replaces that value outright. The slowest rather than the median: it is O(1) per sample
// and errs on the side of not flooding; the in-flight factor still sends it traffic as soon as the
// others are busier.
//
// load_aware — the engine's own load, as the control service scraped it from the instance's /metrics
// (contract 1, an instance's `load`: `score` = requests waiting + KV-cache usage, `capacity` = requests it
// runs at once as learned from its gauges; control/src/health/load.ts), combined with this worker's
// in-flight count. The score is global but up to an interval old; the in-flight count is this worker's own
// and current, so a burst this worker sends is seen at once. Both are written into the instance's stats
// record when a table is compiled (Rec.LOAD_SCORE, LOAD_CAPACITY, LOAD_UNTIL_MS = scraped at + 3 × interval).
// - Every candidate with a fresh score and a capacity (capacityPick): cost = (in-flight + 1 + score) /
//   (capacity × weight) — the requests ahead of this one per slot, the engine's queue included — least wins,
//   over all candidates of the tier when there are at most LA_SCAN (from a random start, so ties spread),
//   else over two weighted samples. Decision: scanning a small tier is "join the shortest queue", which
//   measured far better than two choices on 4 unequal engines (bench:balance); the per-worker in-flight
//   counts (updated at once) keep workers from herding on one stale score.
// - Otherwise, both samples with fresh scores: cost = (in-flight × w_min/w + 1) × (1 + score), the cheaper
//   of two weighted samples.
// - Stale data must not attract traffic (decision): when either sample has no fresh score (absent, or
//   past LOAD_UNTIL_MS by this worker's clock) the pair is compared by in-flight counts only, exactly as
//   least_request — a stale low score never makes an instance look cheap.
//
// Hot block state (after the header, strategy/hot.ts; HOT_KIND = HOT_LR | HOT_LAT | HOT_LA, HOT_M = tier size,
// HOT_CURSOR = the tier's lowest weight):
//   40 f64 SEED: the deployment's slowest recent time to first byte (µs) as of 48 u64 its clock (ns)
//   56.. m × 16 bytes: u32 alias threshold, i32 alias, i32 weight, i32 stats slot
import { Picker } from "./picker";
import { HOT_CURSOR, HOT_KIND, HOT_M, HOT_STATE } from "./hot";
import { Rec, StatsRegistry } from "../telemetry/stats";

export const HOT_LR: u32 = 3;
export const HOT_LAT: u32 = 4;
export const HOT_LA: u32 = 5;
@inline const SEED_US: usize = HOT_STATE;
@inline const SEED_STAMP: usize = HOT_STATE + 8;
@inline const ENTRIES: usize = HOT_STATE + 16;
@inline const ENTRY_SHIFT: usize = 4;
/** Peak-EWMA decay time constant (ns). */
export const TAU_NS: f64 = 10e9;

// xorshift64*: one u64 per VM, seeded by the first load-aware picker with the worker's sequence number
// (deterministic in the test host; workers differ).
let rngState: u64 = 0;

export function seedRng(seed: u64): void {
  if (rngState != 0) return;
  let z = (seed + 1) * 0x9E3779B97F4A7C15;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
  z ^= z >> 31;
  rngState = z != 0 ? z : 0x2545F4914F6CDD1D;
}

@inline function rngNext(): u64 {
  let x = rngState;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rngState = x;
  return x * 0x2545F4914F6CDD1D;
}

/** A candidate index in [0, m) drawn in proportion to the weights (alias method). */
@inline function sample(b: usize, m: i32): i32 {
  const x = rngNext();
  const i = <i32>(((x & 0xFFFFFFFF) * <u64>m) >> 32);
  const e = b + ENTRIES + (<usize>i << ENTRY_SHIFT);
  return <u32>(x >> 32) < load<u32>(e) ? i : load<i32>(e, 4);
}

@inline function decayed(v: f64, stamp: u64, nowNs: u64): f64 {
  if (v <= 0 || nowNs <= stamp) return v;
  return v * Math.exp(-<f64>(nowNs - stamp) / TAU_NS);
}

/** latency: the instance's cost (see the header); `rel` = the tier's lowest weight / this weight. */
@inline function latencyCost(b: usize, r: usize, rel: f64, nowNs: u64): f64 {
  const ewma = load<u32>(r, Rec.SAMPLED) != 0
    ? decayed(load<f64>(r, Rec.EWMA_US), load<u64>(r, Rec.EWMA_STAMP), nowNs)
    : decayed(load<f64>(b, SEED_US), load<u64>(b, SEED_STAMP), nowNs);
  return (ewma + 1.0) * (<f64>load<i32>(r, Rec.IN_FLIGHT) * rel + 1.0);
}

/** load_aware: the fresh score of record `r` at `nowMs`, or -1 (none, or stale). */
@inline function freshScore(r: usize, nowMs: u64): f64 {
  const s = <f64>load<f32>(r, Rec.LOAD_SCORE);
  return s >= 0 && nowMs < load<u64>(r, Rec.LOAD_UNTIL_MS) ? s : -1.0;
}

/** Candidates load_aware compares all of (more: two weighted samples). */
export const LA_SCAN: i32 = 16;

/**
 * load_aware with every candidate's capacity known and score fresh: the least (in-flight + 1 + score) per
 * unit of capacity × weight, over all candidates (m ≤ LA_SCAN, from a random start so ties spread) or two
 * weighted samples; -1 when a candidate lacks a fresh score or a capacity.
 */
function capacityPick(b: usize, reg: StatsRegistry, m: i32, nowMs: u64): i32 {
  let best = -1;
  let bestCost = Infinity;
  const n = m <= LA_SCAN ? m : 2;
  let k = m <= LA_SCAN ? <i32>(((rngNext() & 0xFFFFFFFF) * <u64>m) >> 32) : sample(b, m);
  for (let t = 0; t < n; t++) {
    const e = b + ENTRIES + (<usize>k << ENTRY_SHIFT);
    const r = reg.record(load<i32>(e, 12));
    const s = freshScore(r, nowMs);
    const cap = <f64>load<f32>(r, Rec.LOAD_CAPACITY);
    if (s < 0 || cap <= 0) return -1;
    const cost = (<f64>load<i32>(r, Rec.IN_FLIGHT) + 1.0 + s) / (cap * <f64>load<i32>(e, 8));
    if (cost < bestCost) { bestCost = cost; best = k; }
    if (m <= LA_SCAN) { k++; if (k >= m) k = 0; }
    else { const j = sample(b, m); k = j == k ? (k + 1 < m ? k + 1 : 0) : j; }
  }
  return best;
}

/**
 * The pick of a load-aware hot block at `b` (HOT_KIND HOT_LR, HOT_LAT or HOT_LA): an index in [0, m).
 * Reads the two samples' stats records through `reg`; allocates nothing; `nowNs` is read only for
 * latency and load_aware.
 */
export function loadNext(b: usize, reg: StatsRegistry, nowNs: u64): i32 {
  const m = load<i32>(b, HOT_M);
  if (m <= 1) return 0;
  const kind = load<u32>(b, HOT_KIND);
  if (kind == HOT_LA) {
    const p = capacityPick(b, reg, m, nowNs / 1_000_000);
    if (p >= 0) return p;
  }
  const i = sample(b, m);
  let j = sample(b, m);
  if (j == i) {
    // Two distinct candidates, so the most loaded one is never picked while another is less loaded
    // (the P2C property Envoy's docs state): the second one is then drawn uniformly among the others.
    j = i + 1 + <i32>(((rngNext() & 0xFFFFFFFF) * <u64>(m - 1)) >> 32);
    if (j >= m) j -= m;
  }
  const ei = b + ENTRIES + (<usize>i << ENTRY_SHIFT);
  const ej = b + ENTRIES + (<usize>j << ENTRY_SHIFT);
  const wi = load<i32>(ei, 8);
  const wj = load<i32>(ej, 8);
  const ri = reg.record(load<i32>(ei, 12));
  const rj = reg.record(load<i32>(ej, 12));
  if (kind == HOT_LA) {
    const nowMs = nowNs / 1_000_000;
    const si = freshScore(ri, nowMs);
    const sj = freshScore(rj, nowMs);
    if (si >= 0 && sj >= 0) {
      const wmin = <f64>load<i32>(b, HOT_CURSOR);
      const ci = (<f64>load<i32>(ri, Rec.IN_FLIGHT) * (wmin / <f64>wi) + 1.0) * (1.0 + si);
      const cj = (<f64>load<i32>(rj, Rec.IN_FLIGHT) * (wmin / <f64>wj) + 1.0) * (1.0 + sj);
      return cj < ci ? j : i;
    }
    // No fresh score for one of them: least_request's comparison (below).
  }
  if (kind != HOT_LAT) {
    // j wins when it has fewer in-flight requests per unit of weight: aj/wj < ai/wi (cross-multiplied).
    const ai = <i64>load<i32>(ri, Rec.IN_FLIGHT);
    const aj = <i64>load<i32>(rj, Rec.IN_FLIGHT);
    return aj * <i64>wi < ai * <i64>wj ? j : i;
  }
  const wmin = <f64>load<i32>(b, HOT_CURSOR);
  return latencyCost(b, rj, wmin / <f64>wj, nowNs) < latencyCost(b, ri, wmin / <f64>wi, nowNs) ? j : i;
}

/** The slot (stats record) of entry `pos` of a load-aware block, -1 outside [0, m). */
export function loadSlotAt(b: usize, pos: i32): i32 {
  if (pos < 0 || pos >= load<i32>(b, HOT_M)) return -1;
  return load<i32>(b + ENTRIES + (<usize>pos << ENTRY_SHIFT), 12);
}

/**
 * latency: a time to first byte `us` of the instance at `slot`, at `nowNs`, for a request routed from
 * the block `b` (its SEED follows the slowest). Peak-EWMA update (see the header).
 */
export function observeLatency(b: usize, reg: StatsRegistry, slot: i32, us: f64, nowNs: u64): void {
  const r = reg.record(slot);
  if (load<u32>(r, Rec.SAMPLED) == 0) {
    store<f64>(r, us, Rec.EWMA_US); // probation ends with the instance's own first answer
    store<u32>(r, 1, Rec.SAMPLED);
  } else {
    const prev = load<f64>(r, Rec.EWMA_US);
    const stamp = load<u64>(r, Rec.EWMA_STAMP);
    if (us > prev) store<f64>(r, us, Rec.EWMA_US);
    else {
      const w = nowNs > stamp ? Math.exp(-<f64>(nowNs - stamp) / TAU_NS) : 1.0;
      store<f64>(r, prev * w + us * (1.0 - w), Rec.EWMA_US);
    }
  }
  store<u64>(r, nowNs, Rec.EWMA_STAMP);
  const seed = decayed(load<f64>(b, SEED_US), load<u64>(b, SEED_STAMP), nowNs);
  store<f64>(b, us > seed ? us : seed, SEED_US);
  store<u64>(b, nowNs, SEED_STAMP);
}

/** The SEED of a block (0 if not load-aware) and its clock, to carry across rebuilds. */
export function seedOf(b: usize): f64 {
  if (b == 0) return 0;
  const k = load<u32>(b, HOT_KIND);
  return k == HOT_LR || k == HOT_LAT || k == HOT_LA ? load<f64>(b, SEED_US) : 0;
}
export function seedStampOf(b: usize): u64 {
  if (b == 0) return 0;
  const k = load<u32>(b, HOT_KIND);
  return k == HOT_LR || k == HOT_LAT || k == HOT_LA ? load<u64>(b, SEED_STAMP) : 0;
}

/**
 * Compile-time side: the tier's weights and stats slots, the alias table. The request path reads the
 * copy in the hot block (loadNext); next() is a plain rotation (only the fallback order, which Failover
 * gives when there are several tiers, matters outside the request path).
 */
export class LoadPicker extends Picker {
  private weights: StaticArray<i32>;
  private slots: StaticArray<i32>;
  private threshold: StaticArray<u32>;
  private alias: StaticArray<i32>;
  private cursor: i32 = 0;

  constructor(private kind: u32, weights: StaticArray<i32>, slots: StaticArray<i32>, start: u32,
    private seedUs: f64, private seedStamp: u64) {
    super(weights.length);
    seedRng(<u64>start);
    this.weights = weights;
    this.slots = slots;
    const n = weights.length;
    this.threshold = new StaticArray<u32>(n);
    this.alias = new StaticArray<i32>(n);
    // Vose's alias method: scaled[i] = w_i · n / Σw; small columns are topped up by a large one.
    let total: f64 = 0;
    for (let i = 0; i < n; i++) total += <f64>unchecked(weights[i]);
    const scaled = new StaticArray<f64>(n);
    const small = new Array<i32>();
    const large = new Array<i32>();
    for (let i = 0; i < n; i++) {
      const s = total > 0 ? <f64>unchecked(weights[i]) * <f64>n / total : 1.0;
      unchecked(scaled[i] = s);
      unchecked(this.alias[i] = i);
      if (s < 1.0) small.push(i); else large.push(i);
    }
    while (small.length > 0 && large.length > 0) {
      const s = small.pop();
      const l = large[large.length - 1];
      unchecked(this.threshold[s] = <u32>Math.floor(unchecked(scaled[s]) * 4294967296.0));
      unchecked(this.alias[s] = l);
      const rest = unchecked(scaled[l]) + unchecked(scaled[s]) - 1.0;
      unchecked(scaled[l] = rest);
      if (rest < 1.0) { large.pop(); small.push(l); }
    }
    // Whatever is left is a full column (rounding): always itself.
    for (let k = 0; k < large.length; k++) { const l = large[k]; unchecked(this.threshold[l] = u32.MAX_VALUE); unchecked(this.alias[l] = l); }
    for (let k = 0; k < small.length; k++) { const l = small[k]; unchecked(this.threshold[l] = u32.MAX_VALUE); unchecked(this.alias[l] = l); }
  }

  next(): i32 {
    const p = this.cursor;
    const q = p + 1;
    this.cursor = q >= this.n ? 0 : q;
    return p;
  }

  hotStateBytes(): i32 {
    return 16 + (this.n << 4);
  }

  writeHot(b: usize): void {
    store<u32>(b, this.kind, HOT_KIND);
    store<i32>(b, this.n, HOT_M);
    let wmin = this.n > 0 ? unchecked(this.weights[0]) : 1;
    for (let i = 1; i < this.n; i++) if (unchecked(this.weights[i]) < wmin) wmin = unchecked(this.weights[i]);
    store<i32>(b, wmin, HOT_CURSOR); // the tier's lowest weight (latency's in-flight scale)
    store<f64>(b, this.seedUs, SEED_US);
    store<u64>(b, this.seedStamp, SEED_STAMP);
    for (let i = 0; i < this.n; i++) {
      const e = b + ENTRIES + (<usize>i << ENTRY_SHIFT);
      store<u32>(e, unchecked(this.threshold[i]));
      store<i32>(e, unchecked(this.alias[i]), 4);
      store<i32>(e, unchecked(this.weights[i]), 8);
      store<i32>(e, unchecked(this.slots[i]), 12);
    }
  }
}
