// A picker chooses among a deployment's candidate instances (indices 0..n-1 of the list the table
// compiler built for it). One small class per strategy; the compiler picks the class per deployment,
// so the request path makes one virtual call and never switches on the strategy.
export abstract class Picker {
  constructor(public n: i32) {}

  /** Next pick: an index in [0, n). Callers guarantee n ≥ 1. */
  abstract next(): i32;

  /**
   * The k-th (k ≥ 1) fallback after candidate `pos` in this strategy's order, or -1. Over
   * k = 1..n-1 this visits every other candidate once. Default: the list order, rotating from pos.
   */
  fallbackAt(pos: i32, k: i32): i32 {
    if (k < 1 || k >= this.n) return -1;
    return (pos + k) % this.n;
  }
}
