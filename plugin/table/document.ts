// Contract 1: validates a routing-table document exactly as control/contracts/routing-table.ts does
// (same acceptance; unknown fields ignored) and returns its plain content. Whole document or nothing:
// any problem → null with `tableError` naming the path.
import { JsonValue, kindName } from "../json/value";
import { jsonError, parseJson } from "../json/parser";
import { isIntIn } from "../config";
import {
  MAX_CLUSTER_LENGTH, MAX_DEPLOYMENTS, MAX_INSTANCES_PER_DEPLOYMENT, MAX_MODEL_NAMES, MAX_PRIORITY,
  MAX_REGION_LENGTH, MAX_SAFE_INTEGER, MAX_LOAD_SCORE, MAX_LOAD_INTERVAL_MS, MAX_LOAD_CAPACITY, MAX_TABLE_DEPTH, MAX_WEIGHT, ROUTING_TABLE_SCHEMA, MAX_EXTRA_PATHS,
} from "./limits";
import { isAddress, isAuthorization, isBasePath, isExtraPath, isId, isModelName, isPrintableAscii, isServedName } from "./patterns";

export namespace InstanceState {
  export const Active: u8 = 0;
  export const Draining: u8 = 1;
  export const Ejected: u8 = 2;
}

export namespace StrategyKind {
  export const RoundRobin: u8 = 0;
  export const WeightedRoundRobin: u8 = 1;
  export const Failover: u8 = 2;
  /** least_request: weighted power of two choices on this worker's in-flight counts (strategy/load.ts). */
  export const LeastRequest: u8 = 3;
  /** latency: peak-EWMA of time to first byte × (in-flight + 1), power of two choices (strategy/load.ts). */
  export const Latency: u8 = 4;
  /** load_aware: the control service's engine load score × this worker's in-flight counts, P2C (strategy/load.ts). */
  export const LoadAware: u8 = 5;
}

/** Strategies that pick by load and respect failover tiers (strategy/load.ts). */
@inline export function isLoadAware(kind: u8): bool {
  return kind == StrategyKind.LeastRequest || kind == StrategyKind.Latency || kind == StrategyKind.LoadAware;
}

/** Strategies whose candidates are sorted by priority tier and picked from the lowest tier only. */
@inline export function isTiered(kind: u8): bool {
  return kind == StrategyKind.Failover || isLoadAware(kind);
}

/** Session affinity's key source (contract 1 `affinity.source`); None = no affinity. */
export namespace AffinitySource {
  export const None: u8 = 0;
  export const Header: u8 = 1;
  export const User: u8 = 2;
}
/** Default and range of `affinity.load_factor` (contract 1). */
export const AFFINITY_DEFAULT_LOAD_FACTOR: f64 = 1.25;

/** A lower-case HTTP token (contract 1 AffinityHeaderName), 1..128. */
function isAffinityHeader(s: string): bool {
  const n = s.length;
  if (n < 1 || n > 128) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39)) continue;
    // ! # $ % & ' * + - . ^ _ ` | ~
    if (c == 0x21 || (c >= 0x23 && c <= 0x27) || c == 0x2a || c == 0x2b || c == 0x2d || c == 0x2e || c == 0x5e || c == 0x5f || c == 0x60 || c == 0x7c || c == 0x7e) continue;
    return false;
  }
  return true;
}

export class DocInstance {
  id: string = "";
  address: string = "";
  basePath: string = "";
  weight: i32 = 1;
  priority: i32 = 0;
  region: string = "";
  state: u8 = InstanceState.Active;
  /** The `authorization` header value sent to this instance; "" = none (a present value is never empty). A secret: never logged. */
  authorization: string = "";
  /** `load` (engine load signals): score ≥ 0, or -1 when absent; scraped at loadAtMs (Unix ms), expected every loadIntervalMs. */
  loadScore: f64 = -1;
  loadAtMs: u64 = 0;
  loadIntervalMs: u64 = 0;
  /** `load.capacity`: requests the engine runs at once as the control service learned it; 0 = unknown. */
  loadCapacity: i32 = 0;
}

