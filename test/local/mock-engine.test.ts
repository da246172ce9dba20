// The mock engine (envoy/local/mock-openai.ts) answers as vLLM's OpenAI-compatible server does: one served
// name, vLLM's 404 / 400 / 401 bodies, chat and text completions (streamed and not), embeddings, /metrics
// with vLLM's names that count what was served, /health, and a command line that prints its URL.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { request } from "node:http";
import { fileURLToPath } from "node:url";
import { mockTokens, startMockOpenAI, type MockOpenAI, type MockOptions } from "../../envoy/local/mock-openai.js";
import { waitFor } from "../support/redis.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MOCK = fileURLToPath(new URL("../../envoy/local/mock-openai.ts", import.meta.url));

const mocks: MockOpenAI[] = [];
after(async () => {
  for (const m of mocks) await m.close();
});
async function mock(o: Partial<MockOptions> = {}): Promise<MockOpenAI> {
  const m = await startMockOpenAI({ model: "served-llama", reply: "hi from served-llama #0", ...o });
  mocks.push(m);
  return m;
}
const origin = (m: MockOpenAI) => m.url.slice(0, -m.options.basePath.length);

async function post(m: MockOpenAI, path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${m.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, any> };
}

/** SSE events of a body: every event is `data: …\n\n`; the JSON ones parsed, "[DONE]" kept as a string. */
function events(text: string): (Record<string, any> | "[DONE]")[] {
  assert.ok(text.endsWith("\n\n"), "the stream ends with a complete event");
  return text.slice(0, -2).split("\n\n").map((e) => {
    assert.ok(e.startsWith("data: "), `an SSE data line: ${JSON.stringify(e)}`);
    const data = e.slice(6);
    return data === "[DONE]" ? "[DONE]" : (JSON.parse(data) as Record<string, any>);
  });
}

