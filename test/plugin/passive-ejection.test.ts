// Passive ejection: consecutive real-traffic failures take an instance out of this worker's picks and
// fallback lists for passive_cooldown_ms; the deployment's on_unavailable decides when nothing is left.
import { test } from "node:test";
import assert from "node:assert/strict";
import { deliver, gateway, header, metric, picked, request, table, type Host } from "./support.js";
import { FLAG, send, type Upstream } from "./upstream.js";

const A = "10.30.0.1:8000";
const B = "10.30.0.2:8000";
const C = "10.30.0.3:8000";
const OK: Upstream = { status: 200 };
const GAUGE_A = "gateway.deployment.llm.instance.a.passive_ejected";

function rr(on_unavailable: "fail" | "panic" = "fail", version = 1) {
  return table(version, [{ id: "llm", on_unavailable, instances: [{ id: "a", address: A }, { id: "b", address: B }, { id: "c", address: C }] }]);
}

const FAILURES: Record<string, Upstream> = {
  "connect failure (503 UF)": { status: 503, flags: FLAG.UF, details: "upstream_reset_before_response_started{connection_failure}" },
  "reset before any response (code 0, UR)": { flags: FLAG.UR },
  "5xx from the upstream": { status: 502 },
  "timeout (504 UT)": { status: 504, flags: "UT" },
};

/**
 * Sends requests on `worker`; each pick of `inst` gets `failure`, other picks a 200. Returns after
 * `n` failures were delivered on `inst` (others got their successes in between, which must not matter).
 */
function failOn(host: Host, inst: string, n: number, failure: Upstream, worker = 0): void {
  let failed = 0;
  for (let guard = 0; failed < n; guard++) {
    assert.ok(guard < 20 * (n + 1), `${inst} is no longer picked after ${failed} failures`);
    send(host, "llm", (pick) => {
      if (pick === inst) { failed++; return failure; }
      return OK;
    }, worker);
  }
}

function picks(host: Host, n: number, worker = 0): { inst: string; ep: string }[] {
  const out: { inst: string; ep: string }[] = [];
  for (let i = 0; i < n; i++) {
    const r = request(host, { model: "llm", worker });
    out.push({ inst: picked(r)!, ep: header(r.upstreamHeaders, "x-gateway-destination-endpoint") ?? "" });
  }
  return out;
}

function excluded(host: Host, worker = 0): boolean {
  return picks(host, 12, worker).every((p) => p.inst !== "a" && !p.ep.includes(A));
}

for (const [what, failure] of Object.entries(FAILURES)) {
  test(`ejected after exactly passive_failures consecutive failures: ${what}`, async () => {
    const host = await gateway({ config: { passive_failures: 3, passive_cooldown_ms: 5000 }, table: rr() });
    failOn(host, "a", 2, failure);
    assert.ok(picks(host, 6).some((p) => p.inst === "a"), "N−1 failures: still picked");
    assert.equal(metric(host, "gateway.passive.ejections"), 0);
    failOn(host, "a", 1, failure);
    assert.ok(excluded(host), "neither picked nor listed as a fallback");
    assert.equal(metric(host, "gateway.passive.ejections"), 1);
    assert.equal(metric(host, GAUGE_A), 1);
    host.shutdown();
  });
}

test("a success in between resets the streak; neutral outcomes (client gone, Envoy's overflow) do not count", async () => {
  const host = await gateway({ config: { passive_failures: 3 }, table: rr() });
  const fail = FAILURES["connect failure (503 UF)"]!;
  failOn(host, "a", 2, fail);
  failOn(host, "a", 1, OK);
  failOn(host, "a", 2, fail);
  failOn(host, "a", 2, { flags: FLAG.DC }); // client disconnects: neither success nor failure
  failOn(host, "a", 1, { status: 503, flags: FLAG.UO });
  assert.ok(picks(host, 6).some((p) => p.inst === "a"), "2 + 2 failures around a success: not ejected");
  failOn(host, "a", 1, fail);
  assert.ok(excluded(host), "third consecutive failure (neutrals in between) ejects");
  host.shutdown();
});

test("back after the cooldown; the gauge follows", async () => {
  const host = await gateway({ config: { passive_failures: 2, passive_cooldown_ms: 4000 }, table: rr() });
  failOn(host, "a", 2, { status: 500 });
  const t0 = host.now;
  assert.ok(excluded(host));
  host.advance(3000);
  assert.ok(excluded(host), "still out before the cooldown ends");
  host.advance(Math.max(0, t0 + 4000 - host.now));
  // Back at the next request (no tick needed) — and in fallbacks again.
  const after = picks(host, 6);
  assert.ok(after.some((p) => p.inst === "a"));
  assert.ok(after.some((p) => p.inst !== "a" && p.ep.includes(A)));
  assert.equal(metric(host, GAUGE_A), 0);
  // A fresh streak is needed for the next ejection.
  failOn(host, "a", 1, { status: 500 });
  assert.ok(picks(host, 6).some((p) => p.inst === "a"));
  host.shutdown();
});

test("the tick ends cooldowns of deployments without traffic (gauge back to 0)", async () => {
  const host = await gateway({ config: { passive_failures: 1, passive_cooldown_ms: 2000 }, table: rr() });
  failOn(host, "a", 1, { status: 500 });
  assert.equal(metric(host, GAUGE_A), 1);
  host.advance(3000);
  assert.equal(metric(host, GAUGE_A), 0);
  host.shutdown();
});

