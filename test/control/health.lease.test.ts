// The probe lease: with two replicas each deployment is probed by exactly one (counted at the mock
// instances); when the probing replica dies without releasing, the other takes over within the lease.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import { VIEWER, PLUGIN, registerModel, startReplica, waitFor, withRedis, type Replica } from "./harness.js";
import { parseMetrics } from "./health-support.js";

const LEASE_MS = 1000;
const N = 0.1; // probe interval, seconds
const SLACK_MS = 300; // a 20 ms probe tick, Redis round trips, a loaded 2-core machine

/** Timestamps of the probes a mock received (sampled every 5 ms). */
function probeClock(m: MockOpenAI) {
  const times: number[] = [];
  let seen = m.requests.filter((q) => q.path === "/health").length;
  const timer = setInterval(() => {
    const n = m.requests.filter((q) => q.path === "/health").length;
    for (; seen < n; seen++) times.push(performance.now());
  }, 5);
  return { times, stop: () => clearInterval(timer) };
}

describe("probe lease across replicas", () => {
  let redis: RedisServer;
  let a: Replica;
  let b: Replica;
  const m: MockOpenAI[] = [];
  const clocks: ReturnType<typeof probeClock>[] = [];

  before(async () => {
    redis = await withRedis();
    const env = { LEASE_MS: String(LEASE_MS), PROBE_TICK_MS: "20" };
    a = await startReplica(redis.url, { ...env, REPLICA_ID: "lease-a" });
    b = await startReplica(redis.url, { ...env, REPLICA_ID: "lease-b", METRICS_ALLOW_FROM: "10.0.0.0/8" });
    for (const id of ["l1", "l2"]) {
      const mock = await startMockOpenAI({ model: `${id}-m` });
      m.push(mock);
      await registerModel(a.api, `${id}-m`);
      const r = await a.api("POST", "/v1/deployments", { body: { id, model: `${id}-m`, health_check: { interval_seconds: N, timeout_seconds: 0.3 }, instances: [{ id: "i", url: mock.url }] } });
      assert.equal(r.status, 201, r.text);
    }
    for (const mock of m) clocks.push(probeClock(mock));
  });
  after(async () => {
    for (const c of clocks) c.stop();
    await a.stop();
    await b.stop();
    for (const mock of m) await mock.close();
    await redis.close();
  });

  const holderOf = (id: string): Replica[] => [a, b].filter((r) => r.control.probing().includes(id));

  test("each deployment is probed by exactly one replica", async () => {
    await waitFor(() => holderOf("l1").length === 1 && holderOf("l2").length === 1, 5000, "both deployments held");
    const holders = ["l1", "l2"].map((id) => holderOf(id)[0]);
    const start = clocks.map((c) => c.times.length);
    const t0 = performance.now();
    await waitFor(() => clocks.every((c, k) => c.times.length - start[k]! >= 15), 5000, "15 probes per instance");
    const elapsed = performance.now() - t0;
    for (const [k, c] of clocks.entries()) {
      const n = c.times.length - start[k]!;
      // One prober: ≈ elapsed / N probes; two would make twice as many.
      assert.ok(n <= elapsed / (N * 1000) + 2, `l${k + 1}: ${n} probes in ${elapsed.toFixed(0)} ms`);
    }
    // Renewal: the same single holder throughout a window longer than the lease.
    assert.ok(elapsed > LEASE_MS, `window ${elapsed} ms`);
    assert.deepEqual(["l1", "l2"].map((id) => holderOf(id)), holders.map((h) => [h]));
    // /metrics names the holder (read from Redis, so any replica says the same); B allows no peer without a token.
    assert.equal((await b.api("GET", "/metrics", { token: null })).status, 401);
    assert.equal((await b.api("GET", "/metrics", { token: PLUGIN })).status, 403);
    const seen = parseMetrics((await b.api("GET", "/metrics", { token: VIEWER })).text).filter((s) => s.name === "gateway_probe_lease_holder");
    assert.deepEqual(
      seen.map((s) => [s.labels.deployment, s.labels.holder]).sort(),
      ["l1", "l2"].map((id) => [id, holderOf(id)[0]!.control.replica]),
    );
  });

  test("the probing replica dies without releasing → the other takes over within the lease time", async () => {
    const [dead] = holderOf("l1");
    const survivor = dead === a ? b : a;
    const c = clocks[0]!;
    const tCrash = performance.now();
    await dead!.control.crash();
    const lastBefore = c.times.at(-1)!;
    await waitFor(() => survivor.control.probing().includes("l1"), LEASE_MS + 2000, "takeover");
    const takeover = performance.now() - tCrash;
    await waitFor(() => c.times.some((t) => t > tCrash + 50), 2000, "probes again");
    const firstAfter = c.times.find((t) => t > tCrash + 50)!;
    const gap = firstAfter - lastBefore;
    console.log(`# holder crashed → taken over after ${takeover.toFixed(0)} ms; probe gap ${gap.toFixed(0)} ms (lease ${LEASE_MS} ms, interval ${N * 1000} ms)`);
    // The lease expires at most LEASE_MS after the dead holder's last renewal; the survivor retries at that moment.
    assert.ok(takeover <= LEASE_MS + SLACK_MS, `takeover after ${takeover} ms`);
    assert.ok(gap <= LEASE_MS + N * 1000 + SLACK_MS, `gap ${gap} ms`);
    // And then one prober again: the survivor alone, at the interval.
    const n0 = c.times.length;
    const t0 = performance.now();
    await waitFor(() => c.times.length - n0 >= 10, 3000, "10 more probes");
    assert.ok(c.times.length - n0 <= (performance.now() - t0) / (N * 1000) + 2);
    const holder = parseMetrics((await survivor.api("GET", "/metrics", { token: VIEWER })).text).find((s) => s.name === "gateway_probe_lease_holder" && s.labels.deployment === "l1");
    assert.equal(holder?.labels.holder, survivor.control.replica);
  });
});
