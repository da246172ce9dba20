/**
 * A lean HTTP/1.1 client for health probes over plain `http`: one short-lived TCP connection per probe
 * (as pinnedRequest with `agent: false`: `connection: close`, connected to the pinned address), the
 * request written as one buffer, the answer parsed here (status line, `content-length` / `chunked` /
 * read-until-close bodies, 1xx skipped). Same outcomes and error codes as pinnedRequest (refused, timeout,
 * network_error, too_large, aborted).
 *
 * Why not node:http: at 2,000 probes a second (10k instances, N = 5 s) its per-request machinery (agent,
 * ClientRequest, parser, IncomingMessage, stream plumbing, an abort listener per request on the prober's one
 * signal — EventTarget looks every listener over on each add) was most of the control process's CPU and
 * garbage. https keeps using pinnedRequest (TLS).
 */
import net from "node:net";
import { RequestFailed, type PinnedRequest, type PinnedResponse } from "./http-client.js";

// What node:http refuses to send (it throws; pinnedRequest turns that into a failed request).
const INVALID_PATH = /[^\u0021-\u00ff]/;
const INVALID_HEADER_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const TOKEN = /^[\^_`a-zA-Z\-0-9!#$%&'*+.|~]+$/;

/** One abort listener per signal (not one per probe): the probes in flight on it are cancelled from a set. */
const onSignal = new WeakMap<AbortSignal, Set<() => void>>();

function watch(signal: AbortSignal, cancel: () => void): () => void {
  let set = onSignal.get(signal);
  if (!set) {
    const s = new Set<() => void>();
    set = s;
    onSignal.set(signal, s);
    signal.addEventListener(
      "abort",
      () => {
        for (const f of [...s]) f();
        s.clear();
      },
      { once: true },
    );
  }
  set.add(cancel);
  const s = set;
  return () => void s.delete(cancel);
}

const HEADER_END = Buffer.from("\r\n\r\n");
/** Where every probe socket's reads land (net `onread`); each read is copied out before the next can come. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** Parses a response head (without the blank line): status and the headers that frame the body. */
function parseHead(head: string): { status: number; length: number | null; chunked: boolean; headers: Record<string, string> } | null {
  const lines = head.split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? "");
  if (!m) return null;
  const headers: Record<string, string> = {};
  let length: number | null = null;
  let chunked = false;
  for (let k = 1; k < lines.length; k++) {
    const line = lines[k]!;
    const c = line.indexOf(":");
    if (c <= 0) return null;
    const name = line.slice(0, c).trim().toLowerCase();
    const value = line.slice(c + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    if (name === "content-length") {
      if (!/^\d+$/.test(value) || (length !== null && length !== Number(value))) return null;
      length = Number(value);
    } else if (name === "transfer-encoding") chunked = /(?:^|,)\s*chunked\s*$/i.test(value);
  }
  return { status: Number(m[1]), length: chunked ? null : length, chunked, headers };
}

/**
 * Decodes a chunked body from `buf`: the body, `false` when more bytes are needed, null when malformed.
 * Trailers are read and dropped.
 */
function dechunk(buf: Buffer, max: number): Buffer | false | null | "too_large" {
  const parts: Buffer[] = [];
  let size = 0;
  let at = 0;
  for (;;) {
    const eol = buf.indexOf("\r\n", at);
    if (eol < 0) return buf.length - at > 1024 ? null : false;
    const sizeLine = buf.subarray(at, eol).toString("latin1").split(";")[0]!.trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeLine)) return null;
    const n = parseInt(sizeLine, 16);
    if (n === 0) {
      // Trailers until a blank line.
      let t = eol + 2;
      for (;;) {
        const e = buf.indexOf("\r\n", t);
        if (e < 0) return false;
        if (e === t) return Buffer.concat(parts, size);
        t = e + 2;
      }
    }
    size += n;
    if (size > max) return "too_large";
    if (buf.length < eol + 2 + n + 2) return false;
    parts.push(buf.subarray(eol + 2, eol + 2 + n));
    if (buf[eol + 2 + n] !== 13 || buf[eol + 3 + n] !== 10) return null;
    at = eol + 4 + n;
  }
}

/** pinnedRequest for `http` targets, on a raw socket. */
export function probeHttp(req: PinnedRequest): Promise<PinnedResponse> {
  const maxBody = req.maxBodyBytes ?? 1024 * 1024;
  return new Promise((resolve, reject) => {
    const hostHeader = `${req.host.includes(":") && !req.host.startsWith("[") ? `[${req.host}]` : req.host}${req.port === 80 ? "" : `:${req.port}`}`;
    const headers: Record<string, string> = { accept: "application/json", ...req.headers };
    if (req.body !== undefined) {
      headers["content-type"] = "application/json";
      headers["content-length"] = String(Buffer.byteLength(req.body));
    }
    if (INVALID_PATH.test(req.path)) return reject(new RequestFailed("network_error", "the request could not be sent: ERR_UNESCAPED_CHARACTERS"));
    let head = `${req.method} ${req.path} HTTP/1.1\r\nhost: ${hostHeader}\r\n`;
    for (const [k, v] of Object.entries(headers)) {
      if (!TOKEN.test(k)) return reject(new RequestFailed("network_error", "the request could not be sent: ERR_INVALID_HTTP_TOKEN"));
      if (INVALID_HEADER_VALUE.test(v)) return reject(new RequestFailed("network_error", "the request could not be sent: ERR_INVALID_CHAR"));
      head += `${k}: ${v}\r\n`;
    }
    head += "connection: close\r\n\r\n";
    // Header values are Latin-1 on the wire (as node:http writes them); the body is UTF-8.
    const out = req.body === undefined ? Buffer.from(head, "latin1") : Buffer.concat([Buffer.from(head, "latin1"), Buffer.from(req.body, "utf8")]);

    let settled = false;
    let unwatch: (() => void) | null = null;
    let buf: Buffer | null = null;
    let bodyAt = -1;
    let parsed: ReturnType<typeof parseHead> = null;
    // Reads land in one buffer shared by every probe (copied out at once): no 64 KiB read buffer allocated per
    // read, and no stream 'data' plumbing per chunk.
    const sock = net.connect({
      host: req.ip,
      port: req.port,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number, b: Uint8Array) => {
          if (settled) return true;
          const chunk = b.subarray(0, n);
          buf = buf === null ? Buffer.from(chunk) : Buffer.concat([buf, chunk]);
          advance(false);
          return true;
        },
      },
    });
    const timer = setTimeout(() => fail(new RequestFailed("timeout", `no answer within ${req.timeoutMs} ms`)), req.timeoutMs);
    const done = () => {
      settled = true;
      clearTimeout(timer);
      unwatch?.();
      sock.destroy();
    };
    function fail(e: RequestFailed) {
      if (settled) return;
      done();
      reject(e);
    }
    function finish(status: number, hdrs: Record<string, string>, body: Buffer) {
      if (settled) return;
      done();
      resolve({ status, headers: hdrs, body: body.toString("utf8") });
    }
    /** Tries to complete the response from what was read; `ended`: the peer closed. */
    function advance(ended: boolean) {
      if (settled || buf === null) {
        if (ended && !settled) fail(new RequestFailed("network_error", "ECONNRESET"));
        return;
      }
      while (parsed === null) {
        const end = buf.indexOf(HEADER_END);
        if (end < 0) {
          if (buf.length > 64 * 1024) return fail(new RequestFailed("network_error", "HPE_HEADER_OVERFLOW"));
          if (ended) fail(new RequestFailed("network_error", "ECONNRESET"));
          return;
        }
        const p = parseHead(buf.subarray(0, end).toString("latin1"));
        if (p === null) return fail(new RequestFailed("network_error", "HPE_INVALID_RESPONSE"));
        if (p.status >= 100 && p.status < 200 && p.status !== 101) {
          buf = buf.subarray(end + 4); // informational: the final answer follows
          continue;
        }
        parsed = p;
        bodyAt = end + 4;
      }
      const p = parsed;
      const rest = buf.subarray(bodyAt);
      if (p.status === 204 || p.status === 304 || req.method === ("HEAD" as string)) return finish(p.status, p.headers, Buffer.alloc(0));
      if (p.chunked) {
        const b = dechunk(rest, maxBody);
        if (b === "too_large") return fail(new RequestFailed("too_large", `answer larger than ${maxBody} bytes`));
        if (b === null) return fail(new RequestFailed("network_error", "HPE_INVALID_CHUNK_SIZE"));
        if (b !== false) return finish(p.status, p.headers, b);
        if (ended) fail(new RequestFailed("network_error", "ECONNRESET"));
        return;
      }
      if (p.length !== null) {
        if (p.length > maxBody && rest.length > maxBody) return fail(new RequestFailed("too_large", `answer larger than ${maxBody} bytes`));
        if (rest.length >= p.length) return finish(p.status, p.headers, rest.subarray(0, p.length));
        if (ended) fail(new RequestFailed("network_error", "ECONNRESET"));
        return;
      }
      if (rest.length > maxBody) return fail(new RequestFailed("too_large", `answer larger than ${maxBody} bytes`));
      if (ended) finish(p.status, p.headers, rest); // delimited by the close
    }
    sock.on("connect", () => void sock.write(out));
    sock.on("end", () => advance(true));
    sock.on("close", () => advance(true));
    sock.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ECONNREFUSED") return fail(new RequestFailed("refused", "connection refused"));
      fail(new RequestFailed("network_error", e.code ?? e.message));
    });
    if (req.signal) {
      if (req.signal.aborted) return fail(new RequestFailed("aborted", "aborted"));
      unwatch = watch(req.signal, () => fail(new RequestFailed("aborted", "aborted")));
    }
  });
}
