/**
 * Active health checks and traffic thresholds → verdicts.
 *
 * Lease: one replica at a time probes a deployment (`lease:probe:<dep>`, PX = LEASE_MS). The holder
 * renews every LEASE_MS/3 on its own timer (independent of probe rounds, so a slow probe never lets it
 * lapse) and believes it holds the lease only until `renew start + LEASE_MS`: past that it stops
 * probing even if Redis did not answer, so two replicas never probe the same deployment at once (up to
 * clock-rate drift). A replica that fails to acquire reads the lease's remaining time and tries again
 * right when it expires (PTTL; at most LEASE_MS later): a dead holder's lease
 * expires at most LEASE_MS after its last renewal and is taken within a probe tick of that. Consecutive counts live in Redis
 * (health/store.ts), so a takeover continues them.
 *
 * Probes (per instance, every `health_check.interval_seconds`, `timeout_seconds` each): `path` (GET
 * {host}{path}) or `models` (GET {base}/models); with `completion_every: k` every k-th probe is a 1-token
 * chat completion, and after a failed one every probe is a completion until one passes (an instance
 * that is up but cannot generate keeps failing). `unhealthy_threshold` consecutive failures → `ejected`;
 * `healthy_threshold` consecutive successes → `active`. One failure never ejects (unless the threshold
 * is 1).
 *
 * Traffic thresholds (optional, per deployment): over the sliding window, with at least `min_requests`,
 * error rate > `max_error_rate` ejects; P95 > `max_p95_ms` ejects unless the instance is the last active
 * one. Windows count only traffic since the instance's last (re-)admission. Re-admission follows the
 * probe rule. Every verdict is a table version; every change is an event with its evidence.
 */
import type { ConnectivityTester, ProbeOutcome } from "../connectivity/tester.js";
import type { Deployment, Instance } from "../deployments/schemas.js";
import type { DeploymentStore } from "../deployments/store.js";
import { newProbeState, RECENT_PROBES, type HealthStore, type ProbeState } from "../health/store.js";
import type { EventType, InstanceEvent, ProbeResult } from "../health/schemas.js";
import { errorFields, type Logger } from "../log.js";
import { servedNameOf, type Model } from "../models/schemas.js";
import type { TelemetryStore } from "../telemetry/store.js";
import { errorRate, errorsOf, quantile, round } from "../telemetry/window.js";
import type { Lease, LeaseStore } from "./lease-store.js";
import { learnCapacity, loadField, loadScore, MAX_METRICS_BYTES, parseLoadMetrics, type LoadEntry, type LoadStore } from "../health/load.js";

const PROBED = new Set(["active", "ejected"]);
const hasProbed = (d: Deployment) => d.instances.some((i) => PROBED.has(i.state));

/**
 * Where in the interval an instance's probes fall, as a fraction of it: a hash of the deployment and
 * instance ids. A replica that takes deployments over (its start, a restart, another replica's crash)
 * starts each instance at its own phase instead of all at once, so the probes of a large fleet spread
 * over the interval instead of leaving in one burst every interval (10k connections at once stall the
 * event loop past the probe timeout). Any replica gives an instance the same phase.
 */
export function probePhase(deploymentId: string, instanceId: string): number {
  const s = `${deploymentId}/${instanceId}`;
  let h = 0x811c9dc5; // FNV-1a, then murmur3's finaliser so that ids differing in a last digit land far apart
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) / 2 ** 32;
}

/** The first moment at or after `now` on the grid phase·interval + k·interval. */
const onGrid = (phase: number, intervalMs: number, now: number) => now + ((((phase * intervalMs - now) % intervalMs) + intervalMs) % intervalMs);

/**
 * Listing reads and parses every deployment document (for 10k instances about 6 MB and 150 ms, on every
 * tick): for a fleet of LIST_REUSE_MIN_INSTANCES or more, the list is reused by the ticks that come within
 * LIST_COST_FACTOR times its last duration (at most LIST_MAX_AGE_MS), so listing takes about a twentieth of the
 * process at most, whatever the fleet's size. Changes made elsewhere (new instances, settings, removals)
 * reach the prober that much later; its own verdicts at once. A smaller fleet is listed on every tick.
 */
const LIST_REUSE_MIN_INSTANCES = 1_000;
const LIST_COST_FACTOR = 20;
const LIST_MAX_AGE_MS = 5_000;

