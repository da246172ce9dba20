// Child process: the gateway bench's mock upstreams. BENCH_UPSTREAMS lean OpenAI-compatible servers
// (raw node:http, 127.0.0.1, free ports) in this one process, apart from the gateway under test and the
// load generator. Each answers after BENCH_UPSTREAM_MS (setTimeout; 0 = at once):
//   POST /v1/chat/completions → a fixed ~300-byte completion naming the upstream ("hi from upstream #i",
//                               header x-upstream: i); counted per upstream
//   GET  /v1/models           → the model list (the control service's connectivity test at deploy)
//   GET  /health              → 200 ok (the control service's health probes)
// Request bodies are read to the end but not parsed (the model is not checked).
// Commands: counts → { served, connections }: chat completions served / TCP connections that carried a
// chat completion, per upstream since start (the latter shows whether a gateway reuses its upstream
// connections; the control service's health probes and connectivity test are not counted).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { closeAll, listenAll } from "./listeners.js";
import { serveParent } from "./ipc.js";

const N = Number(process.env.BENCH_UPSTREAMS ?? 4);
const LATENCY_MS = Number(process.env.BENCH_UPSTREAM_MS ?? 1);
const MODEL = process.env.BENCH_MODEL ?? "bench-gw";

const counts = new Array<number>(N).fill(0);
const connections = new Array<number>(N).fill(0);
const SEEN = Symbol("carried a chat completion");

function completion(i: number): Buffer {
  return Buffer.from(
    JSON.stringify({
      id: `chatcmpl-upstream-${i}`,
      object: "chat.completion",
      created: 1_700_000_000,
      model: MODEL,
      choices: [{ index: 0, message: { role: "assistant", content: `hi from upstream #${i}` }, logprobs: null, finish_reason: "stop" }],
      usage: { prompt_tokens: 9, completion_tokens: 5, total_tokens: 14 },
    }),
  );
}
const models = Buffer.from(JSON.stringify({ object: "list", data: [{ id: MODEL, object: "model", created: 1_700_000_000, owned_by: "bench" }] }));
const notFound = Buffer.from(JSON.stringify({ error: { message: "not found", type: "invalid_request_error" } }));
const ok = Buffer.from("ok");

function upstream(i: number): Server {
  const body = completion(i);
  const head = { "content-type": "application/json", "content-length": String(body.length), "x-upstream": String(i) };
  const send = (res: ServerResponse, status: number, buf: Buffer, type = "application/json") => {
    res.writeHead(status, { "content-type": type, "content-length": String(buf.length) });
    res.end(buf);
  };
  const answer = (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? "/";
    if (req.method === "POST" && url === "/v1/chat/completions") {
      counts[i]!++;
      const sock = req.socket as Socket & { [SEEN]?: true };
      if (sock[SEEN] === undefined) {
        sock[SEEN] = true;
        connections[i]!++;
      }
      res.writeHead(200, head);
      res.end(body);
    } else if (req.method === "GET" && url === "/v1/models") send(res, 200, models);
    else if (req.method === "GET" && url === "/health") send(res, 200, ok, "text/plain");
    else send(res, 404, notFound);
  };
  const srv = createServer((req, res) => {
    req.on("data", () => {});
    req.on("end", () => {
      if (LATENCY_MS > 0) setTimeout(answer, LATENCY_MS, req, res);
      else answer(req, res);
    });
  });
  // Longer than any idle gap between runs: a gateway's pooled connection is never closed under it
  // (nginx does not retry a POST on a connection the upstream has just closed).
  srv.keepAliveTimeout = 120_000;
  srv.headersTimeout = 125_000;
  return srv;
}

const { servers, ports } = await listenAll(N, upstream);

const parent = serveParent(
  { counts: () => ({ served: [...counts], connections: [...connections] }) },
  () => closeAll(servers),
);
parent.ready({ ports });
