// Child process: the gateway bench's load generator (autocannon, programmatic, one process, in its own
// event loop apart from the gateway under test and the mocks). Command `run`: a closed-loop load of
// `connections` keep-alive HTTP/1.1 connections (pipelining 1), each sending the same POST back to back
// for `durationS` seconds. Latencies are taken from autocannon's per-response event (ms, sub-ms
// resolution; its own histogram rounds to whole ms) for 2xx answers only, and returned raw.
import { ceaseFire, fire, type LoadCounts } from "./cannon.js";
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
  /** Open-loop instead: at most this many requests per second over all connections (autocannon overallRate). */
  rate?: number;
}

/** durationS: seconds autocannon ran (its own clock; the stop lands on its 1 s sampling tick). */
export interface RunResult extends LoadCounts {
  resets: number;
  /** autocannon's own summary (whole-ms latency percentiles, req/s per 1 s sample). */
  autocannon: { requestsMean: number; latencyP50: number; latencyP99: number; totalRequests: number; totalCompleted: number };
}

async function run(a: RunArgs): Promise<RunResult> {
  const { result: r, ...counted } = await fire(
    { url: a.url, method: "POST", headers: a.headers, body: a.body, connections: a.connections, duration: a.durationS, ...(a.rate ? { overallRate: a.rate } : {}) },
    a.collect,
  );
  return {
    ...counted,
    durationS: r.duration as number,
    errors: r.errors as number,
    timeouts: r.timeouts as number,
    resets: r.resets as number,
    autocannon: {
      requestsMean: r.requests?.mean as number,
      latencyP50: r.latency?.p50 as number,
      latencyP99: r.latency?.p99 as number,
      totalRequests: r.requests?.sent as number,
      totalCompleted: r.requests?.total as number,
    },
  };
}

const parent = serveParent({ run: (a: RunArgs) => run(a) }, async () => ceaseFire());
parent.ready({ pid: process.pid });
