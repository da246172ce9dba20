/**
 * Binary protobuf for the ADS transport (ads.ts): Envoy's v3 messages from the protos our validator
 * already loads (envoy/validate/schema.ts: the vendored Envoy API + our overlay, one protobufjs Root,
 * snake_case field names), and the proto3-JSON ↔ protobuf conversion the builder's output needs.
 *
 * The builder (build.ts) produces proto3 JSON — what REST serves. protobufjs' `fromObject` is not a
 * proto3-JSON parser: Durations are "5s" in JSON but {seconds, nanos} for protobufjs, wrappers
 * (UInt32Value…) are bare numbers in JSON, Struct is a plain object, and an Any is
 * {"@type": url, …fields of that type} (its value must be encoded with the named type). `jsonToObject`
 * walks the message's descriptor and converts each of those; everything else (enums by name, 64-bit
 * integers as strings, base64 bytes) protobufjs reads itself. Unknown fields, unknown enum names and
 * Any types we cannot resolve throw: a field silently dropped here would be a difference between what
 * REST and ADS serve. `toJson` is the inverse (decoded message → proto3 JSON, Any expanded), for tests
 * and for anyone decoding what ADS sent.
 */
import protobuf from "protobufjs";
import { loadSchema } from "../../envoy/validate/schema.js";
import { INT_RANGES } from "../../envoy/validate/walker.js";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: unknown };

/** An encoded google.protobuf.Any (what DiscoveryResponse.resources holds). */
export interface EncodedAny {
  type_url: string;
  value: Uint8Array;
}

const WRAPPERS = new Set(
  ["DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value", "UInt32Value", "BoolValue", "StringValue", "BytesValue"].map((n) => `.google.protobuf.${n}`),
);
/** WKTs whose JSON form is not an object of their fields: inside an Any they sit under "value". */
const SPECIAL_JSON = new Set([...WRAPPERS, ".google.protobuf.Duration", ".google.protobuf.Timestamp", ".google.protobuf.FieldMask", ".google.protobuf.Struct", ".google.protobuf.Value", ".google.protobuf.ListValue", ".google.protobuf.Any"]);


const camel = (s: string): string => s.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

