/**
 * A mock OpenAI-compatible model instance on 127.0.0.1, for control tests, e2e tests and the demo.
 *
 *   GET  /v1/models                 → { object: "list", data: [{ id: <model>, owned_by, ... }] }
 *   POST /v1/chat/completions       → a completion (or SSE chunks with `stream: true`)
 *   GET  /health                    → 200 "ok" (or the failure mode's answer)
 *
 * Behaviour is switchable at run time: `mock.set({ mode: "wrong_model" })`.
 * Modes: ok, wrong_model (serves another model), error_5xx (every API call → 500),
 * hang (accepts and never answers), unhealthy (only /health → 503, the API still works).
 * "Refuse connections" = `await mock.stop()` (the port is then closed) or `closedPortUrl()`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { freePort } from "./ports.js";

export type MockMode = "ok" | "wrong_model" | "error_5xx" | "hang" | "unhealthy";
export type MockEngine = "vllm" | "sglang" | "tgi" | "ollama" | "generic";

export interface MockOptions {
  /** Model id the instance serves. */
  model: string;
  mode?: MockMode;
  engine?: MockEngine;
  /** Delay before every answer. */
  latencyMs?: number;
  /** Base path of the API; default "/v1". */
  basePath?: string;
  /** When set, API calls without `Authorization: Bearer <apiKey>` get 401. */
  apiKey?: string;
  /** Answer text for completions. */
  reply?: string;
  /** Fixed port (e.g. to restart on the same address). */
  port?: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface MockOpenAI {
  readonly port: number;
  /** `http://127.0.0.1:<port><basePath>` */
  readonly url: string;
  readonly requests: RecordedRequest[];
  readonly options: Required<Omit<MockOptions, "apiKey" | "port">> & { apiKey?: string };
  set(change: Partial<MockOptions>): void;
  /** Close the listener (connections are refused afterwards); `start()` listens again on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

const OWNED_BY: Record<MockEngine, string> = { vllm: "vllm", sglang: "sglang", tgi: "tgi", ollama: "library", generic: "organization-owner" };

export async function startMockOpenAI(opts: MockOptions): Promise<MockOpenAI> {
  const port = opts.port ?? (await freePort());
  const options = {
    model: opts.model,
    mode: opts.mode ?? "ok",
    engine: opts.engine ?? "vllm",
    latencyMs: opts.latencyMs ?? 0,
    basePath: opts.basePath ?? "/v1",
    reply: opts.reply ?? "Hello",
    apiKey: opts.apiKey,
  } as MockOpenAI["options"];
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  let server: Server | null = null;

  const servedModel = () => (options.mode === "wrong_model" ? `${options.model}-other` : options.model);

  const engineHeaders = (): Record<string, string> => {
    switch (options.engine) {
      case "tgi":
        return { "x-compute-type": "1-nvidia-a10g", "x-compute-time": "0.01" };
      case "vllm":
      case "sglang":
        return { server: "uvicorn" };
      default:
        return {};
    }
  };

  const json = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...engineHeaders() });
    res.end(text);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, body: string) => {
    const url = new URL(req.url ?? "/", "http://mock");
    requests.push({ method: req.method ?? "", path: url.pathname, headers: { ...req.headers }, body });
    if (options.mode === "hang") return; // never answer
    if (options.latencyMs > 0) await new Promise((r) => setTimeout(r, options.latencyMs));

    if (url.pathname === "/health") {
      if (options.mode === "unhealthy" || options.mode === "error_5xx") return json(res, 503, { status: "unhealthy" });
      res.writeHead(200, { "content-type": "text/plain" });
      return res.end("ok");
    }
    const base = options.basePath;
    if (!url.pathname.startsWith(`${base}/`)) return json(res, 404, { error: { message: "not found" } });
    if (options.apiKey !== undefined && req.headers.authorization !== `Bearer ${options.apiKey}`) {
      return json(res, 401, { error: { message: "invalid api key", type: "authentication_error" } });
    }
    if (options.mode === "error_5xx") return json(res, 500, { error: { message: "internal error" } });
    const route = url.pathname.slice(base.length);

    if (req.method === "GET" && route === "/models") {
      const card: Record<string, unknown> = { id: servedModel(), object: "model", created: 1_700_000_000, owned_by: OWNED_BY[options.engine] };
      if (options.engine === "vllm") Object.assign(card, { root: servedModel(), parent: null, max_model_len: 8192, permission: [] });
      return json(res, 200, { object: "list", data: [card] });
    }
    if (req.method === "POST" && route === "/chat/completions") {
      let parsed: { model?: unknown; stream?: unknown; max_tokens?: unknown };
      try {
        parsed = JSON.parse(body) as typeof parsed;
      } catch {
        return json(res, 400, { error: { message: "invalid JSON" } });
      }
      if (parsed.model !== servedModel()) return json(res, 404, { error: { message: `model ${String(parsed.model)} not found`, code: "model_not_found" } });
      const id = `chatcmpl-${requests.length}`;
      const fingerprint = options.engine === "ollama" ? "fp_ollama" : undefined;
      if (parsed.stream === true) {
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", ...engineHeaders() });
        const words = options.reply.split(/(?<= )/);
        for (const w of words) {
          res.write(`data: ${JSON.stringify({ id, object: "chat.completion.chunk", model: servedModel(), choices: [{ index: 0, delta: { content: w }, finish_reason: null }] })}\n\n`);
        }
        res.write(`data: ${JSON.stringify({ id, object: "chat.completion.chunk", model: servedModel(), choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\n`);
        res.end("data: [DONE]\n\n");
        return;
      }
      const maxTokens = typeof parsed.max_tokens === "number" ? parsed.max_tokens : undefined;
      const content = maxTokens === 1 ? options.reply.split(" ")[0] : options.reply;
      return json(res, 200, {
        id,
        object: "chat.completion",
        created: Math.floor(Date.now() / 1000),
        model: servedModel(),
        system_fingerprint: fingerprint,
        choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: maxTokens === 1 ? "length" : "stop" }],
        usage: { prompt_tokens: 5, completion_tokens: maxTokens === 1 ? 1 : 3, total_tokens: maxTokens === 1 ? 6 : 8 },
      });
    }
    return json(res, 404, { error: { message: "not found" } });
  };

  const start = async () => {
    if (server) return;
    const srv = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        handle(req, res, Buffer.concat(chunks).toString("utf8")).catch(() => {
          if (!res.headersSent) res.writeHead(500);
          res.end();
        });
      });
    });
    srv.on("connection", (s: Socket) => {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      srv.once("error", reject);
      srv.listen(port, "127.0.0.1", () => resolve());
    });
    server = srv;
  };

  const stop = async () => {
    const srv = server;
    if (!srv) return;
    server = null;
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  };

  await start();
  return {
    port,
    get url() {
      return `http://127.0.0.1:${port}${options.basePath}`;
    },
    requests,
    options,
    set(change) {
      Object.assign(options, change);
    },
    stop,
    start,
    close: stop,
  };
}

/** A URL whose port nobody listens on: connections are refused. */
export async function closedPortUrl(basePath = "/v1"): Promise<string> {
  return `http://127.0.0.1:${await freePort()}${basePath}`;
}

// Run standalone for demos: `tsx envoy/local/mock-openai.ts --model llama3 [--port 8001] [--engine vllm] [--latency 50] [--mode ok]`
if (process.argv[1] && import.meta.url === (await import("node:url")).pathToFileURL(process.argv[1]).href) {
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({
    options: {
      model: { type: "string", default: "llama3" },
      port: { type: "string" },
      engine: { type: "string", default: "vllm" },
      latency: { type: "string", default: "0" },
      mode: { type: "string", default: "ok" },
      "api-key": { type: "string" },
    },
  });
  const m = await startMockOpenAI({
    model: values.model!,
    port: values.port ? Number(values.port) : undefined,
    engine: values.engine as MockEngine,
    latencyMs: Number(values.latency),
    mode: values.mode as MockMode,
    apiKey: values["api-key"],
  });
  process.stdout.write(`mock OpenAI instance serving ${values.model} at ${m.url}\n`);
}
