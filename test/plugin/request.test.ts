// The request path: where the model comes from, unknown models, header hygiene, path rewrite.
import { test } from "node:test";
import assert from "node:assert/strict";
import { gateway, header, metric, picked, request, table } from "./support.js";

const TABLE = table(5, [
  { id: "llama", cluster: "gw.llama", instances: [{ id: "l1", address: "10.0.0.1:8000" }, { id: "l2", address: "10.0.0.2:8000" }, { id: "l3", address: "10.0.0.3:8000" }] },
  { id: "qwen", cluster: "gw.qwen", instances: [{ id: "q1", address: "[fd00::1]:8080", base_path: "/openai/v1" }, { id: "q2", address: "10.0.1.2:8080", base_path: "/openai/v1" }] },
  { id: "root", cluster: "gw.root", instances: [{ id: "r1", address: "10.0.2.1:80", base_path: "" }] },
], { "llama3": "llama", "llama-3.1-8b": "llama", "qwen2.5": "qwen", "rooted": "root" });

test("model from the model header: all output headers set, route cache cleared", async () => {
  const host = await gateway({ table: TABLE });
  const r = request(host, { model: "llama3" });
  assert.equal(r.outcome, "upstream");
  const h = r.upstreamHeaders;
  assert.equal(header(h, "x-gateway-cluster"), "gw.llama");
  assert.equal(header(h, "x-model-deployment"), "llama");
  const inst = header(h, "x-model-instance");
  assert.ok(["l1", "l2", "l3"].includes(inst!));
  const ep = header(h, "x-gateway-destination-endpoint")!.split(",");
  assert.equal(ep.length, 3, "pick + 2 fallbacks (default max_fallbacks)");
  assert.equal(new Set(ep).size, 3);
  assert.equal(ep[0], { l1: "10.0.0.1:8000", l2: "10.0.0.2:8000", l3: "10.0.0.3:8000" }[inst!]);
  assert.deepEqual(r.foreignCalls.map((c) => c.name), ["clear_route_cache"]);
  assert.equal(header(h, ":path"), "/v1/chat/completions", "same base path: no rewrite");
  host.advance(1000); // batched counters reach Envoy on the tick
  assert.equal(metric(host, "gateway.deployment.llama.requests"), 1);
  assert.equal(metric(host, `gateway.deployment.llama.instance.${inst}.picks`), 1);
  assert.deepEqual(host.refusals, [], "no host call Envoy would refuse");
  // Alias of the same deployment.
  assert.equal(header(request(host, { model: "llama-3.1-8b" }).upstreamHeaders, "x-model-deployment"), "llama");
});

test("the header wins over the body", async () => {
  const host = await gateway({ table: TABLE });
  const r = request(host, { model: "qwen2.5", body: JSON.stringify({ model: "llama3", messages: [] }) });
  assert.equal(header(r.upstreamHeaders, "x-model-deployment"), "qwen");
  // An empty model header counts as absent: the body decides.
  const empty = request(host, { model: "", body: JSON.stringify({ model: "llama3" }) });
  assert.equal(header(empty.upstreamHeaders, "x-model-deployment"), "llama");
});

test("model from the JSON body: whole, chunked, escaped, with trailers; body forwarded unchanged", async () => {
  const host = await gateway({ table: TABLE });
  const body = JSON.stringify({ messages: [{ role: "user", content: "hi \"model\": \"qwen2.5\"" }], nested: { model: "qwen2.5" }, model: "llama3", stream: true });
  const whole = request(host, { body });
  assert.equal(whole.outcome, "upstream");
  assert.equal(header(whole.upstreamHeaders, "x-model-deployment"), "llama");
  assert.equal(whole.upstreamBodyText, body);

  const chunks: string[] = [];
  for (let i = 0; i < body.length; i += 7) chunks.push(body.slice(i, i + 7));
  const chunked = request(host, { body: chunks });
  assert.equal(header(chunked.upstreamHeaders, "x-model-deployment"), "llama");
  assert.equal(chunked.upstreamBodyText, body);

  const escaped = request(host, { body: '{"m\\u006fdel":"qwen\\u00322.5"}'.replace("\\u00322", "2") });
  assert.equal(header(escaped.upstreamHeaders, "x-model-deployment"), "qwen");
  const escapedValue = request(host, { body: '{"model":"ll\\u0061ma3"}' });
  assert.equal(header(escapedValue.upstreamHeaders, "x-model-deployment"), "llama");

  const lastWins = request(host, { body: '{"model":"qwen2.5","model":"llama3"}' });
  assert.equal(header(lastWins.upstreamHeaders, "x-model-deployment"), "llama");

  const withTrailers = request(host, { body: '{"model":"qwen2.5"}', trailers: [["x-t", "1"]] });
  assert.equal(header(withTrailers.upstreamHeaders, "x-model-deployment"), "qwen");
  assert.deepEqual(host.refusals, [], "header changes while the headers are held are accepted");
});

