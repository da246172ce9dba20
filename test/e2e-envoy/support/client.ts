/**
 * Requests through the gateway, and tracing each one to the upstream request(s) it caused.
 *
 * Every request carries a unique `x-e2e-seq` header (Envoy forwards it): `trace()` finds the records
 * holding it in every mock instance and in the SaaS stand-in, so a test sees exactly which upstream
 * got the request and with which headers — the ones the plugin set included.
 */
import type { RecordedRequest } from "../../../envoy/local/mock-openai.js";
import { CHAT, type SaasRequest, type Stack } from "./stack.js";

export const SEQ_HEADER = "x-e2e-seq";
/** Our internal headers: clients may not set them (stripped by header_mutation), the plugin sets them. */
export const INTERNAL_HEADERS = ["x-gateway-cluster", "x-gateway-destination-endpoint", "x-model-deployment", "x-model-instance"] as const;

let counter = 0;

export interface SendOptions {
  model?: string;
  /**
   * How the model reaches the plugin. "body": JSON body with `model` (body routing: the plugin holds
   * the headers and reads the body — needs allow_on_headers_stop_iteration). "header": `x-model`
   * with a text/plain content type, so body routing cannot be what routed it.
   */
  via?: "body" | "header";
  method?: string;
  path?: string;
  /** Raw body to send instead of the default chat body. */
  raw?: string;
  headers?: Record<string, string>;
}

export interface Sent {
  seq: string;
  status: number;
  headers: Headers;
  text: string;
  /** Completion text: the mock's key ("<deployment>/<instance>") or "saas". */
  content: string | undefined;
}

export function chatBody(model: string): string {
  return JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] });
}

export async function send(listener: string, o: SendOptions = {}): Promise<Sent> {
  const seq = `${process.pid}-${++counter}`;
  const { method, headers, body } = requestParts(o, seq);
  const r = await fetch(listener + (o.path ?? CHAT), { method, headers, body, signal: AbortSignal.timeout(20_000) });
  const text = await r.text();
  let content: string | undefined;
  try {
    const j = JSON.parse(text) as { choices?: { message?: { content?: unknown } }[] };
    const c = j.choices?.[0]?.message?.content;
    content = typeof c === "string" ? c : undefined;
  } catch {
    content = undefined;
  }
  return { seq, status: r.status, headers: r.headers, text, content };
}

/** Sequential requests (one at a time: exact shares depend on the order of picks). */
export async function sendMany(listener: string, n: number, o: (i: number) => SendOptions): Promise<Sent[]> {
  const out: Sent[] = [];
  for (let i = 0; i < n; i++) out.push(await send(listener, o(i)));
  return out;
}

export interface Hit {
  /** "<deployment>/<instance>" or "saas". */
  where: string;
  req: RecordedRequest | SaasRequest;
}

const seqOf = (h: Record<string, string | string[] | undefined>): string | undefined => {
  const v = h[SEQ_HEADER];
  return Array.isArray(v) ? v.join(",") : v;
};

/** Every upstream request that carried `seq`. */
export function trace(stack: Stack, seq: string): Hit[] {
  const hits: Hit[] = [];
  for (const [key, m] of stack.mocks) for (const r of m.requests) if (seqOf(r.headers) === seq) hits.push({ where: key, req: r });
  for (const r of stack.saas.requests) if (seqOf(r.headers) === seq) hits.push({ where: "saas", req: r });
  return hits;
}

/** Requests that came through the gateway (carry a seq) and reached `key`'s mock. */
export function gatewayHits(stack: Stack, key: string): RecordedRequest[] {
  return stack.mock(key).requests.filter((r) => r.path === CHAT && seqOf(r.headers) !== undefined);
}

export const header = (h: Record<string, string | string[] | undefined>, name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v.join(",") : v;
};

export function tally(keys: readonly (string | undefined)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of keys) out[k ?? "<none>"] = (out[k ?? "<none>"] ?? 0) + 1;
  return out;
}

/**
 * Bounded wait on a condition, checked every `stepMs`; a throw from `cond` counts as "not yet" (e.g. admin
 * briefly unavailable) and is reported if it persists; on timeout the error says what `seen` shows.
 */
export async function until(cond: () => Promise<boolean> | boolean, ms: number, what: string, seen?: () => Promise<string> | string, stepMs = 25): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    let err: unknown;
    try {
      if (await cond()) return;
    } catch (e) {
      err = e;
    }
    if (Date.now() > deadline) {
      let detail = "";
      try {
        detail = seen ? await seen() : "";
      } catch (e) {
        detail = `(could not read state: ${String(e)})`;
      }
      throw new Error(`timed out after ${ms} ms waiting for ${what}${err ? ` (last error: ${String(err)})` : ""}\n${detail}`);
    }
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Method, headers and body of a request as `send` and the connection helpers build it. */
export function requestParts(o: SendOptions, seq: string): { method: string; headers: Record<string, string>; body: string | undefined } {
  const method = o.method ?? "POST";
  const headers: Record<string, string> = { [SEQ_HEADER]: seq, ...o.headers };
  let body: string | undefined;
  if (method !== "GET" && method !== "HEAD") {
    body = o.raw ?? chatBody(o.model ?? "");
    if (o.via === "header") {
      headers["x-model"] = o.model ?? "";
      headers["content-type"] ??= "text/plain";
    } else headers["content-type"] ??= "application/json";
  }
  return { method, headers, body };
}
