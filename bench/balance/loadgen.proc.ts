// Child process of bench/balance.bench.ts: the open-loop load generator. `run` sends one request per
// arrival of the schedule it is given, at its time (performance.now() from the start; never waiting for an
// answer: a closed loop hides queueing), over keep-alive connections without a pool limit, each with a
// timeout. Per request: status, latency (send → last body byte), and the engine's own queue and service time
// from the mock's x-mock-queue-time-ms / x-mock-service-time-ms answer headers.
import { Agent, request } from "node:http";
import { QUEUE_TIME_HEADER, SERVICE_TIME_HEADER } from "../../envoy/local/mock-openai.js";
import { serveParent } from "../gateway/ipc.js";

export interface Arrival {
  /** ms after the start. */
  at: number;
  maxTokens: number;
}
export interface RunArgs {
  url: string;
  headers: Record<string, string>;
  model: string;
  schedule: Arrival[];
  timeoutMs: number;
}
export interface Outcome {
  /** 0: no answer (error or timeout). */
  status: number;
  error: string | null;
  timedOut: boolean;
  /** ms late against the schedule when sent. */
  late: number;
  latency: number;
  /** The engine's own times (NaN when the answer had none). */
  queueMs: number;
  serviceMs: number;
  maxTokens: number;
}

const agent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function one(a: RunArgs, arrival: Arrival, late: number): Promise<Outcome> {
  const body = JSON.stringify({ model: a.model, messages: [{ role: "user", content: "Tell me something." }], max_tokens: arrival.maxTokens });
  const u = new URL(a.url);
  return new Promise((resolve) => {
    const t0 = performance.now();
    const out: Outcome = { status: 0, error: null, timedOut: false, late, latency: 0, queueMs: NaN, serviceMs: NaN, maxTokens: arrival.maxTokens };
    let settled = false;
    const done = (error: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      out.error = error;
      out.latency = performance.now() - t0;
      resolve(out);
    };
    const req = request(
      { agent, host: u.hostname, port: u.port, path: u.pathname, method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...a.headers } },
      (res) => {
        out.status = res.statusCode ?? 0;
        out.queueMs = Number(res.headers[QUEUE_TIME_HEADER] ?? NaN);
        out.serviceMs = Number(res.headers[SERVICE_TIME_HEADER] ?? NaN);
        res.on("data", () => {});
        res.on("end", () => done(null));
        res.on("error", (e) => done(e.message));
      },
    );
    const timer = setTimeout(() => {
      out.timedOut = true;
      done("timeout");
      req.destroy();
    }, a.timeoutMs);
    req.on("error", (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
    req.end(body);
  });
}

async function run(a: RunArgs): Promise<Outcome[]> {
  const start = performance.now();
  const pending: Promise<Outcome>[] = [];
  for (const arrival of a.schedule) {
    const wait = start + arrival.at - performance.now();
    if (wait > 1) await sleep(wait);
    pending.push(one(a, arrival, Math.max(0, performance.now() - start - arrival.at)));
  }
  return Promise.all(pending);
}

const parent = serveParent({ run }, async () => agent.destroy());
parent.ready({});
