/**
 * A small HTTP client for tests and probes: connects to an address resolved (and checked) beforehand,
 * so DNS cannot change between the policy check and the connection; bounded time and body size.
 */
import http from "node:http";
import https from "node:https";
import { isIPv6 } from "node:net";

export interface PinnedRequest {
  scheme: "http" | "https";
  host: string;
  port: number;
  /** The IP to connect to (already resolved and checked). */
  ip: string;
  method: "GET" | "POST";
  path: string;
  headers?: Record<string, string>;
  body?: string;
  timeoutMs: number;
  signal?: AbortSignal;
  maxBodyBytes?: number;
}

export interface PinnedResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export class RequestFailed extends Error {
  override name = "RequestFailed";
  constructor(
    readonly code: "refused" | "timeout" | "network_error" | "tls_error" | "too_large" | "aborted",
    message: string,
  ) {
    super(message);
  }
}

export function pinnedRequest(req: PinnedRequest): Promise<PinnedResponse> {
  const maxBody = req.maxBodyBytes ?? 1024 * 1024;
  const family = isIPv6(req.ip) ? 6 : 4;
  return new Promise((resolve, reject) => {
    const lib = req.scheme === "https" ? https : http;
    const headers: Record<string, string> = { accept: "application/json", ...req.headers };
    if (req.body !== undefined) {
      headers["content-type"] = "application/json";
      headers["content-length"] = String(Buffer.byteLength(req.body));
    }
    let settled = false;
    const onAbort = () => fail(new RequestFailed("aborted", "aborted"));
    const cleanup = () => {
      clearTimeout(timer);
      req.signal?.removeEventListener("abort", onAbort);
    };
    const fail = (e: RequestFailed) => {
      if (settled) return;
      settled = true;
      cleanup();
      r.destroy();
      reject(e);
    };
    let r: http.ClientRequest;
    try {
      r = lib.request(
        {
          host: req.host,
          port: req.port,
          method: req.method,
          path: req.path,
          headers,
          agent: false,
          // Pin the connection to the checked address (SNI and Host keep the hostname).
          lookup: (_hostname, opts, cb) => {
            if ((opts as { all?: boolean }).all) (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address: req.ip, family }]);
            else cb(null, req.ip, family);
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size > maxBody) return fail(new RequestFailed("too_large", `answer larger than ${maxBody} bytes`));
            chunks.push(c);
          });
          res.on("end", () => {
            if (settled) return;
            settled = true;
            cleanup();
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") });
          });
          res.on("error", (e) => fail(new RequestFailed("network_error", e.message)));
        },
      );
    } catch (e) {
      // http.request throws for a header value or path it cannot send (control characters, non-Latin-1): that is a
      // failed request like any other, never an exception (it left connectivity tests and probes retrying forever).
      return reject(new RequestFailed("network_error", `the request could not be sent: ${(e as NodeJS.ErrnoException).code ?? "invalid request"}`));
    }
    const timer = setTimeout(() => fail(new RequestFailed("timeout", `no answer within ${req.timeoutMs} ms`)), req.timeoutMs);
    r.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ECONNREFUSED") return fail(new RequestFailed("refused", "connection refused"));
      if (e.code?.startsWith("ERR_TLS") || /certificate|SSL|TLS/i.test(e.message)) return fail(new RequestFailed("tls_error", e.message));
      fail(new RequestFailed("network_error", e.code ?? e.message));
    });
    if (req.signal) {
      if (req.signal.aborted) return onAbort();
      req.signal.addEventListener("abort", onAbort, { once: true });
    }
    r.end(req.body);
  });
}
