// Traffic telemetry (contract 3) → per-instance window statistics → verdicts: validation, duplicates,
// P95 merged from two senders, error-rate ejection (also from the compiled plugin through the bridge),
// never ejecting the last eligible instance for slowness, and /metrics.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { LATENCY_BUCKETS_MS } from "../../control/contracts/telemetry.js";
import { HostError } from "../../envoy/local/host/index.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import { PLUGIN, VIEWER, registerModel, startReplica, waitFor, withRedis, type Api, type Replica } from "./harness.js";
import { addressOf, events, instance, parseMetrics, picks, pluginGateway, route, stateOf } from "./health-support.js";

const FIXTURES = fileURLToPath(new URL("../fixtures/telemetry/", import.meta.url));
const HC = { interval_seconds: 0.3, timeout_seconds: 0.3, unhealthy_threshold: 3, healthy_threshold: 2 };

let seq = 0;
interface Row {
  deployment: string;
  instance: string;
  address: string;
  requests: number;
  upstream_5xx?: number;
  connect_failures?: number;
  buckets?: Record<number, number>; // bucket index → count
  in_flight?: number;
}
function batch(source: string, rows: Row[], s = ++seq, intervalMs = 1000) {
  return {
    schema: 1,
    source,
    seq: s,
    table_version: 1,
    start_ms: Date.now() - intervalMs,
    end_ms: Date.now(),
    instances: rows.map((r) => {
      const h = new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0);
      for (const [i, n] of Object.entries(r.buckets ?? { 0: r.requests })) h[Number(i)] = n;
      return {
        deployment: r.deployment, instance: r.instance, address: r.address, requests: r.requests, upstream_5xx: r.upstream_5xx ?? 0, connect_failures: r.connect_failures ?? 0, latency_ms_buckets: h, latency_ms_sum: 0,
        ...(r.in_flight !== undefined ? { in_flight: r.in_flight } : {}),
      };
    }),
  };
}
const post = (api: Api, body: unknown, token: string | null = PLUGIN) => api("POST", "/v1/telemetry", { token, body });

