// Byte-string helpers: the binding passes UTF-8 bytes (ArrayBuffer, or raw ptr/len from the host)
// rather than AS strings, so the request path never converts UTF-16 ↔ UTF-8.

/** UTF-8 bytes of a string (allocates; use once at configuration/table time, not per request). */
export function utf8(s: string): ArrayBuffer {
  return String.UTF8.encode(s);
}

@inline export function ptrOf(b: ArrayBuffer): usize { return changetype<usize>(b); }
@inline export function lenOf(b: ArrayBuffer): usize { return <usize>b.byteLength; }

/** Raw bytes equal to a buffer? */
export function bytesEqual(b: ArrayBuffer, ptr: usize, len: usize): bool {
  if (<usize>b.byteLength != len) return false;
  if (len == 0) return true;
  return memory.compare(changetype<usize>(b), ptr, len) == 0;
}

export function buffersEqual(a: ArrayBuffer, b: ArrayBuffer): bool {
  return bytesEqual(a, changetype<usize>(b), <usize>b.byteLength);
}

/** Decodes raw UTF-8 bytes to a string (allocates; logging and validation only). */
export function strOf(ptr: usize, len: usize): string {
  if (len == 0 || ptr == 0) return "";
  return String.UTF8.decodeUnsafe(ptr, len);
}

export function strOfBuffer(b: ArrayBuffer): string {
  return String.UTF8.decode(b);
}

/** Growable byte builder for non-hot paths (bodies, serialized header maps, log lines). */
export class ByteWriter {
  buf: ArrayBuffer;
  len: i32 = 0;

  constructor(capacity: i32 = 64) {
    this.buf = new ArrayBuffer(capacity < 16 ? 16 : capacity);
  }

  private reserve(extra: i32): void {
    const need = this.len + extra;
    const cap = this.buf.byteLength;
    if (need <= cap) return;
    let next = cap << 1;
    while (next < need) next <<= 1;
    const nb = new ArrayBuffer(next);
    memory.copy(changetype<usize>(nb), changetype<usize>(this.buf), <usize>this.len);
    this.buf = nb;
  }

  byte(b: u8): ByteWriter {
    this.reserve(1);
    store<u8>(changetype<usize>(this.buf) + <usize>this.len, b);
    this.len++;
    return this;
  }

  u32le(v: u32): ByteWriter {
    this.reserve(4);
    store<u32>(changetype<usize>(this.buf) + <usize>this.len, v);
    this.len += 4;
    return this;
  }

  raw(ptr: usize, n: usize): ByteWriter {
    if (n == 0) return this;
    this.reserve(<i32>n);
    memory.copy(changetype<usize>(this.buf) + <usize>this.len, ptr, n);
    this.len += <i32>n;
    return this;
  }

  bytes(b: ArrayBuffer): ByteWriter {
    return this.raw(changetype<usize>(b), <usize>b.byteLength);
  }

  str(s: string): ByteWriter {
    const n = String.UTF8.byteLength(s);
    this.reserve(n);
    String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, changetype<usize>(this.buf) + <usize>this.len);
    this.len += n;
    return this;
  }

  /** Writes a string as a JSON string literal (with quotes), escaping as JSON requires. */
  jsonString(s: string): ByteWriter {
    this.byte(0x22);
    const n = s.length;
    for (let i = 0; i < n; i++) {
      const c = <u32>s.charCodeAt(i);
      if (c == 0x22 || c == 0x5c) { this.byte(0x5c).byte(<u8>c); }
      else if (c < 0x20) {
        this.str("\\u00");
        this.byte(<u8>hexDigit(c >> 4)).byte(<u8>hexDigit(c & 15));
      } else if (c < 0x80) { this.byte(<u8>c); }
      else { this.str(String.fromCharCode(c)); }
    }
    return this.byte(0x22);
  }

  uint(v: u64): ByteWriter {
    if (v == 0) return this.byte(0x30);
    let digits = 0;
    let t = v;
    while (t > 0) { t /= 10; digits++; }
    this.reserve(digits);
    let i = digits;
    t = v;
    while (t > 0) {
      i--;
      store<u8>(changetype<usize>(this.buf) + <usize>(this.len + i), <u8>(0x30 + <u32>(t % 10)));
      t /= 10;
    }
    this.len += digits;
    return this;
  }

  @inline get ptr(): usize { return changetype<usize>(this.buf); }

  /** Exact-size copy of the written bytes. */
  toBuffer(): ArrayBuffer {
    return this.buf.slice(0, this.len);
  }
}

function hexDigit(v: u32): u32 {
  return v < 10 ? 0x30 + v : 0x61 + v - 10;
}

/** Parses an unsigned decimal (no sign, no spaces) from raw bytes; -1 on anything else or overflow past 2^53. */
export function parseDecimal(ptr: usize, len: usize): i64 {
  if (len == 0 || len > 16) return -1;
  let v: i64 = 0;
  for (let i: usize = 0; i < len; i++) {
    const c = <i32>load<u8>(ptr + i);
    if (c < 0x30 || c > 0x39) return -1;
    v = v * 10 + (c - 0x30);
  }
  return v;
}
