// round_robin: candidates in turn. `start` (the worker's sequence number) staggers workers so that
// N workers together stay balanced even when each sees few requests.
import { Picker } from "./picker";
import { HOT_CURSOR, HOT_KIND, HOT_M, HOT_RR } from "./hot";

export class RoundRobin extends Picker {
  private cursor: i32;

  constructor(n: i32, start: u32) {
    super(n);
    this.cursor = n > 0 ? <i32>(start % <u32>n) : 0;
  }

  hotStateBytes(): i32 {
    return 0;
  }

  writeHot(b: usize): void {
    store<u32>(b, HOT_RR, HOT_KIND);
    store<i32>(b, this.n, HOT_M);
    store<i32>(b, this.cursor, HOT_CURSOR);
  }

  next(): i32 {
    const p = this.cursor;
    const q = p + 1;
    this.cursor = q >= this.n ? 0 : q;
    return p;
  }
}
