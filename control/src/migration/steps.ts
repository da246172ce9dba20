/**
 * The rolling-migration state machine, as pure functions over the stored deployment.
 *
 *   testing ──(connectivity test passes)──▶ health_checking ──(k consecutive probes pass)──▶ draining
 *      │                                        │                                            │
 *      └──(test fails)──▶ rolled_back ◀──(probes fail / deadline)                 (drain timeout)
 *                                                                                             ▼
 *                                                                                         succeeded
 * Before the switch the old instance keeps serving and the new one is `pending` (not in the table);
 * a rollback removes the new one. An operator may cancel before the switch: the same rollback, `cancelled`.
 * The switch makes new `active` and old `draining` in one write; when the drain ends the old one is removed.
 */
import type { ConnectivityResult, Deployment, Instance, Migration } from "../deployments/schemas.js";
import type { KeyChanges } from "../deployments/store.js";

export interface StepResult {
  next: Deployment;
  keys?: KeyChanges;
}

const iso = (ms: number) => new Date(ms).toISOString();

function withMigration(d: Deployment, id: string, f: (m: Migration) => Migration): Deployment {
  return { ...d, migrations: d.migrations.map((m) => (m.id === id ? f(m) : m)) };
}

function phase(m: Migration, p: Migration["phase"], at: number, note?: string): Migration {
  return { ...m, phase: p, updated_at: iso(at), history: [...m.history, { phase: p, at: iso(at), ...(note ? { note } : {}) }] };
}

export function rollback(d: Deployment, m: Migration, at: number, error: { code: string; message: string }): StepResult {
  let next = withMigration(d, m.id, (x) => ({ ...phase(x, "rolled_back", at, error.message), error, finished_at: iso(at), next_probe_at: null }));
  next = { ...next, instances: next.instances.filter((i) => i.id !== m.to_instance) };
  return { next, keys: { del: [m.to_instance] } };
}

/** Phases in which a cancel is a rollback: the old instance still serves and nothing has switched. */
export const CANCELLABLE: ReadonlySet<Migration["phase"]> = new Set(["testing", "health_checking"]);

/** Cancelled by an operator before the switch (the caller checked CANCELLABLE). */
export function cancel(d: Deployment, m: Migration, at: number): StepResult {
  return rollback(d, m, at, { code: "cancelled", message: "cancelled by an operator before the switch" });
}

const POOL_STATES = new Set(["active", "draining", "ejected"]);

/**
 * One instance per address in a deployment: Envoy keys a cluster's hosts by ip:port, so xDS (contract 4)
 * refuses two instances on one address — and a refused snapshot froze Envoy's clusters for every
 * deployment. A passed test on an address another instance of the pool already has fails instead
 * (`duplicate_address`). A migration's target may share its source's address (the table keeps the new one).
 */
function withUniqueAddress(d: Deployment, instanceId: string, migratingFrom: string | undefined, r: ConnectivityResult): ConnectivityResult {
  if (!r.ok || r.address === null) return r;
  const address = r.address.toLowerCase();
  const other = d.instances.find((i) => i.id !== instanceId && i.id !== migratingFrom && POOL_STATES.has(i.state) && i.address?.toLowerCase() === address);
  if (!other) return r;
  return { ...r, ok: false, error: { code: "duplicate_address", message: `${r.address} is already served by instance ${other.id} of this deployment` } };
}

/** A pending instance past its connectivity test: the target of a migration that is health checking it. */
export function awaitsProbes(d: Deployment, instanceId: string): boolean {
  return d.migrations.some((m) => m.to_instance === instanceId && m.phase === "health_checking");
}

/**
 * How long a migration's health checks may take: the configured deadline, or — when the deployment's probes
 * are too far apart to fit k of them in it (k − 1 intervals + a timeout) — that time plus one interval, so a
 * long probe interval cannot make every migration roll back with `health_check_deadline`.
 */
export function healthDeadlineMs(d: Deployment, m: Migration, configuredSeconds: number): number {
  const hc = d.health_check;
  const needed = ((m.required_successes - 1) * hc.interval_seconds + hc.timeout_seconds) * 1000;
  return Math.max(configuredSeconds * 1000, needed + hc.interval_seconds * 1000);
}