/** Samples of a Prometheus text: `name{labels}` → value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const sp = line.lastIndexOf(" ");
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}
async function metrics(m: MockOpenAI): Promise<{ text: string; get: (name: string, extra?: string) => number }> {
  const res = await fetch(`${origin(m)}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const s = samples(text);
  const model = m.options.model;
  return {
    text,
    get(name, extra) {
      const key = extra ? `${name}{engine="0",${extra},model_name="${model}"}` : `${name}{engine="0",model_name="${model}"}`;
      const v = s.get(key);
      assert.ok(v !== undefined, `sample ${key} exported`);
      return v;
    },
  };
}

const CHAT = { messages: [{ role: "user", content: "hi" }] };

describe("model list", () => {
  test("lists exactly the served name, in vLLM's shape", async () => {
    const m = await mock({ root: "meta-llama/Llama-3.1-8B-Instruct", maxModelLen: 4096 });
    const res = await fetch(`${m.url}/models`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/json");
    const body = (await res.json()) as { object: string; data: Record<string, any>[] };
    assert.equal(body.object, "list");
    assert.equal(body.data.length, 1);
    const card = body.data[0]!;
    assert.deepEqual(Object.keys(card), ["id", "object", "created", "owned_by", "root", "parent", "max_model_len", "permission"]);
    assert.equal(card.id, "served-llama");
    assert.equal(card.object, "model");
    assert.equal(card.owned_by, "vllm");
    assert.equal(card.root, "meta-llama/Llama-3.1-8B-Instruct");
    assert.equal(card.parent, null);
    assert.equal(card.max_model_len, 4096);
    assert.ok(Number.isInteger(card.created) && Math.abs(card.created - Date.now() / 1000) < 60);
    assert.equal(card.permission.length, 1);
    const perm = card.permission[0];
    assert.match(perm.id, /^modelperm-[0-9a-f]{32}$/);
    assert.deepEqual({ ...perm, id: "x", created: 0 }, {
      id: "x", object: "model_permission", created: 0, allow_create_engine: false, allow_sampling: true, allow_logprobs: true,
      allow_search_indices: false, allow_view: true, allow_fine_tuning: false, organization: "*", group: null, is_blocking: false,
    });
  });

  test("the card follows a renamed model; wrong_model serves another name", async () => {
    const m = await mock();
    m.set({ model: "renamed" });
    let card = ((await (await fetch(`${m.url}/models`)).json()) as { data: { id: string; root: string }[] }).data;
    assert.deepEqual(card.map((c) => [c.id, c.root]), [["renamed", "renamed"]]);
    m.set({ mode: "wrong_model" });
    card = ((await (await fetch(`${m.url}/models`)).json()) as { data: { id: string; root: string }[] }).data;
    assert.deepEqual(card.map((c) => c.id), ["renamed-other"]);
    assert.equal((await post(m, "/chat/completions", { model: "renamed", ...CHAT })).status, 404);
  });
});

describe("errors", () => {
  test("another model name gets vLLM's 404 on every endpoint", async () => {
    const m = await mock();
    for (const [path, body] of [
      ["/chat/completions", { model: "gpt-4o", ...CHAT }],
      ["/chat/completions", { model: "gpt-4o", ...CHAT, stream: true }],
      ["/completions", { model: "gpt-4o", prompt: "Say hi" }],
      ["/embeddings", { model: "gpt-4o", input: "hi" }],
    ] as const) {
      const r = await post(m, path, body);
      assert.equal(r.status, 404, path);
      assert.equal(r.headers.get("content-type"), "application/json");
      assert.deepEqual(r.json(), { error: { message: "The model `gpt-4o` does not exist.", type: "NotFoundError", param: "model", code: 404 } });
    }
    const before = (await metrics(m)).get("vllm:request_success_total", 'finished_reason="stop"');
    assert.equal(before, 0, "refused requests are not served");
  });

  test("a request without a model is served by the served name (vLLM's _check_model)", async () => {
    const m = await mock();
    const r = await post(m, "/chat/completions", CHAT);
    assert.equal(r.status, 200);
    assert.equal(r.json().model, "served-llama");
  });

  test("malformed bodies get vLLM's 400", async () => {
    const m = await mock();
    const missing = await post(m, "/chat/completions", { model: "served-llama" });
    assert.equal(missing.status, 400);
    assert.deepEqual(missing.json(), {
      error: {
        message: "1 validation error:\n  {'type': 'missing', 'loc': 'body.messages', 'msg': 'Field required', 'input': '<dict of 1 items>'}",
        type: "Bad Request",
        param: "body.messages",
        code: 400,
      },
    });
    const broken = await post(m, "/chat/completions", '{"model": "served-llama",');
    assert.equal(broken.status, 400);
    const e = broken.json().error;
    assert.deepEqual({ type: e.type, code: e.code, param: e.param }, { type: "Bad Request", code: 400, param: "body.25" });
    assert.match(e.message, /^1 validation error:\n {2}\{'type': 'json_invalid', 'loc': 'body\.25', 'msg': 'JSON decode error'/);
    const notList = await post(m, "/chat/completions", { messages: "hi" });
    assert.equal(notList.json().error.param, "body.messages");
    assert.match(notList.json().error.message, /'type': 'list_type'.*'msg': 'Input should be a valid list', 'input': 'hi'/);
    const badStream = await post(m, "/chat/completions", { ...CHAT, stream: "maybe" });
    assert.match(badStream.json().error.message, /'type': 'bool_parsing', 'loc': 'body.stream'/);
    const noPrompt = await post(m, "/completions", { model: "served-llama" });
    assert.equal(noPrompt.status, 400);
    assert.equal(noPrompt.json().error.param, "prompt");
    assert.match(noPrompt.json().error.message, /Either prompt or prompt_embeds must be provided and non-empty\./);
    const options = await post(m, "/chat/completions", { ...CHAT, stream_options: { include_usage: true } });
    assert.equal(options.status, 400);
    assert.equal(options.json().error.param, "stream_options");
    const tooLong = await post(m, "/chat/completions", { ...CHAT, max_tokens: 9000 });
    assert.equal(tooLong.status, 400);
    assert.deepEqual(tooLong.json().error, {
      message: "'max_tokens' or 'max_completion_tokens' is too large: 9000. This model's maximum context length is 8192 tokens and your request has 11 input tokens (9000 > 8192 - 11). (parameter=max_tokens, value=9000)",
      type: "BadRequestError",
      param: "max_tokens",
      code: 400,
    });
    const zero = await post(m, "/chat/completions", { ...CHAT, max_tokens: 0 });
    assert.equal(zero.json().error.param, "max_tokens");
  });

  test("with strictContentType, a body that is not application/json is refused like vLLM does", async () => {
    const lax = await mock();
    assert.equal((await post(lax, "/chat/completions", CHAT, { "content-type": "text/plain" })).status, 200, "lax by default (header-routed gateway requests)");
    const strict = await mock({ strictContentType: true });
    const r = await post(strict, "/chat/completions", CHAT, { "content-type": "text/plain" });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json(), { error: { message: "1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed", type: "Bad Request", param: null, code: 400 } });
    assert.equal((await post(strict, "/chat/completions", CHAT, { "content-type": "application/json; charset=utf-8" })).status, 200);
  });

  test("unknown routes and methods get FastAPI's answers; the API key gets vLLM's 401", async () => {
    const m = await mock({ apiKey: "sk-right" });
    const nf = await fetch(`${m.url}/nope`, { headers: { authorization: "Bearer sk-right" } });
    assert.equal(nf.status, 404);
    assert.deepEqual(await nf.json(), { detail: "Not Found" });
    const na = await fetch(`${m.url}/chat/completions`, { headers: { authorization: "Bearer sk-right" } });
    assert.equal(na.status, 405);
    assert.deepEqual(await na.json(), { detail: "Method Not Allowed" });
    for (const auth of [undefined, "Bearer sk-wrong", "Basic sk-right", "sk-right"]) {
      const r = await post(m, "/chat/completions", CHAT, auth ? { authorization: auth } : {});
      assert.equal(r.status, 401, String(auth));
      assert.deepEqual(r.json(), { error: "Unauthorized" });
    }
    assert.equal((await post(m, "/chat/completions", CHAT, { authorization: "bearer sk-right" })).status, 200, "the scheme is case-insensitive");
    assert.equal((await fetch(`${origin(m)}/health`)).status, 200, "/health is not guarded");
    assert.equal((await fetch(`${origin(m)}/metrics`)).status, 200, "/metrics is not guarded");
  });

  test("failure modes: error_5xx, unhealthy, hang", async () => {
    const m = await mock();
    const health = await fetch(`${origin(m)}/health`);
    assert.equal(health.status, 200);
    assert.equal(await health.text(), "", "vLLM's /health answers an empty 200");
    m.set({ mode: "unhealthy" });
    assert.equal((await fetch(`${origin(m)}/health`)).status, 503);
    assert.equal((await post(m, "/chat/completions", CHAT)).status, 200, "the API still works");
    m.set({ mode: "error_5xx" });
    const r = await post(m, "/chat/completions", CHAT);
    assert.equal(r.status, 500);
    assert.deepEqual(r.json(), { error: { message: "Internal server error", type: "InternalServerError", param: null, code: 500 } });
    m.set({ mode: "hang" });
    await assert.rejects(fetch(`${m.url}/models`, { signal: AbortSignal.timeout(200) }));
    m.set({ mode: "ok" });
    assert.equal((await fetch(`${m.url}/models`)).status, 200);
  });
});

describe("chat completions", () => {
  test("non-streamed: vLLM's ChatCompletionResponse", async () => {
    const m = await mock();
    const r = await post(m, "/chat/completions", { model: "served-llama", ...CHAT }, { "x-request-id": "req-42" });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-type"), "application/json");
    assert.equal(r.headers.get("server"), "uvicorn");
    const b = r.json();
    assert.equal(b.id, "chatcmpl-req-42", "the id carries X-Request-Id, as in vLLM");
    assert.equal(b.object, "chat.completion");
    assert.equal(b.model, "served-llama");
    assert.ok(Number.isInteger(b.created));
    assert.deepEqual(b.choices, [{
      index: 0,
      message: { role: "assistant", content: "hi from served-llama #0", refusal: null, annotations: null, audio: null, function_call: null, reasoning: null },
      logprobs: null,
      finish_reason: "stop",
      stop_reason: null,
      token_ids: null,
      routed_experts: null,
    }]);
    // 4 words + EOS; prompt: BOS + generation prompt (5) + one message (5 + 1 word).
    assert.deepEqual(b.usage, { prompt_tokens: 11, total_tokens: 16, completion_tokens: 5, prompt_tokens_details: null, completion_tokens_details: null });
    const other = await post(m, "/chat/completions", CHAT);
    assert.match(other.json().id, /^chatcmpl-[0-9a-f]{32}$/);
  });

  test("max_tokens and max_completion_tokens cut the answer with finish_reason length", async () => {
    const m = await mock();
    const a = (await post(m, "/chat/completions", { ...CHAT, max_tokens: 2 })).json();
    assert.equal(a.choices[0].message.content, "hi from ");
    assert.equal(a.choices[0].finish_reason, "length");
    assert.equal(a.usage.completion_tokens, 2);
    const b = (await post(m, "/chat/completions", { ...CHAT, max_completion_tokens: 1, max_tokens: 100 })).json();
    assert.equal(b.choices[0].message.content, "hi ", "max_completion_tokens wins over max_tokens");
    assert.equal(b.choices[0].finish_reason, "length");
    const c = (await post(m, "/chat/completions", { ...CHAT, max_tokens: 4 })).json();
    assert.equal(c.choices[0].finish_reason, "length", "4 words, no room for EOS");
    const d = (await post(m, "/chat/completions", { ...CHAT, max_tokens: 5 })).json();
    assert.equal(d.choices[0].finish_reason, "stop");
    assert.equal(d.choices[0].message.content, "hi from served-llama #0");
    const n = (await post(m, "/chat/completions", { ...CHAT, n: 2, max_tokens: 1 })).json();
    assert.deepEqual(n.choices.map((c: { index: number }) => c.index), [0, 1]);
    assert.equal(n.usage.completion_tokens, 2);
  });

  test("streamed: role in the first delta, content deltas, finish_reason, [DONE]", async () => {
    const m = await mock();
    const r = await post(m, "/chat/completions", { model: "served-llama", ...CHAT, stream: true });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-type"), "text/event-stream; charset=utf-8");
    const ev = events(r.text);
    assert.equal(ev.at(-1), "[DONE]");
    const chunks = ev.slice(0, -1) as Record<string, any>[];
    const id = chunks[0]!.id;
    assert.match(id, /^chatcmpl-/);
    for (const c of chunks) {
      assert.equal(c.id, id);
      assert.equal(c.object, "chat.completion.chunk");
      assert.equal(c.model, "served-llama");
      assert.equal(c.choices.length, 1);
      assert.ok(!("usage" in c), "no usage without stream_options");
    }
    assert.deepEqual(chunks[0]!.choices[0], { index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null });
    assert.deepEqual(chunks.slice(1).map((c) => c.choices[0].delta), [{ content: "hi " }, { content: "from " }, { content: "served-llama " }, { content: "#0" }, { content: "" }]);
    assert.deepEqual(chunks.slice(1, -1).map((c) => c.choices[0].finish_reason), [null, null, null, null]);
    assert.deepEqual(chunks.at(-1)!.choices[0], { index: 0, delta: { content: "" }, logprobs: null, finish_reason: "stop", stop_reason: null, token_ids: null });
  });

  test("streamed: the head goes out at once, the role chunk and the tokens after the time to first token", async () => {
    const m = await mock({ latencyMs: 300, interTokenLatencyMs: 20 });
    const t0 = performance.now();
    const res = await fetch(`${m.url}/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...CHAT, stream: true }) });
    const head = performance.now() - t0;
    assert.equal(res.status, 200);
    assert.ok(head < 250, `the 200 head before the first token (${Math.round(head)} ms)`);
    const reader = res.body!.getReader();
    const first = await reader.read();
    const firstAt = performance.now() - t0;
    assert.ok(firstAt >= 290, `the first chunk after the TTFT (${Math.round(firstAt)} ms)`);
    assert.match(new TextDecoder().decode(first.value), /^data: \{.*"delta":\{"role":"assistant","content":""\}/);
    let rest = "";
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
    assert.ok(performance.now() - t0 >= 300 + 4 * 20 - 5, "tokens spaced by the inter-token latency");
    assert.ok(rest.endsWith("data: [DONE]\n\n"));
  });

  test("streamed with stream_options.include_usage: a final usage chunk; max_tokens → length on the last token", async () => {
    const m = await mock();
    const r = await post(m, "/chat/completions", { ...CHAT, stream: true, stream_options: { include_usage: true }, max_tokens: 3 });
    const ev = events(r.text);
    assert.equal(ev.at(-1), "[DONE]");
    const chunks = ev.slice(0, -1) as Record<string, any>[];
    const usage = chunks.at(-1)!;
    assert.deepEqual(usage.choices, []);
    assert.deepEqual(usage.usage, { prompt_tokens: 11, total_tokens: 14, completion_tokens: 3 });
    assert.deepEqual(Object.keys(usage), ["id", "object", "created", "model", "choices", "usage"]);
    const last = chunks.at(-2)!.choices[0];
    assert.deepEqual(last.delta, { content: "served-llama " });
    assert.equal(last.finish_reason, "length");
    assert.deepEqual(chunks.slice(0, -1).map((c) => c.choices[0].delta.content).join(""), "hi from served-llama ");
    const cont = events((await post(m, "/chat/completions", { ...CHAT, stream: true, stream_options: { continuous_usage_stats: true } })).text);
    const perChunk = (cont.slice(0, -2) as Record<string, any>[]).map((c) => c.usage.completion_tokens);
    assert.deepEqual(perChunk, [0, 1, 2, 3, 4, 5], "continuous usage on every chunk (include_usage defaults to true)");
  });
});

describe("text completions", () => {
  test("non-streamed and streamed, vLLM's text_completion", async () => {
    const m = await mock();
    const r = await post(m, "/completions", { model: "served-llama", prompt: "Say hi" });
    assert.equal(r.status, 200);
    const b = r.json();
    assert.match(b.id, /^cmpl-[0-9a-f]{32}$/);
    assert.equal(b.object, "text_completion");
    assert.equal(b.model, "served-llama");
    assert.deepEqual(b.choices, [{ index: 0, text: "hi from served-llama #0", logprobs: null, finish_reason: "stop", stop_reason: null, token_ids: null, prompt_logprobs: null, prompt_token_ids: null, routed_experts: null }]);
    assert.deepEqual(b.usage, { prompt_tokens: 3, total_tokens: 8, completion_tokens: 5, prompt_tokens_details: null, completion_tokens_details: null });
    const many = (await post(m, "/completions", { prompt: ["a", "b c"], max_tokens: 1 })).json();
    assert.deepEqual(many.choices.map((c: { index: number; text: string; finish_reason: string }) => [c.index, c.text, c.finish_reason]), [[0, "hi ", "length"], [1, "hi ", "length"]]);
    assert.equal(many.usage.prompt_tokens, 2 + 3);

    const s = await post(m, "/completions", { prompt: "Say hi", stream: true, stream_options: { include_usage: true } });
    assert.equal(s.headers.get("content-type"), "text/event-stream; charset=utf-8");
    const ev = events(s.text);
    assert.equal(ev.at(-1), "[DONE]");
    const chunks = ev.slice(0, -1) as Record<string, any>[];
    assert.ok(chunks.every((c) => c.object === "text_completion" && c.model === "served-llama"));
    const texts = chunks.slice(0, -1).map((c) => c.choices[0]);
    assert.deepEqual(texts.map((c) => c.text), ["hi ", "from ", "served-llama ", "#0", ""]);
    assert.deepEqual(texts.map((c) => c.finish_reason), [null, null, null, null, "stop"]);
    assert.deepEqual(chunks.at(-1)!.usage, { prompt_tokens: 3, total_tokens: 8, completion_tokens: 5 });
  });

  test("max_tokens defaults to 16, as in vLLM's CompletionRequest", async () => {
    const m = await mock({ reply: Array.from({ length: 20 }, (_, i) => `w${i}`).join(" ") });
    const b = (await post(m, "/completions", { prompt: "go" })).json();
    assert.equal(b.choices[0].finish_reason, "length");
    assert.equal(mockTokens(b.choices[0].text).length, 16);
    assert.equal(b.usage.completion_tokens, 16);
    const chat = (await post(m, "/chat/completions", CHAT)).json();
    assert.equal(chat.choices[0].finish_reason, "stop", "chat completions default to the rest of the context");
  });
});

describe("embeddings", () => {
  test("a string or a list of them; float or base64; deterministic unit vectors", async () => {
    const m = await mock({ embeddingDim: 8 });
    const one = await post(m, "/embeddings", { model: "served-llama", input: "hello world" });
    assert.equal(one.status, 200);
    const b = one.json();
    assert.match(b.id, /^embd-/);
    assert.equal(b.object, "list");
    assert.equal(b.model, "served-llama");
    assert.equal(b.data.length, 1);
    assert.deepEqual(Object.keys(b.data[0]), ["index", "object", "embedding"]);
    assert.equal(b.data[0].object, "embedding");
    const v = b.data[0].embedding as number[];
    assert.equal(v.length, 8);
    assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-5, "normalised");
    assert.deepEqual(b.usage, { prompt_tokens: 3, total_tokens: 3, completion_tokens: 0, prompt_tokens_details: null, completion_tokens_details: null });

    const many = (await post(m, "/embeddings", { input: ["hello world", "other"] })).json();
    assert.deepEqual(many.data.map((d: { index: number }) => d.index), [0, 1]);
    assert.deepEqual(many.data[0].embedding, v, "same text, same vector");
    assert.notDeepEqual(many.data[1].embedding, v);
    assert.equal(many.usage.prompt_tokens, 3 + 2);

    const b64 = (await post(m, "/embeddings", { input: "hello world", encoding_format: "base64" })).json();
    const buf = Buffer.from(b64.data[0].embedding as string, "base64");
    assert.deepEqual(Array.from(new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4)), v);

    const tokens = (await post(m, "/embeddings", { input: [[1, 2, 3], [4]] })).json();
    assert.equal(tokens.usage.prompt_tokens, 4);
    const dims = await post(m, "/embeddings", { input: "x", dimensions: 4 });
    assert.equal(dims.status, 400);
    assert.match(dims.json().error.message, /does not support matryoshka representation/);
  });
});

describe("metrics", () => {
  test("vLLM's metric names, labelled with the served name, count what was served", async () => {
    const m = await mock({ model: "metered" });
    const before = await metrics(m);
    for (const name of [
      "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:prompt_tokens_total",
      "vllm:generation_tokens_total", "vllm:e2e_request_latency_seconds_count", "vllm:time_to_first_token_seconds_count",
    ]) assert.equal(before.get(name), 0, name);
    for (const r of ["stop", "length", "abort"]) assert.equal(before.get("vllm:request_success_total", `finished_reason="${r}"`), 0);
    for (const family of ["vllm:num_requests_running gauge", "vllm:prompt_tokens_total counter", "vllm:request_success_total counter", "vllm:e2e_request_latency_seconds histogram", "vllm:inter_token_latency_seconds histogram"]) {
      assert.ok(before.text.includes(`# TYPE ${family}\n`), family);
    }
    assert.ok(!before.text.includes("vllm:gpu_cache_usage_perc"), "the deprecated name is not exported");
    assert.equal(before.get("vllm:e2e_request_latency_seconds_bucket", 'le="+Inf"'), 0);

    const chat = (await post(m, "/chat/completions", CHAT)).json(); // 11 prompt, 5 generated, stop
    const cut = events((await post(m, "/chat/completions", { ...CHAT, stream: true, max_tokens: 2 })).text); // 11 prompt, 2 generated, length
    assert.equal(cut.at(-1), "[DONE]");
    const cmpl = (await post(m, "/completions", { prompt: "Say hi" })).json(); // 3 prompt, 5 generated, stop
    await post(m, "/chat/completions", { model: "someone-else", ...CHAT }); // refused: not counted

    const after = await metrics(m);
    assert.equal(after.get("vllm:prompt_tokens_total"), chat.usage.prompt_tokens + 11 + cmpl.usage.prompt_tokens);
    assert.equal(after.get("vllm:generation_tokens_total"), chat.usage.completion_tokens + 2 + cmpl.usage.completion_tokens);
    assert.equal(after.get("vllm:request_success_total", 'finished_reason="stop"'), 2);
    assert.equal(after.get("vllm:request_success_total", 'finished_reason="length"'), 1);
    assert.equal(after.get("vllm:e2e_request_latency_seconds_count"), 3);
    assert.equal(after.get("vllm:e2e_request_latency_seconds_bucket", 'le="+Inf"'), 3);
    assert.equal(after.get("vllm:time_to_first_token_seconds_count"), 3);
    assert.equal(after.get("vllm:request_prompt_tokens_sum"), 25);
    assert.equal(after.get("vllm:request_generation_tokens_bucket", 'le="2.0"'), 1);
    assert.equal(after.get("vllm:num_requests_running"), 0);
    assert.deepEqual(m.stats().success, { stop: 2, length: 1, abort: 0 });
  });

  test("running and waiting gauges follow requests in flight (--max-num-seqs); an aborted stream counts as abort", async () => {
    const m = await mock({ model: "busy", latencyMs: 300, maxNumSeqs: 1 });
    const inflight = [post(m, "/chat/completions", CHAT), post(m, "/chat/completions", CHAT)];
    await waitFor(() => m.stats().running === 1 && m.stats().waiting === 1, 2000, "one running, one waiting");
    const mid = await metrics(m);
    assert.equal(mid.get("vllm:num_requests_running"), 1);
    assert.equal(mid.get("vllm:num_requests_waiting"), 1);
    assert.ok(mid.get("vllm:kv_cache_usage_perc") > 0, "the running request holds KV cache");
    await Promise.all(inflight);
    const done = await metrics(m);
    assert.equal(done.get("vllm:num_requests_running"), 0);
    assert.equal(done.get("vllm:num_requests_waiting"), 0);
    assert.equal(done.get("vllm:kv_cache_usage_perc"), 0);
    assert.ok(done.get("vllm:request_queue_time_seconds_sum") >= 0.2, "the second request waited for the first");

    m.set({ latencyMs: 0, interTokenLatencyMs: 100, maxNumSeqs: 4 });
    await new Promise<void>((resolve, reject) => {
      const u = new URL(`${m.url}/chat/completions`);
      const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: "POST", headers: { "content-type": "application/json" } }, (res) => {
        res.once("data", () => {
          req.destroy(); // the client goes away after the first chunk
          resolve();
        });
      });
      req.on("error", () => {});
      req.once("timeout", reject);
      req.end(JSON.stringify({ ...CHAT, stream: true }));
    });
    await waitFor(() => m.stats().success.abort === 1, 2000, "the abort counted");
    const aborted = await metrics(m);
    assert.equal(aborted.get("vllm:request_success_total", 'finished_reason="abort"'), 1);
    assert.equal(aborted.get("vllm:num_requests_running"), 0);
  });

  test("only the vLLM flavour has /metrics", async () => {
    const m = await mock({ engine: "generic" });
    assert.equal((await fetch(`${origin(m)}/metrics`)).status, 404);
  });
});

describe("compatibility of the mock's API", () => {
  test("requests are recorded; stop() refuses connections and start() listens on the same port again", async () => {
    const m = await mock();
    const port = m.port;
    await post(m, "/chat/completions", CHAT, { "x-test": "rec" });
    const rec = m.requests.at(-1)!;
    assert.deepEqual({ method: rec.method, path: rec.path, marker: rec.headers["x-test"] }, { method: "POST", path: "/v1/chat/completions", marker: "rec" });
    assert.equal(JSON.parse(rec.body).messages[0].content, "hi");
    await m.stop();
    await assert.rejects(fetch(`${m.url}/models`));
    await m.start();
    assert.equal(m.port, port);
    assert.equal((await fetch(`${m.url}/models`)).status, 200);
  });

  test("a base path moves the API, not /health or /metrics", async () => {
    const m = await mock({ basePath: "/openai/v1" });
    assert.match(m.url, /\/openai\/v1$/);
    assert.equal((await fetch(`${m.url}/models`)).status, 200);
    assert.equal((await fetch(`${origin(m)}/health`)).status, 200);
    assert.equal((await fetch(`${origin(m)}/v1/models`)).status, 404);
  });
});

describe("command line", () => {
  test("starts, prints its URL, answers as configured, stops on SIGTERM", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", MOCK, "--model", "cli-model", "--port", "0", "--api-key", "sk-cli", "--reply", "from the cli", "--max-model-len", "2048"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      await waitFor(() => /at http:\/\/\S+\n/.test(out) || child.exitCode !== null, 20_000, `the printed URL (stderr: ${err})`);
      const m = /^mock OpenAI instance serving cli-model at (http:\/\/127\.0\.0\.1:\d+\/v1)\n$/.exec(out);
      assert.ok(m, `printed: ${JSON.stringify(out)} ${err}`);
      const url = m[1]!;
      assert.equal((await fetch(`${url}/models`)).status, 401);
      const models = (await (await fetch(`${url}/models`, { headers: { authorization: "Bearer sk-cli" } })).json()) as { data: { id: string; max_model_len: number }[] };
      assert.deepEqual(models.data.map((d) => [d.id, d.max_model_len]), [["cli-model", 2048]]);
      const chat = await fetch(`${url}/chat/completions`, { method: "POST", headers: { "content-type": "application/json", authorization: "Bearer sk-cli" }, body: JSON.stringify({ model: "cli-model", ...CHAT }) });
      assert.equal(((await chat.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content, "from the cli");
    } finally {
      child.kill("SIGTERM");
    }
    assert.equal(await exited, 0);
  });

  test("--help prints the usage; a bad flag value exits 2", async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const c = spawn(process.execPath, ["--import", "tsx", MOCK, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        let err = "";
        c.stdout.on("data", (b: Buffer) => (out += b.toString()));
        c.stderr.on("data", (b: Buffer) => (err += b.toString()));
        c.once("exit", (code) => resolve({ code, out, err }));
      });
    const help = await run(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.out, /^Usage: tsx envoy\/local\/mock-openai\.ts --model NAME/);
    const bad = await run(["--model", "x", "--mode", "sleepy"]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--mode must be one of/);
  });
});
