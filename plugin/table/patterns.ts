// The string rules of the routing-table contract, as hand-written matchers (no RegExp in the module).
// Lengths are UTF-16 code units, like zod's .min/.max on JavaScript strings.
import { MAX_AUTHORIZATION_LENGTH, MAX_BASE_PATH_LENGTH, MAX_ID_LENGTH, MAX_MODEL_NAME_LENGTH } from "./limits";
import { isJsSpace } from "../config";

@inline function isAlnum(c: i32): bool {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}
@inline function isDigit(c: i32): bool { return c >= 0x30 && c <= 0x39; }
@inline function isHex(c: i32): bool { return isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66); }

/** ^[A-Za-z0-9][A-Za-z0-9._-]*$, 1..128 */
export function isId(s: string): bool {
  const n = s.length;
  if (n < 1 || n > MAX_ID_LENGTH) return false;
  if (!isAlnum(s.charCodeAt(0))) return false;
  for (let i = 1; i < n; i++) {
    const c = s.charCodeAt(i);
    if (!isAlnum(c) && c != 0x2e && c != 0x5f && c != 0x2d) return false;
  }
  return true;
}

/** ^[\x21-\x7e]+$ with a length range */
export function isPrintableAscii(s: string, min: i32, max: i32): bool {
  const n = s.length;
  if (n < min || n > max) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

export function isModelName(s: string): bool {
  return isPrintableAscii(s, 1, MAX_MODEL_NAME_LENGTH);
}

/** ^[a-z0-9][a-z0-9._-]*(?:\/[a-z0-9][a-z0-9._-]*)*$, 1..128: the contract's ExtraPath. */
export function isExtraPath(s: string): bool {
  const n = s.length;
  if (n < 1 || n > 128) return false;
  let segStart = true;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    const lowerAlnum = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39);
    if (segStart) {
      if (!lowerAlnum) return false;
      segStart = false;
    } else if (c == 0x2f) segStart = true;
    else if (!lowerAlnum && c != 0x2e && c != 0x5f && c != 0x2d) return false;
  }
  return !segStart;
}

/** ^[^\s\x00-\x1f\x7f]+$, 1..256 UTF-16 units (zod's .max): the contract's ServedName. */
export function isServedName(s: string): bool {
  const n = s.length;
  if (n < 1 || n > MAX_MODEL_NAME_LENGTH) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c == 0x7f || isJsSpace(c)) return false;
  }
  return true;
}

/** ^[\x21-\x7e]+(?: [\x21-\x7e]+)*$, 1..4200: printable ASCII words separated by single spaces. */
export function isAuthorization(s: string): bool {
  const n = s.length;
  if (n < 1 || n > MAX_AUTHORIZATION_LENGTH) return false;
  let prevSpace = true; // no leading space
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x20) {
      if (prevSpace) return false; // leading or double space
      prevSpace = true;
    } else if (c < 0x21 || c > 0x7e) return false;
    else prevSpace = false;
  }
  return !prevSpace; // no trailing space
}

/** Decimal without leading zeros (single "0" allowed when allowZero) in [lo, hi], whole of s[from, to). */
function isDecimalIn(s: string, from: i32, to: i32, lo: i32, hi: i32, maxDigits: i32): bool {
  const n = to - from;
  if (n < 1 || n > maxDigits) return false;
  if (n > 1 && s.charCodeAt(from) == 0x30) return false;
  let v = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (!isDigit(c)) return false;
    v = v * 10 + (c - 0x30);
  }
  return v >= lo && v <= hi;
}

/** ^(?:ipv4|\[[0-9A-Fa-f:.]+\]):port$ as in the contract's Address. */
export function isAddress(s: string): bool {
  const n = s.length;
  if (n < 3) return false;
  let i = 0;
  if (s.charCodeAt(0) == 0x5b) {
    i = 1;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c == 0x5d) break;
      if (!isHex(c) && c != 0x3a && c != 0x2e) return false;
      i++;
    }
    if (i >= n || i == 1) return false;
    i++; // ']'
  } else {
    for (let octet = 0; octet < 4; octet++) {
      const start = i;
      while (i < n && isDigit(s.charCodeAt(i))) i++;
      if (!isDecimalIn(s, start, i, 0, 255, 3)) return false;
      if (octet < 3) {
        if (i >= n || s.charCodeAt(i) != 0x2e) return false;
        i++;
      }
    }
  }
  if (i >= n || s.charCodeAt(i) != 0x3a) return false;
  return isDecimalIn(s, i + 1, n, 1, 65535, 5);
}

/** ^(?:\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$, at most 256 */
export function isBasePath(s: string): bool {
  const n = s.length;
  if (n > MAX_BASE_PATH_LENGTH) return false;
  let i = 0;
  while (i < n) {
    if (s.charCodeAt(i) != 0x2f) return false;
    i++;
    const start = i;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c == 0x2f) break;
      const ok = isAlnum(c) || c == 0x2e || c == 0x5f || c == 0x7e || c == 0x21 || c == 0x24 || c == 0x26 ||
        c == 0x27 || c == 0x28 || c == 0x29 || c == 0x2a || c == 0x2b || c == 0x2c || c == 0x3b || c == 0x3d ||
        c == 0x3a || c == 0x40 || c == 0x25 || c == 0x2d;
      if (!ok) return false;
      i++;
    }
    if (i == start) return false;
  }
  return true;
}
