// GET|HEAD {api_prefix}/models and …/models/{name}: answered by the plugin from the routing table
// (models_endpoint: "local", the default) in OpenAI's list format, or left alone ("passthrough").
import { test } from "node:test";
import assert from "node:assert/strict";
import { deliver, gateway, header, metric, request, stubPluginWasm, table, type Headers, type Host } from "./support.js";

const TABLE = table(5, [
  { id: "llama", instances: [{ id: "l1" }, { id: "l2" }] },
  { id: "qwen", instances: [{ id: "q1", state: "draining" }] },
  { id: "empty", instances: [] },
], { "llama3": "llama", "meta-llama/Llama-3.1-8B": "llama", "qwen2.5": "qwen", "a\"q\\uote": "qwen", "ghost": "empty" });

const model = (id: string, owned_by: string) => ({ id, object: "model", created: 0, owned_by });
const LISTED = [
  model("a\"q\\uote", "qwen"), model("llama3", "llama"), model("meta-llama/Llama-3.1-8B", "llama"), model("qwen2.5", "qwen"),
];

function get(host: Host, path: string, method = "GET", extra: Headers = []) {
  return host.request({
    headers: [[":method", method], [":path", path], [":authority", "gw"], [":scheme", "http"], ...extra],
    response: { status: 200, headers: [["content-type", "application/json"]], body: '{"upstream":true}' },
  });
}

function json(r: ReturnType<typeof get>): any {
  assert.equal(r.outcome, "local_reply", `expected a local reply, got ${r.outcome}`);
  assert.equal(r.localReply!.by, "plugin");
  assert.equal(header(r.localReply!.headers, "content-type"), "application/json");
  return JSON.parse(r.localReply!.bodyText);
}

test("GET {prefix}/models lists every name and alias of a deployment with instances, sorted", async () => {
  const host = await gateway({ table: TABLE });
  const r = get(host, "/v1/models");
  assert.equal(r.localReply?.status, 200);
  assert.deepEqual(json(r), { object: "list", data: LISTED });
  assert.equal(r.upstreamHeaders, null, "no network hop");
  assert.equal(r.foreignCalls.length, 0);
  assert.equal(r.localReply!.details, "gateway_models_list");
  assert.equal(metric(host, "gateway.models_endpoint"), 1);
  assert.equal(metric(host, "gateway.no_model"), 0);
  assert.deepEqual(host.refusals, []);
  // The same bytes every time (built once per table), and on every worker.
  const multi = await gateway({ table: TABLE, workers: 3 });
  multi.advance(2000);
  const bodies = new Set([0, 1, 2].map((w) => multi.request({ worker: w, headers: [[":method", "GET"], [":path", "/v1/models"], [":authority", "gw"]] }).localReply?.bodyText));
  assert.equal(bodies.size, 1);
  assert.equal([...bodies][0], r.localReply!.bodyText);
});

test("query string allowed; HEAD answered like GET (Envoy drops a local reply's body for HEAD)", async () => {
  const host = await gateway({ table: TABLE });
  const q = get(host, "/v1/models?limit=1&x=%2F");
  assert.equal(q.localReply?.status, 200);
  assert.deepEqual(json(q).data, LISTED);
  const h = get(host, "/v1/models", "HEAD");
  assert.equal(h.localReply?.status, 200);
  assert.equal(header(h.localReply!.headers, "content-type"), "application/json");
  assert.equal(get(host, "/v1/models/llama3?x=1", "HEAD").localReply?.status, 200);
});

test("the listing follows the adopted table version", async () => {
  const host = await gateway({ table: TABLE });
  assert.equal(json(get(host, "/v1/models")).data.length, 4);
  deliver(host, table(6, [{ id: "mistral", instances: [{ id: "m1" }] }, { id: "llama", instances: [] }],
    { "mistral-7b": "mistral", "llama3": "llama" }));
  assert.equal(metric(host, "gateway.table.version"), 6);
  assert.deepEqual(json(get(host, "/v1/models")), { object: "list", data: [model("mistral-7b", "mistral")] });
  assert.equal(get(host, "/v1/models/llama3").localReply?.status, 404, "no instance any more");
  deliver(host, table(7, [{ id: "d", instances: [{ id: "i" }] }], {}));
  assert.deepEqual(json(get(host, "/v1/models")), { object: "list", data: [] });
  // A refused document keeps the previous listing.
  deliver(host, '{"schema":1,"version":8,"models":{"x":"nope"},"deployments":[]}');
  assert.deepEqual(json(get(host, "/v1/models")), { object: "list", data: [] });
});

