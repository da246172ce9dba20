// Bounded JSON parser (RFC 8259, as strict as JSON.parse). Never throws: returns null and sets
// `jsonError` on bad input, on nesting deeper than maxDepth or input larger than maxBytes.
// Object keys are kept in order with duplicates; JsonValue.get returns the last one, like JSON.parse.
import { JsonKind, JsonValue } from "./value";

export let jsonError: string = "";

const SCRATCH_MIN: i32 = 256;

class Parser {
  pos: usize = 0;
  err: string = "";
  scratch: ArrayBuffer = new ArrayBuffer(SCRATCH_MIN);

  constructor(public base: usize, public end: usize, public maxDepth: i32) {
    this.pos = base;
  }

  fail(msg: string): JsonValue | null {
    if (this.err.length == 0) this.err = msg + " at byte " + (this.pos - this.base).toString();
    return null;
  }

  @inline peek(): i32 {
    return this.pos < this.end ? <i32>load<u8>(this.pos) : -1;
  }

  skipWs(): void {
    while (this.pos < this.end) {
      const c = load<u8>(this.pos);
      if (c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09) this.pos++;
      else break;
    }
  }

  value(depth: i32): JsonValue | null {
    this.skipWs();
    const c = this.peek();
    if (c == 0x7b) return this.object(depth + 1);
    if (c == 0x5b) return this.array(depth + 1);
    if (c == 0x22) {
      const s = this.string();
      if (s === null) return null;
      const v = new JsonValue();
      v.kind = JsonKind.String;
      v.str = s;
      return v;
    }
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    if (c == 0x74) return this.literal("true", JsonKind.Bool, true);
    if (c == 0x66) return this.literal("false", JsonKind.Bool, false);
    if (c == 0x6e) return this.literal("null", JsonKind.Null, false);
    if (c < 0) return this.fail("unexpected end of input");
    return this.fail("unexpected character");
  }

  literal(word: string, kind: u8, b: bool): JsonValue | null {
    const n = <usize>word.length;
    if (this.pos + n > this.end) return this.fail("unexpected end of input");
    for (let i: usize = 0; i < n; i++) {
      if (<i32>load<u8>(this.pos + i) != word.charCodeAt(<i32>i)) return this.fail("invalid literal");
    }
    this.pos += n;
    const v = new JsonValue();
    v.kind = kind;
    v.bool = b;
    return v;
  }

  number(): JsonValue | null {
    const start = this.pos;
    let simple = true; // integer without exponent: computed exactly below
    if (this.peek() == 0x2d) this.pos++;
    let c = this.peek();
    if (c == 0x30) {
      this.pos++;
    } else if (c >= 0x31 && c <= 0x39) {
      while (this.pos < this.end && load<u8>(this.pos) >= 0x30 && load<u8>(this.pos) <= 0x39) this.pos++;
    } else {
      return this.fail("invalid number");
    }
    if (this.peek() == 0x2e) {
      simple = false;
      this.pos++;
      const d = this.pos;
      while (this.pos < this.end && load<u8>(this.pos) >= 0x30 && load<u8>(this.pos) <= 0x39) this.pos++;
      if (this.pos == d) return this.fail("invalid number");
    }
    c = this.peek();
    if (c == 0x65 || c == 0x45) {
      simple = false;
      this.pos++;
      c = this.peek();
      if (c == 0x2b || c == 0x2d) this.pos++;
      const d = this.pos;
      while (this.pos < this.end && load<u8>(this.pos) >= 0x30 && load<u8>(this.pos) <= 0x39) this.pos++;
      if (this.pos == d) return this.fail("invalid number");
    }
    const v = new JsonValue();
    v.kind = JsonKind.Number;
    const len = this.pos - start;
    let neg = load<u8>(start) == 0x2d;
    if (simple && len - (neg ? 1 : 0) <= 15) {
      let acc: f64 = 0;
      for (let p = start + (neg ? 1 : 0); p < this.pos; p++) acc = acc * 10 + <f64>(load<u8>(p) - 0x30);
      v.num = neg ? -acc : acc;
    } else {
      v.num = parseFloat(String.UTF8.decodeUnsafe(start, len));
    }
    return v;
  }

