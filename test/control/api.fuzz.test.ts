/**
 * Fuzzing the control API with fast-check (issue 6): ≥ 10,000 generated requests against a real control
 * replica on a real Redis, mixing
 *   (a) schema-aware requests: bodies generated from the API's own zod schemas (z.toJSONSchema), then
 *       mutated (wrong types, missing/extra fields, boundary numbers, huge and unicode strings, nulls, deep
 *       nesting, duplicate ids, bad and link-local URLs, bad enum values, broken JSON text);
 *   (b) raw garbage: odd methods, paths (odd characters, percent-encoding, very long ids), headers
 *       (content types, If-Match / If-None-Match / Idempotency-Key garbage, every role's token and wrong
 *       ones), malformed, empty and large bodies — plus protocol-level garbage over a raw socket;
 *   (c) valid sequences (model → deployment → scale → patch → delete) with strict expectations, run
 *       concurrently with the garbage.
 * Properties, per response: never 5xx; every error is `{error:{code,message,request_id}}` (the API's own
 * ErrorBody schema, code ↔ status as in errors.ts, request_id = x-request-id) with field-naming `issues`
 * on 400 validation_failed; 2xx bodies validate with the API's response schemas; every status a route
 * answers is listed for its operation in /openapi.json; no API key we sent
 * (all carry the marker below) nor any bearer token ever appears in a response or a log line. Per batch:
 * the replica still answers /healthz, and never logs an unhandled error, an invalid routing table or a
 * refused xDS snapshot. Requests node's own HTTP parser rejects (raw-socket garbage, non-ASCII targets)
 * never reach the app: those only have to be 4xx (node answers them without a JSON body).
 * After the run: no instance stays pending; every stored model/deployment/instance/migration/event list
 * validates; the routing table validates with contract 1 and matches the deployments (every pool
 * instance's address, one instance per address, names → existing deployments); xDS serves the same
 * version; the Redis indexes (names, model → deployment, API keys) agree with the documents.
 *
 *   FUZZ_SEED=<n>   reproduce a run (the seed is printed); FUZZ_PATH=<path> replays a shrunk counterexample
 *   FUZZ_RUNS=<n> FUZZ_BATCH=<n> FUZZ_CONCURRENCY=<n>   runs × items per run (default 80 × 100 ≈ 12,000 requests), in flight
 *   FUZZ_SHRINK=1   shrink a failure to a smaller batch (off by default: each shrink step replays up to a whole batch
 *                   against a replica whose state the failing batch changed, and CI once spent its 600 s budget there
 *                   without printing the violation);  FUZZ_VERBOSE=1   list the replica's warnings
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import fc from "fast-check";
import { Redis } from "ioredis";
import { z } from "zod";
import { RoutingTable, type TableInstance } from "../../control/contracts/routing-table.js";
import { TelemetryBatch } from "../../control/contracts/telemetry.js";
import { Deployment, DeploymentCreate, DeploymentCreated, DeploymentUpdate, Instance, InstanceAdd, InstanceAdded, InstanceUpdate, Migration, MigrationCreate } from "../../control/src/deployments/schemas.js";
import { EventList } from "../../control/src/health/schemas.js";
import { STATUS } from "../../control/src/http/errors.js";
import { Model, ModelCreate, ModelUpdate } from "../../control/src/models/schemas.js";
import { ErrorBody, openApiDocument } from "../../control/src/openapi.js";
import { DiscoveryRequest } from "../../control/xds/discovery.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { freePort, type RedisServer } from "../support/redis.js";
import { ADMIN, PLUGIN, VIEWER, startReplica, waitFor, withRedis, type Replica } from "./harness.js";

const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : 60601;
const RUNS = process.env.FUZZ_RUNS !== undefined ? Number(process.env.FUZZ_RUNS) : 80;
// Items per run. 8,000 items ≈ 12,000 requests: ~2 % are valid sequences of ~25 requests each.
const BATCH = Number(process.env.FUZZ_BATCH ?? 100);
const DEFAULT_SIZE = process.env.FUZZ_RUNS === undefined && process.env.FUZZ_BATCH === undefined;
const CONCURRENCY = Number(process.env.FUZZ_CONCURRENCY ?? 8);
const MIN_REQUESTS = 10_000;
const BODY_LIMIT = 128 * 1024;
const REQUEST_TIMEOUT_MS = 15_000;
/** Every API key we send starts with this: finding it in any response or log line is a leak. */
const SECRET_MARK = "sk-fzSECRET-";
const TOKENS = [ADMIN, VIEWER, PLUGIN];
const SERVED = "fz-served"; // what the mock instance serves

const MODEL_IDS = ["fz-m0", "fz-m1", "fz-m2", "fz-m3", "fz-m4"];
const MODEL_NAMES = ["fz-llama", "fz-qwen", "fz-mistral", "fz-phi", "fz-gemma", "fz-alias-a", "fz-alias-b", SERVED];
const DEP_IDS = ["fz-d0", "fz-d1", "fz-d2", "fz-d3"];
const INST_IDS = ["i0", "i1", "i2", "i3"];
const IDEM_KEYS = ["fz-k1", "fz-k2", "fz-k3"];

// ───────────────────────────── HTTP: well-formed requests (node:http) and raw bytes (net) ─────────────

interface Req {
  /** Route label when the path came unaltered from a route template (its 2xx body is schema-checked). */
  label: string | null;
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  body?: string;
  /** Send without content-length (chunked). */
  chunked?: boolean;
}

interface Resp {
  status: number; // 0 = no response
  headers: http.IncomingHttpHeaders;
  text: string;
  error?: string;
}

let port = 0;
const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY * 2 });

function send(req: Req): Promise<Resp> {
  return new Promise((resolve) => {
    const headers: Record<string, string | string[]> = { ...req.headers };
    const body = req.body === undefined ? undefined : Buffer.from(req.body, "utf8");
    if (body !== undefined && !req.chunked) headers["content-length"] = String(body.length);
    let r: http.ClientRequest;
    try {
      r = http.request({ host: "127.0.0.1", port, method: req.method, path: req.path, headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", (e) => resolve({ status: 0, headers: {}, text: "", error: `response: ${e.message}` }));
      });
    } catch (e) {
      return resolve({ status: -1, headers: {}, text: "", error: `client refused the request: ${(e as Error).message}` });
    }
    r.setTimeout(REQUEST_TIMEOUT_MS, () => r.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    r.on("error", (e) => resolve({ status: 0, headers: {}, text: "", error: e.message }));
    r.end(body);
  });
}

interface RawReq {
  what: string;
  bytes: Buffer;
  /** The server may legitimately close without answering (CONNECT, a body shorter than announced). */
  mayNotAnswer?: boolean;
}

/** Write raw bytes, read one HTTP response (or none) from the socket. */
function sendRaw(raw: RawReq): Promise<Resp> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(parseRaw(buf));
    };
    const timer = setTimeout(finish, raw.mayNotAnswer ? 400 : 5_000);
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (completeResponse(buf)) finish();
    });
    sock.on("end", finish);
    sock.on("close", finish);
    sock.on("error", finish);
    sock.write(raw.bytes);
  });
}

function completeResponse(buf: Buffer): boolean {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const head = buf.subarray(0, end).toString("latin1");
  const len = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (len) return buf.length - end - 4 >= Number(len[1]);
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) return buf.subarray(end).includes("\r\n0\r\n\r\n");
  return /^HTTP\/1\.\d (1\d\d|204|304)/.test(head);
}

