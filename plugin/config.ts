// Contract 2: the plugin configuration (control/contracts/plugin-config.ts is the definition; this
// file implements the same rules: defaults, types, ranges, patterns, unknown keys refused and the
// cross-field rule). parseConfig never traps: invalid input → null with `configError` naming the
// field and the expected shape.
import { JsonValue, kindName } from "./json/value";
import { jsonError, parseJson } from "./json/parser";
import { utf8 } from "./abi/bytes";

export const EXPECTED_SHAPE =
  '{"control_cluster": string (required), "control_authority": string = "gateway-control", ' +
  '"table_path": "/path" = "/v1/routing-table", "control_token"?: string, "poll_interval_ms": 100..60000 = 1000, ' +
  '"long_poll_seconds": 0..60 = 20, "control_timeout_ms": 100..120000 = 25000 (> long_poll_seconds*1000), ' +
  '"max_table_bytes": 1024..67108864 = 16777216, "model_header": header = "x-model", ' +
  '"unknown_model": "passthrough"|"reject" = "passthrough", "before_first_table": "reject"|"passthrough" = "reject", ' +
  '"body_routing": boolean = true, ' +
  '"max_body_bytes": 64..16777216 = 1048576, "max_fallbacks": 0..8 = 2, "api_prefix": "" or "/seg…" = "/v1", ' +
  '"retry_after_seconds": 0..3600 = 5, "telemetry_path": "/path" = "/v1/telemetry", ' +
  '"telemetry_interval_ms": 0..300000 = 5000 (0 = off), "passive_failures": 0..100 = 3 (0 = off), ' +
  '"passive_cooldown_ms": 1000..600000 = 10000, "endpoint_header": header = "x-gateway-destination-endpoint", ' +
  '"cluster_header": header = "x-gateway-cluster", "deployment_header": header = "x-model-deployment", ' +
  '"instance_header": header = "x-model-instance", "models_endpoint": "local"|"passthrough" = "local"} ' +
  '(header: lower-case RFC 9110 token)';

/** Largest configuration accepted (the schema's own limits keep a valid one far below this). */
const MAX_CONFIG_BYTES: usize = 64 * 1024;

export class Config {
  controlCluster: string = "";
  controlAuthority: string = "gateway-control";
  tablePath: string = "/v1/routing-table";
  controlToken: string | null = null;
  pollIntervalMs: i32 = 1000;
  longPollSeconds: i32 = 20;
  controlTimeoutMs: i32 = 25000;
  maxTableBytes: i32 = 16 * 1024 * 1024;
  modelHeader: string = "x-model";
  unknownModelReject: bool = false;
  /** before_first_table "passthrough": with no table yet, requests naming a model pass through (default: 503). */
  beforeFirstTablePassthrough: bool = false;
  bodyRouting: bool = true;
  maxBodyBytes: i32 = 1024 * 1024;
  maxFallbacks: i32 = 2;
  apiPrefix: string = "/v1";
  retryAfterSeconds: i32 = 5;
  telemetryPath: string = "/v1/telemetry";
  telemetryIntervalMs: i32 = 5000;
  passiveFailures: i32 = 3;
  passiveCooldownMs: i32 = 10000;
  endpointHeader: string = "x-gateway-destination-endpoint";
  clusterHeader: string = "x-gateway-cluster";
  deploymentHeader: string = "x-model-deployment";
  instanceHeader: string = "x-model-instance";
  /** models_endpoint "local": answer GET/HEAD {api_prefix}/models[/{name}] from the table. */
  modelsEndpointLocal: bool = true;

  // UTF-8 encodings, made once (the request path passes these straight to the host).
  modelHeaderBytes: ArrayBuffer = new ArrayBuffer(0);
  endpointHeaderBytes: ArrayBuffer = new ArrayBuffer(0);
  clusterHeaderBytes: ArrayBuffer = new ArrayBuffer(0);
  deploymentHeaderBytes: ArrayBuffer = new ArrayBuffer(0);
  instanceHeaderBytes: ArrayBuffer = new ArrayBuffer(0);
  apiPrefixBytes: ArrayBuffer = new ArrayBuffer(0);
  controlClusterBytes: ArrayBuffer = new ArrayBuffer(0);
  /** api_prefix + "/models". */
  modelsPathBytes: ArrayBuffer = new ArrayBuffer(0);