/**
 * At most this many probes in flight in one replica. A prober short of CPU (10k instances at N = 5 s on one
 * core) otherwise keeps starting probes it cannot finish: thousands of open sockets, an event loop late by
 * more than the probe timeout, healthy instances failing their probes and ejected, a heap of a gigabyte.
 * Past the cap, due probes wait for a later tick (the probes fall behind, and a warning says so); a probe
 * that starts is read in time. A probe counts until its answer is in (not while its result is written).
 */
export const MAX_PROBES_IN_FLIGHT = 1_000;
const BEHIND_WARN_EVERY_MS = 30_000;
/**
 * Fair share between replicas: each probing replica marks itself present (LeaseStore.presence, renewed with its
 * leases); a replica's share is ceil(deployments to probe / replicas present). One at its share leaves a free
 * lease to the replicas under theirs for OVER_SHARE_TICKS ticks (and takes it if nobody has: a crashed holder's
 * deployments are always taken over); one above its share by more than SHED_SLACK hands the excess over by not
 * renewing those leases: it probes them until its lease runs out, the others acquire them right at expiry
 * (they wait for exactly that moment, PTTL), so a hand-over costs no probe. Without presence (test doubles):
 * one replica, no limit.
 */
const OVER_SHARE_TICKS = 2;
/** A taken-over instance overdue by at most this many ticks (and half an interval) is probed at once. */
const CATCH_UP_TICKS = 3;
const SHED_SLACK = 0.05;
/** Before acquiring leases, the count of replicas present is read again if older than this. */
const PRESENCE_REFRESH_MS = 1_000;
/** Probes due within this many ms of each other start together (one timer callback). */
const DISPATCH_SLOT_MS = 50;

export interface ProberMetrics {
  probe(deployment: string, instance: string, kind: string, ok: boolean, seconds: number): void;
  verdict(deployment: string, instance: string, to: "active" | "ejected", reason: string): void;
}

interface Held {
  lease: Lease;
  /** This replica may act until then (renew start + LEASE_MS). */
  validUntil: number;
}

export interface Prober {
  start(): void;
  /** Graceful: stop and release the leases (another replica takes over at once). */
  stop(): Promise<void>;
  /** Like a killed process: stop without releasing (tests). */
  halt(): void;
  held(): string[];
  /** The fair share as this replica last computed it: probing replicas present, and deployments each. */
  share(): { present: number; share: number };
}

export const probeLeaseName = (deploymentId: string) => `probe:${deploymentId}`;

