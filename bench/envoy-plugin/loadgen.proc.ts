// Child process of the real-Envoy plugin bench: autocannon (programmatic) in its own process and event
// loop. Command `run`: `connections` keep-alive HTTP/1.1 connections (pipelining 1) to one listener,
// each cycling through the same list of requests (autocannon `requests`: the models in turn), for
// `durationS` seconds or, when `amount` is set, for that many requests in all. Latencies come from
// autocannon's per-response event (ms, sub-ms resolution), for 2xx answers only, raw.
// (bench/gateway/loadgen.proc.ts sends one fixed request; this bench needs the model to vary.)
import { ceaseFire, fire, type LoadCounts } from "../gateway/cannon.js";
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

export type LoadResult = LoadCounts;

async function run(a: LoadArgs): Promise<LoadResult> {
  const t0 = performance.now();
  const { result: r, ...counted } = await fire(
    { url: a.url, requests: a.requests, connections: a.connections, ...(a.amount !== null ? { amount: a.amount } : { duration: a.durationS }) },
    a.collect,
  );
  return {
    ...counted,
    durationS: a.amount !== null ? (performance.now() - t0) / 1000 : (r.duration as number),
    errors: r.errors as number,
    timeouts: r.timeouts as number,
  };
}

const parent = serveParent({ run: (a: LoadArgs) => run(a) }, async () => ceaseFire());
parent.ready({ pid: process.pid });
