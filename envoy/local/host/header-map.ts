import type { HeaderPairs } from "./types.js";

/** Buffer's own slice decoders (what toString(encoding, start, end) dispatches to), minus the dispatch. */
type NodeBuffer = Buffer & { latin1Slice(start: number, end: number): string; utf8Slice(start: number, end: number): string };

/**
 * A value set from module memory and not decoded yet: [key, "", offset, length] with the bytes at
 * `offset` in the map's arena. Never leaves the map: every read path decodes it first.
 */
type RawPair = [string, string, number, number];

/**
 * An Envoy header map: ordered pairs, lower-case keys (Http::LowerCaseString), pseudo-headers kept
 * before regular ones (HeaderMapImpl inserts ":x" keys after the last pseudo-header). Copy-on-write
 * over the caller's pairs so a request the plugin does not modify costs no copy.
 *
 * A map with an arena (the benchmark fast path's reused map) keeps values the module sets as bytes
 * copied out of module memory — what Envoy does (a copy into its HeaderString) — and decodes them
 * to strings only when something reads them (get, entries, snapshot, byteSize). Maps without an
 * arena get decoded strings at once.
 */
export class HeaderMap {
  private pairs: HeaderPairs;
  private owned: boolean;
  /** How many entries are RawPairs. */
  private raw = 0;
  private arena: NodeBuffer | null = null;
  private arenaView: DataView | null = null;
  private arenaUsed = 0;
  /** An owned array kept for reuse by reset() (the fast path's copy-on-write target). */
  private spare: HeaderPairs | null = null;
  /**
   * RawPair tuples of a reusable map, reused from request to request (they never leave the map:
   * settle() and get() replace them by fresh [key, value] tuples), so setting a value allocates nothing.
   */
  private rawPool: RawPair[] | null = null;
  private rawPoolUsed = 0;

  constructor(pairs: HeaderPairs, owned = false) {
    this.pairs = pairs;
    this.owned = owned;
  }

  /** Builds a map from test input, lower-casing keys like Envoy's codecs deliver them. */
  static fromInput(pairs: readonly (readonly [string, string])[]): HeaderMap {
    const out: HeaderPairs = new Array(pairs.length);
    for (let i = 0; i < pairs.length; i++) out[i] = [pairs[i]![0].toLowerCase(), pairs[i]![1]];
    return new HeaderMap(out, true);
  }

  /** @internal A reusable map for the benchmark fast path: values from module memory stay bytes until read. */
  static reusable(arenaBytes = 4096): HeaderMap {
    const m = new HeaderMap([], true);
    m.arena = Buffer.allocUnsafeSlow(arenaBytes) as NodeBuffer;
    m.arenaView = new DataView(m.arena.buffer, m.arena.byteOffset, arenaBytes);
    m.spare = [];
    m.rawPool = [];
    return m;
  }

  /** @internal Reuses this map for another request's pairs (copy-on-write over them, as the constructor). */
  reset(pairs: HeaderPairs): void {
    if (this.owned && this.pairs !== pairs && this.spare === null) this.spare = this.pairs;
    this.pairs = pairs;
    this.owned = false;
    this.raw = 0;
    this.arenaUsed = 0;
    this.rawPoolUsed = 0;
  }

  get size(): number {
    return this.pairs.length;
  }

  entries(): HeaderPairs {
    if (this.raw > 0) this.settle();
    return this.pairs;
  }

  snapshot(): HeaderPairs {
    if (this.raw > 0) this.settle();
    return this.pairs.map(([k, v]) => [k, v]);
  }

  /** First value (Envoy returns entry[0] when a key repeats). */
  get(key: string): string | undefined {
    const p = this.pairs;
    for (let i = 0; i < p.length; i++) {
      const e = p[i]!;
      if (e[0] === key) return this.raw > 0 && isRaw(e) ? this.decodeAt(i) : e[1];
    }
    return undefined;
  }

