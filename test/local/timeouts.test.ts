// Upstream timeouts of the local data plane (envoy/local/dataplane.ts), as envoy/bootstrap.yaml's route
// sets them in Envoy (retry_policy.per_try_idle_timeout: the wait for the response headers once the request
// is sent, and every gap between response body chunks), shortened here through LocalDataPlaneOptions:
// an instance that never answers → JSON 504 within the first-byte timeout, counted by the plugin's passive
// ejection (flag UT); before any response byte a timed-out attempt goes to the next listed instance; a token
// stream whose gaps stay under the idle timeout is not cut, one that stalls longer is.
import assert from "node:assert/strict";
import type { IncomingMessage, ServerResponse } from "node:http";
import { after, before, describe, test } from "node:test";
import type { LocalDataPlane } from "../../envoy/local/dataplane.js";
import { dataplane, deploy, server, startEnv, waitFor, type Env } from "./support.js";

const FIRST_BYTE_MS = 1_000;
const IDLE_MS = 1_000;

let env: Env;
let dp: LocalDataPlane;

before(async () => {
  env = await startEnv();
  dp = await dataplane(env, {
    firstByteTimeoutMs: FIRST_BYTE_MS,
    idleTimeoutMs: IDLE_MS,
    // Two consecutive failures eject an instance from this (single) worker.
    pluginConfig: { telemetry_interval_ms: 200, poll_interval_ms: 100, long_poll_seconds: 5, control_timeout_ms: 6000, passive_failures: 2, passive_cooldown_ms: 60_000 },
  });
  await waitFor(() => dp.tableVersion() > 0, 10_000, "the first table");
});

after(async () => {
  await env?.stop();
});

const metric = (name: string) => dp.host.metrics.get(name)?.value ?? 0;

/**
 * An OpenAI-compatible instance for `model` (it passes the control service's connectivity test); chat
 * completions carrying `x-test` are answered by `behave` instead.
 */
async function instance(model: string, behave: (req: IncomingMessage, res: ServerResponse) => void) {
  return server(env, (req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path === "/health") return res.end("ok");
    if (path === "/v1/models") {
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify({ object: "list", data: [{ id: model, object: "model" }] }));
    }
    if (req.headers["x-test"] !== undefined) return behave(req, res);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ id: "c", object: "chat.completion", model, choices: [{ index: 0, message: { role: "assistant", content: "pong" }, finish_reason: "stop" }] }));
  });
}

const hang = () => {
  // accepts and reads the request, never answers
};

/** Answers an SSE token stream, one event after each gap (ms) of the `x-gaps` header, then [DONE]. */
const gaps = (req: IncomingMessage, res: ServerResponse) => {
  const list = String(req.headers["x-gaps"] ?? "").split(",").filter(Boolean).map(Number);
  res.writeHead(200, { "content-type": "text/event-stream" });
  res.write(`data: {"choices":[{"delta":{"content":"t0"}}]}\n\n`);
  let i = 0;
  const next = () => {
    if (res.destroyed) return;
    if (i === list.length) return res.end("data: [DONE]\n\n");
    setTimeout(() => {
      if (res.destroyed) return;
      res.write(`data: {"choices":[{"delta":{"content":"t${++i}"}}]}\n\n`);
      next();
    }, list[i]);
  };
  next();
};

