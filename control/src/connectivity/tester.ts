/**
 * The connectivity test: a minimal real request to an instance.
 *   1. resolve the host (dns.lookup) and refuse link-local / metadata addresses (unless allowed);
 *   2. GET {base}/models — the registered model (served_name or name) must be listed;
 *   3. POST {base}/chat/completions with max_tokens 1 — must answer 2xx with choices.
 * Records latency and the engine when recognisable. Never throws for instance failures: the
 * outcome is the result's `ok` / `error`.
 */
import { lookup as dnsLookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { ConnectivityResult } from "../deployments/schemas.js";
import { formatAddress, isBlockedAddress } from "./address-policy.js";
import { detectEngine } from "./engine.js";
import { pinnedRequest, RequestFailed, type PinnedRequest, type PinnedResponse } from "./http-client.js";
import { probeHttp } from "./probe-client.js";

export interface Target {
  scheme: "http" | "https";
  host: string;
  port: number;
  base_path: string;
}

export type Resolved = { ok: true; ip: string; address: string } | { ok: false; code: string; message: string };

export interface ConnectivityTester {
  resolve(host: string, port: number): Promise<Resolved>;
  test(target: Target, opts: { model: string; apiKey: string | null; signal?: AbortSignal }): Promise<ConnectivityResult>;
  /** One health probe: GET {scheme}://{host}:{port}{path} → 2xx. */
  probe(target: Target, opts: { path: string; timeoutMs: number; apiKey: string | null; signal?: AbortSignal }): Promise<ProbeOutcome>;
  /** A 1-token chat completion (POST {base}/chat/completions, max_tokens 1) → 2xx with choices. */
  probeCompletion(target: Target, opts: { model: string; timeoutMs: number; apiKey: string | null; signal?: AbortSignal }): Promise<ProbeOutcome>;
  /** GET {scheme}://{host}:{port}/metrics (Prometheus text, engine load signals): the body of a 2xx, at most `maxBytes`. */
  scrapeMetrics?(target: Target, opts: { timeoutMs: number; maxBytes: number; apiKey: string | null; signal?: AbortSignal }): Promise<{ ok: true; body: string } | { ok: false; error: string }>;
}

const DETAIL_MAX = 300;

/**
 * The instance's own words about a failure, kept as evidence: an OpenAI-style error message (`error.message`,
 * `error`, `message`, `detail`), else the start of the body; one line of at most 300 characters. The API key
 * the test sent, and anything that looks like a bearer token, are removed (an upstream may echo them).
 */
export function upstreamDetail(body: string, apiKey: string | null): string | null {
  let text = body;
  try {
    const p = JSON.parse(body) as unknown;
    if (typeof p === "object" && p !== null) {
      const o = p as Record<string, unknown>;
      const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
      const e = o.error;
      text = str(e) ?? (typeof e === "object" && e !== null ? str((e as Record<string, unknown>).message) : null) ?? str(o.message) ?? str(o.detail) ?? body;
    }
  } catch {
    // not JSON: the text itself
  }
  if (apiKey) for (const form of new Set([apiKey, JSON.stringify(apiKey).slice(1, -1)])) text = text.split(form).join("[redacted]");
  text = text
    .replace(/(bearer\s+)[^\s"',;]+/gi, "$1[redacted]")
    .replace(/[\x00-\x1f\x7f]+/g, " ")
    .replace(/\s+/g, " ")
    .trim();
  if (text === "") return null;
  return text.length > DETAIL_MAX ? `${text.slice(0, DETAIL_MAX - 1)}…` : text;
}

export interface ProbeOutcome {
  ok: boolean;
  address: string | null;
  error: string | null;
}

export function createConnectivityTester(deps: {
  timeoutMs: number;
  allowLinkLocal: boolean;
  lookup?: (host: string) => Promise<string>;
  now?: () => number;
}): ConnectivityTester {
  const lookup = deps.lookup ?? (async (host: string) => (await dnsLookup(host)).address);
  const now = deps.now ?? (() => performance.now());

  const resolve = async (host: string, port: number): Promise<Resolved> => {
    let ip = host;
    if (isIP(host) === 0) {
      try {
        ip = await lookup(host);
      } catch (e) {
        return { ok: false, code: "dns_failed", message: `cannot resolve ${host}: ${(e as NodeJS.ErrnoException).code ?? "error"}` };
      }
    }
    if (!deps.allowLinkLocal && isBlockedAddress(ip)) {
      return { ok: false, code: "blocked_address", message: `${ip} is a link-local or cloud-metadata address (set ALLOW_LINK_LOCAL to allow)` };
    }
    return { ok: true, ip, address: formatAddress(ip, port) };
  };

  const authHeaders = (apiKey: string | null): Record<string, string> => (apiKey ? { authorization: `Bearer ${apiKey}` } : {});

  return {
    resolve,
    async test(target, opts) {
      const started = now();
      const checked_at = new Date().toISOString();
      const result = (over: Partial<ConnectivityResult>): ConnectivityResult => ({
        ok: false,
        checked_at,
        address: null,
        engine: null,
        latency_ms: { models: null, completion: null, total: Math.round(now() - started) },
        models_served: [],
        error: null,
        http_status: null,
        detail: null,
        ...over,
      });
      const r = await resolve(target.host, target.port);
      if (!r.ok) return result({ error: { code: r.code, message: r.message } });
      const call = (method: "GET" | "POST", path: string, body?: string) =>
        pinnedRequest({ scheme: target.scheme, host: target.host, port: target.port, ip: r.ip, method, path: target.base_path + path, headers: authHeaders(opts.apiKey), body, timeoutMs: deps.timeoutMs, signal: opts.signal });

      let modelsRes: PinnedResponse;
      let completionRes: PinnedResponse;
      let modelsMs: number | null = null;
      let completionMs: number | null = null;
      const headers = [];
      let cards: Record<string, unknown>[] = [];
      try {
        const t0 = now();
        modelsRes = await call("GET", "/models");
        modelsMs = Math.round(now() - t0);
        headers.push(modelsRes.headers);
        if (modelsRes.status < 200 || modelsRes.status > 299) {
          return result({
            address: r.address,
            latency_ms: { models: modelsMs, completion: null, total: Math.round(now() - started) },
            error: { code: "http_error", message: `GET ${target.base_path}/models answered ${modelsRes.status}` },
            http_status: modelsRes.status,
            detail: upstreamDetail(modelsRes.body, opts.apiKey),
          });
        }
        try {
          const parsed = JSON.parse(modelsRes.body) as { data?: unknown };
          cards = Array.isArray(parsed.data) ? parsed.data.filter((c): c is Record<string, unknown> => typeof c === "object" && c !== null) : [];
        } catch {
          cards = [];
        }
        const served = cards.map((c) => c.id).filter((id): id is string => typeof id === "string");
        const base = { address: r.address, models_served: served.slice(0, 20), engine: detectEngine({ headers, modelCards: cards }) };
        if (cards.length === 0) {
          return result({ ...base, latency_ms: { models: modelsMs, completion: null, total: Math.round(now() - started) }, error: { code: "bad_response", message: "GET /models did not answer an OpenAI model list" }, detail: upstreamDetail(modelsRes.body, opts.apiKey) });
        }
        if (!served.includes(opts.model)) {
          return result({ ...base, latency_ms: { models: modelsMs, completion: null, total: Math.round(now() - started) }, error: { code: "wrong_model", message: `the instance does not serve ${opts.model} (it serves: ${served.slice(0, 5).join(", ")})` } });
        }
        const t1 = now();
        completionRes = await call("POST", "/chat/completions", JSON.stringify({ model: opts.model, messages: [{ role: "user", content: "ping" }], max_tokens: 1, stream: false }));
        completionMs = Math.round(now() - t1);
        headers.push(completionRes.headers);
        let completion: Record<string, unknown> | null = null;
        try {
          const p = JSON.parse(completionRes.body) as unknown;
          completion = typeof p === "object" && p !== null ? (p as Record<string, unknown>) : null;
        } catch {
          completion = null;
        }
        const latency_ms = { models: modelsMs, completion: completionMs, total: Math.round(now() - started) };
        const engine = detectEngine({ headers, modelCards: cards, completion });
        if (completionRes.status < 200 || completionRes.status > 299) {
          return result({
            ...base,
            engine,
            latency_ms,
            error: { code: "http_error", message: `POST ${target.base_path}/chat/completions answered ${completionRes.status}` },
            http_status: completionRes.status,
            detail: upstreamDetail(completionRes.body, opts.apiKey),
          });
        }
        if (!completion || !Array.isArray(completion.choices)) {
          return result({ ...base, engine, latency_ms, error: { code: "bad_response", message: "the completion has no choices" }, detail: upstreamDetail(completionRes.body, opts.apiKey) });
        }
        return result({ ...base, engine, latency_ms, ok: true });
      } catch (e) {
        if (e instanceof RequestFailed) {
          if (e.code === "aborted") throw e;
          return result({ address: r.address, latency_ms: { models: modelsMs, completion: completionMs, total: Math.round(now() - started) }, error: { code: e.code, message: e.message } });
        }
        throw e;
      }
    },
    async scrapeMetrics(target, opts) {
      const r = await resolve(target.host, target.port);
      if (!r.ok) return { ok: false, error: r.message };
      try {
        const req: PinnedRequest = { scheme: target.scheme, host: target.host, port: target.port, ip: r.ip, method: "GET", path: "/metrics", headers: { ...authHeaders(opts.apiKey), accept: "text/plain" }, timeoutMs: opts.timeoutMs, signal: opts.signal, maxBodyBytes: opts.maxBytes };
        const res = target.scheme === "http" ? await probeHttp(req) : await pinnedRequest(req);
        if (res.status < 200 || res.status > 299) return { ok: false, error: `status ${res.status}` };
        return { ok: true, body: res.body };
      } catch (e) {
        if (e instanceof RequestFailed) return { ok: false, error: e.code };
        throw e;
      }
    },
    async probe(target, opts) {
      return await probeRequest(target, "GET", opts.path, undefined, opts, () => null);
    },
    async probeCompletion(target, opts) {
      const body = JSON.stringify({ model: opts.model, messages: [{ role: "user", content: "ping" }], max_tokens: 1, stream: false });
      return await probeRequest(target, "POST", `${target.base_path}/chat/completions`, body, opts, (text) => {
        try {
          const p = JSON.parse(text) as { choices?: unknown };
          return Array.isArray(p.choices) ? null : "the completion has no choices";
        } catch {
          return "the completion is not JSON";
        }
      });
    },
  };

  async function probeRequest(
    target: Target,
    method: "GET" | "POST",
    path: string,
    body: string | undefined,
    opts: { timeoutMs: number; apiKey: string | null; signal?: AbortSignal },
    check: (body: string) => string | null,
  ): Promise<ProbeOutcome> {
    const r = await resolve(target.host, target.port);
    if (!r.ok) return { ok: false, address: null, error: r.message };
    try {
      const req: PinnedRequest = { scheme: target.scheme, host: target.host, port: target.port, ip: r.ip, method, path, headers: authHeaders(opts.apiKey), body, timeoutMs: opts.timeoutMs, signal: opts.signal, maxBodyBytes: 64 * 1024 };
      // Probes are the hot path (every instance every N s): plain http on the lean client (probe-client.ts).
      const res = target.scheme === "http" ? await probeHttp(req) : await pinnedRequest(req);
      if (res.status < 200 || res.status > 299) return { ok: false, address: r.address, error: `status ${res.status}` };
      const bad = check(res.body);
      return { ok: bad === null, address: r.address, error: bad };
    } catch (e) {
      if (e instanceof RequestFailed) {
        if (e.code === "aborted") throw e;
        return { ok: false, address: r.address, error: e.code };
      }
      throw e;
    }
  }
}
