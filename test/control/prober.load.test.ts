// Engine load signals (issue 18, control/src/health/load.ts): /metrics parsing, the bounded scrape, and
// through a real replica and Redis: scores reach the routing table, a failed scrape never ejects, and
// load-only changes are coalesced (many probes → at most one table version per LOAD_PUBLISH_MS).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { learnCapacity, loadScore, MAX_METRICS_BYTES, parseLoadMetrics, parseLoadHash } from "../../control/src/health/load.js";
import { createConnectivityTester } from "../../control/src/connectivity/tester.js";
import type { RedisServer } from "../support/redis.js";
import { registerModel, startReplica, table, waitFor, withRedis, type Replica } from "./harness.js";

const VLLM = `# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 12.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="1",model_name="m"} 2
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.7
vllm:num_requests_waiting_total_ignored 99
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="m"} 4.0
`;

describe("load signals: parsing", () => {
  test("vLLM: waiting and running summed over series, KV usage averaged; score = waiting + KV", () => {
    const s = parseLoadMetrics(VLLM);
    assert.deepEqual(s, { engine: "vllm", waiting: 5, running: 12, kv: 0.6 });
    assert.equal(loadScore(s!), 5.6);
  });
  test("vLLM before 0.9: gpu_cache_usage_perc; timestamps and label values with braces", () => {
    const s = parseLoadMetrics('vllm:num_requests_waiting{model_name="a}b\\"c"} 0 1700000000000\nvllm:gpu_cache_usage_perc{model_name="m"} 0.25\n');
    assert.deepEqual(s, { engine: "vllm", waiting: 0, running: 0, kv: 0.25 });
    assert.equal(loadScore(s!), 0.25);
  });
  test("SGLang and TGI names", () => {
    assert.deepEqual(parseLoadMetrics('sglang:num_queue_reqs{model_name="m"} 4\nsglang:num_running_reqs{model_name="m"} 9\nsglang:token_usage{model_name="m"} 0.28\n'), { engine: "sglang", waiting: 4, running: 9, kv: 0.28 });
    const tgi = parseLoadMetrics("tgi_queue_size 7\ntgi_batch_current_size 3\n");
    assert.deepEqual(tgi, { engine: "tgi", waiting: 7, running: 3, kv: null });
    assert.equal(loadScore(tgi!), 7);
  });
  test("capacity: the running count while requests wait; otherwise at least the most seen running", () => {
    const s = (running: number, waiting: number) => ({ engine: "vllm" as const, running, waiting, kv: 0.5 });
    assert.equal(learnCapacity(undefined, s(0, 0)), undefined, "nothing seen running: unknown");
    assert.equal(learnCapacity(undefined, s(3, 0)), 3, "it ran 3 at once: at least 3");
    assert.equal(learnCapacity(3, s(2, 0)), 3, "running fewer without a queue says nothing new");
    assert.equal(learnCapacity(3, s(7, 0)), 7);
    assert.equal(learnCapacity(12, s(4, 2)), 4, "requests wait while 4 run: 4 is all it runs now (KV-bound)");
    assert.equal(learnCapacity(4, s(0, 5)), 4, "a queue with nothing running (engine stalled) changes nothing");
    assert.equal(learnCapacity(undefined, s(1e9, 1)), 100_000, "capped by the contract");
    assert.equal(learnCapacity(undefined, s(2.6, 0)), 3, "an integer");
  });
  test("stored load entries: a capacity out of range is dropped, the score kept", () => {
    const entry = (capacity: unknown) => JSON.stringify({ score: 1, at_ms: 5, interval_ms: 1000, capacity });
    const m = parseLoadHash({ "d/a": entry(12), "d/b": entry(0), "d/c": entry(1.5), "d/e": entry("12"), "d/f": entry(100_001) });
    assert.deepEqual(m.get("d/a"), { score: 1, at_ms: 5, interval_ms: 1000, capacity: 12 });
    for (const k of ["d/b", "d/c", "d/e", "d/f"]) assert.deepEqual(m.get(k), { score: 1, at_ms: 5, interval_ms: 1000 }, k);
  });
  test("unknown engine, garbage, negative or non-numeric values → no signal", () => {
    for (const text of ["", "ollama_whatever 3\n", "\u0000\u0001garbage{{{", "vllm:num_requests_waiting NaN\n", "vllm:num_requests_waiting -1\n",
      "vllm:num_requests_waiting{model_name=\"m\" 3\n", "vllm:num_requests_waiting\n", "vllm:num_requests_waiting abc\n", "<html>502 Bad Gateway</html>"]) {
      assert.equal(parseLoadMetrics(text), null, JSON.stringify(text));
    }
  });
  test("a huge body parses in bounded time and the scrape refuses a body over MAX_METRICS_BYTES", async () => {
    const big = "x_unrelated_metric 1\n".repeat(40_000) + "vllm:num_requests_waiting 1\n";
    const t0 = performance.now();
    assert.equal(parseLoadMetrics(big)?.waiting, 1);
    assert.ok(performance.now() - t0 < 2_000);
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("vllm:num_requests_waiting 1\n" + "#".repeat(MAX_METRICS_BYTES + 10));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as AddressInfo).port;
      const tester = createConnectivityTester({ timeoutMs: 1000, allowLinkLocal: false });
      const r = await tester.scrapeMetrics!({ scheme: "http", host: "127.0.0.1", port, base_path: "/v1" }, { timeoutMs: 1000, maxBytes: MAX_METRICS_BYTES, apiKey: null });
      assert.deepEqual(r, { ok: false, error: "too_large" });
    } finally {
      server.close();
    }
  });
});