  /** The stream observes upstream results (telemetry or passive ejection on). */
  @inline get observes(): bool {
    return this.telemetryIntervalMs > 0 || this.passiveFailures > 0;
  }

  encode(): void {
    this.modelHeaderBytes = utf8(this.modelHeader);
    this.endpointHeaderBytes = utf8(this.endpointHeader);
    this.clusterHeaderBytes = utf8(this.clusterHeader);
    this.deploymentHeaderBytes = utf8(this.deploymentHeader);
    this.instanceHeaderBytes = utf8(this.instanceHeader);
    this.apiPrefixBytes = utf8(this.apiPrefix);
    this.controlClusterBytes = utf8(this.controlCluster);
    this.modelsPathBytes = utf8(this.apiPrefix + "/models");
  }
}

export let configError: string = "";

/** JavaScript's \s (what the zod regexes use). */
export function isJsSpace(c: i32): bool {
  return c == 0x20 || (c >= 0x09 && c <= 0x0d) || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
    c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000 || c == 0xfeff;
}

function isHeaderName(s: string): bool {
  const n = s.length;
  if (n < 1 || n > 128) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x21 || c == 0x23 || c == 0x24 ||
      c == 0x25 || c == 0x26 || c == 0x27 || c == 0x2a || c == 0x2b || c == 0x2e || c == 0x5e || c == 0x5f ||
      c == 0x60 || c == 0x7c || c == 0x7e || c == 0x2d;
    if (!ok) return false;
  }
  return true;
}

/** ^\/[^\s?#]*$ */
function isTablePath(s: string): bool {
  const n = s.length;
  if (n < 1 || s.charCodeAt(0) != 0x2f) return false;
  for (let i = 1; i < n; i++) {
    const c = s.charCodeAt(i);
    if (isJsSpace(c) || c == 0x3f || c == 0x23) return false;
  }
  return true;
}

/** ^(?:\/[^\s/?#]+)*$ */
function isApiPrefix(s: string): bool {
  const n = s.length;
  let i = 0;
  while (i < n) {
    if (s.charCodeAt(i) != 0x2f) return false;
    i++;
    const start = i;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c == 0x2f) break;
      if (isJsSpace(c) || c == 0x3f || c == 0x23) return false;
      i++;
    }
    if (i == start) return false;
  }
  return true;
}

/** A safe integer within [min, max] (zod's .int().min().max()). */
export function isIntIn(v: JsonValue, min: f64, max: f64): bool {
  if (!v.isNumber()) return false;
  const x = v.num;
  if (!isFinite(x) || Math.floor(x) != x || Math.abs(x) > 9007199254740991) return false;
  return x >= min && x <= max;
}

function fail(field: string, problem: string): Config | null {
  configError = "invalid plugin configuration: " + field + ": " + problem + "; expected " + EXPECTED_SHAPE;
  return null;
}

function typeProblem(expected: string, v: JsonValue): string {
  return "expected " + expected + ", got " + kindName(v);
}

