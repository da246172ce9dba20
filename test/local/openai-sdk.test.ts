// The official `openai` Node SDK as the client, through the local data plane (the plugin on our host in
// front of the Node forwarder), a real control service and Redis, and mock engines that answer exactly as
// vLLM does (envoy/local/mock-openai.ts: one served name, vLLM's 404 for any other). What a new user
// meets: list/retrieve, chat, streaming, the SDK's `.stream()` helper, completions, embeddings, served
// names and aliases, credentials, and every error class the SDK maps.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import type { LocalDataPlane } from "../../envoy/local/dataplane.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { controlVersion, dataplane, startEnv, type Env } from "./support.js";

const SERVED = "Qwen/Qwen2.5-7B-Instruct";
const CLIENT_KEY = "sk-client-openai-key-do-not-forward";

let env: Env;
let dp: LocalDataPlane;
let engines: MockOpenAI[];
let hung: MockOpenAI;
let client: OpenAI;

async function register(body: Record<string, unknown>): Promise<void> {
  const r = await env.api("POST", "/v1/models", { body });
  assert.equal(r.status, 201, r.text);
}

async function deployment(id: string, model: string, urls: string[]): Promise<void> {
  const r = await env.api("POST", "/v1/deployments", { body: { id, model, instances: urls.map((url, i) => ({ id: `${id}-${i}`, url })) } });
  assert.ok(r.status === 201 || r.status === 202, r.text);
}

before(async () => {
  env = await startEnv();
  engines = [];
  for (let i = 0; i < 2; i++) engines.push(await startMockOpenAI({ model: SERVED, reply: `hello from engine ${i}` }));
  hung = await startMockOpenAI({ model: "slow-model" });
  env.mocks.push(...engines, hung);
  await register({ name: "chat-small", aliases: ["qwen"], served_name: SERVED });
  await deployment("small", "chat-small", engines.map((e) => e.url));
  await register({ name: "slow-model" });
  await deployment("slow", "slow-model", [hung.url]);
  // Every request to the slow engine hangs from now on (its connectivity test passed above).
  hung.set({ mode: "hang" });
  dp = await dataplane(env, {
    workers: 2,
    firstByteTimeoutMs: 1_000,
    pluginConfig: { telemetry_interval_ms: 0, passive_failures: 0, poll_interval_ms: 100, long_poll_seconds: 5, control_timeout_ms: 6000 },
  });
  await dp.waitForTable(await controlVersion(env));
  client = new OpenAI({ baseURL: `${dp.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 10_000 });
});

after(async () => {
  await env?.stop();
});

/** The "model" of every POST an engine received (its recorded body is the raw text). */
const seenModels = () =>
  engines.flatMap((e) => e.requests).filter((r) => r.method === "POST" && r.body.startsWith("{")).map((r) => (JSON.parse(r.body) as { model?: string }).model);

describe("the openai SDK through the gateway", { timeout: 60_000 }, () => {
  test("models.list and models.retrieve: every public name and alias", async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.ok(ids.includes("chat-small") && ids.includes("qwen"), ids.join(","));
    const one = await client.models.retrieve("qwen");
    assert.equal(one.id, "qwen");
  });

  test("chat completion by the public name and by an alias: the engine gets its served name; the client's key stays with the client", async () => {
    for (const model of ["chat-small", "qwen"]) {
      const before = engines.reduce((n, e) => n + e.requests.length, 0);
      const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 8 });
      assert.match(r.choices[0]!.message.content ?? "", /hello from engine/);
      assert.equal(r.choices[0]!.message.role, "assistant");
      assert.ok(r.usage && r.usage.total_tokens > 0);
      const got = engines.flatMap((e) => e.requests).slice(before);
      assert.ok(got.length > 0);
    }
    assert.ok(seenModels().every((m) => m === SERVED), `engines saw ${JSON.stringify([...new Set(seenModels())])}`);
    const auths = engines.flatMap((e) => e.requests).map((r) => JSON.stringify(r.headers));
    assert.ok(auths.every((h) => !h.includes(CLIENT_KEY)), "the client's API key never reached an engine");
  });

  test("streaming: chunks, finish_reason, usage; and the SDK's .stream() helper", async () => {
    const stream = await client.chat.completions.create({ model: "qwen", messages: [{ role: "user", content: "hi" }], stream: true, stream_options: { include_usage: true } });
    let text = "";
    let finish: string | null = null;
    let usage = 0;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage.total_tokens;
    }
    assert.match(text, /hello from engine/);
    assert.equal(finish, "stop");
    assert.ok(usage > 0);
    const helper = client.chat.completions.stream({ model: "chat-small", messages: [{ role: "user", content: "hi" }] });
    const final = await helper.finalChatCompletion();
    assert.match(final.choices[0]!.message.content ?? "", /hello from engine/);
    assert.equal(final.choices[0]!.message.role, "assistant");
  });

  test("completions and embeddings", async () => {
    const c = await client.completions.create({ model: "qwen", prompt: "Say hi", max_tokens: 4 });
    assert.ok(c.choices[0]!.text.length > 0);
    assert.equal(c.choices[0]!.finish_reason, "length");
    const e = await client.embeddings.create({ model: "chat-small", input: ["a", "b"] });
    assert.equal(e.data.length, 2);
    assert.ok(e.data[0]!.embedding.length > 0);
    assert.ok(seenModels().every((m) => m === SERVED));
  });

  test("errors arrive as the SDK's classes, each with OpenAI's error shape", async () => {
    // 404: a model the gateway does not manage (no passthrough here).
    const notFound = await client.chat.completions.create({ model: "gpt-nope", messages: [{ role: "user", content: "x" }] }).then(() => null, (e: unknown) => e);
    assert.ok(notFound instanceof OpenAI.NotFoundError, String(notFound));
    assert.equal(notFound.code, "model_not_found");
    // 400: the engine refuses the request (max_tokens beyond its context window), its error passed on.
    const bad = await client.chat.completions.create({ model: "qwen", messages: [{ role: "user", content: "x" }], max_tokens: 10_000_000 }).then(() => null, (e: unknown) => e);
    assert.ok(bad instanceof OpenAI.BadRequestError, String(bad));
    // 413: a body over max_body_bytes (1 MiB): the plugin's JSON answer.
    const huge = "x".repeat(1_200_000);
    const tooLarge = await client.chat.completions.create({ model: "qwen", messages: [{ role: "user", content: huge }] }).then(() => null, (e: unknown) => e);
    assert.ok(tooLarge instanceof OpenAI.APIError && tooLarge.status === 413, String(tooLarge));
    assert.equal((tooLarge as InstanceType<typeof OpenAI.APIError>).code, "request_too_large");
    // 504: an engine that accepts and never answers: the first-byte timeout (1 s here).
    const timedOut = await client.chat.completions.create({ model: "slow-model", messages: [{ role: "user", content: "x" }] }).then(() => null, (e: unknown) => e);
    assert.ok(timedOut instanceof OpenAI.InternalServerError && timedOut.status === 504, String(timedOut));
    // 503: every instance of a deployment gone before any verdict (connections refused).
    for (const e of engines) await e.stop();
    try {
      const down = await client.chat.completions.create({ model: "qwen", messages: [{ role: "user", content: "x" }] }).then(() => null, (e: unknown) => e);
      assert.ok(down instanceof OpenAI.InternalServerError && down.status === 503, String(down));
      assert.ok(typeof (down as InstanceType<typeof OpenAI.APIError>).code === "string");
    } finally {
      for (const e of engines) await e.start();
    }
  });
});