test("GET {prefix}/models/{name}: the model object (aliases, percent-encoded or raw '/')", async () => {
  const host = await gateway({ table: TABLE });
  for (const [path, want] of [
    ["/v1/models/llama3", model("llama3", "llama")],
    ["/v1/models/qwen2.5?x=1", model("qwen2.5", "qwen")],
    ["/v1/models/meta-llama/Llama-3.1-8B", model("meta-llama/Llama-3.1-8B", "llama")],
    ["/v1/models/meta-llama%2fLlama-3.1-8B", model("meta-llama/Llama-3.1-8B", "llama")],
    ["/v1/models/%6c%6C%61ma3", model("llama3", "llama")],
    ["/v1/models/a%22q%5Cuote", model("a\"q\\uote", "qwen")],
  ] as const) {
    const r = get(host, path);
    assert.equal(r.localReply?.status, 200, path);
    assert.deepEqual(json(r), want, path);
    assert.equal(r.localReply!.details, "gateway_model");
  }
  assert.deepEqual(host.refusals, []);
});

function assertNotFound(r: ReturnType<typeof get>, shown: string) {
  assert.equal(r.localReply?.status, 404);
  assert.deepEqual(json(r), { error: { message: `The model \`${shown}\` does not exist`, type: "invalid_request_error", param: "model", code: "model_not_found" } });
}

test("unknown {name}: passthrough under unknown_model passthrough, 404 model_not_found under reject", async () => {
  const pass = await gateway({ table: TABLE });
  const r = get(pass, "/v1/models/gpt-4o", "GET", [["x-gateway-cluster", "evil"]]);
  assert.equal(r.outcome, "upstream");
  assert.equal(header(r.upstreamHeaders, ":path"), "/v1/models/gpt-4o");
  assert.equal(header(r.upstreamHeaders, "x-gateway-cluster"), undefined, "client routing headers still stripped");
  assert.equal(metric(pass, "gateway.unknown_model"), 1);
  // A name we manage whose deployment has no instance is ours: 404 in both modes (it is not listed).
  assertNotFound(get(pass, "/v1/models/ghost"), "ghost");

  const reject = await gateway({ table: TABLE, config: { unknown_model: "reject" } });
  assertNotFound(get(reject, "/v1/models/gpt-4o"), "gpt-4o");
  assertNotFound(get(reject, "/v1/models/"), "");
  assertNotFound(get(reject, "/v1/models/a%22b%5C%0A%C3%A9"), "a\"b\\\n".slice(0, 4) + "\ufffd\ufffd\ufffd");
  const long = get(reject, "/v1/models/" + "x".repeat(3000));
  assertNotFound(long, "x".repeat(256) + "…");
  assert.equal(get(reject, "/v1/models/%zz").localReply?.status, 404);
  assert.equal(metric(reject, "gateway.unknown_model"), 5);
  assert.deepEqual(reject.refusals, []);
});

test("no table yet → 503 table_not_loaded with retry-after (list and {name})", async () => {
  const host = await gateway({ config: { retry_after_seconds: 7, unknown_model: "passthrough" } });
  for (const path of ["/v1/models", "/v1/models/llama3", "/v1/models/unknown?x"]) {
    const r = get(host, path);
    assert.equal(r.localReply?.status, 503, path);
    assert.equal(header(r.localReply!.headers, "retry-after"), "7");
    assert.deepEqual(json(r), { error: { message: "the gateway has not loaded its routing table yet; retry shortly", type: "server_error", param: null, code: "table_not_loaded" } });
  }
  deliver(host, TABLE);
  assert.equal(get(host, "/v1/models").localReply?.status, 200);
});

test("models_endpoint: passthrough leaves the requests alone", async () => {
  const host = await gateway({ table: TABLE, config: { models_endpoint: "passthrough", unknown_model: "reject" } });
  for (const path of ["/v1/models", "/v1/models/llama3", "/v1/models/gpt-4o"]) {
    const r = get(host, path, "GET", [["x-model-instance", "evil"]]);
    assert.equal(r.outcome, "upstream", path);
    assert.equal(header(r.upstreamHeaders, ":path"), path);
    assert.equal(header(r.upstreamHeaders, "x-model-instance"), undefined);
    assert.equal(r.downstreamBody && new TextDecoder().decode(r.downstreamBody), '{"upstream":true}');
  }
  assert.equal(metric(host, "gateway.models_endpoint"), 0);
  assert.equal(metric(host, "gateway.no_model"), 3);
  // No table, passthrough: not answered either.
  const early = await gateway({ config: { models_endpoint: "passthrough" } });
  assert.equal(get(early, "/v1/models").outcome, "upstream");
});