test("malformed JSON body → 400 with an OpenAI-style error", async () => {
  const host = await gateway({ table: TABLE });
  for (const bad of ['{"model": "llama3"', '{"model": llama3}', '{"model":"llama3"} x', "", '{"a":[1,2,}', '{"model":"a\u0001"}', "[".repeat(5000)]) {
    const r = request(host, { body: bad === "" ? [""] : bad });
    assert.equal(r.outcome, "local_reply", JSON.stringify(bad.slice(0, 40)));
    assert.equal(r.localReply!.status, 400);
    const e = JSON.parse(r.localReply!.bodyText).error;
    assert.equal(e.type, "invalid_request_error");
    assert.equal(e.param, "model");
    assert.equal(typeof e.code, "string");
    assert.equal(typeof e.message, "string");
  }
  assert.equal(metric(host, "gateway.bad_request_body"), 7);
});

test("body over max_body_bytes → 413 with an OpenAI-style error", async () => {
  const host = await gateway({ table: TABLE, config: { max_body_bytes: 1024 } });
  const big = JSON.stringify({ model: "llama3", pad: "x".repeat(2000) });
  for (const body of [big, [big.slice(0, 900), big.slice(900)]]) {
    const r = request(host, { body });
    assert.equal(r.outcome, "local_reply");
    assert.equal(r.localReply!.status, 413);
    assert.equal(JSON.parse(r.localReply!.bodyText).error.code, "request_too_large");
  }
  // Exactly at the limit is fine.
  const fits = JSON.stringify({ model: "llama3", pad: "" });
  const exact = fits.slice(0, -1) + " ".repeat(1024 - fits.length) + "}";
  assert.equal(exact.length, 1024);
  assert.equal(header(request(host, { body: exact }).upstreamHeaders, "x-model-deployment"), "llama");
});

test("no model anywhere → passthrough untouched (routing headers still stripped)", async () => {
  const host = await gateway({ table: TABLE });
  const noModel = request(host, { body: '{"messages":[]}' });
  assert.equal(noModel.outcome, "upstream");
  assert.equal(header(noModel.upstreamHeaders, "x-gateway-cluster"), undefined);
  assert.equal(noModel.upstreamBodyText, '{"messages":[]}');
  const nonString = request(host, { body: '{"model":42}' });
  assert.equal(nonString.outcome, "upstream");
  assert.equal(header(nonString.upstreamHeaders, "x-model-deployment"), undefined);
  const notJson = request(host, { body: "model=llama3", headers: [["content-type", "text/plain"]] });
  assert.equal(notJson.outcome, "upstream");
  const headerOnly = request(host, {});
  assert.equal(headerOnly.outcome, "upstream");
  assert.equal(metric(host, "gateway.no_model"), 4);
});

test("body routing disabled: the body is not read", async () => {
  const host = await gateway({ table: TABLE, config: { body_routing: false } });
  const r = request(host, { body: '{"model":"llama3"}' });
  assert.equal(r.outcome, "upstream");
  assert.equal(header(r.upstreamHeaders, "x-model-deployment"), undefined);
  assert.ok(!r.callbacks.includes("proxy_on_request_body") || r.upstreamBodyText === '{"model":"llama3"}');
});