function parseRaw(buf: Buffer): Resp {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return { status: 0, headers: {}, text: buf.toString("latin1"), error: buf.length ? "partial response" : "no response" };
  const [line, ...lines] = buf.subarray(0, end).toString("latin1").split("\r\n");
  const m = /^HTTP\/1\.\d (\d{3})/.exec(line ?? "");
  const headers: http.IncomingHttpHeaders = {};
  for (const l of lines) {
    const i = l.indexOf(":");
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = buf.subarray(end + 4);
  if (/chunked/i.test(String(headers["transfer-encoding"] ?? ""))) {
    const parts: Buffer[] = [];
    let rest = body;
    for (;;) {
      const nl = rest.indexOf("\r\n");
      if (nl < 0) break;
      const size = parseInt(rest.subarray(0, nl).toString("latin1"), 16);
      if (!(size > 0)) break;
      parts.push(rest.subarray(nl + 2, nl + 2 + size));
      rest = rest.subarray(nl + 2 + size + 2);
    }
    body = Buffer.concat(parts);
  }
  return { status: m ? Number(m[1]) : 0, headers, text: body.toString("utf8") };
}

// ───────────────────────────── JSON bodies: schema → arbitrary, mutations, serialization ─────────────

/** JSON text spliced in verbatim (deep nesting, duplicate keys, __proto__): never built as JS objects. */
class RawJson {
  constructor(readonly text: string) {}
}

function toJson(v: unknown): string {
  if (v instanceof RawJson) return v.text;
  if (Array.isArray(v)) return `[${v.map(toJson).join(",")}]`;
  if (v !== null && typeof v === "object") return `{${Object.keys(v).map((k) => `${JSON.stringify(k)}:${toJson((v as Record<string, unknown>)[k])}`).join(",")}}`;
  if (typeof v === "number" && !Number.isFinite(v)) return "null";
  return JSON.stringify(v) ?? "null";
}

function clone(v: unknown): unknown {
  if (v instanceof RawJson) return v;
  if (Array.isArray(v)) return v.map(clone);
  if (v !== null && typeof v === "object") {
    const o: Record<string, unknown> = {};
    for (const k of Object.keys(v)) defineKey(o, k, clone((v as Record<string, unknown>)[k]));
    return o;
  }
  return v;
}

/** Own enumerable property even for "__proto__" (an assignment would set the prototype). */
function defineKey(o: Record<string, unknown>, k: string, value: unknown): void {
  Object.defineProperty(o, k, { value, enumerable: true, writable: true, configurable: true });
}

interface Js {
  type?: string;
  properties?: Record<string, Js>;
  required?: string[];
  items?: Js;
  prefixItems?: Js[];
  enum?: unknown[];
  const?: unknown;
  anyOf?: Js[];
  oneOf?: Js[];
  not?: unknown;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minItems?: number;
  maxItems?: number;
}

const jsonSchema = (s: z.ZodType): Js => z.toJSONSchema(s, { io: "input", unrepresentable: "any" }) as Js;

/**
 * A "valid-ish" value for a JSON schema generated from the API's zod schema. `ov` overrides by path
 * ("id", "instances[].url", …) with pools, so requests hit existing resources and collide.
 */
function fromSchema(s: Js, path: string, ov: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<unknown> {
  const o = ov[path];
  if (o) return o;
  const alts = s.anyOf ?? s.oneOf;
  if (alts) return fc.oneof(...alts.map((a) => fromSchema(a, path, ov)));
  if (s.enum) return fc.constantFrom(...s.enum);
  if (s.const !== undefined) return fc.constant(s.const);
  switch (s.type) {
    case "object": {
      const rec: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [k, v] of Object.entries(s.properties ?? {})) {
        if (v.not !== undefined) continue; // z.never(): never valid
        rec[k] = fromSchema(v, path === "" ? k : `${path}.${k}`, ov);
      }
      return fc.record(rec, { requiredKeys: (s.required ?? []).filter((k) => k in rec) });
    }
    case "array": {
      const min = s.minItems ?? 0;
      const item = fromSchema(s.items ?? {}, `${path}[]`, ov);
      return fc.array(item, { minLength: min, maxLength: Math.min(s.maxItems ?? 3, Math.max(min, 3)) });
    }
    case "string": {
      const min = s.minLength ?? 0;
      const max = s.maxLength ?? 64;
      const base = s.pattern
        ? fc.stringMatching(new RegExp(s.pattern)).map((x) => x.slice(0, max))
        : fc.oneof({ weight: 4, arbitrary: fc.string({ minLength: min, maxLength: Math.min(max, 24) }) }, { weight: 1, arbitrary: fc.string({ unit: "grapheme", minLength: min, maxLength: Math.min(max, 12) }) });
      return base.filter((x) => x.length >= min);
    }
    case "integer": {
      const min = s.minimum ?? -(2 ** 31);
      const max = s.maximum ?? 2 ** 31;
      return fc.oneof({ weight: 4, arbitrary: fc.integer({ min, max }) }, { weight: 1, arbitrary: fc.constantFrom(min, max) });
    }
    case "number": {
      const min = s.minimum ?? s.exclusiveMinimum ?? -1e9;
      const max = s.maximum ?? 1e9;
      return fc.oneof(
        { weight: 3, arbitrary: fc.double({ min, max, noNaN: true, noDefaultInfinity: true }) },
        { weight: 1, arbitrary: fc.integer({ min: Math.ceil(min), max: Math.floor(max) }) },
        { weight: 1, arbitrary: fc.constantFrom(min, max) },
      );
    }
    case "boolean":
      return fc.boolean();
    case "null":
      return fc.constant(null);
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

const deepArray = (n: number) => new RawJson("[".repeat(n) + "]".repeat(n));
const deepObject = (n: number) => new RawJson('{"a":'.repeat(n) + "1" + "}".repeat(n));

const BOUNDARY_NUMBERS = [0, -0, -1, 1, 0.05, 0.049, 0.5, 1.5, 2, 100, 101, 255, 256, 600, 601, 1000, 1001, 1024, 1025, 3600, 3601, 10_000, 10_001, 1e6, 1e6 + 1, 1e8, 1e8 + 1, 2 ** 31, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e308, -1e308, 5e-324, 1e-7];
const BAD_STRINGS = [
  "", " ", "null", "0", "1e3", "true", "ROUND_ROBIN", "round_robin ", "random", "least_request", "Panic", "FAIL", "completion", "__proto__", "constructor",
  "../../etc/passwd", "%00", "\u0000", "\ud800", "\udfff\ud800", "\u202e", "é", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "😀".repeat(70), "a".repeat(129), "b".repeat(257), "<script>", "' OR 1=1 --", "${jndi:ldap://x}",
  "\r\nX-Injected: 1", "line\nbreak", "tab\there", "/health?x=1", "/health#f", "health", "//", "/ space",
];
const BAD_URLS = [
  "ftp://127.0.0.1/v1", "not a url", "http://user:pw@127.0.0.1/v1", "http://:pw@127.0.0.1/v1", "http://127.0.0.1/v1?x=1", "http://127.0.0.1/v1#f", "http://127.0.0.1/v1?", "",
  "http://", "http:///v1", "http://127.0.0.1:99999/v1", "http://127.0.0.1:-1/v1", "http://[::1/v1", "http://127.0.0.1/ v1", "javascript:alert(1)", "file:///etc/passwd",
  "data:text/plain,hi", "//127.0.0.1/v1", "127.0.0.1:8000/v1", "http://127.0.0.1/v1/../..", "http://127.0.0.1/%zz", "http://127.0.0.1/v1 /x", "http://[fe80::1%25eth0]:8000/v1",
  "unix:///var/run/x.sock", "gopher://127.0.0.1/", "ws://127.0.0.1/v1", `http://${"a".repeat(2100)}/v1`, "http://exa mple.com/v1", "http://ex\u0000ample.com/v1", "http://ñ.fz.test/v1",
];

/** Values to put where something else belongs. */
const weirdValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 4, arbitrary: fc.constantFrom(...BOUNDARY_NUMBERS) },
  { weight: 1, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }) },
  { weight: 4, arbitrary: fc.constantFrom(...BAD_STRINGS) },
  { weight: 2, arbitrary: fc.constantFrom(...BAD_URLS) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.integer({ min: 300, max: 150_000 }).map((n) => "x".repeat(n)) },
  { weight: 1, arbitrary: fc.integer({ min: 50, max: 40_000 }).map((n) => "é😀".repeat(n)) },
  { weight: 1, arbitrary: fc.constantFrom([], {}, [null], [1, "a", {}], { a: { b: { c: [] } } }) },
  { weight: 1, arbitrary: fc.integer({ min: 10, max: 60_000 }).map(deepArray) },
  { weight: 1, arbitrary: fc.integer({ min: 10, max: 20_000 }).map(deepObject) },
  { weight: 1, arbitrary: fc.constantFrom(new RawJson('{"__proto__":{"polluted":true}}'), new RawJson('{"constructor":{"prototype":{"polluted":true}}}'), new RawJson("1e400"), new RawJson("-0.0e-0"), new RawJson("123456789012345678901234567890")) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);

const EXTRA_KEYS = ["extra", "__proto__", "constructor", "prototype", "url", "api_key", "revision", "state", "address", "has_api_key", "id", "instances", "", " ", "é", "a.b", "0", "toString", "hasOwnProperty"];

type Mutation =
  | { op: "none" }
  | { op: "set"; at: number; value: unknown }
  | { op: "delete"; at: number }
  | { op: "extra"; at: number; key: string; value: unknown }
  | { op: "dup"; at: number }
  | { op: "whole"; value: unknown }
  | { op: "text"; kind: number; at: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 30, arbitrary: fc.constant({ op: "none" as const }) },
  { weight: 28, arbitrary: fc.record({ op: fc.constant("set" as const), at: fc.nat(), value: weirdValue }) },
  { weight: 8, arbitrary: fc.record({ op: fc.constant("delete" as const), at: fc.nat() }) },
  { weight: 8, arbitrary: fc.record({ op: fc.constant("extra" as const), at: fc.nat(), key: fc.oneof(fc.constantFrom(...EXTRA_KEYS), fc.string({ maxLength: 10 })), value: weirdValue }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant("dup" as const), at: fc.nat() }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant("whole" as const), value: weirdValue }) },
  { weight: 17, arbitrary: fc.record({ op: fc.constant("text" as const), kind: fc.nat(15), at: fc.nat() }) },
);

type PathStep = string | number;

function nodes(v: unknown, at: PathStep[] = [], out: { path: PathStep[]; value: unknown }[] = []): { path: PathStep[]; value: unknown }[] {
  out.push({ path: at, value: v });
  if (v instanceof RawJson) return out;
  if (Array.isArray(v)) v.forEach((x, i) => nodes(x, [...at, i], out));
  else if (v !== null && typeof v === "object") for (const k of Object.keys(v)) nodes((v as Record<string, unknown>)[k], [...at, k], out);
  return out;
}

function setAt(root: unknown, path: PathStep[], value: unknown): unknown {
  if (path.length === 0) return value;
  let cur = root as Record<string | number, unknown>;
  for (const step of path.slice(0, -1)) cur = cur[step] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (Array.isArray(cur)) cur[last as number] = value;
  else defineKey(cur as Record<string, unknown>, String(last), value);
  return root;
}

function deleteAt(root: unknown, path: PathStep[]): unknown {
  if (path.length === 0) return undefined;
  let cur = root as Record<string | number, unknown>;
  for (const step of path.slice(0, -1)) cur = cur[step] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (Array.isArray(cur)) cur.splice(last as number, 1);
  else delete cur[last];
  return root;
}

function textMutation(text: string, kind: number, at: number): string {
  const i = text.length === 0 ? 0 : at % text.length;
  switch (kind) {
    case 0: return text.slice(0, i); // truncated
    case 1: return text.replace(/}$/, ",}"); // trailing comma
    case 2: return "\ufeff" + text; // BOM
    case 3: return text + "garbage";
    case 4: return text.replace(/^\{/, '{"name":"a","name":"b",'); // duplicate keys
    case 5: return text.replace(/"/g, "'");
    case 6: return "";
    case 7: return " \n\t ";
    case 8: return ["null", "true", "1", '"a string"', "[]", "{}", "NaN", "Infinity", "undefined", "{a:1}"][at % 10]!;
    case 9: return text.slice(0, i) + "\u0000" + text.slice(i);
    case 10: return text.slice(0, i) + "\\" + text.slice(i);
    case 11: return text.replace(/^\{/, '{"__proto__":{"polluted":true},');
    case 12: return "[".repeat(1_000 + (at % 60_000)) + "]".repeat(1_000 + (at % 60_000));
    case 13: return text + "/* comment */";
    case 14: return text.slice(0, i) + "\ud83d" + text.slice(i); // lone surrogate (as U+FFFD on the wire)
    default: return text.replace(/\d/g, "9".repeat(400));
  }
}

/** The body text: a valid-ish value, mutated. */
function render(value: unknown, m: Mutation): string {
  let v = clone(value);
  switch (m.op) {
    case "none":
    case "text":
      break;
    case "whole":
      v = m.value;
      break;
    case "set":
    case "delete": {
      const all = nodes(v).filter((n) => n.path.length > 0);
      const n = all.length === 0 ? undefined : all[m.at % all.length];
      if (n) v = m.op === "set" ? setAt(v, n.path, clone(m.value)) : deleteAt(v, n.path);
      break;
    }
    case "extra": {
      const objs = nodes(v).filter((n) => n.value !== null && typeof n.value === "object" && !Array.isArray(n.value) && !(n.value instanceof RawJson));
      const n = objs.length === 0 ? undefined : objs[m.at % objs.length];
      if (n) defineKey(n.value as Record<string, unknown>, m.key, clone(m.value));
      break;
    }
    case "dup": {
      const arrs = nodes(v).filter((n) => Array.isArray(n.value) && (n.value as unknown[]).length > 0);
      const n = arrs.length === 0 ? undefined : arrs[m.at % arrs.length];
      if (n) (n.value as unknown[]).push(clone((n.value as unknown[])[0]));
      break;
    }
  }
  const text = v === undefined ? "" : toJson(v);
  return m.op === "text" ? textMutation(text, m.kind, m.at) : text;
}

// ───────────────────────────── request generators ─────────────────────────────

const pick = <T>(xs: readonly T[]) => fc.constantFrom(...xs);

const ODD_SEGMENTS = [
  "%20", "has%20space", "..", "%2e%2e", ".", "%2F", "a%2Fb", "%00", "%ZZ", "%", "%E0%A4%A", "%C3%A9", "%F0%9F%98%80", "%ED%A0%80", "__proto__", "constructor", "toString", "hasOwnProperty",
  "-bad", ".hidden", "_x", "x".repeat(129), "y".repeat(6_000), "a;b", "a,b", "a:b", "a@b", "*", "%252F", "~", "!$&'()*+,;=", "%7B%7D", "null", "undefined", "0", "é", "ÿ", "%FF", "a+b", "\\",
];

const idSeg = (pool: readonly string[]) =>
  fc.oneof(
    { weight: 10, arbitrary: pick(pool) },
    { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/) },
    { weight: 2, arbitrary: pick(ODD_SEGMENTS) },
  );

const queryArb = fc.oneof(
  { weight: 20, arbitrary: fc.constant("") },
  { weight: 1, arbitrary: pick(["?x=1", "?x=1&x=2", "?__proto__=1", "?a[b]=c", "?%ZZ=1", "?=", "?&&&", "?limit=abc", "?limit=0", "?limit=1", "?limit=201", "?limit=-1", "?limit=1e2", "?limit=1&limit=2", "?wait=abc", "?wait=61", "?wait=-1", "?wait=1.5", "?wait=0", "?wait=", "?wait=1&wait=2"]) },
  { weight: 1, arbitrary: fc.string({ maxLength: 30 }).map((s) => `?q=${encodeURIComponent(s)}`) },
);

const authArb: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 30, arbitrary: fc.constant(`Bearer ${ADMIN}`) },
  { weight: 4, arbitrary: fc.constant(`Bearer ${VIEWER}`) },
  { weight: 4, arbitrary: fc.constant(`Bearer ${PLUGIN}`) },
  { weight: 3, arbitrary: fc.constant(undefined) },
  {
    weight: 4,
    arbitrary: pick([
      "Bearer wrong-token-0000000000000000", `bearer ${ADMIN}`, `BEARER ${ADMIN}`, `Bearer  ${ADMIN}`, `Bearer ${ADMIN} `, `Bearer ${ADMIN}\t`, "Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer ", "",
      `Bearer ${ADMIN}x`, ADMIN, `Bearer ${ADMIN.slice(0, -1)}`, `Bearer ${VIEWER},${ADMIN}`, `Bearer ${ADMIN} ${ADMIN}`, "Bearer " + "a".repeat(5_000), "Bearer ÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿ", `Token ${ADMIN}`,
    ]),
  },
);

