// Header maps: single-value access by raw bytes (hot path: no strings, no allocation besides the
// host's copy, freed at once) and the ABI's serialized form:
//   u32 count; count × (u32 key_len, u32 value_len); then each key and value followed by a NUL.
import {
  proxy_get_header_map_pairs, proxy_get_header_map_value, proxy_remove_header_map_value,
  proxy_replace_header_map_value,
} from "./imports";
import { OUT_LEN, OUT_PTR, armScratch, disarmScratch, freeOut, outLen, outPtr, resetOut } from "./memory";
import { ByteWriter } from "./bytes";
import { Status } from "./types";

/** Value of the last successful `headerGet`, valid until `headerRelease`. */
export let gotPtr: usize = 0;
export let gotLen: usize = 0;

/** Fetches one header; true when present (then read gotPtr/gotLen and call headerRelease). */
export function headerGet(mapType: u32, key: ArrayBuffer): bool {
  resetOut();
  const st = proxy_get_header_map_value(mapType, changetype<usize>(key), <usize>key.byteLength, OUT_PTR, OUT_LEN);
  gotPtr = outPtr();
  gotLen = outLen();
  if (st != Status.Ok) {
    headerRelease();
    return false;
  }
  if (gotPtr == 0) gotLen = 0;
  return true;
}

/**
 * headerGet for a value that is read and released at once (never detached): the host copies it into
 * the scratch block when it fits, so no heap block is allocated and freed for it.
 */
export function headerPeek(mapType: u32, key: ArrayBuffer): bool {
  armScratch();
  const ok = headerGet(mapType, key);
  disarmScratch();
  return ok;
}

/** Takes ownership of the last value (the caller frees it with heap.free); later gets won't free it. */
export function headerDetach(): void {
  gotPtr = 0;
  gotLen = 0;
}

export function headerRelease(): void {
  freeOut(gotPtr);
  gotPtr = 0;
  gotLen = 0;
}

export function headerReplace(mapType: u32, key: ArrayBuffer, valuePtr: usize, valueLen: usize): u32 {
  return proxy_replace_header_map_value(mapType, changetype<usize>(key), <usize>key.byteLength, valuePtr, valueLen);
}

export function headerReplaceBuf(mapType: u32, key: ArrayBuffer, value: ArrayBuffer): u32 {
  return proxy_replace_header_map_value(mapType, changetype<usize>(key), <usize>key.byteLength,
    changetype<usize>(value), <usize>value.byteLength);
}

export function headerRemove(mapType: u32, key: ArrayBuffer): u32 {
  return proxy_remove_header_map_value(mapType, changetype<usize>(key), <usize>key.byteLength);
}

/** Serializes [k0, v0, k1, v1, …] (UTF-8 byte buffers) into the ABI header-map form. */
export function serializeHeaders(pairs: ArrayBuffer[]): ArrayBuffer {
  const count = pairs.length >> 1;
  let size = 4 + count * 8;
  for (let i = 0; i < count << 1; i++) size += pairs[i].byteLength + 1;
  const w = new ByteWriter(size);
  w.u32le(<u32>count);
  for (let i = 0; i < count; i++) {
    w.u32le(<u32>pairs[i << 1].byteLength);
    w.u32le(<u32>pairs[(i << 1) + 1].byteLength);
  }
  for (let i = 0; i < count << 1; i++) w.bytes(pairs[i]).byte(0);
  return w.toBuffer();
}

/**
 * Parses a serialized header map; null if malformed (never reads outside [ptr, ptr+len)).
 * Result: [k0, v0, k1, v1, …].
 */
export function deserializeHeaders(ptr: usize, len: usize, maxPairs: u32 = 1024): ArrayBuffer[] | null {
  if (len < 4) return len == 0 ? new Array<ArrayBuffer>() : null;
  const count = load<u32>(ptr);
  if (count > maxPairs) return null;
  const table: usize = 4 + <usize>count * 8;
  if (table > len) return null;
  const out = new Array<ArrayBuffer>();
  let data = ptr + table;
  const end = ptr + len;
  for (let i: u32 = 0; i < count; i++) {
    const kl = <usize>load<u32>(ptr + 4 + <usize>i * 8);
    const vl = <usize>load<u32>(ptr + 8 + <usize>i * 8);
    if (kl > len || vl > len) return null;
    if (data + kl + 1 > end) return null;
    const k = new ArrayBuffer(<i32>kl);
    memory.copy(changetype<usize>(k), data, kl);
    data += kl + 1;
    if (data + vl + 1 > end) return null;
    const v = new ArrayBuffer(<i32>vl);
    memory.copy(changetype<usize>(v), data, vl);
    data += vl + 1;
    out.push(k);
    out.push(v);
  }
  return out;
}

/** All pairs of a header map, or null when unavailable/malformed. */
export function headerPairs(mapType: u32): ArrayBuffer[] | null {
  resetOut();
  const st = proxy_get_header_map_pairs(mapType, OUT_PTR, OUT_LEN);
  const p = outPtr();
  const n = outLen();
  if (st != Status.Ok) { freeOut(p); return null; }
  const pairs = p == 0 ? new Array<ArrayBuffer>() : deserializeHeaders(p, n);
  freeOut(p);
  return pairs;
}
