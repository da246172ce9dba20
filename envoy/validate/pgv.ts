/**
 * protoc-gen-validate (PGV) rules as protobufjs parses them (`(validate.rules)` field options,
 * `(validate.required)` oneof options), and their checks on proto3-JSON values.
 *
 * Implemented: message.required/skip; string min_len/max_len/len/min_bytes/max_bytes/len_bytes/
 * const/prefix/suffix/contains/not_contains/in/not_in/pattern (as a JS regex; RE2-only syntax is
 * skipped) and well_known_regex HTTP_HEADER_NAME/HTTP_HEADER_VALUE (strict and non-strict);
 * string address/ip/ipv4/ipv6/hostname; bytes min_len/max_len/len; numbers const/lt/lte/gt/gte/
 * in/not_in (exclusive ranges when lt < gt); enum defined_only/const/in/not_in; repeated min_items/
 * max_items/unique/items; map min_pairs/max_pairs/keys/values; duration required/const/lt/lte/gt/
 * gte/in/not_in; timestamp required; any required/in/not_in; oneof (validate.required).
 * Skipped (accepted without checking): the other well-known string formats (uri, email, uuid…),
 * bytes patterns/prefixes, timestamp ranges, and `ignore_empty` is honoured only for strings,
 * repeated and maps.
 */
import { isIP } from "node:net";
import type protobuf from "protobufjs";

export type Rules = Record<string, any>;

/** The merged `(validate.rules)` of a field, or undefined. */
export function fieldRules(field: protobuf.Field): Rules | undefined {
  const parsed = (field as unknown as { parsedOptions?: Record<string, unknown>[] }).parsedOptions;
  if (!parsed) return undefined;
  let out: Rules | undefined;
  for (const opt of parsed) {
    const r = opt["(validate.rules)"];
    if (r && typeof r === "object") out = deepMerge(out ?? {}, r as Rules);
  }
  return out;
}

export function oneofRequired(oneof: protobuf.OneOf): boolean {
  return oneof.options?.["(validate.required)"] === true;
}

export function messageValidationDisabled(type: protobuf.Type): boolean {
  return type.options?.["(validate.disabled)"] === true || type.options?.["(validate.ignored)"] === true;
}

function deepMerge(a: Rules, b: Rules): Rules {
  for (const [k, v] of Object.entries(b)) {
    a[k] = v && typeof v === "object" && !Array.isArray(v) && a[k] && typeof a[k] === "object" ? deepMerge(a[k], v as Rules) : v;
  }
  return a;
}

const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);

export type Report = (message: string) => void;

// ---------------------------------------------------------------------------------------------
// Scalars

const INT_KINDS = new Set(["int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64", "sfixed32", "sfixed64"]);
const NUM_KINDS = new Set([...INT_KINDS, "double", "float"]);

/** Numeric rules (`{uint32: {gt: 0}}` etc.). `value` is a bigint for integer kinds, a number for double/float. */
export function checkNumber(kind: string, r: Rules, value: bigint | number, report: Report): void {
  const isInt = INT_KINDS.has(kind);
  const conv = (x: unknown): bigint | number => (isInt ? BigInt(String(x)) : Number(x));
  const v = value;
  const lt = r.lt !== undefined ? conv(r.lt) : undefined;
  const lte = r.lte !== undefined ? conv(r.lte) : undefined;
  const gt = r.gt !== undefined ? conv(r.gt) : undefined;
  const gte = r.gte !== undefined ? conv(r.gte) : undefined;
  if (r.const !== undefined && v !== conv(r.const)) report(`must equal ${r.const}`);
  const upper = lt ?? lte;
  const lower = gt ?? gte;
  if (upper !== undefined && lower !== undefined && upper < lower) {
    // PGV exclusive range: value must lie outside [upper, lower].
    const below = lt !== undefined ? v < lt : v <= (lte as bigint | number);
    const above = gt !== undefined ? v > gt : v >= (gte as bigint | number);
    if (!below && !above) report(`must be outside the range ${upper}..${lower}`);
  } else {
    if (lt !== undefined && !(v < lt)) report(`must be < ${lt}`);
    if (lte !== undefined && !(v <= lte)) report(`must be <= ${lte}`);
    if (gt !== undefined && !(v > gt)) report(`must be > ${gt}`);
    if (gte !== undefined && !(v >= gte)) report(`must be >= ${gte}`);
  }
  if (r.in !== undefined && !asList(r.in).some((x) => conv(x) === v)) report(`must be one of ${asList(r.in).join(", ")}`);
  if (r.not_in !== undefined && asList(r.not_in).some((x) => conv(x) === v)) report(`must not be one of ${asList(r.not_in).join(", ")}`);
}

