/**
 * Validates a proto3-JSON value (parsed from JSON or YAML) against a message of the loaded Envoy
 * schema, the way Envoy's own loader would refuse it: unknown fields at any depth (snake_case and
 * lowerCamelCase names both accepted, both at once refused), wrong JSON types, enum names/numbers,
 * oneofs, well-known types (Any by `@type`, Duration, Timestamp, Struct/Value/ListValue, wrappers,
 * Empty, FieldMask), repeated/map fields, 64-bit integers as strings or numbers, and the
 * protoc-gen-validate rules (see pgv.ts). Every issue names its JSON path.
 */
import protobuf from "protobufjs";
import {
  checkBytes,
  checkDuration,
  checkEnum,
  checkNumber,
  checkString,
  fieldRules,
  INT_KINDS,
  messageValidationDisabled,
  oneofRequired,
  parseDuration,
  type Rules,
} from "./pgv.js";

export interface Issue {
  /** JSON path, e.g. `static_resources.clusters[0].load_assignment.endpoints[0]`; "" is the document root. */
  path: string;
  message: string;
}

export interface WalkOptions {
  /**
   * Partial message (e.g. an Istio EnvoyFilter MERGE patch): absent fields are not checked
   * (no required/min_len/min_items on what is not there, no required oneofs).
   */
  partial?: boolean;
}

const MAX_DEPTH = 100;

const WRAPPERS: Record<string, string> = {
  "google.protobuf.DoubleValue": "double",
  "google.protobuf.FloatValue": "float",
  "google.protobuf.Int64Value": "int64",
  "google.protobuf.UInt64Value": "uint64",
  "google.protobuf.Int32Value": "int32",
  "google.protobuf.UInt32Value": "uint32",
  "google.protobuf.BoolValue": "bool",
  "google.protobuf.StringValue": "string",
  "google.protobuf.BytesValue": "bytes",
};

/** WKTs whose JSON form is not an object of their fields; inside an Any they sit under "value". */
const SPECIAL_JSON = new Set([
  ...Object.keys(WRAPPERS),
  "google.protobuf.Duration",
  "google.protobuf.Timestamp",
  "google.protobuf.FieldMask",
  "google.protobuf.Struct",
  "google.protobuf.Value",
  "google.protobuf.ListValue",
  "google.protobuf.Any",
]);

const TYPED_STRUCTS = new Set(["udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"]);

/** Protobuf integer kinds and their ranges (also used by the xDS encoder, control/xds/proto.ts). */
export const INT_RANGES: Record<string, [bigint, bigint]> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  sint32: [-(2n ** 31n), 2n ** 31n - 1n],
  sfixed32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  fixed32: [0n, 2n ** 32n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  sint64: [-(2n ** 63n), 2n ** 63n - 1n],
  sfixed64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  fixed64: [0n, 2n ** 64n - 1n],
};

export const typeName = (t: protobuf.ReflectionObject): string => t.fullName.replace(/^\./, "");

const describe = (v: unknown): string =>
  v === null ? "null" : Array.isArray(v) ? "an array" : typeof v === "object" ? "an object" : `${typeof v} ${JSON.stringify(v)}`;

export const joinPath = (base: string, key: string): string =>
  /^[A-Za-z_@][\w@.-]*$/.test(key) && !key.includes(".") ? (base ? `${base}.${key}` : key) : `${base}[${JSON.stringify(key)}]`;

/** protoc's json_name: drop underscores, upper-case the letter after each. */
export function lowerCamel(name: string): string {
  return name.replace(/_+([a-zA-Z0-9])?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ""));
}

interface FieldIndex {
  byKey: Map<string, protobuf.Field>;
  names: string[];
}
const indexCache = new WeakMap<protobuf.Type, FieldIndex>();

function fieldIndex(type: protobuf.Type): FieldIndex {
  let idx = indexCache.get(type);
  if (!idx) {
    const byKey = new Map<string, protobuf.Field>();
    for (const f of type.fieldsArray) {
      byKey.set(f.name, f);
      const json = (f.options?.json_name as string | undefined) ?? lowerCamel(f.name);
      byKey.set(json, f);
    }
    idx = { byKey, names: type.fieldsArray.map((f) => f.name) };
    indexCache.set(type, idx);
  }
  return idx;
}

