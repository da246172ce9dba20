// Child process of retention.test.ts: the local data plane (build/noop.wasm, so no control service is
// needed; every request still gets a host stream) in front of an upstream in this process, loaded by 32
// keep-alive clients in this process. After a warm-up, V8's --trace-gc-nvp is switched on for
// RETENTION_REQUESTS requests, then off; stdout carries V8's scavenge lines, then "requests <n>".
import { Agent, createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import v8 from "node:v8";
import { startLocalDataPlane } from "../../envoy/local/dataplane.js";

const MEASURED = Number(process.env.RETENTION_REQUESTS ?? 6000);
const WARMUP = 1500;
const CONNECTIONS = 32;
const reply = Buffer.from(JSON.stringify({ id: "x", object: "chat.completion", choices: [{ index: 0, message: { role: "assistant", content: "hi" } }] }));
const upstream = createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/json", "content-length": String(reply.length) });
    res.end(reply);
  });
});
upstream.keepAliveTimeout = 60_000;
await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", () => r()));
const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;

const dp = await startLocalDataPlane({
  controlUrl: "http://127.0.0.1:9", // never called: the no-op module makes no http calls
  wasm: fileURLToPath(new URL("../../build/noop.wasm", import.meta.url)),
  passthroughUrl: upstreamUrl,
  port: 0,
  log: () => {},
});
const body = JSON.stringify({ model: "m", messages: [{ role: "user", content: "Say hi.".repeat(60) }], max_tokens: 16 });
const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
const one = () =>
  new Promise<void>((resolve, reject) => {
    const r = request(`${dp.url}/v1/chat/completions`, { method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
    });
    r.on("error", reject);
    r.end(body);
  });
async function load(n: number): Promise<void> {
  let left = n;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (left-- > 0) await one();
    }),
  );
}

await load(WARMUP);
v8.setFlagsFromString("--trace-gc-nvp");
await load(MEASURED);
v8.setFlagsFromString("--no-trace-gc-nvp");
process.stdout.write(`requests ${MEASURED}\n`);
agent.destroy();
await dp.close();
await new Promise<void>((r) => upstream.close(() => r()));
