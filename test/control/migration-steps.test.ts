// The rolling-migration state machine (control/src/migration/steps.ts) as pure functions: cases whose
// timing an API test cannot reach (probe intervals of minutes).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { applyProbe, applyTestResult } from "../../control/src/migration/steps.js";
import type { ConnectivityResult, Deployment, Migration } from "../../control/src/deployments/schemas.js";
import { dep, inst } from "./documents.js";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const iso = (ms: number) => new Date(ms).toISOString();
const CONFIGURED_DEADLINE_S = 300;

function deployment(hc: { interval_seconds: number; timeout_seconds: number; healthy_threshold: number; unhealthy_threshold: number }): Deployment {
  const m: Migration = {
    id: "mig-1", from_instance: "old", to_instance: "new", url: "http://10.0.0.9:8000/v1", phase: "testing", required_successes: hc.healthy_threshold,
    consecutive_successes: 0, consecutive_failures: 0, probes: 0, next_probe_at: null, health_deadline: null, drain_timeout_seconds: 30,
    drain_until: null, error: null, history: [{ phase: "testing", at: iso(T0) }], started_at: iso(T0), updated_at: iso(T0), finished_at: null,
  };
  const d = dep("d", "m", [inst("old", "active"), inst("new", "pending", null)]);
  return { ...d, health_check: { ...d.health_check, ...hc }, migrations: [m] };
}

const passed = (at: number): ConnectivityResult => ({
  ok: true, checked_at: iso(at), address: "10.0.0.9:8000", engine: null, latency_ms: { models: 1, completion: 1, total: 2 }, models_served: ["m"], error: null,
});
const ok = { ok: true, address: "10.0.0.9:8000", error: null };

/** Runs the test at T0, then a passing probe at T0 + k·interval for k = 0, 1, …: the phases seen after each. */
function run(d: Deployment, probes: number): string[] {
  const hc = d.health_check;
  let cur = applyTestResult(d, "new", passed(T0), T0, CONFIGURED_DEADLINE_S)!.next;
  const phases = [cur.migrations[0]!.phase as string];
  for (let k = 0; k < probes; k++) {
    const r = applyProbe(cur, "mig-1", ok, T0 + k * hc.interval_seconds * 1000 + 50);
    if (!r) break;
    cur = r.next;
    phases.push(cur.migrations[0]!.phase);
  }
  return phases;
}

describe("migration steps", () => {
  test("probes too far apart for the configured deadline still get their k chances", () => {
    // 3 passing probes 10 minutes apart need 20 minutes; the configured deadline is 5.
    const phases = run(deployment({ interval_seconds: 600, timeout_seconds: 2, healthy_threshold: 3, unhealthy_threshold: 3 }), 3);
    assert.deepEqual(phases, ["health_checking", "health_checking", "health_checking", "draining"]);
  });

  test("the configured deadline holds when the probes fit in it", () => {
    const d = deployment({ interval_seconds: 10, timeout_seconds: 2, healthy_threshold: 2, unhealthy_threshold: 3 });
    const cur = applyTestResult(d, "new", passed(T0), T0, CONFIGURED_DEADLINE_S)!.next;
    assert.equal(Date.parse(cur.migrations[0]!.health_deadline!) - T0, CONFIGURED_DEADLINE_S * 1000);
    // A probe that neither switches nor rolls back, past the deadline: rolled back for the deadline.
    const late = applyProbe(cur, "mig-1", { ok: false, address: null, error: "refused" }, T0 + (CONFIGURED_DEADLINE_S + 1) * 1000)!.next;
    assert.equal(late.migrations[0]!.phase, "rolled_back");
    assert.equal(late.migrations[0]!.error?.code, "health_check_deadline");
  });

  test("a test result for a target already in health checking changes nothing", () => {
    const d = deployment({ interval_seconds: 30, timeout_seconds: 2, healthy_threshold: 2, unhealthy_threshold: 3 });
    const checking = applyTestResult(d, "new", passed(T0), T0, CONFIGURED_DEADLINE_S)!.next;
    assert.equal(checking.instances.find((i) => i.id === "new")!.state, "pending");
    assert.equal(applyTestResult(checking, "new", passed(T0 + 1000), T0 + 1000, CONFIGURED_DEADLINE_S), null);
  });
});