const CONTENT_TYPES = [
  "application/json; charset=utf-8", "application/json; charset=UTF-8", "application/json;charset=latin1", "application/json; charset=utf-16", "Application/JSON", "application/merge-patch+json",
  "application/vnd.fz+json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json, text/plain", ";;;", "application/", "*/*", "",
  'application/json; charset="utf-8"', "application/json; foo", "application/json; charset=", "text/json", "application/jsonx",
];
const contentTypeArb: fc.Arbitrary<string | undefined> = fc.oneof({ weight: 14, arbitrary: fc.constant("application/json") }, { weight: 1, arbitrary: fc.constant(undefined) }, { weight: 3, arbitrary: pick(CONTENT_TYPES) });

const HEADER_GARBAGE = ["", " ", "*", '"1"', '"2"', 'W/"1"', '"abc"', "garbage", '"999999999999999999999"', ", , ,", '"1", "2"', '"-1"', '"0"', "\t", "ÿ", "x".repeat(300), '"1"x', "*, \"3\""];

/** Optional extra headers: If-Match, If-None-Match, Idempotency-Key, X-Request-Id, Content-Encoding, Accept, … */
const extraHeadersArb: fc.Arbitrary<Record<string, string | string[]>> = fc
  .record(
    {
      "if-match": pick(HEADER_GARBAGE),
      "if-none-match": pick(HEADER_GARBAGE),
      "idempotency-key": fc.oneof({ weight: 5, arbitrary: pick(IDEM_KEYS) }, { weight: 1, arbitrary: pick(["", " ", "a".repeat(256), "a".repeat(255), "ÿ", "k\tk", "k k"]) }, { weight: 1, arbitrary: fc.stringMatching(/^[\x21-\x7e]{1,40}$/) }),
      "x-request-id": pick(["fz-req-1", "bad id", "x".repeat(65), "é", "../..", "", "a:b.c_d-e"]),
      "content-encoding": pick(["gzip", "identity", "br", "deflate", "x"]),
      accept: pick(["*/*", "text/html", "application/xml", "", "application/json;q=0"]),
      "x-forwarded-for": pick(["169.254.169.254", "10.0.0.1, 127.0.0.1"]),
      "transfer-encoding": pick(["identity", "gzip, chunked"]),
      expect: pick(["100-continue"]),
    },
    { requiredKeys: [] },
  )
  .map((h) => {
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = v;
    // node's client insists on chunked with a custom transfer-encoding; keep that header rare and simple.
    if (out["transfer-encoding"] !== undefined) delete out["transfer-encoding"];
    return out;
  });

const headersArb = (withBody: boolean) =>
  fc.tuple(authArb, withBody ? contentTypeArb : fc.constant(undefined), fc.oneof({ weight: 3, arbitrary: fc.constant({}) }, { weight: 2, arbitrary: extraHeadersArb })).map(([auth, ct, extra]) => {
    const h: Record<string, string | string[]> = { ...extra };
    if (auth !== undefined) h.authorization = auth;
    if (ct !== undefined) h["content-type"] = ct;
    return h;
  });

interface Ctx {
  mockUrl: string;
  mockPort: number;
  closedPort: number;
}

function urlArb(ctx: Ctx): fc.Arbitrary<string> {
  const p = ctx.mockPort;
  const c = ctx.closedPort;
  return fc.oneof(
    { weight: 12, arbitrary: fc.constant(ctx.mockUrl) },
    { weight: 4, arbitrary: fc.constant(`http://127.0.0.1:${c}/v1`) },
    {
      weight: 6,
      arbitrary: pick([
        `http://localhost:${p}/v1`, `http://api.fz.test:${p}/v1`, `http://[::ffff:127.0.0.1]:${p}/v1`, `http://0.0.0.0:${p}/v1`, `http://127.1:${p}/v1`, `http://127.0.0.1:${p}`, `http://127.0.0.1:${p}/v1/`,
        `http://127.0.0.1:${p}/v1//`, `http://127.0.0.1:${p}/%7Efz/v1`, `HTTP://127.0.0.1:${p}/v1`, `https://127.0.0.1:${p}/v1`, `http://[::1]:${c}/v1`, `http://127.0.0.1:${c}`, "http://nx.invalid/v1",
        "http://metadata.fz.test/v1", "http://ll6.fz.test:8000/v1", "http://169.254.169.254/latest", "http://169.254.0.1:8000/v1", "http://[fe80::1]:8000/v1", "http://[fd00:ec2::254]/v1",
        "http://[::ffff:169.254.169.254]/v1", "http://[::ffff:a9fe:a9fe]/v1", "http://2852039166/v1", "http://0xa9.0xfe.0xa9.0xfe/v1", "http://0251.0376.0251.0376/v1", `http://127.0.0.1:0/v1`,
        `http://127.0.0.1:${p}/v1/${"p".repeat(250)}`, `http://127.0.0.1:${p}/a/b/c/d/e/f/v1`,
      ]),
    },
  );
}

const secretArb: fc.Arbitrary<string> = fc
  .oneof(
    { weight: 6, arbitrary: fc.stringMatching(/^[0-9a-f]{16,40}$/) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 20 }) },
    { weight: 1, arbitrary: pick(["\r\nX-Injected: 1", "é", "\u0000", " spaced out ", "\ud800", "tab\t", "x".repeat(4_080), "x".repeat(4_090)]) },
  )
  .map((s) => SECRET_MARK + s);

const modelNameArb = fc.oneof({ weight: 6, arbitrary: pick(MODEL_NAMES) }, { weight: 2, arbitrary: fc.stringMatching(/^[\x21-\x7e]{1,24}$/) }, { weight: 1, arbitrary: pick(MODEL_IDS) });
const modelRefArb = fc.oneof({ weight: 6, arbitrary: pick([...MODEL_NAMES, ...MODEL_IDS]) }, { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 20 }) });

interface Built {
  body: fc.Arbitrary<string>;
}

function bodies(ctx: Ctx) {
  const url = urlArb(ctx);
  const health = {
    "health_check.path": fc.oneof(
      { weight: 6, arbitrary: fc.constant("/health") },
      { weight: 2, arbitrary: fc.stringMatching(/^\/[^\s?#]{0,20}$/) },
      { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 8 }).map((x) => `/${x}`) },
    ),
  };
  const b = (schema: z.ZodType, ov: Record<string, fc.Arbitrary<unknown>>): Built => ({
    body: fc.tuple(fromSchema(jsonSchema(schema), "", ov), mutation).map(([v, m]) => render(v, m)),
  });
  return {
    modelCreate: b(ModelCreate, {
      id: fc.oneof({ weight: 5, arbitrary: pick(MODEL_IDS) }, { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,30}$/) }),
      name: modelNameArb,
      "aliases[]": modelNameArb,
      served_name: fc.oneof({ weight: 6, arbitrary: fc.constant(SERVED) }, { weight: 1, arbitrary: fc.stringMatching(/^[^\s]{1,20}$/) }),
    }),
    modelUpdate: b(ModelUpdate, { name: modelNameArb, "aliases[]": modelNameArb, served_name: fc.oneof(fc.constant(SERVED), fc.constant(null), fc.stringMatching(/^[^\s]{1,20}$/)) }),
    deploymentCreate: b(DeploymentCreate, {
      id: pick(DEP_IDS),
      model: modelRefArb,
      "instances[].id": pick(INST_IDS),
      "instances[].url": url,
      "instances[].api_key": secretArb,
      ...health,
    }),
    deploymentUpdate: b(DeploymentUpdate, health),
    instanceCreate: b(InstanceAdd, { id: fc.oneof(pick(INST_IDS), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,30}$/)), url, api_key: secretArb }),
    instanceUpdate: b(InstanceUpdate, { api_key: fc.oneof(secretArb, fc.constant(null)) }),
    migrationCreate: b(MigrationCreate, { instance_id: pick(INST_IDS), new_instance_id: fc.oneof(pick(INST_IDS), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,30}$/)), url, api_key: fc.oneof(secretArb, fc.constant(null)) }),
    telemetry: b(TelemetryBatch, {
      source: pick(["fz-envoy-1", "fz-envoy-2"]),
      seq: fc.oneof(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })),
      "instances[].deployment": pick(DEP_IDS),
      "instances[].instance": pick(INST_IDS),
      "instances[].address": pick([`127.0.0.1:${ctx.mockPort}`, "10.0.0.1:8000", "[::1]:80", "999.0.0.1:1", "127.0.0.1:0", "host:80"]),
    }),
    discovery: b(DiscoveryRequest, {}),
  };
}

function withBody(label: string, method: string, pathArb: fc.Arbitrary<string>, body: fc.Arbitrary<string>): fc.Arbitrary<Req> {
  return fc
    .tuple(pathArb, queryArb, headersArb(true), fc.oneof({ weight: 12, arbitrary: body.map((x): string | undefined => x) }, { weight: 1, arbitrary: fc.constant(undefined) }), fc.boolean())
    .map(([p, q, headers, b, chunked]) => ({ label: q === "" ? label : null, method, path: p + q, headers, body: b, chunked: chunked && b !== undefined && b.length > 0 && b.length % 7 === 0 }));
}

