// Reads the import signatures of a module from its bytes. The JS WebAssembly API does not expose
// import types, but V8 in Envoy refuses a module whose import signature differs from the host's
// (e.g. an i32 where proxy_increment_metric takes an i64), so the host must check them itself.

export interface ImportSignature {
  module: string;
  name: string;
  kind: "function" | "table" | "memory" | "global";
  /** For functions: "i32,i64->i32" style signature. */
  signature?: string;
}

const VALTYPE: Record<number, string> = { 0x7f: "i32", 0x7e: "i64", 0x7d: "f32", 0x7c: "f64", 0x7b: "v128", 0x70: "funcref", 0x6f: "externref" };

class Reader {
  pos = 0;
  constructor(readonly bytes: Uint8Array) {}
  byte(): number {
    if (this.pos >= this.bytes.length) throw new Error("unexpected end of module");
    return this.bytes[this.pos++]!;
  }
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result >>> 0;
      shift += 7;
    }
  }
  name(): string {
    const len = this.u32();
    const s = new TextDecoder().decode(this.bytes.subarray(this.pos, this.pos + len));
    this.pos += len;
    return s;
  }
  limits(): void {
    const flags = this.u32();
    this.u32();
    if (flags & 1) this.u32();
  }
}

export function readImportSignatures(bytes: Uint8Array): ImportSignature[] {
  const r = new Reader(bytes);
  r.pos = 8; // magic + version
  const types: string[] = [];
  const imports: ImportSignature[] = [];
  while (r.pos < bytes.length) {
    const id = r.byte();
    const size = r.u32();
    const end = r.pos + size;
    if (id === 1) {
      const count = r.u32();
      for (let i = 0; i < count; i++) {
        const form = r.byte();
        if (form !== 0x60) throw new Error(`unsupported type form 0x${form.toString(16)}`);
        const params: string[] = [];
        for (let n = r.u32(); n > 0; n--) params.push(VALTYPE[r.byte()] ?? "?");
        const results: string[] = [];
        for (let n = r.u32(); n > 0; n--) results.push(VALTYPE[r.byte()] ?? "?");
        types.push(`${params.join(",")}->${results.join(",")}`);
      }
    } else if (id === 2) {
      const count = r.u32();
      for (let i = 0; i < count; i++) {
        const module = r.name();
        const name = r.name();
        const kind = r.byte();
        if (kind === 0) imports.push({ module, name, kind: "function", signature: types[r.u32()] ?? "?" });
        else if (kind === 1) {
          r.byte();
          r.limits();
          imports.push({ module, name, kind: "table" });
        } else if (kind === 2) {
          r.limits();
          imports.push({ module, name, kind: "memory" });
        } else {
          r.byte();
          r.byte();
          imports.push({ module, name, kind: "global" });
        }
      }
      return imports;
    }
    r.pos = end;
  }
  return imports;
}
