/**
 * A VM's contexts by id (WorkerVm.contexts): root contexts for the VM's life, one HTTP stream per request.
 *
 * Not a Map: a long-lived Map that gets an entry added and deleted per request keeps requests alive in V8.
 * Its hash table sits in old space and is rebuilt (in old space) whenever the live count crosses a
 * grow/shrink threshold; the tables it leaves behind still hold the entries they had, and the young-generation
 * GC (scavenge) treats every old-to-young pointer as live, so those streams — and all they reference — survive
 * scavenges until the next full GC, get promoted, and make the next ones slow (envoy/local/README.md, "Cost
 * per request"). Here one array is written in place: open addressing on the id (ids are sequential per VM, so
 * `id & mask` spreads them), linear probing, backward-shift deletion (no tombstones), so a deleted stream
 * leaves no pointer behind. The array is replaced only when the table grows (to twice the most contexts
 * ever live at once), never by churn.
 */
export class ContextTable<T extends { readonly id: number } & object> {
  private slots: Array<T | undefined>;
  private mask: number;
  private count = 0;

  constructor(initialCapacity = 64) {
    let cap = 16;
    while (cap < initialCapacity) cap *= 2;
    this.slots = new Array<T | undefined>(cap).fill(undefined);
    this.mask = cap - 1;
  }

  /** Contexts in the table. */
  get size(): number {
    return this.count;
  }

  /** @internal Slots in the backing array (tests: churn must not grow it). */
  get capacity(): number {
    return this.slots.length;
  }

  get(id: number): T | undefined {
    const slots = this.slots;
    const mask = this.mask;
    for (let i = id & mask; ; i = (i + 1) & mask) {
      const c = slots[i];
      if (c === undefined || c.id === id) return c;
    }
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  /** Adds `c` under its id (replacing a context with the same id). */
  set(c: T): void {
    if ((this.count + 1) * 2 > this.slots.length) this.grow();
    const slots = this.slots;
    const mask = this.mask;
    const id = c.id;
    for (let i = id & mask; ; i = (i + 1) & mask) {
      const o = slots[i];
      if (o === undefined) {
        slots[i] = c;
        this.count++;
        return;
      }
      if (o.id === id) {
        slots[i] = c;
        return;
      }
    }
  }

  delete(id: number): boolean {
    const slots = this.slots;
    const mask = this.mask;
    let i = id & mask;
    for (;;) {
      const c = slots[i];
      if (c === undefined) return false;
      if (c.id === id) break;
      i = (i + 1) & mask;
    }
    slots[i] = undefined;
    this.count--;
    // Backward shift: move later entries of the probe run into the gap when their home slot allows it.
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const c = slots[j];
      if (c === undefined) return true;
      const home = c.id & mask;
      // c may move to i unless its home lies cyclically in (i, j].
      const inRange = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!inRange) {
        slots[i] = c;
        slots[j] = undefined;
        i = j;
      }
    }
  }

  /** The contexts, in no particular order. */
  values(): T[] {
    const out: T[] = [];
    for (const c of this.slots) if (c !== undefined) out.push(c);
    return out;
  }

  private grow(): void {
    const old = this.slots;
    const cap = old.length * 2;
    this.slots = new Array<T | undefined>(cap).fill(undefined);
    this.mask = cap - 1;
    this.count = 0;
    for (const c of old) if (c !== undefined) this.set(c);
    old.fill(undefined); // the old array holds no stream once replaced
  }
}
