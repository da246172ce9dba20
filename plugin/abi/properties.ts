// Properties (`proxy_get_property`): path segments joined by NUL, e.g. "upstream\0address".
// Strings arrive as bytes; integers as 8-byte little-endian int64 (Envoy's serializeValue).
import { proxy_get_property } from "./imports";
import { OUT_LEN, OUT_PTR, outLen, outPtr, resetOut, takeOutBuffer, freeOut } from "./memory";
import { ByteWriter } from "./bytes";
import { Status } from "./types";

export function getProperty(path: string[]): ArrayBuffer | null {
  const w = new ByteWriter(64);
  for (let i = 0; i < path.length; i++) {
    if (i > 0) w.byte(0);
    w.str(path[i]);
  }
  resetOut();
  const st = proxy_get_property(w.ptr, <usize>w.len, OUT_PTR, OUT_LEN);
  if (st != Status.Ok) { freeOut(outPtr()); return null; }
  return takeOutBuffer();
}

/** Value of the last successful propertyGet (a host block), valid until propertyRelease. */
export let propPtr: usize = 0;
export let propLen: usize = 0;

/** Allocation-free read by a pre-encoded NUL-separated path; true when present. */
export function propertyGet(path: ArrayBuffer): bool {
  resetOut();
  const st = proxy_get_property(changetype<usize>(path), <usize>path.byteLength, OUT_PTR, OUT_LEN);
  propPtr = outPtr();
  propLen = propPtr == 0 ? 0 : outLen();
  if (st != Status.Ok) {
    propertyRelease();
    return false;
  }
  return true;
}

export function propertyRelease(): void {
  freeOut(propPtr);
  propPtr = 0;
  propLen = 0;
}

/** Reads an integer property (8-byte LE int64, or a decimal string); `missing` when absent or malformed. */
export function propertyInt(path: ArrayBuffer, missing: i64): i64 {
  if (!propertyGet(path)) return missing;
  let v = missing;
  if (propLen == 8) v = load<i64>(propPtr);
  else if (propLen > 0 && propLen <= 16) {
    let x: i64 = 0;
    let ok = true;
    for (let i: usize = 0; i < propLen; i++) {
      const c = <i32>load<u8>(propPtr + i) - 0x30;
      if (c < 0 || c > 9) { ok = false; break; }
      x = x * 10 + c;
    }
    if (ok) v = x;
  }
  propertyRelease();
  return v;
}
