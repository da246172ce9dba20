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
 * Lookups read one slot: hash, key length, value pointer, key pointer, an aux word the owner may set
 * (`setAux`; 20 bytes), then, when the map keeps keys inline (`inlineBytes` > 0), the key's first
 * `inlineBytes` bytes. A model-map slot (44 inline bytes) is one 64-byte line holding the whole key of
 * any name up to 44 bytes and the aux word: a lookup reads one cache line, not a slot and the key's own
 * buffer elsewhere in the heap. `keys` and `vals` hold the same objects for the GC (the raw pointers
 * in the slots are not traced). Slot addresses are stable: the map never grows.
 */
/** Slot layout: u32 hash, u32 key length, u32 value, u32 key pointer, u32 aux, then the inline key. */
@inline const SLOT_AUX: usize = 16;
@inline const SLOT_HEAD: usize = 20;

export class BytesMap<V> {
  private keys: StaticArray<ArrayBuffer | null>;
  private vals: StaticArray<V | null>;
  /** Owns the slots; `base` is the first slot, 64-byte aligned when slots are 64 bytes. */
  private block: ArrayBuffer;
  private base: usize;
  private slotSize: usize;
  private inlineBytes: usize;
  private mask: i32;
  count: i32 = 0;

  /** `inlineBytes`: 0 (20-byte slots) or 44 (64-byte slots, one line each). */
  constructor(expected: i32, inlineBytes: i32 = 0) {
    let cap = 8;
    while (cap < expected * 2 && cap < (1 << 28)) cap <<= 1;
    this.keys = new StaticArray<ArrayBuffer | null>(cap);
    this.vals = new StaticArray<V | null>(cap);
    const inl: usize = inlineBytes == 44 ? 44 : 0;
    // 63 spare bytes: the buffer's own address is only 16-byte aligned, the slots start on a line.
    const block = new ArrayBuffer(<i32>(<usize>cap * (SLOT_HEAD + inl) + 63));
    this.block = block;
    this.inlineBytes = inl;
    this.slotSize = SLOT_HEAD + inl;
    this.base = (changetype<usize>(block) + 63) & ~<usize>63;
    this.mask = cap - 1;
  }

  /** Inserts or replaces; returns the key's slot (0: the map is full). The map never grows: size it with the expected count. */
  set(key: ArrayBuffer, value: V): usize {
    const ptr = changetype<usize>(key);
    const len = <usize>key.byteLength;
    const h = hashBytes(ptr, len);
    let i = <i32>h & this.mask;
    for (let probes = 0; probes <= this.mask; probes++) {
      const k = unchecked(this.keys[i]);
      const s = this.base + <usize>i * this.slotSize;
      if (k === null) {
        if ((this.count + 1) * 2 > this.mask + 1) return 0;
        unchecked(this.keys[i] = key);
        unchecked(this.vals[i] = value);
        store<u32>(s, h);
        store<u32>(s, <u32>len, 4);
        store<u32>(s, <u32>changetype<usize>(value), 8);
        store<u32>(s, <u32>ptr, 12);
        store<u32>(s, 0, SLOT_AUX);
        memory.copy(s + SLOT_HEAD, ptr, len < this.inlineBytes ? len : this.inlineBytes);
        this.count++;
        return s;
      }
      if (load<u32>(s) == h && k.byteLength == <i32>len && memory.compare(changetype<usize>(k), ptr, len) == 0) {
        unchecked(this.vals[i] = value);
        store<u32>(s, <u32>changetype<usize>(value), 8);
        return s;
      }
      i = (i + 1) & this.mask;
    }
    return 0;
  }

  get(ptr: usize, len: usize): V | null {
    const s = this.find(ptr, len);
    return s == 0 ? null : slotValue<V>(s);
  }

  /** The key's slot, or 0 when absent. */
  find(ptr: usize, len: usize): usize {
    const h = hashBytes(ptr, len);
    const inl = this.inlineBytes;
    const head = len < inl ? len : inl;
    let i = <i32>h & this.mask;
    for (let probes = 0; probes <= this.mask; probes++) {
      const s = this.base + <usize>i * this.slotSize;
      const kp = <usize>load<u32>(s, 12);
      if (kp == 0) return 0;
      // The key's first `head` bytes are in the slot, the rest (if any) in the key's buffer.
      if (load<u32>(s) == h && <usize>load<u32>(s, 4) == len &&
        (head == 0 || memory.compare(s + SLOT_HEAD, ptr, head) == 0) &&
        (len == head || memory.compare(kp + head, ptr + head, len - head) == 0)) {
        return s;
      }
      i = (i + 1) & this.mask;
    }
    return 0;
  }
}

/** The value of a slot `find` or `set` returned. */
@inline export function slotValue<V>(slot: usize): V | null {
  return changetype<V | null>(<usize>load<u32>(slot, 8));
}

/** The aux word of a slot `find` or `set` returned (0 until set). */
@inline export function slotAux(slot: usize): u32 {
  return load<u32>(slot, SLOT_AUX);
}

/** Sets the aux word of a slot `set` returned. */
@inline export function setSlotAux(slot: usize, aux: u32): void {
  store<u32>(slot, aux, SLOT_AUX);
}
