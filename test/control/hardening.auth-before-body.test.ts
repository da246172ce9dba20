// Issue 16 item 2: request bodies are read only after the token is checked, within a limit per route, and
// bounded in nesting depth.
//   - without a valid token, a request carrying a body gets its 401 before the body is read: the answer
//     arrives while the body is still being sent (here: never finished), and the connection is closed;
//   - a route reads its body after its role check (a viewer's write: 403 unread) and within its own limit
//     (413 naming it, announced lengths refused before reading);
//   - a body nested past MAX_JSON_DEPTH is refused with 400 before it is parsed;
//   - models take 64 KiB, a deployment create up to 1,024 instances with 4 KiB API keys, telemetry the
//     contract's largest batch; xDS and /metrics from loopback still need no token.
// No timings are asserted: "arrives before the body is complete" holds because the rest is never sent (a
// server waiting for it never answers; the helper gives up after a generous bound and the test fails).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createConnection, type Socket } from "node:net";
import { request } from "node:http";
import { LATENCY_BUCKETS_MS, TELEMETRY_LIMITS, TELEMETRY_SCHEMA } from "../../control/contracts/telemetry.js";
import { TABLE_LIMITS } from "../../control/contracts/routing-table.js";
import { BODY_LIMITS, MAX_JSON_DEPTH, nestsDeeperThan } from "../../control/src/http/body.js";
import type { RedisServer } from "../support/redis.js";
import { ADMIN, PLUGIN, VIEWER, registerModel, startReplica, withRedis, type Replica } from "./harness.js";

const NO_ANSWER_MS = 10_000; // a liveness bound only: the answers tested here need no body at all

interface Answer {
  status: number;
  head: string;
  headers: Record<string, string>;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** The server closed the connection after answering. */
  closed: boolean;
}

function parseAnswer(raw: string, closed: boolean): Answer {
  const cut = raw.indexOf("\r\n\r\n");
  assert.ok(cut > 0, `no answer (the server waited for the rest of the body): ${JSON.stringify(raw.slice(0, 200))}`);
  const head = raw.slice(0, cut);
  const headers: Record<string, string> = {};
  for (const line of head.split("\r\n").slice(1)) {
    const i = line.indexOf(":");
    headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  const text = raw.slice(cut + 4);
  let body: unknown = null;
  try {
    body = text === "" ? null : JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: Number(head.split(" ")[1]), head, headers, body, closed };
}

/**
 * Sends a request's head and the first part of its body, and never the rest. Resolves with the answer
 * once the server has closed the connection (or with whatever arrived after NO_ANSWER_MS).
 */
function stalled(url: string, head: string, first: string): Promise<Answer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const sock = createConnection({ host: hostname, port: Number(port) });
    let raw = "";
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(parseAnswerSafe(raw, closed));
    };
    const timer = setTimeout(() => finish(false), NO_ANSWER_MS);
    sock.setEncoding("latin1");
    sock.on("data", (d: string) => (raw += d));
    sock.on("end", () => finish(true));
    sock.on("close", () => finish(true));
    sock.on("error", () => finish(true)); // a reset after the answer: what arrived is kept
    sock.write(head + first);
  });
}

/** parseAnswer, but an empty answer becomes status 0 (asserted by the caller with a clear message). */
function parseAnswerSafe(raw: string, closed: boolean): Answer {
  if (!raw.includes("\r\n\r\n")) return { status: 0, head: raw, headers: {}, body: null, closed };
  return parseAnswer(raw, closed);
}

const headOf = (method: string, path: string, headers: Record<string, string>) =>
  `${method} ${path} HTTP/1.1\r\nhost: test\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("")}\r\n`;

const MiB = 1024 * 1024;
const deep = (n: number) => "[".repeat(n) + "]".repeat(n);

function assertEarly(a: Answer, status: number, code: string, what: string): void {
  assert.notEqual(a.status, 0, `${what}: no answer within ${NO_ANSWER_MS} ms — the server waited for the body it should not read`);
  assert.equal(a.status, status, `${what}: ${a.head}`);
  assert.equal(a.body?.error?.code, code, what);
  assert.ok(a.body.error.request_id, what);
  assert.equal(a.headers.connection, "close", `${what}: the connection is closed rather than the body read`);
  assert.ok(a.closed, `${what}: the server closed the connection`);
}

