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

  /** The hot block rotates the active tier exactly as `inner` does. */
  hotStateBytes(): i32 {
    return this.inner.hotStateBytes();
  }

  writeHot(b: usize): void {
    this.inner.writeHot(b);
  }

  /**
   * Fallback order: one more instance of the active tier, then the first instance of the next tier,
   * then the rest of the active tier (rotating from pos), then the remaining higher tiers. The next
   * tier comes second so that with the default two fallbacks a request still lands in the backup
   * region when the whole primary region dies at once, before any ejection has reached this worker.
   */
  fallbackAt(pos: i32, k: i32): i32 {
    if (k < 1 || k >= this.n) return -1;
    const t = this.tierSize;
    if (t == 1 || t == this.n) return k < t ? (pos + k) % t : k; // one tier, or a lone primary
    const idx = k - 1;
    if (idx == 0) return (pos + 1) % t;
    if (idx == 1) return t;
    if (idx < t) return (pos + idx) % t;
    return idx + 1;
  }
}
