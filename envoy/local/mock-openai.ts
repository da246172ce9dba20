/**
 * A mock OpenAI-compatible model instance that answers as vLLM's OpenAI-compatible server does
 * (`vllm serve <root> --served-model-name <model>`), for control tests, e2e tests, benches and the demo.
 *
 *   GET  /v1/models            → vLLM's model list: exactly one card, the served name
 *   POST /v1/chat/completions  → chat completion, or SSE chunks with `stream: true` (role first, usage on request)
 *   POST /v1/completions       → text completion (streaming too)
 *   POST /v1/embeddings        → embeddings (input: string, strings, token ids; float or base64)
 *   GET  /metrics              → Prometheus text with vLLM's metric names, counting what this mock served (never delayed)
 *   GET  /health               → 200, empty body (or the failure mode's answer)
 *
 * A request naming another model gets vLLM's 404; a malformed body gets vLLM's 400 (shapes below, with the
 * vLLM source they come from). The mock tokenizer counts a word (with its trailing space) as one token; the
 * reply is streamed word by word and ends with an EOS token (counted in completion_tokens, as vLLM does)
 * unless max_tokens / max_completion_tokens cut it first (finish_reason "length"). A stream's 200 head goes
 * out at once; its first chunk (the role) and the tokens follow after `latencyMs`, `interTokenLatencyMs` apart.
 *
 * Capacity (issue 18): `maxNumSeqs` slots, a FIFO queue beyond them (vllm:num_requests_running / _waiting),
 * and with `tokensPerSecond` a decode rate per slot, so a request's service time is `latencyMs` + its prompt's
 * prefill cost + its generated tokens / rate — an overloaded instance queues like one. Every generation
 * answers with `x-mock-queue-time-ms` and `x-mock-service-time-ms` (QUEUE_TIME_HEADER, SERVICE_TIME_HEADER).
 *
 * Behaviour is switchable at run time: `mock.set({ mode: "wrong_model" })`.
 * Modes: ok, wrong_model (serves `<model>-other`), error_5xx (every API call → 500, /health → 503),
 * hang (accepts and never answers), unhealthy (only /health → 503, the API still works).
 * "Refuse connections" = `await mock.stop()` (the port is then closed) or `closedPortUrl()`.
 *
 * Run standalone: `tsx envoy/local/mock-openai.ts --model NAME [--port N] …` (see `--help` and envoy/local/README.md).
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { freePort } from "./ports.js";

export type MockMode = "ok" | "wrong_model" | "error_5xx" | "hang" | "unhealthy";
export type MockEngine = "vllm" | "sglang" | "tgi" | "ollama" | "generic";

export interface MockOptions {
  /** Model id the instance serves (vLLM's --served-model-name). */
  model: string;
  mode?: MockMode;
  /** Engine flavour: owned_by of the model card, server headers; /metrics only for "vllm". Default "vllm". */
  engine?: MockEngine;
  /** Delay before every answer but /metrics (for a generation: time to first token, inside the "running" window). */
  latencyMs?: number;
  /** Base path of the API; default "/v1". /health and /metrics stay at the root, as in vLLM. */
  basePath?: string;
  /** When set, API calls without `Authorization: Bearer <apiKey>` get vLLM's 401 (--api-key). */
  apiKey?: string;
  /** Answer text of completions (one token per word). */
  reply?: string;
  /** Fixed port (e.g. to restart on the same address); 0 or unset = a free port. */
  port?: number;
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** The model card's `root` (vLLM's model path, `vllm serve <root>`); default: the model name. */
  root?: string;
  /** --max-model-len: context window; prompt + max_tokens beyond it → vLLM's 400. Default 8192. */
  maxModelLen?: number;
  /** Delay between generated tokens (streamed or not); default 0. */
  interTokenLatencyMs?: number;
  /** --max-num-seqs: requests generating at once; more wait (vllm:num_requests_waiting). Default 256. */
  maxNumSeqs?: number;
  /** Reject POST bodies whose content-type is not application/json with vLLM's 400 (vLLM always does). Default false. */
  strictContentType?: boolean;
  /** Dimension of /v1/embeddings vectors; default 32. */
  embeddingDim?: number;
  /** KV-cache capacity in tokens, for vllm:kv_cache_usage_perc; default 16 × maxModelLen. */
  kvCacheTokens?: number;
  /**
   * Decode rate of one sequence slot, tokens/s: with it set (> 0) a generation's service time — from its
   * admission to a slot until its last token — is `latencyMs` + prompt tokens / `prefillTokensPerSecond` +
   * generated tokens / `tokensPerSecond`, token k due at prefill + k / rate (deadlines, so timer overshoot
   * does not accumulate); `interTokenLatencyMs` is then unused. With `maxNumSeqs` slots and the FIFO queue
   * beyond them this is an engine with a real capacity (issue 18). Default 0: off.
   */
  tokensPerSecond?: number;
  /** Prefill rate, prompt tokens/s (the prompt's cost before the first token); default 0: no prompt cost. */
  prefillTokensPerSecond?: number;
}

/**
 * Response headers of every generation and embedding (not part of vLLM's API; a client subtracts the engine's
 * own time from its latency): the time the request waited for a slot, and its service time in the slot —
 * measured for a non-streamed answer (admission → last token), planned for a stream (its head goes out
 * before the tokens). Milliseconds, 3 decimals.
 */
export const QUEUE_TIME_HEADER = "x-mock-queue-time-ms";
export const SERVICE_TIME_HEADER = "x-mock-service-time-ms";

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** What the mock has served (the numbers behind /metrics). */
export interface MockStats {
  running: number;
  waiting: number;
  promptTokens: number;
  generationTokens: number;
  /** Finished requests by vLLM finish reason. */
  success: { stop: number; length: number; abort: number };
}

