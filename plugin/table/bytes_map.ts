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

export class BytesMap<V> {
  private keys: StaticArray<ArrayBuffer | null>;
  private hashes: StaticArray<u32>;
  private vals: StaticArray<V | null>;
  private mask: i32;
  count: i32 = 0;

  constructor(expected: i32) {
    let cap = 8;
    while (cap < expected * 2 && cap < (1 << 30)) cap <<= 1;
    this.keys = new StaticArray<ArrayBuffer | null>(cap);
    this.hashes = new StaticArray<u32>(cap);
    this.vals = new StaticArray<V | null>(cap);
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
        unchecked(this.hashes[i] = h);
        unchecked(this.vals[i] = value);
        this.count++;
        return true;
      }
      if (unchecked(this.hashes[i]) == h && k.byteLength == <i32>len && memory.compare(changetype<usize>(k), ptr, len) == 0) {
        unchecked(this.vals[i] = value);
        return true;
      }
      i = (i + 1) & this.mask;
    }
    return false;
  }

  get(ptr: usize, len: usize): V | null {
    const h = hashBytes(ptr, len);
    let i = <i32>h & this.mask;
    for (let probes = 0; probes <= this.mask; probes++) {
      const k = unchecked(this.keys[i]);
      if (k === null) return null;
      if (unchecked(this.hashes[i]) == h && k.byteLength == <i32>len && (len == 0 || memory.compare(changetype<usize>(k), ptr, len) == 0)) {
        return unchecked(this.vals[i]);
      }
      i = (i + 1) & this.mask;
    }
    return null;
  }
}