  /**
   * @internal The first value's text up to its first ',' (a comma-separated list's first entry);
   * undefined when the key is absent or its value is empty. A value still held as bytes is not
   * decoded whole: only its first entry is (same text: ',' never occurs inside a UTF-8 sequence).
   */
  firstListEntry(key: string): string | undefined {
    const p = this.pairs;
    for (let i = 0; i < p.length; i++) {
      const e = p[i]!;
      if (e[0] !== key) continue;
      if (this.raw > 0 && isRaw(e)) {
        const r = e as unknown as RawPair;
        if (r[3] === 0) return undefined;
        const arena = this.arena!;
        let end = r[2];
        const stop = r[2] + r[3];
        while (end < stop && arena[end] !== 0x2c) end++;
        return decode(arena, r[2], end - r[2]);
      }
      const list = e[1];
      if (list === "") return undefined;
      const comma = list.indexOf(",");
      return comma < 0 ? list : list.slice(0, comma);
    }
    return undefined;
  }

  add(key: string, value: string): void {
    this.insert([key, value]);
  }

  /**
   * @internal Adds a value given as `len` bytes at `ptr` of module memory (`src`, and `view` over the
   * same bytes), copied now: the module may reuse them. Decoded like readValue: ASCII as is, else UTF-8.
   */
  addBytes(key: string, src: Buffer, view: DataView, ptr: number, len: number): void {
    const arena = this.arena;
    if (arena === null || len === 0 || len > arena.length) {
      this.add(key, decode(src as NodeBuffer, ptr, len));
      return;
    }
    let at = this.arenaUsed;
    if (at + len > arena.length) {
      // Arena full: decode what it holds, then start over.
      this.settle();
      at = 0;
    }
    // 4 bytes at a time: V8 compiles DataView accesses tighter than byte-wise typed-array ones.
    const dst = this.arenaView!;
    let i = 0;
    for (; i + 4 <= len; i += 4) dst.setUint32(at + i, view.getUint32(ptr + i, true), true);
    for (; i < len; i++) arena[at + i] = src[ptr + i]!;
    this.arenaUsed = at + len;
    this.raw++;
    const pool = this.rawPool!;
    let e: RawPair;
    if (this.rawPoolUsed < pool.length) {
      e = pool[this.rawPoolUsed]!;
      e[0] = key;
      e[2] = at;
      e[3] = len;
    } else pool.push((e = [key, "", at, len]));
    this.rawPoolUsed++;
    this.insert(e as unknown as [string, string]);
  }

  /** Envoy setCopy: removes every entry of the key, then adds one. */
  replace(key: string, value: string): void {
    this.remove(key);
    this.add(key, value);
  }

  /** replace() with the value as bytes of module memory (see addBytes). */
  replaceBytes(key: string, src: Buffer, view: DataView, ptr: number, len: number): void {
    this.remove(key);
    this.addBytes(key, src, view, ptr, len);
  }

  remove(key: string): void {
    // In place; a key that is not there costs one scan and no copy of the caller's pairs.
    let i = 0;
    const n = this.pairs.length;
    while (i < n && this.pairs[i]![0] !== key) i++;
    if (i === n) return;
    this.own();
    const p = this.pairs;
    let kept = i;
    for (let j = i; j < n; j++) {
      const e = p[j]!;
      if (e[0] !== key) p[kept++] = e;
      else if (isRaw(e)) this.raw--;
    }
    // pop(), not `length =` (a runtime call in V8).
    while (p.length > kept) p.pop();
  }

  setAll(pairs: HeaderPairs): void {
    this.pairs = [];
    this.owned = true;
    this.raw = 0;
    this.arenaUsed = 0;
    for (const [k, v] of pairs) this.add(k.toLowerCase(), v);
  }

  /** HeaderMap::byteSize(): sum of key and value lengths (what proxy_get_header_map_size answers). */
  byteSize(): number {
    if (this.raw > 0) this.settle();
    let n = 0;
    for (const [k, v] of this.pairs) n += Buffer.byteLength(k) + Buffer.byteLength(v);
    return n;
  }

  private insert(pair: [string, string]): void {
    this.own();
    const p = this.pairs;
    if (pair[0].charCodeAt(0) === 58 /* ':' */) {
      let i = 0;
      while (i < p.length && p[i]![0].charCodeAt(0) === 58) i++;
      p.splice(i, 0, pair);
    } else p.push(pair);
  }

  /** Decodes every raw value (their tuples are replaced: tuples are never mutated, see own()). */
  private settle(): void {
    const p = this.pairs;
    for (let i = 0; i < p.length && this.raw > 0; i++) if (isRaw(p[i]!)) this.decodeAt(i);
  }

  private decodeAt(i: number): string {
    const e = this.pairs[i] as unknown as RawPair;
    const v = decode(this.arena!, e[2], e[3]);
    this.pairs[i] = [e[0], v];
    this.raw--;
    return v;
  }