export interface MockOpenAI {
  readonly port: number;
  readonly host: string;
  /** `http://127.0.0.1:<port><basePath>` */
  readonly url: string;
  readonly requests: RecordedRequest[];
  readonly options: Required<Omit<MockOptions, "apiKey" | "port">> & { apiKey?: string };
  set(change: Partial<MockOptions>): void;
  /** Counters and gauges of what was served so far. */
  stats(): MockStats;
  /** The /metrics text. */
  metricsText(): string;
  /** Close the listener (connections are refused afterwards); `start()` listens again on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

const OWNED_BY: Record<MockEngine, string> = { vllm: "vllm", sglang: "sglang", tgi: "tgi", ollama: "library", generic: "organization-owner" };

// ---------------------------------------------------------------------------------------------------------
// vLLM's error bodies.
//
// vllm/entrypoints/openai/engine/protocol.py (vllm-project/vllm@040a2cc2):
//   class ErrorInfo: message: str; type: str; param: str | None = None; code: int
//   class ErrorResponse: error: ErrorInfo          → {"error":{"message","type","param","code"}}
// (vLLM ≤ 0.9 answered the flat {"object":"error","message",…,"code"}; current vLLM nests it.)
// vllm/entrypoints/openai/engine/serving.py `_check_model` (vllm-project/vllm@00bd1493) and
// vllm/entrypoints/openai/models/serving.py `check_model`:
//   message=f"The model `{request.model}` does not exist.", err_type="NotFoundError", status 404, param="model"
//   — and `if not model_name: return None`: a request without a model is served by the (first) served name.
// vllm/entrypoints/openai/chat_completion/api_router.py: JSONResponse(content=error.model_dump(), status_code=error.error.code)
// ---------------------------------------------------------------------------------------------------------

interface Answer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

const vllmError = (status: number, type: string, message: string, param: string | null = null): Answer => ({
  status,
  body: { error: { message, type, param, code: status } },
});

const notFoundModel = (name: unknown): Answer => vllmError(404, "NotFoundError", `The model \`${pyStr(name)}\` does not exist.`, "model");

/** FastAPI's own answers (unknown route / method). */
const fastapiNotFound = (): Answer => ({ status: 404, body: { detail: "Not Found" } });
const fastapiMethodNotAllowed = (allow: string): Answer => ({ status: 405, body: { detail: "Method Not Allowed" }, headers: { allow } });

/**
 * A request-validation 400, as vLLM's handler builds it from FastAPI's RequestValidationError:
 * vllm/entrypoints/serve/exception_handling/handlers/validation.py (vllm-project/vllm@4da14a5c)
 *   message = f"{count} validation {label}:\n" + "".join(f"  {_format_error(err)}\n") (rstrip), where
 *   _format_error renders str(err) with `loc` joined by "." and `input` summarised ("<dict of N items>");
 *   ErrorInfo(message, type=HTTPStatus.BAD_REQUEST.phrase ("Bad Request"), code=400,
 *             param=ctx.error.parameter of a VLLMValidationError, else the cleaned loc of the first error)
 * Pydantic's error texts are reproduced for the cases the mock checks; exotic inputs may word them differently.
 */
interface PydError {
  type: string;
  loc: (string | number)[];
  msg: string;
  input: unknown;
  /** Rendered Python repr of ctx (already formatted). */
  ctx?: string;
  /** VLLMValidationError.parameter, when the error came from one. */
  parameter?: string;
}

function validationError(errors: (PydError | string)[]): Answer {
  let param: string | null = null;
  for (const e of errors) if (typeof e !== "string" && e.parameter !== undefined) {
    param = e.parameter;
    break;
  }
  const first = errors[0];
  if (param === null && first !== undefined && typeof first !== "string" && first.loc.length > 0) param = first.loc.join(".");
  const label = errors.length === 1 ? "error" : "errors";
  const lines = errors.slice(0, 10).map((e) => {
    if (typeof e === "string") return `  ${e}\n`;
    const parts = [`'type': ${pyRepr(e.type)}`, `'loc': ${pyRepr(e.loc.join("."))}`, `'msg': ${pyRepr(e.msg)}`, `'input': ${pyRepr(summarizeInput(e.input))}`];
    if (e.ctx !== undefined) parts.push(`'ctx': ${e.ctx}`);
    return `  {${parts.join(", ")}}\n`;
  });
  const more = errors.length > 10 ? `  ...and ${errors.length - 10} more ${label}\n` : "";
  const message = errors.length ? `${errors.length} validation ${label}:\n${lines.join("")}${more}`.trimEnd() : "Validation error";
  return vllmError(400, "Bad Request", message, param);
}

/** A VLLMValidationError raised in a pydantic `model_validator(mode="before")`: a value_error on loc ("body",). */
function modelValueError(message: string, parameter: string, input: unknown): PydError {
  return { type: "value_error", loc: ["body"], msg: `Value error, ${message} (parameter=${parameter})`, input, ctx: `{'error': VLLMValidationError(${pyRepr(message)})}`, parameter };
}

/**
 * A VLLMValidationError raised while serving (after the model check): create_error_response(exc) →
 * type "BadRequestError", status 400, param = exc.parameter, message = str(exc), which appends
 * " (parameter=…, value=…)" (vllm/exceptions.py).
 */
function servingValueError(message: string, parameter: string, value?: unknown): Answer {
  const extras = [`parameter=${parameter}`];
  if (value !== undefined && value !== null) extras.push(`value=${pyStr(value)}`);
  return vllmError(400, "BadRequestError", `${message} (${extras.join(", ")})`, parameter);
}

function summarizeInput(v: unknown): string {
  if (typeof v === "string") return v.length > 200 ? `${v.slice(0, 200)}...[truncated]` : v;
  if (Array.isArray(v)) return `<list of ${v.length} items>`;
  if (v !== null && typeof v === "object") return `<dict of ${Object.keys(v).length} items>`;
  return pyStr(v);
}

/** Python's str() of a JSON value. */
function pyStr(v: unknown): string {
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "number") return pyFloat(v, false);
  if (typeof v === "string") return v;
  return pyRepr(v);
}

/** Python's repr() of a JSON value. */
function pyRepr(v: unknown): string {
  if (typeof v === "string") {
    const q = v.includes("'") && !v.includes('"') ? '"' : "'";
    let out = "";
    for (const ch of v) {
      const c = ch.codePointAt(0)!;
      if (ch === "\\") out += "\\\\";
      else if (ch === q) out += `\\${q}`;
      else if (ch === "\n") out += "\\n";
      else if (ch === "\r") out += "\\r";
      else if (ch === "\t") out += "\\t";
      else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, "0")}`;
      else out += ch;
    }
    return q + out + q;
  }
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(", ")}]`;
  if (v !== null && typeof v === "object") return `{${Object.entries(v).map(([k, x]) => `${pyRepr(k)}: ${pyRepr(x)}`).join(", ")}}`;
  return pyStr(v);
}

/** Python's repr() of a float (`asFloat`), or str() of a JSON number that Python parsed as an int. */
function pyFloat(x: number, asFloat = true): string {
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  if (Number.isNaN(x)) return "nan";
  if (Number.isInteger(x) && Math.abs(x) < 1e16) return asFloat ? `${x}.0` : String(x);
  return String(x).replace(/e([+-])(\d)$/, "e$10$2");
}

// ---------------------------------------------------------------------------------------------------------
// The mock tokenizer and request parsing.
// ---------------------------------------------------------------------------------------------------------

/** One token per word, trailing whitespace attached ("Hello from #0" → ["Hello ", "from ", "#0"]). */
export function mockTokens(text: string): string[] {
  return text.split(/(?<=\s)(?=\S)/).filter((t) => t.length > 0);
}

/** Prompt tokens of a chat: a Llama-3-like template (BOS; per message header + content + EOT; the generation prompt). */
function chatPromptTokens(messages: unknown[]): number {
  let n = 1 + 4;
  for (const m of messages) n += 5 + mockTokens(messageText(m)).length;
  return n;
}

function messageText(m: unknown): string {
  if (m === null || typeof m !== "object") return "";
  const content = (m as { content?: unknown }).content;
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((p) => (p && typeof p === "object" && typeof (p as { text?: unknown }).text === "string" ? (p as { text: string }).text : "")).join(" ");
  }
  return "";
}

type Body = Record<string, unknown>;

