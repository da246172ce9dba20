// The request path's picks. When a deployment's candidates are compiled, its picker's state is copied
// into the deployment's hot block (routing_table.ts, `Deployment.hot`), right before the header values
// the picks lead to, and each request advances it there: a pick reads the cache lines the request
// reads anyway, instead of a picker object and its state array elsewhere in memory (which is what made
// a request cost more with 1000 deployments than with one). Same sequence as the Picker classes:
// round robin (round_robin.ts) or smooth weighted round robin (weighted_round_robin.ts), over all
// candidates or, for failover, over its first tier (failover.ts rotates that tier with one of them).
//
// Hot block header (i32/u32 words), then the picker state, then the position records (routing_table.ts):
//   0 kind (HOT_RR | HOT_SWRR)   4 m: candidates rotated   8 RR cursor | SWRR total of weights
//   12 n: positions              16 offset of the position records
//   20.. SWRR: m × (weight, current score)
export const HOT_RR: u32 = 0;
export const HOT_SWRR: u32 = 1;
@inline export const HOT_KIND: usize = 0;
@inline export const HOT_M: usize = 4;
@inline export const HOT_CURSOR: usize = 8;
@inline export const HOT_N: usize = 12;
@inline export const HOT_RECORDS: usize = 16;
@inline export const HOT_STATE: usize = 20;

/** Next pick of the hot block at `b`: an index in [0, m). */
export function hotNext(b: usize): i32 {
  const m = load<i32>(b, HOT_M);
  if (load<u32>(b, HOT_KIND) == HOT_RR) {
    const p = load<i32>(b, HOT_CURSOR);
    const q = p + 1;
    store<i32>(b, q >= m ? 0 : q, HOT_CURSOR);
    return p;
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
