// weighted_round_robin: nginx's smooth weighted round robin. Each pick adds every weight to its
// running score, takes the highest (first on ties) and subtracts the total from it. Periodic with
// period sum(weights), so every window of sum(weights) consecutive picks holds each candidate exactly
// `weight` times, spread out rather than in bursts.
import { Picker } from "./picker";
import { HOT_CURSOR, HOT_KIND, HOT_M, HOT_STATE, HOT_SWRR } from "./hot";

/** Warm-up steps applied for the worker offset are capped (the period can be ~10 M picks). */
const MAX_START_STEPS: u32 = 4096;

export class SmoothWeightedRoundRobin extends Picker {
  /** Interleaved (weight, current score) per candidate: one array, so a pick reads one or two cache lines. */
  private state: StaticArray<i32>;
  private total: i32 = 0;

  constructor(weights: StaticArray<i32>, start: u32) {
    super(weights.length);
    const n = weights.length;
    const state = new StaticArray<i32>(n << 1);
    let t: i32 = 0;
    for (let i = 0; i < n; i++) {
      const w = unchecked(weights[i]);
      unchecked(state[i << 1] = w);
      t += w;
    }
    this.state = state;
    this.total = t;
    if (t > 0) {
      let steps = start % <u32>t;
      if (steps > MAX_START_STEPS) steps = MAX_START_STEPS;
      for (let s: u32 = 0; s < steps; s++) this.next();
    }
  }

  hotStateBytes(): i32 {
    return this.n << 3;
  }

  writeHot(b: usize): void {
    store<u32>(b, HOT_SWRR, HOT_KIND);
    store<i32>(b, this.n, HOT_M);
    store<i32>(b, this.total, HOT_CURSOR);
    // Same (weight, score) pair layout as `state`.
    memory.copy(b + HOT_STATE, changetype<usize>(this.state), <usize>this.n << 3);
  }

  next(): i32 {
    const st = this.state;
    const n = this.n;
    let best = 0;
    let bestScore = i32.MIN_VALUE;
    for (let i = 0; i < n; i++) {
      const s = unchecked(st[(i << 1) + 1]) + unchecked(st[i << 1]);
      unchecked(st[(i << 1) + 1] = s);
      if (s > bestScore) { bestScore = s; best = i; }
    }
    unchecked(st[(best << 1) + 1] = bestScore - this.total);
    return best;
  }
}