/** One connection, requests one after the other, each answer read whole (content-length framed). */
class Conn {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  ended = false;
  private constructor(private sock: Socket) {
    sock.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    sock.on("end", () => ((this.ended = true), this.wake()));
    sock.on("error", () => ((this.ended = true), this.wake()));
  }
  static open(url: string): Promise<Conn> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      const s = createConnection({ host: hostname, port: Number(port) }, () => resolve(new Conn(s)));
      s.once("error", reject);
    });
  }
  private wake() {
    for (const w of this.waiters.splice(0)) w();
  }
  async request(bytes: string): Promise<Answer> {
    this.sock.write(bytes);
    for (;;) {
      const cut = this.buf.indexOf("\r\n\r\n");
      if (cut > 0) {
        const head = this.buf.subarray(0, cut).toString("latin1");
        const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (this.buf.length >= cut + 4 + len) {
          const raw = this.buf.subarray(0, cut + 4 + len).toString("utf8");
          this.buf = this.buf.subarray(cut + 4 + len);
          return parseAnswer(raw, false);
        }
      }
      if (this.ended) throw new Error(`connection ended before a whole answer: ${this.buf.toString("latin1").slice(0, 200)}`);
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }
  close() {
    this.sock.destroy();
  }
}

describe("auth before body, per-route body limits, nesting depth (issue 16 item 2)", () => {
  let redis: RedisServer;
  let c: Replica;
  let always: Replica;

  before(async () => {
    redis = await withRedis();
    // Instance hostnames *.big.test do not resolve: a create with allow_unreachable stores them unreachable at once.
    c = await startReplica(redis.url, {}, {
      lookup: async (host) => {
        if (host.endsWith(".big.test")) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
        return "127.0.0.1";
      },
    });
    always = await startReplica(redis.url, { CONTROL_REQUIRE_TOKENS: "always", REDIS_KEY_PREFIX: "gw-always:" });
    await registerModel(c.api, "big-model");
  });
  after(async () => {
    await c.stop();
    await always.stop();
    await redis.close();
  });

  test("without a valid token, a request's body is not awaited: 401 while it is still being sent, connection closed", async () => {
    const json = { "content-type": "application/json" };
    const cases: [string, string, Record<string, string>][] = [
      ["POST", "/v1/models", {}],
      ["PATCH", "/v1/models/any", {}],
      ["POST", "/v1/deployments", {}],
      ["PATCH", "/v1/deployments/any/instances/x", {}],
      ["POST", "/v1/deployments/any/migrations", {}],
      ["POST", "/v1/telemetry", {}],
      ["POST", "/v1/no-such-route", {}],
      ["DELETE", "/v1/models/any", {}],
      ["POST", "/v1/models", { authorization: "Bearer wrong-token-wrong-token" }],
      ["POST", "/v1/models", { authorization: `Basic ${ADMIN}` }],
    ];
    for (const [method, path, extra] of cases) {
      const what = `${method} ${path} ${JSON.stringify(extra)}`;
      // 1 MiB announced, the first KiB of a deeply nested array sent, the rest never.
      const a = await stalled(c.url, headOf(method, path, { ...json, ...extra, "content-length": String(MiB) }), "[".repeat(1024));
      assertEarly(a, 401, "unauthenticated", what);
    }
    // Chunked (no length announced) too, and the token is checked before the content type (401, not 415).
    assertEarly(await stalled(c.url, headOf("POST", "/v1/models", { ...json, "transfer-encoding": "chunked" }), "400\r\n" + "[".repeat(1024)), 401, "unauthenticated", "chunked");
    assertEarly(await stalled(c.url, headOf("POST", "/v1/models", { "content-type": "text/plain", "content-length": String(MiB) }), "x".repeat(1024)), 401, "unauthenticated", "text/plain");
    // With CONTROL_REQUIRE_TOKENS=always, xDS from loopback is like any other route.
    assertEarly(await stalled(always.url, headOf("POST", "/v3/discovery:clusters", { ...json, "content-length": String(MiB) }), "[".repeat(1024)), 401, "unauthenticated", "xDS, tokens always required");
    // The service still answers normally.
    assert.equal((await c.api("GET", "/v1/models", { token: VIEWER })).status, 200);
  });

  test("a valid token still gets the route's checks before its body is read: 403 for the role, 413 over the route's limit", async () => {
    const json = { "content-type": "application/json" };
    assertEarly(await stalled(c.url, headOf("POST", "/v1/models", { ...json, authorization: `Bearer ${VIEWER}`, "content-length": String(MiB) }), "{"), 403, "forbidden", "viewer writes");
    assertEarly(await stalled(c.url, headOf("POST", "/v1/telemetry", { ...json, authorization: `Bearer ${VIEWER}`, "content-length": String(MiB) }), "{"), 403, "forbidden", "viewer sends telemetry");
    assertEarly(await stalled(c.url, headOf("POST", "/v1/deployments", { ...json, authorization: `Bearer ${PLUGIN}`, "content-length": String(MiB) }), "{"), 403, "forbidden", "plugin creates");
    // Announced over the route's limit: refused before reading, naming the limit.
    const big = await stalled(c.url, headOf("POST", "/v1/models", { ...json, authorization: `Bearer ${ADMIN}`, "content-length": String(MiB) }), "{");
    assertEarly(big, 413, "payload_too_large", "model create announcing 1 MiB");
    assert.match(big.body.error.message, new RegExp(`${BODY_LIMITS.model} bytes`));
    // Streamed (chunked) past it: refused once it passes the limit, the rest not read.
    const streamed = await stalled(c.url, headOf("PATCH", "/v1/models/any", { ...json, authorization: `Bearer ${ADMIN}`, "transfer-encoding": "chunked" }), `${(BODY_LIMITS.model + 10).toString(16)}\r\n${'{"name":"' + "x".repeat(BODY_LIMITS.model)}`);
    assertEarly(streamed, 413, "payload_too_large", "model patch streaming past 64 KiB");
    // A public page never reads a body either.
    const page = await stalled(c.url, headOf("GET", "/openapi.json", { ...json, "content-length": String(MiB) }), "[");
    assert.equal(page.status, 200, page.head);
    assert.equal(page.headers.connection, "close");
  });

  test("a small refused body is read off and the connection kept (bounded drain); a complete one is never parsed", async () => {
    const conn = await Conn.open(c.url);
    try {
      const body = '{"name":"nope"}';
      const a = await conn.request(headOf("POST", "/v1/models", { "content-type": "application/json", "content-length": String(body.length) }) + body);
      assert.equal(a.status, 401);
      assert.notEqual(a.headers.connection, "close");
      const b = await conn.request(headOf("GET", "/v1/models", { authorization: `Bearer ${VIEWER}` }));
      assert.equal(b.status, 200, "the same connection serves the next request");
      assert.ok(!b.body.models.some((m: { name: string }) => m.name === "nope"));
    } finally {
      conn.close();
    }
  });

  test("a client sending a whole large body that is not read still reads the whole answer: the close is graceful, never a reset (found by fuzz seed 1254)", async () => {
    const body = JSON.stringify({ name: "x", display_name: "y".repeat(300_000) });
    const send = (method: string, path: string, token: string | null) =>
      new Promise<{ status: number; text: string; connection: string | undefined }>((resolve, reject) => {
        const headers: Record<string, string> = { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) };
        if (token) headers.authorization = `Bearer ${token}`;
        const req = request(`${c.url}${path}`, { method, headers, agent: false }, (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => (text += d));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text, connection: res.headers.connection }));
          res.on("aborted", () => reject(new Error(`${method} ${path}: the answer was cut (${text.length} bytes read)`)));
        });
        // A reset while still writing is what used to happen; the answer must still have been read whole.
        req.on("error", (e) => reject(new Error(`${method} ${path}: ${e.message}`)));
        req.end(body);
      });
    for (let i = 0; i < 15; i++) {
      const page = await send("GET", "/openapi.json", ADMIN);
      assert.equal(page.status, 200);
      assert.equal(page.connection, "close");
      assert.ok(JSON.parse(page.text).openapi, "the whole document arrived");
      const refused = await send("POST", "/v1/models", null);
      assert.equal(refused.status, 401, refused.text);
      assert.equal(JSON.parse(refused.text).error.code, "unauthenticated");
    }
  });

  test("an empty declared body (content-length: 0) without a valid token is 401 too, whatever the route would answer (found by fuzz seed 850)", async () => {
    const conn = await Conn.open(c.url);
    try {
      const wrong = { authorization: "Bearer wrong-token-wrong-token", "content-type": "application/json", "content-length": "0" };
      const cases: [string, string][] = [
        ["OPTIONS", "/v1/routing-table/"], // Express would answer its automatic OPTIONS (200, Allow)
        ["PATCH", "/v1/models/%"], // a path that does not decode would be 400
        ["DELETE", "/v1/models/any"],
        ["POST", "/v1/no-such-route"],
      ];
      for (const [method, path] of cases) {
        for (const headers of [wrong, { "content-length": "0" }]) {
          const a = await conn.request(headOf(method, path, headers));
          assert.equal(a.status, 401, `${method} ${path} ${JSON.stringify(headers)}: ${a.head}`);
          assert.equal(a.body.error.code, "unauthenticated");
        }
      }
      // Without a declared body nothing changes: the automatic OPTIONS answer, and the route's own check.
      assert.equal((await conn.request(headOf("OPTIONS", "/v1/routing-table/", { authorization: "Bearer wrong-token-wrong-token" }))).status, 200);
      // With a valid token an empty body goes on to the route.
      const ok = await conn.request(headOf("DELETE", "/v1/models/no-such-model", { authorization: `Bearer ${ADMIN}`, "content-length": "0" }));
      assert.equal(ok.status, 404, ok.head);
    } finally {
      conn.close();
    }
  });

  test("nesting past the depth limit: 400 naming it, before parsing — for admins, plugins and loopback xDS alike; no 500, the service carries on", async () => {
    const depthError = (r: { status: number; body: any }, what: string) => {
      assert.equal(r.status, 400, `${what}: ${JSON.stringify(r.body)?.slice(0, 300)}`);
      assert.equal(r.body.error.code, "bad_request", what);
      assert.match(r.body.error.message, new RegExp(`${MAX_JSON_DEPTH} levels`), what);
    };
    const post = (path: string, raw: string, token: string | null = ADMIN, headers: Record<string, string> = {}) => c.api("POST", path, { token, raw, headers: { "content-type": "application/json", ...headers } });
    // 100k levels (200 KB) are over the models' 64 KiB: 413; 30k levels (60 KB) are within it: 400.
    const over = await post("/v1/models", deep(100_000));
    assert.equal(over.status, 413, over.text);
    depthError(await post("/v1/models", deep(30_000)), "models, 30k-deep array");
    depthError(await post("/v1/models", `{"name":"deep-model","family":${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}}`, ADMIN, { "idempotency-key": "deep-1" }), "models, 10k-deep object in a field, with an Idempotency-Key");
    depthError(await post("/v1/deployments", deep(100_000)), "deployments, 100k-deep array");
    depthError(await post("/v1/deployments", deep(MiB / 2)), "deployments, a 1 MiB [[[[…");
    depthError(await post("/v1/telemetry", deep(100_000), PLUGIN), "telemetry");
    depthError(await post("/v3/discovery:clusters", deep(100_000), null), "xDS from loopback, no token");
    // Within the limit is fine: brackets inside strings do not count.
    const ok = await post("/v1/models", JSON.stringify({ name: "brackets-model", display_name: "[[[[{{{{".repeat(20) }));
    assert.equal(ok.status, 201, ok.text);
    assert.equal((await c.api("GET", "/openapi.json", { token: null })).status, 200);
    assert.ok(!c.logs.some((l) => l.includes('"unhandled error"')), "no unhandled error logged");
  });

  test("nestsDeeperThan: counts only structure, skips strings and escapes, stops early", () => {
    assert.equal(nestsDeeperThan(deep(64), 64), false);
    assert.equal(nestsDeeperThan(deep(65), 64), true);
    assert.equal(nestsDeeperThan("[".repeat(65), 64), true, "unbalanced text still stops at the limit");
    assert.equal(nestsDeeperThan(`{"a":"${"[".repeat(1000)}"}`, 2), false);
    assert.equal(nestsDeeperThan(`{"a":"\\"[[[[","b":[[1]]}`, 3), false, "an escaped quote does not end the string");
    assert.equal(nestsDeeperThan(`{"a":"\\\\","b":[[[1]]]}`, 3), true, "an escaped backslash before the quote does");
    assert.equal(nestsDeeperThan(`{"a":[{"b":[{}]}]}`, 5), false);
    assert.equal(nestsDeeperThan(`{"a":[{"b":[{}]}]}`, 4), true);
    assert.equal(nestsDeeperThan('"unterminated [[[[', 1), false);
  });

  test("per-route limits: a model over 64 KiB → 413 naming it; a deployment of 1,024 instances with 4 KiB API keys (~5 MB) is created", async () => {
    const tooBig = await c.api("POST", "/v1/models", { body: { name: "m-big", display_name: "d", pad: "x".repeat(BODY_LIMITS.model) } });
    assert.equal(tooBig.status, 413, tooBig.text);
    assert.equal(tooBig.body.error.code, "payload_too_large");
    assert.match(tooBig.body.error.message, /65536 bytes \(64 KiB\)/);
    const patch = await c.api("PATCH", "/v1/models/any", { body: { aliases: Array.from({ length: 300 }, (_, k) => `alias-${k}-${"a".repeat(240)}`) } });
    assert.equal(patch.status, 413, patch.text);

    const n = TABLE_LIMITS.maxInstancesPerDeployment;
    const instances = Array.from({ length: n }, (_, k) => ({
      id: `i${String(k).padStart(4, "0")}-`.padEnd(TABLE_LIMITS.maxIdLength, "x"),
      url: `http://i${k}.big.test:8000/v1/${"p".repeat(240)}`,
      weight: 10_000,
      priority: 255,
      region: "r".repeat(64),
      gpu_count: 1024,
      gpu_memory_gb: 999_999.5,
      api_key: `sk-${k}-`.padEnd(4096, "k"),
    }));
    const body = { id: "big", model: "big-model", strategy: "weighted_round_robin", allow_unreachable: true, instances };
    const bytes = Buffer.byteLength(JSON.stringify(body));
    assert.ok(bytes > 4 * MiB && bytes < BODY_LIMITS.deploymentCreate, `${bytes} bytes`);
    const r = await c.api("POST", "/v1/deployments", { body });
    assert.ok(r.status === 201 || r.status === 202, `${r.status} ${r.text.slice(0, 300)}`);
    assert.equal(r.body.instances.length, n);
    assert.ok(!r.text.includes("kkkkkkkk"), "API keys are never returned");
    // An instance with a 4 KiB key on its own is well within the instance limit.
    const one = await c.api("POST", "/v1/deployments/big/instances", { body: { ...instances[0], id: "extra" } });
    assert.notEqual(one.status, 413, one.text);
  });

  test("telemetry: the contract's largest batch (2,048 instances, longest ids and counts; > 1 MiB) is read and accepted", async () => {
    const max = TELEMETRY_LIMITS.maxCount;
    const batch = {
      schema: TELEMETRY_SCHEMA,
      source: "s".repeat(256),
      seq: Number.MAX_SAFE_INTEGER,
      table_version: Number.MAX_SAFE_INTEGER,
      start_ms: Number.MAX_SAFE_INTEGER,
      end_ms: Number.MAX_SAFE_INTEGER,
      instances: Array.from({ length: TELEMETRY_LIMITS.maxInstancesPerBatch }, (_, k) => ({
        deployment: `d${k}-`.padEnd(TABLE_LIMITS.maxIdLength, "d"),
        instance: `i${k}-`.padEnd(TABLE_LIMITS.maxIdLength, "i"),
        address: "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535",
        requests: max,
        upstream_5xx: max,
        connect_failures: 0,
        latency_ms_buckets: Array.from({ length: LATENCY_BUCKETS_MS.length + 1 }, () => max),
        latency_ms_sum: 1.2345678901234567e21,
      })),
    };
    const bytes = Buffer.byteLength(JSON.stringify(batch));
    assert.ok(bytes > MiB && bytes <= BODY_LIMITS.telemetry, `${bytes} bytes`);
    const r = await c.api("POST", "/v1/telemetry", { token: PLUGIN, body: batch });
    assert.equal(r.status, 200, r.text.slice(0, 300));
    assert.deepEqual(r.body, { duplicate: false, accepted: 0, ignored: TELEMETRY_LIMITS.maxInstancesPerBatch });
  });

  test("loopback peers still need no token for xDS (with a body) and /metrics; xDS bodies have their own limit", async () => {
    const cds = { version_info: "", node: { id: "envoy-1", cluster: "gw" }, resource_names: [], type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster" };
    const x = await c.api("POST", "/v3/discovery:clusters", { token: null, body: cds });
    assert.equal(x.status, 200, x.text);
    const eds = await c.api("POST", "/v3/discovery:endpoints", { token: null, body: { ...cds, type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", resource_names: ["big"] } });
    assert.equal(eds.status, 200, eds.text);
    assert.equal((await c.api("GET", "/metrics", { token: null })).status, 200);
    const over = await c.api("POST", "/v3/discovery:clusters", { token: null, body: { ...cds, node: { id: "x".repeat(BODY_LIMITS.xds) } } });
    assert.equal(over.status, 413, over.text);
    assert.match(over.body.error.message, /1048576 bytes \(1 MiB\)/);
    // A token is still accepted from loopback, and checked: a wrong one is refused before the body is read.
    assert.equal((await c.api("POST", "/v3/discovery:clusters", { token: PLUGIN, body: cds })).status, 200);
    assertEarly(await stalled(c.url, headOf("POST", "/v3/discovery:clusters", { "content-type": "application/json", authorization: "Bearer wrong-token-wrong-token", "content-length": String(MiB) }), "{"), 401, "unauthenticated", "xDS, wrong token");
  });
});
