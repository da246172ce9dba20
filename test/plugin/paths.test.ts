// Paths of routed requests: only the OpenAI inference API under api_prefix (chat/completions,
// completions, embeddings, models[/…]) and the deployment's extra_paths reach an instance, after
// normalization ('..', '%2e', '//'); anything else naming a managed model gets OpenAI's 404 and is never
// forwarded with the instance's key. Requests for models we do not manage are not ours to judge.
import { test } from "node:test";
import assert from "node:assert/strict";
import { gateway, header, metric, request, table } from "./support.js";

const KEY = "Bearer sk-instance-secret";
const TABLE = table(1, [
  { id: "m", instances: [{ id: "i", address: "10.60.0.1:8000", authorization: KEY }] },
  { id: "r", extra_paths: ["rerank", "audio/transcriptions"], instances: [{ id: "j", address: "10.60.0.2:8000" }] },
]);

test("the inference API is forwarded; paths are normalized before the check and forwarded normalized", async () => {
  const host = await gateway({ table: TABLE });
  const cases: [string, string][] = [
    ["/v1/chat/completions", "/v1/chat/completions"],
    ["/v1/completions?x=1", "/v1/completions?x=1"],
    ["/v1/embeddings", "/v1/embeddings"],
    ["/v1/models", "/v1/models"],
    ["/v1/models/some-model", "/v1/models/some-model"],
    ["/v1//chat///completions", "/v1/chat/completions"],
    ["/v1/./chat/./completions", "/v1/chat/completions"],
    ["/v1/x/../chat/completions", "/v1/chat/completions"],
    ["/v1/chat/completions/", "/v1/chat/completions"],
    ["/v1/%2e/embeddings", "/v1/embeddings"],
  ];
  for (const [path, forwarded] of cases) {
    const r = request(host, { model: "m", path });
    assert.equal(r.outcome, "upstream", path);
    assert.equal(header(r.upstreamHeaders, ":path"), forwarded, path);
  }
  assert.deepEqual(host.refusals, []);
});

test("anything else naming a managed model: 404 in OpenAI's shape, nothing forwarded (no instance key leaves)", async () => {
  const host = await gateway({ table: TABLE });
  const refused = [
    "/v1/load_lora_adapter", "/metrics", "/health", "/v1/../admin", "/v1/%2e%2e/admin", "/v1/%2E%2E/%2e%2e/etc",
    "/v1/chat%2Fcompletions", "/v1/chat%2fcompletions", "/v1\\chat\\completions", "/v1/chat/completions%5c", "/../v1/chat/completions",
    "/v1", "/v1/", "/v2/chat/completions", "/v1/rerank", "/v1/responses", "v1/chat/completions", "/v1/chat/completions\u0001",
  ];
  for (const path of refused) {
    for (const r of [request(host, { model: "m", path }), request(host, { path, body: JSON.stringify({ model: "m" }) })]) {
      assert.equal(r.localReply?.status, 404, path);
      assert.equal(r.upstreamHeaders, null, `${path}: never forwarded`);
      const e = JSON.parse(r.localReply!.bodyText).error;
      assert.deepEqual([e.type, e.code, e.param], ["invalid_request_error", "unknown_url", null], path);
      assert.match(e.message, /^Invalid URL \(POST /);
      assert.ok(!r.localReply!.bodyText.includes("sk-instance-secret"));
    }
  }
  assert.equal(metric(host, "gateway.path_refused"), refused.length * 2);
});

test("a deployment's extra_paths are served; other deployments keep the standard list", async () => {
  const host = await gateway({ table: TABLE });
  for (const path of ["/v1/rerank", "/v1/audio/transcriptions", "/v1/chat/completions"]) {
    assert.equal(request(host, { model: "r", path }).outcome, "upstream", path);
  }
  assert.equal(request(host, { model: "r", path: "/v1/audio" }).localReply?.status, 404);
  assert.equal(request(host, { model: "m", path: "/v1/rerank" }).localReply?.status, 404);
});

test("requests for models we do not manage, or naming none, pass through whatever their path", async () => {
  const host = await gateway({ table: TABLE });
  for (const path of ["/v1/files", "/admin", "/v1/../x"]) {
    assert.equal(request(host, { model: "gpt-4o", path }).outcome, "upstream");
    assert.equal(request(host, { path, headers: [["content-type", "text/plain"]] }).outcome, "upstream");
  }
});

test("api_prefix empty: paths are judged from the root", async () => {
  const host = await gateway({ table: TABLE, config: { api_prefix: "" } });
  assert.equal(request(host, { model: "m", path: "/chat/completions" }).outcome, "upstream");
  assert.equal(request(host, { model: "m", path: "/v1/chat/completions" }).localReply?.status, 404);
});
