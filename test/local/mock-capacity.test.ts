// The mock engine with a real capacity (issue 18): `maxNumSeqs` slots, a FIFO queue beyond them, a decode
// rate per slot (`tokensPerSecond`) and a prefill rate, so service time = latency + prompt / prefill rate +
// generated tokens / rate; vLLM's running / waiting gauges tell the truth; every answer carries its queue
// and service time (x-mock-queue-time-ms, x-mock-service-time-ms), streamed or not.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { QUEUE_TIME_HEADER, SERVICE_TIME_HEADER, startMockOpenAI, type MockOpenAI, type MockOptions } from "../../envoy/local/mock-openai.js";

const mocks: MockOpenAI[] = [];
after(async () => {
  for (const m of mocks) await m.close();
});
const LONG_REPLY = Array.from({ length: 400 }, (_, i) => `w${i}`).join(" ");
async function mock(o: Partial<MockOptions> = {}): Promise<MockOpenAI> {
  const m = await startMockOpenAI({ model: "cap", reply: LONG_REPLY, ...o });
  mocks.push(m);
  return m;
}
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
async function until(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error("condition not met in time");
    await sleep(1);
  }
}
/** Prompt tokens of CHAT under the mock's chat template: BOS + generation prompt (5) + one message (5 + 1 word). */
const CHAT_PROMPT_TOKENS = 11;

