// Child process of the real-Envoy plugin bench: BENCH_UPSTREAMS mock model servers (raw node:http,
// 127.0.0.1, free ports) in one process, apart from Envoy and the load generator. Server i answers at
// once:
//   POST /v1/chat/completions → 200, a fixed ~250-byte completion; response headers x-upstream: i and
//                               x-model-instance: the request's x-model-instance (what the plugin —
//                               or, for the baselines, the client — set), so a response shows which
//                               instance was picked and which one served it
//   GET  /health              → 200 ok (Envoy's active health checks of the CDS clusters)
//   anything else             → 404
// Command `counts` → chat completions served per server since start.
import { createServer, type Server } from "node:http";
import { closeAll, listenAll } from "../gateway/listeners.js";
import { serveParent } from "../gateway/ipc.js";

const N = Number(process.env.BENCH_UPSTREAMS ?? 10);
const counts = new Array<number>(N).fill(0);

function upstream(i: number): Server {
  const body = Buffer.from(
    JSON.stringify({
      id: `chatcmpl-bench-${i}`,
      object: "chat.completion",
      created: 1_700_000_000,
      model: "bench",
      choices: [{ index: 0, message: { role: "assistant", content: `hi from upstream #${i}` }, finish_reason: "stop" }],
      usage: { prompt_tokens: 9, completion_tokens: 5, total_tokens: 14 },
    }),
  );
  const len = String(body.length);
  const ok = Buffer.from("ok");
  const srv = createServer((req, res) => {
    req.on("data", () => {});
    req.on("end", () => {
      if (req.method === "POST" && req.url === "/v1/chat/completions") {
        counts[i]!++;
        const inst = req.headers["x-model-instance"];
        res.writeHead(200, { "content-type": "application/json", "content-length": len, "x-upstream": String(i), "x-model-instance": typeof inst === "string" ? inst : "" });
        res.end(body);
      } else if (req.method === "GET" && req.url === "/health") {
        res.writeHead(200, { "content-type": "text/plain", "content-length": "2" });
        res.end(ok);
      } else {
        res.writeHead(404, { "content-length": "0" });
        res.end();
      }
    });
  });
  // Longer than any gap between windows: Envoy's pooled upstream connections are never closed under it.
  srv.keepAliveTimeout = 300_000;
  srv.headersTimeout = 305_000;
  return srv;
}

const { servers, ports } = await listenAll(N, upstream);

const parent = serveParent({ counts: () => [...counts] }, () => closeAll(servers));
parent.ready({ ports });
