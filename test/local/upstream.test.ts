// The local data plane's upstream side (envoy/local/upstream.ts, undici pools), seen from a raw TCP server
// standing in for the instance (here the passthrough upstream: no connectivity test needed), so every byte
// and every connection it gets is visible: how a request is written, what is not forwarded, connection
// reuse, and the retry on a kept-alive connection the server closed.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { TLSSocket } from "node:tls";
import type { LocalDataPlane } from "../../envoy/local/dataplane.js";
import { startDataPlaneProcesses, type DataPlaneGroup } from "../../envoy/local/dataplane-processes.js";
import { CONNECT_TIMEOUT, IDLE_SWEEP_AT, Upstreams } from "../../envoy/local/upstream.js";
import { PLUGIN } from "../control/harness.js";
import { controlVersion, dataplane, startEnv, waitFor, type Env } from "./support.js";

/** Not a managed model: the plugin passes it through, routed by its header (model_header), so the body streams. */
const MODEL = "not-managed-here";
const chatBody = (n = 0) => JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "x".repeat(n) }] });

/** A request as the raw server saw it: its head, its body, and the socket reads that carried it. */
interface Seen {
  conn: number;
  head: string;
  body: Buffer;
  reads: number;
}

/**
 * An HTTP/1.1 server written against the socket: requests framed by content-length or chunked encoding,
 * each answered 200 with a small JSON body on the same connection. `closeOnNth`: on the connection's n-th
 * request, close the connection instead of answering (a server ending an idle keep-alive connection just as
 * a request arrives).
 */
