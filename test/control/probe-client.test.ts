// The probes' lean HTTP client (control/src/connectivity/probe-client.ts) against node:http's (pinnedRequest,
// which the connectivity test keeps using): the same status, body and error code for every way an answer can
// be framed or fail. Raw-socket servers send exactly the bytes under test.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { pinnedRequest, RequestFailed, type PinnedRequest } from "../../control/src/connectivity/http-client.js";
import { probeHttp } from "../../control/src/connectivity/probe-client.js";

type Behaviour = (sock: net.Socket, request: string) => void;

const servers: net.Server[] = [];
after(async () => {
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
});

/** A server answering each connection with `b` once a whole request head (and its body) is in. */
async function serve(b: Behaviour): Promise<number> {
  const srv = net.createServer((sock) => {
    let buf = "";
    sock.on("error", () => undefined);
    sock.on("data", (c) => {
      buf += c.toString("latin1");
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const cl = /content-length: (\d+)/i.exec(buf.slice(0, end));
      if (buf.length - end - 4 < (cl ? Number(cl[1]) : 0)) return;
      sock.removeAllListeners("data");
      b(sock, buf);
    });
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  return (srv.address() as net.AddressInfo).port;
}

const req = (port: number, over: Partial<PinnedRequest> = {}): PinnedRequest => ({ scheme: "http", host: "127.0.0.1", port, ip: "127.0.0.1", method: "GET", path: "/health", timeoutMs: 500, maxBodyBytes: 64, ...over });

async function outcome(f: typeof probeHttp, r: PinnedRequest): Promise<unknown> {
  try {
    const res = await f(r);
    return { status: res.status, body: res.body };
  } catch (e) {
    if (e instanceof RequestFailed) return { error: e.code };
    throw e;
  }
}

/** Writes the parts one by one, apart in time (the client must reassemble them). */
const inParts = (parts: string[], close = true): Behaviour => (sock) => {
  let k = 0;
  const next = () => {
    if (k < parts.length) {
      sock.write(parts[k++]!);
      setTimeout(next, 5);
    } else if (close) sock.end();
  };
  next();
};

const cases: [string, Behaviour, Partial<PinnedRequest>?][] = [
  ["content-length", inParts(["HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"], false)],
  ["content-length, head and body split", inParts(["HTTP/1.1 503 Service Unava", "ilable\r\nContent-Length: 4\r\n", "\r\nd", "own"], false)],
  ["chunked, with trailers", inParts(["HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n", "2;x=y\r\nde\r\n0\r\nx-t: 1\r\n\r\n"], false)],
  ["read until close", inParts(["HTTP/1.1 200 OK\r\n\r\nuntil", " close"])],
  ["1xx before the answer", inParts(["HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"], false)],
  ["too large", inParts([`HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n${"x".repeat(100)}`], false)],
  ["too large, chunked", inParts([`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n64\r\n${"x".repeat(100)}\r\n0\r\n\r\n`], false)],
  ["closed before the answer", (sock) => sock.destroy()],
  ["closed in the body", inParts(["HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"])],
  ["no answer (timeout)", () => undefined, { timeoutMs: 100 }],
  ["POST with a body", (sock, r) => sock.end(`HTTP/1.1 200 OK\r\ncontent-length: ${Buffer.byteLength(r.slice(r.indexOf("\r\n\r\n") + 4))}\r\n\r\n${r.slice(r.indexOf("\r\n\r\n") + 4)}`), { method: "POST", body: '{"a":"é"}' }],
];

describe("probe HTTP client", () => {
  for (const [name, b, over] of cases) {
    test(`${name}: the same outcome as node:http`, async () => {
      const port = await serve(b);
      const want = await outcome(pinnedRequest, req(port, over));
      const got = await outcome(probeHttp, req(port, over));
      assert.deepEqual(got, want);
    });
  }

  test("refused: the same code", async () => {
    const port = await serve(() => undefined);
    const srv = servers.pop()!;
    await new Promise<void>((r) => srv.close(() => r()));
    assert.deepEqual(await outcome(probeHttp, req(port)), { error: "refused" });
    assert.deepEqual(await outcome(pinnedRequest, req(port)), { error: "refused" });
  });

  test("the request: method, path, host, headers and body as node:http sends them", async () => {
    let seen = "";
    const port = await serve((sock, r) => {
      seen = r;
      sock.end("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    });
    await probeHttp(req(port, { method: "POST", path: "/v1/chat/completions", headers: { authorization: "Bearer k" }, body: "{}" }));
    const [line, ...rest] = seen.split("\r\n");
    assert.equal(line, "POST /v1/chat/completions HTTP/1.1");
    const h = Object.fromEntries(rest.filter((l) => l.includes(":")).map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
    assert.equal(h.host, `127.0.0.1:${port}`);
    assert.equal(h.authorization, "Bearer k");
    assert.equal(h["content-type"], "application/json");
    assert.equal(h["content-length"], "2");
    assert.equal(h.connection, "close");
    assert.ok(seen.endsWith("\r\n\r\n{}"));
  });

  test("abort: every probe on the signal fails with `aborted`, through one listener", async () => {
    const port = await serve(() => undefined);
    const ac = new AbortController();
    const add = ac.signal.addEventListener.bind(ac.signal);
    let listeners = 0;
    ac.signal.addEventListener = ((...a: Parameters<typeof add>) => {
      listeners++;
      return add(...a);
    }) as typeof add;
    const ps = Array.from({ length: 20 }, () => outcome(probeHttp, req(port, { timeoutMs: 5_000, signal: ac.signal })));
    ac.abort();
    for (const o of await Promise.all(ps)) assert.deepEqual(o, { error: "aborted" });
    assert.equal(listeners, 1);
    assert.deepEqual(await outcome(probeHttp, req(port, { signal: ac.signal })), { error: "aborted" });
  });

  test("a request node:http cannot send fails as a request, not an exception", async () => {
    const port = await serve(() => undefined);
    assert.deepEqual(await outcome(probeHttp, req(port, { path: "/a b" })), { error: "network_error" });
    assert.deepEqual(await outcome(probeHttp, req(port, { headers: { authorization: "Bearer a\nb" } })), { error: "network_error" });
  });
});