export class DocDeployment {
  id: string = "";
  cluster: string = "";
  strategy: u8 = StrategyKind.RoundRobin;
  panic: bool = false; // on_unavailable
  /** The name the engine serves; "" = absent (requests keep the name they used). */
  servedName: string = "";
  /** forward_client_credentials: keep the client's authorization / x-api-key (default: removed). */
  forwardCredentials: bool = false;
  /** extra_paths: served paths besides the OpenAI inference API, relative to the API prefix. */
  extraPaths: string[] = [];
  /** affinity: the key's source (AffinitySource), the header name (source header), c. */
  affinitySource: u8 = AffinitySource.None;
  affinityHeader: string = "";
  affinityLoadFactor: f64 = AFFINITY_DEFAULT_LOAD_FACTOR;
  instances: DocInstance[] = [];
}

export class TableDoc {
  version: u64 = 0;
  modelNames: string[] = [];
  modelTargets: string[] = [];
  deployments: DocDeployment[] = [];
}

export let tableError: string = "";

function fail(path: string, problem: string): TableDoc | null {
  tableError = path + ": " + problem;
  return null;
}

function problemType(expected: string, v: JsonValue | null): string {
  return "expected " + expected + ", got " + kindName(v);
}

function instance(v: JsonValue | null, path: string): DocInstance | null {
  if (v === null || !v.isObject()) { tableError = path + ": " + problemType("an object", v); return null; }
  const out = new DocInstance();
  const id = v.get("id");
  if (id === null || !id.isString() || !isId(id.str)) { tableError = path + ".id: expected an id (letters, digits, '.', '_', '-'; 1..128)"; return null; }
  out.id = id.str;
  const addr = v.get("address");
  if (addr === null || !addr.isString() || !isAddress(addr.str)) { tableError = path + ".address: expected ip:port (IPv6 as [addr]:port)"; return null; }
  out.address = addr.str;
  const bp = v.get("base_path");
  if (bp === null || !bp.isString() || !isBasePath(bp.str)) { tableError = path + ".base_path: expected \"\" or '/segment…' without a trailing slash"; return null; }
  out.basePath = bp.str;
  const w = v.get("weight");
  if (w === null || !isIntIn(w, 1, MAX_WEIGHT)) { tableError = path + ".weight: expected an integer in 1..10000"; return null; }
  out.weight = <i32>w.num;
  const p = v.get("priority");
  if (p === null || !isIntIn(p, 0, MAX_PRIORITY)) { tableError = path + ".priority: expected an integer in 0..255"; return null; }
  out.priority = <i32>p.num;
  const r = v.get("region");
  if (r === null || !r.isString() || r.str.length > MAX_REGION_LENGTH) { tableError = path + ".region: expected a string of at most 64 characters"; return null; }
  out.region = r.str;
  const st = v.get("state");
  if (st === null || !st.isString()) { tableError = path + ".state: " + problemType("a string", st); return null; }
  if (st.str == "active") out.state = InstanceState.Active;
  else if (st.str == "draining") out.state = InstanceState.Draining;
  else if (st.str == "ejected") out.state = InstanceState.Ejected;
  else { tableError = path + ".state: expected \"active\", \"draining\" or \"ejected\""; return null; }
  // Optional; the error names the field only (the value is a secret).
  const auth = v.get("authorization");
  if (auth !== null) {
    if (!auth.isString() || !isAuthorization(auth.str)) { tableError = path + ".authorization: expected printable ASCII words separated by single spaces (1..4200)"; return null; }
    out.authorization = auth.str;
  }
  const ld = v.get("load");
  if (ld !== null) {
    if (!ld.isObject()) { tableError = path + ".load: " + problemType("an object", ld); return null; }
    const sc = ld.get("score");
    if (sc === null || !sc.isNumber() || !(sc.num >= 0 && sc.num <= MAX_LOAD_SCORE)) { tableError = path + ".load.score: expected a number in 0..1000000"; return null; }
    const at = ld.get("at_ms");
    if (at === null || !isIntIn(at, 0, MAX_SAFE_INTEGER)) { tableError = path + ".load.at_ms: expected an integer ≥ 0"; return null; }
    const iv = ld.get("interval_ms");
    if (iv === null || !isIntIn(iv, 1, MAX_LOAD_INTERVAL_MS)) { tableError = path + ".load.interval_ms: expected an integer in 1..3600000"; return null; }
    const cap = ld.get("capacity");
    if (cap !== null && !isIntIn(cap, 1, MAX_LOAD_CAPACITY)) { tableError = path + ".load.capacity: expected an integer in 1..100000"; return null; }
    out.loadScore = sc.num;
    out.loadAtMs = <u64>at.num;
    out.loadIntervalMs = <u64>iv.num;
    out.loadCapacity = cap !== null ? <i32>cap.num : 0;
  }
  return out;
}

