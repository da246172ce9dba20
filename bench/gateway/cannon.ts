// autocannon, programmatic, as the bench load generators use it: keep-alive HTTP/1.1, pipelining 1, a
// 10 s request timeout; status codes counted and 2xx latencies kept raw from the per-response event
// (ms, sub-ms resolution; autocannon's own histogram rounds to whole ms). One run at a time per process.
import { createRequire } from "node:module";
import type { EventEmitter } from "node:events";

interface Tracker extends EventEmitter, PromiseLike<Record<string, any>> {
  stop(): void;
}
const autocannon = createRequire(import.meta.url)("autocannon") as (opts: Record<string, unknown>) => Tracker;

export interface Cannonade {
  ok2xx: number;
  non2xx: number;
  statusCodes: Record<string, number>;
  /** 2xx latencies, ms (empty unless collected). */
  latencies: Float64Array;
  /** autocannon's own result object. */
  result: Record<string, any>;
}

/** What both load generators report for a run. */
export interface LoadCounts extends Omit<Cannonade, "result"> {
  /** Seconds the run took. */
  durationS: number;
  /** Connection errors / timeouts (autocannon `errors` includes timeouts). */
  errors: number;
  timeouts: number;
}

let current: Tracker | null = null;

/** Runs autocannon with `opts` (url, connections, duration or amount, requests or method/headers/body). */
export async function fire(opts: Record<string, unknown>, collect: boolean): Promise<Cannonade> {
  const lat: number[] = [];
  const codes: Record<string, number> = {};
  let ok2xx = 0;
  let non2xx = 0;
  const t = autocannon({ pipelining: 1, timeout: 10, ...opts });
  current = t;
  t.on("response", (_client: unknown, status: number, _bytes: number, ms: number) => {
    codes[status] = (codes[status] ?? 0) + 1;
    if (status >= 200 && status < 300) {
      ok2xx++;
      if (collect) lat.push(ms);
    } else non2xx++;
  });
  const result = await t;
  current = null;
  return { ok2xx, non2xx, statusCodes: codes, latencies: Float64Array.from(lat), result };
}

/** Stops the run in progress, if any (its promise then resolves with what it has). */
export function ceaseFire(): void {
  current?.stop();
}