function noBody(label: string, method: string, pathArb: fc.Arbitrary<string>): fc.Arbitrary<Req> {
  return fc.tuple(pathArb, queryArb, headersArb(false)).map(([p, q, headers]) => ({ label: q === "" || label === "events" || label === "table" ? label : null, method, path: p + q, headers }));
}

function schemaAware(ctx: Ctx): fc.Arbitrary<Req> {
  const B = bodies(ctx);
  const m = idSeg(MODEL_IDS);
  const d = idSeg(DEP_IDS);
  const i = idSeg(INST_IDS);
  const mig = idSeg(["mig-x", "mig-00000000"]);
  const P = (f: (...xs: string[]) => string, ...segs: fc.Arbitrary<string>[]) => fc.tuple(...segs).map((xs) => f(...xs));
  const tableQuery = pick(["", "", "?wait=0", "?wait=1", "?wait=abc", "?wait=61", "?wait=-1"]);
  return fc.oneof(
    { weight: 8, arbitrary: withBody("models.create", "POST", fc.constant("/v1/models"), B.modelCreate.body) },
    { weight: 2, arbitrary: noBody("models.list", "GET", fc.constant("/v1/models")) },
    { weight: 3, arbitrary: noBody("models.get", "GET", P((x) => `/v1/models/${x}`, m)) },
    { weight: 5, arbitrary: withBody("models.patch", "PATCH", P((x) => `/v1/models/${x}`, m), B.modelUpdate.body) },
    { weight: 3, arbitrary: noBody("models.delete", "DELETE", P((x) => `/v1/models/${x}`, m)) },
    { weight: 8, arbitrary: withBody("deployments.create", "POST", fc.constant("/v1/deployments"), B.deploymentCreate.body) },
    { weight: 2, arbitrary: noBody("deployments.list", "GET", fc.constant("/v1/deployments")) },
    { weight: 3, arbitrary: noBody("deployments.get", "GET", P((x) => `/v1/deployments/${x}`, d)) },
    { weight: 5, arbitrary: withBody("deployments.patch", "PATCH", P((x) => `/v1/deployments/${x}`, d), B.deploymentUpdate.body) },
    { weight: 2, arbitrary: noBody("deployments.delete", "DELETE", P((x) => `/v1/deployments/${x}`, d)) },
    { weight: 6, arbitrary: withBody("instances.create", "POST", P((x) => `/v1/deployments/${x}/instances`, d), B.instanceCreate.body) },
    { weight: 3, arbitrary: noBody("instances.get", "GET", P((x, y) => `/v1/deployments/${x}/instances/${y}`, d, i)) },
    { weight: 5, arbitrary: withBody("instances.patch", "PATCH", P((x, y) => `/v1/deployments/${x}/instances/${y}`, d, i), B.instanceUpdate.body) },
    { weight: 3, arbitrary: noBody("instances.delete", "DELETE", P((x, y) => `/v1/deployments/${x}/instances/${y}`, d, i)) },
    { weight: 2, arbitrary: noBody("instances.test", "POST", P((x, y) => `/v1/deployments/${x}/instances/${y}/test`, d, i)) },
    { weight: 2, arbitrary: noBody("events", "GET", P((x, y) => `/v1/deployments/${x}/instances/${y}/events`, d, i)) },
    { weight: 4, arbitrary: withBody("migrations.create", "POST", P((x) => `/v1/deployments/${x}/migrations`, d), B.migrationCreate.body) },
    { weight: 1, arbitrary: noBody("migrations.list", "GET", P((x) => `/v1/deployments/${x}/migrations`, d)) },
    { weight: 1, arbitrary: noBody("migrations.get", "GET", P((x, y) => `/v1/deployments/${x}/migrations/${y}`, d, mig)) },
    { weight: 1, arbitrary: noBody("migrations.cancel", "POST", P((x, y) => `/v1/deployments/${x}/migrations/${y}/cancel`, d, mig)) },
    { weight: 3, arbitrary: noBody("table", "GET", tableQuery.map((q) => `/v1/routing-table${q}`)) },
    { weight: 3, arbitrary: withBody("telemetry", "POST", fc.constant("/v1/telemetry"), B.telemetry.body) },
    { weight: 2, arbitrary: withBody("xds", "POST", pick(["/v3/discovery:clusters", "/v3/discovery:endpoints", "/v3/discovery%3Aclusters"]), B.discovery.body) },
  );
}

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "PROPFIND", "PURGE", "SEARCH", "LINK", "MKCOL", "TRACE", "COPY", "LOCK", "REPORT", "QUERY"];
const PATHS = [
  "/", "/v1", "/v1/", "//v1/models", "/v1/models/", "/V1/MODELS", "/v1/Models", "/v1/models//", "/v1/deployments/fz-d0/", "/v1/deployments/fz-d0/instances/", "/v1/deployments/fz-d0/instances/i0/test/",
  "/v1/routing-table/", "/v1/routing-table/x", "/healthz", "/healthz/", "/openapi.json", "/metrics", "/v3/discovery:clusters", "/v3/discovery:listeners", "/v3/discovery:", "/.well-known/x",
  "/v1/models/%", "/v1/models/a%2Fb", "/v1/%2e%2e/v1/models", "/v1/models/..%2f..%2f", "/v2/models", "/v1/telemetry", "/v1/deployments/fz-d0/migrations/", "/favicon.ico", "/v1/models?%",
  "/v1/models/fz-m0?x=1#frag", "/%", "/%%", "/\\", "/v1/deployments/" + "z".repeat(7_000), "/v1/" + "a/".repeat(1_000), "/v1/models/é", "/v1/models/%C0%AF", "/v1/models/%EF%BF%BF",
  "/v1/models;jsessionid=1", "/v1/deployments/fz-d0/instances/i0/events?limit=9999", "/v1/deployments/fz-d0/instances/i0/events?limit=", "*",
];
const GARBAGE_BODIES = [
  "", "{", "}", "{}", "[]", "null", "0", '"x"', "{'a':1}", '{"a":1,}', '{"a":NaN}', "\u0000\u0001\u0002", "\ufeff{}", '{"name":"x"}garbage', "name=x&y=1", "<xml/>", "---\na: 1\n", '{"a":"\\ud800"}',
  '{"a":"\\u0000"}', '{"a":1e999}', '{"__proto__":{"admin":true}}', '{"a":' + "1".repeat(5_000) + "}", '{"name":"' + "n".repeat(200_000) + '"}',
];

function rawGarbage(): fc.Arbitrary<Req> {
  return fc
    .tuple(
      pick(METHODS),
      fc.oneof({ weight: 4, arbitrary: pick(PATHS) }, { weight: 1, arbitrary: fc.string({ unit: "grapheme-ascii", maxLength: 40 }).map((s) => "/" + encodeURIComponent(s).replace(/%2F/g, "/")) }),
      headersArb(true),
      fc.oneof(
        { weight: 3, arbitrary: fc.constant(undefined) },
        { weight: 3, arbitrary: pick(GARBAGE_BODIES) },
        { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 200 }) },
        { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 300_000 }).map((n) => JSON.stringify({ name: "x", display_name: "y".repeat(n) })) },
        { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)) },
      ),
    )
    .map(([method, path, headers, body]) => ({ label: null, method, path, headers, body: body === undefined || method === "TRACE" ? undefined : body }));
}

/** Protocol-level garbage the node:http client would not send. */
function rawSocket(): fc.Arbitrary<RawReq> {
  return fc.oneof(pick(RAW_CASES), fc.uint8Array({ minLength: 1, maxLength: 200 }).map((b) => ({ what: "random bytes", bytes: Buffer.from(b), mayNotAnswer: true })));
}

const RAW_CASES: RawReq[] = (() => {
  const H = `Host: 127.0.0.1\r\nAuthorization: Bearer ${ADMIN}\r\n`;
  return [
    { what: "unknown method", bytes: Buffer.from(`FOO /v1/models HTTP/1.1\r\n${H}\r\n`) },
    { what: "lowercase method", bytes: Buffer.from(`get /v1/models HTTP/1.1\r\n${H}\r\n`) },
    { what: "bad version", bytes: Buffer.from(`GET /v1/models HTTP/9.9\r\n${H}\r\n`) },
    { what: "no version", bytes: Buffer.from(`GET /v1/models\r\n${H}\r\n`), mayNotAnswer: true },
    { what: "HTTP/1.0 without host", bytes: Buffer.from(`GET /v1/models HTTP/1.0\r\nAuthorization: Bearer ${ADMIN}\r\n\r\n`) },
    { what: "HTTP/1.1 without host", bytes: Buffer.from(`GET /v1/models HTTP/1.1\r\nAuthorization: Bearer ${ADMIN}\r\n\r\n`) },
    { what: "space in path", bytes: Buffer.from(`GET /v1/mod els HTTP/1.1\r\n${H}\r\n`) },
    { what: "NUL in path", bytes: Buffer.from(`GET /v1/models\u0000 HTTP/1.1\r\n${H}\r\n`) },
    { what: "DEL in path", bytes: Buffer.from(`GET /v1/\u007f HTTP/1.1\r\n${H}\r\n`) },
    { what: "raw UTF-8 in path", bytes: Buffer.concat([Buffer.from("GET /v1/models/"), Buffer.from("é😀", "utf8"), Buffer.from(` HTTP/1.1\r\n${H}\r\n`)]) },
    { what: "absolute-form target", bytes: Buffer.from(`GET http://evil.example/v1/models HTTP/1.1\r\n${H}\r\n`) },
    { what: "asterisk-form", bytes: Buffer.from(`OPTIONS * HTTP/1.1\r\n${H}\r\n`) },
    { what: "header without colon", bytes: Buffer.from(`GET /v1/models HTTP/1.1\r\n${H}Broken header\r\n\r\n`) },
    { what: "space in header name", bytes: Buffer.from(`GET /v1/models HTTP/1.1\r\n${H}Bad Name: x\r\n\r\n`) },
    { what: "obs-fold", bytes: Buffer.from(`GET /v1/models HTTP/1.1\r\n${H}X-Fold: a\r\n b\r\n\r\n`) },
    { what: "NUL in header value", bytes: Buffer.from(`GET /v1/models HTTP/1.1\r\n${H}X-A: a\u0000b\r\n\r\n`) },
    { what: "UTF-8 token", bytes: Buffer.concat([Buffer.from("GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "), Buffer.from("tökén-é😀-0123456789", "utf8"), Buffer.from("\r\n\r\n")]) },
    { what: "latin1 bytes in If-Match", bytes: Buffer.concat([Buffer.from(`DELETE /v1/models/fz-m0 HTTP/1.1\r\n${H}If-Match: `), Buffer.from([0xff, 0xfe, 0x80]), Buffer.from("\r\n\r\n")]) },
    { what: "content-length not a number", bytes: Buffer.from(`POST /v1/models HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: abc\r\n\r\n{}`) },
    { what: "negative content-length", bytes: Buffer.from(`POST /v1/models HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: -1\r\n\r\n{}`) },
    { what: "two content-lengths", bytes: Buffer.from(`POST /v1/models HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}`) },
    { what: "content-length and chunked", bytes: Buffer.from(`POST /v1/models HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`) },
    { what: "bad chunk size", bytes: Buffer.from(`POST /v1/models HTTP/1.1\r\n${H}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`) },
    { what: "chunked, valid", bytes: Buffer.from(`POST /v1/models HTTP/1.1\r\n${H}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n{"nam\r\n4\r\ne":1\r\n1\r\n}\r\n0\r\n\r\n`) },
    { what: "body longer than content-length", bytes: Buffer.from(`POST /v1/models HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}GARBAGE / HTTP/1.1\r\n\r\n`) },
    { what: "body shorter than content-length", bytes: Buffer.from(`POST /v1/models HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{}`), mayNotAnswer: true },
    // body-parser reads off an over-limit body before answering 413: announced but never sent = no answer.
    { what: "content-length over the limit, body not sent", bytes: Buffer.from(`POST /v1/models HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 999999999\r\nConnection: close\r\n\r\n{}`), mayNotAnswer: true },
    { what: "body over the limit", bytes: Buffer.from(`POST /v1/models HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: ${BODY_LIMIT + 10}\r\nConnection: close\r\n\r\n"${"z".repeat(BODY_LIMIT + 8)}"`) },
    { what: "huge header", bytes: Buffer.from(`GET /v1/models HTTP/1.1\r\n${H}X-Big: ${"b".repeat(20_000)}\r\n\r\n`) },
    { what: "huge request line", bytes: Buffer.from(`GET /v1/models/${"m".repeat(20_000)} HTTP/1.1\r\n${H}\r\n`) },
    { what: "many headers", bytes: Buffer.from(`GET /v1/models HTTP/1.1\r\n${H}${Array.from({ length: 2_500 }, (_, k) => `X-H${k}: v\r\n`).join("")}\r\n`) },
    { what: "CONNECT", bytes: Buffer.from(`CONNECT 127.0.0.1:6379 HTTP/1.1\r\n${H}\r\n`), mayNotAnswer: true },
    { what: "TRACE", bytes: Buffer.from(`TRACE /v1/models HTTP/1.1\r\n${H}Connection: close\r\n\r\n`) },
    { what: "pipelined", bytes: Buffer.from(`GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/models HTTP/1.1\r\n${H}Connection: close\r\n\r\n`) },
    { what: "HTTP/2 preface", bytes: Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") },
    { what: "TLS hello", bytes: Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]) },
    { what: "empty lines only (allowed before a request line: the server waits)", bytes: Buffer.from("\r\n\r\n"), mayNotAnswer: true },
    { what: "websocket upgrade", bytes: Buffer.from(`GET /v1/routing-table HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`), mayNotAnswer: true },
    { what: "h2c upgrade", bytes: Buffer.from(`GET /v1/models HTTP/1.1\r\n${H}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`), mayNotAnswer: true },
  ];
})();

