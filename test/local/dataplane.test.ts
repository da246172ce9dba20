// The local data plane (envoy/local/dataplane.ts): build/plugin.wasm on the test host in front of a Node
// forwarder, with a real Redis, a real control service and mock OpenAI-compatible instances on 127.0.0.1.
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, test } from "node:test";
import type { LocalDataPlane } from "../../envoy/local/dataplane.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { chat, dataplane, deploy, mocks, served, server, startEnv, waitFor, type Env } from "./support.js";

let env: Env;
let dp: LocalDataPlane;
let saas: Awaited<ReturnType<typeof server>>;

before(async () => {
  env = await startEnv();
  saas = await server(env, (_req, res) => {
    res.writeHead(200, { "content-type": "application/json", "x-upstream": "saas" });
    res.end(JSON.stringify({ id: "saas-1", object: "chat.completion", choices: [] }));
  });
  dp = await dataplane(env, { passthroughUrl: saas.url, workers: 2 });
});

after(async () => {
  await env?.stop();
});

describe("local data plane", { timeout: 45_000 }, () => {
  test("round robin spreads requests evenly over 4 instances (body-routed)", async () => {
    const ms = await mocks(env, "rr-model", 4);
    await deploy(env, "rr-model", ms.map((m) => m.url));
    for (let i = 0; i < 40; i++) {
      const r = await chat(dp, "rr-model", { headers: { "x-test": "rr" } });
      assert.equal(r.status, 200, r.text);
      assert.match(r.text, /hi from rr-model/);
    }
    assert.deepEqual(ms.map((m) => served(m, "rr")), [10, 10, 10, 10]);
  });

  test("weights 3:1 give a 3:1 split", async () => {
    const ms = await mocks(env, "wrr-model", 2);
    await deploy(env, "wrr-model", ms.map((m) => m.url), { strategy: "weighted_round_robin", weights: [3, 1] });
    for (let i = 0; i < 40; i++) {
      const r = await chat(dp, "wrr-model", { headers: { "x-test": "wrr", "x-model": "wrr-model" } });
      assert.equal(r.status, 200, r.text);
    }
    assert.deepEqual(ms.map((m) => served(m, "wrr")), [30, 10]);
  });

  test("instances with API keys: each gets its own key in place of the client's, and requests succeed", async () => {
    const keys = ["sk-upstream-a", "sk-upstream-b"];
    const ms: MockOpenAI[] = [];
    for (const apiKey of keys) ms.push(await startMockOpenAI({ model: "keyed-model", apiKey, reply: "hi from keyed-model" }));
    env.mocks.push(...ms);
    await deploy(env, "keyed-model", ms.map((m) => m.url), { instances: keys.map((api_key) => ({ api_key })) });
    for (let i = 0; i < 20; i++) {
      const r = await chat(dp, "keyed-model", { headers: { "x-test": "keyed", ...(i % 2 === 0 ? { authorization: "Bearer sk-client-key" } : {}) } });
      assert.equal(r.status, 200, r.text);
    }
    assert.deepEqual(ms.map((m) => served(m, "keyed")), [10, 10]);
    ms.forEach((m, k) => {
      const seen = new Set(m.requests.filter((q) => q.headers["x-test"] === "keyed").map((q) => q.headers.authorization));
      assert.deepEqual([...seen], [`Bearer ${keys[k]}`], "the instance's own key, never the client's or another instance's");
    });
  });

  test("unmanaged models pass through to the passthrough upstream untouched, minus our internal headers", async () => {
    const body = '{"model":"gpt-4o","messages":[{"role":"user","content":"héllo"}],  "temperature": 0.5}';
    const res = await fetch(`${dp.url}/v1/chat/completions?api-version=1`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        authorization: "Bearer sk-client-key",
        "x-custom": "kept",
        "x-gateway-destination-endpoint": "203.0.113.1:80",
        "x-gateway-cluster": "gw.evil",
        "x-model-instance": "evil",
      },
      body,
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-upstream"), "saas");
    assert.equal(JSON.parse(await res.text()).id, "saas-1");
    const got = saas.requests.at(-1)!;
    assert.equal(got.method, "POST");
    assert.equal(got.url, "/v1/chat/completions?api-version=1");
    assert.equal(got.body.toString("utf8"), body);
    assert.equal(got.headers.authorization, "Bearer sk-client-key");
    assert.equal(got.headers["x-custom"], "kept");
    assert.equal(got.headers["content-type"], "application/json");
    assert.equal(got.headers["content-length"], String(Buffer.byteLength(body)));
    for (const h of ["x-gateway-destination-endpoint", "x-gateway-cluster", "x-model-instance", "x-model-deployment"]) {
      assert.equal(got.headers[h], undefined, `${h} must not reach the passthrough upstream`);
    }
  });

  test("without a passthrough upstream an unmanaged model gets a 404 JSON model_not_found", async () => {
    const bare = await dataplane(env, {});
    await waitFor(() => bare.tableVersion() > 0, 10_000, "table");
    const r = await chat(bare, "not-managed");
    assert.equal(r.status, 404);
    assert.match(String(r.headers.get("content-type")), /^application\/json/);
    assert.equal(JSON.parse(r.text).error.code, "model_not_found");
  });

  test("local replies of the plugin reach the client (invalid JSON body → 400)", async () => {
    const res = await fetch(`${dp.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"model": "rr-model",' });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error.code, "invalid_json");
  });

  test("a body-routed request sent in pieces is buffered, routed and arrives whole", async () => {
    const ms = await mocks(env, "body-model", 1);
    await deploy(env, "body-model", [ms[0]!.url]);
    const pad = "x".repeat(200_000);
    const parts = ['{"messages":[{"role":"user","content":"', pad, '"}],', '"model":"body-model"}'];
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request(`${dp.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", "x-test": "body" } }, (res) => {
        let t = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (t += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text: t }));
      });
      req.on("error", reject);
      let i = 0;
      const next = () => {
        if (i === parts.length) return req.end();
        req.write(parts[i++]!, () => setImmediate(next));
      };
      next();
    });
    assert.equal(status, 200, text);
    const got = ms[0]!.requests.filter((r) => r.headers["x-test"] === "body");
    assert.equal(got.length, 1);
    assert.equal(got[0]!.body, parts.join(""));
    assert.equal(got[0]!.headers["x-gateway-cluster"], "gw.dep-body-model");
  });

  test("SSE streams pass through unbuffered: the client has the first chunk before the upstream ends", async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let upstreamEnded = false;
    const sse = await server(env, (req, res, body) => {
      const path = (req.url ?? "").split("?")[0];
      if (path === "/health") return res.end("ok");
      if (path === "/v1/models") {
        res.writeHead(200, { "content-type": "application/json" });
        return res.end(JSON.stringify({ object: "list", data: [{ id: "sse-model", object: "model" }] }));
      }
      const parsed = JSON.parse(body.toString("utf8")) as { stream?: boolean };
      if (!parsed.stream) {
        res.writeHead(200, { "content-type": "application/json" });
        return res.end(JSON.stringify({ id: "c", object: "chat.completion", model: "sse-model", choices: [{ index: 0, message: { role: "assistant", content: "Hi" }, finish_reason: "length" }] }));
      }
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.write('data: {"choices":[{"delta":{"content":"first"}}]}\n\n');
      void released.then(() => {
        res.write('data: {"choices":[{"delta":{"content":" second"}}]}\n\n');
        res.end("data: [DONE]\n\n");
        upstreamEnded = true;
      });
    });
    await deploy(env, "sse-model", [`${sse.url}/v1`]);
    const res = await fetch(`${dp.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "sse-model", stream: true, messages: [{ role: "user", content: "hi" }] }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    const first = await reader.read();
    assert.equal(first.done, false);
    assert.match(dec.decode(first.value), /"first"/);
    assert.equal(upstreamEnded, false, "the first chunk arrived while the upstream was still streaming");
    release();
    let rest = "";
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      rest += dec.decode(r.value, { stream: true });
    }
    assert.equal(upstreamEnded, true);
    assert.match(rest, /" second"/);
    assert.match(rest, /\[DONE\]/);
  });

  test("an instance killed: zero failed non-streaming requests while another is healthy (retry to the next host)", async () => {
    const ms = await mocks(env, "kill-model", 2);
    await deploy(env, "kill-model", ms.map((m) => m.url));
    const ejections = () => dp.host.metrics.get("gateway.passive.ejections")?.value ?? 0;
    const before = ejections();
    await ms[0]!.stop(); // connections to it are refused from now on
    const results = [];
    for (let i = 0; i < 20; i++) results.push(await chat(dp, "kill-model", { headers: { "x-test": "kill" } }));
    results.push(...(await Promise.all(Array.from({ length: 20 }, () => chat(dp, "kill-model", { headers: { "x-test": "kill" } })))));
    assert.deepEqual(results.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.text}`), []);
    assert.equal(served(ms[1]!, "kill"), 40);
    // The connect failures reached the plugin (upstream.address after the retry): it ejected the instance.
    assert.ok(ejections() > before, "the plugin passively ejected the dead instance");
  });

  test("every instance down: Envoy's 503 (UF) reaches the client and the plugin, which then ejects them (on_unavailable fail)", async () => {
    const ms = await mocks(env, "dead-model", 1);
    await deploy(env, "dead-model", [ms[0]!.url]);
    await ms[0]!.stop();
    const first = await chat(dp, "dead-model", { headers: { "x-model": "dead-model" } });
    assert.equal(first.status, 503);
    assert.match(String(first.headers.get("content-type")), /^application\/json/);
    assert.equal(JSON.parse(first.text).error.code, "upstream_connect_error");
    assert.match(first.text, /upstream connect error or disconnect\/reset before headers. reset reason: connection failure/);
    // passive_failures (3) connect failures per worker (2 workers, round robin) → the plugin's own 503.
    const codes: string[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await chat(dp, "dead-model", { headers: { "x-model": "dead-model" } });
      codes.push(r.status === 503 && r.text.includes("no_eligible_instance") ? "plugin" : r.status === 503 ? "envoy" : String(r.status));
    }
    assert.deepEqual(codes.slice(-2), ["plugin", "plugin"], codes.join(","));
  });

  test("a client that goes away mid-stream closes the upstream request too", async () => {
    let upstreamClosed = false;
    let firstWritten!: () => void;
    const written = new Promise<void>((r) => (firstWritten = r));
    const sse = await server(env, (req, res, body) => {
      const path = (req.url ?? "").split("?")[0];
      if (path === "/health") return res.end("ok");
      if (path === "/v1/models") {
        res.writeHead(200, { "content-type": "application/json" });
        return res.end(JSON.stringify({ object: "list", data: [{ id: "gone-model", object: "model" }] }));
      }
      if (!(JSON.parse(body.toString("utf8")) as { stream?: boolean }).stream) {
        res.writeHead(200, { "content-type": "application/json" });
        return res.end(JSON.stringify({ id: "c", object: "chat.completion", model: "gone-model", choices: [{ index: 0, message: { role: "assistant", content: "Hi" }, finish_reason: "length" }] }));
      }
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: {}\n\n", () => firstWritten());
      res.on("close", () => (upstreamClosed = true)); // never ends on its own
    });
    await deploy(env, "gone-model", [`${sse.url}/v1`]);
    const ac = new AbortController();
    const res = await fetch(`${dp.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "gone-model", stream: true, messages: [] }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    await written;
    ac.abort();
    await waitFor(() => upstreamClosed, 5_000, "the upstream request to be closed");
  });

  test("the plugin's telemetry reaches the control service", async () => {
    await waitFor(() => dp.bridge.calls.some((c) => c.path === "/v1/telemetry" && c.status === 200), 10_000, "a telemetry batch accepted by the control service");
    const r = await env.api("GET", "/v1/deployments/dep-rr-model");
    assert.equal(r.status, 200);
    await waitFor(
      async () => {
        const d = (await env.api("GET", "/v1/deployments/dep-rr-model")).body;
        return d.instances.every((i: { health?: { requests?: number } }) => (i.health?.requests ?? 0) >= 10);
      },
      10_000,
      "request counts per instance in the control service",
    );
  });
});
