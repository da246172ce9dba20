/** Shared setup of the local data plane tests: Redis, a control replica, mock instances, the data plane. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { startLocalDataPlane, type LocalDataPlane, type LocalDataPlaneOptions } from "../../envoy/local/dataplane.js";
import { PLUGIN, registerModel, startReplica, type Api, type Replica } from "../control/harness.js";
import { startMockOpenAI, type MockOpenAI } from "../support/mock-openai.js";
import { startRedis, waitFor, type RedisServer } from "../support/redis.js";

export { waitFor };

export interface Env {
  redis: RedisServer;
  control: Replica;
  api: Api;
  dataplanes: LocalDataPlane[];
  mocks: MockOpenAI[];
  servers: Server[];
  stop(): Promise<void>;
}

export async function startEnv(): Promise<Env> {
  const redis = await startRedis();
  const control = await startReplica(redis.url);
  const env: Env = {
    redis,
    control,
    api: control.api,
    dataplanes: [],
    mocks: [],
    servers: [],
    async stop() {
      for (const d of env.dataplanes) await d.close();
      for (const m of env.mocks) await m.close();
      for (const s of env.servers) {
        s.closeAllConnections();
        await new Promise<void>((r) => s.close(() => r()));
      }
      await control.stop();
      await redis.close();
    },
  };
  return env;
}

export async function dataplane(env: Env, opts: Partial<LocalDataPlaneOptions> = {}): Promise<LocalDataPlane> {
  const lines: string[] = [];
  const dp = await startLocalDataPlane({
    controlUrl: env.control.url,
    pluginToken: PLUGIN,
    port: 0,
    log: (l) => lines.push(l),
    pluginConfig: { telemetry_interval_ms: 200, poll_interval_ms: 100, long_poll_seconds: 5, control_timeout_ms: 6000 },
    ...opts,
  });
  env.dataplanes.push(dp);
  return dp;
}

export async function mocks(env: Env, model: string, n: number): Promise<MockOpenAI[]> {
  const out: MockOpenAI[] = [];
  for (let i = 0; i < n; i++) out.push(await startMockOpenAI({ model, reply: `hi from ${model} #${i}` }));
  env.mocks.push(...out);
  return out;
}

/** Registers `model` and a deployment of it on `urls`; resolves when every data plane uses that table. */
export async function deploy(
  env: Env,
  model: string,
  urls: string[],
  opts: { strategy?: string; weights?: number[] } = {},
): Promise<{ id: string; instances: { id: string; url: string }[] }> {
  await registerModel(env.api, model);
  const r = await env.api("POST", "/v1/deployments", {
    body: {
      id: `dep-${model}`,
      model,
      strategy: opts.strategy ?? "round_robin",
      instances: urls.map((url, i) => ({ id: `i${i}`, url, weight: opts.weights?.[i] ?? 1 })),
    },
  });
  if (r.status !== 201) throw new Error(`deployment create: ${r.status} ${r.text}`);
  const t = await env.api("GET", "/v1/routing-table", { token: PLUGIN });
  const version = t.body.version as number;
  for (const d of env.dataplanes) await d.waitForTable(version);
  return r.body;
}

/** POST /v1/chat/completions through the data plane; the model in the JSON body (body routing). */
export async function chat(dp: LocalDataPlane, model: string, extra: { headers?: Record<string, string>; stream?: boolean } = {}) {
  const res = await fetch(`${dp.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...extra.headers },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], ...(extra.stream ? { stream: true } : {}) }),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** Chat completions an instance served that carry the test's marker header. */
export const served = (m: MockOpenAI, marker: string): number =>
  m.requests.filter((r) => r.path === "/v1/chat/completions" && r.headers["x-test"] === marker).length;

export interface Recorded {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  rawHeaders: string[];
  body: Buffer;
}

/** A plain HTTP server on 127.0.0.1 driven by `handler`; every request is recorded. */
export async function server(env: Env, handler: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void): Promise<{ url: string; port: number; requests: Recorded[] }> {
  const requests: Recorded[] = [];
  const srv = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, rawHeaders: req.rawHeaders, body });
      handler(req, res, body);
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  env.servers.push(srv);
  const port = (srv.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, port, requests };
}