// ───────────────────────────── valid sequences ─────────────────────────────

interface SeqSpec {
  aliases: number;
  ref: "id" | "name" | "alias";
  idem: boolean;
  strategy: string;
  health: Record<string, unknown>;
  scaleWeight: number;
  region: string;
  newWeight: number;
  migrate: boolean;
  cancel: boolean;
  /** Offer a's server again as [::ffff:127.0.0.1]:P rather than as given. */
  mappedSpelling: boolean;
}

function seqArb(): fc.Arbitrary<SeqSpec> {
  const hc = jsonSchema(DeploymentCreate).properties!.health_check!;
  return fc.record({
    aliases: fc.integer({ min: 0, max: 3 }),
    ref: fc.constantFrom("id" as const, "name" as const, "alias" as const),
    idem: fc.boolean(),
    strategy: fc.constantFrom("round_robin", "weighted_round_robin", "failover"),
    health: fromSchema(hc, "hc", { "hc.path": fc.constantFrom("/health", "/nope") }) as fc.Arbitrary<Record<string, unknown>>,
    scaleWeight: fc.integer({ min: 1, max: 10_000 }),
    region: fc.string({ maxLength: 64 }),
    newWeight: fc.integer({ min: 1, max: 10_000 }),
    migrate: fc.boolean(),
    cancel: fc.boolean(),
    mappedSpelling: fc.boolean(),
  });
}

type Item = { kind: "req"; req: Req } | { kind: "raw"; raw: RawReq } | { kind: "seq"; seq: SeqSpec };

const short = (s: string, n = 300) => (s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s);

function describeItem(it: Item): string {
  if (it.kind === "req") return `${it.req.method} ${short(it.req.path, 120)} ${short(JSON.stringify(it.req.headers), 200)} body=${it.req.body === undefined ? "-" : short(JSON.stringify(it.req.body), 300)}`;
  if (it.kind === "raw") return `RAW ${it.raw.what}: ${short(JSON.stringify(it.raw.bytes.toString("latin1")), 200)}`;
  return `SEQ ${JSON.stringify(it.seq)}`;
}

/** Compact counterexamples (bodies can be 100s of KiB). */
function withToString(it: Item): Item {
  Object.defineProperty(it, fc.toStringMethod, { value: () => describeItem(it), enumerable: false });
  return it;
}

// ───────────────────────────── checks ─────────────────────────────

const ListOf = (key: string, s: z.ZodType): z.ZodType => z.object({ [key]: z.array(s) });
const TelemetryAck = z.object({ duplicate: z.boolean(), accepted: z.number().int().min(0), ignored: z.number().int().min(0) });

/** The API's own response schemas, by route label and status. */
const RESPONSE_SCHEMAS: Record<string, { status: number[]; schema: z.ZodType | null }> = {
  "models.create": { status: [201], schema: Model },
  "models.list": { status: [200], schema: ListOf("models", Model) },
  "models.get": { status: [200], schema: Model },
  "models.patch": { status: [200], schema: Model },
  "models.delete": { status: [204], schema: null },
  "deployments.create": { status: [201, 202], schema: DeploymentCreated },
  "deployments.list": { status: [200], schema: ListOf("deployments", Deployment) },
  "deployments.get": { status: [200], schema: Deployment },
  "deployments.patch": { status: [200], schema: Deployment },
  "deployments.delete": { status: [204], schema: null },
  "instances.create": { status: [201, 202], schema: InstanceAdded },
  "instances.get": { status: [200], schema: Instance },
  "instances.patch": { status: [200], schema: Deployment },
  "instances.delete": { status: [204], schema: null },
  "instances.test": { status: [200, 202], schema: Deployment },
  events: { status: [200], schema: EventList },
  "migrations.create": { status: [202], schema: Migration },
  "migrations.list": { status: [200], schema: ListOf("migrations", Migration) },
  "migrations.get": { status: [200], schema: Migration },
  "migrations.cancel": { status: [200], schema: Migration },
  table: { status: [200, 304], schema: RoutingTable },
  telemetry: { status: [200], schema: TelemetryAck },
  xds: { status: [200, 304], schema: null },
};

/** Route label → its operation in /openapi.json: every status a route answers must be listed there. */
const OPERATIONS: Record<string, [string, string]> = {
  "models.create": ["post", "/v1/models"],
  "models.list": ["get", "/v1/models"],
  "models.get": ["get", "/v1/models/{id}"],
  "models.patch": ["patch", "/v1/models/{id}"],
  "models.delete": ["delete", "/v1/models/{id}"],
  "deployments.create": ["post", "/v1/deployments"],
  "deployments.list": ["get", "/v1/deployments"],
  "deployments.get": ["get", "/v1/deployments/{id}"],
  "deployments.patch": ["patch", "/v1/deployments/{id}"],
  "deployments.delete": ["delete", "/v1/deployments/{id}"],
  "instances.create": ["post", "/v1/deployments/{id}/instances"],
  "instances.get": ["get", "/v1/deployments/{id}/instances/{instanceId}"],
  "instances.patch": ["patch", "/v1/deployments/{id}/instances/{instanceId}"],
  "instances.delete": ["delete", "/v1/deployments/{id}/instances/{instanceId}"],
  "instances.test": ["post", "/v1/deployments/{id}/instances/{instanceId}/test"],
  events: ["get", "/v1/deployments/{id}/instances/{instanceId}/events"],
  "migrations.create": ["post", "/v1/deployments/{id}/migrations"],
  "migrations.list": ["get", "/v1/deployments/{id}/migrations"],
  "migrations.get": ["get", "/v1/deployments/{id}/migrations/{migrationId}"],
  "migrations.cancel": ["post", "/v1/deployments/{id}/migrations/{migrationId}/cancel"],
  table: ["get", "/v1/routing-table"],
  telemetry: ["post", "/v1/telemetry"],
};
const OPENAPI = openApiDocument() as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };

/** Express routes case-insensitively and ignores a trailing slash: any spelling of the table's path. */
const isTablePath = (path: string) => path.toLowerCase().startsWith("/v1/routing-table");

const stats = { requests: 0, raw: 0, sequences: 0, noAnswer: 0, validated: 0, status: new Map<number, number>(), secretsSent: 0, protocolErrors: new Map<string, number>() };

function hasKeyDeep(v: unknown, key: string, depth = 0): boolean {
  if (depth > 20 || v === null || typeof v !== "object") return false;
  if (Array.isArray(v)) return v.some((x) => hasKeyDeep(x, key, depth + 1));
  return Object.keys(v).some((k) => k === key || hasKeyDeep((v as Record<string, unknown>)[k], key, depth + 1));
}

/** Paths answered without a token whatever the body (public pages; xDS from an allow-listed peer such as this loopback client). */
const TOKENLESS_PATH = /^\/(?:healthz|openapi\.json|ui(?:\/|$)|v3\/discovery|$)/i;
function hasValidToken(headers: Req["headers"]): boolean {
  const a = headers.authorization ?? headers.Authorization;
  const v = Array.isArray(a) ? a : a === undefined ? [] : [a];
  return v.length === 1 && TOKENS.some((t) => new RegExp(`^Bearer +${t}\\s*$`, "i").test(v[0]!));
}

/**
 * Per-response properties; returns the violations. `fromApp`: the request reached the application.
 * `keysAllowed`: the routing table asked for with the plugin's token — the one answer that carries
 * upstream API keys (the data plane sends them upstream).
 */
