// Session affinity (contract 1 `affinity`): a request carrying a key (a request header's value, or the
// body's top-level "user" string) goes to the instance that wins weighted rendezvous hashing of the key,
// unless that instance is over its load bound; then the next in hash order. Requests without a key use
// the deployment's base strategy (its hot block picker), untouched.
//
// Rendezvous / highest-random-weight hashing (Thaler & Ravishankar 1998; weighted form of Schindelhauer &
// Schomaker, "Weighted distributed hash tables", SPAA 2005: score = w / −ln(u), u = hash(key, instance)
// in (0, 1)) rather than a ring or Maglev (decision): the key's order over the instances is a pure
// function of (key, instance id), so removing an instance moves exactly the keys it held (each to its
// own second choice) and adding one takes exactly the keys it now wins — its weight's share — with no
// virtual nodes, no table to build per version and no imbalance from ring arcs; weights are exact. The
// price, O(m) hashes per keyed request over the m instances picked from, is bounded (m ≤ 1024, one
// multiply-xorshift mix each, for unequal weights a polynomial −ln and a multiply by the precomputed
// 1/w) and small for real deployments (m ≲ 32).
// Instances are identified by their id (stable across table versions and workers), not their position.
//
// Bounded load — "Consistent Hashing with Bounded Loads" (Mirrokni, Thorup, Zadimoghaddam, SODA 2018;
// the scheme Google Cloud Pub/Sub and HAProxy's `hash-balance-factor` use): with L requests in flight
// over the instances picked from and load factor c (default 1.25), an instance of weight w (of a total
// W) takes the request only while its in-flight count is below ceil(c × (L + 1) × w / W); otherwise the
// next instance in the key's hash order is tried. "Next in hash order that has room" is the highest
// score among the instances with room. The pass that finds the key's first choice also sums L, so a
// second pass runs only when that choice is over its bound. The capacities sum to ≥ c(L + 1) > L, so
// some instance always has room. In-flight counts are this worker's (telemetry/stats.ts Rec.IN_FLIGHT,
// kept for every deployment with affinity, whatever its strategy): the bound is per Envoy worker.
//
// Which instances: the base strategy's pick set — the lowest eligible tier for failover, least_request
// and latency (candidates sorted by priority), every candidate for round_robin and weighted_round_robin
// (which ignore tiers). Candidates are rebuildDeployment's (active, not passively ejected; else the
// panic set), so ejected, draining and passively ejected instances are never picked.
//
// Hot block section (at the u32 offset HOT_AFFINITY of the block header, 8-aligned; 0 = no affinity):
//   0 u32 source (AffinitySource)   4 i32 m   8 f64 c   16 u32 the header name (an ArrayBuffer the
//   Deployment owns)   20 u32 1 = equal weights   24 i32 total weight   28 pad
//   32.. m × 24: u64 instance seed (hash of its id), f64 1 / weight, i32 weight, i32 stats slot
// The pick allocates nothing: the header's value is the host's copy (freed at once), the body's "user"
// is read in place by the model scan (json/model_scanner.ts).
import { HOT_AFFINITY } from "./hot";
import { Rec, StatsRegistry } from "../telemetry/stats";
import { gotLen, gotPtr, headerPeek, headerRelease } from "../abi/headers";
import { MapType } from "../abi/types";
import { AffinitySource } from "../table/document";

@inline const A_SOURCE: usize = 0;
@inline const A_M: usize = 4;
@inline const A_C: usize = 8;
@inline const A_HEADER: usize = 16;
@inline const A_EQUAL: usize = 20;
@inline const A_TOTAL: usize = 24;
@inline const A_ENTRIES: usize = 32;
@inline const A_ENTRY: usize = 24;
@inline const A_INV_W: usize = 8;
@inline const A_W: usize = 16;
@inline const A_SLOT: usize = 20;

const K1: u64 = 0x9E3779B97F4A7C15;
const K2: u64 = 0xC2B2AE3D27D4EB4F;

/** MurmurHash3's 64-bit finalizer (a bijection with full avalanche). */
@inline export function fmix64(x: u64): u64 {
  x ^= x >> 33;
  x *= 0xFF51AFD7ED558CCD;
  x ^= x >> 33;
  x *= 0xC4CEB9FE1A85EC53;
  x ^= x >> 33;
  return x;
}

/** A 64-bit hash of len bytes at ptr: 8 bytes per step, the tail zero-padded, the length mixed in. */
export function hashBytes(ptr: usize, len: usize): u64 {
  let h: u64 = K1 ^ (<u64>len * K2);
  let p = ptr;
  const end = ptr + len;
  while (p + 8 <= end) {
    h = rotl<u64>(h ^ (load<u64>(p) * K2), 31) * K1;
    p += 8;
  }
  if (p < end) {
    let t: u64 = 0;
    let s: u64 = 0;
    while (p < end) { t |= <u64>load<u8>(p) << s; s += 8; p++; }
    h = rotl<u64>(h ^ (t * K2), 31) * K1;
  }
  return fmix64(h);
}

