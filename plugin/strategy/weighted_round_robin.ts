// weighted_round_robin: nginx's smooth weighted round robin. Each pick adds every weight to its
// running score, takes the highest (first on ties) and subtracts the total from it. Periodic with
// period sum(weights), so every window of sum(weights) consecutive picks holds each candidate exactly
// `weight` times, spread out rather than in bursts.
import { Picker } from "./picker";
import { HOT_CURSOR, HOT_KIND, HOT_M, HOT_SEQ, HOT_STATE, HOT_SWRR } from "./hot";

/** Warm-up steps applied for the worker offset are capped (the period can be ~10 M picks). */
const MAX_START_STEPS: u32 = 4096;
/** Longest period written to the hot block as a pick sequence (one byte per pick). */
const MAX_SEQUENCE: i32 = 1024;

function gcd(a: i32, b: i32): i32 {
  while (b > 0) {
    const t = a % b;
    a = b;
    b = t;
  }
  return a;
}

export class SmoothWeightedRoundRobin extends Picker {
  /** Interleaved (weight, current score) per candidate: one array, so a pick reads one or two cache lines. */
  private state: StaticArray<i32>;
  private total: i32 = 0;
  private sequence: StaticArray<u8> | null = null;
  private sequenceDone: bool = false;

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
    const seq = this.period();
    return seq !== null ? seq.length : this.n << 3;
  }

  writeHot(b: usize): void {
    const seq = this.period();
    if (seq !== null) {
      store<u32>(b, HOT_SEQ, HOT_KIND);
      store<i32>(b, seq.length, HOT_M);
      store<i32>(b, 0, HOT_CURSOR);
      memory.copy(b + HOT_STATE, changetype<usize>(seq), <usize>seq.length);
      return;
    }
    store<u32>(b, HOT_SWRR, HOT_KIND);
    store<i32>(b, this.n, HOT_M);
    store<i32>(b, this.total, HOT_CURSOR);
    // Same (weight, score) pair layout as `state`.
    memory.copy(b + HOT_STATE, changetype<usize>(this.state), <usize>this.n << 3);
  }

  /**
   * The next picks from the current state up to where the state repeats, when that is at most
   * MAX_SEQUENCE picks of at most 256 candidates (else null: the hot block keeps the scores). The period
   * is sum(weights) / gcd(weights), and it is checked, not assumed: the scores must be back where they
   * started, so the sequence repeats exactly what next() would return.
   */
  private period(): StaticArray<u8> | null {
    if (this.sequenceDone) return this.sequence;
    this.sequenceDone = true;
    const n = this.n;
    if (n < 1 || n > 256 || this.total <= 0) return null;
    let g = unchecked(this.state[0]);
    for (let i = 1; i < n && g > 1; i++) g = gcd(g, unchecked(this.state[i << 1]));
    if (g <= 0) return null;
    const len = this.total / g;
    if (len > MAX_SEQUENCE) return null;
    const saved = this.state;
    this.state = StaticArray.slice<i32>(saved); // next() below runs on a copy
    const seq = new StaticArray<u8>(len);
    for (let k = 0; k < len; k++) unchecked(seq[k] = <u8>this.next());
    let back = true;
    for (let i = 0; i < n << 1; i++) if (unchecked(this.state[i]) != unchecked(saved[i])) back = false;
    this.state = saved;
    if (back) this.sequence = seq;
    return this.sequence;
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
