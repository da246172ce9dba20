// failover: candidates arrive sorted by priority tier (0 first). The lowest tier present is the
// active one and is rotated by an inner picker (round robin, or smooth WRR when its weights differ);
// higher tiers are only fallbacks. As candidates are only eligible instances, a tier is skipped
// exactly when all of its instances are ejected/draining, and traffic returns to it as soon as a
// table marks one of them active again.
import { Picker } from "./picker";

export class Failover extends Picker {
  constructor(n: i32, private tierSize: i32, private inner: Picker) {
    super(n);
  }

  next(): i32 {
    return this.inner.next();
  }

  /** The rest of the active tier (rotating from pos), then the higher tiers in priority order. */
  fallbackAt(pos: i32, k: i32): i32 {
    if (k < 1 || k >= this.n) return -1;
    if (k < this.tierSize) return (pos + k) % this.tierSize;
    return k;
  }
}