const HEADER_NAME_STRICT = /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/;
const HEADER_VALUE_STRICT = /^[^\u0000-\u0008\u000A-\u001F\u007F]*$/;
const HEADER_LOOSE = /^[^\u0000\n\r]*$/;
const HOSTNAME = /^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\.?$/;

export function checkString(r: Rules, s: string, report: Report): void {
  if (r.ignore_empty && s === "") return;
  const chars = [...s].length;
  const bytes = Buffer.byteLength(s, "utf8");
  if (r.const !== undefined && s !== r.const) report(`must equal "${r.const}"`);
  if (r.len !== undefined && chars !== Number(r.len)) report(`must be ${r.len} characters long`);
  if (r.min_len !== undefined && chars < Number(r.min_len)) report(Number(r.min_len) === 1 ? "must not be empty" : `must be at least ${r.min_len} characters long`);
  if (r.max_len !== undefined && chars > Number(r.max_len)) report(`must be at most ${r.max_len} characters long`);
  if (r.len_bytes !== undefined && bytes !== Number(r.len_bytes)) report(`must be ${r.len_bytes} bytes long`);
  if (r.min_bytes !== undefined && bytes < Number(r.min_bytes)) report(Number(r.min_bytes) === 1 ? "must not be empty" : `must be at least ${r.min_bytes} bytes long`);
  if (r.max_bytes !== undefined && bytes > Number(r.max_bytes)) report(`must be at most ${r.max_bytes} bytes long`);
  if (r.prefix !== undefined && !s.startsWith(r.prefix)) report(`must start with "${r.prefix}"`);
  if (r.suffix !== undefined && !s.endsWith(r.suffix)) report(`must end with "${r.suffix}"`);
  if (r.contains !== undefined && !s.includes(r.contains)) report(`must contain "${r.contains}"`);
  if (r.not_contains !== undefined && s.includes(r.not_contains)) report(`must not contain "${r.not_contains}"`);
  if (r.in !== undefined && !asList(r.in).includes(s)) report(`must be one of ${asList(r.in).join(", ")}`);
  if (r.not_in !== undefined && asList(r.not_in).includes(s)) report(`must not be one of ${asList(r.not_in).join(", ")}`);
  if (r.pattern !== undefined) {
    let re: RegExp | undefined;
    try {
      re = new RegExp(String(r.pattern), "u");
    } catch {
      re = undefined; // RE2-only syntax: skipped
    }
    if (re && !re.test(s)) report(`must match /${r.pattern}/`);
  }
  const strict = r.strict !== false;
  switch (r.well_known_regex) {
    case "HTTP_HEADER_NAME":
      if (!(strict ? HEADER_NAME_STRICT : HEADER_LOOSE).test(s)) report("must be a valid HTTP header name");
      break;
    case "HTTP_HEADER_VALUE":
      if (!(strict ? HEADER_VALUE_STRICT : HEADER_LOOSE).test(s)) report("must be a valid HTTP header value");
      break;
    default:
      break;
  }
  if (r.ip && !isIP(s)) report("must be an IP address");
  if (r.ipv4 && isIP(s) !== 4) report("must be an IPv4 address");
  if (r.ipv6 && isIP(s) !== 6) report("must be an IPv6 address");
  if (r.hostname && !HOSTNAME.test(s)) report("must be a hostname");
  if (r.address && !isIP(s) && !HOSTNAME.test(s)) report("must be an IP address or a hostname");
}