/** The connectivity test of a pending instance finished. */
export function applyTestResult(d: Deployment, instanceId: string, tested: ConnectivityResult, at: number, healthDeadlineSeconds: number): StepResult | null {
  const inst = d.instances.find((i) => i.id === instanceId);
  if (!inst || inst.state !== "pending") return null; // removed or already decided meanwhile
  // A migration's target stays `pending` until the switch; once its test passed, its health checks decide.
  // Taken for a plain new instance, a second test's result would make it active before it is proven healthy.
  if (awaitsProbes(d, instanceId)) return null;
  const migration = d.migrations.find((m) => m.to_instance === instanceId && m.phase === "testing");
  const result = withUniqueAddress(d, instanceId, migration?.from_instance, tested);
  const updated: Instance = { ...inst, last_check: result, address: result.address ?? inst.address, updated_at: iso(at) };
  if (!migration) {
    updated.state = result.ok ? "active" : "unreachable";
    return { next: { ...d, instances: d.instances.map((i) => (i.id === instanceId ? updated : i)) } };
  }
  const base = { ...d, instances: d.instances.map((i) => (i.id === instanceId ? updated : i)) };
  if (!result.ok) return rollback(base, migration, at, { code: "connectivity_failed", message: `connectivity test failed: ${result.error?.message ?? "unknown"}` });
  return {
    next: withMigration(base, migration.id, (m) => ({
      ...phase(m, "health_checking", at),
      next_probe_at: iso(at),
      health_deadline: iso(at + healthDeadlineMs(d, m, healthDeadlineSeconds)),
    })),
  };
}

/** One health probe of a migration's new endpoint finished. */
export function applyProbe(d: Deployment, migrationId: string, probe: { ok: boolean; address: string | null; error: string | null }, at: number): StepResult | null {
  const m = d.migrations.find((x) => x.id === migrationId);
  if (!m || m.phase !== "health_checking") return null;
  const hc = d.health_check;
  const counted: Migration = {
    ...m,
    probes: m.probes + 1,
    consecutive_successes: probe.ok ? m.consecutive_successes + 1 : 0,
    consecutive_failures: probe.ok ? 0 : m.consecutive_failures + 1,
    next_probe_at: iso(at + hc.interval_seconds * 1000),
    updated_at: iso(at),
  };
  if (!probe.ok && counted.consecutive_failures >= hc.unhealthy_threshold) {
    return rollback(withMigration(d, m.id, () => counted), counted, at, { code: "health_check_failed", message: `${counted.consecutive_failures} consecutive health checks failed (last: ${probe.error ?? "error"})` });
  }
  if (counted.consecutive_successes >= m.required_successes) {
    // The switch: new takes traffic, old drains — one write, one table version.
    const switched = withMigration(d, m.id, () => ({ ...phase(counted, "draining", at), next_probe_at: null, drain_until: iso(at + m.drain_timeout_seconds * 1000) }));
    return {
      next: {
        ...switched,
        instances: switched.instances.map((i) => {
          if (i.id === m.to_instance) return { ...i, state: "active" as const, address: probe.address ?? i.address, updated_at: iso(at) };
          if (i.id === m.from_instance) return { ...i, state: "draining" as const, updated_at: iso(at) };
          return i;
        }),
      },
    };
  }
  if (m.health_deadline !== null && at > Date.parse(m.health_deadline)) {
    return rollback(withMigration(d, m.id, () => counted), counted, at, { code: "health_check_deadline", message: "the new endpoint did not pass its health checks in time" });
  }
  return { next: withMigration(d, m.id, () => counted) };
}

/** The drain of the old instance is over: remove it. */
export function applyDrainDone(d: Deployment, migrationId: string, at: number): StepResult | null {
  const m = d.migrations.find((x) => x.id === migrationId);
  if (!m || m.phase !== "draining" || m.drain_until === null || at < Date.parse(m.drain_until)) return null;
  const next = withMigration(d, m.id, (x) => ({ ...phase(x, "succeeded", at), finished_at: iso(at) }));
  return { next: { ...next, instances: next.instances.filter((i) => i.id !== m.from_instance) }, keys: { del: [m.from_instance] } };
}
