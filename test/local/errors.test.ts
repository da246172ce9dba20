// One error shape through the local data plane (envoy/local/dataplane.ts): every error a client can get —
// the plugin's own replies and the ones Envoy's router / buffer make (no route, no host, connect failure,
// upstream timeout, 413) — is OpenAI's {"error":{"message","type","param","code"}} with
// content-type application/json, as envoy/bootstrap.yaml's local_reply_config makes them in Envoy; and an
// early reply (the 413 while the client is still uploading) is closed gracefully so the client reads it.
import assert from "node:assert/strict";
import { request, type IncomingHttpHeaders } from "node:http";
import { connect } from "node:net";
import { after, before, describe, test } from "node:test";
import { REQUEST_TOO_LARGE_MESSAGE, type LocalDataPlane } from "../../envoy/local/dataplane.js";
import { dataplane, deploy, mocks, startEnv, waitFor, type Env } from "./support.js";

let env: Env;
let dp: LocalDataPlane;

before(async () => {
  env = await startEnv();
  dp = await dataplane(env, {});
  await waitFor(() => dp.tableVersion() > 0, 10_000, "the first table");
});

after(async () => {
  await env?.stop();
});

interface OpenAiError {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** The body is OpenAI's error object (exactly those four keys), sent as application/json. */
function assertOpenAiError(r: { status: number; headers: IncomingHttpHeaders | Headers; text: string }, status: number, code: string): OpenAiError {
  const ct = r.headers instanceof Headers ? r.headers.get("content-type") : r.headers["content-type"];
  assert.equal(r.status, status, r.text);
  assert.match(String(ct), /^application\/json/, `content-type of ${r.status} ${r.text}`);
  const body = JSON.parse(r.text) as OpenAiError;
  assert.deepEqual(Object.keys(body), ["error"]);
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  assert.equal(body.error.code, code, r.text);
  assert.equal(typeof body.error.message, "string");
  assert.ok(body.error.message.length > 0);
  assert.ok(["invalid_request_error", "server_error"].includes(body.error.type), body.error.type);
  return body;
}

async function post(url: string, model: string, extra: Record<string, unknown> = {}) {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], ...extra }),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** A body-routed chat request whose content (between the two) is as long as a test wants. */
const BODY_HEAD = '{"model":"big-model","messages":[{"role":"user","content":"';
const BODY_TAIL = '"}]}';

interface Upload {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** Transport errors, on the request or the response, in order (e.g. EPIPE, ECONNRESET). */
  errors: string[];
  sent: number;
}

/**
 * POSTs a body-routed JSON body of `total` bytes with `Connection: close` (or keep-alive), writing it as fast as the socket
 * takes it, and reads the response meanwhile. Resolves once the response is read and the upload ended
 * (finished or failed), or after `limitMs`.
 */
function upload(url: string, total: number, limitMs = 20_000, close = true): Promise<Upload> {
  const u = new URL(url);
  const fill = total - BODY_HEAD.length - BODY_TAIL.length;
  const chunk = Buffer.alloc(64 * 1024, "a");
  return new Promise((resolve) => {
    const out: Upload = { status: 0, headers: {}, text: "", errors: [], sent: 0 };
    let responseDone = false;
    let uploadDone = false;
    const timer = setTimeout(() => {
      out.errors.push(`did not settle within ${limitMs} ms (response ${responseDone ? "read" : "pending"}, upload ${uploadDone ? "ended" : "pending"})`);
      req.destroy();
      resolve(out);
    }, limitMs);
    const settle = () => {
      if (responseDone && uploadDone) {
        clearTimeout(timer);
        resolve(out);
      }
    };
    const req = request({
      host: u.hostname,
      port: Number(u.port),
      method: "POST",
      path: "/v1/chat/completions",
      agent: false,
      headers: { "content-type": "application/json", "content-length": String(total), connection: close ? "close" : "keep-alive" },
    });
    req.on("response", (res) => {
      out.status = res.statusCode ?? 0;
      out.headers = res.headers;
      res.setEncoding("utf8");
      res.on("data", (c: string) => (out.text += c));
      res.on("end", () => {
        responseDone = true;
        settle();
      });
      res.on("error", (e: NodeJS.ErrnoException) => {
        out.errors.push(`response: ${e.code ?? e.message}`);
        responseDone = true;
        settle();
      });
    });
    req.on("error", (e: NodeJS.ErrnoException) => {
      out.errors.push(`request: ${e.code ?? e.message}`);
      uploadDone = true;
      responseDone = true; // no response will come any more
      settle();
    });
    // The upload ends when the whole body is written, or when the client gives it up: Node's http client
    // closes the connection itself once it has read a response that says `connection: close`.
    req.on("finish", () => {
      uploadDone = true;
      settle();
    });
    req.on("close", () => {
      uploadDone = true;
      settle();
    });
    let left = fill;
    const pump = () => {
      if (out.sent === 0) {
        req.write(BODY_HEAD);
        out.sent += BODY_HEAD.length;
      }
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        out.sent += n;
        if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          req.once("drain", pump);
          return;
        }
      }
      out.sent += BODY_TAIL.length;
      req.end(BODY_TAIL);
    };
    pump();
  });
}

