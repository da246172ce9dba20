// The compiled routing table a worker routes with. Built once per adopted version from a validated
// document; everything a request needs is precomputed here: model → deployment map keyed by bytes,
// the candidate list per deployment (eligible instances, or the panic set), a picker, and for every
// pick position the finished endpoint header value (pick + fallbacks) and path-rewrite decision.
import { DocDeployment, DocInstance, InstanceState, StrategyKind, TableDoc } from "./document";
import { BytesMap } from "./bytes_map";
import { Picker } from "../strategy/picker";
import { makePicker } from "../strategy/factory";
import { HOT_N, HOT_RECORDS, HOT_STATE } from "../strategy/hot";
import { ByteWriter, utf8 } from "../abi/bytes";
import { NO_METRIC } from "../abi/metrics";
import { InstanceStats, StatsRegistry } from "../telemetry/stats";
import { buildModelsList, emptyModelsList, ModelsList } from "./models_list";

export class Instance {
  /**
   * Picks not yet added to the Envoy counter (flushed on tick; see filter/metrics.ts). Requests count
   * picks in the deployment's hot block; collectPicks() moves them here.
   */
  pendingPicks: i64 = 0;
  /** Telemetry counters and passive-ejection state, shared with other table versions (stats.ts). */
  stats: InstanceStats;
  addressBytes: ArrayBuffer;
  id: string;
  idBytes: ArrayBuffer;
  basePathBytes: ArrayBuffer;
  picksMetric: u32 = NO_METRIC;
  picksMetricDefined: bool = false;
  deployment: Deployment;

  constructor(public deploymentId: string, public doc: DocInstance, stats: InstanceStats, deployment: Deployment) {
    this.id = doc.id;
    this.idBytes = utf8(doc.id);
    this.basePathBytes = utf8(doc.basePath);
    this.addressBytes = utf8(doc.address);
    this.stats = stats;
    this.deployment = deployment;
  }
}

/**
 * What a request needs once the picker returned this candidate index. The four output header values
 * sit back to back in one buffer (`values`: endpoint list, cluster, deployment id, instance id), so
 * a request reads one or two cache lines instead of four separate objects — what keeps the cost flat
 * when requests cycle through many deployments.
 */
export class Position {
  values: ArrayBuffer;
  /** Length of the pick's own address, the first entry of the endpoint list (on_log compares it first). */
  pickLen: i32;
  endpointLen: i32;
  clusterLen: i32;
  deploymentLen: i32;
  instanceLen: i32;

  constructor(
    public instance: Instance,
    /** "ip:port[,ip:port…]": the pick, then up to max_fallbacks same-base-path fallbacks. */
    endpointValue: ArrayBuffer,
    /** The pick's base_path differs from api_prefix. */
    public rewrite: bool,
    /** The instances of endpointValue, in order (the pick first): Envoy's attempts walk this list. */
    public hosts: StaticArray<Instance>,
    cluster: ArrayBuffer,
    deploymentId: ArrayBuffer,
  ) {
    const el = endpointValue.byteLength;
    const cl = cluster.byteLength;
    const dl = deploymentId.byteLength;
    const il = instance.idBytes.byteLength;
    const v = new ArrayBuffer(el + cl + dl + il);
    let at = changetype<usize>(v);
    memory.copy(at, changetype<usize>(endpointValue), <usize>el);
    at += <usize>el;
    memory.copy(at, changetype<usize>(cluster), <usize>cl);
    at += <usize>cl;
    memory.copy(at, changetype<usize>(deploymentId), <usize>dl);
    at += <usize>dl;
    memory.copy(at, changetype<usize>(instance.idBytes), <usize>il);
    this.values = v;
    this.pickLen = instance.addressBytes.byteLength;
    this.endpointLen = el;
    this.clusterLen = cl;
    this.deploymentLen = dl;
    this.instanceLen = il;
  }

  /** The endpoint header value (a view into `values`). */
  @inline get endpointPtr(): usize { return changetype<usize>(this.values); }
}

