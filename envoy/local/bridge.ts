/**
 * Bridges the plugin running in the test host (envoy/local/host/) to a real control service over HTTP, so
 * the compiled plugin talks to the real thing: its routing-table long-polls and telemetry POSTs.
 *
 *   const host = await ProxyWasmHost.start({ wasm, clusters: ["gateway_control"], configuration, ... });
 *   const bridge = bridgePlugin(host, { clusters: { gateway_control: control.url } });
 *   await bridge.waitFor(() => picks(host) === "a", 5_000, "the plugin picks a");
 *   await bridge.stop();
 *
 * - host.onHttpCall → fetch(<cluster base URL> + :path) with the call's method, headers and body →
 *   call.respond({status, headers, body}) when the answer is complete. A connection that fails before a
 *   response is answered as Envoy's router answers it: 503 "upstream connect error or disconnect/reset
 *   before headers" (a response, not a reset); a response that breaks off mid-body → call.fail() (a reset).
 *   A call the host already timed out (its virtual clock passed timeoutMs), or cancelled (its root went
 *   away), is dropped quietly.
 * - Host clusters with no base URL here have no healthy host: http_call to them fails inline with
 *   InternalFailure (host.setClusterState), as Envoy's async client does.
 * - A cluster with several base URLs (control replicas) behaves like envoy/bootstrap.yaml's
 *   gateway_control: calls go round-robin over the hosts not ejected; a host whose connection failed
 *   EJECT_AFTER times in a row is ejected for EJECT_MS (outlier detection, consecutive_gateway_failure),
 *   all of them ejected → all of them again (Envoy's panic mode). A failed call is not retried (Envoy sends a
 *   wasm http_call with only a timeout, no retry policy: context.cc httpCall, host/API.md): it gets the
 *   router's 503 and the plugin tries again on its next tick.
 * - The host's virtual clock follows real time: every `stepMs` it is advanced by the real time that
 *   passed, so on_tick and http-call timeouts fire as they would in Envoy.
 * - The host's API is synchronous and single-threaded: call host.request(...) from the test between
 *   awaits (never while a callback runs); the bridge only touches the host from timers and fetch
 *   completions, which never interleave with synchronous code.
 */
import type { ProxyWasmHost } from "./host/index.js";
import type { HttpCall } from "./host/types.js";

type Host = Awaited<ReturnType<typeof ProxyWasmHost.start>>;

export interface BridgedCall {
  cluster: string;
  /** The host (base URL) the call went to; "" when the cluster had none. */
  base: string;
  method: string;
  path: string;
  /** null while in flight or when the request failed. */
  status: number | null;
  requestBody: string;
  error: string | null;
  ms: number | null;
}

export interface PluginBridge {
  /** Every bridged call, oldest first (for assertions: e.g. the telemetry POSTs). */
  readonly calls: BridgedCall[];
  /** Resolves once cond() holds; checks every few ms while the clock and calls keep running. */
  waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void>;
  /** Stop the clock, abort calls in flight (their answers never reach the plugin), detach from the host. */
  stop(): Promise<void>;
}

export interface BridgeOptions {
  /** Cluster name → base URL (scheme://host:port), or several (replicas), e.g. { gateway_control: control.url }. */
  clusters: Record<string, string | string[]>;
  /** Real-time step of the virtual clock (default 10 ms). */
  stepMs?: number;
}

const HOP_BY_HOP = new Set(["host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"]);
/** Outlier detection as envoy/bootstrap.yaml's gateway_control: consecutive_gateway_failure 2, base_ejection_time 5 s. */
export const EJECT_AFTER = 2;
export const EJECT_MS = 5_000;

interface Pool {
  hosts: { base: string; failures: number; ejectedUntil: number }[];
  next: number;
}

/** A gateway failure of `h` (no answer, or 502–504): the EJECT_AFTER-th in a row ejects it for EJECT_MS. */
function gatewayFailure(h: Pool["hosts"][number]): void {
  if (++h.failures < EJECT_AFTER) return;
  h.ejectedUntil = Date.now() + EJECT_MS;
  h.failures = 0;
}