export function parseConfig(ptr: usize, len: usize): Config | null {
  configError = "";
  const root = parseJson(ptr, len, MAX_CONFIG_BYTES, 32);
  if (root === null) return fail("(document)", "not valid JSON (" + jsonError + ")");
  if (!root.isObject()) return fail("(document)", typeProblem("an object", root));
  const c = new Config();
  let haveCluster = false;
  const kept = root.lastOccurrences();
  for (let i = 0; i < root.size; i++) {
    if (!unchecked(kept[i])) continue;
    const key = root.keyAt(i);
    const v = root.at(i);
    if (v === null) continue;
    if (key == "control_cluster" || key == "control_authority") {
      if (!v.isString()) return fail(key, typeProblem("a string", v));
      if (v.str.length < 1 || v.str.length > 256) return fail(key, "expected 1..256 characters");
      if (key == "control_cluster") { c.controlCluster = v.str; haveCluster = true; }
      else c.controlAuthority = v.str;
    } else if (key == "table_path" || key == "telemetry_path") {
      if (!v.isString()) return fail(key, typeProblem("a string", v));
      if (!isTablePath(v.str)) return fail(key, "expected an absolute path without query");
      if (key == "table_path") c.tablePath = v.str;
      else c.telemetryPath = v.str;
    } else if (key == "telemetry_interval_ms") {
      if (!isIntIn(v, 0, 300000)) return fail(key, "expected an integer in 0..300000 (0 = off)");
      c.telemetryIntervalMs = <i32>v.num;
    } else if (key == "passive_failures") {
      if (!isIntIn(v, 0, 100)) return fail(key, "expected an integer in 0..100 (0 = off)");
      c.passiveFailures = <i32>v.num;
    } else if (key == "passive_cooldown_ms") {
      if (!isIntIn(v, 1000, 600000)) return fail(key, "expected an integer in 1000..600000");
      c.passiveCooldownMs = <i32>v.num;
    } else if (key == "control_token") {
      if (!v.isString()) return fail(key, typeProblem("a string", v));
      if (v.str.length < 1 || v.str.length > 512) return fail(key, "expected 1..512 characters");
      c.controlToken = v.str;
    } else if (key == "poll_interval_ms") {
      if (!isIntIn(v, 100, 60000)) return fail(key, "expected an integer in 100..60000");
      c.pollIntervalMs = <i32>v.num;
    } else if (key == "long_poll_seconds") {
      if (!isIntIn(v, 0, 60)) return fail(key, "expected an integer in 0..60");
      c.longPollSeconds = <i32>v.num;
    } else if (key == "control_timeout_ms") {
      if (!isIntIn(v, 100, 120000)) return fail(key, "expected an integer in 100..120000");
      c.controlTimeoutMs = <i32>v.num;
    } else if (key == "max_table_bytes") {
      if (!isIntIn(v, 1024, 64 * 1024 * 1024)) return fail(key, "expected an integer in 1024..67108864");
      c.maxTableBytes = <i32>v.num;
    } else if (key == "unknown_model") {
      if (!v.isString() || (v.str != "passthrough" && v.str != "reject")) return fail(key, 'expected "passthrough" or "reject"');
      c.unknownModelReject = v.str == "reject";
    } else if (key == "before_first_table") {
      if (!v.isString() || (v.str != "reject" && v.str != "passthrough")) return fail(key, 'expected "reject" or "passthrough"');
      c.beforeFirstTablePassthrough = v.str == "passthrough";
    } else if (key == "models_endpoint") {
      if (!v.isString() || (v.str != "local" && v.str != "passthrough")) return fail(key, 'expected "local" or "passthrough"');
      c.modelsEndpointLocal = v.str == "local";
    } else if (key == "body_routing") {
      if (!v.isBool()) return fail(key, typeProblem("a boolean", v));
      c.bodyRouting = v.bool;
    } else if (key == "max_body_bytes") {
      if (!isIntIn(v, 64, 16 * 1024 * 1024)) return fail(key, "expected an integer in 64..16777216");
      c.maxBodyBytes = <i32>v.num;
    } else if (key == "max_fallbacks") {
      if (!isIntIn(v, 0, 8)) return fail(key, "expected an integer in 0..8");
      c.maxFallbacks = <i32>v.num;
    } else if (key == "api_prefix") {
      if (!v.isString()) return fail(key, typeProblem("a string", v));
      if (!isApiPrefix(v.str)) return fail(key, "expected \"\" or '/segment…' without a trailing slash");
      c.apiPrefix = v.str;
    } else if (key == "retry_after_seconds") {
      if (!isIntIn(v, 0, 3600)) return fail(key, "expected an integer in 0..3600");
      c.retryAfterSeconds = <i32>v.num;
    } else if (key == "model_header" || key == "endpoint_header" || key == "cluster_header" ||
      key == "deployment_header" || key == "instance_header") {
      if (!v.isString()) return fail(key, typeProblem("a string", v));
      if (!isHeaderName(v.str)) return fail(key, "expected a lower-case HTTP header name (RFC 9110 token, 1..128)");
      if (key == "model_header") c.modelHeader = v.str;
      else if (key == "endpoint_header") c.endpointHeader = v.str;
      else if (key == "cluster_header") c.clusterHeader = v.str;
      else if (key == "deployment_header") c.deploymentHeader = v.str;
      else c.instanceHeader = v.str;
    } else {
      return fail(key, "unknown key (refused so that a typo cannot silently fall back to a default)");
    }
  }
  if (!haveCluster) return fail("control_cluster", "required");
  if (<i64>c.longPollSeconds * 1000 >= <i64>c.controlTimeoutMs) return fail("control_timeout_ms", "must exceed long_poll_seconds × 1000");
  c.encode();
  return c;
}
