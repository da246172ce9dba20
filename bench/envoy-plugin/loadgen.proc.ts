// Child process of the real-Envoy plugin bench: autocannon (programmatic) in its own process and event
// loop. Command `run`: `connections` keep-alive HTTP/1.1 connections (pipelining 1) to one listener,
// each cycling through the same list of requests (autocannon `requests`: the models in turn), for
// `durationS` seconds or, when `amount` is set, for that many requests in all. Latencies come from
// autocannon's per-response event (ms, sub-ms resolution), for 2xx answers only, raw.
// (bench/gateway/loadgen.proc.ts sends one fixed request; this bench needs the model to vary.)
import { createRequire } from "node:module";
import type { EventEmitter } from "node:events";
import { serveParent } from "../gateway/ipc.js";
import type { BenchRequest } from "./setup.js";

export interface LoadArgs {
  /** http://127.0.0.1:<port> */
  url: string;
  requests: BenchRequest[];
  connections: number;
  durationS: number;
  /** Total requests; when set, durationS is ignored. */
  amount: number | null;
  /** false: warm-up, no latencies returned. */
  collect: boolean;
}

export interface LoadResult {
  durationS: number;
  ok2xx: number;
  non2xx: number;
  statusCodes: Record<string, number>;
  errors: number;
  timeouts: number;
  /** 2xx latencies, ms. */
  latencies: Float64Array;
}

interface Tracker extends EventEmitter, PromiseLike<Record<string, unknown>> {
  stop(): void;
}
const autocannon = createRequire(import.meta.url)("autocannon") as (opts: Record<string, unknown>) => Tracker;

let current: Tracker | null = null;

async function run(a: LoadArgs): Promise<LoadResult> {
  const lat: number[] = [];
  const codes: Record<string, number> = {};
  let ok2xx = 0;
  let non2xx = 0;
  const t0 = performance.now();
  const t = autocannon({
    url: a.url,
    requests: a.requests,
    connections: a.connections,
    pipelining: 1,
    ...(a.amount !== null ? { amount: a.amount } : { duration: a.durationS }),
    timeout: 10,
  });
  current = t;
  t.on("response", (_client: unknown, status: number, _bytes: number, ms: number) => {
    codes[status] = (codes[status] ?? 0) + 1;
    if (status >= 200 && status < 300) {
      ok2xx++;
      if (a.collect) lat.push(ms);
    } else non2xx++;
  });
  const r = await t;
  current = null;
  return {
    durationS: a.amount !== null ? (performance.now() - t0) / 1000 : (r.duration as number),
    ok2xx,
    non2xx,
    statusCodes: codes,
    errors: r.errors as number,
    timeouts: r.timeouts as number,
    latencies: Float64Array.from(lat),
  };
}

const parent = serveParent({ run: (a: LoadArgs) => run(a) }, async () => {
  current?.stop();
});
parent.ready({ pid: process.pid });
