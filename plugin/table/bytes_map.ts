// Open-addressing hash map keyed by UTF-8 bytes, looked up by a raw (ptr, len) — the request path
// finds a model's deployment straight from the host's header or body bytes, without a string.
export function hashBytes(ptr: usize, len: usize): u32 {
  let h: u32 = 0x811c9dc5; // FNV-1a
  for (let i: usize = 0; i < len; i++) {
    h ^= <u32>load<u8>(ptr + i);
    h *= 0x01000193;
  }
  return h;
}

/**
 * Lookups read one slot of `slots` (hash, key pointer, key length, value pointer: 16 bytes) and the
 * key's bytes — two cache lines — rather than three parallel arrays and the key's header. `keys` and
 * `vals` hold the same objects for the GC (the raw pointers in `slots` are not traced).
 */
export class BytesMap<V> {
  private keys: StaticArray<ArrayBuffer | null>;
  private vals: StaticArray<V | null>;
  private slots: StaticArray<u32>;
  private mask: i32;
  count: i32 = 0;

  constructor(expected: i32) {
    let cap = 8;
    while (cap < expected * 2 && cap < (1 << 28)) cap <<= 1;
    this.keys = new StaticArray<ArrayBuffer | null>(cap);
    this.vals = new StaticArray<V | null>(cap);
    this.slots = new StaticArray<u32>(cap << 2);
    this.mask = cap - 1;
  }

  /** Inserts or replaces. The map never grows: size it with the expected count. */
  set(key: ArrayBuffer, value: V): bool {
    const ptr = changetype<usize>(key);
    const len = <usize>key.byteLength;
    const h = hashBytes(ptr, len);
    let i = <i32>h & this.mask;
    for (let probes = 0; probes <= this.mask; probes++) {
      const k = unchecked(this.keys[i]);
      if (k === null) {
        if ((this.count + 1) * 2 > this.mask + 1) return false;
        unchecked(this.keys[i] = key);
        unchecked(this.vals[i] = value);
        const s = i << 2;
        unchecked(this.slots[s] = h);
        unchecked(this.slots[s + 1] = <u32>ptr);
        unchecked(this.slots[s + 2] = <u32>len);
        unchecked(this.slots[s + 3] = <u32>changetype<usize>(value));
        this.count++;
        return true;
      }
      if (unchecked(this.slots[i << 2]) == h && k.byteLength == <i32>len && memory.compare(changetype<usize>(k), ptr, len) == 0) {
        unchecked(this.vals[i] = value);
        unchecked(this.slots[(i << 2) + 3] = <u32>changetype<usize>(value));
        return true;
      }
      i = (i + 1) & this.mask;
    }
    return false;
  }

  get(ptr: usize, len: usize): V | null {
    const h = hashBytes(ptr, len);
    const slots = changetype<usize>(this.slots);
    let i = <i32>h & this.mask;
    for (let probes = 0; probes <= this.mask; probes++) {
      const s = slots + (<usize>i << 4);
      const kp = <usize>load<u32>(s, 4);
      if (kp == 0) return null;
      if (load<u32>(s) == h && <usize>load<u32>(s, 8) == len && (len == 0 || memory.compare(kp, ptr, len) == 0)) {
        return changetype<V | null>(<usize>load<u32>(s, 12));
      }
      i = (i + 1) & this.mask;
    }
    return null;
  }
}
