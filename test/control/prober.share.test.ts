// Replicas share the probing (bench/control-scale.bench.ts, three replicas): through the per-deployment leases
// and a presence count in Redis, each replica holds about its share of the deployments — ceil(deployments /
// replicas) — however they start (the first to start takes every lease, the later ones get theirs handed over
// as the first's leases run out), every deployment stays probed by exactly one, and a replica killed without
// releasing has its deployments taken over within one lease period by the others. Real Redis and lease store;
// stub deployment and health stores (only the leases are under test).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { createProber, type Prober } from "../../control/src/jobs/prober.js";
import { createLeaseStore } from "../../control/src/jobs/lease-store.js";
import { createKeys } from "../../control/src/redis/keys.js";
import { HEALTH_DEFAULTS, type Deployment } from "../../control/src/deployments/schemas.js";
import type { Logger } from "../../control/src/log.js";
import { startRedis, waitFor, type RedisServer } from "../support/redis.js";

const AT = "2026-01-01T00:00:00.000Z";
const LEASE_MS = 900;
const TICK_MS = 20;
const DEPLOYMENTS = 30;

function deployment(id: string, n: number): Deployment {
  return {
    id, model_id: `${id}-m`, strategy: "round_robin", on_unavailable: "fail", forward_client_credentials: false, extra_paths: [],
    health_check: { ...HEALTH_DEFAULTS, interval_seconds: 0.1, timeout_seconds: 0.05 },
    instances: [{
      id: "i", url: `http://10.1.0.${n}:8000/v1`, scheme: "http" as const, host: `10.1.0.${n}`, port: 8000, base_path: "/v1", address: `10.1.0.${n}:8000`,
      weight: 1, priority: 0, region: "", gpu_count: null, gpu_memory_gb: null, has_api_key: false, state: "active" as const, last_check: null, created_at: AT, updated_at: AT,
    }],
    migrations: [], revision: 1, created_at: AT, updated_at: AT,
  };
}

/** One suite's Redis, and the probers and connections its tests start: all stopped after the suite. */
interface Fleet {
  server: RedisServer;
  clients: Redis[];
  probers: Map<string, Prober>;
}

function suiteFleet(): Fleet {
  const f: Partial<Fleet> & Omit<Fleet, "server"> = { clients: [], probers: new Map() };
  before(async () => {
    f.server = await startRedis();
  });
  after(async () => {
    for (const p of f.probers.values()) await p.stop();
    for (const c of f.clients) c.disconnect();
    await f.server?.close();
  });
  return f as Fleet;
}

/**
 * A replica's prober on the real lease store (its own connection), with stub deployment and health stores:
 * only the leases are under test. `onProbe` sees each probe's host.
 */
function startProber(
  name: string,
  fleet: Fleet,
  o: { list: () => Deployment[]; keyPrefix: string; leaseMs: number; onProbe?: (host: string) => void },
): Prober {
  const redis = new Redis(fleet.server.url, { maxRetriesPerRequest: 1 });
  fleet.clients.push(redis);
  const log: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined, child: () => log };
  const p = createProber({
    store: { list: async () => o.list(), get: async (id) => o.list().find((d) => d.id === id) ?? null, update: async (id) => o.list().find((d) => d.id === id)!, getApiKey: async () => null },
    models: { get: async () => null },
    tester: {
      async probe(target) {
        o.onProbe?.(target.host);
        return { ok: true, address: null, error: null };
      },
      probeCompletion: async () => ({ ok: true, address: null, error: null }),
    },
    leases: createLeaseStore({ redis, keys: createKeys(o.keyPrefix), owner: name }),
    health: { states: async () => new Map(), saveState: async () => undefined, dropStates: async () => undefined, addEvent: async () => undefined, events: async () => [] },
    telemetry: { recordProbe: async () => undefined, window: async () => new Map() },
    tickMs: TICK_MS,
    leaseMs: o.leaseMs,
    replica: name,
    log,
  });
  fleet.probers.set(name, p);
  return p;
}

