// Telemetry (contract 3) from the wasm: per-instance counts keyed by the host Envoy used, failure
// classification, latency histogram edges, batch JSON against the zod schema, size bound, failures,
// interval and idleness.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { LATENCY_BUCKETS_MS, TELEMETRY_LIMITS, TelemetryBatch, type InstanceTelemetry } from "../../control/contracts/telemetry.js";
import { CONTROL, deliver, gateway, header, metric, table, type Host, type HostCall } from "./support.js";
import { FLAG, send } from "./upstream.js";

const TELEMETRY_PATH = "/v1/telemetry";

function telemetryCalls(host: Host): HostCall[] {
  return host.httpCalls.filter((c) => header(c.headers, ":path") === TELEMETRY_PATH);
}

/** Parses and validates every pending batch, answers them (default 200), returns them in order. */
function takeBatches(host: Host, status = 200): TelemetryBatch[] {
  const out: TelemetryBatch[] = [];
  for (const call of telemetryCalls(host)) {
    const parsed = TelemetryBatch.safeParse(JSON.parse(call.bodyText));
    assert.ok(parsed.success, `batch matches contract 3: ${JSON.stringify(parsed.error?.issues)}\n${call.bodyText.slice(0, 500)}`);
    out.push(parsed.data);
    call.respond({ status });
  }
  return out;
}

function byInstance(batches: TelemetryBatch[]): Record<string, InstanceTelemetry> {
  const out: Record<string, InstanceTelemetry> = {};
  for (const b of batches) for (const i of b.instances) {
    const k = `${i.deployment}/${i.instance}`;
    assert.equal(out[k], undefined, `${k} once per flush`);
    out[k] = i;
  }
  return out;
}

const A = "10.20.0.1:8000";
const B = "10.20.0.2:8000";
const C = "10.20.0.3:8000";

function twoInstances(extra: object = {}) {
  return table(1, [{ id: "llm", instances: [{ id: "a", address: A }, { id: "b", address: B }] }, { id: "solo", instances: [{ id: "s", address: C }] }], { llm: "llm", solo: "solo" });
}

/** Advances (1 s steps, at most `maxMs`) until a batch is in flight; answers and returns the batches. */
function flush(host: Host, maxMs = 1000): TelemetryBatch[] {
  for (let t = 0; t < maxMs && telemetryCalls(host).length === 0; t += 1000) host.advance(1000);
  return takeBatches(host);
}

test("the plugin's latency buckets mirror LATENCY_BUCKETS_MS (source check)", () => {
  const src = readFileSync(new URL("../../plugin/telemetry/buckets.ts", import.meta.url), "utf8");
  const m = /LATENCY_BUCKETS_MS: StaticArray<u32> = \[([^\]]*)\]/.exec(src);
  assert.ok(m, "LATENCY_BUCKETS_MS literal found in plugin/telemetry/buckets.ts");
  assert.deepEqual(m![1]!.split(",").map((x) => Number(x.trim())), [...LATENCY_BUCKETS_MS]);
  assert.match(src, new RegExp(`BUCKET_COUNT: i32 = ${LATENCY_BUCKETS_MS.length + 1};`));
  assert.match(src, new RegExp(`MAX_INSTANCES_PER_BATCH: i32 = ${TELEMETRY_LIMITS.maxInstancesPerBatch};`));
});