function deployment(v: JsonValue | null, path: string): DocDeployment | null {
  if (v === null || !v.isObject()) { tableError = path + ": " + problemType("an object", v); return null; }
  const out = new DocDeployment();
  const id = v.get("id");
  if (id === null || !id.isString() || !isId(id.str)) { tableError = path + ".id: expected an id (letters, digits, '.', '_', '-'; 1..128)"; return null; }
  out.id = id.str;
  const cl = v.get("cluster");
  if (cl === null || !cl.isString() || !isPrintableAscii(cl.str, 1, MAX_CLUSTER_LENGTH)) { tableError = path + ".cluster: expected printable ASCII without spaces (1..256)"; return null; }
  out.cluster = cl.str;
  const s = v.get("strategy");
  if (s === null || !s.isString()) { tableError = path + ".strategy: " + problemType("a string", s); return null; }
  if (s.str == "round_robin") out.strategy = StrategyKind.RoundRobin;
  else if (s.str == "weighted_round_robin") out.strategy = StrategyKind.WeightedRoundRobin;
  else if (s.str == "failover") out.strategy = StrategyKind.Failover;
  else if (s.str == "least_request") out.strategy = StrategyKind.LeastRequest;
  else if (s.str == "latency") out.strategy = StrategyKind.Latency;
  else if (s.str == "load_aware") out.strategy = StrategyKind.LoadAware;
  else { tableError = path + ".strategy: expected \"round_robin\", \"weighted_round_robin\", \"failover\", \"least_request\", \"latency\" or \"load_aware\""; return null; }
  const u = v.get("on_unavailable");
  if (u === null || !u.isString() || (u.str != "fail" && u.str != "panic")) { tableError = path + ".on_unavailable: expected \"fail\" or \"panic\""; return null; }
  out.panic = u.str == "panic";
  const sn = v.get("served_name");
  if (sn !== null) {
    if (!sn.isString() || !isServedName(sn.str)) { tableError = path + ".served_name: expected a name without whitespace or control characters (1..256)"; return null; }
    out.servedName = sn.str;
  }
  const fwd = v.get("forward_client_credentials");
  if (fwd !== null) {
    if (!fwd.isBool()) { tableError = path + ".forward_client_credentials: " + problemType("a boolean", fwd); return null; }
    out.forwardCredentials = fwd.bool;
  }
  const xp = v.get("extra_paths");
  if (xp !== null) {
    if (!xp.isArray()) { tableError = path + ".extra_paths: " + problemType("an array", xp); return null; }
    if (xp.size > MAX_EXTRA_PATHS) { tableError = path + ".extra_paths: more than 32 paths"; return null; }
    for (let k = 0; k < xp.size; k++) {
      const e = xp.at(k);
      if (e === null || !e.isString() || !isExtraPath(e.str)) { tableError = path + ".extra_paths[" + k.toString() + "]: expected lower-case segments of letters, digits, '.', '_' or '-', separated by '/' (1..128)"; return null; }
      out.extraPaths.push(e.str);
    }
  }
  const af = v.get("affinity");
  if (af !== null) {
    const ap = path + ".affinity";
    if (!af.isObject()) { tableError = ap + ": " + problemType("an object", af); return null; }
    const src = af.get("source");
    if (src === null || !src.isString() || (src.str != "header" && src.str != "user")) { tableError = ap + ".source: expected \"header\" or \"user\""; return null; }
    if (src.str == "header") {
      const h = af.get("header");
      if (h === null || !h.isString() || !isAffinityHeader(h.str)) { tableError = ap + ".header: expected a lower-case HTTP header name (1..128)"; return null; }
      out.affinitySource = AffinitySource.Header;
      out.affinityHeader = h.str;
    } else out.affinitySource = AffinitySource.User; // a "header" member is ignored, as zod strips it
    const lf = af.get("load_factor");
    if (lf !== null) {
      if (!lf.isNumber() || !(lf.num >= 1.0 && lf.num <= 10.0)) { tableError = ap + ".load_factor: expected a number in 1..10"; return null; }
      out.affinityLoadFactor = lf.num;
    }
  }
  const insts = v.get("instances");
  if (insts === null || !insts.isArray()) { tableError = path + ".instances: " + problemType("an array", insts); return null; }
  if (insts.size > MAX_INSTANCES_PER_DEPLOYMENT) { tableError = path + ".instances: more than 1024 instances"; return null; }
  const ids = new Set<string>();
  for (let j = 0; j < insts.size; j++) {
    const ip = path + ".instances[" + j.toString() + "]";
    const inst = instance(insts.at(j), ip);
    if (inst === null) return null;
    if (ids.has(inst.id)) { tableError = ip + ".id: duplicate instance id " + inst.id; return null; }
    ids.add(inst.id);
    out.instances.push(inst);
  }
  return out;
}