export class ProtoJsonError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path || "<root>"}: ${message}`);
  }
}

export interface XdsProto {
  root: protobuf.Root;
  DiscoveryRequest: protobuf.Type;
  DiscoveryResponse: protobuf.Type;
  /** `{"@type": url, …}` (proto3 JSON) → an encoded Any. Throws ProtoJsonError. */
  encodeAny(json: JsonObject): EncodedAny;
  /** proto3 JSON of message `type` → the object protobufjs' `fromObject` takes. Throws ProtoJsonError. */
  jsonToObject(type: protobuf.Type, json: unknown, path?: string): JsonObject;
  /** A decoded message → proto3 JSON (snake_case names, Any expanded with "@type"; absent fields left out). */
  toJson(type: protobuf.Type, message: protobuf.Message | JsonObject): JsonObject;
  /** An encoded Any → proto3 JSON `{"@type": …}`. */
  anyToJson(any: EncodedAny): JsonObject;
}

let cached: XdsProto | undefined;

/** Loads once per process (~1 s: every Envoy proto the validator knows). */
export function loadXdsProto(): XdsProto {
  if (cached) return cached;
  const { root } = loadSchema();
  const lookupType = (name: string): protobuf.Type => root.lookupType(name.replace(/^\./, ""));

  function fieldOf(type: protobuf.Type, key: string): protobuf.Field | undefined {
    const f = type.fields[key];
    if (f) return f;
    return type.fieldsArray.find((x) => camel(x.name) === key || x.options?.json_name === key);
  }

  function duration(v: unknown, path: string): JsonObject {
    if (typeof v !== "string") throw new ProtoJsonError(path, "a Duration is a string like \"1.5s\"");
    const m = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(v);
    if (!m) throw new ProtoJsonError(path, `not a Duration: ${JSON.stringify(v)}`);
    const sign = m[1] ? -1 : 1;
    const nanos = m[3] ? Number(m[3].padEnd(9, "0")) : 0;
    return { seconds: m[1] ? `-${m[2]}` : m[2]!, nanos: sign * nanos };
  }

  function timestamp(v: unknown, path: string): JsonObject {
    if (typeof v !== "string") throw new ProtoJsonError(path, "a Timestamp is an RFC 3339 string");
    const m = /^(.*?)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(v);
    const ms = m ? Date.parse(`${m[1]}${m[3]}`) : NaN;
    if (!m || Number.isNaN(ms)) throw new ProtoJsonError(path, `not a Timestamp: ${JSON.stringify(v)}`);
    return { seconds: String(Math.floor(ms / 1000)), nanos: m[2] ? Number(m[2].padEnd(9, "0")) : 0 };
  }

  // google.protobuf.Value's field names as loaded: protobufjs bundles the well-known types with
  // lowerCamelCase names (nullValue…) whatever keepCase says; look them up rather than assume.
  const valueType = lookupType("google.protobuf.Value");
  const VF = Object.fromEntries(
    ["null_value", "number_value", "string_value", "bool_value", "struct_value", "list_value"].map((n) => [n, valueType.fields[n] ? n : camel(n)]),
  ) as Record<"null_value" | "number_value" | "string_value" | "bool_value" | "struct_value" | "list_value", string>;

  function structValue(v: unknown, path: string): JsonObject {
    if (v === null) return { [VF.null_value]: "NULL_VALUE" };
    if (typeof v === "number") return { [VF.number_value]: v };
    if (typeof v === "string") return { [VF.string_value]: v };
    if (typeof v === "boolean") return { [VF.bool_value]: v };
    if (Array.isArray(v)) return { [VF.list_value]: { values: v.map((x, i) => structValue(x, `${path}[${i}]`)) } };
    if (isObject(v)) return { [VF.struct_value]: struct(v, path) };
    throw new ProtoJsonError(path, `not a JSON value: ${typeof v}`);
  }

  function struct(v: unknown, path: string): JsonObject {
    if (!isObject(v)) throw new ProtoJsonError(path, "a Struct is a JSON object");
    const fields: JsonObject = {};
    for (const [k, x] of Object.entries(v)) fields[k] = structValue(x, `${path}.${k}`);
    return { fields };
  }

  /** A well-known type's JSON → protobufjs object; undefined if `full` is not special. */
  function wkt(full: string, v: unknown, path: string): unknown {
    if (WRAPPERS.has(full)) return { value: value(lookupType(full).fields.value!, v, path) };
    switch (full) {
      case ".google.protobuf.Duration":
        return duration(v, path);
      case ".google.protobuf.Timestamp":
        return timestamp(v, path);
      case ".google.protobuf.Struct":
        return struct(v, path);
      case ".google.protobuf.Value":
        return structValue(v, path);
      case ".google.protobuf.ListValue":
        if (!Array.isArray(v)) throw new ProtoJsonError(path, "a ListValue is a JSON array");
        return { values: v.map((x, i) => structValue(x, `${path}[${i}]`)) };
      case ".google.protobuf.FieldMask":
        if (typeof v !== "string") throw new ProtoJsonError(path, "a FieldMask is a string");
        return { paths: v === "" ? [] : v.split(",").map((p) => p.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)) };
      case ".google.protobuf.Any":
        if (!isObject(v)) throw new ProtoJsonError(path, "an Any is a JSON object with \"@type\"");
        return encodeAnyAt(v, path);
      default:
        return undefined;
    }
  }

  function value(field: protobuf.Field, v: unknown, path: string): unknown {
    const rt = field.resolve().resolvedType;
    if (rt instanceof protobuf.Enum) {
      if (typeof v === "string") {
        if (!(v in rt.values)) throw new ProtoJsonError(path, `unknown ${rt.fullName.slice(1)} value ${JSON.stringify(v)}`);
        return v;
      }
      if (typeof v === "number" && Number.isInteger(v)) return v;
      throw new ProtoJsonError(path, "an enum is a name or an integer");
    }
    if (rt instanceof protobuf.Type) {
      const special = wkt(rt.fullName, v, path);
      if (special !== undefined) return special;
      return jsonToObject(rt, v, path);
    }
    // Scalars: protobufjs reads numbers, numeric strings (64-bit), booleans and base64 strings itself.
    switch (field.type) {
      case "string":
        if (typeof v !== "string") throw new ProtoJsonError(path, "a string is expected");
        return v;
      case "bool":
        if (typeof v !== "boolean") throw new ProtoJsonError(path, "a boolean is expected");
        return v;
      case "bytes":
        if (typeof v !== "string") throw new ProtoJsonError(path, "bytes are a base64 string");
        return v;
      case "double":
      case "float":
        if (typeof v === "number" || v === "NaN" || v === "Infinity" || v === "-Infinity") return typeof v === "number" ? v : Number(v);
        throw new ProtoJsonError(path, "a number is expected");
      default: {
        const ok = (typeof v === "number" && Number.isInteger(v)) || (typeof v === "string" && /^-?\d{1,20}$/.test(v));
        if (!ok) throw new ProtoJsonError(path, `an integer (${field.type}) is expected`);
        const [lo, hi] = INT_RANGES[field.type] ?? [-(2n ** 63n), 2n ** 64n - 1n];
        const n = BigInt(v as number | string);
        if (n < lo || n > hi) throw new ProtoJsonError(path, `${String(v)} is out of range for ${field.type}`);
        return v;
      }
    }
  }

  function jsonToObject(type: protobuf.Type, json: unknown, path = ""): JsonObject {
    if (!isObject(json)) throw new ProtoJsonError(path, `${type.fullName.slice(1)} must be a JSON object`);
    const out: JsonObject = {};
    for (const [key, v] of Object.entries(json)) {
      if (key === "@type") continue; // the Any wrapper's, handled by encodeAnyAt
      const at = path ? `${path}.${key}` : key;
      const field = fieldOf(type, key);
      if (!field) throw new ProtoJsonError(at, `unknown field of ${type.fullName.slice(1)}`);
      if (field.name in out) throw new ProtoJsonError(at, `field ${field.name} given twice`);
      if (v === null && field.resolve().resolvedType?.fullName !== ".google.protobuf.Value") continue; // proto3 JSON: null = default
      if (field.map) {
        if (!isObject(v)) throw new ProtoJsonError(at, "a map is a JSON object");
        const m: JsonObject = {};
        for (const [k, x] of Object.entries(v)) m[k] = value(field, x, `${at}.${k}`);
        out[field.name] = m;
      } else if (field.repeated) {
        if (!Array.isArray(v)) throw new ProtoJsonError(at, "a repeated field is a JSON array");
        out[field.name] = v.map((x, i) => value(field, x, `${at}[${i}]`));
      } else {
        out[field.name] = value(field, v, at);
      }
    }
    return out;
  }

  function encodeAnyAt(json: JsonObject, path: string): EncodedAny {
    const url = json["@type"];
    if (typeof url !== "string" || !url.includes("/")) throw new ProtoJsonError(`${path}.@type`, "an Any needs \"@type\": \"type.googleapis.com/<message>\"");
    let type: protobuf.Type;
    try {
      type = lookupType(url.slice(url.lastIndexOf("/") + 1));
    } catch {
      throw new ProtoJsonError(`${path}.@type`, `unknown message type ${url}`);
    }
    let obj: unknown;
    if (SPECIAL_JSON.has(type.fullName)) {
      for (const k of Object.keys(json)) if (k !== "@type" && k !== "value") throw new ProtoJsonError(`${path}.${k}`, `an Any of ${type.fullName.slice(1)} holds only "value"`);
      obj = wkt(type.fullName, json.value, `${path}.value`);
    } else {
      obj = jsonToObject(type, json, path);
    }
    let value: Uint8Array;
    try {
      value = type.encode(type.fromObject(obj as JsonObject)).finish();
    } catch (e) {
      throw new ProtoJsonError(path, `cannot encode ${type.fullName.slice(1)}: ${(e as Error).message}`);
    }
    return { type_url: url, value };
  }

  // ------------------------------------------------------------------------------------------------
  // Decoding (proto → proto3 JSON).

  function durationJson(o: JsonObject): string {
    const s = BigInt(String(o.seconds ?? 0));
    const n = Number(o.nanos ?? 0);
    const neg = s < 0n || n < 0;
    const abs = (s < 0n ? -s : s).toString();
    const frac = n === 0 ? "" : `.${String(Math.abs(n)).padStart(9, "0").replace(/(?:000)+$/, "")}`;
    return `${neg ? "-" : ""}${abs}${frac}s`;
  }

  const own = (o: JsonObject, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k) && o[k] !== undefined && o[k] !== null;

  function structValueJson(o: JsonObject): unknown {
    if (own(o, VF.number_value)) return o[VF.number_value];
    if (own(o, VF.string_value)) return o[VF.string_value];
    if (own(o, VF.bool_value)) return o[VF.bool_value];
    if (own(o, VF.struct_value)) return structJson(o[VF.struct_value] as JsonObject);
    if (own(o, VF.list_value)) return (((o[VF.list_value] as JsonObject).values as JsonObject[] | undefined) ?? []).map(structValueJson);
    return null;
  }

  function structJson(o: JsonObject): JsonObject {
    const out: JsonObject = {};
    for (const [k, v] of Object.entries((o.fields as JsonObject | undefined) ?? {})) out[k] = structValueJson(v as JsonObject);
    return out;
  }

  function valueJson(field: protobuf.Field, v: unknown): unknown {
    const rt = field.resolve().resolvedType;
    if (rt instanceof protobuf.Enum) return typeof v === "number" ? (rt.valuesById[v] ?? v) : v;
    if (rt instanceof protobuf.Type) return messageJson(rt, v as JsonObject);
    if (field.type === "bytes") return Buffer.from(v as Uint8Array).toString("base64");
    if (["int64", "uint64", "sint64", "fixed64", "sfixed64"].includes(field.type)) return String(v);
    return v;
  }

  function messageJson(type: protobuf.Type, o: JsonObject): unknown {
    const full = type.fullName;
    if (WRAPPERS.has(full)) {
      const inner = type.fields.value!;
      return o.value === undefined ? valueJson(inner, inner.typeDefault) : valueJson(inner, o.value);
    }
    switch (full) {
      case ".google.protobuf.Duration":
        return durationJson(o);
      case ".google.protobuf.Timestamp": {
        const ms = Number(BigInt(String(o.seconds ?? 0)) * 1000n);
        const iso = new Date(ms).toISOString().replace(/\.000Z$/, "Z");
        const n = Number(o.nanos ?? 0);
        return n === 0 ? iso : iso.replace(/Z$/, `.${String(n).padStart(9, "0").replace(/(?:000)+$/, "")}Z`);
      }
      case ".google.protobuf.Struct":
        return structJson(o);
      case ".google.protobuf.Value":
        return structValueJson(o);
      case ".google.protobuf.ListValue":
        return ((o.values as JsonObject[] | undefined) ?? []).map(structValueJson);
      case ".google.protobuf.FieldMask":
        return ((o.paths as string[] | undefined) ?? []).map(camel).join(",");
      case ".google.protobuf.Any":
        return anyToJson({ type_url: String(o.type_url ?? ""), value: (o.value as Uint8Array | undefined) ?? new Uint8Array() });
    }
    return toJson(type, o);
  }

  function toJson(type: protobuf.Type, message: protobuf.Message | JsonObject): JsonObject {
    const o = message as unknown as JsonObject;
    const out: JsonObject = {};
    for (const field of type.fieldsArray) {
      if (!own(o, field.name)) continue;
      const v = o[field.name];
      // Canonical proto3 JSON leaves empty repeated fields and maps out (protobufjs creates them empty).
      if (field.map && Object.keys(v as JsonObject).length === 0) continue;
      if (field.repeated && (v as unknown[]).length === 0) continue;
      if (field.map) {
        const m: JsonObject = {};
        for (const [k, x] of Object.entries(v as JsonObject)) m[k] = valueJson(field, x);
        out[field.name] = m;
      } else if (field.repeated) {
        out[field.name] = (v as unknown[]).map((x) => valueJson(field, x));
      } else {
        out[field.name] = valueJson(field, v);
      }
    }
    return out;
  }

  function anyToJson(any: EncodedAny): JsonObject {
    const type = lookupType(any.type_url.slice(any.type_url.lastIndexOf("/") + 1));
    const decoded = type.decode(any.value) as unknown as JsonObject;
    if (SPECIAL_JSON.has(type.fullName)) return { "@type": any.type_url, value: messageJson(type, decoded) as unknown };
    return { "@type": any.type_url, ...toJson(type, decoded) };
  }

  cached = {
    root,
    DiscoveryRequest: lookupType("envoy.service.discovery.v3.DiscoveryRequest"),
    DiscoveryResponse: lookupType("envoy.service.discovery.v3.DiscoveryResponse"),
    encodeAny: (json) => encodeAnyAt(json, ""),
    jsonToObject,
    toJson,
    anyToJson,
  };
  return cached;
}