test("counts per upstream.address: the used host, retries to a fallback, unknown hosts ignored", async () => {
  const host = await gateway({ config: { telemetry_interval_ms: 1000, max_fallbacks: 1 }, table: twoInstances() });
  // 4 requests served by their pick.
  const picks: string[] = [];
  for (let i = 0; i < 4; i++) picks.push(send(host, "llm", { status: 200 }).instance!);
  assert.deepEqual(picks.sort(), ["a", "a", "b", "b"]);
  // A retry: the pick failed to connect, Envoy's retry went to the fallback, which answered.
  const r = send(host, "llm", { status: 200, address: (eps) => eps[1]! });
  assert.equal(r.endpoints.length, 2);
  // A host outside the table (e.g. a SaaS passthrough or fallback_policy host) → ignored.
  send(host, "llm", { status: 200, address: "192.168.1.1:443" });
  // A host in the table but not in this request's list (Envoy's fallback_policy) → counted on it.
  send(host, "llm", { status: 200, address: C });
  // No upstream host at all (e.g. UH) → nothing counted.
  send(host, "llm", { status: 503, address: null, flags: FLAG.UH });
  const got = byInstance(flush(host));
  const retriedPick = r.instance!;
  const fallback = retriedPick === "a" ? "b" : "a";
  assert.equal(got[`llm/${retriedPick}`]!.requests, 2 + 1, "two served + the failed first attempt of the retry");
  assert.equal(got[`llm/${retriedPick}`]!.connect_failures, 1, "the attempt before the used host failed");
  assert.equal(got[`llm/${fallback}`]!.requests, 2 + 1);
  assert.equal(got[`llm/${fallback}`]!.connect_failures, 0);
  assert.equal(got["solo/s"]!.requests, 1);
  assert.equal(got["solo/s"]!.address, C);
  assert.equal(Object.keys(got).length, 3);
  host.shutdown();
});

test("5xx and connect failures are classified from response.code, response.flags and code_details", async () => {
  const host = await gateway({ config: { telemetry_interval_ms: 1000, passive_failures: 0 }, table: twoInstances() });
  const cases: { up: Parameters<typeof send>[2]; kind: "ok" | "5xx" | "cf" | "neutral"; what: string }[] = [
    { up: { status: 200 }, kind: "ok", what: "200" },
    { up: { status: 404 }, kind: "ok", what: "404 from the upstream" },
    { up: { status: 500 }, kind: "5xx", what: "500 via_upstream" },
    { up: { status: 503 }, kind: "5xx", what: "503 via_upstream" },
    { up: { status: 503, flags: FLAG.UF | FLAG.URX, details: "upstream_reset_before_response_started{connection_failure}" }, kind: "cf", what: "503 UF,URX (int)" },
    { up: { status: 503, flags: "UF,URX", details: "upstream_reset_before_response_started{connection_failure}" }, kind: "cf", what: "503 UF,URX (string)" },
    { up: { status: 503, flags: FLAG.UC }, kind: "cf", what: "503 UC" },
    { up: { status: 503, flags: FLAG.LR }, kind: "cf", what: "503 LR" },
    { up: { flags: FLAG.UR }, kind: "cf", what: "code 0 with UR" },
    { up: { status: 504, flags: FLAG.UT, details: "upstream_response_timeout" }, kind: "5xx", what: "504 UT (timeout)" },
    { up: { status: 502, flags: FLAG.UPE }, kind: "5xx", what: "502 UPE" },
    { up: {}, kind: "neutral", what: "code 0, no flags (client gone)" },
    { up: { flags: FLAG.DC | FLAG.UR }, kind: "neutral", what: "downstream disconnect" },
    { up: { status: 503, flags: FLAG.UO }, kind: "neutral", what: "503 UO (Envoy circuit breaker)" },
    { up: { status: 503, details: "ext_authz_error" }, kind: "neutral", what: "503 from another filter" },
    { up: { status: 200, flags: "-" }, kind: "ok", what: "flags '-'" },
  ];
  for (const c of cases) {
    send(host, "solo", c.up);
    const got = byInstance(flush(host))["solo/s"]!;
    const expect = { requests: 1, upstream_5xx: c.kind === "5xx" ? 1 : 0, connect_failures: c.kind === "cf" ? 1 : 0 };
    assert.deepEqual({ requests: got.requests, upstream_5xx: got.upstream_5xx, connect_failures: got.connect_failures }, expect, c.what);
  }
  host.shutdown();
});