describe("local data plane: errors in OpenAI's shape", { timeout: 120_000 }, () => {
  test("unknown model, no passthrough → 404 model_not_found (JSON)", async () => {
    const r = await post(dp.url, "not-served-here");
    assertOpenAiError(r, 404, "model_not_found");
    // Also with the model in a header and no body.
    const res = await fetch(`${dp.url}/v1/models/x`, { headers: { "x-model": "not-served-here" } });
    assertOpenAiError({ status: res.status, headers: res.headers, text: await res.text() }, 404, "model_not_found");
  });

  test("every instance refuses the connection → 503 upstream_connect_error (JSON)", async () => {
    // Two instances that pass the control service's connectivity test, then stop: connections are refused.
    const ms = await mocks(env, "refused-model", 2);
    await deploy(env, "refused-model", ms.map((m) => m.url));
    for (const m of ms) await m.stop();
    const r = await post(dp.url, "refused-model");
    const e = assertOpenAiError(r, 503, "upstream_connect_error");
    assert.equal(e.error.type, "server_error");
    assert.match(e.error.message, /upstream connect error or disconnect\/reset before headers\. retried and the latest reset reason: connection failure/);
  });

  test("10 clients uploading 20 MB with Connection: close all read the plugin's JSON 413 request_too_large (no EPIPE / ECONNRESET)", async () => {
    const total = 20 * 1024 * 1024;
    const results = await Promise.all(Array.from({ length: 10 }, () => upload(dp.url, total)));
    const summary = results.map((r) => `${r.status} ${r.errors.join(",") || "ok"} sent=${r.sent}`);
    console.log(`# 20 MB uploads with Connection: close: ${summary.join(" | ")}`);
    for (const r of results) {
      assert.deepEqual(r.errors, [], summary.join("\n"));
      const e = assertOpenAiError(r, 413, "request_too_large");
      assert.match(e.error.message, /1048576 bytes/, "the plugin's 413 (it names max_body_bytes), not the host's buffer limit");
      assert.equal(r.headers.connection, "close");
    }
  });

  test("clients that send their whole 20 MB body before reading (as Python's requests does) read the 413 and a clean close", async () => {
    const total = 20 * 1024 * 1024;
    const u = new URL(dp.url);
    const one = () =>
      new Promise<{ raw: string; errors: string[]; wrote: number; ended: boolean }>((resolve) => {
        const out = { raw: "", errors: [] as string[], wrote: 0, ended: false };
        const sock = connect(Number(u.port), u.hostname);
        const timer = setTimeout(() => {
          out.errors.push("timeout");
          sock.destroy();
        }, 20_000);
        sock.on("error", (e: NodeJS.ErrnoException) => out.errors.push(e.code ?? e.message));
        sock.on("close", () => {
          clearTimeout(timer);
          resolve(out);
        });
        sock.once("connect", async () => {
          sock.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: ${total}\r\nconnection: close\r\n\r\n${BODY_HEAD}`);
          const chunk = Buffer.alloc(64 * 1024, "a");
          let left = total - BODY_HEAD.length - BODY_TAIL.length;
          while (left > 0 && !sock.destroyed) {
            const n = Math.min(left, chunk.length);
            left -= n;
            out.wrote += n;
            if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await new Promise((r) => sock.once("drain", r));
          }
          sock.end(BODY_TAIL);
          // Only now read what came back.
          sock.setEncoding("utf8");
          sock.on("data", (c: string) => (out.raw += c));
          sock.on("end", () => (out.ended = true));
        });
      });
    const results = await Promise.all(Array.from({ length: 3 }, one));
    console.log(`# write-everything-first clients: ${results.map((r) => `${r.raw.split("\r\n")[0]} wrote=${r.wrote} ${r.errors.join(",") || "no error"} ${r.ended ? "FIN" : "no FIN"}`).join(" | ")}`);
    for (const r of results) {
      assert.deepEqual(r.errors, []);
      assert.equal(r.wrote, total - BODY_HEAD.length - BODY_TAIL.length, "the whole body went out");
      assert.ok(r.ended, "the gateway closed with a FIN, after the client had sent everything");
      const [head, body] = r.raw.split("\r\n\r\n");
      assert.match(head!, /^HTTP\/1\.1 413 /);
      assert.match(head!, /\r\nconnection: close\r\n/i);
      assert.equal(JSON.parse(body!).error.code, "request_too_large");
    }
  });

  test("a keep-alive client gets the early 413 with connection: close, and reads it", async () => {
    const r = await upload(dp.url, 4 * 1024 * 1024, 20_000, false);
    assert.deepEqual(r.errors, []);
    assertOpenAiError(r, 413, "request_too_large");
    assert.equal(r.headers.connection, "close");
  });

  test("the buffer's own 413 (buffer limit below max_body_bytes) is JSON request_too_large too", async () => {
    const lines: string[] = [];
    const small = await dataplane(env, {
      bufferLimitBytes: 256 * 1024,
      log: (l) => lines.push(l),
      pluginConfig: { telemetry_interval_ms: 200, poll_interval_ms: 100, long_poll_seconds: 5, control_timeout_ms: 6000, max_body_bytes: 1024 * 1024 },
    });
    assert.ok(lines.some((l) => /buffer limit 262144 B is not above max_body_bytes 1048576 B/.test(l)), "the misconfiguration is reported");
    await waitFor(() => small.tableVersion() > 0, 10_000, "the first table");
    const r = await upload(small.url, 1024 * 1024);
    assert.deepEqual(r.errors, []);
    const e = assertOpenAiError(r, 413, "request_too_large");
    assert.equal(e.error.message, REQUEST_TOO_LARGE_MESSAGE, "the buffer's 413, rewritten as local_reply_config does");
    assert.equal(e.error.type, "invalid_request_error");
  });
});
