// Contract 1: validates a routing-table document exactly as control/contracts/routing-table.ts does
// (same acceptance; unknown fields ignored) and returns its plain content. Whole document or nothing:
// any problem → null with `tableError` naming the path.
import { JsonValue, kindName } from "../json/value";
import { jsonError, parseJson } from "../json/parser";
import { isIntIn } from "../config";
import {
  MAX_CLUSTER_LENGTH, MAX_DEPLOYMENTS, MAX_INSTANCES_PER_DEPLOYMENT, MAX_MODEL_NAMES, MAX_PRIORITY,
  MAX_REGION_LENGTH, MAX_SAFE_INTEGER, MAX_TABLE_DEPTH, MAX_WEIGHT, ROUTING_TABLE_SCHEMA, MAX_EXTRA_PATHS,
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
}

/** Strategies that pick by load and respect failover tiers (strategy/load.ts). */
@inline export function isLoadAware(kind: u8): bool {
  return kind == StrategyKind.LeastRequest || kind == StrategyKind.Latency;
}

/** Strategies whose candidates are sorted by priority tier and picked from the lowest tier only. */
@inline export function isTiered(kind: u8): bool {
  return kind == StrategyKind.Failover || isLoadAware(kind);
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
  else { tableError = path + ".strategy: expected \"round_robin\", \"weighted_round_robin\", \"failover\", \"least_request\" or \"latency\""; return null; }
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