test("latency histogram: time to the upstream response headers, right at every bucket edge", async () => {
  const host = await gateway({ config: { telemetry_interval_ms: 300_000, poll_interval_ms: 60_000, long_poll_seconds: 0, control_timeout_ms: 120_000 }, table: twoInstances() });
  const expected = new Array(LATENCY_BUCKETS_MS.length + 1).fill(0);
  let sum = 0;
  const observe = (ms: number, bucket: number) => {
    send(host, "solo", { status: 200, latencyMs: ms });
    expected[bucket]++;
    sum += ms;
  };
  observe(0, 0);
  LATENCY_BUCKETS_MS.forEach((edge, i) => {
    observe(edge, i); // bounds are inclusive
    observe(edge + 1, i + 1);
  });
  // Failures without an upstream response add no latency; an upstream 5xx does.
  send(host, "solo", { status: 503, flags: FLAG.UF, latencyMs: 7 });
  send(host, "solo", { status: 504, flags: FLAG.UT, latencyMs: 70_000 });
  send(host, "solo", { status: 500, latencyMs: 3 });
  expected[0]++;
  sum += 3;
  assert.ok(host.now - 1_700_000_000_000 < 300_000 + 200_000);
  const batches = flush(host, 300_000);
  const got = byInstance(batches)["solo/s"]!;
  assert.deepEqual(got.latency_ms_buckets, expected);
  assert.equal(got.latency_ms_sum, sum);
  assert.equal(got.requests, 1 + 2 * LATENCY_BUCKETS_MS.length + 3);
  host.shutdown();
});

test("batch: contract 3 JSON, POST to telemetry_path with authority/content-type/bearer, per-VM source, seq", async () => {
  const host = await gateway({
    workers: 2,
    config: { telemetry_interval_ms: 2000, telemetry_path: "/v1/telemetry", control_token: "tok-1", control_authority: "ctl.internal" },
    table: twoInstances(),
  });
  host.advance(1000); // worker 1 adopts the table from shared data
  send(host, "llm", { status: 200, worker: 0 });
  send(host, "llm", { status: 200, worker: 1 });
  host.advance(2000);
  const calls = telemetryCalls(host);
  assert.equal(calls.length, 2, "one batch per worker");
  for (const call of calls) {
    assert.equal(call.cluster, CONTROL);
    assert.equal(header(call.headers, ":method"), "POST");
    assert.equal(header(call.headers, ":authority"), "ctl.internal");
    assert.equal(header(call.headers, "content-type"), "application/json");
    assert.equal(header(call.headers, "authorization"), "Bearer tok-1");
    assert.ok(call.timeoutMs > 0 && call.timeoutMs <= 5000);
  }
  const first = takeBatches(host);
  assert.notEqual(first[0]!.source, first[1]!.source, "source differs per worker VM");
  for (const b of first) {
    assert.equal(b.seq, 1);
    assert.equal(b.table_version, 1);
    assert.ok(b.end_ms > b.start_ms);
    assert.equal(b.instances.length, 1);
  }
  send(host, "llm", { status: 200, worker: 0 });
  host.advance(2000);
  const second = takeBatches(host);
  assert.equal(second.length, 1, "the idle worker sends nothing");
  assert.equal(second[0]!.seq, 2);
  assert.equal(second[0]!.source, first.find((b) => b.source === second[0]!.source)?.source);
  assert.equal(second[0]!.start_ms, first.find((b) => b.source === second[0]!.source)!.end_ms, "windows are contiguous");
  assert.equal(metric(host, "gateway.telemetry.batches"), 3);
  host.shutdown();
});