function closest(name: string, candidates: string[]): string | undefined {
  const a = name.toLowerCase().replace(/_/g, "");
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const b = c.toLowerCase().replace(/_/g, "");
    const d = a.length >= 4 && (b.startsWith(a) || a.startsWith(b)) ? 1 : editDistance(a, b);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(a.length / 4)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

export class Walker {
  readonly errors: Issue[] = [];
  readonly warnings: Issue[] = [];

  constructor(
    private readonly root: protobuf.Root,
    private readonly options: WalkOptions = {},
  ) {}

  private err(path: string, message: string): void {
    this.errors.push({ path, message });
  }
  private warn(path: string, message: string): void {
    this.warnings.push({ path, message });
  }

  /** Resolves a message type by full name (leading dot optional). */
  lookupMessage(name: string): protobuf.Type | undefined {
    try {
      const t = this.root.lookup(name.replace(/^\./, ""));
      return t instanceof protobuf.Type ? t : undefined;
    } catch {
      return undefined;
    }
  }

  message(type: protobuf.Type, value: unknown, path: string, depth = 0): void {
    if (depth > MAX_DEPTH) return this.err(path, "nesting too deep");
    const name = typeName(type);
    if (name in WRAPPERS) return void this.scalar(WRAPPERS[name]!, value, path);
    switch (name) {
      case "google.protobuf.Any":
        return this.any(value, path, depth);
      case "google.protobuf.Duration":
        if (typeof value !== "string" || parseDuration(value) === undefined)
          this.err(path, `invalid Duration ${describe(value)}: expected a string like "5s" or "0.250s"`);
        return;
      case "google.protobuf.Timestamp":
        if (typeof value !== "string" || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/.test(value) || Number.isNaN(Date.parse(value)))
          this.err(path, `invalid Timestamp ${describe(value)}: expected RFC 3339, e.g. "2024-01-01T00:00:00Z"`);
        return;
      case "google.protobuf.FieldMask":
        if (typeof value !== "string") this.err(path, `invalid FieldMask ${describe(value)}: expected a comma-separated string`);
        return;
      case "google.protobuf.Struct":
        if (!isPlainObject(value)) this.err(path, `invalid Struct ${describe(value)}: expected an object`);
        return;
      case "google.protobuf.ListValue":
        if (!Array.isArray(value)) this.err(path, `invalid ListValue ${describe(value)}: expected an array`);
        return;
      case "google.protobuf.Value":
        return; // any JSON value
      case "google.protobuf.Empty":
        if (!isPlainObject(value) || Object.keys(value).length > 0) this.err(path, `invalid Empty ${describe(value)}: expected {}`);
        return;
      default:
        break;
    }
    if (!isPlainObject(value)) return this.err(path, `expected an object (${name}), got ${describe(value)}`);

    const idx = fieldIndex(type);
    const seen = new Map<protobuf.Field, string>();
    for (const [key, v] of Object.entries(value)) {
      const childPath = joinPath(path, key);
      const field = idx.byKey.get(key);
      if (!field) {
        const hint = closest(key, idx.names);
        this.err(childPath, `unknown field "${key}" in ${name}${hint ? ` (did you mean "${hint}"?)` : ""}`);
        continue;
      }
      const prior = seen.get(field);
      if (prior !== undefined) {
        this.err(childPath, `field "${field.name}" given twice (as "${prior}" and "${key}")`);
        continue;
      }
      seen.set(field, key);
      if (v === null && typeName(field.resolvedType ?? field) !== "google.protobuf.Value") continue; // null = unset
      if (field.options?.deprecated === true) this.warn(childPath, `field "${field.name}" of ${name} is deprecated`);
      this.field(field, v, childPath, depth);
    }

    const setField = (f: protobuf.Field): boolean => {
      const key = seen.get(f);
      return key !== undefined && (value[key] !== null || typeName(f.resolvedType ?? f) === "google.protobuf.Value");
    };

    for (const oneof of type.oneofsArray) {
      const synthetic = oneof.fieldsArray.length === 1 && oneof.fieldsArray[0]!.options?.proto3_optional === true;
      if (synthetic) continue;
      const set = oneof.fieldsArray.filter(setField);
      if (set.length > 1) {
        this.err(path, `oneof "${oneof.name}" of ${name}: only one of ${oneof.fieldsArray.map((f) => f.name).join(", ")} may be set, got ${set.map((f) => f.name).join(" and ")}`);
      } else if (set.length === 0 && oneofRequired(oneof) && !this.options.partial) {
        this.err(path, `oneof "${oneof.name}" of ${name} is required: set one of ${oneof.fieldsArray.map((f) => f.name).join(", ")}`);
      }
    }

    // PGV rules on absent fields (proto3 defaults): required messages, min_len on "", min_items on [].
    if (!this.options.partial && !messageValidationDisabled(type)) {
      for (const f of type.fieldsArray) {
        if (setField(f)) continue;
        if (f.partOf) continue; // oneof members (and proto3 optionals) are only checked when set
        const rules = fieldRules(f);
        if (!rules) continue;
        const childPath = joinPath(path, f.name);
        if (rules.message?.required || rules.duration?.required || rules.timestamp?.required || rules.any?.required) {
          this.err(childPath, `missing required field "${f.name}" of ${name}`);
          continue;
        }
        if (f.map) this.mapRules(rules, 0, childPath);
        else if (f.repeated) this.repeatedRules(rules, [], childPath, false);
        else if (!f.resolvedType || f.resolvedType instanceof protobuf.Enum) this.scalarRules(f, rules, defaultOf(f), childPath);
      }
    }
  }

  private field(field: protobuf.Field, v: unknown, path: string, depth: number): void {
    const rules = messageValidationDisabled(field.parent as protobuf.Type) ? undefined : fieldRules(field);
    if (field.map) {
      if (!isPlainObject(v)) return this.err(path, `expected an object (map<${(field as unknown as protobuf.MapField).keyType}, ${elementType(field)}>), got ${describe(v)}`);
      const keyType = (field as unknown as protobuf.MapField).keyType;
      for (const [k, item] of Object.entries(v)) {
        const itemPath = `${path}[${JSON.stringify(k)}]`;
        if (keyType === "bool" ? k !== "true" && k !== "false" : keyType !== "string" && !/^-?\d+$/.test(k)) this.err(itemPath, `map key "${k}" is not a ${keyType}`);
        this.single(field, item, itemPath, depth, rules?.map?.values);
        if (rules?.map?.keys?.string) checkString(rules.map.keys.string, k, (m) => this.err(itemPath, `map key ${m}`));
      }
      if (rules) this.mapRules(rules, Object.keys(v).length, path);
      return;
    }
    if (field.repeated) {
      if (!Array.isArray(v)) return this.err(path, `expected an array (repeated ${elementType(field)}), got ${describe(v)}`);
      v.forEach((item, i) => this.single(field, item, `${path}[${i}]`, depth, rules?.repeated?.items));
      if (rules) this.repeatedRules(rules, v, path, true);
      return;
    }
    this.single(field, v, path, depth, rules);
  }

  /** One value of a field's element type, plus the rules that apply to one element. */
  private single(field: protobuf.Field, v: unknown, path: string, depth: number, rules: Rules | undefined): void {
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Type) {
      const before = this.errors.length;
      this.message(rt, v, path, depth + 1);
      if (!rules || this.errors.length > before || rules.message?.skip) return;
      const name = typeName(rt);
      if (name === "google.protobuf.Duration" && rules.duration && typeof v === "string") {
        const n = parseDuration(v);
        if (n !== undefined) checkDuration(rules.duration, n, (m) => this.err(path, m));
      } else if (name in WRAPPERS) {
        this.scalarRules(field, rules, normalizeScalar(WRAPPERS[name]!, v), path);
      } else if (name === "google.protobuf.Any" && rules.any && isPlainObject(v)) {
        const url = String(v["@type"] ?? "");
        if (rules.any.in && !([] as unknown[]).concat(rules.any.in).includes(url)) this.err(path, `@type must be one of ${rules.any.in}`);
        if (rules.any.not_in && ([] as unknown[]).concat(rules.any.not_in).includes(url)) this.err(path, `@type ${url} is not allowed here`);
      }
      return;
    }
    if (rt instanceof protobuf.Enum) {
      const n = this.enumValue(rt, v, path);
      if (n !== undefined && rules?.enum) checkEnum(rules.enum, n, rt, (m) => this.err(path, m));
      return;
    }
    const norm = this.scalar(field.type, v, path);
    if (norm !== undefined && rules) this.scalarRules(field, rules, norm, path);
  }

  private scalarRules(field: protobuf.Field, rules: Rules, value: unknown, path: string): void {
    const report = (m: string): void => this.err(path, m);
    if (rules.string && typeof value === "string") checkString(rules.string, value, report);
    else if (rules.bytes && typeof value === "string") checkBytes(rules.bytes, Buffer.from(value, "base64").length, report);
    else if (rules.enum && typeof value === "number" && field.resolvedType instanceof protobuf.Enum) checkEnum(rules.enum, value, field.resolvedType, report);
    else {
      for (const kind of Object.keys(rules)) {
        if ((INT_KINDS.has(kind) || kind === "double" || kind === "float") && (typeof value === "bigint" || typeof value === "number")) {
          checkNumber(kind, rules[kind], value, report);
        }
      }
    }
  }

  private repeatedRules(rules: Rules, items: unknown[], path: string, present: boolean): void {
    const r = rules.repeated;
    if (!r) return;
    if (r.ignore_empty && items.length === 0) return;
    if (r.min_items !== undefined && items.length < Number(r.min_items))
      this.err(path, present ? `needs at least ${r.min_items} item(s), got ${items.length}` : `missing: needs at least ${r.min_items} item(s)`);
    if (r.max_items !== undefined && items.length > Number(r.max_items)) this.err(path, `allows at most ${r.max_items} item(s), got ${items.length}`);
    if (r.unique) {
      const keys = items.map((i) => JSON.stringify(i));
      if (new Set(keys).size !== keys.length) this.err(path, "items must be unique");
    }
  }

  private mapRules(rules: Rules, pairs: number, path: string): void {
    const r = rules.map;
    if (!r) return;
    if (r.ignore_empty && pairs === 0) return;
    if (r.min_pairs !== undefined && pairs < Number(r.min_pairs)) this.err(path, `needs at least ${r.min_pairs} entr(ies), got ${pairs}`);
    if (r.max_pairs !== undefined && pairs > Number(r.max_pairs)) this.err(path, `allows at most ${r.max_pairs} entr(ies), got ${pairs}`);
  }

  private enumValue(e: protobuf.Enum, v: unknown, path: string): number | undefined {
    const name = typeName(e);
    if (name === "google.protobuf.NullValue" && v === null) return 0;
    if (typeof v === "string") {
      const n = e.values[v];
      if (n === undefined) {
        this.err(path, `invalid value "${v}" for enum ${name}; expected one of ${Object.keys(e.values).join(", ")}`);
        return undefined;
      }
      const opts = (e as unknown as { valuesOptions?: Record<string, Record<string, unknown>> }).valuesOptions?.[v];
      if (opts?.deprecated === true) this.warn(path, `enum value ${v} of ${name} is deprecated`);
      return n;
    }
    if (typeof v === "number" && Number.isInteger(v)) {
      if (!Object.values(e.values).includes(v)) this.warn(path, `${v} is not a known value of enum ${name}`);
      return v;
    }
    this.err(path, `expected an enum ${name} (name or number), got ${describe(v)}`);
    return undefined;
  }

  /** Checks a scalar's JSON form; returns the normalized value (bigint for integers) or undefined on error. */
  private scalar(kind: string, v: unknown, path: string): unknown {
    const bad = (expected: string): undefined => {
      this.err(path, `expected ${expected} (${kind}), got ${describe(v)}`);
      return undefined;
    };
    switch (kind) {
      case "string":
        return typeof v === "string" ? v : bad("a string");
      case "bool":
        return typeof v === "boolean" ? v : bad("true or false");
      case "bytes":
        return typeof v === "string" && /^[A-Za-z0-9+/_-]*={0,2}$/.test(v) ? v : bad("a base64 string");
      case "double":
      case "float": {
        if (typeof v === "number" && Number.isFinite(v)) {
          if (kind === "float" && Math.abs(v) > 3.4028234663852886e38) return bad("a number in float range");
          return v;
        }
        if (typeof v === "string" && (["NaN", "Infinity", "-Infinity"].includes(v) || (v.trim() !== "" && Number.isFinite(Number(v))))) return Number(v);
        return bad("a number");
      }
      default: {
        const range = INT_RANGES[kind];
        if (!range) return bad(`a known scalar type`);
        let n: bigint | undefined;
        if (typeof v === "number" && Number.isInteger(v)) {
          if (!Number.isSafeInteger(v)) this.warn(path, `${v} exceeds 2^53: write 64-bit integers as strings to keep precision`);
          n = BigInt(v);
        } else if (typeof v === "string" && /^-?\d+$/.test(v)) n = BigInt(v);
        else return bad("an integer (number or decimal string)");
        if (n < range[0] || n > range[1]) return bad(`an integer in ${range[0]}..${range[1]}`);
        return n;
      }
    }
  }

  any(value: unknown, path: string, depth: number): void {
    if (!isPlainObject(value)) return this.err(path, `expected an Any object with "@type", got ${describe(value)}`);
    const url = value["@type"];
    if (typeof url !== "string" || url === "") return this.err(path, `Any without "@type"`);
    const slash = url.lastIndexOf("/");
    if (slash < 0) return this.err(joinPath(path, "@type"), `type URL "${url}" must look like type.googleapis.com/<message full name>`);
    const name = url.slice(slash + 1);
    const type = this.lookupMessage(name);
    if (!type) return this.err(joinPath(path, "@type"), `unknown @type "${url}": no such message in the vendored Envoy protos or our overlay`);
    if (SPECIAL_JSON.has(typeName(type))) {
      for (const k of Object.keys(value)) if (k !== "@type" && k !== "value") this.err(joinPath(path, k), `unknown field "${k}" in Any of ${name} (its content goes in "value")`);
      if (!("value" in value)) return this.err(path, `Any of ${name} needs its content in "value"`);
      return this.message(type, value.value, joinPath(path, "value"), depth + 1);
    }
    const rest: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (k !== "@type") rest[k] = v;
    const before = this.errors.length;
    this.message(type, rest, path, depth + 1);
    if (TYPED_STRUCTS.has(typeName(type)) && this.errors.length === before) this.typedStruct(rest, path, depth);
  }

  /** Envoy unpacks `TypedStruct{type_url, value: Struct}` into the named message: validate that too. */
  private typedStruct(ts: Record<string, unknown>, path: string, depth: number): void {
    const url = (ts.type_url ?? ts.typeUrl) as string | undefined;
    if (!url) return;
    const inner = this.lookupMessage(url.slice(url.lastIndexOf("/") + 1));
    if (!inner) return this.err(joinPath(path, "type_url"), `unknown type_url "${url}"`);
    this.message(inner, ts.value ?? {}, joinPath(path, "value"), depth + 1);
  }
}

const elementType = (f: protobuf.Field): string => (f.resolvedType ? typeName(f.resolvedType) : f.type);

function normalizeScalar(kind: string, v: unknown): unknown {
  if (INT_RANGES[kind]) {
    if (typeof v === "number" && Number.isInteger(v)) return BigInt(v);
    if (typeof v === "string" && /^-?\d+$/.test(v)) return BigInt(v);
    return undefined;
  }
  if (kind === "double" || kind === "float") return typeof v === "string" ? Number(v) : v;
  return v;
}

function defaultOf(f: protobuf.Field): unknown {
  if (f.resolvedType instanceof protobuf.Enum) return 0;
  if (INT_RANGES[f.type]) return 0n;
  if (f.type === "double" || f.type === "float") return 0;
  if (f.type === "bool") return false;
  return ""; // string, bytes
}