/** An instance's seed: the hash of its id (the same on every worker and across table versions). */
export function instanceSeed(id: ArrayBuffer): u64 {
  return hashBytes(changetype<usize>(id), <usize>id.byteLength);
}

/** The key's score for the instance with `seed`: its position in the key's hash order (equal weights). */
@inline export function affinityHash(key: u64, seed: u64): u64 {
  return fmix64(key ^ seed);
}

// −ln(u) for the weighted score, without Math.log (decision, issue 18: one log per instance was most of
// a keyed request's own cost). u = (h + 0.5) · 2^-53, h = the hash's 53 high bits, so −ln(u) =
// (53 − e) · ln 2 − ln(mant) with y = h + 0.5 = mant · 2^e, mant in [√½, √2): ln(mant) = 2·atanh(t),
// t = (mant − 1)/(mant + 1), |t| ≤ 0.172, by its series to t¹¹ (the rest < 5e-11 · |2t|): relative
// error < 1e-10 over the whole range (u near 1 included: e = 53 there and only ln(mant) remains), far
// below the gap between two instances' scores except for keys on a knife edge, so keys map as with
// Math.log and the weights are honoured as exactly. Monotonic in h up to that error; always > 0.
@inline const LN2: f64 = 0.6931471805599453;
@inline const SQRT2: f64 = 1.4142135623730951;

