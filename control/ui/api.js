// @ts-check
/**
 * The public control API, as any client calls it: bearer token in `Authorization`, JSON, ETags.
 * The change stream (GET /v1/events) is read with fetch() streaming — EventSource cannot send an
 * Authorization header, and a token in a URL would end up in logs.
 */

export class ApiError extends Error {
  /** @param {number} status @param {any} body */
  constructor(status, body) {
    const e = body && typeof body === "object" && body.error ? body.error : null;
    super(e?.message ?? `HTTP ${status}`);
    this.status = status;
    /** @type {string} */
    this.code = e?.code ?? "http_error";
    /** @type {{ path: string, message: string }[]} */
    this.issues = Array.isArray(e?.issues) ? e.issues : [];
    /** @type {string | null} */
    this.requestId = e?.request_id ?? null;
    /** connectivity_failed: what each instance's connectivity test saw. @type {any[]} */
    this.instances = Array.isArray(e?.instances) ? e.instances : [];
  }
}

/**
 * @typedef {{ status: number, data: any, etag: string | null }} ApiResult
 * @typedef {(method: string, path: string, opts?: { body?: unknown, ifMatch?: string, signal?: AbortSignal }) => Promise<ApiResult>} Api
 */

/** @param {() => string | null} token @returns {Api} */
export function createApi(token) {
  return async (method, path, opts = {}) => {
    /** @type {Record<string, string>} */
    const headers = { accept: "application/json" };
    const t = token();
    if (t) headers.authorization = `Bearer ${t}`;
    if (opts.body !== undefined) headers["content-type"] = "application/json";
    if (opts.ifMatch !== undefined) headers["if-match"] = opts.ifMatch;
    const res = await fetch(path, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body), cache: "no-store", signal: opts.signal });
    const text = await res.text();
    let data = null;
    try {
      data = text === "" ? null : JSON.parse(text);
    } catch {
      data = null;
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return { status: res.status, data, etag: res.headers.get("etag") };
  };
}

/** URL path segment. @param {string} s */
export const seg = (s) => encodeURIComponent(s);

/**
 * @typedef {"connecting" | "live" | "reconnecting" | "unauthorized"} StreamStatus
 * @typedef {{ type: string, [k: string]: any }} StreamEvent
 */

/**
 * Reads the change stream until `signal` aborts; reconnects with `Last-Event-ID` after a drop (the
 * server replays what was missed, or sends `resync`). Server-sent-events framing per the HTML spec.
 * @param {{ token: () => string | null, signal: AbortSignal, onEvent: (e: StreamEvent) => void, onStatus: (s: StreamStatus, info?: { first: boolean }) => void }} o
 */
export async function followStream(o) {
  let lastId = "";
  let retryMs = 2_000;
  let first = true;
  let failures = 0;
  while (!o.signal.aborted) {
    try {
      /** @type {Record<string, string>} */
      const headers = { accept: "text/event-stream", authorization: `Bearer ${o.token() ?? ""}` };
      if (lastId !== "") headers["last-event-id"] = lastId;
      const res = await fetch("/v1/events", { headers, cache: "no-store", signal: o.signal });
      if (res.status === 401 || res.status === 403) return o.onStatus("unauthorized");
      if (!res.ok || !res.body) throw new Error(`stream: HTTP ${res.status}`);
      o.onStatus("live", { first });
      first = false;
      failures = 0;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      let event = "message";
      let data = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let nl;
        while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
          if (line === "") {
            if (data.length > 0) {
              try {
                o.onEvent({ ...JSON.parse(data.join("\n")), type: event });
              } catch {
                /* not ours: ignore */
              }
            }
            event = "message";
            data = [];
            continue;
          }
          if (line.startsWith(":")) continue; // heartbeat comment
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event = val;
          else if (field === "data") data.push(val);
          else if (field === "id" && !val.includes("\0")) lastId = val;
          else if (field === "retry" && /^\d+$/.test(val)) retryMs = Number(val);
        }
      }
    } catch {
      if (o.signal.aborted) return;
    }
    if (o.signal.aborted) return;
    o.onStatus("reconnecting");
    failures++;
    // Jittered, growing with repeated failures (capped): many tabs do not reconnect in lockstep.
    const wait = Math.min(retryMs * 2 ** Math.min(failures - 1, 4), 30_000) * (0.5 + Math.random() / 2);
    await new Promise((r) => setTimeout(r, wait));
  }
}
