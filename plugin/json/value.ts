// A parsed JSON value (configuration and routing table only; requests use model_scanner.ts).
export namespace JsonKind {
  export const Null: u8 = 0;
  export const Bool: u8 = 1;
  export const Number: u8 = 2;
  export const String: u8 = 3;
  export const Array: u8 = 4;
  export const Object: u8 = 5;
}

export class JsonValue {
  kind: u8 = JsonKind.Null;
  bool: bool = false;
  num: f64 = 0;
  str: string = "";
  /** Array items, or object values (parallel to `keys`). */
  items: JsonValue[] | null = null;
  keys: string[] | null = null;

  @inline isObject(): bool { return this.kind == JsonKind.Object; }
  @inline isArray(): bool { return this.kind == JsonKind.Array; }
  @inline isString(): bool { return this.kind == JsonKind.String; }
  @inline isNumber(): bool { return this.kind == JsonKind.Number; }
  @inline isBool(): bool { return this.kind == JsonKind.Bool; }

  /** Number of items (array) or members (object, duplicates included). */
  get size(): i32 {
    const it = this.items;
    return it === null ? 0 : it.length;
  }

  /** i-th array item / object value; null out of range. */
  at(i: i32): JsonValue | null {
    const it = this.items;
    if (it === null || i < 0 || i >= it.length) return null;
    return unchecked(it[i]);
  }

  /** i-th object key; "" out of range. */
  keyAt(i: i32): string {
    const k = this.keys;
    if (k === null || i < 0 || i >= k.length) return "";
    return unchecked(k[i]);
  }

  /** Object member by key; the last occurrence wins, as with JSON.parse. */
  get(key: string): JsonValue | null {
    const k = this.keys;
    const it = this.items;
    if (k === null || it === null) return null;
    for (let i = k.length - 1; i >= 0; i--) {
      if (unchecked(k[i]) == key) return unchecked(it[i]);
    }
    return null;
  }

  /**
   * For each member, whether it is the last occurrence of its key (the one JSON.parse keeps).
   * One pass with a set: a table may hold 50,000 model names, and a per-member rescan was quadratic
   * (minutes of blocked ticks at that size).
   */
  lastOccurrences(): StaticArray<bool> {
    const k = this.keys;
    const n = k === null ? 0 : k.length;
    const out = new StaticArray<bool>(n);
    if (k === null) return out;
    const seen = new Set<string>();
    for (let i = n - 1; i >= 0; i--) {
      const key = unchecked(k[i]);
      if (!seen.has(key)) {
        seen.add(key);
        unchecked(out[i] = true);
      }
    }
    return out;
  }
}

export function kindName(v: JsonValue | null): string {
  if (v === null) return "missing";
  switch (v.kind) {
    case JsonKind.Null: return "null";
    case JsonKind.Bool: return "boolean";
    case JsonKind.Number: return "number";
    case JsonKind.String: return "string";
    case JsonKind.Array: return "array";
    default: return "object";
  }
}