async function chat(model: string, headers: Record<string, string>, stream = false) {
  const t0 = Date.now();
  const res = await fetch(`${dp.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], ...(stream ? { stream: true } : {}) }),
  });
  let text = "";
  let error: string | null = null;
  const dec = new TextDecoder();
  try {
    const reader = res.body!.getReader();
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      text += dec.decode(r.value, { stream: true });
    }
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    error = err.cause?.code ?? err.message;
  }
  return { status: res.status, contentType: res.headers.get("content-type"), text, error, ms: Date.now() - t0 };
}

describe("local data plane: upstream timeouts", { timeout: 60_000 }, () => {
  test("an instance that accepts and never answers → JSON 504 upstream_timeout within the first-byte timeout; passive ejection counts it", async () => {
    const silent = await instance("silent-model", hang);
    await deploy(env, "silent-model", [`${silent.url}/v1`]);
    const ejections0 = metric("gateway.passive.ejections");
    const timedOut = [];
    for (let i = 0; i < 2; i++) {
      const r = await chat("silent-model", { "x-test": "hang" });
      timedOut.push(r);
      assert.equal(r.status, 504, r.text);
      assert.match(String(r.contentType), /^application\/json/);
      const e = JSON.parse(r.text) as { error: { message: string; type: string; param: null; code: string } };
      assert.deepEqual(e, { error: { message: "upstream request timeout", type: "server_error", param: null, code: "upstream_timeout" } });
      assert.ok(r.ms >= FIRST_BYTE_MS - 50 && r.ms < FIRST_BYTE_MS + 1_500, `answered after ${r.ms} ms (first-byte timeout ${FIRST_BYTE_MS} ms)`);
    }
    console.log(`# never-answering instance: 504 after ${timedOut.map((r) => r.ms).join(", ")} ms (first-byte timeout ${FIRST_BYTE_MS} ms)`);
    assert.equal(silent.requests.filter((q) => q.headers["x-test"] === "hang").length, 2, "both requests reached the instance");
    // Two timeouts in a row (passive_failures 2): the plugin ejected the instance, so the next request gets
    // the plugin's own 503 (no eligible instance) without waiting.
    await waitFor(() => metric("gateway.passive.ejections") === ejections0 + 1, 2_000, "the passive ejection");
    const after = await chat("silent-model", { "x-test": "hang" });
    assert.equal(after.status, 503, after.text);
    assert.equal(JSON.parse(after.text).error.code, "no_eligible_instance");
    assert.ok(after.ms < FIRST_BYTE_MS, `${after.ms} ms`);
  });

  test("before any response byte a timed-out attempt goes on to the next listed instance (as Envoy retries a per-try timeout)", async () => {
    const silent = await instance("half-model", hang);
    const ok = await instance("half-model", (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ id: "c", object: "chat.completion", model: "half-model", choices: [{ index: 0, message: { role: "assistant", content: "answered by the second" }, finish_reason: "stop" }] }));
    });
    await deploy(env, "half-model", [`${silent.url}/v1`, `${ok.url}/v1`]);
    const rs = [await chat("half-model", { "x-test": "retry" }), await chat("half-model", { "x-test": "retry" })];
    console.log(`# [silent, ok] deployment: ${rs.map((r) => `${r.status} in ${r.ms} ms`).join(", ")}`);
    for (const r of rs) {
      assert.equal(r.status, 200, r.text);
      assert.match(r.text, /answered by the second/);
    }
    // Round robin put one of the two on the silent instance first: that one waited the first-byte timeout.
    assert.equal(silent.requests.filter((q) => q.headers["x-test"] === "retry").length, 1);
    assert.equal(ok.requests.filter((q) => q.headers["x-test"] === "retry").length, 2);
    assert.equal(rs.filter((r) => r.ms >= FIRST_BYTE_MS - 50).length, 1);
  });

  test("a token stream with gaps shorter than the idle timeout is not cut; a longer gap cuts it", async () => {
    const slow = await instance("slow-model", gaps);
    await deploy(env, "slow-model", [`${slow.url}/v1`]);
    const gap = Math.round(IDLE_MS * 0.4);
    const whole = await chat("slow-model", { "x-test": "gaps", "x-gaps": [gap, gap, gap, gap].join(",") }, true);
    assert.equal(whole.status, 200);
    assert.equal(whole.error, null);
    assert.match(whole.text, /t4[\s\S]*data: \[DONE\]/);
    assert.ok(whole.ms >= 4 * gap, `${whole.ms} ms`);

    const stalled = await chat("slow-model", { "x-test": "gaps", "x-gaps": [gap, IDLE_MS * 3, gap].join(",") }, true);
    console.log(`# slow stream: gaps of ${gap} ms → whole in ${whole.ms} ms; a ${IDLE_MS * 3} ms gap → cut after ${stalled.ms} ms (${stalled.error ?? "early end"})`);
    assert.equal(stalled.status, 200, "the head was already sent");
    assert.ok(stalled.error !== null || !stalled.text.includes("[DONE]"), "the client can tell the stream was cut");
    assert.match(stalled.text, /t1/);
    assert.doesNotMatch(stalled.text, /t2/);
    assert.ok(stalled.ms >= gap + IDLE_MS - 50 && stalled.ms < gap + IDLE_MS + 1_500, `cut after ${stalled.ms} ms`);
  });
});
