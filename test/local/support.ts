/** Shared setup of the local data plane tests: Redis, a control replica, mock instances, the data plane. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { startLocalDataPlane, type LocalDataPlane, type LocalDataPlaneOptions } from "../../envoy/local/dataplane.js";
import { PLUGIN, registerModel, startReplica, type Api, type Replica } from "../control/harness.js";
import { startMockOpenAI, type MockOpenAI, type RecordedRequest } from "../../envoy/local/mock-openai.js";
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

export async function startEnv(opts: { appendonly?: boolean } = {}): Promise<Env> {
  const redis = await startRedis(opts);
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
      await env.control.stop(); // the replica in use (a test may have replaced the first one)
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
  opts: { strategy?: string; weights?: number[]; instances?: Record<string, unknown>[]; health_check?: Record<string, unknown> } = {},
): Promise<{ id: string; instances: { id: string; url: string }[] }> {
  await registerModel(env.api, model);
  const r = await env.api("POST", "/v1/deployments", {
    body: {
      id: `dep-${model}`,
      model,
      strategy: opts.strategy ?? "round_robin",
      instances: urls.map((url, i) => ({ id: `i${i}`, url, weight: opts.weights?.[i] ?? 1, ...opts.instances?.[i] })),
      ...(opts.health_check ? { health_check: opts.health_check } : {}),
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

/** The routing-table version the control service serves now. */
export async function controlVersion(env: Env): Promise<number> {
  const t = await env.api("GET", "/v1/routing-table", { token: PLUGIN });
  if (t.status !== 200) throw new Error(`table: ${t.status} ${t.text}`);
  return t.body.version as number;
}

/** Timestamps (Date.now()) of every request a mock instance receives from now on (when its body has been read). */
export function stamp(m: MockOpenAI): Array<{ at: number; req: RecordedRequest }> {
  const log: Array<{ at: number; req: RecordedRequest }> = [];
  const arr = m.requests;
  const push = arr.push;
  arr.push = function (this: RecordedRequest[], ...items: RecordedRequest[]) {
    const at = Date.now();
    for (const req of items) log.push({ at, req });
    return push.apply(this, items);
  };
  return log;
}

/** One request of a load loop (see startLoad). */
export interface Shot {
  id: number;
  stream: boolean;
  t0: number;
  t1: number;
  /** 0 when no response head arrived. */
  status: number;
  /** The mock instance index that answered ("hi from <model> #N"), null if unknown. */
  by: number | null;
  /** Transport error: before the response head (headers false) or while reading the body (headers true). */
  error: string | null;
  headers: boolean;
  text: string;
}

export const failed = (s: Shot): boolean =>
  s.error !== null || s.status !== 200 || s.by === null || (s.stream && !s.text.includes("[DONE]"));

export interface Load {
  readonly shots: Shot[];
  /** Requests finished so far. */
  done(): number;
  waitDone(n: number, timeoutMs?: number): Promise<void>;
  /** Stops issuing, waits for those in flight, returns every shot. */
  stop(): Promise<Shot[]>;
}

/**
 * A bounded closed-loop load through the data plane: `concurrency` clients, each sending body-routed chat
 * completions back to back (header `x-test: marker`, `x-req: <id>`), until stop(), `maxRequests` or `maxMs`.
 */
export function startLoad(
  dp: LocalDataPlane,
  model: string,
  opts: { marker: string; concurrency?: number; maxRequests?: number; maxMs?: number; stream?: (id: number) => boolean },
): Load {
  const concurrency = opts.concurrency ?? 8;
  const maxRequests = opts.maxRequests ?? 5_000;
  const deadline = Date.now() + (opts.maxMs ?? 20_000);
  const shots: Shot[] = [];
  let issued = 0;
  let finished = 0;
  let stopped = false;
  const one = async (id: number): Promise<void> => {
    const stream = opts.stream?.(id) ?? false;
    const shot: Shot = { id, stream, t0: Date.now(), t1: 0, status: 0, by: null, error: null, headers: false, text: "" };
    shots.push(shot);
    try {
      const res = await fetch(`${dp.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-test": opts.marker, "x-req": String(id) },
        body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], ...(stream ? { stream: true } : {}) }),
      });
      shot.status = res.status;
      shot.headers = true;
      shot.text = await res.text();
      const m = /hi from [^#"]*#(\d+)/.exec(shot.text) ?? /"#(\d+)/.exec(shot.text);
      shot.by = m ? Number(m[1]) : null;
    } catch (e) {
      const err = e as Error & { cause?: { code?: string; message?: string } };
      shot.error = err.cause?.code ?? err.cause?.message ?? err.message;
    }
    shot.t1 = Date.now();
    finished++;
  };
  const worker = async () => {
    while (!stopped && issued < maxRequests && Date.now() < deadline) await one(issued++);
  };
  const workers = Array.from({ length: concurrency }, worker);
  return {
    shots,
    done: () => finished,
    waitDone: (n, timeoutMs = 15_000) => waitFor(() => finished >= n, timeoutMs, `${n} requests of the load`),
    async stop() {
      stopped = true;
      await Promise.all(workers);
      return shots;
    },
  };
}

/** Totals of a load run, with a few failed shots as examples for the assertion message. */
export const summary = (shots: Shot[]) => {
  const bad = shots.filter(failed);
  return { total: shots.length, failed: bad.length, examples: bad.slice(0, 5).map((s) => `#${s.id} ${s.status} ${s.error ?? s.text.slice(0, 120)}`) };
};

/** Requests served by each of the first `n` mock instances. */
export const byInstance = (shots: Shot[], n: number) => Array.from({ length: n }, (_, i) => shots.filter((s) => s.by === i).length);