test("unknown model: passthrough leaves the request untouched; reject answers 404 model_not_found", async () => {
  const pass = await gateway({ table: TABLE });
  const r = request(pass, { model: "gpt-4o", path: "/v1/models?x=1" });
  assert.equal(r.outcome, "upstream");
  assert.equal(header(r.upstreamHeaders, ":path"), "/v1/models?x=1");
  assert.equal(header(r.upstreamHeaders, "x-gateway-cluster"), undefined);
  assert.equal(header(r.upstreamHeaders, "x-model"), "gpt-4o");
  assert.equal(r.foreignCalls.length, 0);
  assert.equal(metric(pass, "gateway.unknown_model"), 1);

  const reject = await gateway({ table: TABLE, config: { unknown_model: "reject" } });
  for (const r2 of [request(reject, { model: "gpt-4o" }), request(reject, { body: '{"model":"gpt-4o"}' })]) {
    assert.equal(r2.outcome, "local_reply");
    assert.equal(r2.localReply!.status, 404);
    const e = JSON.parse(r2.localReply!.bodyText).error;
    assert.equal(e.code, "model_not_found");
    assert.equal(e.type, "invalid_request_error");
    assert.equal(e.param, "model");
    assert.match(e.message, /gpt-4o/);
  }
});

test("before the first table a request naming a model gets 503 table_not_loaded (never a passthrough), unless opted in", async () => {
  const host = await gateway({ config: { retry_after_seconds: 2 } });
  for (const r of [request(host, { model: "llama3" }), request(host, { body: '{"model":"llama3","messages":[]}' })]) {
    assert.equal(r.outcome, "local_reply");
    assert.equal(r.localReply!.status, 503);
    assert.equal(header(r.localReply!.headers, "retry-after"), "2");
    assert.equal(JSON.parse(r.localReply!.bodyText).error.code, "table_not_loaded");
    assert.equal(r.upstreamHeaders, null, "nothing forwarded");
  }
  assert.equal(metric(host, "gateway.table_not_loaded"), 2);
  // A request that names no model is not ours to hold: it still passes through.
  assert.equal(request(host, { path: "/v1/files" }).outcome, "upstream");
  // Opted in: the old behaviour (stripped passthrough).
  const open = await gateway({ config: { before_first_table: "passthrough" } });
  const r = request(open, { model: "llama3", headers: [["x-gateway-cluster", "forged"]] });
  assert.equal(r.outcome, "upstream");
  assert.equal(header(r.upstreamHeaders, "x-gateway-cluster"), undefined);
});

test("client-supplied routing headers are stripped or replaced, for every outcome", async () => {
  const host = await gateway({ table: TABLE, config: { max_fallbacks: 0 } });
  const forged: [string, string][] = [
    ["x-gateway-destination-endpoint", "6.6.6.6:666"], ["x-gateway-destination-endpoint", "7.7.7.7:1"],
    ["x-gateway-cluster", "evil"], ["x-model-deployment", "evil"], ["x-model-instance", "evil"],
  ];
  const routed = request(host, { model: "rooted", headers: forged });
  assert.equal(header(routed.upstreamHeaders, "x-gateway-destination-endpoint"), "10.0.2.1:80");
  assert.equal(header(routed.upstreamHeaders, "x-gateway-cluster"), "gw.root");
  assert.equal(header(routed.upstreamHeaders, "x-model-deployment"), "root");
  assert.equal(header(routed.upstreamHeaders, "x-model-instance"), "r1");
  for (const r of [request(host, { model: "unknown", headers: forged }), request(host, { headers: forged }), request(host, { body: '{"x":1}', headers: forged })]) {
    assert.equal(r.outcome, "upstream");
    for (const [k] of forged) assert.equal(header(r.upstreamHeaders, k), undefined, k);
  }
});

