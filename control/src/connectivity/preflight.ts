/**
 * Connectivity tests on the request path, before anything is stored: a create or scale-up whose instances
 * all fail is refused (422 connectivity_failed) instead of storing a deployment that can only answer 503.
 *
 * Bounds (how long a create or scale-up waits):
 *   - every test done → the outcome is complete (201, or 422 when none passed);
 *   - `waitMs` (CREATE_WAIT_MS) passed and one instance passed, or `allowUnreachable` → stop waiting: the
 *     instances still being tested are stored `pending` (202) and the worker tests them again;
 *   - otherwise (nothing passed yet, unreachable ones not allowed) keep waiting for a verdict, at most
 *     `verdictMs`: a test ends by itself within two requests of CONNECTIVITY_TIMEOUT_MS each, so
 *     `verdictMs` = max(CREATE_WAIT_MS, 2 × CONNECTIVITY_TIMEOUT_MS + 1 s) is only a safety net (a slow DNS
 *     lookup); a test still running then counts as failed (`timeout`).
 * So a 202 never hides an outcome the caller could not accept: it comes with at least one instance that
 * passed, or with `allow_unreachable`.
 */
import type { ConnectivityResult } from "../deployments/schemas.js";
import type { Logger } from "../log.js";
import { RequestFailed } from "./http-client.js";
import type { ConnectivityTester, Target } from "./tester.js";

export interface PreflightItem {
  id: string;
  target: Target;
  apiKey: string | null;
}

export interface PreflightOutcome {
  /** Finished tests by instance id. */
  results: Map<string, ConnectivityResult>;
  /** Instances still being tested when the wait ended (stored `pending`; the worker tests them). */
  pending: string[];
}

export interface Preflight {
  run(items: PreflightItem[], opts: { model: string; allowUnreachable: boolean; log?: Record<string, unknown> }): Promise<PreflightOutcome>;
}

export const verdictBoundMs = (createWaitMs: number, connectivityTimeoutMs: number): number => Math.max(createWaitMs, 2 * connectivityTimeoutMs + 1_000);

export function createPreflight(deps: { tester: ConnectivityTester; waitMs: number; verdictMs: number; log: Logger }): Preflight {
  const { tester, log } = deps;
  return {
    async run(items, opts) {
      const results = new Map<string, ConnectivityResult>();
      if (items.length === 0) return { results, pending: [] };
      // Nothing to wait for (CREATE_WAIT_MS 0, unreachable ones allowed): every test is the worker's.
      if (deps.waitMs === 0 && opts.allowUnreachable) return { results, pending: items.map((it) => it.id) };
      const started = Date.now();
      const aborts = new Map(items.map((it) => [it.id, new AbortController()]));
      let wake: () => void = () => undefined;
      for (const it of items) {
        void tester
          .test(it.target, { model: opts.model, apiKey: it.apiKey, signal: aborts.get(it.id)!.signal })
          .then(
            (r) => {
              results.set(it.id, r);
              log.info("connectivity test", { ...opts.log, instance: it.id, ok: r.ok, error_code: r.error?.code ?? null, latency_ms: r.latency_ms.total, engine: r.engine, before_store: true });
            },
            (e: unknown) => {
              if (e instanceof RequestFailed && e.code === "aborted") return; // handed over to the worker
              log.warn("connectivity test could not run", { ...opts.log, instance: it.id, err_message: e instanceof Error ? e.message : String(e) });
              results.set(it.id, failed(started, "test_error", "the connectivity test could not run"));
            },
          )
          .finally(() => wake());
      }
      for (;;) {
        const elapsed = Date.now() - started;
        if (results.size === items.length) break;
        const passed = [...results.values()].some((r) => r.ok);
        if (elapsed >= deps.waitMs && (passed || opts.allowUnreachable)) break;
        if (elapsed >= deps.verdictMs) break;
        const until = (elapsed < deps.waitMs ? deps.waitMs : deps.verdictMs) - elapsed;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, until);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
      // The outcome is what finished by now; later results of tests still running are not taken.
      const done = new Map(results);
      const undecided = items.filter((it) => !done.has(it.id)).map((it) => it.id);
      for (const id of undecided) aborts.get(id)!.abort();
      const passed = [...done.values()].some((r) => r.ok);
      if (!passed && !opts.allowUnreachable) {
        // Past the verdict bound with nothing passed: a test still running counts as failed.
        for (const id of undecided) done.set(id, failed(started, "timeout", `the connectivity test gave no verdict within ${deps.verdictMs} ms`));
        return { results: done, pending: [] };
      }
      return { results: done, pending: undecided };
    },
  };
}

function failed(started: number, code: string, message: string): ConnectivityResult {
  return {
    ok: false,
    checked_at: new Date().toISOString(),
    address: null,
    engine: null,
    latency_ms: { models: null, completion: null, total: Date.now() - started },
    models_served: [],
    error: { code, message },
    http_status: null,
    detail: null,
  };
}