  /** Parses a string literal at pos (which is '"'); returns the decoded string or null. */
  string(): string | null {
    this.pos++; // opening quote
    const start = this.pos;
    let escapes = false;
    while (true) {
      if (this.pos >= this.end) { this.fail("unterminated string"); return null; }
      const c = load<u8>(this.pos);
      if (c == 0x22) break;
      if (c < 0x20) { this.fail("control character in string"); return null; }
      if (c == 0x5c) {
        escapes = true;
        this.pos++;
        if (this.pos >= this.end) { this.fail("unterminated string"); return null; }
        const e = load<u8>(this.pos);
        if (e == 0x75) {
          if (this.pos + 4 >= this.end) { this.fail("invalid \\u escape"); return null; }
          for (let k: usize = 1; k <= 4; k++) {
            if (hexVal(load<u8>(this.pos + k)) < 0) { this.fail("invalid \\u escape"); return null; }
          }
          this.pos += 5;
          continue;
        }
        if (e != 0x22 && e != 0x5c && e != 0x2f && e != 0x62 && e != 0x66 && e != 0x6e && e != 0x72 && e != 0x74) {
          this.fail("invalid escape");
          return null;
        }
      }
      this.pos++;
    }
    const rawLen = this.pos - start;
    this.pos++; // closing quote
    if (!escapes) return String.UTF8.decodeUnsafe(start, rawLen);
    // Decode escapes into scratch as WTF-8 (lone surrogates survive the round trip like in JS).
    if (<usize>this.scratch.byteLength < rawLen) this.scratch = new ArrayBuffer(<i32>rawLen);
    const out = changetype<usize>(this.scratch);
    const n = decodeEscapes(start, rawLen, out);
    return String.UTF8.decodeUnsafe(out, n);
  }

  array(depth: i32): JsonValue | null {
    if (depth > this.maxDepth) return this.fail("nesting too deep");
    this.pos++;
    const v = new JsonValue();
    v.kind = JsonKind.Array;
    const items = new Array<JsonValue>();
    v.items = items;
    this.skipWs();
    if (this.peek() == 0x5d) { this.pos++; return v; }
    while (true) {
      const item = this.value(depth);
      if (item === null) return null;
      items.push(item);
      this.skipWs();
      const c = this.peek();
      if (c == 0x2c) { this.pos++; continue; }
      if (c == 0x5d) { this.pos++; return v; }
      return this.fail(c < 0 ? "unexpected end of input" : "expected ',' or ']'");
    }
  }

  object(depth: i32): JsonValue | null {
    if (depth > this.maxDepth) return this.fail("nesting too deep");
    this.pos++;
    const v = new JsonValue();
    v.kind = JsonKind.Object;
    const items = new Array<JsonValue>();
    const keys = new Array<string>();
    v.items = items;
    v.keys = keys;
    this.skipWs();
    if (this.peek() == 0x7d) { this.pos++; return v; }
    while (true) {
      this.skipWs();
      if (this.peek() != 0x22) return this.fail(this.peek() < 0 ? "unexpected end of input" : "expected a string key");
      const key = this.string();
      if (key === null) return null;
      this.skipWs();
      if (this.peek() != 0x3a) return this.fail("expected ':'");
      this.pos++;
      const item = this.value(depth);
      if (item === null) return null;
      keys.push(key);
      items.push(item);
      this.skipWs();
      const c = this.peek();
      if (c == 0x2c) { this.pos++; continue; }
      if (c == 0x7d) { this.pos++; return v; }
      return this.fail(c < 0 ? "unexpected end of input" : "expected ',' or '}'");
    }
  }
}