/** Validates a whole document (bytes). */
export function validateTable(ptr: usize, len: usize, maxBytes: usize): TableDoc | null {
  tableError = "";
  const root = parseJson(ptr, len, maxBytes, MAX_TABLE_DEPTH);
  if (root === null) return fail("(document)", "not valid JSON (" + jsonError + ")");
  if (!root.isObject()) return fail("(document)", problemType("an object", root));
  const out = new TableDoc();

  const schema = root.get("schema");
  if (schema === null || !schema.isNumber() || schema.num != ROUTING_TABLE_SCHEMA) {
    return fail("schema", "expected 1 (this plugin understands routing-table schema 1)");
  }
  const version = root.get("version");
  if (version === null || !isIntIn(version, 1, MAX_SAFE_INTEGER)) return fail("version", "expected an integer ≥ 1");
  out.version = <u64>version.num;

  const models = root.get("models");
  if (models === null || !models.isObject()) return fail("models", problemType("an object", models));
  const deps = root.get("deployments");
  if (deps === null || !deps.isArray()) return fail("deployments", problemType("an array", deps));
  if (deps.size > MAX_DEPLOYMENTS) return fail("deployments", "more than 10000 deployments");

  const kept = models.lastOccurrences();
  for (let i = 0; i < models.size; i++) {
    if (!unchecked(kept[i])) continue; // JSON.parse keeps the last duplicate
    const name = models.keyAt(i);
    const target = models.at(i);
    if (!isModelName(name)) return fail("models[" + JSON_QUOTE(name) + "]", "model names are printable ASCII without spaces (1..256)");
    if (target === null || !target.isString() || !isId(target.str)) return fail("models[" + JSON_QUOTE(name) + "]", "expected a deployment id");
    out.modelNames.push(name);
    out.modelTargets.push(target.str);
  }
  if (out.modelNames.length > MAX_MODEL_NAMES) return fail("models", "more than 50000 model names");

  const depIds = new Set<string>();
  for (let i = 0; i < deps.size; i++) {
    const path = "deployments[" + i.toString() + "]";
    const d = deployment(deps.at(i), path);
    if (d === null) return null;
    if (depIds.has(d.id)) return fail(path + ".id", "duplicate deployment id " + d.id);
    depIds.add(d.id);
    out.deployments.push(d);
  }
  for (let i = 0; i < out.modelNames.length; i++) {
    const t = unchecked(out.modelTargets[i]);
    if (!depIds.has(t)) return fail("models[" + JSON_QUOTE(unchecked(out.modelNames[i])) + "]", "unknown deployment " + t);
  }
  return out;
}

function JSON_QUOTE(s: string): string {
  return "\"" + (s.length > 64 ? s.substring(0, 64) + "…" : s) + "\"";
}
