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

  /** Is member i the last occurrence of its key (i.e. the one JSON.parse keeps)? */
  isLastOccurrence(i: i32): bool {
    const k = this.keys;
    if (k === null || i < 0 || i >= k.length) return false;
    const key = unchecked(k[i]);
    for (let j = i + 1; j < k.length; j++) if (unchecked(k[j]) == key) return false;
    return true;
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