export class Deployment {
  // What every routed request reads comes first (one cache line with the object header).
  /** Earliest end of a passive ejection among this deployment's instances (ms); u64.MAX_VALUE = none. */
  nextReturnAt: u64 = u64.MAX_VALUE;
  /** Requests not yet added to the Envoy counter (flushed on tick). */
  pendingRequests: i64 = 0;
  /**
   * Everything a routed request reads after this object, in one block (null when unavailable): the
   * picker state (strategy/hot.ts), then per position a record of HOT_RECORD bytes — u32 offset of its
   * header values in this block, u32 endpoint length, u16 cluster, deployment id and instance id
   * lengths, u8 rewrite, u8 pad, u32 picks not yet collected (collectPicks) — then the values
   * (as Position.values). Past the model lookup, a routed request reads this object's first line and
   * this block; a `Position` only when it rewrites :path or observes the upstream result.
   */
  hot: ArrayBuffer | null = null;
  picker: Picker | null = null;
  positions: StaticArray<Position> = new StaticArray<Position>(0);
  /** No eligible instance; candidates are the panic set (may be empty). */
  noEligible: bool = false;
  /** Nothing to route to at all → 503. */
  unavailable: bool = false;

  id: string;
  idBytes: ArrayBuffer;
  clusterBytes: ArrayBuffer;
  /** Failover policy of the table: true = panic. */
  panicPolicy: bool;
  instances: Instance[] = [];
  /** Active instances this worker currently leaves out because of passive ejection. */
  passivelyEjected: i32 = 0;

  // What a rebuild needs (the candidate set changes when an instance is passively ejected or returns).
  strategy: u8;
  apiPrefix: string = "";
  maxFallbacks: i32 = 0;
  start: u32 = 0;

  requestsMetric: u32 = NO_METRIC;
  noEligibleMetric: u32 = NO_METRIC;
  panicMetric: u32 = NO_METRIC;
  metricsDefined: bool = false;

  constructor(doc: DocDeployment) {
    this.id = doc.id;
    this.idBytes = utf8(doc.id);
    this.clusterBytes = utf8(doc.cluster);
    this.panicPolicy = doc.panic;
    this.strategy = doc.strategy;
  }
}

export class RoutingTable {
  version: u64 = 0;
  models: BytesMap<Deployment>;
  deployments: Deployment[] = [];
  instanceCount: i32 = 0;
  /** Deployments with pending counts, so a flush touches only what was used since the last one. */
  dirtyDeployments: Deployment[] = [];
  /** upstream.address → the first instance with that address (for hosts outside the request's list). */
  addresses: BytesMap<Instance>;
  /** The stats objects of this table, by key (the registry adopts it with the table). */
  statsByKey: Map<string, InstanceStats> = new Map<string, InstanceStats>();
  /** The `GET {api_prefix}/models` answer, built with the table (models_list.ts). */
  modelsList: ModelsList = emptyModelsList();

  constructor(modelCount: i32, instanceCount: i32) {
    this.models = new BytesMap<Deployment>(modelCount);
    this.addresses = new BytesMap<Instance>(instanceCount);
  }

  @inline lookup(ptr: usize, len: usize): Deployment | null {
    if (len == 0 || len > 256) return null;
    return this.models.get(ptr, len);
  }
}

/** Stable order by priority (counting sort: priorities are 0..255). */
function sortByPriority(list: Instance[]): Instance[] {
  const counts = new StaticArray<i32>(257);
  for (let i = 0; i < list.length; i++) {
    const p = unchecked(list[i]).doc.priority;
    if (p >= 0 && p <= 255) counts[p + 1] = counts[p + 1] + 1;
  }
  for (let p = 1; p <= 256; p++) counts[p] = counts[p] + counts[p - 1];
  const out = new Array<Instance>(list.length);
  for (let i = 0; i < list.length; i++) {
    const inst = unchecked(list[i]);
    const p = inst.doc.priority;
    if (p < 0 || p > 255) continue;
    const at = counts[p];
    counts[p] = at + 1;
    if (at >= 0 && at < out.length) out[at] = inst;
  }
  return out;
}

