// Context registry: root contexts by id (a short list; one per VM in practice) and stream contexts
// in an open-addressing u32 → context table (no per-lookup allocation, no trap on unknown ids).
import { RootContext, StreamContext } from "./context";

export type RootFactory = (id: u32) => RootContext;

let rootFactory: RootFactory | null = null;
const roots = new Array<RootContext>();

export function setRootFactory(f: RootFactory): void {
  rootFactory = f;
}

export function createRoot(id: u32): void {
  if (findRoot(id) !== null) return;
  const f = rootFactory;
  if (f === null) return;
  roots.push(f(id));
}

export function findRoot(id: u32): RootContext | null {
  for (let i = 0, n = roots.length; i < n; i++) {
    const r = unchecked(roots[i]);
    if (r.id == id) return r;
  }
  return null;
}

export function removeRoot(id: u32): void {
  for (let i = 0, n = roots.length; i < n; i++) {
    if (unchecked(roots[i]).id == id) {
      roots.splice(i, 1);
      return;
    }
  }
}

// Linear probing, backward-shift deletion; capacity a power of two, load ≤ 1/2.
let capacity: i32 = 256;
let keys = new StaticArray<u32>(256);      // 0 = empty (context ids start at 1)
let vals = new StaticArray<StreamContext | null>(256);
let owners = new StaticArray<RootContext | null>(256);
let used: i32 = 0;
// The last stream added or found: a request's callbacks (headers, response, log, done, delete) come
// one after the other for the same id, so most lookups end here without probing the table.
let lastId: u32 = 0;
let lastCtx: StreamContext | null = null;

@inline function slotOf(id: u32, mask: i32): i32 {
  return <i32>((id * 0x9E3779B1) >>> 8) & mask;
}

function grow(): void {
  const oldKeys = keys;
  const oldVals = vals;
  const oldOwners = owners;
  const oldCap = capacity;
  capacity = oldCap << 1;
  keys = new StaticArray<u32>(capacity);
  vals = new StaticArray<StreamContext | null>(capacity);
  owners = new StaticArray<RootContext | null>(capacity);
  used = 0;
  for (let i = 0; i < oldCap; i++) {
    const k = unchecked(oldKeys[i]);
    if (k != 0) insert(k, unchecked(oldVals[i]), unchecked(oldOwners[i]));
  }
}

function insert(id: u32, ctx: StreamContext | null, root: RootContext | null): void {
  const mask = capacity - 1;
  let i = slotOf(id, mask);
  while (true) {
    const k = unchecked(keys[i]);
    if (k == 0 || k == id) {
      if (k == 0) used++;
      unchecked(keys[i] = id);
      unchecked(vals[i] = ctx);
      unchecked(owners[i] = root);
      return;
    }
    i = (i + 1) & mask;
  }
}

export function addStream(id: u32, ctx: StreamContext, root: RootContext): void {
  if (id == 0) return;
  if ((used + 1) << 1 > capacity) grow();
  insert(id, ctx, root);
  lastId = id;
  lastCtx = ctx;
}

function findSlot(id: u32): i32 {
  if (id == 0) return -1;
  const mask = capacity - 1;
  let i = slotOf(id, mask);
  for (let probes = 0; probes < capacity; probes++) {
    const k = unchecked(keys[i]);
    if (k == id) return i;
    if (k == 0) return -1;
    i = (i + 1) & mask;
  }
  return -1;
}

export function findStream(id: u32): StreamContext | null {
  if (id == lastId && id != 0) return lastCtx;
  const s = findSlot(id);
  if (s < 0) return null;
  const ctx = unchecked(vals[s]);
  lastId = id;
  lastCtx = ctx;
  return ctx;
}

/** Removes a stream and hands its context back to its root (for pooling). Unknown ids: no-op. */
export function removeStream(id: u32): void {
  let s = findSlot(id);
  if (s < 0) return;
  const ctx = unchecked(vals[s]);
  const root = unchecked(owners[s]);
  if (lastId == id) {
    lastId = 0;
    lastCtx = null;
  }
  const mask = capacity - 1;
  unchecked(keys[s] = 0);
  unchecked(vals[s] = null);
  unchecked(owners[s] = null);
  used--;
  // Backward-shift: move later entries of the probe run into the hole.
  let j = (s + 1) & mask;
  while (unchecked(keys[j]) != 0) {
    const k = unchecked(keys[j]);
    const home = slotOf(k, mask);
    // Is `home` cyclically outside (s, j]? Then the entry can move to s.
    const dist = (j - home) & mask;
    const gap = (j - s) & mask;
    if (dist >= gap) {
      unchecked(keys[s] = k);
      unchecked(vals[s] = unchecked(vals[j]));
      unchecked(owners[s] = unchecked(owners[j]));
      unchecked(keys[j] = 0);
      unchecked(vals[j] = null);
      unchecked(owners[j] = null);
      s = j;
    }
    j = (j + 1) & mask;
  }
  if (ctx !== null && root !== null) root.releaseStream(ctx);
}

export function streamCount(): i32 {
  return used;
}
