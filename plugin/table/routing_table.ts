// The compiled routing table a worker routes with. Built once per adopted version from a validated
// document; everything a request needs is precomputed here: model → deployment map keyed by bytes,
// the candidate list per deployment (eligible instances, or the panic set), a picker, and for every
// pick position the finished endpoint header value (pick + fallbacks) and path-rewrite decision.
import { AffinitySource, DocDeployment, DocInstance, InstanceState, isLoadAware, isTiered, TableDoc } from "./document";
import { AffinityPlan, instanceSeed } from "../strategy/affinity";
import { BytesMap, setSlotAux, slotValue } from "./bytes_map";
import { Picker } from "../strategy/picker";
import { makePicker } from "../strategy/factory";
import { buildHot, collectPicks } from "./hot_block";
import { HOT_RETURN_AT } from "../strategy/hot";
import { seedOf, seedStampOf } from "../strategy/load";
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
  /**
   * The `authorization` value requests picking this instance carry upstream (null: the client's own
   * header is left alone). The hot block points at these bytes (hot_block.ts). A secret: never logged.
   */
  authorizationBytes: ArrayBuffer | null = null;
  picksMetric: u32 = NO_METRIC;
  picksMetricDefined: bool = false;
  deployment: Deployment;
  /** Session affinity: the hash of the id (strategy/affinity.ts), the instance's place in every key's order. */
  affinitySeed: u64 = 0;

  constructor(public deploymentId: string, public doc: DocInstance, stats: InstanceStats, deployment: Deployment) {
    this.id = doc.id;
    this.idBytes = utf8(doc.id);
    this.basePathBytes = utf8(doc.basePath);
    this.addressBytes = utf8(doc.address);
    if (doc.authorization.length > 0) this.authorizationBytes = utf8(doc.authorization);
    this.stats = stats;
    this.deployment = deployment;
    this.affinitySeed = instanceSeed(this.idBytes);
  }
}

/**
 * What a request needs once the picker returned this candidate index: the four output header values
 * back to back (`values`: endpoint list, cluster, deployment id, instance id) and the instances of the
 * endpoint list. The request path reads the copy of it in the deployment's hot block (hot_block.ts);
 * this object serves the compiler, pick collection and the :path rewrite.
 */
export class Position {
  values: ArrayBuffer;
  /** Length of the pick's own address, the first entry of the endpoint list. */
  pickLen: i32;
  endpointLen: i32;
  clusterLen: i32;
  deploymentLen: i32;
  instanceLen: i32;

