import type { HeaderPairs } from "./types.js";

/**
 * An Envoy header map: ordered pairs, lower-case keys (Http::LowerCaseString), pseudo-headers kept
 * before regular ones (HeaderMapImpl inserts ":x" keys after the last pseudo-header). Copy-on-write
 * over the caller's pairs so a request the plugin does not modify costs no copy.
 */
export class HeaderMap {
  private pairs: HeaderPairs;
  private owned: boolean;

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

  get size(): number {
    return this.pairs.length;
  }

  entries(): HeaderPairs {
    return this.pairs;
  }

  snapshot(): HeaderPairs {
    return this.pairs.map(([k, v]) => [k, v]);
  }

  /** First value (Envoy returns entry[0] when a key repeats). */
  get(key: string): string | undefined {
    const p = this.pairs;
    for (let i = 0; i < p.length; i++) if (p[i]![0] === key) return p[i]![1];
    return undefined;
  }

  add(key: string, value: string): void {
    this.own();
    const p = this.pairs;
    if (key.charCodeAt(0) === 58 /* ':' */) {
      let i = 0;
      while (i < p.length && p[i]![0].charCodeAt(0) === 58) i++;
      p.splice(i, 0, [key, value]);
    } else p.push([key, value]);
  }

  /** Envoy setCopy: removes every entry of the key, then adds one. */
  replace(key: string, value: string): void {
    this.remove(key);
    this.add(key, value);
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
    for (let j = i + 1; j < n; j++) if (p[j]![0] !== key) p[kept++] = p[j]!;
    p.length = kept;
  }

  setAll(pairs: HeaderPairs): void {
    this.pairs = [];
    this.owned = true;
    for (const [k, v] of pairs) this.add(k.toLowerCase(), v);
  }

  /** HeaderMap::byteSize(): sum of key and value lengths (what proxy_get_header_map_size answers). */
  byteSize(): number {
    let n = 0;
    for (const [k, v] of this.pairs) n += Buffer.byteLength(k) + Buffer.byteLength(v);
    return n;
  }

  /** Copy-on-write of the caller's array. Pairs are never mutated in place (snapshot() copies them), so they are shared. */
  private own(): void {
    if (!this.owned) {
      this.pairs = this.pairs.slice();
      this.owned = true;
    }
  }
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

/**
 * Parses a serialized map like cpp-host toPairs: fewer than 4 bytes or a count whose length table
 * does not fit → empty map. Returns null when the data runs past the buffer (we refuse instead of
 * reading out of bounds).
 */
export function parsePairs(bytes: Uint8Array): HeaderPairs | null {
  if (bytes.length < 4) return [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = dv.getUint32(0, true);
  if (4 + count * 8 > bytes.length) return [];
  const out: HeaderPairs = [];
  let data = 4 + count * 8;
  const dec = new TextDecoder();
  for (let i = 0; i < count; i++) {
    const kl = dv.getUint32(4 + i * 8, true);
    const vl = dv.getUint32(8 + i * 8, true);
    if (data + kl + 1 + vl > bytes.length) return null;
    const k = dec.decode(bytes.subarray(data, data + kl));
    data += kl + 1;
    const v = dec.decode(bytes.subarray(data, data + vl));
    data += vl + 1;
    out.push([k, v]);
  }
  return out;
}