/** −ln(u) for u = ((x >> 11) + 0.5) · 2^-53 in (0, 1): > 0, finite. */
@inline export function negLogUnit(x: u64): f64 {
  const y = <f64>(x >> 11) + 0.5; // [0.5, 2^53): exact
  const bits = reinterpret<u64>(y);
  let e = <i32>(bits >> 52) - 1023;
  let mant = reinterpret<f64>((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000); // [1, 2)
  if (mant > SQRT2) { mant *= 0.5; e++; }
  const t = (mant - 1.0) / (mant + 1.0);
  const s = t * t;
  const lnMant = 2.0 * t * (1.0 + s * (0.3333333333333333 + s * (0.2 + s * (0.14285714285714285 + s * (0.1111111111111111 + s * 0.09090909090909091)))));
  return <f64>(53 - e) * LN2 - lnMant;
}

/**
 * A lower bound of negLogUnit(x): −ln(u) ≥ 1 − u, less a margin for negLogUnit's own 1e-10 relative
 * error, so an instance whose bound already loses to the best score so far is skipped without its −ln
 * (decision: most of a weighted keyed pick was those logs; the result is the same pick).
 */
@inline function negLogUnitFloor(x: u64): f64 {
  return (1.0 - (<f64>(x >> 11) + 0.5) * 1.1102230246251565e-16) * (1.0 - 1e-9);
}

/** The weighted score −ln(u) / w of hash `x` (`inv` = 1/w), or Infinity when its floor already reaches `beat`. */
@inline function weightedScore(x: u64, inv: f64, beat: f64): f64 {
  return negLogUnitFloor(x) * inv >= beat ? Infinity : negLogUnit(x) * inv;
}

/** Is there a key? Its hash in `affinityKey`. */
export let affinityKey: u64 = 0;

/**
 * The request's key, from the section's source: the header's value (non-empty), or the body's "user"
 * (userPtr, userLen; 0 when the request was not body-routed or has none). Sets affinityKey.
 */
function readKey(a: usize, userPtr: usize, userLen: usize): bool {
  if (load<u32>(a, A_SOURCE) == AffinitySource.Header) {
    if (!headerPeek(MapType.RequestHeaders, changetype<ArrayBuffer>(<usize>load<u32>(a, A_HEADER)))) return false;
    const ok = gotLen > 0;
    if (ok) affinityKey = hashBytes(gotPtr, gotLen);
    headerRelease();
    return ok;
  }
  if (userLen == 0) return false;
  affinityKey = hashBytes(userPtr, userLen);
  return true;
}

/**
 * The pick for a keyed request from the affinity section of hot block `b` (HOT_AFFINITY ≠ 0): a position
 * in [0, m), or -1 when the request has no key (the base strategy picks). One pass finds the key's first
 * choice and the in-flight total L; only when that choice is over its bound does a second pass look for
 * the best with room (bounded work: two passes over m, no allocation).
 */
export function affinityNext(b: usize, reg: StatsRegistry, userPtr: usize, userLen: usize): i32 {
  const a = b + <usize>load<u32>(b, HOT_AFFINITY);
  const m = load<i32>(a, A_M);
  if (m <= 0 || !readKey(a, userPtr, userLen)) return -1;
  if (m == 1) return 0;
  const key = affinityKey;
  const e0 = a + A_ENTRIES;
  const end = e0 + <usize>m * A_ENTRY;
  const c = load<f64>(a, A_C);
  let total: i64 = 0;
  if (load<u32>(a, A_EQUAL) != 0) {
    // Equal weights: the hash itself orders the instances (no log).
    let bestX: u64 = 0;
    let bestE = e0;
    let bestF: i32 = 0;
    for (let e = e0; e < end; e += A_ENTRY) {
      const f = load<i32>(reg.record(load<i32>(e, A_SLOT)), Rec.IN_FLIGHT);
      total += <i64>f;
      const x = affinityHash(key, load<u64>(e));
      if (x > bestX || e == e0) { bestX = x; bestE = e; bestF = f; }
    }
    const cap = <i64>Math.ceil(c * <f64>(total + 1) / <f64>m);
    if (<i64>bestF < cap) return <i32>((bestE - e0) / A_ENTRY);
    // Over its bound: the next in the key's order with room (some instance has: the caps sum to > L).
    let best = -1;
    bestX = 0;
    for (let i = 0; i < m; i++) {
      const e = e0 + <usize>i * A_ENTRY;
      const x = affinityHash(key, load<u64>(e));
      if (<i64>load<i32>(reg.record(load<i32>(e, A_SLOT)), Rec.IN_FLIGHT) < cap && (best < 0 || x > bestX)) { bestX = x; best = i; }
    }
    return best >= 0 ? best : <i32>((bestE - e0) / A_ENTRY); // rounding aside
  }
  // Weighted: the highest w / −ln(u) is the lowest −ln(u) / w = −ln(u) × (1/w), 1/w precomputed.
  let bestS: f64 = Infinity;
  let bestE = e0;
  let bestF: i32 = 0;
  for (let e = e0; e < end; e += A_ENTRY) {
    const f = load<i32>(reg.record(load<i32>(e, A_SLOT)), Rec.IN_FLIGHT);
    total += <i64>f;
    const s = weightedScore(affinityHash(key, load<u64>(e)), load<f64>(e, A_INV_W), bestS);
    if (s < bestS) { bestS = s; bestE = e; bestF = f; }
  }
  const perWeight = c * <f64>(total + 1) / <f64>load<i32>(a, A_TOTAL);
  if (<i64>bestF < <i64>Math.ceil(perWeight * <f64>load<i32>(bestE, A_W))) return <i32>((bestE - e0) / A_ENTRY);
  let best = -1;
  bestS = Infinity;
  for (let i = 0; i < m; i++) {
    const e = e0 + <usize>i * A_ENTRY;
    if (<i64>load<i32>(reg.record(load<i32>(e, A_SLOT)), Rec.IN_FLIGHT) >= <i64>Math.ceil(perWeight * <f64>load<i32>(e, A_W))) continue;
    const s = weightedScore(affinityHash(key, load<u64>(e)), load<f64>(e, A_INV_W), bestS);
    if (s < bestS) { bestS = s; best = i; }
  }
  return best >= 0 ? best : <i32>((bestE - e0) / A_ENTRY); // rounding aside
}

/** Compile-time side: what the section holds, written by table/hot_block.ts buildHot. */
export class AffinityPlan {
  constructor(
    public source: u8,
    public loadFactor: f64,
    /** Source header: the name (owned by the Deployment, which outlives its hot blocks). */
    public header: ArrayBuffer | null,
    public seeds: StaticArray<u64>,
    public weights: StaticArray<i32>,
    public slots: StaticArray<i32>,
  ) {}

  bytes(): usize {
    return A_ENTRIES + <usize>this.seeds.length * A_ENTRY;
  }

  /** Writes the section at `a` (8-aligned, inside the block). */
  write(a: usize): void {
    const m = this.seeds.length;
    store<u32>(a, <u32>this.source, A_SOURCE);
    store<i32>(a, m, A_M);
    store<f64>(a, this.loadFactor, A_C);
    const h = this.header;
    store<u32>(a, h === null ? 0 : <u32>changetype<usize>(h), A_HEADER);
    let equal = true;
    let total = 0;
    for (let i = 0; i < m; i++) {
      const w = unchecked(this.weights[i]);
      total += w;
      if (w != unchecked(this.weights[0])) equal = false;
    }
    store<u32>(a, equal ? 1 : 0, A_EQUAL);
    store<i32>(a, total, A_TOTAL);
    for (let i = 0; i < m; i++) {
      const e = a + A_ENTRIES + <usize>i * A_ENTRY;
      const w = unchecked(this.weights[i]);
      store<u64>(e, unchecked(this.seeds[i]));
      store<f64>(e, w > 0 ? 1.0 / <f64>w : Infinity, A_INV_W); // weights are ≥ 1 (contract 1)
      store<i32>(e, w, A_W);
      store<i32>(e, unchecked(this.slots[i]), A_SLOT);
    }
  }
}