  /** Copy-on-write of the caller's array. Pairs are never mutated in place (snapshot() copies them), so they are shared. */
  private own(): void {
    if (!this.owned) {
      const src = this.pairs;
      const spare = this.spare;
      if (spare !== null) {
        const n = src.length;
        for (let i = 0; i < n; i++) {
          if (i < spare.length) spare[i] = src[i]!;
          else spare.push(src[i]!);
        }
        while (spare.length > n) spare.pop();
        this.pairs = spare;
        this.spare = null;
      } else this.pairs = src.slice();
      this.owned = true;
    }
  }
}

function isRaw(e: [string, string]): boolean {
  return (e as unknown[]).length === 4;
}

/** ASCII (one scan) as latin1, else UTF-8 (invalid sequences → U+FFFD, like TextDecoder). */
function decode(buf: NodeBuffer, ptr: number, len: number): string {
  if (len === 0) return "";
  for (let i = ptr, end = ptr + len; i < end; i++) if (buf[i]! > 0x7f) return buf.utf8Slice(ptr, ptr + len);
  return buf.latin1Slice(ptr, ptr + len);
}

/** Serialized size of a map (cpp-host pairsSize): u32 count, count × 2 × u32, each key/value + NUL. */
export function pairsSize(pairs: HeaderPairs): number {
  let size = 4;
  for (let i = 0; i < pairs.length; i++) size += 10 + Buffer.byteLength(pairs[i]![0]) + Buffer.byteLength(pairs[i]![1]);
  return size;
}

/** Serializes pairs into `buf` at `at` (cpp-host marshalPairs). */
export function writePairs(buf: Buffer, at: number, pairs: HeaderPairs): void {
  buf.writeUInt32LE(pairs.length, at);
  let lens = at + 4;
  let data = at + 4 + pairs.length * 8;
  for (let i = 0; i < pairs.length; i++) {
    const [k, v] = pairs[i]!;
    const kl = buf.write(k, data, "utf8");
    buf[data + kl] = 0;
    data += kl + 1;
    const vl = buf.write(v, data, "utf8");
    buf[data + vl] = 0;
    data += vl + 1;
    buf.writeUInt32LE(kl, lens);
    buf.writeUInt32LE(vl, lens + 4);
    lens += 8;
  }
}

/** Serializes pairs to a fresh buffer (tests and fixtures' inputs). */
export function serializePairs(pairs: HeaderPairs): Uint8Array {
  const buf = Buffer.alloc(pairsSize(pairs));
  writePairs(buf, 0, pairs);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

/** cpp-host limits.h: PROXY_WASM_HOST_PAIRS_MAX_BYTES and PROXY_WASM_HOST_PAIRS_MAX_COUNT. */
export const PAIRS_MAX_BYTES = 1024 * 1024;
export const PAIRS_MAX_COUNT = 1024;

/**
 * cpp-host PairsUtil::toPairs: u32 count; count × (u32 key_len, u32 value_len); each key and value
 * followed by a NUL. Anything malformed — over 1 MiB or 1,024 pairs, a size table or string running past
 * the buffer, a missing NUL, bytes left over — is an empty list, not an error (so an http_call with it
 * lacks :method and set_header_map_pairs with it empties the map).
 */
export function parsePairs(bytes: Uint8Array): HeaderPairs {
  if (bytes.length > PAIRS_MAX_BYTES || bytes.length < 4) return [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = dv.getUint32(0, true);
  if (count > PAIRS_MAX_COUNT || 4 + count * 8 > bytes.length) return [];
  const out: HeaderPairs = [];
  let data = 4 + count * 8;
  const dec = new TextDecoder();
  for (let i = 0; i < count; i++) {
    const kl = dv.getUint32(4 + i * 8, true);
    const vl = dv.getUint32(8 + i * 8, true);
    if (data + kl + 1 > bytes.length || bytes[data + kl] !== 0) return [];
    const k = dec.decode(bytes.subarray(data, data + kl));
    data += kl + 1;
    if (data + vl + 1 > bytes.length || bytes[data + vl] !== 0) return [];
    const v = dec.decode(bytes.subarray(data, data + vl));
    data += vl + 1;
    out.push([k, v]);
  }
  return data === bytes.length ? out : [];
}