describe("probe leases shared between replicas", () => {
  const fleet = suiteFleet();
  const { probers } = fleet;
  const deployments = Array.from({ length: DEPLOYMENTS }, (_, k) => deployment(`s${k}`, k + 1));
  const hostToDep = new Map(deployments.map((d) => [d.instances[0]!.host, d.id]));
  /** Probes per deployment by replica, and the last probe per deployment (replica, ms). */
  const probes: { dep: string; replica: string; at: number }[] = [];

  const replica = (name: string): Prober =>
    startProber(name, fleet, { list: () => deployments, keyPrefix: "share:", leaseMs: LEASE_MS, onProbe: (host) => probes.push({ dep: hostToDep.get(host)!, replica: name, at: performance.now() }) });

  const counts = () => Object.fromEntries([...probers].map(([n, p]) => [n, p.held().length]));
  const owners = (dep: string) => [...probers].filter(([, p]) => p.held().includes(dep)).map(([n]) => n);

  test("one replica alone holds every lease; two more join and get their share handed over", async () => {
    const a = replica("a");
    a.start();
    await waitFor(() => a.held().length === DEPLOYMENTS, 5_000, "a holding every lease");
    const b = replica("b");
    const c = replica("c");
    b.start();
    c.start();
    // Share 10 each (a keeps at most 10 + its slack of 1).
    await waitFor(() => Object.values(counts()).every((n) => n >= 9 && n <= 11), 4 * LEASE_MS + 2_000, "each replica near its share").catch((e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(counts())}`);
    });
    for (const d of deployments) assert.ok(owners(d.id).length <= 1, `${d.id} held by ${owners(d.id).join(", ")}`);
    // Every deployment is still probed (none lost in the hand-over).
    const since = performance.now();
    await waitFor(() => new Set(probes.filter((p) => p.at > since).map((p) => p.dep)).size === DEPLOYMENTS, 2_000, "every deployment probed");
  });

  test("a replica killed without releasing: its deployments are taken over by the others within one lease period", async () => {
    const c = probers.get("c")!;
    const orphans = c.held();
    assert.ok(orphans.length > 0);
    c.halt();
    probers.delete("c");
    const killed = performance.now();
    // Taken over (held by a or b) and probed again.
    await waitFor(() => orphans.every((id) => owners(id).length === 1), LEASE_MS + 10 * TICK_MS + 500, "orphans held again").catch((e: Error) => {
      throw new Error(`${e.message}: ${orphans.filter((id) => owners(id).length !== 1).length} of ${orphans.length} not held; ${JSON.stringify(counts())}`);
    });
    await waitFor(() => orphans.every((id) => probes.some((p) => p.dep === id && p.at > killed && p.replica !== "c")), 1_000, "orphans probed again");
    // And once c's presence runs out the two share everything (15 each, slack 1).
    await waitFor(() => Object.values(counts()).every((n) => n >= 14 && n <= 16), 4 * LEASE_MS, "two replicas near their share").catch((e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(counts())}`);
    });
  });
});

describe("probe leases: the count of replicas is fresh when leases are taken", () => {
  // Production lease period: the presence heartbeat runs every LEASE_MS / 3 = 10 s.
  const LONG_LEASE_MS = 30_000;

  const fleet = suiteFleet();
  const { clients, probers } = fleet;
  /** What every replica lists: empty at first, the fleet once every replica has started. */
  let listed: Deployment[] = [];

  const replica = (name: string): Prober => startProber(name, fleet, { list: () => listed, keyPrefix: "share-fresh:", leaseMs: LONG_LEASE_MS });

  test("a replica that counted itself alone counts again before taking leases, not at its next heartbeat (LEASE_MS / 3 = 10 s later)", async () => {
    const a = replica("a");
    a.start();
    // a's first heartbeat has run (the presence set and its count are one MULTI): it counted itself alone.
    const probe = new Redis(fleet.server.url);
    clients.push(probe);
    await waitFor(async () => (await probe.zscore("share-fresh:lease:presence:probe", "a")) !== null, 2_000, "a's first heartbeat");
    // b and c join while there is nothing to probe; a's next heartbeat is 10 s away.
    replica("b").start();
    replica("c").start();
    await new Promise((r) => setTimeout(r, 1_200));
    assert.equal(a.share().present, 1, "no heartbeat of a since (the count is stale)");
    listed = Array.from({ length: DEPLOYMENTS }, (_, k) => deployment(`f${k}`, k + 1));
    await waitFor(() => [...probers.values()].reduce((n, p) => n + p.held().length, 0) === DEPLOYMENTS, 5_000, "every deployment held");
    // a counted again before acquiring: its share is a third (with the stale count it was every deployment).
    assert.deepEqual(a.share(), { present: 3, share: DEPLOYMENTS / 3 });
    for (const [name, p] of probers) assert.equal(p.share().present, 3, `${name}'s count`);
  });
});