test("batch split at maxInstancesPerBatch: the rest goes in the next batch, one in flight at a time", async () => {
  const deployments = [0, 1, 2].map((d) => ({ id: `d${d}`, instances: Array.from({ length: 1000 }, (_, i) => ({ id: `i${i}`, address: `10.${d}.${i >> 8}.${i & 255}:8000` })) }));
  const host = await gateway({ config: { telemetry_interval_ms: 1000, passive_failures: 0, max_fallbacks: 0 }, table: table(1, deployments, { m: "d0" }) });
  const n = TELEMETRY_LIMITS.maxInstancesPerBatch + 100;
  for (let k = 0; k < n; k++) {
    const d = k % 3;
    const i = Math.floor(k / 3);
    send(host, "m", { status: 200, address: `10.${d}.${i >> 8}.${i & 255}:8000` });
  }
  host.advance(1000);
  assert.equal(telemetryCalls(host).length, 1);
  host.advance(1000);
  assert.equal(telemetryCalls(host).length, 1, "no second batch while the first is in flight");
  const first = takeBatches(host);
  assert.equal(first[0]!.instances.length, TELEMETRY_LIMITS.maxInstancesPerBatch);
  host.advance(1000);
  const second = takeBatches(host);
  assert.equal(second.length, 1);
  assert.equal(second[0]!.instances.length, 100);
  assert.equal(second[0]!.seq, first[0]!.seq + 1);
  assert.equal(second[0]!.start_ms, first[0]!.start_ms, "the remainder covers the same window");
  const all = byInstance([...first, ...second]);
  assert.equal(Object.keys(all).length, n);
  assert.ok(Object.values(all).every((t) => t.requests === 1));
  host.shutdown();
});

test("a failed or refused batch is dropped and counted, never retried; the next batch has only new counts", async () => {
  const host = await gateway({ config: { telemetry_interval_ms: 1000 }, table: twoInstances() });
  for (let i = 0; i < 3; i++) send(host, "solo", { status: 200 });
  host.advance(1000);
  assert.equal(takeBatches(host, 500).length, 1);
  assert.equal(metric(host, "gateway.telemetry.dropped_batches"), 1);
  assert.equal(metric(host, "gateway.telemetry.dropped_requests"), 3);
  host.advance(5000);
  assert.equal(telemetryCalls(host).length, 0, "not retried");
  send(host, "solo", { status: 200 });
  host.advance(1000);
  const calls = telemetryCalls(host);
  assert.equal(calls.length, 1);
  assert.equal(JSON.parse(calls[0]!.bodyText).instances[0].requests, 1);
  calls[0]!.fail(); // reset
  assert.equal(metric(host, "gateway.telemetry.dropped_batches"), 2);
  send(host, "solo", { status: 200 });
  host.advance(1000);
  // Timeout: the host answers 504 after timeoutMs.
  assert.equal(telemetryCalls(host).length, 1);
  host.advance(6000);
  assert.equal(telemetryCalls(host).length, 0);
  assert.equal(metric(host, "gateway.telemetry.dropped_batches"), 3);
  assert.equal(metric(host, "gateway.telemetry.batches"), 0);
  host.shutdown();
});

test("the interval is respected (virtual clock), idle workers send nothing, 0 turns telemetry off", async () => {
  const host = await gateway({ config: { telemetry_interval_ms: 3000 }, table: twoInstances() });
  host.advance(10_000);
  assert.equal(telemetryCalls(host).length, 0, "no batch when idle");
  host.advance(2000); // align: the window started at configure time
  const t0 = host.now;
  send(host, "solo", { status: 200 });
  let sentAt = -1;
  for (let t = 0; t < 4000 && sentAt < 0; t += 1000) {
    host.advance(1000);
    if (telemetryCalls(host).length > 0) sentAt = host.now - t0;
  }
  assert.ok(sentAt > 0 && sentAt <= 3000, `sent ${sentAt} ms after the request`);
  const [b] = takeBatches(host);
  assert.ok(b!.end_ms - b!.start_ms >= 3000, "a batch covers at least one interval");
  send(host, "solo", { status: 200 });
  host.advance(1000);
  assert.equal(telemetryCalls(host).length, 0, "not before the interval is over");
  host.advance(2000);
  assert.equal(telemetryCalls(host).length, 1);
  host.shutdown();

  const off = await gateway({ config: { telemetry_interval_ms: 0 }, table: twoInstances() });
  for (let i = 0; i < 5; i++) send(off, "solo", { status: 500 });
  off.advance(60_000);
  assert.equal(telemetryCalls(off).length, 0);
  off.shutdown();
});

