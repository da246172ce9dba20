// Child process: the gateway bench's load generator (autocannon, programmatic, one process, in its own
// event loop apart from the gateway under test and the mocks). Command `run`: a closed-loop load of
// `connections` keep-alive HTTP/1.1 connections (pipelining 1), each sending the same POST back to back
// for `durationS` seconds. Latencies are taken from autocannon's per-response event (ms, sub-ms
// resolution; its own histogram rounds to whole ms) for 2xx answers only, and returned raw.
import { createRequire } from "node:module";
import type { EventEmitter } from "node:events";
import { serveParent } from "./ipc.js";

export interface RunArgs {
  /** One URL, or several: connection i goes to url[i % n] (autocannon's multi-URL mode). */
  url: string | string[];
  headers: Record<string, string>;
  body: string;
  connections: number;
  durationS: number;
  /** false: warm-up, no latencies returned. */
  collect: boolean;
}

export interface RunResult {
  /** Seconds autocannon ran (its own clock; the stop lands on its 1 s sampling tick). */
  durationS: number;
  ok2xx: number;
  non2xx: number;
  statusCodes: Record<string, number>;
  /** Connection errors / timeouts (autocannon `errors` includes timeouts). */
  errors: number;
  timeouts: number;
  resets: number;
  /** 2xx latencies, ms. */
  latencies: Float64Array;
  /** autocannon's own summary (whole-ms latency percentiles, req/s per 1 s sample). */
  autocannon: { requestsMean: number; latencyP50: number; latencyP99: number; totalRequests: number; totalCompleted: number };
}

interface Tracker extends EventEmitter, PromiseLike<Record<string, any>> {
  stop(): void;
}
const autocannon = createRequire(import.meta.url)("autocannon") as (opts: Record<string, unknown>) => Tracker;

let current: Tracker | null = null;

async function run(a: RunArgs): Promise<RunResult> {
  const lat: number[] = [];
  const codes: Record<string, number> = {};
  let ok2xx = 0;
  let non2xx = 0;
  const t = autocannon({
    url: a.url,
    method: "POST",
    headers: a.headers,
    body: a.body,
    connections: a.connections,
    pipelining: 1,
    duration: a.durationS,
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
    durationS: r.duration as number,
    ok2xx,
    non2xx,
    statusCodes: codes,
    errors: r.errors as number,
    timeouts: r.timeouts as number,
    resets: r.resets as number,
    latencies: Float64Array.from(lat),
    autocannon: {
      requestsMean: r.requests?.mean as number,
      latencyP50: r.latency?.p50 as number,
      latencyP99: r.latency?.p99 as number,
      totalRequests: r.requests?.sent as number,
      totalCompleted: r.requests?.total as number,
    },
  };
}

const parent = serveParent({ run: (a: RunArgs) => run(a) }, async () => {
  current?.stop();
});
parent.ready({ pid: process.pid });