function checkResponse(method: string, label: string | null, res: Resp, fromApp: boolean, keysAllowed = false): string[] {
  const v: string[] = [];
  stats.status.set(res.status, (stats.status.get(res.status) ?? 0) + 1);
  if (res.status >= 500) v.push(`status ${res.status} (never 5xx): ${short(res.text)}`);
  if (res.status !== 0 && (res.status < 200 || res.status > 499)) v.push(`status ${res.status} outside 2xx–4xx`);
  const headerText = Object.entries(res.headers).map(([k, x]) => `${k}: ${String(x)}`).join("\n");
  const all = headerText + "\n" + res.text;
  if (!keysAllowed && all.includes(SECRET_MARK)) v.push(`an API key appears in the response: ${short(all.slice(Math.max(0, all.indexOf(SECRET_MARK) - 80)), 200)}`);
  for (const t of TOKENS) if (all.includes(t)) v.push("a bearer token appears in the response");
  if (res.status === 0) return v;

  const isJson = /^application\/json/i.test(String(res.headers["content-type"] ?? ""));
  if (!fromApp && !isJson) {
    // Rejected by node's HTTP parser before the application (no JSON body possible there).
    if (res.status < 400) v.push(`protocol garbage answered ${res.status}`);
    return v;
  }
  const rid = res.headers["x-request-id"];
  if (typeof rid !== "string" || rid === "") v.push("no x-request-id on the response");
  const op = label ? OPERATIONS[label] : undefined;
  if (op && !(String(res.status) in (OPENAPI.paths[op[1]]?.[op[0]]?.responses ?? {}))) {
    v.push(`${label} answered ${res.status}, which /openapi.json does not list for ${op[0].toUpperCase()} ${op[1]}: ${short(res.text, 200)}`);
  }
  if (res.status >= 400 && method !== "HEAD") {
    let body: unknown;
    try {
      body = JSON.parse(res.text);
    } catch {
      v.push(`error response is not JSON: ${res.status} ${short(res.text)}`);
      return v;
    }
    const e = ErrorBody.safeParse(body);
    if (!e.success) {
      v.push(`error body does not match {error:{code,message,request_id}}: ${short(res.text)}`);
      return v;
    }
    const err = e.data.error;
    if (STATUS[err.code] !== res.status) v.push(`code ${err.code} answered with ${res.status}, errors.ts says ${STATUS[err.code]}`);
    // An idempotent replay is the first response again, request_id included.
    if (err.request_id !== rid && res.headers["idempotent-replayed"] !== "true") v.push(`request_id ${err.request_id} ≠ x-request-id ${String(rid)}`);
    if (err.message.length === 0) v.push("empty error message");
    if (err.code === "validation_failed" && (!err.issues || err.issues.length === 0 || err.issues.some((i) => i.message.length === 0))) {
      v.push(`400 validation_failed without field-naming issues: ${short(res.text)}`);
    }
  }
  if (res.status >= 200 && res.status < 300 && label && method !== "HEAD") {
    const spec = RESPONSE_SCHEMAS[label];
    if (spec && spec.status.includes(res.status)) {
      if (spec.schema && res.text !== "") {
        let body: unknown;
        try {
          body = JSON.parse(res.text);
        } catch {
          body = undefined;
          v.push(`${label} ${res.status}: body is not JSON`);
        }
        if (body !== undefined) {
          const r = spec.schema.safeParse(body);
          stats.validated++;
          if (!r.success) v.push(`${label} ${res.status}: body fails the response schema: ${short(JSON.stringify(r.error.issues.slice(0, 3)))}`);
          if (hasKeyDeep(body, "api_key")) v.push(`${label}: response carries an api_key field`);
        }
      } else if (spec.schema === null && label.endsWith(".delete") && res.text !== "") v.push(`${label} 204 with a body`);
    } else if (spec) v.push(`${label}: unexpected success status ${res.status}`);
  }
  return v;
}

// ───────────────────────────── the test ─────────────────────────────

