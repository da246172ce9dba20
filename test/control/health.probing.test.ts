// Active probing made visible: a killed instance is ejected within 3·N + timeout and the compiled plugin
// (bridged to this control service over HTTP) stops picking it; restored, it is back within
// healthy_threshold·N; one failed probe never ejects; a 1-token completion every k-th probe catches an
// instance that is up but cannot generate; the events endpoint tells the story with reasons.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import type { PluginBridge } from "../../envoy/local/bridge.js";
import { registerModel, startReplica, waitFor, withRedis, type Replica } from "./harness.js";
import { addressOf, events, instance, picks, pluginGateway, route, stateOf, type Host } from "./health-support.js";

const N = 0.3; // probe interval, seconds
const TIMEOUT = 0.2;
const SLACK_MS = 400; // scheduling on a loaded 2-core machine (20 ms probe ticks, Redis round trips)

describe("active probing → verdicts → the plugin's picks", () => {
  let redis: RedisServer;
  let c: Replica;
  let m1: MockOpenAI;
  let m2: MockOpenAI;
  let host: Host;
  let bridge: PluginBridge;
  let a1: string;
  let a2: string;

  before(async () => {
    redis = await withRedis();
    m1 = await startMockOpenAI({ model: "pb-model" });
    m2 = await startMockOpenAI({ model: "pb-model" });
    a1 = addressOf(m1.url);
    a2 = addressOf(m2.url);
    c = await startReplica(redis.url, { REPLICA_ID: "pb-a", LEASE_MS: "2000" });
    await registerModel(c.api, "pb-model");
    const r = await c.api("POST", "/v1/deployments", {
      body: { id: "pb", model: "pb-model", health_check: { interval_seconds: N, timeout_seconds: TIMEOUT, unhealthy_threshold: 3, healthy_threshold: 2 }, instances: [{ id: "i1", url: m1.url }, { id: "i2", url: m2.url }] },
    });
    assert.equal(r.status, 201, r.text);
    ({ host, bridge } = await pluginGateway(c.url));
    await bridge.waitFor(() => {
      const p = new Set(picks(host, "pb-model", 4));
      return p.has(a1) && p.has(a2);
    }, 5000, "the plugin picks both instances");
  });
  after(async () => {
    await bridge.stop();
    await c.stop();
    await m1.close();
    await m2.close();
    await redis.close();
  });

  test("killed → ejected within 3·N + timeout and no longer picked; restored → back within 2·N and picked again", async () => {
    const t0 = performance.now();
    await m1.stop();
    await waitFor(async () => (await stateOf(c.api, "pb", "i1")) === "ejected", 5000, "i1 ejected");
    const ejectedMs = performance.now() - t0;
    await bridge.waitFor(() => picks(host, "pb-model", 6).every((p) => p === a2), 3000, "the plugin stops picking i1");
    const unpickedMs = performance.now() - t0;
    const bound = Math.round((3 * N + TIMEOUT) * 1000);
    console.log(`# killed → ejected in ${ejectedMs.toFixed(0)} ms, not picked after ${unpickedMs.toFixed(0)} ms (bound 3·N + timeout = ${bound} ms)`);
    assert.ok(ejectedMs <= bound + SLACK_MS, `ejected after ${ejectedMs} ms`);
    // Not a pick, nor a fallback.
    for (let k = 0; k < 20; k++) assert.deepEqual(route(host, "pb-model"), [a2]);

    const t1 = performance.now();
    const restoredAt = Date.now();
    await m1.start();
    await waitFor(async () => (await stateOf(c.api, "pb", "i1")) === "active", 5000, "i1 re-added");
    const backMs = performance.now() - t1;
    await bridge.waitFor(() => picks(host, "pb-model", 4).includes(a1), 3000, "the plugin picks i1 again");
    const pickedMs = performance.now() - t1;
    console.log(`# restored → active in ${backMs.toFixed(0)} ms, picked after ${pickedMs.toFixed(0)} ms (bound healthy_threshold·N = ${Math.round(2 * N * 1000)} ms)`);
    assert.ok(backMs <= 2 * N * 1000 + SLACK_MS, `re-added after ${backMs} ms`);

    // The timeline: newest first, ejection and re-admission with reasons and evidence.
    // The prober writes the event after the state change, then its own state (reason, last probe): wait for each.
    await waitFor(async () => (await events(c.api, "pb", "i1")).some((e) => e.type === "readmitted"), 5000, "i1's readmitted event");
    const ev = await events(c.api, "pb", "i1");
    const readmitted = ev.findIndex((e) => e.type === "readmitted");
    const ejected = ev.findIndex((e) => e.type === "ejected");
    assert.ok(readmitted >= 0 && ejected > readmitted, JSON.stringify(ev.map((e) => e.type)));
    assert.equal(ev[readmitted]!.reason, "probes_passed");
    assert.equal(ev[readmitted]!.state, "active");
    assert.equal(ev[ejected]!.reason, "probe_failures");
    assert.equal(ev[ejected]!.evidence.probes.length, 3);
    assert.ok(ev[ejected]!.evidence.probes.every((p: { ok: boolean; error: string }) => !p.ok && p.error === "refused"));
    assert.ok(ev.slice(ejected).some((e) => e.type === "probe_failed"), "the first failed probe is on the timeline");
    // The instance view: last probe, probe latency, verdict reason (once the state of the re-admission is saved).
    await waitFor(async () => Date.parse((await instance(c.api, "pb", "i1")).health.since ?? "0") >= restoredAt, 5000, "i1's prober state saved after the re-admission");
    const v = await instance(c.api, "pb", "i1");
    assert.equal(v.health.last_probe.ok, true);
    assert.equal(v.health.reason, "probes_passed");
    assert.ok(v.health.probes > 0 && v.health.probe_p95_ms !== null);
    // ?limit bounds the answer.
    const one = await c.api("GET", "/v1/deployments/pb/instances/i1/events?limit=1");
    assert.equal(one.body.events.length, 1);
    assert.equal((await c.api("GET", "/v1/deployments/pb/instances/nope/events")).status, 404);
  });

  test("a single failed probe does not eject", async () => {
    const before = await events(c.api, "pb", "i2");
    await m2.stop();
    await waitFor(async () => (await instance(c.api, "pb", "i2")).health.consecutive_failures >= 1, 3000, "one failed probe");
    await m2.start();
    await waitFor(async () => (await instance(c.api, "pb", "i2")).health.consecutive_successes >= 2, 3000, "probes pass again");
    const v = await instance(c.api, "pb", "i2");
    assert.equal(v.state, "active");
    const fresh = (await events(c.api, "pb", "i2")).slice(0, -before.length || undefined);
    const types = fresh.map((e) => e.type);
    assert.ok(types.includes("probe_failed") && types.includes("probe_passed"), JSON.stringify(types));
    assert.ok(!types.includes("ejected"), JSON.stringify(types));
  });

  test("up but broken: a 1-token completion every k-th probe ejects it (GET /health alone would not)", async () => {
    const p = await c.api("PATCH", "/v1/deployments/pb", { body: { health_check: { completion_every: 2 } } });
    assert.equal(p.status, 200, p.text);
    assert.equal(p.body.health_check.interval_seconds, N, "a PATCH of one health field keeps the others");
    m2.set({ mode: "wrong_model" }); // /health still 200; completions answer 404
    await waitFor(async () => (await stateOf(c.api, "pb", "i2")) === "ejected", 5000, "i2 ejected");
    await waitFor(async () => (await events(c.api, "pb", "i2")).some((e) => e.type === "ejected"), 5000, "i2's ejected event"); // written after the state
    const ej = (await events(c.api, "pb", "i2")).find((e) => e.type === "ejected")!;
    assert.equal(ej.reason, "probe_failures");
    assert.ok(ej.evidence.probes.every((x: { kind: string; ok: boolean }) => x.kind === "completion" && !x.ok), JSON.stringify(ej.evidence.probes));
    assert.equal(await stateOf(c.api, "pb", "i1"), "active");
    m2.set({ mode: "ok" });
    await waitFor(async () => (await stateOf(c.api, "pb", "i2")) === "active", 5000, "i2 back");
    assert.ok(m2.requests.some((q) => q.method === "POST" && q.path === "/v1/chat/completions"));
  });

  test("hung (accepts, never answers) → ejected within 3·N + timeout: each probe is bounded by the timeout", async () => {
    const t0 = performance.now();
    const newestEjected = async () => JSON.stringify((await events(c.api, "pb", "i2")).find((e) => e.type === "ejected") ?? null);
    const earlierEjected = await newestEjected(); // from the test before
    m2.set({ mode: "hang" });
    await waitFor(async () => (await stateOf(c.api, "pb", "i2")) === "ejected", 5000, "i2 ejected");
    const ms = performance.now() - t0;
    console.log(`# hung → ejected in ${ms.toFixed(0)} ms (bound ${Math.round((3 * N + TIMEOUT) * 1000)} ms)`);
    assert.ok(ms <= (3 * N + TIMEOUT) * 1000 + SLACK_MS, `ejected after ${ms} ms`);
    await waitFor(async () => (await newestEjected()) !== earlierEjected, 5000, "i2's new ejected event"); // written after the state
    const ej = (await events(c.api, "pb", "i2")).find((e) => e.type === "ejected")!;
    assert.ok(ej.evidence.probes.every((p: { error: string; latency_ms: number }) => p.error === "timeout" && p.latency_ms >= TIMEOUT * 1000 - 5), JSON.stringify(ej.evidence.probes));
    m2.set({ mode: "ok" });
    await waitFor(async () => (await stateOf(c.api, "pb", "i2")) === "active", 5000, "i2 back");
  });
});
