// Child process: the yardstick of issue 19, a plain Node keep-alive reverse proxy. node:http server on
// 127.0.0.1, one keep-alive Agent per upstream, nginx's smooth weighted round robin over BENCH_PLAIN_UPSTREAMS
// (JSON [{port, weight}]), request and response bodies streamed (pipe), status and end-to-end headers
// forwarded (hop-by-hop ones dropped, Host set to the upstream), 502 when the upstream fails before its head.
// No routing, retries, telemetry or ejection: what proxying alone costs in Node.
import { Agent, createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { serveParent } from "./ipc.js";

const peers = (JSON.parse(process.env.BENCH_PLAIN_UPSTREAMS ?? "[]") as Array<{ port: number; weight: number }>).map((u) => ({
  ...u,
  current: 0,
  agent: new Agent({ keepAlive: true, keepAliveMsecs: 120_000, maxFreeSockets: 1024 }),
}));
if (peers.length === 0) throw new Error("BENCH_PLAIN_UPSTREAMS is required");
const total = peers.reduce((a, p) => a + p.weight, 0);

/** nginx's smooth weighted round robin: every peer gains its weight, the richest is picked and pays the total. */
function pick() {
  let best = peers[0]!;
  for (const p of peers) {
    p.current += p.weight;
    if (p.current > best.current) best = p;
  }
  best.current -= total;
  return best;
}

const HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host"]);
const endToEnd = (h: Record<string, string | string[] | undefined>) => Object.fromEntries(Object.entries(h).filter(([k]) => !HOP.has(k)));

const server = createServer((req, res) => {
  const peer = pick();
  const up = request({ host: "127.0.0.1", port: peer.port, method: req.method, path: req.url, headers: endToEnd(req.headers), agent: peer.agent }, (ur) => {
    res.writeHead(ur.statusCode ?? 502, endToEnd(ur.headers));
    ur.pipe(res);
  });
  up.on("error", () => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" }).end("bad gateway");
    else res.destroy();
  });
  req.pipe(up);
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));

const parent = serveParent({}, async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});
parent.ready({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
