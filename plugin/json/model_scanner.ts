// Request-path JSON scanner: validates the whole body's JSON syntax without building a tree and
// finds the top-level "model" string. No allocation: nesting is tracked in a static bit stack and an
// escaped model name is decoded into a static buffer. Bounded by the body length and MAX_DEPTH.
import { decodeEscapes, hexVal } from "./parser";

export const MAX_DEPTH: i32 = 1024;
const STACK: usize = memory.data(MAX_DEPTH); // 1 = object, 2 = array
export const MODEL_SCRATCH_SIZE: usize = 512;
const MODEL_SCRATCH: usize = memory.data(512);

export namespace ScanResult {
  export const Ok: i32 = 0;          // valid JSON (model found or not: see modelFound)
  export const Malformed: i32 = 1;   // syntax error
  export const TooDeep: i32 = 2;     // nesting beyond MAX_DEPTH (reported as malformed)
}

/** After Ok: the last top-level "model" member, if it is a string. */
export let modelFound: bool = false;
export let modelPtr: usize = 0;
export let modelLen: usize = 0;
/** After Ok with modelFound: the model's JSON string token in the scanned bytes, from its opening quote to past its closing one. */
export let modelTokenStart: usize = 0;
export let modelTokenEnd: usize = 0;
/**
 * After Ok: the last top-level "user" member's raw string content (between the quotes, escapes not
 * decoded: session affinity hashes it as sent), userLen 0 when absent, empty or not a string.
 */
export let userPtr: usize = 0;
export let userLen: usize = 0;

const S_VALUE: i32 = 0;
const S_KEY: i32 = 1;
const S_AFTER: i32 = 2;

@inline function isWs(c: u32): bool {
  return c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09;
}

const ONES: u64 = 0x0101010101010101;
const HIGHS: u64 = 0x8080808080808080;

/** Does any byte of w equal a quote or backslash, or fall below 0x20? (SWAR, exact for the test) */
@inline function special8(w: u64): bool {
  const q = w ^ (ONES * 0x22);
  const b = w ^ (ONES * 0x5c);
  const hasQuote = (q - ONES) & ~q & HIGHS;
  const hasBackslash = (b - ONES) & ~b & HIGHS;
  const hasControl = (w - ONES * 0x20) & ~w & HIGHS;
  return (hasQuote | hasBackslash | hasControl) != 0;
}

/** Scans the string starting after its opening quote; returns the index of the closing quote or -1. */
function scanString(p: usize, end: usize): isize {
  while (p < end) {
    // Plain runs (most of a prompt) 8 bytes at a time; any special byte drops to the exact loop.
    while (p + 8 <= end && !special8(load<u64>(p))) p += 8;
    const c = <u32>load<u8>(p);
    if (c == 0x22) return <isize>p;
    if (c < 0x20) return -1;
    if (c == 0x5c) {
      p++;
      if (p >= end) return -1;
      const e = <u32>load<u8>(p);
      if (e == 0x75) {
        if (p + 4 >= end) return -1;
        if (hexVal(load<u8>(p + 1)) < 0 || hexVal(load<u8>(p + 2)) < 0 || hexVal(load<u8>(p + 3)) < 0 || hexVal(load<u8>(p + 4)) < 0) return -1;
        p += 5;
        continue;
      }
      if (e != 0x22 && e != 0x5c && e != 0x2f && e != 0x62 && e != 0x66 && e != 0x6e && e != 0x72 && e != 0x74) return -1;
    }
    p++;
  }
  return -1;
}

function hasBackslash(p: usize, n: usize): bool {
  for (let i: usize = 0; i < n; i++) if (load<u8>(p + i) == 0x5c) return true;
  return false;
}

/** Is the key (raw bytes between quotes) "user"? (an escaped spelling of it is not recognized) */
@inline function isUserKey(p: usize, n: usize): bool {
  return n == 4 && load<u32>(p) == 0x72657375; // "user", little-endian
}

/** Is the key (raw bytes between quotes) "model", escapes decoded? */
function isModelKey(p: usize, n: usize): bool {
  if (n == 5) {
    return load<u8>(p) == 0x6d && load<u8>(p + 1) == 0x6f && load<u8>(p + 2) == 0x64 && load<u8>(p + 3) == 0x65 && load<u8>(p + 4) == 0x6c;
  }
  if (n > 5 * 6 || !hasBackslash(p, n)) return false;
  const m = decodeEscapes(p, n, MODEL_SCRATCH);
  return m == 5 && load<u8>(MODEL_SCRATCH) == 0x6d && load<u8>(MODEL_SCRATCH + 1) == 0x6f &&
    load<u8>(MODEL_SCRATCH + 2) == 0x64 && load<u8>(MODEL_SCRATCH + 3) == 0x65 && load<u8>(MODEL_SCRATCH + 4) == 0x6c;
}