function rawServer(opts: { closeOnNth?: number } = {}) {
  const seen: Seen[] = [];
  /** Called as each request's head is complete, before its body is. */
  const onHead: Array<(s: Seen) => void> = [];
  let conns = 0;
  const sockets = new Set<Socket>();
  const srv: Server = createServer((sock) => {
    const conn = ++conns;
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    let buf = Buffer.alloc(0);
    let reads = 0;
    let nth = 0;
    let cur: { head: string; need: number | "chunked"; reads: number; announced: boolean } | null = null;
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      reads++;
      for (;;) {
        if (cur === null) {
          const end = buf.indexOf("\r\n\r\n");
          if (end < 0) return;
          const head = buf.subarray(0, end).toString("latin1");
          buf = buf.subarray(end + 4);
          const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
          cur = { head, need: /\r\ntransfer-encoding:\s*chunked/i.test(head) ? "chunked" : cl ? Number(cl[1]) : 0, reads, announced: false };
          reads = 0;
        }
        if (!cur.announced) {
          cur.announced = true;
          for (const f of onHead.splice(0)) f({ conn, head: cur.head, body: Buffer.alloc(0), reads: 0 });
        }
        let body: Buffer;
        if (cur.need === "chunked") {
          const parts: Buffer[] = [];
          let rest = buf;
          let done = false;
          for (;;) {
            const nl = rest.indexOf("\r\n");
            if (nl < 0) break;
            const size = parseInt(rest.subarray(0, nl).toString("latin1"), 16);
            if (rest.length < nl + 2 + size + 2) break;
            if (size === 0) {
              rest = rest.subarray(nl + 4);
              done = true;
              break;
            }
            parts.push(rest.subarray(nl + 2, nl + 2 + size));
            rest = rest.subarray(nl + 2 + size + 2);
          }
          if (!done) return;
          body = Buffer.concat(parts);
          buf = rest;
        } else {
          if (buf.length < cur.need) return;
          body = buf.subarray(0, cur.need);
          buf = buf.subarray(cur.need);
        }
        nth++;
        seen.push({ conn, head: cur.head, body, reads: cur.reads + reads });
        cur = null;
        reads = 0;
        if (opts.closeOnNth !== undefined && nth === opts.closeOnNth) {
          sock.destroy();
          return;
        }
        const out = JSON.stringify({ id: "raw-1", object: "chat.completion", choices: [] });
        sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${out.length}\r\nx-upstream: raw\r\n\r\n${out}`);
      }
    });
  });
  return {
    seen,
    onHead,
    get connections() {
      return conns;
    },
    async listen(): Promise<string> {
      await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
      return `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

/** One request through the data plane with node:http; `body`: sent at once, or written by the function. */
function call(dp: LocalDataPlane, headers: Record<string, string>, body: string | ((req: ReturnType<typeof request>) => void)) {
  return new Promise<{ status: number; text: string; informational: number[] }>((resolve, reject) => {
    const informational: number[] = [];
    const req = request(`${dp.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", "x-model": MODEL, ...headers } }, (res) => {
      let t = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (t += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: t, informational }));
    });
    req.on("information", (i) => informational.push(i.statusCode));
    req.on("error", reject);
    if (typeof body === "string") req.end(body);
    else body(req);
  });
}

let env: Env;
before(async () => {
  env = await startEnv();
});
after(async () => {
  await env?.stop();
});

describe("the local data plane's upstream connections", { timeout: 60_000 }, () => {
  let raw: ReturnType<typeof rawServer>;
  let dp: LocalDataPlane;
  before(async () => {
    raw = rawServer();
    dp = await dataplane(env, { passthroughUrl: await raw.listen() });
    await waitFor(() => dp.tableVersion() > 0, 10_000, "table");
  });
  after(async () => {
    await raw.close();
  });

  test("a small body with a content-length goes out with the head in one write; requests in a row reuse one connection", async () => {
    const before = raw.seen.length;
    for (let i = 0; i < 5; i++) {
      const body = chatBody(100 * i);
      // The client's head and body reach the gateway apart (a deliberate gap, not a wait for anything): sent
      // at once, the head would reach the instance alone.
      const r = await call(dp, { "content-length": String(Buffer.byteLength(body)) }, (req) => {
        req.flushHeaders();
        setTimeout(() => req.end(body), 30);
      });
      assert.equal(r.status, 200, r.text);
    }
    const got = raw.seen.slice(before);
    assert.equal(got.length, 5);
    for (const [i, s] of got.entries()) {
      assert.equal(s.body.toString(), chatBody(100 * i));
      assert.equal(s.reads, 1, `request ${i}: head and body in one read (one write), not ${s.reads}`);
    }
    assert.equal(new Set(got.map((s) => s.conn)).size, 1, "one kept-alive connection for requests in a row");
  });

  test("a chunked upload streams: the instance has the head before the client has finished", async () => {
    const before = raw.seen.length;
    const headSeen = new Promise<Seen>((r) => raw.onHead.push(r));
    const r = await call(dp, { "transfer-encoding": "chunked" }, (req) => {
      req.write('{"model":"not-managed-here","messages":[{"role":"user","content":"');
      // The rest only once the instance has the request's head: a forwarder holding the body would hang here.
      void headSeen.then(() => req.end('streamed"}]}'));
    });
    assert.equal(r.status, 200, r.text);
    const got = raw.seen.slice(before);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.body.toString(), '{"model":"not-managed-here","messages":[{"role":"user","content":"streamed"}]}');
  });

  test("a large body (over 64 KiB) streams too, and arrives whole", async () => {
    const before = raw.seen.length;
    const body = chatBody(300_000);
    const r = await call(dp, { "content-length": String(Buffer.byteLength(body)) }, body);
    assert.equal(r.status, 200, r.text);
    const got = raw.seen.slice(before);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.body.toString(), body);
    assert.ok(got[0]!.reads > 1, "sent as it came, in several writes");
  });

  test("Expect: 100-continue is answered by the gateway (as Envoy's connection manager does) and not sent upstream", async () => {
    const before = raw.seen.length;
    const body = chatBody(10);
    const r = await call(dp, { "content-length": String(Buffer.byteLength(body)), expect: "100-continue" }, (req) => {
      req.on("continue", () => req.end(body));
    });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.informational, [100], "the gateway answered 100 Continue");
    const got = raw.seen.slice(before);
    assert.equal(got.length, 1);
    assert.doesNotMatch(got[0]!.head, /\r\nexpect:/i);
    assert.equal(got[0]!.body.toString(), body);
  });
});

describe("a kept-alive connection the instance closes as a request arrives", { timeout: 60_000 }, () => {
  test("is retried once on a fresh connection: the client never sees it", async () => {
    const raw = rawServer({ closeOnNth: 2 }); // every connection: answers its first request, drops its second
    const dp = await dataplane(env, { passthroughUrl: await raw.listen() });
    try {
      await waitFor(() => dp.tableVersion() > 0, 10_000, "table");
      const body = chatBody(5);
      for (let i = 0; i < 4; i++) {
        const r = await call(dp, { "content-length": String(Buffer.byteLength(body)) }, body);
        assert.equal(r.status, 200, `request ${i}: ${r.text}; connections ${JSON.stringify(raw.seen.map((s) => s.conn))}`);
      }
      // Each request the server dropped (its connection's second) was sent again on a connection never used before.
      const dropped = raw.seen.flatMap((s, k) => (raw.seen.slice(0, k).some((x) => x.conn === s.conn) ? [k] : []));
      assert.ok(dropped.length >= 1, `some request went out on a kept-alive connection: ${JSON.stringify(raw.seen.map((s) => s.conn))}`);
      for (const k of dropped) {
        const next = raw.seen[k + 1];
        assert.ok(next && !raw.seen.slice(0, k + 1).some((x) => x.conn === next.conn), `the retry of request ${k} went out on a new connection: ${JSON.stringify(raw.seen.map((s) => s.conn))}`);
      }
      assert.equal(raw.seen.length, 4 + dropped.length, "4 answered, each drop retried once");
    } finally {
      await raw.close();
    }
  });
});

describe("https passthrough (PASSTHROUGH_URL=https://…, e.g. a SaaS API)", { timeout: 60_000 }, () => {
  test("TLS with the passthrough host as SNI and Host, verified against the trusted CAs; an untrusted certificate is a 503, not a pass", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gw-tls-"));
    const key = join(dir, "key.pem");
    const cert = join(dir, "cert.pem");
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"], { stdio: "ignore" });
    const seen: Array<{ sni: string | false | null; host: string | undefined; url: string | undefined }> = [];
    const tls = createHttpsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
      seen.push({ sni: (req.socket as TLSSocket).servername, host: req.headers.host, url: req.url });
      req.resume();
      req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end('{"id":"tls-1","object":"chat.completion","choices":[]}'));
    });
    await new Promise<void>((r) => tls.listen(0, "127.0.0.1", () => r()));
    const port = (tls.address() as { port: number }).port;
    const url = `https://localhost:${port}/openai`;
    const groups: DataPlaneGroup[] = [];
    const saved = process.env.NODE_EXTRA_CA_CERTS;
    try {
      // Data-plane processes read NODE_EXTRA_CA_CERTS when they start (node:cluster gives them this environment).
      process.env.NODE_EXTRA_CA_CERTS = cert;
      const trusting = await startDataPlaneProcesses({ controlUrl: env.control.url, pluginToken: PLUGIN, port: 0, host: "127.0.0.1", processes: 2, passthroughUrl: url, log: () => undefined });
      groups.push(trusting);
      // This process started without it: a data plane in it does not trust the certificate.
      const untrusting = await dataplane(env, { passthroughUrl: url });
      const version = await controlVersion(env);
      await trusting.waitForTable(version);
      await untrusting.waitForTable(version);
      const body = chatBody(3);
      const post = (base: string) =>
        fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", "x-model": MODEL }, body }).then(async (r) => ({ status: r.status, text: await r.text() }));
      const ok = await post(trusting.url);
      assert.equal(ok.status, 200, ok.text);
      assert.equal(JSON.parse(ok.text).id, "tls-1");
      assert.deepEqual(seen, [{ sni: "localhost", host: `localhost:${port}`, url: "/openai/v1/chat/completions" }]);
      const refused = await post(untrusting.url);
      assert.equal(refused.status, 503, refused.text);
      assert.equal(JSON.parse(refused.text).error.code, "upstream_connect_error");
      assert.equal(seen.length, 1, "nothing reached the server over the untrusted connection");
    } finally {
      if (saved === undefined) delete process.env.NODE_EXTRA_CA_CERTS;
      else process.env.NODE_EXTRA_CA_CERTS = saved;
      for (const g of groups) await g.close();
      tls.closeAllConnections();
      await new Promise<void>((r) => tls.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("Upstreams: pools per address", { timeout: 30_000 }, () => {
  test("pools of addresses no longer in use are closed once there are many (instances come and go)", async () => {
    // Addresses with nothing listening: each request fails at once (refused) and leaves an idle pool behind.
    const free = rawServer();
    const base = Number(new URL(await free.listen()).port);
    await free.close();
    const ups = new Upstreams(2000);
    try {
      let refused = 0;
      for (let i = 0; i < IDLE_SWEEP_AT + 50; i++) {
        const ip = `127.0.${Math.floor(i / 250)}.${1 + (i % 250)}`; // all of 127/8 is loopback
        const t = { address: `${ip}:${base}`, protocol: "http:" as const, hostname: ip, port: base, pathPrefix: "" };
        const code = await new Promise<string | undefined>((resolve) => {
          const r = ups.request(t, "GET", "/", ["host", "x"], [], {
            upstreamSent() {},
            upstreamHead() {},
            upstreamData: () => true,
            upstreamEnd: () => resolve("answered"),
            upstreamError: (_up, e) => resolve(e.code),
          });
          r.start();
        });
        if (code === "ECONNREFUSED") refused++;
        assert.ok(ups.poolCount <= IDLE_SWEEP_AT, `${ups.poolCount} pools after ${i + 1} addresses`);
      }
      assert.equal(refused, IDLE_SWEEP_AT + 50, "every address refused (nothing listens there)");
    } finally {
      await ups.close();
    }
  });
});

describe("Upstreams: the connect timeout", { timeout: 10_000 }, () => {
  test("a connect that does not finish within the timeout fails as ETIMEDOUT (UF, retried on the next endpoint), and the late socket is closed", async () => {
    // A connector that never finishes on its own (what a silently dropped SYN looks like): this machine has no
    // way to make a real TCP connect hang.
    const pending: Array<{ sock: { destroyed: boolean; destroy(): void }; cb: (err: Error | null, s: unknown) => void }> = [];
    const hanging = ((_opts: unknown, cb: (err: Error | null, s: unknown) => void) => {
      const sock = { destroyed: false, destroy() { this.destroyed = true; } };
      pending.push({ sock, cb });
      return sock;
    }) as never;
    const ups = new Upstreams(150, hanging);
    try {
      const t0 = performance.now();
      const err = await new Promise<Error & { code?: string }>((resolve, reject) => {
        const t = { address: "192.0.2.1:80", protocol: "http:" as const, hostname: "192.0.2.1", port: 80, pathPrefix: "" };
        ups.request(t, "GET", "/", ["host", "x"], [], {
          upstreamSent() {},
          upstreamHead: () => reject(new Error("answered")),
          upstreamData: () => true,
          upstreamEnd: () => reject(new Error("answered")),
          upstreamError: (_up, e) => resolve(e),
        }).start();
      });
      const took = performance.now() - t0;
      assert.equal(err.code, CONNECT_TIMEOUT, err.message);
      assert.ok(took >= 140, `failed after ${took.toFixed(0)} ms, before the 150 ms timeout`);
      assert.equal(pending.length, 1);
      assert.ok(pending[0]!.sock.destroyed, "the connecting socket is closed at the timeout");
      pending[0]!.cb(null, pending[0]!.sock); // the connect completing late changes nothing
    } finally {
      await ups.close();
    }
  });
});

describe("a client reading slower than the instance writes", { timeout: 60_000 }, () => {
  test("holds the instance back (nothing piles up in the gateway), is not taken for a stalled instance by the idle timer, and gets every byte", async () => {
    const TOTAL = 48 << 20; // well over what the loopback sockets and the gateway's buffers can hold
    const CHUNK = 64 << 10;
    let sent = 0;
    const conns = new Set<Socket>();
    const big = createServer((sock) => {
      conns.add(sock);
      sock.once("data", () => {
        sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${TOTAL}\r\n\r\n`);
        const pump = () => {
          while (sent < TOTAL) {
            const c = Buffer.alloc(CHUNK, sent / CHUNK % 251); // each chunk's bytes name its index (mod 251)
            sent += CHUNK;
            if (!sock.write(c)) return void sock.once("drain", pump);
          }
        };
        pump();
      });
    });
    await new Promise<void>((r) => big.listen(0, "127.0.0.1", () => r()));
    const dp = await dataplane(env, { passthroughUrl: `http://127.0.0.1:${(big.address() as { port: number }).port}`, idleTimeoutMs: 300 });
    try {
      await waitFor(() => dp.tableVersion() > 0, 10_000, "table");
      const { got, sentDuringPause, ok } = await new Promise<{ got: number; sentDuringPause: number; ok: boolean }>((resolve, reject) => {
        const req = request(`${dp.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", "x-model": MODEL } }, (res) => {
          let got = 0;
          let ok = true;
          let sentDuringPause = 0;
          res.pause();
          // Not reading for 1 s: longer than the 300 ms idle timeout, long enough for everything to pile up if nothing held the instance.
          setTimeout(() => {
            sentDuringPause = sent;
            res.on("data", (c: Buffer) => {
              for (let i = 0; i < c.length; i += 4096) if (c[i] !== Math.floor((got + i) / CHUNK) % 251) ok = false;
              got += c.length;
            });
            res.resume();
          }, 1000);
          res.on("end", () => resolve({ got, sentDuringPause, ok }));
          res.on("aborted", () => reject(new Error(`cut after ${got} bytes`)));
        });
        req.on("error", reject);
        req.end(chatBody(1));
      });
      assert.equal(got, TOTAL, "every byte arrived");
      assert.ok(ok, "in order, intact");
      assert.ok(sentDuringPause < TOTAL / 2, `the instance was held back while the client did not read (it had written ${sentDuringPause} of ${TOTAL} bytes)`);
    } finally {
      for (const s of conns) s.destroy();
      await new Promise<void>((r) => big.close(() => r()));
    }
  });
});

describe("an instance reading slower than the client uploads", { timeout: 60_000 }, () => {
  test("holds the client back (the gateway keeps at most its retry buffer), and the instance gets every byte", async () => {
    const TOTAL = 48 << 20;
    const conns = new Set<Socket>();
    let received = 0;
    /** What the client had put on its socket when the instance started reading. */
    let clientSocket: Socket | null = null;
    let writtenWhileStalled = -1;
    const slow = createServer((sock) => {
      conns.add(sock);
      sock.pause(); // not reading for 1 s
      setTimeout(() => {
        writtenWhileStalled = clientSocket?.bytesWritten ?? -1;
        let head: string | null = null;
        let buf = Buffer.alloc(0);
        sock.on("data", (d: Buffer) => {
          if (head === null) {
            buf = Buffer.concat([buf, d]);
            const end = buf.indexOf("\r\n\r\n");
            if (end < 0) return;
            head = buf.subarray(0, end).toString("latin1");
            received = buf.length - end - 4;
          } else received += d.length;
          if (received >= TOTAL) sock.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${String(received).length}\r\nconnection: close\r\n\r\n${received}`);
        });
        sock.resume();
      }, 1000);
    });
    await new Promise<void>((r) => slow.listen(0, "127.0.0.1", () => r()));
    const dp = await dataplane(env, { passthroughUrl: `http://127.0.0.1:${(slow.address() as { port: number }).port}` });
    try {
      await waitFor(() => dp.tableVersion() > 0, 10_000, "table");
      const r = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = request(`${dp.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/octet-stream", "x-model": MODEL, "content-length": String(TOTAL) } }, (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => (text += c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        });
        req.on("error", reject);
        req.on("socket", (sk) => (clientSocket = sk));
        const chunk = Buffer.alloc(256 << 10, 7);
        let written = 0;
        const pump = () => {
          while (written < TOTAL) {
            written += chunk.length;
            if (!req.write(chunk)) return void req.once("drain", pump);
          }
          req.end();
        };
        pump();
      });
      assert.equal(r.status, 200, r.text);
      assert.equal(Number(r.text), TOTAL, "the instance got every byte");
      assert.ok(writtenWhileStalled >= 0 && writtenWhileStalled < TOTAL / 2, `the client was held back while the instance did not read (it had sent ${writtenWhileStalled} of ${TOTAL} bytes)`);
    } finally {
      for (const s of conns) s.destroy();
      await new Promise<void>((r) => slow.close(() => r()));
    }
  });
});