/** Pydantic lax int (`int | None`): ints, integral floats, integer strings. */
function laxInt(body: Body, key: string, errors: PydError[]): number | null {
  const v = body[key];
  if (v === undefined || v === null) return null;
  if (typeof v === "number" && Number.isInteger(v)) return v;
  if (typeof v === "number") {
    errors.push({ type: "int_from_float", loc: ["body", key], msg: "Input should be a valid integer, got a number with a fractional part", input: v });
    return null;
  }
  if (typeof v === "string" && /^\s*[+-]?\d+\s*$/.test(v)) return Number(v);
  if (typeof v === "string") {
    errors.push({ type: "int_parsing", loc: ["body", key], msg: "Input should be a valid integer, unable to parse string as an integer", input: v });
    return null;
  }
  errors.push({ type: "int_type", loc: ["body", key], msg: "Input should be a valid integer", input: v });
  return null;
}

const TRUE_STRINGS = new Set(["1", "on", "t", "true", "y", "yes"]);
const FALSE_STRINGS = new Set(["0", "off", "f", "false", "n", "no"]);

/** Pydantic lax bool (`bool | None`). */
function laxBool(body: Body, key: string, errors: PydError[]): boolean {
  const v = body[key];
  if (v === undefined || v === null) return false;
  if (typeof v === "boolean") return v;
  if (v === 0 || v === 1) return v === 1;
  if (typeof v === "string" && TRUE_STRINGS.has(v.toLowerCase())) return true;
  if (typeof v === "string" && FALSE_STRINGS.has(v.toLowerCase())) return false;
  errors.push(typeof v === "string"
    ? { type: "bool_parsing", loc: ["body", key], msg: "Input should be a valid boolean, unable to interpret input", input: v }
    : { type: "bool_type", loc: ["body", key], msg: "Input should be a valid boolean", input: v });
  return false;
}

function optString(body: Body, key: string, errors: PydError[]): string | null {
  const v = body[key];
  if (v === undefined || v === null) return null;
  if (typeof v === "string") return v;
  errors.push({ type: "string_type", loc: ["body", key], msg: "Input should be a valid string", input: v });
  return null;
}

/** StreamOptions(include_usage: bool | None = True, continuous_usage_stats: bool | None = False). */
function streamOptions(body: Body, errors: PydError[]): { include: boolean; continuous: boolean } | null {
  const v = body.stream_options;
  if (v === undefined || v === null) return null;
  if (typeof v !== "object" || Array.isArray(v)) {
    errors.push({ type: "model_type", loc: ["body", "stream_options"], msg: "Input should be a valid dictionary or instance of StreamOptions", input: v });
    return null;
  }
  const o = v as Body;
  const sub: PydError[] = [];
  const include = o.include_usage === undefined || o.include_usage === null ? true : laxBool(o, "include_usage", sub);
  const continuous = laxBool(o, "continuous_usage_stats", sub);
  for (const e of sub) errors.push({ ...e, loc: ["body", "stream_options", ...e.loc.slice(1)] });
  return { include, continuous };
}

/** Where Python's json.loads would stop, and its message (approximated from V8's error text). */
function jsonDecodeError(text: string, e: unknown): PydError {
  const msg = e instanceof Error ? e.message : "";
  const pos = /at position (\d+)/.exec(msg);
  let reason = "Expecting value";
  if (/double-quoted property name/.test(msg)) reason = "Expecting property name enclosed in double quotes";
  else if (/Expected ',' or/.test(msg)) reason = "Expecting ',' delimiter";
  else if (/Unterminated string/.test(msg)) reason = "Unterminated string starting at";
  else if (/non-whitespace character after JSON/.test(msg)) reason = "Extra data";
  return { type: "json_invalid", loc: ["body", pos ? Number(pos[1]) : text.length], msg: "JSON decode error", input: {}, ctx: `{'error': ${pyRepr(reason)}}` };
}

// ---------------------------------------------------------------------------------------------------------
// Metrics, with vLLM's names, documentation strings, labels and buckets:
// vllm/v1/metrics/loggers.py PrometheusStatLogger (vllm-project/vllm@005a810b): labelnames ["model_name",
// "engine"]; vllm:num_requests_running / vllm:num_requests_waiting gauges; vllm:kv_cache_usage_perc (the
// current name: vllm:gpu_cache_usage_perc is "Deprecated in 0.9 - Renamed as vllm:kv_cache_usage_perc" and
// is not exported here); counters vllm:prompt_tokens, vllm:generation_tokens, vllm:num_preemptions,
// vllm:prefix_cache_queries/hits, vllm:request_success{finished_reason}; histograms
// vllm:e2e_request_latency_seconds, vllm:time_to_first_token_seconds, vllm:request_queue_time_seconds,
// vllm:request_prompt_tokens / vllm:request_generation_tokens (1-2-5 buckets up to max_model_len) and
// vllm:inter_token_latency_seconds (the successor of vllm:time_per_output_token_seconds, same buckets).
// Rendered as Python's prometheus_client renders it: counters as <name>_total plus a <name>_created gauge
// family, labels sorted, floats as Python prints them (floatToGoString).
// ---------------------------------------------------------------------------------------------------------

const LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];
const ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];

function buckets125(max: number): number[] {
  const out: number[] = [];
  for (let e = 0; ; e++) for (const m of [1, 2, 5]) {
    const v = m * 10 ** e;
    if (v > max) return out;
    out.push(v);
  }
}

/** prometheus_client's floatToGoString. */
function goFloat(d: number): string {
  if (d === Infinity) return "+Inf";
  if (d === -Infinity) return "-Inf";
  if (Number.isNaN(d)) return "NaN";
  const s = pyFloat(d);
  const dot = s.indexOf(".");
  if (d > 0 && dot > 6) {
    const mantissa = `${s[0]}.${s.slice(1, dot)}${s.slice(dot + 1)}`.replace(/[0.]+$/, "");
    return `${mantissa}e+0${dot - 1}`;
  }
  return s;
}

