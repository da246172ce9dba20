// round_robin: candidates in turn. `start` (the worker's sequence number) staggers workers so that
// N workers together stay balanced even when each sees few requests.
import { Picker } from "./picker";

export class RoundRobin extends Picker {
  private cursor: i32;

  constructor(n: i32, start: u32) {
    super(n);
    this.cursor = n > 0 ? <i32>(start % <u32>n) : 0;
  }

  next(): i32 {
    const p = this.cursor;
    const q = p + 1;
    this.cursor = q >= this.n ? 0 : q;
    return p;
  }
}