test("not intercepted: other paths, other methods, another prefix", async () => {
  const host = await gateway({ table: TABLE });
  for (const [method, path] of [
    ["GET", "/v1/models-foo"], ["GET", "/v1/modelsx"], ["GET", "/v1/model"], ["GET", "/models"], ["GET", "/v2/models"],
    ["GET", "/v1/v1/models"], ["GET", "/V1/models"], ["POST", "/v1/models"], ["DELETE", "/v1/models/llama3"],
    ["get", "/v1/models"], ["OPTIONS", "/v1/models"], ["GET", "/v1"], ["GET", "/v1/chat/completions"],
  ] as const) {
    const r = get(host, path, method);
    assert.equal(r.outcome, "upstream", `${method} ${path}`);
    assert.equal(header(r.upstreamHeaders, ":path"), path);
  }
  assert.equal(metric(host, "gateway.models_endpoint"), 0);
  // POST with a JSON body and no model: still the no-model passthrough.
  const post = request(host, { path: "/v1/models", body: "{}" });
  assert.equal(post.outcome, "upstream");

  const root = await gateway({ table: TABLE, config: { api_prefix: "" } });
  assert.deepEqual(json(get(root, "/models")).data, LISTED);
  assert.deepEqual(json(get(root, "/models/llama3")), model("llama3", "llama"));
  assert.equal(get(root, "/v1/models").outcome, "upstream");
  const deep = await gateway({ table: TABLE, config: { api_prefix: "/api/openai/v1" } });
  assert.equal(get(deep, "/api/openai/v1/models").localReply?.status, 200);
  assert.equal(get(deep, "/v1/models").outcome, "upstream");
});

test("a request that names a model is routed, also on {prefix}/models (decision: the model wins)", async () => {
  const host = await gateway({ table: TABLE });
  const r = get(host, "/v1/models", "GET", [["x-model", "llama3"]]);
  assert.equal(r.outcome, "upstream");
  assert.equal(header(r.upstreamHeaders, "x-model-deployment"), "llama");
  // A GET carrying a JSON body without a model is still answered (checked after the body scan).
  const withBody = host.request({ headers: [[":method", "GET"], [":path", "/v1/models"], [":authority", "gw"], ["content-type", "application/json"]], body: "{}" });
  assert.equal(withBody.localReply?.status, 200);
  const named = host.request({ headers: [[":method", "GET"], [":path", "/v1/models"], [":authority", "gw"], ["content-type", "application/json"]], body: '{"model":"llama3"}' });
  assert.equal(header(named.upstreamHeaders, "x-model-deployment"), "llama");
});

test("no GC allocation per models-endpoint request (stub-runtime build: linear memory does not grow)", async () => {
  const out = await stubPluginWasm();
  const names = ["/v1/models", "/v1/models?x", "/v1/models/llama3", "/v1/models/meta-llama%2FLlama-3.1-8B", "/v1/models/ghost", "/v1/models/nope", "/v1/models-foo"];
  for (const unknown of ["passthrough", "reject"]) {
    const host = await gateway({ table: TABLE, wasm: out, config: { unknown_model: unknown } });
    const noTable = await gateway({ wasm: out, config: { unknown_model: unknown } });
    for (const h of [host, noTable]) {
      const run = (n: number) => { for (let k = 0; k < n; k++) get(h, names[k % names.length]!, k % 3 === 0 ? "HEAD" : "GET"); };
      run(700);
      const mem = h.worker(0).memory;
      const before = mem.buffer.byteLength;
      run(7_000);
      assert.equal(mem.buffer.byteLength, before, `memory grew (${unknown}, ${h === host ? "table" : "no table"})`);
    }
  }
});

test("fuzz: 3,000 random models-endpoint paths never trap and answer only 200/404/503 or pass through", async () => {
  let seed = 20261127;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)]!;
  const hosts = [
    await gateway({ table: TABLE }), await gateway({ table: TABLE, config: { unknown_model: "reject", api_prefix: "" } }),
    await gateway({}), await gateway({ config: { unknown_model: "reject" } }),
  ];
  const pieces = ["%", "%2", "%2F", "%zz", "%00", "%ff", "/", "?", "#", "llama3", "meta-llama", "\\", "\"", "é", "x".repeat(300), "%25", "..", ""];
  for (let i = 0; i < 3000; i++) {
    const h = pick(hosts);
    let path = pick(["/v1/models", "/models", "/v1/models/", "/models/", "/v1/models?"]);
    const n = Math.floor(rnd() * 5);
    for (let k = 0; k < n; k++) path += pick(pieces);
    const r = get(h, path, pick(["GET", "HEAD", "POST", "GET"]));
    assert.ok(["upstream", "local_reply"].includes(r.outcome), path);
    if (r.outcome === "local_reply") {
      assert.ok([200, 404, 503].includes(r.localReply!.status), `${path} → ${r.localReply!.status}`);
      JSON.parse(r.localReply!.bodyText);
    }
  }
  for (const h of hosts) assert.equal(h.worker(0).failure, null);
});