/** Round robin over the hosts not ejected; all ejected → all (panic). */
function pickHost(pool: Pool, now: number): Pool["hosts"][number] {
  const n = pool.hosts.length;
  for (let k = 0; k < n; k++) {
    const h = pool.hosts[(pool.next + k) % n]!;
    if (h.ejectedUntil <= now) {
      pool.next = (pool.next + k + 1) % n;
      return h;
    }
  }
  const h = pool.hosts[pool.next % n]!;
  pool.next = (pool.next + 1) % n;
  return h;
}

export function bridgePlugin(host: Host, opts: BridgeOptions): PluginBridge {
  const calls: BridgedCall[] = [];
  const pools = new Map<string, Pool>();
  for (const [name, urls] of Object.entries(opts.clusters)) {
    const list = (Array.isArray(urls) ? urls : [urls]).filter((u) => u !== "");
    if (list.length > 0) pools.set(name, { hosts: list.map((base) => ({ base, failures: 0, ejectedUntil: 0 })), next: 0 });
  }
  const inFlight = new Set<Promise<void>>();
  const abort = new AbortController();
  let stopped = false;
  let last = performance.now();

  const forward = (call: HttpCall) => {
    const header = (name: string) => call.headers.find(([k]) => k === name)?.[1];
    const method = header(":method") ?? "GET";
    const path = header(":path") ?? "/";
    const record: BridgedCall = { cluster: call.cluster, base: "", method, path, status: null, requestBody: call.bodyText, error: null, ms: null };
    calls.push(record);
    const pool = pools.get(call.cluster);
    if (pool === undefined) {
      // Only reachable if the cluster's state was changed back by hand: answer as a router with no host.
      record.error = "no base URL for the cluster";
      call.respond({ status: 503, headers: [["content-type", "text/plain"]], body: "no healthy upstream" });
      return;
    }
    const headers = new Headers();
    for (const [k, v] of call.headers) if (!k.startsWith(":") && !HOP_BY_HOP.has(k)) headers.append(k, v);
    const t0 = performance.now();
    const target = pickHost(pool, Date.now());
    const base = target.base;
    record.base = base;
    const p = (async () => {
      let answer: { status: number; headers: [string, string][]; body: Uint8Array } | null = null;
      let res: Response | null = null;
      try {
        res = await fetch(base.replace(/\/+$/, "") + path, {
          method,
          headers,
          body: method === "GET" || method === "HEAD" || call.body.length === 0 ? undefined : Buffer.from(call.body),
          signal: abort.signal,
        });
        const body = new Uint8Array(await res.arrayBuffer());
        const pairs: [string, string][] = [];
        res.headers.forEach((v, k) => pairs.push([k, v]));
        answer = { status: res.status, headers: pairs, body };
        record.status = res.status;
        // Outlier detection counts 502/503/504 as gateway failures too (a replica that lost Redis).
        if (res.status >= 502 && res.status <= 504) gatewayFailure(target);
        else target.failures = 0;
      } catch (e) {
        record.error = e instanceof Error ? e.message : String(e);
        if (res === null) {
          if (!abort.signal.aborted) gatewayFailure(target);
          // No response at all: Envoy's router answers the async client with its own 503 (router.cc).
          const text = "upstream connect error or disconnect/reset before headers. reset reason: connection failure";
          answer = { status: 503, headers: [["content-type", "text/plain"], ["content-length", String(text.length)]], body: Buffer.from(text) };
        }
      }
      record.ms = performance.now() - t0;
      if (stopped) return;
      try {
        if (answer) call.respond(answer);
        else call.fail();
      } catch {
        // Already answered: the host timed the call out on its virtual clock.
      }
    })();
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };

  for (const c of host.clusters) if (!pools.has(c)) host.setClusterState(c, "no_healthy_upstream");
  host.onHttpCall = forward;
  // Calls made before the bridge was attached (e.g. the first poll at configure time).
  for (const c of [...host.httpCalls]) forward(c);

  const clock = setInterval(() => {
    if (stopped) return;
    const now = performance.now();
    const step = Math.floor(now - last);
    if (step <= 0) return;
    last += step;
    host.advance(step);
  }, opts.stepMs ?? 10);

  return {
    calls,
    async waitFor(cond, timeoutMs, what) {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        if (await cond()) return;
        if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(clock);
      host.onHttpCall = undefined;
      abort.abort();
      await Promise.allSettled([...inFlight]);
    },
  };
}