export function createProber(deps: {
  /** `updateInstance` writes a verdict as one instance's change; without it (test doubles), `update`. */
  store: Pick<DeploymentStore, "get" | "list" | "update" | "getApiKey"> & Partial<Pick<DeploymentStore, "updateInstance">>;
  models: { get(id: string): Promise<Model | null> };
  tester: Pick<ConnectivityTester, "probe" | "probeCompletion"> & Pick<ConnectivityTester, "scrapeMetrics">;
  /** Engine load scores (deployments with load_signals; health/load.ts). Absent: no scrape. */
  loads?: Pick<LoadStore, "write"> & Partial<Pick<LoadStore, "drop">>;
  /** At most one load-triggered table version per this many ms (every replica); default 1000. */
  loadPublishMs?: number;
  leases: LeaseStore;
  health: HealthStore;
  telemetry: Pick<TelemetryStore, "recordProbe" | "window">;
  metrics?: ProberMetrics;
  tickMs: number;
  leaseMs: number;
  replica: string;
  log: Logger;
}): Prober {
  const { store, tester, health, log } = deps;
  const held = new Map<string, Held>();
  const nextAt = new Map<string, Map<string, number>>();
  const nextEval = new Map<string, number>();
  const stateCache = new Map<string, Map<string, ProbeState>>();
  /** load_signals: each instance's learned capacity (health/load.ts learnCapacity), per deployment held. */
  const capacities = new Map<string, Map<string, number>>();
  const inflight = new Map<string, Set<string>>();
  const busy = new Set<string>();
  const abort = new AbortController();
  /** Next acquisition attempt per deployment not held (at the current holder's lease expiry). */
  const nextAcquire = new Map<string, number>();
  let stopped = false;
  /** Probing replicas present (fair share); 1 until known. */
  let present = 1;
  /** When `present` was last read from Redis. */
  let countedAt = 0;
  /** Held leases being handed over (not renewed; dropped when they run out). */
  const shedding = new Set<string>();
  /** Free leases seen while at the share: since when (taken after OVER_SHARE_TICKS if still free). */
  const overShare = new Map<string, number>();
  let acquiring = 0;
  /** Deployments to probe at the last tick (all replicas). */
  let probedCount = 0;
  /** The last presence heartbeat found this replica above its share (it sheds at the second in a row). */
  let aboveShare = false;
  const shareOf = () => Math.ceil(probedCount / Math.max(1, present));
  const keeping = () => held.size - shedding.size;
  let timer: NodeJS.Timeout | null = null;
  let renewTimer: NodeJS.Timeout | null = null;
  let listed: { at: number; ms: number; deployments: Deployment[]; instances: number } | null = null;
  let listing: Promise<Deployment[]> | null = null;
  /** Bumped by each verdict this replica writes: a list started before it is not reused. */
  let wrote = 0;
  let inFlight = 0;
  /** Due probes put off for the cap since the last warning. */
  let deferred = 0;
  let behindWarnedAt = 0;
  /**
   * Upstream API keys of the held deployments' instances, read once instead of on every probe (a Redis round
   * trip each): valid while the instance's document is unchanged (a key change through the API rewrites it).
   */
  const apiKeys = new Map<string, Map<string, { inst: Instance; stamp: string; key: string | null }>>();

  async function apiKeyOf(d: Deployment, inst: Instance): Promise<string | null> {
    let m = apiKeys.get(d.id);
    if (!m) apiKeys.set(d.id, (m = new Map()));
    const hit = m.get(inst.id);
    if (hit?.inst === inst) return hit.key; // the same document as last time (a reused list): no stamp to build
    const stamp = `${inst.created_at}|${inst.updated_at}|${inst.has_api_key}`;
    if (hit?.stamp === stamp) {
      hit.inst = inst;
      return hit.key;
    }
    const key = await store.getApiKey(d.id, inst.id);
    m.set(inst.id, { inst, stamp, key });
    return key;
  }

  /** The deployments as last listed while that is recent enough (see LIST_COST_FACTOR); one list in flight at a time. */
  function listDeployments(): Promise<Deployment[]> {
    if (listed && listed.instances >= LIST_REUSE_MIN_INSTANCES && performance.now() - listed.at < Math.min(LIST_MAX_AGE_MS, LIST_COST_FACTOR * listed.ms)) {
      return Promise.resolve(listed.deployments);
    }
    listing ??= (async () => {
      const t0 = performance.now();
      const gen = wrote;
      try {
        const deployments = await store.list();
        const instances = deployments.reduce((n, d) => n + d.instances.length, 0);
        listed = { at: gen === wrote ? t0 : -Infinity, ms: performance.now() - t0, deployments, instances };
        return deployments;
      } finally {
        listing = null;
      }
    })();
    return listing;
  }

  /**
   * Probe starts at their due times: every tick hands over the probes due before the next one, and one timer
   * starts them as they come due (those within DISPATCH_SLOT_MS together), so a tick's probes leave spread over
   * the tick as their phases are spread over the interval, not in one burst at the tick (at 10k instances,
   * N = 5 s and a 500 ms tick, bursts of 1,000 connections). One timer for the replica, not one per probe.
   */
  const queue: { at: number; run: () => void }[] = [];
  let queueSorted = true;
  let dispatchTimer: NodeJS.Timeout | null = null;
  let dispatchAt = Infinity;
  function at(when: number, run: () => void) {
    if (queue.length > 0 && when < queue[queue.length - 1]!.at) queueSorted = false; // sorted once, by dispatch
    queue.push({ at: when, run });
    // Sooner than the armed timer (or none armed): re-arm for it.
    if (!stopped && when < dispatchAt - DISPATCH_SLOT_MS) armFor(when);
  }
  function armFor(when: number) {
    if (dispatchTimer) clearTimeout(dispatchTimer);
    dispatchAt = when;
    dispatchTimer = setTimeout(dispatch, Math.max(0, when - Date.now()));
    dispatchTimer.unref();
  }
  function dispatch() {
    dispatchTimer = null;
    dispatchAt = Infinity;
    if (stopped) return;
    if (!queueSorted) {
      queue.sort((a, b) => a.at - b.at);
      queueSorted = true;
    }
    const until = Date.now() + DISPATCH_SLOT_MS;
    let k = 0;
    while (k < queue.length && queue[k]!.at <= until) k++;
    for (const item of queue.splice(0, k)) item.run();
    if (queue.length > 0 && dispatchTimer === null) armFor(queue[0]!.at);
  }

  const mine = (id: string, h: Held) => !stopped && held.get(id) === h && Date.now() < h.validUntil;

  const event = (d: Deployment, instanceId: string, type: EventType, reason: string, state: string | null, evidence: Record<string, unknown>) => {
    const e: InstanceEvent = { at: new Date().toISOString(), type, reason, state, replica: deps.replica, evidence };
    return health.addEvent(d.id, instanceId, e).catch((err: unknown) => log.warn("event not recorded", { deployment: d.id, instance: instanceId, type, ...errorFields(err) }));
  };

  /**
   * active ⇄ ejected, only from the state we saw (a concurrent change wins). True when written. One instance's
   * write: the store reads and writes the deployment's head and this instance only (whatever the deployment's size).
   */
  async function setState(d: Deployment, instanceId: string, from: "active" | "ejected", to: "active" | "ejected"): Promise<boolean> {
    let merge: ((x: Deployment) => Deployment) | null = null;
    if (store.updateInstance) {
      const r = await store.updateInstance(d.id, instanceId, (head, inst) => {
        if (!inst || inst.state !== from) return null;
        const at = new Date().toISOString();
        return { head: { ...head, revision: head.revision + 1, updated_at: at }, instance: { ...inst, state: to, updated_at: at } };
      });
      if (r.changed && r.instance) {
        const inst = r.instance;
        merge = (x) => ({ ...x, ...r.head, instances: x.instances.map((i) => (i.id === inst.id ? inst : i)) });
      }
    } else {
      let changed = false;
      const next = await store.update(d.id, (cur) => {
        const inst = cur.instances.find((i) => i.id === instanceId);
        if (!inst || inst.state !== from) return null;
        changed = true;
        const at = new Date().toISOString();
        return { next: { ...cur, revision: cur.revision + 1, updated_at: at, instances: cur.instances.map((i) => (i.id === instanceId ? { ...i, state: to, updated_at: at } : i)) } };
      });
      if (changed) merge = () => next;
    }
    // A reused list must not keep the old state (a re-admission would wait for the next list).
    if (merge) {
      wrote++;
      const m = merge;
      if (listed) listed = { ...listed, deployments: listed.deployments.map((x) => (x.id === d.id ? m(x) : x)) };
    }
    return merge !== null;
  }

  async function verdict(d: Deployment, inst: Instance, st: ProbeState, to: "active" | "ejected", reason: string, evidence: Record<string, unknown>): Promise<boolean> {
    const from = to === "active" ? "ejected" : "active";
    const now = Date.now();
    // Thresholds judge only traffic after re-admission: set before the write (which waits for this replica's
    // table), or an evaluation running meanwhile sees the instance active with its old traffic and ejects it again.
    const since = st.traffic_since_ms;
    if (to === "active") st.traffic_since_ms = now;
    if (!(await setState(d, inst.id, from, to))) {
      st.traffic_since_ms = since;
      return false;
    }
    st.reason = reason;
    st.since = new Date(now).toISOString();
    st.crossed = [];
    if (to === "ejected") st.successes = 0; // re-admission needs `healthy_threshold` fresh successes
    else st.failures = 0;
    deps.metrics?.verdict(d.id, inst.id, to, reason);
    log.info("health verdict", { deployment: d.id, instance: inst.id, state: to, reason });
    await event(d, inst.id, to === "ejected" ? "ejected" : "readmitted", reason, to, evidence);
    return true;
  }

  /** `answered`: called once the probe's request is over (its in-flight slot is free; the bookkeeping follows). */
  async function probeOne(d: Deployment, inst: Instance, st: ProbeState, h: Held, model: Model | null, answered: () => void): Promise<void> {
    const hc = d.health_check;
    const completion = hc.completion_every > 0 && model !== null && (st.broken || (st.probes + 1) % hc.completion_every === 0);
    const kind = completion ? "completion" : hc.probe;
    const apiKey = await apiKeyOf(d, inst);
    const opts = { timeoutMs: hc.timeout_seconds * 1000, apiKey, signal: abort.signal };
    const t0 = performance.now();
    const r: ProbeOutcome = completion
      ? await tester.probeCompletion(inst, { ...opts, model: servedNameOf(model!) })
      : await tester.probe(inst, { ...opts, path: kind === "models" ? `${inst.base_path}/models` : hc.path });
    const latency = performance.now() - t0;
    answered();
    // Engine load signals (health/load.ts), after the probe and apart from it: a failed, slow or unparsable
    // scrape never changes the probe's outcome, never ejects; it publishes nothing (the last score ages out).
    if (d.load_signals && inst.state === "active" && deps.loads && tester.scrapeMetrics) {
      void scrapeLoad(d, inst, apiKey, h).catch((e: unknown) => {
        if (!abort.signal.aborted) log.debug("load scrape failed", { deployment: d.id, instance: inst.id, ...errorFields(e) });
      });
    }
    if (!mine(d.id, h)) return; // the lease lapsed meanwhile: the new holder decides
    const result: ProbeResult = { ok: r.ok, at: new Date().toISOString(), kind, latency_ms: round(latency)!, error: r.error };
    const prev = st.recent[0];
    st.probes++;
    st.recent.unshift(result); // newest first, RECENT_PROBES kept (in place: no copies per probe)
    if (st.recent.length > RECENT_PROBES) st.recent.length = RECENT_PROBES;
    if (completion) st.broken = !r.ok;
    if (r.ok) {
      st.successes++;
      st.failures = 0;
    } else {
      st.failures++;
      st.successes = 0;
    }
    deps.metrics?.probe(d.id, inst.id, kind, r.ok, latency / 1000);
    deps.telemetry.recordProbe(d.id, inst.id, { ok: r.ok, latencyMs: latency }).catch(() => undefined);
    if ((prev === undefined && !r.ok) || (prev !== undefined && prev.ok !== r.ok)) {
      await event(d, inst.id, r.ok ? "probe_passed" : "probe_failed", r.ok ? "probe_ok" : (r.error ?? "probe_failed"), inst.state, {
        probe: result,
        consecutive_failures: st.failures,
        consecutive_successes: st.successes,
        thresholds: { unhealthy: hc.unhealthy_threshold, healthy: hc.healthy_threshold },
      });
    }
    if (inst.state === "active" && st.failures >= hc.unhealthy_threshold) {
      await verdict(d, inst, st, "ejected", "probe_failures", { probes: st.recent.slice(0, hc.unhealthy_threshold), unhealthy_threshold: hc.unhealthy_threshold });
    } else if (inst.state === "ejected" && st.successes >= hc.healthy_threshold) {
      await verdict(d, inst, st, "active", "probes_passed", { probes: st.recent.slice(0, hc.healthy_threshold), healthy_threshold: hc.healthy_threshold });
    }
    await health.saveState(d.id, inst.id, st);
  }

  async function scrapeLoad(d: Deployment, inst: Instance, apiKey: string | null, h: Held): Promise<void> {
    const hc = d.health_check;
    const r = await tester.scrapeMetrics!(inst, { timeoutMs: hc.timeout_seconds * 1000, maxBytes: MAX_METRICS_BYTES, apiKey, signal: abort.signal });
    if (!r.ok || !mine(d.id, h)) return;
    const signals = parseLoadMetrics(r.body);
    if (signals === null) return; // unknown engine, garbage: no signal
    const publishMs = deps.loadPublishMs ?? 1_000;
    let caps = capacities.get(d.id);
    if (!caps) capacities.set(d.id, (caps = new Map()));
    else if (caps.size > d.instances.length) for (const id of caps.keys()) if (!d.instances.some((i) => i.id === id)) caps.delete(id);
    const capacity = learnCapacity(caps.get(inst.id), signals);
    if (capacity !== undefined) caps.set(inst.id, capacity);
    const entry: LoadEntry = { score: loadScore(signals), at_ms: Date.now(), interval_ms: Math.max(Math.round(hc.interval_seconds * 1000), Math.round(publishMs)), ...(capacity !== undefined ? { capacity } : {}) };
    await deps.loads!.write([{ deployment: d.id, instance: inst.id, entry }]);
  }

  /** Traffic thresholds over the window (error rate, P95); the last active instance is never ejected for slowness. */
  async function evaluate(d: Deployment, states: Map<string, ProbeState>, h: Held): Promise<void> {
    const hc = d.health_check;
    if (hc.max_error_rate === null && hc.max_p95_ms === null) return;
    const active = d.instances.filter((i) => i.state === "active");
    if (active.length === 0) return;
    const since = Object.fromEntries(active.map((i) => [i.id, states.get(i.id)?.traffic_since_ms ?? undefined]));
    const stats = await deps.telemetry.window(d.id, active.map((i) => i.id), hc.window_seconds, since);
    if (!mine(d.id, h)) return;
    const rows = active.map((inst) => {
      const s = stats.get(inst.id)!;
      return { inst, s, st: states.get(inst.id) ?? newProbeState(), er: errorRate(s), p95: quantile(s.latency_buckets, 0.95) };
    });
    // Errors first, then the slowest: with several slow instances the slowest go and the last stays.
    rows.sort((a, b) => (b.er ?? 0) - (a.er ?? 0) || (b.p95 ?? 0) - (a.p95 ?? 0));
    let eligible = active.length;
    for (const { inst, s, st, er, p95 } of rows) {
      const crossed: string[] = [];
      if (s.requests >= hc.min_requests) {
        if (hc.max_error_rate !== null && er !== null && er > hc.max_error_rate) crossed.push("error_rate");
        if (hc.max_p95_ms !== null && p95 !== null && p95 > hc.max_p95_ms) crossed.push("p95_latency");
      }
      const evidence = {
        window_seconds: hc.window_seconds,
        requests: s.requests,
        errors: errorsOf(s),
        error_rate: round(er, 4),
        p95_ms: round(p95),
        thresholds: { max_error_rate: hc.max_error_rate, max_p95_ms: hc.max_p95_ms, min_requests: hc.min_requests },
      };
      const fresh = crossed.filter((c) => !st.crossed.includes(c));
      for (const c of fresh) await event(d, inst.id, "threshold_crossed", c, inst.state, evidence);
      for (const c of st.crossed.filter((c) => !crossed.includes(c))) await event(d, inst.id, "threshold_cleared", c, inst.state, evidence);
      st.crossed = crossed;
      let ejected = false;
      if (crossed.includes("error_rate")) {
        ejected = await verdict(d, inst, st, "ejected", "error_rate", evidence);
      } else if (crossed.includes("p95_latency")) {
        if (eligible > 1) ejected = await verdict(d, inst, st, "ejected", "p95_latency", evidence);
        else if (fresh.includes("p95_latency")) await event(d, inst.id, "ejection_skipped", "last_eligible_instance", inst.state, evidence);
      }
      if (ejected) eligible--;
      await health.saveState(d.id, inst.id, st);
    }
  }

  /** The held deployment's prober state: loaded from Redis when the lease is taken, then kept in memory. */
  async function statesOf(d: Deployment): Promise<Map<string, ProbeState>> {
    let m = stateCache.get(d.id);
    if (!m) {
      m = await health.states(d.id);
      stateCache.set(d.id, m);
    }
    const gone = [...m.keys()].filter((id) => !d.instances.some((i) => i.id === id));
    if (gone.length > 0) {
      for (const id of gone) m.delete(id);
      await health.dropStates(d.id, d.instances.map((i) => i.id));
      await deps.loads?.drop?.(gone.map((id) => loadField(d.id, id))).catch(() => undefined);
    }
    return m;
  }

  /**
   * Starts the due probes (each instance on its own: a hung one delays nobody else, and the next probe of
   * an instance starts as soon as it is due and the previous one has finished), then evaluates the
   * traffic thresholds when due.
   */
  async function round_(d: Deployment, h: Held): Promise<void> {
    const now = Date.now();
    const times = nextAt.get(d.id) ?? new Map<string, number>();
    nextAt.set(d.id, times);
    const flying = inflight.get(d.id) ?? new Set<string>();
    inflight.set(d.id, flying);
    const hc = d.health_check;
    // An instance new to this replica starts at its phase (probePhase), not now. Except one whose last probe (by
    // whichever replica: the state in Redis) missed its phase point by a little — a lease handed over (fair share)
    // between the old holder's last moment and the new holder's first tick: it is probed now, not one interval later.
    // A crashed holder's instances are overdue by about the lease period: they keep their phase (no burst).
    const intervalMs = hc.interval_seconds * 1000;
    if (d.instances.some((i) => PROBED.has(i.state) && !times.has(i.id))) {
      const known = stateCache.get(d.id) ?? (await statesOf(d));
      for (const i of d.instances) {
        if (!PROBED.has(i.state) || times.has(i.id)) continue;
        const lastAt = known.get(i.id)?.recent[0]?.at;
        const overdue = lastAt === undefined ? NaN : now - (Date.parse(lastAt) + intervalMs);
        times.set(i.id, overdue >= 0 && overdue <= Math.min(intervalMs / 2, CATCH_UP_TICKS * deps.tickMs) ? now : onGrid(probePhase(d.id, i.id), intervalMs, now));
      }
    }
    // Due before the next tick: each starts at its own due time (the dispatcher below), not all at this tick.
    const horizon = now + deps.tickMs;
    const due = d.instances.filter((i) => PROBED.has(i.state) && !flying.has(i.id) && (times.get(i.id) ?? 0) < horizon);
    const thresholds = hc.max_error_rate !== null || hc.max_p95_ms !== null;
    const evalDue = thresholds && now >= (nextEval.get(d.id) ?? 0);
    if (due.length === 0 && !evalDue) return;
    const states = await statesOf(d);
    if (due.length > 0) {
      const model = hc.completion_every > 0 ? await deps.models.get(d.model_id) : null;
      for (const inst of due) {
        const st = states.get(inst.id) ?? newProbeState();
        states.set(inst.id, st);
        flying.add(inst.id);
        // Keep the cadence: the next probe is due one interval after this one was due (tick delays do not add up).
        const dueAt = times.get(inst.id) ?? now;
        const next = dueAt + intervalMs;
        times.set(inst.id, next > now ? next : now + intervalMs);
        at(dueAt, () => {
          if (!mine(d.id, h)) return void flying.delete(inst.id); // the lease went meanwhile
          if (inFlight >= MAX_PROBES_IN_FLIGHT) {
            deferred++; // still due: a later tick starts it
            flying.delete(inst.id);
            times.set(inst.id, dueAt);
            return;
          }
          inFlight++;
          let slot = true;
          // The cap is on requests in flight (sockets, timers): the slot is free once the answer is in, while
          // the verdict and the coalesced writes that follow finish (the instance stays in `flying` until then).
          const answered = () => {
            if (slot) inFlight--;
            slot = false;
          };
          void probeOne(d, inst, st, h, model, answered)
            .catch((e: unknown) => {
              if (!abort.signal.aborted) log.debug("probe failed to run", { deployment: d.id, instance: inst.id, ...errorFields(e) });
            })
            .finally(() => {
              flying.delete(inst.id);
              answered();
            });
        });
      }
    }
    if (evalDue && mine(d.id, h)) {
      nextEval.set(d.id, now + Math.max(deps.tickMs, Math.min(hc.interval_seconds * 1000, 1_000)));
      const fresh = await store.get(d.id);
      if (fresh) await evaluate(fresh, states, h);
    }
  }

  function drop(id: string, release: boolean) {
    const h = held.get(id);
    held.delete(id);
    nextAt.delete(id);
    nextEval.delete(id);
    stateCache.delete(id);
    apiKeys.delete(id);
    capacities.delete(id);
    shedding.delete(id);
    if (h && release) void h.lease.release().catch(() => undefined);
  }

  async function tick() {
    if (stopped) return;
    let deployments: Deployment[];
    try {
      deployments = await listDeployments();
    } catch {
      return;
    }
    if (stopped) return;
    const byId = new Map(deployments.map((d) => [d.id, d]));
    for (const id of [...held.keys()]) {
      const d = byId.get(id);
      if (!d || !hasProbed(d)) drop(id, true);
    }
    const now = Date.now();
    if (deferred > 0 && now - behindWarnedAt >= BEHIND_WARN_EVERY_MS) {
      log.warn("probes falling behind: too many in flight", { deferred, in_flight: inFlight, max_in_flight: MAX_PROBES_IN_FLIGHT });
      deferred = 0;
      behindWarnedAt = now;
    }
    for (const id of [...nextAcquire.keys()]) if (!byId.has(id)) nextAcquire.delete(id);
    for (const id of [...overShare.keys()]) if (!byId.has(id) || held.has(id)) overShare.delete(id);
    probedCount = 0;
    for (const d of deployments) if (hasProbed(d)) probedCount++;
    // About to acquire: count the replicas present again if the count is over a second old. The heartbeat
    // (LEASE_MS / 3) alone left a replica that started first counting only itself for up to 10 s and taking
    // every lease, then handing the excess over one lease period later (100 s to settle 30k instances).
    if (keeping() < probedCount && Date.now() - countedAt >= PRESENCE_REFRESH_MS) await countPresent();
    if (stopped) return;
    const share = shareOf();
    // From a random deployment on: under the in-flight cap, no deployment is always served last.
    const first = Math.floor(Math.random() * deployments.length);
    for (let k = 0; k < deployments.length; k++) {
      const d = deployments[(first + k) % deployments.length]!;
      if (!hasProbed(d) || busy.has(d.id)) continue;
      let h = held.get(d.id);
      if (h && now >= h.validUntil) {
        if (shedding.has(d.id)) {
          // Handed over: another replica acquires it at its expiry; not this one (wait past that).
          drop(d.id, false);
          nextAcquire.set(d.id, now + deps.leaseMs);
          continue;
        }
        log.warn("probe lease not renewed in time; stopped probing", { deployment: d.id });
        drop(d.id, false);
        h = undefined;
      }
      if (!h) {
        if (now < (nextAcquire.get(d.id) ?? 0)) continue;
        if (keeping() + acquiring >= share) {
          const since = overShare.get(d.id);
          if (since === undefined) overShare.set(d.id, now);
          if (since === undefined || now < since + OVER_SHARE_TICKS * deps.tickMs) continue;
        }
      }
      busy.add(d.id);
      void (async () => {
        try {
          if (!h) {
            const t0 = Date.now();
            overShare.delete(d.id);
            acquiring++;
            const lease = await deps.leases.acquire(probeLeaseName(d.id), deps.leaseMs).finally(() => void acquiring--);
            if (!lease) {
              // Held elsewhere: try again when that lease runs out (it is renewed meanwhile if its holder lives).
              const left = await deps.leases.remainingMs(probeLeaseName(d.id));
              nextAcquire.set(d.id, Date.now() + Math.min(Math.max(left, 0), deps.leaseMs));
              return;
            }
            if (stopped) return void (await lease.release());
            h = { lease, validUntil: t0 + deps.leaseMs };
            held.set(d.id, h);
            log.info("probe lease acquired", { deployment: d.id });
          }
          await round_(d, h);
        } catch (e) {
          if (!abort.signal.aborted) log.debug("probe round failed", { deployment: d.id, ...errorFields(e) });
        } finally {
          busy.delete(d.id);
        }
      })();
    }
  }

  // All at once: one after the other, a thousand renewals on a busy process took longer than the lease.
  async function renewAll() {
    void heartbeat();
    await Promise.all(
      [...held].filter(([id]) => !shedding.has(id)).map(async ([id, h]) => {
        const t0 = Date.now();
        let ok: boolean;
        try {
          ok = await h.lease.renew();
        } catch {
          return; // Redis unreachable: keep acting only until validUntil
        }
        if (held.get(id) !== h) return;
        if (ok) h.validUntil = t0 + deps.leaseMs;
        else {
          log.warn("probe lease lost", { deployment: id });
          drop(id, false);
        }
      }),
    );
  }

  /** Marks this replica present and reads how many are; false when Redis did not answer (the count is kept). */
  async function countPresent(): Promise<boolean> {
    if (!deps.leases.presence || stopped) return false;
    try {
      present = await deps.leases.presence("probe", deps.leaseMs);
      countedAt = Date.now();
      return true;
    } catch {
      return false;
    }
  }

  /** Presence among the probing replicas (fair share); kept as it was when Redis does not answer. */
  async function heartbeat() {
    if (!(await countPresent())) return;
    // Above the share at two heartbeats in a row (LEASE_MS/3 apart) before handing over: right after taking a
    // crashed replica's deployments over, the count may still include it (its presence runs out with its leases).
    const share = shareOf();
    const excess = keeping() - share;
    const above = present > 1 && probedCount > 0 && excess > Math.max(1, Math.ceil(share * SHED_SLACK));
    if (above && aboveShare && !stopped) {
      const candidates = [...held.keys()].filter((id) => !shedding.has(id));
      for (let k = 0; k < excess && candidates.length > 0; k++) shedding.add(candidates.splice(Math.floor(Math.random() * candidates.length), 1)[0]!);
      log.info("probe leases handed over to other replicas (fair share)", { count: excess, share, present, held: held.size });
      aboveShare = false;
    } else aboveShare = above;
  }

  const halt = () => {
    stopped = true;
    if (timer) clearInterval(timer);
    if (renewTimer) clearInterval(renewTimer);
    if (dispatchTimer) clearTimeout(dispatchTimer);
    dispatchTimer = null;
    queue.length = 0;
    abort.abort();
  };

  return {
    start() {
      timer = setInterval(() => void tick(), deps.tickMs);
      timer.unref();
      renewTimer = setInterval(() => void renewAll(), Math.max(20, Math.floor(deps.leaseMs / 3)));
      renewTimer.unref();
      void heartbeat().finally(() => void tick());
    },
    async stop() {
      halt();
      await Promise.allSettled([...held.values()].map((h) => h.lease.release()));
      held.clear();
    },
    halt() {
      halt();
      held.clear();
    },
    held: () => [...held.keys()],
    share: () => ({ present, share: shareOf() }),
  };
}