/**
 * (Re)computes a deployment's candidates, picker and per-position header values at time `nowMs`:
 * the active instances not passively ejected by this worker; none → the on_unavailable policy
 * (panic: every instance, non-draining first; fail: unavailable). Mutates `dep` in place (the model
 * map and in-flight streams keep pointing at it).
 */
export function rebuildDeployment(dep: Deployment, nowMs: u64): void {
  collectPicks(dep); // the hot block is replaced: keep its counts
  let cands = new Array<Instance>();
  let nextReturn = u64.MAX_VALUE;
  let excluded = 0;
  for (let i = 0; i < dep.instances.length; i++) {
    const inst = unchecked(dep.instances[i]);
    if (inst.doc.state != InstanceState.Active) continue;
    const until = inst.stats.ejectedUntil;
    if (until > nowMs) {
      excluded++;
      if (until < nextReturn) nextReturn = until;
      continue;
    }
    cands.push(inst);
  }
  dep.nextReturnAt = nextReturn;
  dep.passivelyEjected = excluded;
  dep.noEligible = false;
  dep.unavailable = false;
  dep.picker = null;
  dep.hot = null;
  dep.positions = new StaticArray<Position>(0);
  if (cands.length == 0) {
    dep.noEligible = true;
    if (dep.panicPolicy) {
      // Panic: everything, preferring instances that are not draining (ejected ones may recover;
      // draining ones are being taken out on purpose).
      for (let i = 0; i < dep.instances.length; i++) {
        const inst = unchecked(dep.instances[i]);
        if (inst.doc.state != InstanceState.Draining) cands.push(inst);
      }
      if (cands.length == 0) cands = dep.instances.slice(0);
    }
  }
  if (cands.length == 0) {
    dep.unavailable = true;
    return;
  }
  if (dep.strategy == StrategyKind.Failover) cands = sortByPriority(cands);

  const n = cands.length;
  const weights = new StaticArray<i32>(n);
  const priorities = new StaticArray<i32>(n);
  for (let i = 0; i < n; i++) {
    unchecked(weights[i] = unchecked(cands[i]).doc.weight);
    unchecked(priorities[i] = unchecked(cands[i]).doc.priority);
  }
  const picker = makePicker(dep.strategy, weights, priorities, dep.start);
  dep.picker = picker;

  const positions = new StaticArray<Position>(n);
  const w = new ByteWriter(64);
  const hostIdx = new Array<i32>();
  for (let pos = 0; pos < n; pos++) {
    const pick = unchecked(cands[pos]);
    w.len = 0;
    w.str(pick.doc.address);
    hostIdx.length = 0;
    let added = 0;
    for (let k = 1; k < n && added < dep.maxFallbacks; k++) {
      const f = picker.fallbackAt(pos, k);
      if (f < 0 || f >= n) break;
      const other = unchecked(cands[f]);
      if (other.doc.basePath != pick.doc.basePath) continue;
      w.byte(0x2c).str(other.doc.address);
      hostIdx.push(f);
      added++;
    }
    const hosts = new StaticArray<Instance>(hostIdx.length + 1);
    unchecked(hosts[0] = pick);
    for (let k = 0; k < hostIdx.length; k++) unchecked(hosts[k + 1] = unchecked(cands[unchecked(hostIdx[k])]));
    unchecked(positions[pos] = new Position(pick, w.toBuffer(), pick.doc.basePath != dep.apiPrefix, hosts, dep.clusterBytes, dep.idBytes));
  }
  dep.positions = positions;
  dep.hot = buildHot(picker, positions);
}

/** Bytes per position record in a hot block (see Deployment.hot). */
export const HOT_RECORD: usize = 20;

