// The connectivity test against mock instances: passing, wrong model, refusing, hanging, 5xx; engines.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createConnectivityTester } from "../../control/src/connectivity/tester.js";
import { closedPortUrl, startMockOpenAI, type MockEngine, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import type { RedisServer } from "../support/redis.js";
import { PLUGIN, registerModel, startReplica, withRedis, type Replica } from "./harness.js";

const target = (url: string) => {
  const u = new URL(url);
  return { scheme: "http" as const, host: u.hostname, port: Number(u.port), base_path: u.pathname };
};

describe("connectivity test", () => {
  const mocks: MockOpenAI[] = [];
  const tester = createConnectivityTester({ timeoutMs: 300, allowLinkLocal: false });
  const mock = async (o: Parameters<typeof startMockOpenAI>[0]) => {
    const m = await startMockOpenAI(o);
    mocks.push(m);
    return m;
  };
  after(async () => {
    for (const m of mocks) await m.close();
  });

  test("passes against a serving instance and recognises the engine", async () => {
    for (const engine of ["vllm", "sglang", "tgi", "ollama"] as MockEngine[]) {
      const m = await mock({ model: "llama3", engine });
      const r = await tester.test(target(m.url), { model: "llama3", apiKey: null });
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.equal(r.engine, engine);
      assert.equal(r.error, null);
      assert.ok(r.latency_ms.models !== null && r.latency_ms.completion !== null && r.latency_ms.total >= 0);
      assert.deepEqual(r.models_served, ["llama3"]);
    }
    const generic = await mock({ model: "llama3", engine: "generic" });
    assert.equal((await tester.test(target(generic.url), { model: "llama3", apiKey: null })).engine, null);
  });

  test("measures latency", async () => {
    const m = await mock({ model: "slowish", latencyMs: 60 });
    const patient = createConnectivityTester({ timeoutMs: 3000, allowLinkLocal: false });
    const r = await patient.test(target(m.url), { model: "slowish", apiKey: null });
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.ok(r.latency_ms.models! >= 55 && r.latency_ms.completion! >= 55, JSON.stringify(r.latency_ms));
  });

  test("fails when the instance serves another model", async () => {
    const m = await mock({ model: "llama3", mode: "wrong_model" });
    const r = await tester.test(target(m.url), { model: "llama3", apiKey: null });
    assert.equal(r.ok, false);
    assert.equal(r.error?.code, "wrong_model");
    assert.deepEqual(r.models_served, ["llama3-other"]);
    assert.ok(!m.requests.some((q) => q.path.endsWith("/chat/completions")), "no completion is attempted for the wrong model");
  });

  test("fails fast when connections are refused", async () => {
    const r = await tester.test(target(await closedPortUrl()), { model: "x", apiKey: null });
    assert.equal(r.ok, false);
    assert.equal(r.error?.code, "refused");
    assert.ok(r.latency_ms.total < 300);
  });

  test("times out when the instance hangs", async () => {
    const m = await mock({ model: "x", mode: "hang" });
    const t0 = performance.now();
    const r = await tester.test(target(m.url), { model: "x", apiKey: null });
    const took = performance.now() - t0;
    assert.equal(r.ok, false);
    assert.equal(r.error?.code, "timeout");
    assert.ok(took >= 290 && took < 1500, `took ${took} ms`);
  });

  test("fails on 5xx and on a missing or wrong API key", async () => {
    const m = await mock({ model: "x", mode: "error_5xx" });
    assert.equal((await tester.test(target(m.url), { model: "x", apiKey: null })).error?.code, "http_error");
    const k = await mock({ model: "x", apiKey: "right-key" });
    assert.equal((await tester.test(target(k.url), { model: "x", apiKey: "wrong-key" })).error?.code, "http_error");
    assert.equal((await tester.test(target(k.url), { model: "x", apiKey: "right-key" })).ok, true);
  });

  test("streams like an OpenAI server (mock used by e2e tests)", async () => {
    const m = await mock({ model: "s", reply: "Hello there friend" });
    const r = await fetch(`${m.url}/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "s", stream: true, messages: [] }) });
    assert.equal(r.headers.get("content-type"), "text/event-stream; charset=utf-8", "as vLLM's (Starlette's) StreamingResponse sends it");
    const text = await r.text();
    assert.ok(text.trim().endsWith("data: [DONE]"));
    const content = text.split("\n\n").filter((l) => l.startsWith("data: {")).map((l) => JSON.parse(l.slice(6)).choices[0].delta.content ?? "").join("");
    assert.equal(content, "Hello there friend");
    assert.equal((await fetch(`http://127.0.0.1:${m.port}/health`)).status, 200);
  });
});

describe("connectivity test through the API", () => {
  let redis: RedisServer;
  let c: Replica;
  const mocks: MockOpenAI[] = [];
  before(async () => {
    redis = await withRedis();
    c = await startReplica(redis.url, { CONNECTIVITY_TIMEOUT_MS: "300" });
  });
  after(async () => {
    await c.stop();
    for (const m of mocks) await m.close();
    await redis.close();
  });

  test("only passing instances enter the pool; each result is visible on the deployment", async () => {
    const good = await startMockOpenAI({ model: "engine-name", engine: "sglang" });
    const wrong = await startMockOpenAI({ model: "engine-name", mode: "wrong_model" });
    const hang = await startMockOpenAI({ model: "engine-name", mode: "hang" });
    mocks.push(good, wrong, hang);
    await registerModel(c.api, "client-name", { served_name: "engine-name" });
    const r = await c.api("POST", "/v1/deployments", {
      body: {
        id: "mixed",
        model: "client-name",
        instances: [
          { id: "good", url: good.url },
          { id: "wrong", url: wrong.url },
          { id: "refused", url: await closedPortUrl() },
          { id: "hang", url: hang.url },
        ],
      },
    });
    assert.equal(r.status, 201, r.text);
    const byId = Object.fromEntries(r.body.instances.map((i: { id: string }) => [i.id, i]));
    assert.equal(byId.good.state, "active");
    assert.equal(byId.good.last_check.engine, "sglang");
    assert.equal(byId.wrong.state, "unreachable");
    assert.equal(byId.wrong.last_check.error.code, "wrong_model");
    assert.equal(byId.refused.state, "unreachable");
    assert.equal(byId.refused.last_check.error.code, "refused");
    assert.equal(byId.hang.state, "unreachable");
    assert.equal(byId.hang.last_check.error.code, "timeout");
    // served_name is what the engine was asked for.
    assert.equal(JSON.parse(good.requests.find((q) => q.path === "/v1/chat/completions")!.body).model, "engine-name");
    const t = (await c.api("GET", "/v1/routing-table", { token: PLUGIN })).body;
    assert.deepEqual(t.deployments[0].instances.map((i: { id: string }) => i.id), ["good"]);
    assert.equal(t.models["client-name"], "mixed");
  });

  test("an unreachable instance can be re-tested once fixed", async () => {
    const wrong = mocks[1]!;
    wrong.set({ mode: "ok" });
    const r = await c.api("POST", "/v1/deployments/mixed/instances/wrong/test");
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.instances.find((i: { id: string }) => i.id === "wrong").state, "active");
    const t = (await c.api("GET", "/v1/routing-table", { token: PLUGIN })).body;
    assert.deepEqual(t.deployments[0].instances.map((i: { id: string }) => i.id).sort(), ["good", "wrong"]);
  });
});