export function hexVal(c: u8): i32 {
  if (c >= 0x30 && c <= 0x39) return <i32>c - 0x30;
  if (c >= 0x61 && c <= 0x66) return <i32>c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return <i32>c - 0x41 + 10;
  return -1;
}

/**
 * Decodes a string body whose escapes were already validated, writing UTF-8 (WTF-8 for lone
 * surrogates) to `out` (room for at least `len` bytes: escapes never grow). Returns the byte count.
 */
export function decodeEscapes(src: usize, len: usize, out: usize): usize {
  let o: usize = 0;
  let i: usize = 0;
  while (i < len) {
    const c = load<u8>(src + i);
    if (c != 0x5c) { store<u8>(out + o, c); o++; i++; continue; }
    const e = load<u8>(src + i + 1);
    i += 2;
    let b: u32 = 0;
    if (e == 0x75) {
      let cp: u32 = 0;
      for (let k: usize = 0; k < 4; k++) cp = (cp << 4) | <u32>hexVal(load<u8>(src + i + k));
      i += 4;
      // \uD83D\uDE00 pairs: combine so the UTF-8 is standard.
      if (cp >= 0xd800 && cp < 0xdc00 && i + 6 <= len && load<u8>(src + i) == 0x5c && load<u8>(src + i + 1) == 0x75) {
        let lo: u32 = 0;
        let ok = true;
        for (let k: usize = 0; k < 4; k++) {
          const h = hexVal(load<u8>(src + i + 2 + k));
          if (h < 0) ok = false;
          lo = (lo << 4) | <u32>h;
        }
        if (ok && lo >= 0xdc00 && lo < 0xe000) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          i += 6;
        }
      }
      if (cp < 0x80) { store<u8>(out + o, <u8>cp); o += 1; }
      else if (cp < 0x800) {
        store<u8>(out + o, <u8>(0xc0 | (cp >> 6)));
        store<u8>(out + o + 1, <u8>(0x80 | (cp & 63)));
        o += 2;
      } else if (cp < 0x10000) {
        store<u8>(out + o, <u8>(0xe0 | (cp >> 12)));
        store<u8>(out + o + 1, <u8>(0x80 | ((cp >> 6) & 63)));
        store<u8>(out + o + 2, <u8>(0x80 | (cp & 63)));
        o += 3;
      } else {
        store<u8>(out + o, <u8>(0xf0 | (cp >> 18)));
        store<u8>(out + o + 1, <u8>(0x80 | ((cp >> 12) & 63)));
        store<u8>(out + o + 2, <u8>(0x80 | ((cp >> 6) & 63)));
        store<u8>(out + o + 3, <u8>(0x80 | (cp & 63)));
        o += 4;
      }
      continue;
    }
    if (e == 0x62) b = 8;
    else if (e == 0x66) b = 12;
    else if (e == 0x6e) b = 10;
    else if (e == 0x72) b = 13;
    else if (e == 0x74) b = 9;
    else b = <u32>e; // " \ /
    store<u8>(out + o, <u8>b);
    o++;
  }
  return o;
}

/** Parses a whole document; null (with jsonError set) on any syntax error, excess size or depth. */
export function parseJson(ptr: usize, len: usize, maxBytes: usize, maxDepth: i32 = 64): JsonValue | null {
  jsonError = "";
  if (len > maxBytes) {
    jsonError = "document larger than " + maxBytes.toString() + " bytes";
    return null;
  }
  const p = new Parser(ptr, ptr + len, maxDepth);
  const v = p.value(0);
  if (v === null) {
    jsonError = p.err.length > 0 ? p.err : "invalid JSON";
    return null;
  }
  p.skipWs();
  if (p.pos != p.end) {
    p.fail("unexpected data after the document");
    jsonError = p.err;
    return null;
  }
  return v;
}

export function parseJsonBuffer(b: ArrayBuffer, maxBytes: usize, maxDepth: i32 = 64): JsonValue | null {
  return parseJson(changetype<usize>(b), <usize>b.byteLength, maxBytes, maxDepth);
}