  constructor(
    public instance: Instance,
    /** "ip:port[,ip:port…]": the pick, then up to max_fallbacks same-base-path, same-authorization fallbacks. */
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
  // What a request reads when it routes through this object (fastHot = 0) comes first.
  /** Earliest end of a passive ejection among this deployment's instances (ms); u64.MAX_VALUE = none. */
  nextReturnAt: u64 = u64.MAX_VALUE;
  /** Requests not yet added to the Envoy counter (flushed on tick). */
  pendingRequests: i64 = 0;
  /**
   * Everything a routed request reads after this object, in one block (null when unavailable): the
   * picker state and one entry per position — its header values, its pick counter and the stats
   * slots on_log counts into (table/hot_block.ts). A routed request reaches it from the model's slot
   * (publishHot) and reads nothing else of this deployment, unless it rewrites :path (`positions`)
   * or the deployment has no eligible instance (fastHot = 0: this object's own path).
   */
  hot: ArrayBuffer | null = null;
  picker: Picker | null = null;
  positions: StaticArray<Position> = new StaticArray<Position>(0);
  /**
   * The model-map slots naming this deployment: their aux word is `fastHot(this)`, so a request goes
   * from the model's slot straight to the hot block (see publishHot). `models` keeps the map holding
   * them alive as long as this deployment.
   */
  modelSlots: usize[] = [];
  models: BytesMap<Deployment> | null = null;
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
  /** The name the engine serves (UTF-8), and the same as a JSON string token (quotes included); null: none. */
  servedNameBytes: ArrayBuffer | null = null;
  servedToken: ArrayBuffer | null = null;
  /** Some public name of this deployment differs from the served name: requests may need a rewrite. */
  renames: bool = false;
  /** forward_client_credentials. */
  forwardCredentials: bool = false;
  /** extra_paths as UTF-8 (relative to the API prefix). */
  extraPaths: ArrayBuffer[] = [];
  /** Session affinity (strategy/affinity.ts): the key's source (AffinitySource.None: off), header name, c. */
  affinitySource: u8 = AffinitySource.None;
  affinityHeader: ArrayBuffer | null = null;
  affinityLoadFactor: f64 = 0;

  // What a rebuild needs (the candidate set changes when an instance is passively ejected or returns).
  strategy: u8;
  apiPrefix: string = "";
  maxFallbacks: i32 = 0;
  start: u32 = 0;
  /** latency's probation value (strategy/load.ts SEED), carried from block to block and across versions. */
  seedUs: f64 = 0;
  seedStamp: u64 = 0;

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
  /**
   * Streams routed with this table whose upstream result is not observed yet: while > 0 the stats
   * registry keeps this table's stats slots (stats.ts, "Slot lifetime").
   */
  observing: i32 = 0;
  /** The `GET {api_prefix}/models` answer, built with the table (models_list.ts). */
  modelsList: ModelsList = emptyModelsList();

  constructor(modelCount: i32, instanceCount: i32) {
    this.models = new BytesMap<Deployment>(modelCount, 44); // keys inline: a lookup reads one line
    this.addresses = new BytesMap<Instance>(instanceCount);
  }

  @inline lookup(ptr: usize, len: usize): Deployment | null {
    if (len == 0 || len > 256) return null;
    return this.models.get(ptr, len);
  }

  /**
   * The model's slot in `models` (0: unknown): its value is the Deployment (bytes_map.ts slotValue),
   * its aux word the deployment's hot block when the request can route from it alone (fastHot).
   */
  @inline find(ptr: usize, len: usize): usize {
    if (len == 0 || len > 256) return 0;
    return this.models.find(ptr, len);
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
  keepSeed(dep, dep.hot);
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
    publishHot(dep);
    return;
  }
  if (isTiered(dep.strategy)) cands = sortByPriority(cands);

  const n = cands.length;
  const weights = new StaticArray<i32>(n);
  const priorities = new StaticArray<i32>(n);
  const slots = new StaticArray<i32>(n);
  for (let i = 0; i < n; i++) {
    unchecked(weights[i] = unchecked(cands[i]).doc.weight);
    unchecked(priorities[i] = unchecked(cands[i]).doc.priority);
    unchecked(slots[i] = unchecked(cands[i]).stats.slot);
  }
  const picker = makePicker(dep.strategy, weights, priorities, dep.start, slots, dep.seedUs, dep.seedStamp);
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
      // Envoy's retries resend the same request headers: only instances taking the pick's
      // authorization (or, like the pick, none) can serve as its fallbacks.
      if (other.doc.authorization != pick.doc.authorization) continue;
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
  const hot = buildHot(picker, positions, affinityPlan(dep, cands));
  store<u64>(changetype<usize>(hot), dep.nextReturnAt, HOT_RETURN_AT);
  dep.hot = hot;
  publishHot(dep);
}

/**
 * Session affinity's instances (strategy/affinity.ts): the base strategy's pick set — the lowest tier
 * for tiered strategies (cands sorted by priority), every candidate otherwise. null: no affinity.
 */
function affinityPlan(dep: Deployment, cands: Instance[]): AffinityPlan | null {
  if (dep.affinitySource == AffinitySource.None) return null;
  const n = cands.length;
  let m = n;
  if (isTiered(dep.strategy)) {
    m = 1;
    while (m < n && unchecked(cands[m]).doc.priority == unchecked(cands[0]).doc.priority) m++;
  }
  const seeds = new StaticArray<u64>(m);
  const weights = new StaticArray<i32>(m);
  const slots = new StaticArray<i32>(m);
  for (let i = 0; i < m; i++) {
    const c = unchecked(cands[i]);
    unchecked(seeds[i] = c.affinitySeed);
    unchecked(weights[i] = c.doc.weight);
    unchecked(slots[i] = c.stats.slot);
  }
  return new AffinityPlan(dep.affinitySource, dep.affinityLoadFactor, dep.affinityHeader, seeds, weights, slots);
}

/** Keeps the larger (as of its own clock, not decayed here) of `dep`'s seed and the one in block `hot`. */
function keepSeed(dep: Deployment, hot: ArrayBuffer | null): void {
  if (hot === null || !isLoadAware(dep.strategy)) return;
  const b = changetype<usize>(hot);
  const s = seedOf(b);
  if (s > dep.seedUs) {
    dep.seedUs = s;
    dep.seedStamp = seedStampOf(b);
  }
}

/**
 * The hot block a request may route from without reading the Deployment (0: take the Deployment's
 * own path — nothing to route to, or the panic set, which counts its own metrics).
 */
export function fastHot(dep: Deployment): usize {
  const hot = dep.hot;
  return hot === null || dep.noEligible || dep.unavailable ? 0 : changetype<usize>(hot);
}

/**
 * Points the deployment's model slots at its current hot block. Raw pointers, but never stale where
 * read: a rebuild replaces `dep.hot` and calls this before any request runs, and the slots belong
 * to the table that holds `dep` (a slot another deployment took over is left alone).
 */
function publishHot(dep: Deployment): void {
  const aux = <u32>fastHot(dep);
  const slots = dep.modelSlots;
  for (let i = 0; i < slots.length; i++) {
    const s = unchecked(slots[i]);
    if (changetype<usize>(slotValue<Deployment>(s)) == changetype<usize>(dep)) setSlotAux(s, aux);
  }
}

function compileDeployment(d: DocDeployment, apiPrefix: string, maxFallbacks: i32, start: u32,
  registry: StatsRegistry, next: Map<string, InstanceStats>, nowMs: u64, renames: bool): Deployment {
  const dep = new Deployment(d);
  dep.forwardCredentials = d.forwardCredentials;
  dep.affinitySource = d.affinitySource;
  if (d.affinitySource == AffinitySource.Header) dep.affinityHeader = utf8(d.affinityHeader);
  dep.affinityLoadFactor = d.affinityLoadFactor;
  for (let i = 0; i < d.extraPaths.length; i++) dep.extraPaths.push(utf8(unchecked(d.extraPaths[i])));
  if (d.servedName.length > 0) {
    dep.servedNameBytes = utf8(d.servedName);
    // No control characters in a served name (contract): escaping '\\' and '"' makes it a JSON string.
    dep.servedToken = utf8("\"" + d.servedName.replaceAll("\\", "\\\\").replaceAll("\"", "\\\"") + "\"");
    dep.renames = renames;
  }
  dep.apiPrefix = apiPrefix;
  dep.maxFallbacks = maxFallbacks;
  dep.start = start;
  for (let i = 0; i < d.instances.length; i++) {
    const di = unchecked(d.instances[i]);
    const stats = registry.take(next, d.id, di.id, di.address);
    // latency: the deployment's probation value from its previous version (the stats' previous owner).
    const prev = stats.owner;
    if (prev !== null && prev !== dep) keepSeed(dep, prev.hot);
    // Re-admitted by the control service (or new to it): on probation until it answers (strategy/load.ts).
    if (di.state == InstanceState.Active && stats.controlState != InstanceState.Active) registry.setProbation(stats.slot);
    // load_aware: the engine's load score as of this table, stale 3 intervals after its scrape (strategy/load.ts).
    registry.setLoad(stats.slot, di.loadScore, di.loadCapacity, di.loadAtMs + 3 * di.loadIntervalMs);
    stats.owner = dep;
    // The control service re-admitted an instance this worker had passively ejected: the verdict is
    // newer than the failures, so the exclusion ends now (the API and every worker agree at once).
    // Ends as "expired": the observer's next restoreDue does the bookkeeping (gauge, list).
    if (stats.ejectedUntil != 0 && stats.controlState == InstanceState.Ejected && di.state == InstanceState.Active) stats.ejectedUntil = 1;
    stats.controlState = di.state;
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
  // Deployments reached by a name other than the one their engine serves (their hot blocks say so).
  const served = new Map<string, string>();
  for (let i = 0; i < doc.deployments.length; i++) {
    const d = unchecked(doc.deployments[i]);
    if (d.servedName.length > 0) served.set(d.id, d.servedName);
  }
  const renamed = new Set<string>();
  for (let i = 0; i < doc.modelNames.length; i++) {
    const target = unchecked(doc.modelTargets[i]);
    if (served.has(target) && served.get(target) != unchecked(doc.modelNames[i])) renamed.add(target);
  }
  for (let i = 0; i < doc.deployments.length; i++) {
    const d = unchecked(doc.deployments[i]);
    const dep = compileDeployment(d, apiPrefix, maxFallbacks, start, registry, t.statsByKey, nowMs, renamed.has(d.id));
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
    const slot = t.models.set(key, dep);
    if (slot != 0) {
      dep.models = t.models;
      dep.modelSlots.push(slot);
      setSlotAux(slot, <u32>fastHot(dep));
    }
    names.push(key);
    owners.push(dep.id);
    listed.push(dep.instances.length > 0);
  }
  t.modelsList = buildModelsList(names, owners, listed);
  return t;
}