export function scanForModel(ptr: usize, len: usize): i32 {
  modelFound = false;
  modelPtr = 0;
  modelLen = 0;
  userPtr = 0;
  userLen = 0;
  let rawModelPtr: usize = 0;
  let rawModelLen: usize = 0;
  let rawModelEscaped = false;
  const end = ptr + len;
  let p = ptr;
  let depth: i32 = 0;
  let state = S_VALUE;
  let pendingModel = false;
  let pendingUser = false;

  while (true) {
    // skip whitespace
    while (p < end && isWs(<u32>load<u8>(p))) p++;
    if (state == S_AFTER) {
      if (depth == 0) {
        if (p != end) return ScanResult.Malformed;
        break;
      }
      if (p >= end) return ScanResult.Malformed;
      const c = <u32>load<u8>(p);
      const top = load<u8>(STACK + <usize>(depth - 1));
      if (c == 0x2c) { p++; state = top == 1 ? S_KEY : S_VALUE; continue; }
      if ((c == 0x7d && top == 1) || (c == 0x5d && top == 2)) { p++; depth--; continue; }
      return ScanResult.Malformed;
    }
    if (p >= end) return ScanResult.Malformed;
    const c = <u32>load<u8>(p);
    if (state == S_KEY) {
      if (c != 0x22) return ScanResult.Malformed;
      const close = scanString(p + 1, end);
      if (close < 0) return ScanResult.Malformed;
      const kp = p + 1;
      const kn = <usize>close - kp;
      pendingModel = depth == 1 && isModelKey(kp, kn);
      pendingUser = depth == 1 && isUserKey(kp, kn);
      p = <usize>close + 1;
      while (p < end && isWs(<u32>load<u8>(p))) p++;
      if (p >= end || load<u8>(p) != 0x3a) return ScanResult.Malformed;
      p++;
      state = S_VALUE;
      continue;
    }
    // S_VALUE
    const isModelValue = pendingModel;
    pendingModel = false;
    // A later non-string "user" replaces an earlier one, as for "model" (JSON.parse keeps the last).
    if (pendingUser) { userPtr = 0; userLen = 0; }
    const isUserValue = pendingUser;
    pendingUser = false;
    if (c == 0x7b || c == 0x5b) {
      if (isModelValue) modelFound = false;
      if (depth >= MAX_DEPTH) return ScanResult.TooDeep;
      store<u8>(STACK + <usize>depth, c == 0x7b ? 1 : 2);
      depth++;
      p++;
      while (p < end && isWs(<u32>load<u8>(p))) p++;
      if (p < end && load<u8>(p) == (c == 0x7b ? 0x7d : 0x5d)) { p++; depth--; state = S_AFTER; continue; }
      state = c == 0x7b ? S_KEY : S_VALUE;
      continue;
    }
    if (c == 0x22) {
      const close = scanString(p + 1, end);
      if (close < 0) return ScanResult.Malformed;
      if (isModelValue) {
        modelFound = true;
        rawModelPtr = p + 1;
        rawModelLen = <usize>close - rawModelPtr;
        rawModelEscaped = hasBackslash(rawModelPtr, rawModelLen);
        modelTokenStart = p;
        modelTokenEnd = <usize>close + 1;
      } else if (isUserValue) {
        userPtr = p + 1;
        userLen = <usize>close - userPtr;
      }
      p = <usize>close + 1;
      state = S_AFTER;
      continue;
    }
    if (isModelValue) modelFound = false;
    if (c == 0x74 || c == 0x66 || c == 0x6e) {
      const n: usize = c == 0x66 ? 5 : 4;
      if (p + n > end) return ScanResult.Malformed;
      const ok = c == 0x74
        ? load<u8>(p + 1) == 0x72 && load<u8>(p + 2) == 0x75 && load<u8>(p + 3) == 0x65
        : c == 0x66
          ? load<u8>(p + 1) == 0x61 && load<u8>(p + 2) == 0x6c && load<u8>(p + 3) == 0x73 && load<u8>(p + 4) == 0x65
          : load<u8>(p + 1) == 0x75 && load<u8>(p + 2) == 0x6c && load<u8>(p + 3) == 0x6c;
      if (!ok) return ScanResult.Malformed;
      p += n;
      state = S_AFTER;
      continue;
    }
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) {
      if (c == 0x2d) p++;
      if (p >= end) return ScanResult.Malformed;
      let d = <u32>load<u8>(p);
      if (d == 0x30) p++;
      else if (d >= 0x31 && d <= 0x39) { while (p < end && <u32>load<u8>(p) - 0x30 <= 9) p++; }
      else return ScanResult.Malformed;
      if (p < end && load<u8>(p) == 0x2e) {
        p++;
        const s = p;
        while (p < end && <u32>load<u8>(p) - 0x30 <= 9) p++;
        if (p == s) return ScanResult.Malformed;
      }
      if (p < end && (load<u8>(p) | 0x20) == 0x65) {
        p++;
        if (p < end && (load<u8>(p) == 0x2b || load<u8>(p) == 0x2d)) p++;
        const s = p;
        while (p < end && <u32>load<u8>(p) - 0x30 <= 9) p++;
        if (p == s) return ScanResult.Malformed;
      }
      state = S_AFTER;
      continue;
    }
    return ScanResult.Malformed;
  }

  if (modelFound) {
    if (!rawModelEscaped) {
      modelPtr = rawModelPtr;
      modelLen = rawModelLen;
    } else if (rawModelLen <= MODEL_SCRATCH_SIZE) {
      modelPtr = MODEL_SCRATCH;
      modelLen = decodeEscapes(rawModelPtr, rawModelLen, MODEL_SCRATCH);
    } else {
      // Longer than any valid model name even after decoding: found, but matches nothing
      // (model names are at most 256 bytes; lookups of longer names miss).
      modelPtr = MODEL_SCRATCH;
      modelLen = MODEL_SCRATCH_SIZE;
    }
  }
  return ScanResult.Ok;
}