type Inst = { id: string; state: string; load?: { score: number; at_ms: number; interval_ms: number; capacity?: number } };
const instancesOf = async (c: Replica, dep: string): Promise<Inst[]> => (await table(c.api)).deployments.find((d: { id: string }) => d.id === dep)?.instances ?? [];

describe("load signals: prober → routing table", () => {
  let redis: RedisServer;
  let a: Replica;
  let busy: MockOpenAI;
  let idle: MockOpenAI;
  let noMetrics: MockOpenAI;
  const PUBLISH_MS = 400;

  before(async () => {
    redis = await withRedis();
    busy = await startMockOpenAI({ model: "ls-model", maxNumSeqs: 1 });
    idle = await startMockOpenAI({ model: "ls-model" });
    noMetrics = await startMockOpenAI({ model: "ls-model", engine: "generic" }); // /metrics → 404
    a = await startReplica(redis.url, { REPLICA_ID: "load-a", LOAD_PUBLISH_MS: String(PUBLISH_MS) });
    await registerModel(a.api, "ls-model");
    const r = await a.api("POST", "/v1/deployments", {
      body: {
        id: "ls", model: "ls-model", strategy: "load_aware", load_signals: true,
        health_check: { interval_seconds: 0.05, timeout_seconds: 0.5, unhealthy_threshold: 2, healthy_threshold: 1 },
        instances: [{ id: "busy", url: busy.url }, { id: "idle", url: idle.url }, { id: "nometrics", url: noMetrics.url }],
      },
    });
    assert.equal(r.status, 201, r.text);
  });
  after(async () => {
    await a.stop();
    await busy.close();
    await idle.close();
    await noMetrics.close();
    await redis.close();
  });

  test("scores reach the table; an instance without /metrics has none and is never ejected for it", async () => {
    // busy: 1 slot, 4 slow generations → 3 waiting.
    busy.set({ tokensPerSecond: 1 }); // 3 tokens: 3 s in the one slot each
    const gens = Array.from({ length: 4 }, () => fetch(`${busy.url}/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "ls-model", messages: [{ role: "user", content: "hi" }], max_tokens: 3 }) }).then((r) => r.text()).catch(() => null));
    // Scores written while the publish throttle is held ride the next version: wait for both to be out.
    await waitFor(
      async () => {
        const now = await instancesOf(a, "ls");
        return (now.find((i) => i.id === "busy")?.load?.score ?? 0) >= 3 && now.find((i) => i.id === "idle")?.load !== undefined;
      },
      5_000,
      "busy's score ≥ 3 and idle's score in the table",
    );
    const insts = await instancesOf(a, "ls");
    const by = Object.fromEntries(insts.map((i) => [i.id, i]));
    assert.ok(by.idle!.load !== undefined && by.idle!.load.score < 1, JSON.stringify(by.idle));
    assert.equal(by.busy!.load!.interval_ms, PUBLISH_MS); // max(probe interval 50 ms, publish interval)
    assert.equal(by.busy!.load!.capacity, 1, "one running while three wait: one slot");
    assert.ok(Math.abs(by.busy!.load!.at_ms - Date.now()) < 5_000);
    assert.equal(by.nometrics!.load, undefined);
    assert.equal(by.nometrics!.state, "active");
    busy.set({ tokensPerSecond: 0 });
    await Promise.all(gens);
  });

  test("a failing scrape never ejects, never fails a probe (metrics 404/garbage while /health passes)", async () => {
    const before = noMetrics.requests.filter((q) => q.path === "/metrics").length;
    await waitFor(() => noMetrics.requests.filter((q) => q.path === "/metrics").length - before >= 10, 5_000, "10 failed scrapes");
    const d = (await a.api("GET", "/v1/deployments/ls")).body;
    assert.deepEqual(d.instances.map((i: { state: string }) => i.state), ["active", "active", "active"]);
    const ev = (await a.api("GET", "/v1/deployments/ls/instances/nometrics/events")).body;
    const types = (ev.events ?? ev.data ?? ev ?? []).map?.((e: { type: string }) => e.type) ?? [];
    assert.ok(!types.includes("ejected") && !types.includes("probe_failed"), JSON.stringify(types));
  });

  test("load_signals off (PATCH): no score in the table any more, and no scrape", async () => {
    const r = await a.api("PATCH", "/v1/deployments/ls", { body: { load_signals: false } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.load_signals, false);
    await waitFor(async () => (await instancesOf(a, "ls")).every((i) => i.load === undefined), 5_000, "scores gone");
    const n = idle.requests.filter((q) => q.path === "/metrics").length;
    const h = idle.requests.filter((q) => q.path === "/health").length;
    await waitFor(() => idle.requests.filter((q) => q.path === "/health").length - h >= 5, 5_000, "5 more probes");
    assert.ok(idle.requests.filter((q) => q.path === "/metrics").length - n <= 1, "no scrapes while off");
    const on = await a.api("PATCH", "/v1/deployments/ls", { body: { load_signals: true } });
    assert.equal(on.status, 200, on.text);
    await waitFor(async () => (await instancesOf(a, "ls")).some((i) => i.load !== undefined), 5_000, "scores back");
  });

  test("coalesced: many scrapes → at most one table version per LOAD_PUBLISH_MS", async () => {
    const scrapes = () => busy.requests.filter((q) => q.path === "/metrics").length + idle.requests.filter((q) => q.path === "/metrics").length;
    const v0 = (await table(a.api)).version as number;
    const s0 = scrapes();
    const t0 = Date.now();
    await waitFor(() => scrapes() - s0 >= 60, 10_000, "60 scrapes");
    const elapsed = Date.now() - t0;
    const v1 = (await table(a.api)).version as number;
    const versions = (v1 - v0) / 2; // complete tables have even versions
    assert.ok(v1 > v0, "load changes were published");
    assert.ok(versions <= Math.ceil(elapsed / PUBLISH_MS) + 1, `${versions} versions for ${scrapes() - s0} scrapes in ${elapsed} ms`);
    assert.ok(versions < (scrapes() - s0) / 4, `not a version per probe: ${versions} versions, ${scrapes() - s0} scrapes`);
  });
});