describe("telemetry → window statistics → verdicts", () => {
  let redis: RedisServer;
  let c: Replica;
  const mocks: MockOpenAI[] = [];
  const addr: Record<string, string> = {};

  /** A deployment `id` serving model `id`-m with one mock per instance. */
  async function deploy(id: string, instances: string[], health: Record<string, unknown> = {}, o: { strategy?: string; priorities?: Record<string, number> } = {}) {
    await registerModel(c.api, `${id}-m`);
    const list = [];
    for (const i of instances) {
      const m = await startMockOpenAI({ model: `${id}-m` });
      mocks.push(m);
      addr[`${id}/${i}`] = addressOf(m.url);
      list.push({ id: i, url: m.url, priority: o.priorities?.[i] ?? 0 });
    }
    const r = await c.api("POST", "/v1/deployments", { body: { id, model: `${id}-m`, strategy: o.strategy ?? "round_robin", health_check: { ...HC, ...health }, instances: list } });
    assert.equal(r.status, 201, r.text);
  }
  const row = (dep: string, inst: string, r: Omit<Row, "deployment" | "instance" | "address">): Row => ({ deployment: dep, instance: inst, address: addr[`${dep}/${inst}`]!, ...r });

  before(async () => {
    redis = await withRedis();
    c = await startReplica(redis.url, { REPLICA_ID: "tm-a", TELEMETRY_BUCKET_MS: "500", BODY_LIMIT_BYTES: "262144" });
    await deploy("tp", ["x", "y"]); // no thresholds: statistics only
    await deploy("te", ["e1", "e2", "e3"], { max_error_rate: 0.5, min_requests: 10, window_seconds: 5 });
    // healthy_threshold 50: an ejected s1 stays out for the rest of the suite (15 s of passing probes).
    await deploy("ts", ["s1", "s2"], { max_p95_ms: 1000, min_requests: 10, window_seconds: 5, healthy_threshold: 50 });
  });
  after(async () => {
    await c.stop();
    for (const m of mocks) await m.close();
    await redis.close();
  });

  test("validation: 400 naming fields for each invalid fixture, 401/403, 413 over the body bound; valid fixtures accepted", async () => {
    for (const f of readdirSync(`${FIXTURES}invalid`)) {
      const r = await c.api("POST", "/v1/telemetry", { token: PLUGIN, raw: readFileSync(`${FIXTURES}invalid/${f}`, "utf8"), headers: { "content-type": "application/json" } });
      assert.equal(r.status, 400, `${f}: ${r.text}`);
      if (r.body.error.code === "validation_failed") assert.ok(r.body.error.issues.length > 0 && r.body.error.issues.every((i: { path: string }) => typeof i.path === "string"), f);
      else assert.equal(r.body.error.code, "malformed_json", f);
    }
    const neg = await c.api("POST", "/v1/telemetry", { token: PLUGIN, raw: readFileSync(`${FIXTURES}invalid/negative-count.json`, "utf8"), headers: { "content-type": "application/json" } });
    assert.ok(neg.body.error.issues.some((i: { path: string }) => i.path === "instances.0.requests"), neg.text);
    for (const f of readdirSync(`${FIXTURES}valid`)) {
      const r = await c.api("POST", "/v1/telemetry", { token: PLUGIN, raw: readFileSync(`${FIXTURES}valid/${f}`, "utf8"), headers: { "content-type": "application/json" } });
      assert.equal(r.status, 200, `${f}: ${r.text}`);
    }
    assert.equal((await post(c.api, batch("v", []), null)).status, 401);
    assert.equal((await post(c.api, batch("v", []), VIEWER)).status, 403);
    const big = batch("big", Array.from({ length: 2000 }, (_, k) => ({ deployment: "tp", instance: `n${k}`, address: "10.0.0.1:80", requests: 1 })));
    assert.equal((await post(c.api, big)).status, 413);
  });

  test("P95 is interpolated from the histograms of two sources merged; a duplicate (source, seq) is ignored", async () => {
    // Source A: 100 requests in (10, 25] ms; source B: 100 in (250, 500] ms.
    // Merged: rank 0.95·200 = 190 lies in B's bucket, 90 of its 100 → 250 + 250·0.9 = 475 ms.
    const a = await post(c.api, batch("edge-a/w0", [row("tp", "x", { requests: 100, upstream_5xx: 2, buckets: { 2: 100 } })]));
    assert.equal(a.status, 200, a.text);
    assert.deepEqual(a.body, { duplicate: false, accepted: 1, ignored: 0 });
    assert.equal((await instance(c.api, "tp", "x")).health.p95_ms, 24.3); // A alone: 10 + 15·0.95
    const bBody = batch("edge-b/w1", [row("tp", "x", { requests: 100, connect_failures: 3, buckets: { 6: 100 } }), { deployment: "tp", instance: "ghost", address: "10.9.9.9:1", requests: 5 }]);
    const b = await post(c.api, bBody);
    assert.deepEqual(b.body, { duplicate: false, accepted: 1, ignored: 1 });
    let h = (await instance(c.api, "tp", "x")).health;
    assert.equal(h.requests, 200);
    assert.equal(h.p95_ms, 475);
    assert.equal(h.errors, 5);
    assert.equal(h.error_rate, 0.025);
    const again = await post(c.api, bBody);
    assert.equal(again.status, 200);
    assert.equal(again.body.duplicate, true);
    h = (await instance(c.api, "tp", "x")).health;
    assert.equal(h.requests, 200, "the duplicate was not merged");
    assert.equal(h.p95_ms, 475);
    // The same seq from another source is not a duplicate.
    assert.equal((await post(c.api, batch("edge-c/w0", [row("tp", "y", { requests: 1 })], bBody.seq))).body.duplicate, false);
  });

  test("in flight: summed over senders, a late batch never overwrites a newer count, a gone sender's count expires", async () => {
    const flight = async (inst: string) => {
      const h = (await instance(c.api, "tp", inst)).health;
      return { n: h.in_flight, senders: h.in_flight_senders };
    };
    assert.deepEqual(await flight("y"), { n: null, senders: 0 }, "no sender reported: unknown, not 0");
    const LONG = 20_000; // senders a and b: valid for a minute, whatever the pace of this test
    const s1 = ++seq;
    assert.equal((await post(c.api, batch("if-a/w0", [row("tp", "y", { requests: 0, in_flight: 4 })], s1, LONG))).status, 200);
    assert.equal((await post(c.api, batch("if-b/w1", [row("tp", "y", { requests: 2, in_flight: 3 })], ++seq, LONG))).status, 200);
    assert.deepEqual(await flight("y"), { n: 7, senders: 2 });
    // Sender a's next batch says 1; its earlier batch arriving late (seq below) changes nothing.
    assert.equal((await post(c.api, batch("if-a/w0", [row("tp", "y", { requests: 3, in_flight: 1 })], s1 + 100, LONG))).status, 200);
    assert.equal((await post(c.api, batch("if-a/w0", [row("tp", "y", { requests: 0, in_flight: 9 })], s1 + 50, LONG))).body.duplicate, false);
    assert.deepEqual(await flight("y"), { n: 4, senders: 2 });
    // A batch without the field (an older plugin) leaves the counts as they are.
    assert.equal((await post(c.api, batch("if-old/w0", [row("tp", "y", { requests: 1 })]))).status, 200);
    assert.deepEqual(await flight("y"), { n: 4, senders: 2 });
    // Sender c reports every 300 ms: valid for 1 s (3 intervals, at least 1 s); it stops, its count goes.
    assert.equal((await post(c.api, batch("if-c/w0", [row("tp", "y", { requests: 0, in_flight: 10 })], ++seq, 300))).status, 200);
    assert.deepEqual(await flight("y"), { n: 14, senders: 3 });
    await waitFor(async () => (await flight("y")).n === 4, 5_000, "sender c's count expired");
    assert.deepEqual(await flight("y"), { n: 4, senders: 2 });
  });

  test("error rate over the threshold ejects (reason and evidence on the timeline); below min_requests it does not; re-admission by probes", async () => {
    // e1: 5 requests, all failing (below min_requests 10). e2: 20 requests, 12 failing (0.6 > 0.5).
    const r = await post(c.api, batch("edge-a/w0", [row("te", "e1", { requests: 5, upstream_5xx: 5 }), row("te", "e2", { requests: 20, upstream_5xx: 8, connect_failures: 4 })]));
    assert.equal(r.status, 200, r.text);
    await waitFor(async () => (await stateOf(c.api, "te", "e2")) === "ejected", 5000, "e2 ejected for its error rate");
    // The evaluation that ejected e2 judged e1 too (one pass over the deployment).
    assert.equal(await stateOf(c.api, "te", "e1"), "active");
    assert.equal(await stateOf(c.api, "te", "e3"), "active");
    // The prober writes the event after the state change.
    await waitFor(async () => (await events(c.api, "te", "e2")).some((e) => e.type === "ejected"), 5000, "e2's ejected event");
    const ev = await events(c.api, "te", "e2");
    const ej = ev.find((e) => e.type === "ejected")!;
    assert.equal(ej.reason, "error_rate");
    assert.equal(ej.evidence.requests, 20);
    assert.equal(ej.evidence.errors, 12);
    assert.equal(ej.evidence.error_rate, 0.6);
    assert.equal(ej.evidence.thresholds.max_error_rate, 0.5);
    assert.ok(ev.some((e) => e.type === "threshold_crossed" && e.reason === "error_rate"));
    // Probes still pass: back after healthy_threshold probes, and not ejected again by the old window.
    await waitFor(async () => (await stateOf(c.api, "te", "e2")) === "active", 5000, "e2 re-admitted");
    await waitFor(async () => (await events(c.api, "te", "e2")).some((e) => e.type === "readmitted"), 5000, "e2's readmitted event");
    const re = (await events(c.api, "te", "e2"))[0]!;
    assert.equal(re.type, "readmitted");
    assert.equal(re.reason, "probes_passed");
    await waitFor(async () => (await instance(c.api, "te", "e2")).health.consecutive_successes >= 5, 5000, "more probe rounds (and evaluations)");
    assert.equal(await stateOf(c.api, "te", "e2"), "active", "the errors before re-admission do not count again");
  });

  test("slowness ejects, but never the last eligible instance", async () => {
    // s1: P95 ≈ 2.4 s; s2: P95 ≈ 1.2 s; both over max_p95_ms 1000.
    const r = await post(c.api, batch("edge-a/w0", [row("ts", "s1", { requests: 20, buckets: { 9: 20 } }), row("ts", "s2", { requests: 20, buckets: { 8: 20 } })]));
    assert.equal(r.status, 200, r.text);
    await waitFor(async () => (await events(c.api, "ts", "s2")).some((e) => e.type === "ejection_skipped"), 5000, "s2's ejection skipped");
    assert.equal(await stateOf(c.api, "ts", "s1"), "ejected", "the slowest goes");
    assert.equal(await stateOf(c.api, "ts", "s2"), "active", "the last eligible instance stays");
    await waitFor(async () => (await events(c.api, "ts", "s1")).some((e) => e.type === "ejected"), 5000, "s1's ejected event");
    const s1 = (await events(c.api, "ts", "s1")).find((e) => e.type === "ejected")!;
    assert.equal(s1.reason, "p95_latency");
    assert.ok(s1.evidence.p95_ms > 1000);
    const skipped = (await events(c.api, "ts", "s2")).find((e) => e.type === "ejection_skipped")!;
    assert.equal(skipped.reason, "last_eligible_instance");
    assert.equal(skipped.evidence.p95_ms, 2425); // all 20 in (1000, 2500]: 1000 + 1500·0.95
  });

  test("/metrics: instance up/ejected, P95, error rate, ejections, table version, probe lease holder, probe latency", async () => {
    const r = await c.api("GET", "/metrics", { token: null }); // 127.0.0.1 is on METRICS_ALLOW_FROM by default
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get("content-type") ?? "", /text\/plain/);
    const m = parseMetrics(r.text);
    const one = (name: string, labels: Record<string, string>) => m.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    assert.equal(one("gateway_instance_up", { deployment: "tp", instance: "x" })?.value, 1);
    assert.equal(one("gateway_instance_ejected", { deployment: "ts", instance: "s1" })?.value, 1);
    assert.equal(one("gateway_instance_up", { deployment: "ts", instance: "s1" })?.value, 0);
    assert.equal(one("gateway_instance_latency_p95_seconds", { deployment: "tp", instance: "x" })?.value, 0.475);
    assert.equal(one("gateway_instance_error_rate", { deployment: "tp", instance: "x" })?.value, 0.025);
    assert.equal(one("gateway_instance_window_requests", { deployment: "tp", instance: "x" })?.value, 200);
    assert.ok((one("gateway_ejections_total", { deployment: "te", reason: "error_rate" })?.value ?? 0) >= 1);
    assert.ok((one("gateway_ejections_total", { deployment: "ts", reason: "p95_latency" })?.value ?? 0) >= 1);
    assert.equal(one("gateway_routing_table_version", {})?.value, c.control.cache.current()!.version);
    assert.equal(one("gateway_probe_lease_holder", { deployment: "tp" })?.labels.holder, "tm-a");
    assert.ok((one("gateway_probe_duration_seconds_count", { deployment: "tp", result: "ok" })?.value ?? 0) > 0);
    assert.equal(m.some((s) => s.name.startsWith("gateway_probe_duration_seconds") && "instance" in s.labels), false, "no histogram per instance");
    assert.equal(one("gateway_instance_last_probe_ok", { deployment: "tp", instance: "x" })?.value, 1);
    assert.ok((one("gateway_instance_last_probe_seconds", { deployment: "tp", instance: "x" })?.value ?? -1) >= 0);
    assert.ok(m.some((s) => s.name === "gateway_probe_duration_seconds_bucket" && s.labels.le === "0.005"));
  });

  test("/metrics: a deleted deployment leaves no per-instance series behind", async () => {
    await deploy("gone", ["g1"]);
    const scrape = async () => parseMetrics((await c.api("GET", "/metrics", { token: null })).text);
    await waitFor(async () => (await scrape()).some((s) => s.name === "gateway_instance_last_probe_ok" && s.labels.deployment === "gone"), 5000, "last probe of g1");
    assert.equal((await c.api("DELETE", "/v1/deployments/gone")).status, 204);
    await waitFor(async () => !(await scrape()).some((s) => s.name === "gateway_instance_up" && s.labels.deployment === "gone"), 5000, "gone from the table");
    const left = (await scrape()).filter((s) => s.name.startsWith("gateway_instance_") && s.labels.deployment === "gone");
    assert.deepEqual(left.map((s) => s.name), []);
  });

  test("error-rate ejection from the compiled plugin's own telemetry, through the bridge", async (t) => {
    // Failover: every pick is b1 (priority 0) while it is active, so the test knows where requests go.
    await deploy("tb", ["b1", "b2"], { max_error_rate: 0.5, min_requests: 5, window_seconds: 5 }, { strategy: "failover", priorities: { b2: 1 } });
    let gw: Awaited<ReturnType<typeof pluginGateway>>;
    try {
      gw = await pluginGateway(c.url, { telemetry_interval_ms: 200, passive_failures: 0 });
    } catch (e) {
      if (e instanceof HostError) return t.skip("build/plugin.wasm has no telemetry yet (its configuration refuses telemetry_interval_ms)");
      throw e;
    }
    const { host, bridge } = gw;
    try {
      const b1 = addr["tb/b1"]!;
      const b2 = addr["tb/b2"]!;
      await bridge.waitFor(() => route(host, "tb-m")[0] === b1, 5000, "the plugin routes tb-m");
      // Every request goes to b1, which answers 503.
      for (let k = 0; k < 20; k++) assert.deepEqual(route(host, "tb-m", { status: 503, address: b1 }), [b1, b2]);
      await bridge.waitFor(async () => (await stateOf(c.api, "tb", "b1")) === "ejected", 5000, "b1 ejected from the plugin's telemetry");
      assert.ok(bridge.calls.some((x) => x.method === "POST" && x.path === "/v1/telemetry" && x.status === 200));
      await waitFor(async () => (await events(c.api, "tb", "b1")).some((e) => e.type === "ejected"), 5000, "b1's ejected event"); // written after the state
      assert.equal((await events(c.api, "tb", "b1")).find((e) => e.type === "ejected")?.reason, "error_rate");
      assert.equal(await stateOf(c.api, "tb", "b2"), "active");
      await bridge.waitFor(() => picks(host, "tb-m", 4).every((p) => p === b2), 3000, "the plugin stops picking b1");
    } finally {
      await bridge.stop();
    }
  });
});
