// A picker chooses among a deployment's candidate instances (indices 0..n-1 of the list the table
// compiler built for it). One small class per strategy; the compiler picks the class per deployment.
// The request path does not call it: its state is copied into the deployment's hot block (hot.ts),
// which the request advances in place; next() gives the same sequence (tests and fallback order).
export abstract class Picker {
  constructor(public n: i32) {}

  /** Next pick: an index in [0, n). Callers guarantee n ≥ 1. */
  abstract next(): i32;

  /** Bytes of state after the hot block header (see hot.ts). */
  abstract hotStateBytes(): i32;

  /** Writes kind, m, cursor/total and the state into the hot block at `b` (see hot.ts). */
  abstract writeHot(b: usize): void;

  /**
   * The k-th (k ≥ 1) fallback after candidate `pos` in this strategy's order, or -1. Over
   * k = 1..n-1 this visits every other candidate once. Default: the list order, rotating from pos.
   */
  fallbackAt(pos: i32, k: i32): i32 {
    if (k < 1 || k >= this.n) return -1;
    return (pos + k) % this.n;
  }
}