export function checkBytes(r: Rules, byteLength: number, report: Report): void {
  if (r.len !== undefined && byteLength !== Number(r.len)) report(`must be ${r.len} bytes`);
  if (r.min_len !== undefined && byteLength < Number(r.min_len)) report(`must be at least ${r.min_len} bytes`);
  if (r.max_len !== undefined && byteLength > Number(r.max_len)) report(`must be at most ${r.max_len} bytes`);
}

export function checkEnum(r: Rules, n: number, enumType: protobuf.Enum, report: Report): void {
  const defined = Object.values(enumType.values).includes(n);
  if (r.defined_only && !defined) report(`${n} is not a defined value of ${enumType.fullName.slice(1)}`);
  if (r.const !== undefined && n !== Number(r.const)) report(`must be ${nameOf(enumType, Number(r.const))}`);
  if (r.in !== undefined && !asList(r.in).map(Number).includes(n)) report(`must be one of ${asList(r.in).map((x) => nameOf(enumType, Number(x))).join(", ")}`);
  if (r.not_in !== undefined && asList(r.not_in).map(Number).includes(n)) report(`must not be ${nameOf(enumType, n)}`);
}

const nameOf = (e: protobuf.Enum, n: number): string => e.valuesById[n] ?? String(n);

// ---------------------------------------------------------------------------------------------
// Durations

/** Parses a proto3-JSON Duration ("5s", "0.5s", "-1.000000001s"); nanoseconds as bigint, or undefined. */
export function parseDuration(s: string): bigint | undefined {
  const m = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(s);
  if (!m) return undefined;
  const secs = BigInt(m[2]!);
  if (secs > 315_576_000_000n) return undefined;
  const nanos = BigInt((m[3] ?? "").padEnd(9, "0") || "0");
  const total = secs * 1_000_000_000n + nanos;
  return m[1] ? -total : total;
}

function durationRuleNanos(d: unknown): bigint {
  const o = (d ?? {}) as { seconds?: unknown; nanos?: unknown };
  return BigInt(String(o.seconds ?? 0)) * 1_000_000_000n + BigInt(String(o.nanos ?? 0));
}

const fmtNanos = (n: bigint): string => {
  const neg = n < 0n;
  const a = neg ? -n : n;
  const s = a / 1_000_000_000n;
  const f = a % 1_000_000_000n;
  return `${neg ? "-" : ""}${s}${f ? "." + f.toString().padStart(9, "0").replace(/0+$/, "") : ""}s`;
};

export function checkDuration(r: Rules, nanos: bigint, report: Report): void {
  const b = (k: string): bigint | undefined => (r[k] !== undefined ? durationRuleNanos(r[k]) : undefined);
  const [lt, lte, gt, gte] = [b("lt"), b("lte"), b("gt"), b("gte")];
  if (r.const !== undefined && nanos !== durationRuleNanos(r.const)) report(`must equal ${fmtNanos(durationRuleNanos(r.const))}`);
  if (lt !== undefined && !(nanos < lt)) report(`must be < ${fmtNanos(lt)}`);
  if (lte !== undefined && !(nanos <= lte)) report(`must be <= ${fmtNanos(lte)}`);
  if (gt !== undefined && !(nanos > gt)) report(`must be > ${fmtNanos(gt)}`);
  if (gte !== undefined && !(nanos >= gte)) report(`must be >= ${fmtNanos(gte)}`);
  if (r.in !== undefined && !asList(r.in).some((x) => durationRuleNanos(x) === nanos)) report("must be one of the allowed durations");
  if (r.not_in !== undefined && asList(r.not_in).some((x) => durationRuleNanos(x) === nanos)) report("is not an allowed duration");
}

export { INT_KINDS, NUM_KINDS };
