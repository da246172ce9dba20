// The request path's picks. When a deployment's candidates are compiled, its picker's state is copied
// into the deployment's hot block (table/hot_block.ts, `Deployment.hot`), right before the header values
// the picks lead to, and each request advances it there: a pick reads the cache lines the request
// reads anyway, instead of a picker object and its state array elsewhere in memory (which is what made
// a request cost more with 1000 deployments than with one). Same sequence as the Picker classes:
// round robin (round_robin.ts) or smooth weighted round robin (weighted_round_robin.ts), over all
// candidates or, for failover, over its first tier (failover.ts rotates that tier with one of them).
//
// Hot block header (i32/u32 words), then the picker state, then the position entries (table/hot_block.ts):
//   0 kind (HOT_RR | HOT_SWRR | HOT_SEQ | load.ts's HOT_LR | HOT_LAT: picked by loadNext, not hotNext)   4 m: candidates rotated (HOT_SEQ: sequence length)
//   8 RR / HOT_SEQ cursor | SWRR total of weights
//   12 n: positions              16 offset of the position entries   20 bytes per entry
//   24 requests not yet collected (filter/metrics.ts)
//   28 offset of the session-affinity section (strategy/affinity.ts), 0 = none
//   32 u64 the deployment's nextReturnAt (earliest end of a passive ejection), as of this block
//   40.. SWRR: m × (weight, current score); HOT_SEQ: m × u8, the picks of one period
// Smooth WRR is periodic: when its period is short, the compiler writes the picks of one period
// (HOT_SEQ) and a request reads one byte next to the header instead of updating every candidate's score.
export const HOT_RR: u32 = 0;
export const HOT_SWRR: u32 = 1;
export const HOT_SEQ: u32 = 2;
@inline export const HOT_KIND: usize = 0;
@inline export const HOT_M: usize = 4;
@inline export const HOT_CURSOR: usize = 8;
@inline export const HOT_N: usize = 12;
@inline export const HOT_RECORDS: usize = 16;
@inline export const HOT_STRIDE: usize = 20;
@inline export const HOT_REQUESTS: usize = 24;
@inline export const HOT_AFFINITY: usize = 28;
@inline export const HOT_RETURN_AT: usize = 32;
@inline export const HOT_STATE: usize = 40;

/** Next pick of the hot block at `b`: an index in [0, m). */
export function hotNext(b: usize): i32 {
  const m = load<i32>(b, HOT_M);
  const kind = load<u32>(b, HOT_KIND);
  if (kind != HOT_SWRR) {
    const p = load<i32>(b, HOT_CURSOR); // in [0, m): written so, and wraps below
    const q = p + 1;
    store<i32>(b, q >= m ? 0 : q, HOT_CURSOR);
    return kind == HOT_RR ? p : <i32>load<u8>(b + HOT_STATE + <usize>p);
  }
  // Smooth weighted round robin (SmoothWeightedRoundRobin.next): add every weight to its score,
  // take the highest (first on ties), subtract the total from it.
  const st = b + HOT_STATE;
  let best = 0;
  let bestScore = i32.MIN_VALUE;
  for (let i = 0; i < m; i++) {
    const at = st + (<usize>i << 3);
    const s = load<i32>(at, 4) + load<i32>(at);
    store<i32>(at, s, 4);
    if (s > bestScore) { bestScore = s; best = i; }
  }
  const at = st + (<usize>best << 3);
  store<i32>(at, bestScore - load<i32>(b, HOT_CURSOR), 4);
  return best;
}