test("configured header names are used for input and output", async () => {
  const host = await gateway({ table: TABLE, config: { model_header: "x-llm", endpoint_header: "x-ep", cluster_header: "x-cl", deployment_header: "x-dep", instance_header: "x-inst" } });
  const r = request(host, { headers: [["x-llm", "qwen2.5"], ["x-ep", "1.1.1.1:1"]] });
  assert.equal(header(r.upstreamHeaders, "x-cl"), "gw.qwen");
  assert.equal(header(r.upstreamHeaders, "x-dep"), "qwen");
  assert.ok(header(r.upstreamHeaders, "x-ep")!.endsWith(":8080"));
  assert.ok(["q1", "q2"].includes(header(r.upstreamHeaders, "x-inst")!));
});

test("path rewritten from api_prefix to the pick's base_path, query kept; fallbacks share the base path", async () => {
  const host = await gateway({ table: TABLE });
  const r = request(host, { model: "qwen2.5", path: "/v1/chat/completions?stream=true&x=/v1" });
  assert.equal(header(r.upstreamHeaders, ":path"), "/openai/v1/chat/completions?stream=true&x=/v1");
  const root = request(host, { model: "rooted", path: "/v1/embeddings" });
  assert.equal(header(root.upstreamHeaders, ":path"), "/embeddings");
  const q = request(host, { model: "rooted", path: "/v1/completions?a=b" });
  assert.equal(header(q.upstreamHeaders, ":path"), "/completions?a=b", "empty base path: the rest of the path, query kept");
  // Paths that are not an inference path under the prefix are refused, not forwarded (test/plugin/paths.test.ts).
  for (const path of ["/v1?a=b", "/v1beta/models", "/v1/" + "a".repeat(5000)]) {
    assert.equal(request(host, { model: "qwen2.5", path }).localReply?.status, 404, path.slice(0, 40));
  }
  assert.deepEqual(host.refusals, []);

  const mixed = await gateway({
    config: { max_fallbacks: 8 },
    table: table(1, [{ id: "mix", instances: [{ id: "a", base_path: "/v1", address: "10.5.0.1:1" }, { id: "b", base_path: "/openai/v1", address: "10.5.0.2:1" }, { id: "c", base_path: "/v1", address: "10.5.0.3:1" }] }]),
  });
  for (let i = 0; i < 6; i++) {
    const m = request(mixed, { model: "mix" });
    const ep = header(m.upstreamHeaders, "x-gateway-destination-endpoint")!;
    if (picked(m) === "b") {
      assert.equal(ep, "10.5.0.2:1");
      assert.equal(header(m.upstreamHeaders, ":path"), "/openai/v1/chat/completions");
    } else {
      assert.equal(ep.split(",").length, 2);
      assert.ok(!ep.includes("10.5.0.2"));
      assert.equal(header(m.upstreamHeaders, ":path"), "/v1/chat/completions");
    }
  }
});

test("api_prefix empty: base path is prepended", async () => {
  const host = await gateway({ table: TABLE, config: { api_prefix: "" } });
  const r = request(host, { model: "llama3", path: "/chat/completions" });
  assert.equal(header(r.upstreamHeaders, ":path"), "/v1/chat/completions");
});

test("body scanner: control characters, quotes and escapes are found at every byte alignment", async () => {
  const host = await gateway({ table: TABLE });
  for (let k = 0; k < 20; k++) {
    const pad = "x".repeat(k);
    const good = request(host, { body: `{"p":"${pad}\\"${"y".repeat(k)}\\\\","model":"llama3","q":"${"z".repeat(17 + k)}"}` });
    assert.equal(header(good.upstreamHeaders, "x-model-deployment"), "llama", `good at ${k}`);
    const ctrl = request(host, { body: `{"model":"llama3","p":"${pad}\u0001${"y".repeat(24)}"}` });
    assert.equal(ctrl.localReply?.status, 400, `control char at ${k}`);
    const raw = request(host, { body: `{"model":"llama3","p":"${pad}\n${"y".repeat(24)}"}` });
    assert.equal(raw.localReply?.status, 400, `raw newline at ${k}`);
    const unterminated = request(host, { body: `{"model":"llama3","p":"${pad}${"y".repeat(24)}}` });
    assert.equal(unterminated.localReply?.status, 400, `unterminated at ${k}`);
  }
});