test("counters carry over a new table version that keeps the instance id and address", async () => {
  const host = await gateway({ config: { telemetry_interval_ms: 5000 }, table: twoInstances() });
  send(host, "solo", { status: 200 });
  deliver(host, table(2, [{ id: "solo", instances: [{ id: "s", address: C }, { id: "t", address: "10.20.0.9:8000" }] }]));
  send(host, "solo", { status: 200, address: C });
  host.advance(5000);
  const got = byInstance(takeBatches(host));
  assert.equal(got["solo/s"]!.requests, 2);
  host.shutdown();
});

test("benchmark fast path (worker.runRequest with an upstream) counts like whole streams", async () => {
  const host = await gateway({ config: { telemetry_interval_ms: 1000, passive_failures: 3 }, table: twoInstances() });
  const w = host.worker(0);
  const headers: [string, string][] = [[":method", "POST"], [":path", "/v1/chat/completions"], [":authority", "gw"], ["x-model", "llm"]];
  const ok = { status: 200, addressHeader: "x-gateway-destination-endpoint" };
  for (let i = 0; i < 6; i++) assert.equal(w.runRequest(headers, ok), 0);
  // 503s from the picked upstream itself (via_upstream): round robin alternates a and b, so each
  // reaches 3 consecutive failures → both passively ejected, in turn.
  const bad = { status: 503, addressHeader: "x-gateway-destination-endpoint" };
  for (let i = 0; i < 6; i++) w.runRequest(headers, bad);
  assert.equal(metric(host, "gateway.passive.ejections"), 2);
  // Nothing eligible left (on_unavailable: fail) → 503 local reply, nothing counted.
  assert.equal(w.runRequest(headers, bad), 1);
  const got = byInstance(flush(host));
  for (const i of ["a", "b"]) {
    assert.equal(got[`llm/${i}`]!.requests, 3 + 3);
    assert.equal(got[`llm/${i}`]!.upstream_5xx, 3);
  }
  assert.deepEqual(host.refusals, []);
  host.shutdown();
});

test("in_flight: a held stream is reported every interval without other counts, 0 once when it ends, then nothing", async () => {
  const host = await gateway({ config: { telemetry_interval_ms: 1000 }, table: twoInstances() });
  const s = host.worker(0).stream();
  s.requestHeaders([[":method", "POST"], [":path", "/v1/chat/completions"], [":authority", "gw"], [":scheme", "http"], ["x-model", "solo"]], true);
  assert.equal(s.result().outcome, "upstream");
  for (let k = 0; k < 3; k++) {
    const b = byInstance(flush(host));
    assert.deepEqual(Object.keys(b), ["solo/s"], `interval ${k}: the held stream's instance only`);
    assert.equal(b["solo/s"]!.in_flight, 1);
    assert.equal(b["solo/s"]!.requests, 0, "nothing completed yet");
  }
  // A completed request elsewhere carries its own count (0 in flight) beside the held one.
  send(host, "llm", { status: 200 });
  let b = byInstance(flush(host));
  assert.equal(b["solo/s"]!.in_flight, 1);
  const used = Object.keys(b).find((k) => k.startsWith("llm/"))!;
  assert.equal(b[used]!.in_flight, 0);
  assert.equal(b[used]!.requests, 1);
  // The stream ends (here without an upstream answer, so nothing else is counted): reported once at 0.
  s.finish();
  b = byInstance(flush(host));
  assert.deepEqual(Object.keys(b), ["solo/s"]);
  assert.equal(b["solo/s"]!.in_flight, 0);
  host.advance(3000);
  assert.equal(telemetryCalls(host).length, 0, "nothing in flight, nothing counted: no batch");
  host.shutdown();
});