function buildHot(picker: Picker, positions: StaticArray<Position>): ArrayBuffer {
  const n = positions.length;
  const records = HOT_STATE + <usize>picker.hotStateBytes();
  let size = records + <usize>n * HOT_RECORD;
  for (let k = 0; k < n; k++) size += <usize>unchecked(positions[k]).values.byteLength;
  const hot = new ArrayBuffer(<i32>size);
  const b = changetype<usize>(hot);
  picker.writeHot(b);
  store<i32>(b, n, HOT_N);
  store<u32>(b, <u32>records, HOT_RECORDS);
  let off = records + <usize>n * HOT_RECORD;
  for (let k = 0; k < n; k++) {
    const p = unchecked(positions[k]);
    const rec = b + records + <usize>k * HOT_RECORD;
    const len = <usize>p.values.byteLength;
    store<u32>(rec, <u32>off);
    store<u32>(rec, <u32>p.endpointLen, 4);
    store<u16>(rec, <u16>p.clusterLen, 8);
    store<u16>(rec, <u16>p.deploymentLen, 10);
    store<u16>(rec, <u16>p.instanceLen, 12);
    store<u8>(rec, p.rewrite ? 1 : 0, 14);
    memory.copy(b + off, changetype<usize>(p.values), len);
    off += len;
  }
  return hot;
}

/** Moves the picks counted in `d`'s hot block to its instances' pendingPicks (before a flush or a rebuild). */
export function collectPicks(d: Deployment): void {
  const hot = d.hot;
  if (hot === null) return;
  const b = changetype<usize>(hot);
  const positions = d.positions;
  const n = load<i32>(b, HOT_N);
  if (n != positions.length) return; // built together; defensive
  let rec = b + <usize>load<u32>(b, HOT_RECORDS);
  for (let k = 0; k < n; k++, rec += HOT_RECORD) {
    const picks = load<u32>(rec, 16);
    if (picks == 0) continue;
    unchecked(positions[k]).instance.pendingPicks += <i64>picks;
    store<u32>(rec, 0, 16);
  }
}

function compileDeployment(d: DocDeployment, apiPrefix: string, maxFallbacks: i32, start: u32,
  registry: StatsRegistry, next: Map<string, InstanceStats>, nowMs: u64): Deployment {
  const dep = new Deployment(d);
  dep.apiPrefix = apiPrefix;
  dep.maxFallbacks = maxFallbacks;
  dep.start = start;
  for (let i = 0; i < d.instances.length; i++) {
    const di = unchecked(d.instances[i]);
    const stats = registry.take(next, d.id, di.id, di.address);
    stats.owner = dep;
    dep.instances.push(new Instance(d.id, di, stats, dep));
  }
  rebuildDeployment(dep, nowMs);
  return dep;
}

/**
 * Compiles a validated document. `start` staggers this worker's pickers (its sequence number);
 * `registry` hands out the per-instance stats (reused for an unchanged id + address, so counts and a
 * running passive ejection survive a new version); `nowMs` decides which passive ejections still hold.
 */
export function compileTable(doc: TableDoc, apiPrefix: string, maxFallbacks: i32, start: u32,
  registry: StatsRegistry, nowMs: u64): RoutingTable {
  let total = 0;
  for (let i = 0; i < doc.deployments.length; i++) total += unchecked(doc.deployments[i]).instances.length;
  const t = new RoutingTable(doc.modelNames.length, total);
  t.version = doc.version;
  const byId = new Map<string, Deployment>();
  for (let i = 0; i < doc.deployments.length; i++) {
    const d = unchecked(doc.deployments[i]);
    const dep = compileDeployment(d, apiPrefix, maxFallbacks, start, registry, t.statsByKey, nowMs);
    t.deployments.push(dep);
    t.instanceCount += dep.instances.length;
    byId.set(dep.id, dep);
    for (let k = 0; k < dep.instances.length; k++) {
      const inst = unchecked(dep.instances[k]);
      if (t.addresses.get(changetype<usize>(inst.addressBytes), <usize>inst.addressBytes.byteLength) === null) {
        t.addresses.set(inst.addressBytes, inst);
      }
    }
  }
  const names = new Array<ArrayBuffer>();
  const owners = new Array<string>();
  const listed = new Array<bool>();
  for (let i = 0; i < doc.modelNames.length; i++) {
    const target = unchecked(doc.modelTargets[i]);
    if (!byId.has(target)) continue; // validated already; defensive
    const dep = byId.get(target);
    const key = utf8(unchecked(doc.modelNames[i]));
    t.models.set(key, dep);
    names.push(key);
    owners.push(dep.id);
    listed.push(dep.instances.length > 0);
  }
  t.modelsList = buildModelsList(names, owners, listed);
  return t;
}