class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly bounds: number[]) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }
  observe(v: number): void {
    let i = this.bounds.findIndex((b) => v <= b);
    if (i < 0) i = this.bounds.length;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

class Metrics {
  readonly created = Date.now() / 1000;
  running = 0;
  waiting = 0;
  kvTokens = 0;
  promptTokens = 0;
  generationTokens = 0;
  prefixQueries = 0;
  success = { stop: 0, length: 0, abort: 0 };
  e2e = new Histogram(LATENCY_BUCKETS);
  queue = new Histogram(LATENCY_BUCKETS);
  ttft = new Histogram(TTFT_BUCKETS);
  itl = new Histogram(ITL_BUCKETS);
  promptHist: Histogram;
  genHist: Histogram;
  constructor(readonly maxModelLen: number) {
    this.promptHist = new Histogram(buckets125(maxModelLen));
    this.genHist = new Histogram(buckets125(maxModelLen));
  }

  render(model: string, kvCapacity: number): string {
    const out: string[] = [];
    const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
    const labels = (extra: Record<string, string> = {}) => {
      const all: Record<string, string> = { engine: "0", model_name: model, ...extra };
      return `{${Object.keys(all).sort().map((k) => `${k}="${esc(all[k]!)}"`).join(",")}}`;
    };
    const created = goFloat(this.created);
    const family = (name: string, type: string, help: string, lines: string[]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
    };
    const gauge = (name: string, help: string, v: number) => family(name, "gauge", help, [`${name}${labels()} ${goFloat(v)}`]);
    const counter = (name: string, help: string, values: [Record<string, string>, number][]) => {
      family(`${name}_total`, "counter", help, values.map(([l, v]) => `${name}_total${labels(l)} ${goFloat(v)}`));
      family(`${name}_created`, "gauge", help, values.map(([l]) => `${name}_created${labels(l)} ${created}`));
    };
    const histogram = (name: string, help: string, h: Histogram) => {
      const lines: string[] = [];
      let acc = 0;
      [...h.bounds, Infinity].forEach((b, i) => {
        acc += h.counts[i]!;
        lines.push(`${name}_bucket${labels({ le: goFloat(b) })} ${goFloat(acc)}`);
      });
      lines.push(`${name}_count${labels()} ${goFloat(h.count)}`, `${name}_sum${labels()} ${goFloat(h.sum)}`);
      family(name, "histogram", help, lines);
      family(`${name}_created`, "gauge", help, [`${name}_created${labels()} ${created}`]);
    };
    gauge("vllm:num_requests_running", "Number of requests in model execution batches.", this.running);
    gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", this.waiting);
    gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", Math.min(1, this.kvTokens / kvCapacity));
    counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", [[{}, this.prefixQueries]]);
    counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", [[{}, 0]]);
    counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", [[{}, 0]]);
    counter("vllm:prompt_tokens", "Number of prefill tokens processed.", [[{}, this.promptTokens]]);
    counter("vllm:generation_tokens", "Number of generation tokens processed.", [[{}, this.generationTokens]]);
    counter("vllm:request_success", "Count of successfully processed requests.", (["stop", "length", "abort"] as const).map((r) => [{ finished_reason: r }, this.success[r]]));
    histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", this.promptHist);
    histogram("vllm:request_generation_tokens", "Number of generation tokens processed.", this.genHist);
    histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", this.ttft);
    histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", this.itl);
    histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", this.e2e);
    histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", this.queue);
    return `${out.join("\n")}\n`;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The server.
// ---------------------------------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const uuidHex = () => randomUUID().replace(/-/g, "");
const now = () => Math.floor(Date.now() / 1000);

/** A deterministic unit vector for a text (vLLM normalises embeddings by default). */
function embedText(text: string, dim: number): number[] {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
  const v: number[] = [];
  for (let i = 0; i < dim; i++) {
    h = (Math.imul(h, 1664525) + 1013904223) >>> 0;
    v.push(h / 2 ** 31 - 1);
  }
  const norm = Math.hypot(...v) || 1;
  return v.map((x) => Math.fround(x / norm));
}

/** One generation: the tokens it emits and how it ends. */
interface Plan {
  pieces: string[];
  finish: "stop" | "length";
  /** Generated tokens, EOS included when it stopped. */
  completionTokens: number;
}

function plan(reply: string, maxTokens: number): Plan {
  const words = mockTokens(reply);
  if (maxTokens > words.length) return { pieces: words, finish: "stop", completionTokens: words.length + 1 };
  return { pieces: words.slice(0, maxTokens), finish: "length", completionTokens: maxTokens };
}

/** The steps a stream emits: one per token; a "stop" ends with the EOS token (empty text). */
function steps(p: Plan): string[] {
  return p.finish === "stop" ? [...p.pieces, ""] : p.pieces;
}

export async function startMockOpenAI(opts: MockOptions): Promise<MockOpenAI> {
  const options = {
    model: opts.model,
    mode: opts.mode ?? "ok",
    engine: opts.engine ?? "vllm",
    latencyMs: opts.latencyMs ?? 0,
    basePath: opts.basePath ?? "/v1",
    reply: opts.reply ?? "Hello",
    apiKey: opts.apiKey,
    host: opts.host ?? "127.0.0.1",
    root: opts.root ?? opts.model,
    maxModelLen: opts.maxModelLen ?? 8192,
    interTokenLatencyMs: opts.interTokenLatencyMs ?? 0,
    maxNumSeqs: opts.maxNumSeqs ?? 256,
    strictContentType: opts.strictContentType ?? false,
    embeddingDim: opts.embeddingDim ?? 32,
    kvCacheTokens: opts.kvCacheTokens ?? 16 * (opts.maxModelLen ?? 8192),
    tokensPerSecond: opts.tokensPerSecond ?? 0,
    prefillTokensPerSecond: opts.prefillTokensPerSecond ?? 0,
  } as MockOpenAI["options"];
  /** Without an explicit root, the card's root follows the served name (also after set({ model })). */
  let rootFollowsModel = opts.root === undefined;
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  let server: Server | null = null;
  let port = opts.port ?? 0;
  const metrics = new Metrics(options.maxModelLen);
  const queue: (() => void)[] = [];

  const servedModel = () => (options.mode === "wrong_model" ? `${options.model}-other` : options.model);
  const urlHost = () => (options.host === "0.0.0.0" ? "127.0.0.1" : options.host === "::" ? "[::1]" : options.host.includes(":") ? `[${options.host}]` : options.host);

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

  const send = (res: ServerResponse, a: Answer) => {
    if (res.destroyed || res.headersSent) return;
    const text = JSON.stringify(a.body);
    res.writeHead(a.status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...engineHeaders(), ...a.headers });
    res.end(text);
  };

  /** Waits for a free sequence slot (--max-num-seqs); resolves with the seconds spent waiting. */
  const acquire = async (): Promise<number> => {
    if (metrics.running < options.maxNumSeqs && queue.length === 0) {
      metrics.running++;
      return 0;
    }
    const t0 = performance.now();
    metrics.waiting++;
    await new Promise<void>((r) => queue.push(r)); // resumed with the slot handed over (running already counts it)
    metrics.waiting--;
    return (performance.now() - t0) / 1000;
  };
  const release = () => {
    if (queue.length > 0 && metrics.running <= options.maxNumSeqs) queue.shift()!();
    else metrics.running--;
  };

  /** Bookkeeping of one request in the engine, from its admission to its end. */
  const admit = async (promptTokens: number, res: ServerResponse) => {
    const arrived = performance.now();
    const queued = await acquire();
    const admitted = performance.now();
    const m = metrics;
    m.kvTokens += promptTokens;
    m.prefixQueries += promptTokens;
    let generated = 0;
    let first: number | null = null;
    let last = 0;
    let done = false;
    const finish = (reason: "stop" | "length" | "abort") => {
      if (done) return;
      done = true;
      m.kvTokens -= promptTokens + generated;
      m.success[reason]++;
      m.promptTokens += promptTokens;
      m.e2e.observe((performance.now() - arrived) / 1000);
      m.queue.observe(queued);
      m.promptHist.observe(promptTokens);
      m.genHist.observe(generated);
      release();
    };
    if (res.destroyed) finish("abort"); // the client left while the request waited
    else res.once("close", () => finish("abort"));
    return {
      promptTokens,
      /** The timing headers: the queue time, and the service time so far (or `plannedMs`, for a stream's head). */
      timing(plannedMs?: number): Record<string, string> {
        return { [QUEUE_TIME_HEADER]: (queued * 1000).toFixed(3), [SERVICE_TIME_HEADER]: (plannedMs ?? performance.now() - admitted).toFixed(3) };
      },
      aborted: () => res.destroyed || !res.writable,
      /** One engine step: `k` tokens generated (one per choice; EOS included). */
      step(k: number): void {
        const t = performance.now();
        if (first === null) {
          first = t;
          m.ttft.observe((t - arrived) / 1000);
        } else m.itl.observe((t - last) / 1000);
        last = t;
        generated += k;
        m.generationTokens += k;
        m.kvTokens += k;
      },
      finish,
    };
  };
  type Engine = Awaited<ReturnType<typeof admit>>;

  /** Time before the first token: `latencyMs` plus the prompt's prefill cost. */
  const prefillMs = (promptTokens: number) =>
    options.latencyMs + (options.prefillTokensPerSecond > 0 ? (1000 * promptTokens) / options.prefillTokensPerSecond : 0);
  /** The service time a generation of n steps will take in its slot (the stream head's header). */
  const plannedMs = (n: number, promptTokens: number) =>
    options.tokensPerSecond > 0 ? prefillMs(promptTokens) + (1000 * n) / options.tokensPerSecond : prefillMs(promptTokens) + Math.max(0, n - 1) * options.interTokenLatencyMs;

  /**
   * Runs a generation's steps (k tokens each) with the configured latencies; false when the client went away.
   * `each` (streams) sees every step as it happens; without it (a non-streamed answer, seen only whole) the
   * paced steps are coalesced to at most one timer per 20 ms, the last one exactly on time.
   */
  const generate = async (n: number, k: number, eng: Engine, each?: (step: number) => void): Promise<boolean> => {
    if (options.tokensPerSecond > 0) {
      const start = performance.now();
      const first = start + prefillMs(eng.promptTokens);
      const per = 1000 / options.tokensPerSecond;
      const due = (s: number) => first + (s + 1) * per;
      const end = n > 0 ? due(n - 1) : first;
      const minWait = each ? 0 : 20;
      let s = 0;
      for (;;) {
        if (eng.aborted()) break;
        const t = performance.now();
        const next = s < n ? due(s) : end;
        if (next > t) {
          await sleep(Math.min(Math.max(next, t + minWait), end) - t);
          continue;
        }
        if (s >= n) break;
        eng.step(k);
        each?.(s);
        s++;
      }
    } else {
      const prefill = prefillMs(eng.promptTokens);
      if (prefill > 0) await sleep(prefill);
      for (let s = 0; s < n; s++) {
        if (s > 0 && options.interTokenLatencyMs > 0) await sleep(options.interTokenLatencyMs);
        if (eng.aborted()) break;
        eng.step(k);
        each?.(s);
      }
    }
    if (!eng.aborted()) return true;
    eng.finish("abort");
    return false;
  };

  /**
   * The head of a stream goes out at once, before the first token: vLLM returns a Starlette StreamingResponse,
   * whose stream_response sends http.response.start before iterating the generator (and uvicorn writes it).
   */
  const sse = (res: ServerResponse, extra: Record<string, string> = {}) => {
    if (res.destroyed) return;
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", ...engineHeaders(), ...extra });
    res.flushHeaders();
  };
  const event = (res: ServerResponse, data: unknown) => {
    if (!res.destroyed) res.write(`data: ${JSON.stringify(data)}\n\n`);
  };

  /** Reads the JSON body as FastAPI + vLLM do; an Answer when it is refused. */
  const readBody = (req: IncomingMessage, body: string): { body: Body } | { refused: Answer } => {
    const refused = (...a: Parameters<typeof validationError>) => ({ refused: validationError(...a) });
    const ct = String(req.headers["content-type"] ?? "").toLowerCase();
    const media = ct.split(";")[0]!.trim();
    const jsonish = media === "" || media === "application/json" || /\+json$/.test(media);
    let parsed: unknown = undefined;
    if (jsonish && body.length > 0) {
      try {
        parsed = JSON.parse(body);
      } catch (e) {
        return refused([jsonDecodeError(body, e)]);
      }
    }
    // vllm/entrypoints/openai/utils.py validate_json_request: RequestValidationError(errors=["Unsupported Media Type: Only 'application/json' is allowed"])
    if (options.strictContentType && media !== "application/json") return refused(["Unsupported Media Type: Only 'application/json' is allowed"]);
    if (!jsonish && body.length > 0) {
      // Without strict checking, a JSON body sent as text/plain (header-routed gateway requests) is read anyway.
      try {
        parsed = JSON.parse(body);
      } catch (e) {
        return refused([jsonDecodeError(body, e)]);
      }
    }
    if (parsed === undefined) return refused([{ type: "missing", loc: ["body"], msg: "Field required", input: null }]);
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      return refused([{ type: "model_attributes_type", loc: ["body"], msg: "Input should be a valid dictionary or object to extract fields from", input: parsed }]);
    }
    return { body: parsed as Body };
  };

  /** The checks every generation request shares: model, max tokens, context length. */
  const checkGeneration = (body: Body, errors: PydError[], promptTokens: number, maxTokens: number | null): Answer | number => {
    const model = optString(body, "model", errors);
    if (errors.length) return validationError(errors);
    if (model && model !== servedModel()) return notFoundModel(model);
    if (maxTokens !== null && maxTokens < 1) return servingValueError(`max_tokens must be at least 1, got ${maxTokens}.`, "max_tokens", maxTokens);
    const maxLen = options.maxModelLen;
    if (promptTokens >= maxLen) {
      return servingValueError(`This model's maximum context length is ${maxLen} tokens. However, your request has ${promptTokens} input tokens. Please reduce the length of the input messages.`, "input_tokens", promptTokens);
    }
    if (maxTokens !== null && promptTokens + maxTokens > maxLen) {
      return servingValueError(
        `'max_tokens' or 'max_completion_tokens' is too large: ${maxTokens}. This model's maximum context length is ${maxLen} tokens and your request has ${promptTokens} input tokens (${maxTokens} > ${maxLen} - ${promptTokens}).`,
        "max_tokens",
        maxTokens,
      );
    }
    return maxTokens ?? maxLen - promptTokens;
  };

  const requestId = (req: IncomingMessage) => {
    const h = req.headers["x-request-id"];
    return typeof h === "string" && h.length > 0 ? h : uuidHex();
  };

  const usage = (prompt: number, completion: number) => ({ prompt_tokens: prompt, total_tokens: prompt + completion, completion_tokens: completion });
  /** UsageInfo.model_dump(): the details fields are null. */
  const fullUsage = (prompt: number, completion: number) => ({ ...usage(prompt, completion), prompt_tokens_details: null, completion_tokens_details: null });

  // POST /v1/chat/completions — vllm/entrypoints/openai/chat_completion/protocol.py and serving.py
  // (vllm-project/vllm@002032ee / @006c49d4): non-streamed = ChatCompletionResponse.model_dump();
  // streamed = ChatCompletionStreamResponse.model_dump_json(exclude_unset=True) per token, first a
  // delta {role, content: ""} per choice, the last token's chunk with finish_reason (+ stop_reason), then —
  // with stream_options.include_usage — a chunk with choices [] and usage (exclude_none), then [DONE].
  const chat = async (req: IncomingMessage, res: ServerResponse, body: Body) => {
    const errors: PydError[] = [];
    const messages = body.messages;
    if (messages === undefined) errors.push({ type: "missing", loc: ["body", "messages"], msg: "Field required", input: body });
    else if (!Array.isArray(messages)) errors.push({ type: "list_type", loc: ["body", "messages"], msg: "Input should be a valid list", input: messages });
    const stream = laxBool(body, "stream", errors);
    const so = streamOptions(body, errors);
    const maxCompletion = laxInt(body, "max_completion_tokens", errors);
    const maxTokensParam = laxInt(body, "max_tokens", errors);
    const n = laxInt(body, "n", errors) ?? 1;
    if (!errors.length && so && !stream) errors.push(modelValueError("Stream options can only be defined when `stream=True`.", "stream_options", body));
    const promptTokens = chatPromptTokens(Array.isArray(messages) ? messages : []);
    const checked = checkGeneration(body, errors, promptTokens, maxCompletion ?? maxTokensParam);
    if (typeof checked !== "number") return await answer(res, checked);
    if (n < 1) return await answer(res, servingValueError(`n must be at least 1, got ${n}.`, "n", n));

    const id = `chatcmpl-${requestId(req)}`;
    const created = now();
    const model = servedModel();
    const p = plan(options.reply, checked);
    const st = steps(p);
    const eng = await admit(promptTokens, res);
    if (!stream) {
      if (!(await generate(st.length, n, eng))) return;
      eng.finish(p.finish);
      const content = p.pieces.join("");
      return send(res, {
        status: 200,
        headers: eng.timing(),
        body: {
          id,
          object: "chat.completion",
          created,
          model,
          choices: Array.from({ length: n }, (_, index) => ({
            index,
            // ChatMessage; its serializer drops an empty tool_calls list.
            message: { role: "assistant", content, refusal: null, annotations: null, audio: null, function_call: null, reasoning: null },
            logprobs: null,
            finish_reason: p.finish,
            stop_reason: null,
            token_ids: null,
            routed_experts: null,
          })),
          service_tier: null,
          system_fingerprint: options.engine === "ollama" ? "fp_ollama" : null,
          usage: fullUsage(promptTokens, p.completionTokens * n),
          prompt_logprobs: null,
          prompt_token_ids: null,
          prompt_text: null,
          kv_transfer_params: null,
          ec_transfer_params: null,
          metrics: null,
        },
      });
    }
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({ id, object: "chat.completion.chunk", created, model, choices, ...extra });
    // stream_options.continuous_usage_stats: every chunk carries the usage of its choice so far.
    const running = (generated: number) => (so?.include && so.continuous ? { usage: usage(promptTokens, generated) } : {});
    sse(res, eng.timing(plannedMs(st.length, promptTokens)));
    const ok = await generate(st.length, n, eng, (s) => {
      // The role chunks come with the first engine output (serving.py: `if first_iteration:`), i.e. after the TTFT.
      if (s === 0) {
        for (let i = 0; i < n; i++) {
          event(res, chunk([{ index: i, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }], { ...running(0), prompt_token_ids: null, prompt_text: null }));
        }
      }
      const last = s === st.length - 1;
      for (let i = 0; i < n; i++) {
        const c = last
          ? { index: i, delta: { content: st[s] }, logprobs: null, finish_reason: p.finish, stop_reason: null, token_ids: null }
          : { index: i, delta: { content: st[s] }, logprobs: null, finish_reason: null, token_ids: null };
        event(res, chunk([c], running(s + 1)));
      }
    });
    if (!ok) return;
    if (so?.include) event(res, chunk([], { usage: usage(promptTokens, p.completionTokens * n) }));
    eng.finish(p.finish);
    res.end("data: [DONE]\n\n");
  };

  // POST /v1/completions — vllm/entrypoints/openai/completion/protocol.py and serving.py
  // (vllm-project/vllm@002032ee / @030ea52e): prompt required and non-empty (model validator →
  // "Either prompt or prompt_embeds must be provided and non-empty."), max_tokens defaults to 16;
  // choices [{index, text, logprobs, finish_reason, stop_reason, …}], object "text_completion", id "cmpl-…".
  const completions = async (req: IncomingMessage, res: ServerResponse, body: Body) => {
    const errors: PydError[] = [];
    const prompt = body.prompt;
    let prompts: string[] = [];
    let tokenCounts: number[] = [];
    if (prompt === undefined || prompt === null || prompt === "") {
      errors.push(modelValueError("Either prompt or prompt_embeds must be provided and non-empty.", "prompt", body));
    } else if (typeof prompt === "string") {
      prompts = [prompt];
    } else if (Array.isArray(prompt) && prompt.every((x) => typeof x === "string")) {
      prompts = prompt as string[];
    } else if (Array.isArray(prompt) && prompt.every((x) => Number.isInteger(x) && (x as number) >= 0)) {
      prompts = [""];
      tokenCounts = [prompt.length];
    } else if (Array.isArray(prompt) && prompt.every((x) => Array.isArray(x) && x.every((y) => Number.isInteger(y) && y >= 0))) {
      prompts = prompt.map(() => "");
      tokenCounts = (prompt as number[][]).map((x) => x.length);
    } else {
      errors.push({ type: "string_type", loc: ["body", "prompt", "str"], msg: "Input should be a valid string", input: prompt });
    }
    const stream = laxBool(body, "stream", errors);
    const so = streamOptions(body, errors);
    const maxTokens = laxInt(body, "max_tokens", errors) ?? 16;
    const n = laxInt(body, "n", errors) ?? 1;
    if (!errors.length && so && !stream) errors.push(modelValueError("Stream options can only be defined when `stream=True`.", "stream_options", body));
    const counts = prompts.map((t, i) => tokenCounts[i] ?? 1 + mockTokens(t).length); // BOS + the words
    const longest = counts.length ? Math.max(...counts) : 0;
    const checked = checkGeneration(body, errors, longest, maxTokens);
    if (typeof checked !== "number") return await answer(res, checked);
    if (n < 1) return await answer(res, servingValueError(`n must be at least 1, got ${n}.`, "n", n));

    const id = `cmpl-${requestId(req)}`;
    const created = now();
    const model = servedModel();
    const p = plan(options.reply, checked);
    const st = steps(p);
    const choices = prompts.length * n;
    const promptTotal = counts.reduce((a, b) => a + b, 0);
    const eng = await admit(promptTotal, res);
    if (!stream) {
      if (!(await generate(st.length, choices, eng))) return;
      eng.finish(p.finish);
      const text = p.pieces.join("");
      return send(res, {
        status: 200,
        headers: eng.timing(),
        body: {
          id,
          object: "text_completion",
          created,
          model,
          choices: Array.from({ length: choices }, (_, index) => ({
            index,
            text,
            logprobs: null,
            finish_reason: p.finish,
            stop_reason: null,
            token_ids: null,
            prompt_logprobs: null,
            prompt_token_ids: null,
            routed_experts: null,
          })),
          service_tier: null,
          system_fingerprint: null,
          usage: fullUsage(promptTotal, p.completionTokens * choices),
          kv_transfer_params: null,
          ec_transfer_params: null,
          metrics: null,
        },
      });
    }
    sse(res, eng.timing(plannedMs(st.length, promptTotal)));
    const ok = await generate(st.length, choices, eng, (s) => {
      const last = s === st.length - 1;
      for (let i = 0; i < choices; i++) {
        const c = { index: i, text: st[s], logprobs: null, finish_reason: last ? p.finish : null, stop_reason: null, prompt_token_ids: null, token_ids: null };
        const u = so?.include && so.continuous ? { usage: usage(counts[Math.floor(i / n)] ?? 0, s + 1) } : {};
        event(res, { id, object: "text_completion", created, model, choices: [c], ...u });
      }
    });
    if (!ok) return;
    if (so?.include) event(res, { id, object: "text_completion", created, model, choices: [], usage: usage(promptTotal, p.completionTokens * choices) });
    eng.finish(p.finish);
    res.end("data: [DONE]\n\n");
  };

  // POST /v1/embeddings — vllm/entrypoints/pooling/embed/protocol.py (vllm-project/vllm@ff8d577a):
  // EmbeddingResponse {id "embd-…", object "list", created, model, data [{index, object "embedding",
  // embedding}], usage}; encoding_format "float" (default) or "base64" (float32 bytes, the openai SDK's default).
  const embeddings = async (req: IncomingMessage, res: ServerResponse, body: Body) => {
    const errors: PydError[] = [];
    const input = body.input;
    let texts: string[] = [];
    let counts: number[] = [];
    if (input === undefined && Array.isArray(body.messages)) {
      texts = [(body.messages as unknown[]).map(messageText).join("\n")];
      counts = [chatPromptTokens(body.messages as unknown[])];
    } else if (input === undefined) {
      errors.push({ type: "missing", loc: ["body", "input"], msg: "Field required", input: body });
    } else if (typeof input === "string") {
      texts = [input];
    } else if (Array.isArray(input) && input.length > 0 && input.every((x) => typeof x === "string")) {
      texts = input as string[];
    } else if (Array.isArray(input) && input.length > 0 && input.every((x) => Number.isInteger(x))) {
      texts = [JSON.stringify(input)];
      counts = [input.length];
    } else if (Array.isArray(input) && input.length > 0 && input.every((x) => Array.isArray(x) && x.every((y) => Number.isInteger(y)))) {
      texts = (input as number[][]).map((x) => JSON.stringify(x));
      counts = (input as number[][]).map((x) => x.length);
    } else {
      errors.push({ type: "string_type", loc: ["body", "input", "str"], msg: "Input should be a valid string", input });
    }
    const format = optString(body, "encoding_format", errors) ?? "float";
    if (!["float", "base64", "bytes"].includes(format)) {
      errors.push({ type: "literal_error", loc: ["body", "encoding_format"], msg: "Input should be 'float', 'base64' or 'bytes'", input: format, ctx: "{'expected': \"'float', 'base64' or 'bytes'\"}" });
    }
    const dimensions = laxInt(body, "dimensions", errors);
    const tokenCounts = texts.map((t, i) => counts[i] ?? 1 + mockTokens(t).length);
    const longest = tokenCounts.length ? Math.max(...tokenCounts) : 0;
    const model = optString(body, "model", errors);
    if (errors.length) return await answer(res, validationError(errors));
    if (model && model !== servedModel()) return await answer(res, notFoundModel(model));
    if (longest > options.maxModelLen) {
      return await answer(res, servingValueError(`This model's maximum context length is ${options.maxModelLen} tokens. However, you requested ${longest} tokens in the input for embedding generation. Please reduce the length of the input.`, "input_tokens", longest));
    }
    if (dimensions !== null) {
      // vllm/pooling_params.py: a model without matryoshka support refuses `dimensions`.
      return await answer(res, vllmError(400, "BadRequestError", `Model "${servedModel()}" does not support matryoshka representation, changing output dimensions will lead to poor results.`));
    }
    const promptTotal = tokenCounts.reduce((a, b) => a + b, 0);
    const eng = await admit(promptTotal, res);
    if (!(await generate(0, 0, eng))) return;
    eng.finish("stop");
    const data = texts.map((t, index) => {
      const v = embedText(t, options.embeddingDim);
      const embedding = format === "float" ? v : Buffer.from(new Float32Array(v).buffer).toString("base64");
      return { index, object: "embedding", embedding };
    });
    send(res, {
      status: 200,
      headers: eng.timing(),
      body: { id: `embd-${requestId(req)}`, object: "list", created: now(), model: servedModel(), data, usage: fullUsage(promptTotal, 0) },
    });
  };

  /** Every answer but a generation's waits `latencyMs` first. */
  const answer = async (res: ServerResponse, a: Answer) => {
    if (options.latencyMs > 0) await sleep(options.latencyMs);
    send(res, a);
  };

  // GET /v1/models — vllm/entrypoints/openai/models/serving.py show_available_models and
  // engine/protocol.py ModelCard / ModelPermission: one card per served name, owned_by "vllm",
  // root = the model path, parent null, max_model_len, permission [ModelPermission()].
  const modelList = (): Answer => {
    const created = now();
    const card: Record<string, unknown> = { id: servedModel(), object: "model", created, owned_by: OWNED_BY[options.engine] };
    if (options.engine === "vllm") {
      Object.assign(card, {
        root: options.mode === "wrong_model" ? `${options.root}-other` : options.root,
        parent: null,
        max_model_len: options.maxModelLen,
        permission: [{
          id: `modelperm-${uuidHex()}`,
          object: "model_permission",
          created,
          allow_create_engine: false,
          allow_sampling: true,
          allow_logprobs: true,
          allow_search_indices: false,
          allow_view: true,
          allow_fine_tuning: false,
          organization: "*",
          group: null,
          is_blocking: false,
        }],
      });
    }
    return { status: 200, body: { object: "list", data: [card] } };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, raw: string) => {
    const url = new URL(req.url ?? "/", "http://mock");
    const method = req.method ?? "";
    requests.push({ method, path: url.pathname, headers: { ...req.headers }, body: raw });
    if (options.mode === "hang") return; // never answer

    if (url.pathname === "/health") {
      if (method !== "GET") return await answer(res, fastapiMethodNotAllowed("GET"));
      // vLLM: 200 with an empty body; 503 (empty) when the engine is dead.
      if (options.latencyMs > 0) await sleep(options.latencyMs);
      if (res.destroyed) return;
      const status = options.mode === "unhealthy" || options.mode === "error_5xx" ? 503 : 200;
      res.writeHead(status, { "content-length": 0, ...engineHeaders() });
      return res.end();
    }
    if (url.pathname === "/metrics" && options.engine === "vllm") {
      // Not delayed by latencyMs: the engine is slow, not vLLM's API server that exports the metrics.
      if (method !== "GET") return send(res, fastapiMethodNotAllowed("GET"));
      const text = metrics.render(servedModel(), options.kvCacheTokens);
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "content-length": Buffer.byteLength(text), ...engineHeaders() });
      return res.end(text);
    }
    const base = options.basePath;
    if (!url.pathname.startsWith(`${base}/`)) return await answer(res, fastapiNotFound());
    // vllm/entrypoints/serve/middleware/authenticate.py: guarded prefixes need "Bearer <key>" (scheme case-insensitive) → 401 {"error": "Unauthorized"}.
    if (options.apiKey !== undefined && method !== "OPTIONS") {
      const auth = String(req.headers.authorization ?? "");
      const sp = auth.indexOf(" ");
      const ok = sp > 0 && auth.slice(0, sp).toLowerCase() === "bearer" && auth.slice(sp + 1) === options.apiKey;
      if (!ok) return await answer(res, { status: 401, body: { error: "Unauthorized" } });
    }
    if (options.mode === "error_5xx") return await answer(res, vllmError(500, "InternalServerError", "Internal server error"));
    const route = url.pathname.slice(base.length);
    const post = async (fn: (req: IncomingMessage, res: ServerResponse, body: Body) => Promise<void>) => {
      if (method !== "POST") return await answer(res, fastapiMethodNotAllowed("POST"));
      const read = readBody(req, raw);
      if ("refused" in read) return await answer(res, read.refused);
      await fn(req, res, read.body);
    };
    switch (route) {
      case "/models":
        return await answer(res, method === "GET" ? modelList() : fastapiMethodNotAllowed("GET"));
      case "/chat/completions":
        return await post(chat);
      case "/completions":
        return await post(completions);
      case "/embeddings":
        return await post(embeddings);
      default:
        return await answer(res, fastapiNotFound());
    }
  };

  const start = async () => {
    if (server) return;
    const srv = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        handle(req, res, Buffer.concat(chunks).toString("utf8")).catch(() => {
          if (!res.headersSent && !res.destroyed) res.writeHead(500);
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
      srv.listen(port, options.host, () => resolve());
    });
    port = (srv.address() as AddressInfo).port;
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
    get port() {
      return port;
    },
    get host() {
      return options.host;
    },
    get url() {
      return `http://${urlHost()}:${port}${options.basePath}`;
    },
    requests,
    options,
    set(change) {
      if (change.root !== undefined) rootFollowsModel = false;
      Object.assign(options, change);
      if (rootFollowsModel) options.root = options.model;
      while (metrics.running < options.maxNumSeqs && queue.length > 0) {
        metrics.running++;
        queue.shift()!();
      }
    },
    stats() {
      return { running: metrics.running, waiting: metrics.waiting, promptTokens: metrics.promptTokens, generationTokens: metrics.generationTokens, success: { ...metrics.success } };
    },
    metricsText() {
      return metrics.render(servedModel(), options.kvCacheTokens);
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

// ---------------------------------------------------------------------------------------------------------
// Command line: `tsx envoy/local/mock-openai.ts --model NAME [--port N] [--host H] [--latency MS] [--api-key KEY] …`
// ---------------------------------------------------------------------------------------------------------

const USAGE = `Usage: tsx envoy/local/mock-openai.ts --model NAME [options]

A mock engine that answers like vLLM's OpenAI-compatible server, serving exactly one model name.

  --model NAME               served model name (alias: --served-model-name); default llama3
  --port N                   listen port; default 0 (a free port)
  --host H                   listen address; default 127.0.0.1
  --latency MS               delay before every answer (time to first token); default 0
  --inter-token-latency MS   delay between generated tokens; default 0
  --api-key KEY              require "Authorization: Bearer KEY" on /v1/* (vLLM's --api-key)
  --reply TEXT               completion text (one token per word); default "Hello"
  --root PATH                the model card's root (vLLM's model path); default: the model name
  --max-model-len N          context window; default 8192
  --max-num-seqs N           requests generating at once, the rest wait; default 256
  --tokens-per-second N      decode rate per slot: service time = prefill + generated tokens / N; default 0 (off)
  --prefill-tokens-per-second N  prompt cost: prompt tokens / N before the first token; default 0 (none)
  --embedding-dim N          /v1/embeddings vector size; default 32
  --base-path P              API base path; default /v1
  --engine E                 vllm | sglang | tgi | ollama | generic; default vllm
  --mode M                   ok | wrong_model | error_5xx | hang | unhealthy; default ok
  --strict-content-type      refuse POST bodies that are not application/json (as vLLM does)
  -h, --help                 this text

Prints "mock OpenAI instance serving NAME at URL" once listening; SIGINT/SIGTERM stop it (exit 0).
`;

export async function runCli(argv: string[]): Promise<MockOpenAI | null> {
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" },
      "served-model-name": { type: "string" },
      port: { type: "string" },
      host: { type: "string" },
      latency: { type: "string" },
      "inter-token-latency": { type: "string" },
      "api-key": { type: "string" },
      reply: { type: "string" },
      root: { type: "string" },
      "max-model-len": { type: "string" },
      "max-num-seqs": { type: "string" },
      "tokens-per-second": { type: "string" },
      "prefill-tokens-per-second": { type: "string" },
      "embedding-dim": { type: "string" },
      "base-path": { type: "string" },
      engine: { type: "string" },
      mode: { type: "string" },
      "strict-content-type": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return null;
  }
  const int = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return n;
  };
  const oneOf = <T extends string>(name: string, v: string | undefined, allowed: readonly T[]): T | undefined => {
    if (v === undefined) return undefined;
    if (!allowed.includes(v as T)) throw new Error(`--${name} must be one of ${allowed.join(", ")}, got ${JSON.stringify(v)}`);
    return v as T;
  };
  const model = values["served-model-name"] ?? values.model ?? "llama3";
  const m = await startMockOpenAI({
    model,
    port: int("port", values.port),
    host: values.host,
    latencyMs: int("latency", values.latency),
    interTokenLatencyMs: int("inter-token-latency", values["inter-token-latency"]),
    apiKey: values["api-key"],
    reply: values.reply,
    root: values.root,
    maxModelLen: int("max-model-len", values["max-model-len"]),
    maxNumSeqs: int("max-num-seqs", values["max-num-seqs"]),
    tokensPerSecond: int("tokens-per-second", values["tokens-per-second"]),
    prefillTokensPerSecond: int("prefill-tokens-per-second", values["prefill-tokens-per-second"]),
    embeddingDim: int("embedding-dim", values["embedding-dim"]),
    basePath: values["base-path"],
    engine: oneOf("engine", values.engine, ["vllm", "sglang", "tgi", "ollama", "generic"] as const),
    mode: oneOf("mode", values.mode, ["ok", "wrong_model", "error_5xx", "hang", "unhealthy"] as const),
    strictContentType: values["strict-content-type"],
  });
  process.stdout.write(`mock OpenAI instance serving ${model} at ${m.url}\n`);
  return m;
}

if (process.argv[1] && import.meta.url === (await import("node:url")).pathToFileURL(process.argv[1]).href) {
  try {
    const m = await runCli(process.argv.slice(2));
    if (m) {
      const bye = () => void m.close().then(() => process.exit(0));
      process.once("SIGINT", bye);
      process.once("SIGTERM", bye);
    }
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
}