test("per worker: other workers keep picking the instance", async () => {
  const host = await gateway({ workers: 2, config: { passive_failures: 2 }, table: rr() });
  host.advance(1000); // worker 1 adopts the table
  failOn(host, "a", 2, { status: 503 }, 0);
  assert.ok(excluded(host, 0));
  assert.ok(picks(host, 6, 1).some((p) => p.inst === "a"), "worker 1 has seen no failure");
  host.shutdown();
});

test("failures inferred from retries: the pick failed when Envoy used a later host of the list", async () => {
  const host = await gateway({ config: { passive_failures: 2, max_fallbacks: 2 }, table: rr() });
  // Each time `a` is picked, Envoy's retry lands on the first fallback, which answers 200.
  failOn(host, "a", 2, { status: 200, address: (eps) => eps[1]! } as Upstream);
  assert.ok(excluded(host));
  host.shutdown();
});

test("passive_failures 0 turns passive ejection off", async () => {
  const host = await gateway({ config: { passive_failures: 0 }, table: rr() });
  failOn(host, "a", 10, { status: 503, flags: FLAG.UF });
  assert.ok(picks(host, 6).some((p) => p.inst === "a"));
  assert.equal(metric(host, "gateway.passive.ejections"), 0);
  host.shutdown();
});

test("the last eligible instance under `fail`: 503 with retry-after until the cooldown ends", async () => {
  const host = await gateway({
    config: { passive_failures: 1, passive_cooldown_ms: 3000, retry_after_seconds: 4 },
    table: table(1, [{ id: "llm", on_unavailable: "fail", instances: [{ id: "a", address: A }, { id: "b", address: B, state: "ejected" }] }]),
  });
  send(host, "llm", { status: 503, flags: FLAG.UF });
  const r = request(host, { model: "llm" });
  assert.equal(r.outcome, "local_reply");
  assert.equal(r.localReply!.status, 503);
  assert.equal(header(r.localReply!.headers, "retry-after"), "4");
  assert.equal(metric(host, "gateway.deployment.llm.no_eligible_instance"), 1);
  host.advance(3000);
  assert.equal(picked(request(host, { model: "llm" })), "a");
  host.shutdown();
});

test("all instances passively ejected under `panic`: every non-draining instance serves", async () => {
  const host = await gateway({
    config: { passive_failures: 1, max_fallbacks: 0 },
    table: table(1, [{ id: "llm", on_unavailable: "panic", instances: [{ id: "a", address: A }, { id: "b", address: B }, { id: "d", address: C, state: "draining" }] }]),
  });
  failOn(host, "a", 1, { status: 500 });
  assert.deepEqual([...new Set(picks(host, 4).map((p) => p.inst))], ["b"], "one left: it serves alone");
  failOn(host, "b", 1, { status: 500 });
  const p = picks(host, 4).map((x) => x.inst).sort();
  assert.deepEqual(p, ["a", "a", "b", "b"], "panic: the ejected ones, not the draining one");
  assert.equal(metric(host, "gateway.deployment.llm.panic"), 4);
  host.shutdown();
});

test("failover: a passively ejected primary sends traffic to the next tier, then back", async () => {
  const host = await gateway({
    config: { passive_failures: 1, passive_cooldown_ms: 2000, max_fallbacks: 1 },
    table: table(1, [{ id: "llm", strategy: "failover", instances: [{ id: "a", address: A, priority: 0 }, { id: "b", address: B, priority: 1 }] }]),
  });
  failOn(host, "a", 1, { status: 503, flags: FLAG.UF });
  const during = picks(host, 3);
  assert.deepEqual(during.map((p) => p.inst), ["b", "b", "b"]);
  assert.ok(during.every((p) => p.ep === B), "no fallback to the ejected primary");
  host.advance(2000);
  assert.deepEqual(picks(host, 2).map((p) => p.inst), ["a", "a"]);
  host.shutdown();
});

test("an ejection survives a new table version with the same id and address, not a new address", async () => {
  const host = await gateway({ config: { passive_failures: 1, passive_cooldown_ms: 10_000 }, table: rr() });
  failOn(host, "a", 1, { status: 500 });
  deliver(host, rr("fail", 2));
  assert.ok(excluded(host), "same id + address: still out");
  deliver(host, table(3, [{ id: "llm", instances: [{ id: "a", address: "10.30.0.9:8000" }, { id: "b", address: B }, { id: "c", address: C }] }]));
  assert.ok(picks(host, 6).some((p) => p.inst === "a"), "moved to a new address: a new instance");
  host.shutdown();
});

test("the control service re-admitting an instance ends this worker's passive ejection at once (API and data plane agree)", async () => {
  const withState = (version: number, stateA: "active" | "ejected") =>
    table(version, [{ id: "llm", instances: [{ id: "a", address: A, state: stateA }, { id: "b", address: B }, { id: "c", address: C }] }]);
  const host = await gateway({ config: { passive_failures: 1, passive_cooldown_ms: 60_000 }, table: withState(1, "active") });
  failOn(host, "a", 1, { status: 500 });
  assert.ok(excluded(host), "passively ejected");
  assert.equal(metric(host, GAUGE_A), 1);
  // Control ejects it (its probes failed too), then re-admits it once healthy: well within the cooldown.
  deliver(host, withState(2, "ejected"));
  assert.ok(excluded(host));
  deliver(host, withState(3, "active"));
  assert.ok(picks(host, 6).some((p) => p.inst === "a"), "back in the picks with the re-admission, not after 60 s");
  assert.equal(metric(host, GAUGE_A), 0, "the gauge follows");
  // A new version that merely keeps it active (no re-admission) does not end a passive ejection.
  failOn(host, "a", 1, { status: 500 });
  deliver(host, withState(4, "active"));
  assert.ok(excluded(host), "no re-admission: the worker's own evidence holds until the cooldown");
  host.shutdown();
});
