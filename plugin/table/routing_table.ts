// The compiled routing table a worker routes with. Built once per adopted version from a validated
// document; everything a request needs is precomputed here: model → deployment map keyed by bytes,
// the candidate list per deployment (eligible instances, or the panic set), a picker, and for every
// pick position the finished endpoint header value (pick + fallbacks) and path-rewrite decision.
import { DocDeployment, DocInstance, InstanceState, StrategyKind, TableDoc } from "./document";
import { BytesMap } from "./bytes_map";
import { Picker } from "../strategy/picker";
import { makePicker } from "../strategy/factory";
import { ByteWriter, utf8 } from "../abi/bytes";
import { NO_METRIC } from "../abi/metrics";

export class Instance {
  id: string;
  idBytes: ArrayBuffer;
  basePathBytes: ArrayBuffer;
  picksMetric: u32 = NO_METRIC;
  picksMetricDefined: bool = false;
  /** Picks not yet added to the Envoy counter (flushed on tick; see filter/metrics.ts). */
  pendingPicks: i64 = 0;

  constructor(public deploymentId: string, public doc: DocInstance) {
    this.id = doc.id;
    this.idBytes = utf8(doc.id);
    this.basePathBytes = utf8(doc.basePath);
  }
}

/** What a request needs once the picker returned this candidate index. */
export class Position {
  constructor(
    public instance: Instance,
    /** "ip:port[,ip:port…]": the pick, then up to max_fallbacks same-base-path fallbacks. */
    public endpointValue: ArrayBuffer,
    /** The pick's base_path differs from api_prefix. */
    public rewrite: bool,
  ) {}
}

export class Deployment {
  id: string;
  idBytes: ArrayBuffer;
  clusterBytes: ArrayBuffer;
  /** Failover policy of the table: true = panic. */
  panicPolicy: bool;
  /** No eligible instance; candidates are the panic set (may be empty). */
  noEligible: bool = false;
  /** Nothing to route to at all → 503. */
  unavailable: bool = false;
  picker: Picker | null = null;
  positions: StaticArray<Position> = new StaticArray<Position>(0);
  instances: Instance[] = [];

  requestsMetric: u32 = NO_METRIC;
  noEligibleMetric: u32 = NO_METRIC;
  panicMetric: u32 = NO_METRIC;
  metricsDefined: bool = false;
  /** Requests not yet added to the Envoy counter (flushed on tick). */
  pendingRequests: i64 = 0;

  constructor(doc: DocDeployment) {
    this.id = doc.id;
    this.idBytes = utf8(doc.id);
    this.clusterBytes = utf8(doc.cluster);
    this.panicPolicy = doc.panic;
  }
}

export class RoutingTable {
  version: u64 = 0;
  models: BytesMap<Deployment>;
  deployments: Deployment[] = [];
  instanceCount: i32 = 0;
  /** Objects with pending counts, so a flush touches only what was used since the last one. */
  dirtyDeployments: Deployment[] = [];
  dirtyInstances: Instance[] = [];

  constructor(modelCount: i32) {
    this.models = new BytesMap<Deployment>(modelCount);
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

function compileDeployment(d: DocDeployment, apiPrefix: string, maxFallbacks: i32, start: u32): Deployment {
  const dep = new Deployment(d);
  for (let i = 0; i < d.instances.length; i++) dep.instances.push(new Instance(d.id, unchecked(d.instances[i])));

  let cands = new Array<Instance>();
  for (let i = 0; i < dep.instances.length; i++) {
    const inst = unchecked(dep.instances[i]);
    if (inst.doc.state == InstanceState.Active) cands.push(inst);
  }
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
    return dep;
  }
  if (d.strategy == StrategyKind.Failover) cands = sortByPriority(cands);

  const n = cands.length;
  const weights = new StaticArray<i32>(n);
  const priorities = new StaticArray<i32>(n);
  for (let i = 0; i < n; i++) {
    unchecked(weights[i] = unchecked(cands[i]).doc.weight);
    unchecked(priorities[i] = unchecked(cands[i]).doc.priority);
  }
  const picker = makePicker(d.strategy, weights, priorities, start);
  dep.picker = picker;

  const positions = new StaticArray<Position>(n);
  const w = new ByteWriter(64);
  for (let pos = 0; pos < n; pos++) {
    const pick = unchecked(cands[pos]);
    w.len = 0;
    w.str(pick.doc.address);
    let added = 0;
    for (let k = 1; k < n && added < maxFallbacks; k++) {
      const f = picker.fallbackAt(pos, k);
      if (f < 0 || f >= n) break;
      const other = unchecked(cands[f]);
      if (other.doc.basePath != pick.doc.basePath) continue;
      w.byte(0x2c).str(other.doc.address);
      added++;
    }
    unchecked(positions[pos] = new Position(pick, w.toBuffer(), pick.doc.basePath != apiPrefix));
  }
  dep.positions = positions;
  return dep;
}

/** Compiles a validated document. `start` staggers this worker's pickers (its sequence number). */
export function compileTable(doc: TableDoc, apiPrefix: string, maxFallbacks: i32, start: u32): RoutingTable {
  const t = new RoutingTable(doc.modelNames.length);
  t.version = doc.version;
  const byId = new Map<string, Deployment>();
  for (let i = 0; i < doc.deployments.length; i++) {
    const d = unchecked(doc.deployments[i]);
    const dep = compileDeployment(d, apiPrefix, maxFallbacks, start);
    t.deployments.push(dep);
    t.instanceCount += dep.instances.length;
    byId.set(dep.id, dep);
  }
  for (let i = 0; i < doc.modelNames.length; i++) {
    const target = unchecked(doc.modelTargets[i]);
    if (!byId.has(target)) continue; // validated already; defensive
    t.models.set(utf8(unchecked(doc.modelNames[i])), byId.get(target));
  }
  return t;
}