describe("control API fuzz (fast-check)", { timeout: 600_000 }, () => {
  let redis: RedisServer;
  let mock: MockOpenAI;
  let mock2: MockOpenAI;
  let c: Replica;
  let rc: Redis;
  let ctx: Ctx;
  const logViolations: string[] = [];
  const errorLogs: string[] = [];
  let seqCounter = 0;
  const startedAt = Date.now();

  before(async () => {
    redis = await withRedis();
    rc = new Redis(redis.url, { lazyConnect: false, maxRetriesPerRequest: 1 });
    mock = await startMockOpenAI({ model: SERVED });
    mock2 = await startMockOpenAI({ model: SERVED });
    const closedPort = await freePort();
    // Hostnames resolve without real DNS: *.fz.test → loopback, a few to link-local (the SSRF guard), the rest fail.
    const lookup = async (host: string): Promise<string> => {
      if (host === "metadata.fz.test") return "169.254.169.254";
      if (host === "ll6.fz.test") return "fe80::1";
      if (host === "localhost" || host.endsWith(".fz.test")) return "127.0.0.1";
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
    };
    c = await startReplica(
      redis.url,
      {
        CREATE_WAIT_MS: "50",
        CONNECTIVITY_TIMEOUT_MS: "1500", // a loaded 2-core CI machine can take far longer than 300 ms to answer a local mock
        PROBE_TICK_MS: "250",
        BODY_LIMIT_BYTES: String(BODY_LIMIT),
        REDIS_COMMAND_TIMEOUT_MS: "5000",
        MIGRATION_HEALTH_DEADLINE_SECONDS: "3",
        LOG_LEVEL: "info",
        REPLICA_ID: "fuzz",
      },
      {
        lookup,
        logSink: (line) => {
          if (line.includes(SECRET_MARK)) logViolations.push(`an API key appears in a log line: ${short(line, 400)}`);
          for (const t of TOKENS) if (line.includes(t)) logViolations.push(`a bearer token appears in a log line: ${short(line, 200)}`);
          if (line.includes('"level":"error"') || line.includes('"level":"warn"')) errorLogs.push(line);
          // Stored state the table or xDS cannot be built from (every Envoy would stop getting updates).
          if (/"msg":"(xds snapshot refused|routing table failed validation|unhandled error)/.test(line)) logViolations.push(`replica: ${short(line, 600)}`);
        },
      },
    );
    port = c.control.port;
    ctx = { mockUrl: mock.url, mockPort: mock.port, closedPort };
    process.stdout.write(`# fuzz seed ${SEED} (FUZZ_SEED to override), ${RUNS} runs × ${BATCH} items, concurrency ${CONCURRENCY}\n`);
  });

  after(async () => {
    agent.destroy();
    await c?.stop();
    await mock?.close();
    await mock2?.close();
    rc?.disconnect();
    await redis?.close();
  });

  const api = async (method: string, path: string, opts: { token?: string | null; body?: unknown; headers?: Record<string, string> } = {}) => {
    const headers: Record<string, string> = { ...opts.headers };
    const token = opts.token === undefined ? ADMIN : opts.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers["content-type"] ??= "application/json";
    }
    const res = await send({ label: null, method, path, headers, body });
    let parsed: any = null; // eslint-disable-line @typescript-eslint/no-explicit-any
    try {
      parsed = res.text === "" ? null : JSON.parse(res.text);
    } catch {
      parsed = null;
    }
    return { ...res, body: parsed };
  };

  /** One valid sequence with strict expectations; each response also gets the generic checks. */
  async function runSequence(spec: SeqSpec, violations: string[]): Promise<void> {
    stats.sequences++;
    const n = ++seqCounter;
    const M = `seq-m${n}`;
    const name = `seq-name-${n}`;
    const aliases = Array.from({ length: spec.aliases }, (_, k) => `seq-alias-${n}-${k}`);
    const D = `seq-d${n}`;
    const key = SECRET_MARK + `seq${n}-0123456789abcdef`;
    stats.secretsSent++;
    let failed = false;
    const call = async (step: string, method: string, path: string, expect: number[], opts: Parameters<typeof api>[2] = {}, label: string | null = null) => {
      const r = await api(method, path, opts);
      stats.requests++;
      violations.push(...checkResponse(method, label, r, true, opts.token === PLUGIN && isTablePath(path)).map((x) => `[seq ${n} ${step}] ${x}`));
      if (!expect.includes(r.status)) {
        violations.push(`[seq ${n} ${step}] ${method} ${path} → ${r.status}, expected ${expect.join("/")}: ${short(r.text)}`);
        failed = true;
      }
      return r;
    };
    const ref = spec.ref === "id" ? M : spec.ref === "alias" && aliases.length > 0 ? aliases[0]! : name;

    const modelBody = { id: M, name, aliases, served_name: SERVED };
    const idem = spec.idem ? { "idempotency-key": `seq-${n}` } : undefined;
    const m1 = await call("model create", "POST", "/v1/models", [201], { body: modelBody, headers: idem }, "models.create");
    if (failed) return;
    if (spec.idem) {
      const again = await call("model create replay", "POST", "/v1/models", [201], { body: modelBody, headers: idem }, "models.create");
      if (again.headers["idempotent-replayed"] !== "true" || JSON.stringify(again.body) !== JSON.stringify(m1.body)) violations.push(`[seq ${n}] idempotent replay differs`);
      const other = await call("model create, key reused", "POST", "/v1/models", [422], { body: { ...modelBody, display_name: "other" }, headers: idem });
      if (other.body?.error?.code !== "idempotency_key_reused") violations.push(`[seq ${n}] key reuse answered ${other.text}`);
    }
    await call("model create duplicate id", "POST", "/v1/models", [409], { body: { id: M, name: `${name}-x` } });
    await call("model create duplicate name", "POST", "/v1/models", [409], { body: { name } });
    if (aliases[0]) await call("model create duplicate alias", "POST", "/v1/models", [409], { body: { name: aliases[0] } });
    if (failed) return;

    const dBody = {
      id: D,
      model: ref,
      strategy: spec.strategy,
      health_check: spec.health,
      instances: [
        { id: "a", url: mock.url, api_key: key, weight: spec.scaleWeight },
        { id: "b", url: `http://127.0.0.1:${ctx.closedPort}/v1` },
      ],
    };
    const created = await call("deployment create", "POST", "/v1/deployments", [201, 202], { body: dBody }, "deployments.create");
    if (failed) return;
    if (created.body?.model_id !== M) violations.push(`[seq ${n}] deployment model_id ${created.body?.model_id} ≠ ${M}`);
    if (created.body?.instances?.find((i: { id: string }) => i.id === "a")?.has_api_key !== true) violations.push(`[seq ${n}] has_api_key not set`);
    await call("deployment create duplicate", "POST", "/v1/deployments", [409], { body: { ...dBody, instances: [] } });

    // Connectivity tests settle: a (the mock) passes, b (closed port) is refused.
    let d: any = null; // eslint-disable-line @typescript-eslint/no-explicit-any
    const settleBy = Date.now() + 5_000;
    for (;;) {
      const g = await call("deployment get", "GET", `/v1/deployments/${D}`, [200], {}, "deployments.get");
      if (failed) return;
      d = g.body;
      if (!d.instances.some((i: { state: string }) => i.state === "pending") || Date.now() > settleBy) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const stateOf = (dep: any, id: string): string | undefined => dep.instances.find((i: { id: string }) => i.id === id)?.state; // eslint-disable-line @typescript-eslint/no-explicit-any
    if (!["active", "ejected"].includes(stateOf(d, "a") ?? "")) violations.push(`[seq ${n}] instance a is ${stateOf(d, "a")} (expected active or ejected): ${short(JSON.stringify(d.instances[0]?.last_check))}`);
    if (stateOf(d, "b") !== "unreachable") violations.push(`[seq ${n}] instance b is ${stateOf(d, "b")} (expected unreachable)`);
    const bCheck = d.instances.find((i: { id: string }) => i.id === "b")?.last_check;
    if (bCheck && bCheck.error?.code !== "refused") violations.push(`[seq ${n}] instance b error ${bCheck.error?.code} (expected refused)`);

    // The table (this replica's, read-your-writes) has the deployment, a but not b, the model's names.
    // (Writes answer once this replica's table has them, bounded to 250 ms: poll a little under load.)
    let t = await call("table", "GET", "/v1/routing-table", [200], { token: PLUGIN }, "table");
    for (const until = Date.now() + 3_000; !failed && t.body?.models?.[name] !== D && Date.now() < until; ) {
      await new Promise((r) => setTimeout(r, 50));
      t = await call("table", "GET", "/v1/routing-table", [200], { token: PLUGIN }, "table");
    }
    const td = t.body?.deployments?.find((x: { id: string }) => x.id === D);
    if (!td) violations.push(`[seq ${n}] deployment missing from the routing table`);
    else {
      const ids = td.instances.map((i: { id: string }) => i.id);
      if (ids.includes("b")) violations.push(`[seq ${n}] unreachable instance b is in the table`);
    }
    for (const nm of [name, ...aliases]) if (t.body?.models?.[nm] !== D) violations.push(`[seq ${n}] table maps ${nm} to ${t.body?.models?.[nm]}`);

    // Scale up, patch with If-Match, stale If-Match → 412, patch the instance.
    // a's server again (the same mock, spelled as given or as an IPv4-mapped IPv6 address): one instance per
    // server in a deployment → 409 duplicate_address, nothing stored, allow_unreachable or not.
    const scBody = { id: "c", url: mock2.url, weight: spec.scaleWeight, region: spec.region, api_key: key };
    const again = spec.mappedSpelling ? `http://[::ffff:127.0.0.1]:${mock.port}/v1` : mock.url;
    const refused = await call("scale up, same server", "POST", `/v1/deployments/${D}/instances`, [409], { body: { ...scBody, url: again, allow_unreachable: spec.migrate } }, "instances.create");
    if (refused.body?.error?.code !== "duplicate_address") violations.push(`[seq ${n}] scale-up on a's server answered ${short(refused.text)}`);
    await call("refused scale-up stored nothing", "GET", `/v1/deployments/${D}/instances/c`, [404]);
    const sc = await call("scale up", "POST", `/v1/deployments/${D}/instances`, [201, 202], { body: scBody }, "instances.create");
    if (sc.body?.has_api_key !== true) violations.push(`[seq ${n}] scaled instance has_api_key ${sc.body?.has_api_key}`);
    await call("scale up duplicate", "POST", `/v1/deployments/${D}/instances`, [409], { body: { id: "c", url: mock2.url } });
    for (const until = Date.now() + 5_000; ; ) {
      const gi = await call("instance get", "GET", `/v1/deployments/${D}/instances/c`, [200], {}, "instances.get");
      if (failed || gi.body.state !== "pending" || Date.now() > until) {
        if (!["active", "ejected"].includes(gi.body?.state)) violations.push(`[seq ${n}] instance c on a second server is ${gi.body?.state} (${gi.body?.last_check?.error?.code}), expected active or ejected`);
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const cur = await call("deployment get", "GET", `/v1/deployments/${D}`, [200], {}, "deployments.get");
    const etag = String(cur.headers.etag ?? "");
    await call("patch with If-Match", "PATCH", `/v1/deployments/${D}`, [200, 412], { body: { strategy: spec.strategy, health_check: { healthy_threshold: 1 } }, headers: { "if-match": etag } }, "deployments.patch");
    await call("patch, stale If-Match", "PATCH", `/v1/deployments/${D}`, [412], { body: { on_unavailable: "panic" }, headers: { "if-match": '"1"' } });
    const ip = await call("patch instance", "PATCH", `/v1/deployments/${D}/instances/c`, [200], { body: { weight: spec.newWeight, api_key: null } }, "instances.patch");
    const pc = ip.body?.instances?.find((i: { id: string }) => i.id === "c");
    if (pc && (pc.weight !== spec.newWeight || pc.has_api_key !== false)) violations.push(`[seq ${n}] instance patch not applied: ${JSON.stringify(pc)}`);
    await call("patch instance url", "PATCH", `/v1/deployments/${D}/instances/c`, [400], { body: { url: mock.url } });
    await call("retest b", "POST", `/v1/deployments/${D}/instances/b/test`, [200, 202], {}, "instances.test");
    if (spec.migrate) {
      const mg = await call("migrate a", "POST", `/v1/deployments/${D}/migrations`, [202, 409], { body: { instance_id: "a", url: mock.url, drain_timeout_seconds: 0 } }, "migrations.create");
      // Cancelled at once it is still testing (200); it may also have switched or ended by then (409).
      if (mg.status === 202 && spec.cancel) await call("cancel migration", "POST", `/v1/deployments/${D}/migrations/${mg.body.id}/cancel`, [200, 409], {}, "migrations.cancel");
    }

    await call("delete deployed model", "DELETE", `/v1/models/${M}`, [409]);
    await call("scale down b", "DELETE", `/v1/deployments/${D}/instances/b`, [204, 409], {}, "instances.delete");
    await call("deployment delete", "DELETE", `/v1/deployments/${D}`, [204], {}, "deployments.delete");
    await call("deployment gone", "GET", `/v1/deployments/${D}`, [404]);
    await call("model delete", "DELETE", `/v1/models/${M}`, [204], {}, "models.delete");
    await call("model gone", "GET", `/v1/models/${M}`, [404]);
  }

  async function runItem(it: Item): Promise<string[]> {
    const v: string[] = [];
    if (it.kind === "seq") {
      await runSequence(it.seq, v);
      return v;
    }
    if (it.kind === "raw") {
      stats.raw++;
      stats.requests++;
      const res = await sendRaw(it.raw);
      const key = `${it.raw.what} → ${res.status || "no answer"}`;
      stats.protocolErrors.set(key, (stats.protocolErrors.get(key) ?? 0) + 1);
      if (res.status === 0) {
        if (!it.raw.mayNotAnswer) v.push(`no answer to raw ${it.raw.what}`);
        return v;
      }
      return checkResponse("RAW", null, res, false).map((x) => `${describeItem(it)} → ${x}`);
    }
    const req = it.req;
    if (req.body !== undefined && req.body.includes(SECRET_MARK)) stats.secretsSent++;
    const res = await send(req);
    if (res.status === -1) return [`generator produced a request node refuses (${res.error}): ${describeItem(it)}`];
    stats.requests++;
    if (res.status === 0) {
      stats.noAnswer++;
      return [`no answer (${res.error}): ${describeItem(it)}`];
    }
    // A request-target with bytes outside printable ASCII is invalid HTTP: node's parser answers it, not the app.
    const fromApp = !/[^\x21-\x7e]/.test(req.path);
    const keysAllowed = req.headers.authorization === `Bearer ${PLUGIN}` && isTablePath(req.path);
    const v2 = checkResponse(req.method, req.label, res, fromApp, keysAllowed);
    // Issue 16 item 2: a body without a valid token is refused before it is read — 401, never a parse error.
    if (fromApp && req.body !== undefined && !["GET", "HEAD"].includes(req.method.toUpperCase()) && !hasValidToken(req.headers) && !TOKENLESS_PATH.test(req.path) && res.status !== 401 && res.status !== 405) {
      v2.push(`a body without a valid token answered ${res.status}, not 401 (it must not be read)`);
    }
    return v2.map((x) => `${describeItem(it)} → ${x}`);
  }

  async function pool<T>(items: T[], n: number, f: (x: T) => Promise<string[]>): Promise<string[]> {
    const out: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: n }, async () => {
        while (next < items.length) {
          const x = items[next++]!;
          out.push(...(await f(x)));
        }
      }),
    );
    return out;
  }

  test(`≥ ${MIN_REQUESTS} generated requests: never 5xx, JSON errors naming fields, no secret in any response`, async () => {
    const itemArb: fc.Arbitrary<Item> = fc
      .oneof(
        { withCrossShrink: true },
        { weight: 4, arbitrary: fc.constant({ label: "healthz", method: "GET", path: "/healthz", headers: {} } as Req).map((req): Item => ({ kind: "req", req })) },
        { weight: 60, arbitrary: schemaAware(ctx).map((req): Item => ({ kind: "req", req })) },
        { weight: 22, arbitrary: rawGarbage().map((req): Item => ({ kind: "req", req })) },
        { weight: 3, arbitrary: rawSocket().map((raw): Item => ({ kind: "raw", raw })) },
        { weight: 2, arbitrary: seqArb().map((seq): Item => ({ kind: "seq", seq })) },
      )
      .map(withToString);

    const t0 = Date.now();
    let lastViolations: string[] = [];
    const prop = fc.asyncProperty(fc.array(itemArb, { minLength: BATCH, maxLength: BATCH }), async (items) => {
      const violations = await pool(items, CONCURRENCY, runItem);
      // The replica survived the batch.
      const h = await send({ label: "healthz", method: "GET", path: "/healthz", headers: {} });
      stats.requests++;
      if (h.status !== 200) violations.push(`/healthz answered ${h.status} after the batch: ${short(h.text)}`);
      // Issue 16 item 1: every write checks the table's limits before it commits, so nothing is ever held back.
      if (JSON.parse(h.text || "{}").table?.held?.length) violations.push(`a deployment is held back from the routing table: ${short(h.text)}`);
      violations.push(...logViolations.splice(0));
      if (violations.length > 0) {
        // Printed at once: the first violation is the one that matters, whatever happens after it.
        if (lastViolations.length === 0) process.stdout.write(`# first failing batch (${violations.length} violation(s)):\n#   ${[...new Set(violations)].slice(0, 20).map((x) => short(x, 600)).join("\n#   ")}\n`);
        lastViolations = violations;
        throw new Error(`${violations.length} violation(s):\n  ${[...new Set(violations)].slice(0, 8).join("\n  ")}`);
      }
    });
    try {
      await fc.assert(prop, { seed: SEED, numRuns: RUNS, path: process.env.FUZZ_PATH, endOnFailure: process.env.FUZZ_SHRINK !== "1" });
    } finally {
      const secs = ((Date.now() - t0) / 1000).toFixed(1);
      const statuses = [...stats.status.entries()].sort((a, b) => a[0] - b[0]).map(([s, k]) => `${s}:${k}`).join(" ");
      process.stdout.write(
        `# fuzz: ${stats.requests} requests (${stats.raw} raw-socket, ${stats.sequences} valid sequences, ${stats.secretsSent} bodies with API keys, ${stats.validated} 2xx bodies schema-checked) in ${secs} s, seed ${SEED}\n# statuses ${statuses}\n`,
      );
      if (process.env.FUZZ_VERBOSE) process.stdout.write(`# protocol garbage: ${JSON.stringify(Object.fromEntries(stats.protocolErrors))}\n`);
      const byMsg = new Map<string, number>();
      for (const l of errorLogs) {
        const j = JSON.parse(l) as { level: string; msg: string; err_message?: string; code?: string; issues?: unknown; message?: string };
        const k = `${j.level} ${j.msg}${j.err_message ? `: ${j.err_message.replace(/seq-d\d+/, "seq-d*").slice(0, 80)}` : ""}${j.code ? ` (${j.code})` : ""}${j.issues ? ` ${JSON.stringify(j.issues).slice(0, 300)}` : ""}${j.message ? ` ${j.message.slice(0, 200)}` : ""}`;
        byMsg.set(k, (byMsg.get(k) ?? 0) + 1);
      }
      if (process.env.FUZZ_VERBOSE) process.stdout.write(`# replica warnings/errors: ${JSON.stringify(Object.fromEntries(byMsg))}\n`);
      else process.stdout.write(`# replica: ${errorLogs.length} warning/error log lines (FUZZ_VERBOSE=1 to list)\n`);
      if (lastViolations.length) process.stdout.write(`# last violations:\n#   ${lastViolations.slice(0, 20).map((x) => short(x, 600)).join("\n#   ")}\n`);
    }
    if (DEFAULT_SIZE) assert.ok(stats.requests >= MIN_REQUESTS, `only ${stats.requests} requests`);
    const unhandled = errorLogs.filter((l) => l.includes("unhandled error"));
    assert.deepEqual(unhandled.map((l) => short(l, 500)), [], "unhandled errors were logged");
  });

  test("after the run: stored state validates and the routing table matches the deployments", async () => {
    // Background work settles: every connectivity test ends within CONNECTIVITY_TIMEOUT_MS × 2.
    let deployments: Deployment[] = [];
    await waitFor(
      async () => {
        const r = await api("GET", "/v1/deployments");
        assert.equal(r.status, 200, r.text);
        deployments = r.body.deployments;
        return deployments.every((d) => d.instances.every((i) => i.state !== "pending"));
      },
      10_000,
      "no instance pending",
      100,
    ).catch((e: Error) => {
      const stuck = deployments.flatMap((d) => d.instances.filter((i) => i.state === "pending").map((i) => `${d.id}/${i.id} ${i.url}`));
      throw new Error(`${e.message}: still pending ${stuck.join(", ")}\n${errorLogs.slice(-5).join("\n")}`);
    });

    // Models: the list and each GET validate with the API's schema; names unique across models.
    const ml = await api("GET", "/v1/models");
    assert.equal(ml.status, 200);
    const models = z.object({ models: z.array(Model) }).parse(ml.body).models;
    const names = new Map<string, string>();
    for (const m of models) {
      const g = await api("GET", `/v1/models/${m.id}`);
      assert.equal(g.status, 200, g.text);
      assert.deepEqual(Model.parse(g.body), m);
      assert.equal(g.headers.etag, `"${m.revision}"`);
      for (const nm of [m.name, ...m.aliases]) {
        assert.ok(!names.has(nm), `name ${nm} used by ${names.get(nm)} and ${m.id}`);
        names.set(nm, m.id);
      }
    }
    const modelIds = new Set(models.map((m) => m.id));

    // Deployments, instances, migrations, events: validate with the API's schemas, ids unique, one per model.
    // A migration still `draining` can finish meanwhile (its old instance and API key removed), so the reads are
    // retried until the deployments are the same (same revisions) before and after them: one consistent snapshot.
    const P = "gw:";
    let deps: Deployment[] = [];
    let modelUse = new Map<string, string>();
    await waitFor(
      async () => {
        const dl = await api("GET", "/v1/deployments");
        assert.equal(dl.status, 200, dl.text);
        deps = z.object({ deployments: z.array(Deployment) }).parse(dl.body).deployments;
        modelUse = new Map<string, string>();
        const unreadable: string[] = [];
        for (const d of deps) {
          assert.ok(!hasKeyDeep(d, "api_key"), `deployment ${d.id} carries an api_key field`);
          const g = await api("GET", `/v1/deployments/${d.id}`);
          assert.equal(g.status, 200, g.text);
          Deployment.parse(g.body);
          assert.ok(modelIds.has(d.model_id), `deployment ${d.id} refers to missing model ${d.model_id}`);
          assert.ok(!modelUse.has(d.model_id), `model ${d.model_id} served by ${modelUse.get(d.model_id)} and ${d.id}`);
          modelUse.set(d.model_id, d.id);
          const iids = d.instances.map((i) => i.id);
          assert.equal(new Set(iids).size, iids.length, `duplicate instance ids in ${d.id}: ${iids.join(",")}`);
          for (const inst of d.instances) {
            const gi = await api("GET", `/v1/deployments/${d.id}/instances/${inst.id}`);
            if (gi.status === 200) Instance.parse(gi.body);
            else unreadable.push(`GET …/instances/${inst.id} of ${d.id}: ${gi.status} ${gi.text}`);
            const ev = await api("GET", `/v1/deployments/${d.id}/instances/${inst.id}/events`);
            if (ev.status === 200) EventList.parse(ev.body);
            else unreadable.push(`GET …/instances/${inst.id}/events of ${d.id}: ${ev.status} ${ev.text}`);
            if (inst.state === "active" || inst.state === "draining" || inst.state === "ejected") assert.ok(inst.address !== null, `${d.id}/${inst.id} is ${inst.state} without an address`);
          }
          const mg = await api("GET", `/v1/deployments/${d.id}/migrations`);
          assert.equal(mg.status, 200, mg.text);
          z.object({ migrations: z.array(Migration) }).parse(mg.body);
        }
        const keyFields = new Set(await rc.hkeys(`${P}instance-api-keys`));
        const again = await api("GET", "/v1/deployments");
        assert.equal(again.status, 200, again.text);
        const revs = (ds: Deployment[]) => JSON.stringify(ds.map((d) => [d.id, d.revision]));
        if (revs(z.object({ deployments: z.array(Deployment) }).parse(again.body).deployments) !== revs(deps)) return false;
        // Nothing changed during the reads: every listed instance must have been readable, every key accounted for.
        assert.deepEqual(unreadable, [], "instances in the list that GET does not find");
        // Redis's API-key index agrees with the documents (no orphaned secrets).
        const withKey = new Set(deps.flatMap((d) => d.instances.filter((i) => i.has_api_key).map((i) => `${d.id}/${i.id}`)));
        assert.deepEqual([...keyFields].sort(), [...withKey].sort(), "stored API keys ≠ instances with has_api_key");
        return true;
      },
      10_000,
      "deployments unchanged while reading their instances and the key index",
      100,
    );

    // Redis indexes agree with the documents: names, model → deployment.
    assert.deepEqual(new Map(Object.entries(await rc.hgetall(`${P}model-names`))), names, "model-names index ≠ the models' names");
    assert.deepEqual(new Map(Object.entries(await rc.hgetall(`${P}model-deployment`))), modelUse, "model-deployment index ≠ the deployments");

    // The routing table: contract 1, and consistent with the deployments (retry while the prober moves things).
    const storedKeys = await rc.hgetall(`${P}instance-api-keys`);
    let lastDiff = "";
    await waitFor(
      async () => {
        const t1 = await api("GET", "/v1/routing-table", { token: PLUGIN });
        const d2 = await api("GET", "/v1/deployments");
        const t2 = await api("GET", "/v1/routing-table", { token: PLUGIN });
        assert.equal(t1.status, 200, t1.text);
        const table = RoutingTable.parse(t1.body);
        if (t2.body?.version !== table.version) return false;
        const now = z.object({ deployments: z.array(Deployment) }).parse(d2.body).deployments;
        const diffs: string[] = [];
        const byId = new Map(table.deployments.map((x) => [x.id, x]));
        if (table.deployments.length !== now.length) diffs.push(`table has ${table.deployments.length} deployments, the API ${now.length}`);
        const mNow = z.object({ models: z.array(Model) }).parse((await api("GET", "/v1/models")).body).models;
        const mById = new Map(mNow.map((m) => [m.id, m]));
        const expectedNames: Record<string, string> = {};
        for (const d of now) {
          const td = byId.get(d.id);
          if (!td) {
            diffs.push(`deployment ${d.id} missing from the table`);
            continue;
          }
          if (td.strategy !== d.strategy || td.on_unavailable !== d.on_unavailable) diffs.push(`${d.id}: strategy/policy differ`);
          // Every instance in the pool (active, draining, ejected) is in the table, nothing else — one per
          // address (Envoy keys hosts by ip:port): of several on one address, an active one.
          const pool = d.instances
            .filter((i) => i.state === "active" || i.state === "draining" || i.state === "ejected")
            .map((i): TableInstance => ({
              id: i.id, address: i.address!, base_path: i.base_path, weight: i.weight, priority: i.priority, region: i.region, state: i.state as TableInstance["state"],
              // The plugin's view carries the upstream key of a keyed instance (and only that view: checked per response).
              ...(i.has_api_key ? { authorization: `Bearer ${storedKeys[`${d.id}/${i.id}`]}` } : {}),
            }));
          const poolById = new Map(pool.map((i) => [i.id, JSON.stringify(i)]));
          for (const ti of td.instances) {
            // `load` is the prober's last scrape (deployments with load_signals), not part of the stored document.
            const { load, ...stored } = ti;
            if (load !== undefined && !d.load_signals) diffs.push(`${d.id}: table instance ${ti.id} has a load without load_signals`);
            if (poolById.get(ti.id) !== JSON.stringify(stored)) diffs.push(`${d.id}: table instance ${JSON.stringify(stored)} is not ${poolById.get(ti.id) ?? "in the pool"}`);
          }
          const tableAddrs = td.instances.map((i) => i.address.toLowerCase());
          if (new Set(tableAddrs).size !== tableAddrs.length) diffs.push(`${d.id}: two table instances on one address: ${tableAddrs.join(", ")}`);
          for (const a of new Set(pool.map((i) => i.address.toLowerCase()))) {
            const kept = td.instances.find((i) => i.address.toLowerCase() === a);
            if (!kept) diffs.push(`${d.id}: pool address ${a} missing from the table`);
            else if (kept.state !== "active" && pool.some((i) => i.address.toLowerCase() === a && i.state === "active")) diffs.push(`${d.id}: ${a} kept ${kept.id} (${kept.state}) over an active instance`);
          }
          const m = mById.get(d.model_id);
          if (m) for (const nm of [m.name, ...m.aliases]) expectedNames[nm] = d.id;
        }
        if (JSON.stringify(Object.entries(table.models).sort()) !== JSON.stringify(Object.entries(expectedNames).sort())) diffs.push(`table models ${JSON.stringify(table.models)} ≠ ${JSON.stringify(expectedNames)}`);
        for (const target of Object.values(table.models)) if (!byId.has(target)) diffs.push(`table maps a name to missing deployment ${target}`);
        // Envoy's clusters (xDS) are built from the same snapshot: same version, one cluster per deployment.
        const cds = await api("POST", "/v3/discovery:clusters", { token: null, body: {} });
        if (cds.status !== 200 || cds.body?.version_info !== String(table.version)) diffs.push(`xDS serves ${cds.status} version ${cds.body?.version_info}, the table is at ${table.version}`);
        else if (cds.body.resources.length !== table.deployments.length) diffs.push(`xDS has ${cds.body.resources.length} clusters for ${table.deployments.length} deployments`);
        lastDiff = diffs.join("\n");
        return diffs.length === 0;
      },
      10_000,
      "a routing table consistent with the deployments",
      200,
    ).catch((e: Error) => {
      throw new Error(`${e.message}:\n${lastDiff}`);
    });

    // The served table carries everything stored: nothing held back, not behind the stored version.
    await waitFor(async () => (await api("GET", "/healthz", { token: null })).body?.status === "ok", 10_000, "/healthz ok", 100).catch(async (e: Error) => {
      throw new Error(`${e.message}: ${(await api("GET", "/healthz", { token: null })).text}`);
    });
    const h = await api("GET", "/healthz", { token: null });
    assert.equal(h.status, 200);
    assert.equal(h.body.table.served_version, h.body.table.stored_version, h.text);
    process.stdout.write(`# final state: ${models.length} models, ${deps.length} deployments, ${deps.reduce((n, d) => n + d.instances.length, 0)} instances; total ${((Date.now() - startedAt) / 1000).toFixed(1)} s\n`);
  });
});
