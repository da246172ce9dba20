// Child process of bench/balance.bench.ts: the capacity mocks (envoy/local/mock-openai.ts with maxNumSeqs
// slots, a FIFO queue beyond them and a decode rate per slot), one per entry of BENCH_SLOTS, on 127.0.0.1,
// in their own event loop. `counts` answers what each has finished (stop + length), aborted, and its
// running / waiting gauges.
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { serveParent } from "../gateway/ipc.js";

const slots = (process.env.BENCH_SLOTS ?? "").split(",").map(Number);
const model = process.env.BENCH_MODEL ?? "bench-balance";
const tokensPerSecond = Number(process.env.BENCH_TOKENS_PER_SECOND);
const prefillTokensPerSecond = Number(process.env.BENCH_PREFILL_TOKENS_PER_SECOND ?? 0);
const replyTokens = Number(process.env.BENCH_REPLY_TOKENS ?? 1000);
if (slots.length === 0 || slots.some((s) => !Number.isInteger(s) || s < 1) || !(tokensPerSecond > 0)) throw new Error("BENCH_SLOTS and BENCH_TOKENS_PER_SECOND are required");

const mocks: MockOpenAI[] = [];
for (let i = 0; i < slots.length; i++) {
  mocks.push(
    await startMockOpenAI({
      model,
      maxNumSeqs: slots[i]!,
      tokensPerSecond,
      prefillTokensPerSecond,
      // Long enough that every request generates exactly its max_tokens.
      reply: `hi from ${model} #${i} ` + Array.from({ length: replyTokens }, (_, k) => `t${k}`).join(" "),
      maxModelLen: replyTokens + 1_000,
    }),
  );
}

const parent = serveParent(
  {
    counts: () =>
      mocks.map((m) => {
        const s = m.stats();
        // Recorded requests are not needed here: keep memory flat over the run.
        m.requests.length = 0;
        return { served: s.success.stop + s.success.length, aborted: s.success.abort, running: s.running, waiting: s.waiting };
      }),
  },
  async () => {
    for (const m of mocks) await m.close();
  },
);
parent.ready({ ports: mocks.map((m) => m.port) });