async function chat(m: MockOpenAI, maxTokens: number, opts: { stream?: boolean; id?: string } = {}) {
  const t0 = performance.now();
  const res = await fetch(`${m.url}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(opts.id ? { "x-request-id": opts.id } : {}) },
    body: JSON.stringify({ model: "cap", messages: [{ role: "user", content: "hi" }], max_tokens: maxTokens, ...(opts.stream ? { stream: true } : {}) }),
  });
  const text = await res.text();
  return {
    status: res.status,
    text,
    ms: performance.now() - t0,
    done: performance.now(),
    queueMs: Number(res.headers.get(QUEUE_TIME_HEADER)),
    serviceMs: Number(res.headers.get(SERVICE_TIME_HEADER)),
  };
}

/** Samples the mock's running/waiting every 2 ms while `work` runs. */
async function watch<T>(m: MockOpenAI, work: Promise<T>): Promise<{ result: T; maxRunning: number; maxWaiting: number }> {
  let maxRunning = 0;
  let maxWaiting = 0;
  let done = false;
  const sampler = (async () => {
    while (!done) {
      const s = m.stats();
      maxRunning = Math.max(maxRunning, s.running);
      maxWaiting = Math.max(maxWaiting, s.waiting);
      await sleep(2);
    }
  })();
  const result = await work;
  done = true;
  await sampler;
  return { result, maxRunning, maxWaiting };
}

async function gauges(m: MockOpenAI): Promise<{ running: number; waiting: number; kv: number }> {
  const text = await (await fetch(`${m.url.slice(0, -m.options.basePath.length)}/metrics`)).text();
  const get = (name: string) => {
    const line = text.split("\n").find((l) => l.startsWith(`${name}{`));
    assert.ok(line, `${name} exported`);
    return Number(line.slice(line.lastIndexOf(" ") + 1));
  };
  return { running: get("vllm:num_requests_running"), waiting: get("vllm:num_requests_waiting"), kv: get("vllm:kv_cache_usage_perc") };
}

describe("mock engine capacity", () => {
  test("concurrency never exceeds the slots, streamed or not; the rest queue", async () => {
    const m = await mock({ maxNumSeqs: 3, tokensPerSecond: 200 });
    const work = Promise.all(Array.from({ length: 12 }, (_, i) => chat(m, 10, { stream: i % 2 === 1 })));
    const { result, maxRunning, maxWaiting } = await watch(m, work);
    assert.ok(result.every((r) => r.status === 200), "every request answered");
    assert.equal(maxRunning, 3, "the slots fill and are never exceeded");
    assert.ok(maxWaiting >= 6, `requests beyond the slots wait (max waiting ${maxWaiting})`);
    // 12 requests of 50 ms on 3 slots: 4 waves, ≥ 200 ms for the last.
    assert.ok(Math.max(...result.map((r) => r.ms)) >= 195, "the last wave waited for three before it");
    assert.ok(result.filter((r) => r.queueMs > 0).length >= 9, "nine of them report a queue time");
    assert.deepEqual({ running: m.stats().running, waiting: m.stats().waiting }, { running: 0, waiting: 0 });
  });

  test("the queue is FIFO: with one slot requests finish in the order they arrived", async () => {
    const m = await mock({ maxNumSeqs: 1, tokensPerSecond: 500 });
    // A long request holds the only slot; each of the 8 is sent once the one before it is counted as
    // waiting, so arrival order is known without relying on timing.
    const blocker = chat(m, 100);
    await until(() => m.stats().running === 1);
    const pending: Promise<{ id: number; done: number; queueMs: number }>[] = [];
    for (let i = 0; i < 8; i++) {
      pending.push(chat(m, 10, { id: `r${i}`, stream: i % 3 === 0 }).then((r) => ({ id: i, done: r.done, queueMs: r.queueMs })));
      await until(() => m.stats().waiting === i + 1);
    }
    const blockerDone = (await blocker).done;
    const results = await Promise.all(pending);
    const order = [...results].sort((a, b) => a.done - b.done).map((r) => r.id);
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7]);
    // One at a time after the blocker: r0 starts when the blocker ends (before the client sees it), then
    // seven more services of 20 ms each; with two slots it would be about half that.
    const span = Math.max(...results.map((r) => r.done)) - blockerDone;
    assert.ok(span >= 7 * 20 - 2, `the eight were served one after the other (${span.toFixed(1)} ms)`);
    assert.ok(results.every((r) => r.queueMs > 0), "all eight waited");
  });

  test("/metrics reports running and waiting truthfully while loaded, and 0 / 0 after", async () => {
    const m = await mock({ maxNumSeqs: 2, tokensPerSecond: 100 });
    const work = Promise.all(Array.from({ length: 5 }, (_, i) => chat(m, 40, { stream: i === 4 }))); // 400 ms each
    await until(() => m.stats().waiting === 3);
    const g = await gauges(m);
    assert.deepEqual({ running: g.running, waiting: g.waiting }, { running: 2, waiting: 3 });
    assert.ok(g.kv > 0, "the running sequences hold KV cache");
    await until(() => m.stats().waiting === 1); // the first two done, the next two running
    const g2 = await gauges(m);
    assert.deepEqual({ running: g2.running, waiting: g2.waiting }, { running: 2, waiting: 1 });
    await work;
    const g3 = await gauges(m);
    assert.deepEqual(g3, { running: 0, waiting: 0, kv: 0 });
  });

  test("service time follows the rates: latency + prompt / prefill rate + tokens / decode rate", async () => {
    const m = await mock({ maxNumSeqs: 4, tokensPerSecond: 250, prefillTokensPerSecond: 1_000, latencyMs: 10 });
    for (const [maxTokens, stream] of [[25, false], [50, false], [50, true]] as const) {
      const expected = 10 + (1000 * CHAT_PROMPT_TOKENS) / 1_000 + (1000 * maxTokens) / 250;
      const r = await chat(m, maxTokens, { stream });
      assert.equal(r.status, 200);
      if (stream) assert.ok(Math.abs(r.serviceMs - expected) < 0.01, `a stream's head announces the planned ${expected} ms (got ${r.serviceMs})`);
      else assert.ok(r.serviceMs >= expected - 0.5 && r.serviceMs < expected + 25, `measured service ${r.serviceMs} ms ≈ ${expected} ms`);
      assert.ok(r.ms >= expected - 0.5 && r.ms < expected + 60, `client latency ${r.ms.toFixed(1)} ms ≈ ${expected} ms`);
      assert.equal(r.queueMs, 0, "an idle engine admits at once");
      assert.equal((stream ? r.text.match(/"delta":\{"content":"w/g)?.length : (JSON.parse(r.text).usage.completion_tokens as number)), maxTokens);
    }
    // The rate is per slot: 4 requests in parallel on 4 slots take as long as one.
    const all = await Promise.all(Array.from({ length: 4 }, () => chat(m, 50)));
    const one = 10 + CHAT_PROMPT_TOKENS + 200;
    for (const r of all) assert.ok(r.ms < one + 60 && r.queueMs === 0, `parallel in 4 slots: ${r.ms.toFixed(1)} ms`);
    // Queued behind a full engine, the service time stays the same and the wait shows as queue time.
    const four = Promise.all(Array.from({ length: 4 }, () => chat(m, 50)));
    await until(() => m.stats().running === 4);
    const fifth = await chat(m, 50);
    const ahead = await four;
    assert.ok(ahead.every((r) => r.queueMs === 0));
    // It waits for a slot: at most as long as the four ahead of it took (their timers run late on a loaded
    // machine just as its wait does, so a fixed bound here would measure the machine, not the engine).
    const aheadMs = Math.max(...ahead.map((r) => r.ms));
    assert.ok(fifth.queueMs > 0 && fifth.queueMs <= aheadMs + 5, `queued ${fifth.queueMs} ms behind the four (which took up to ${aheadMs.toFixed(1)} ms)`);
    assert.ok(fifth.serviceMs >= one - 0.5 && fifth.serviceMs < one + 25, `then served in ${fifth.serviceMs} ms`);
  });
});
