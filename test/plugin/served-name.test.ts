// Served names: a deployment's engine serves one name and answers 404 for any other (vLLM). Requests that
// named the deployment by another name (its public name, an alias) reach the engine with the body's
// top-level "model" rewritten to the served name and content-length fixed; header- and body-routed,
// streaming or not, whole or chunked. Requests that already use the served name are not touched (and
// not buffered).
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { gateway, header, metric, picked, request, table } from "./support.js";

const TABLE = table(1, [
  { id: "small", served_name: "Qwen/Qwen2.5-7B-Instruct", instances: [{ id: "s1" }] },
  { id: "same", served_name: "same", instances: [{ id: "x1" }] },
  { id: "plain", instances: [{ id: "p1" }] },
], { "chat-small": "small", qwen: "small", "Qwen/Qwen2.5-7B-Instruct": "small", same: "same", plain: "plain" });
const SERVED = "Qwen/Qwen2.5-7B-Instruct";

function forwarded(r: ReturnType<typeof request>): { body: Record<string, unknown>; contentLength: string | undefined; text: string } {
  return { body: JSON.parse(r.upstreamBodyText) as Record<string, unknown>, contentLength: header(r.upstreamHeaders, "content-length"), text: r.upstreamBodyText };
}

const body = (model: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model, messages: [{ role: "user", content: 'say "model": "x"' }], stream: true, ...extra });

test("body-routed under a public name or an alias: model rewritten to the served name, content-length fixed", async () => {
  const host = await gateway({ table: TABLE });
  for (const name of ["chat-small", "qwen"]) {
    const text = body(name, { max_tokens: 5 });
    const r = request(host, { body: text, headers: [["content-length", String(Buffer.byteLength(text))]] });
    assert.equal(picked(r), "s1");
    const f = forwarded(r);
    assert.equal(f.body.model, SERVED, name);
    assert.deepEqual({ ...f.body, model: name }, JSON.parse(text), "nothing else changed");
    assert.equal(f.contentLength, String(Buffer.byteLength(f.text)));
  }
  assert.deepEqual(host.refusals, []);
});

test("header-routed under another name: the body is read and rewritten (chunked too, trailers too)", async () => {
  const host = await gateway({ table: TABLE });
  const text = body("qwen");
  const chunks: string[] = [];
  for (let i = 0; i < text.length; i += 9) chunks.push(text.slice(i, i + 9));
  for (const b of [text, chunks]) {
    const r = request(host, { model: "chat-small", body: b, headers: [["content-length", String(Buffer.byteLength(text))]] });
    assert.equal(picked(r), "s1");
    assert.equal(forwarded(r).body.model, SERVED);
    assert.equal(forwarded(r).contentLength, String(Buffer.byteLength(r.upstreamBodyText)));
  }
  // No content-length (chunked transfer): nothing to fix, none added.
  const r = request(host, { model: "qwen", body: text });
  assert.equal(forwarded(r).body.model, SERVED);
  assert.equal(header(r.upstreamHeaders, "content-length"), undefined);
  const t = request(host, { model: "qwen", body: text, trailers: [["x-t", "1"]] });
  assert.equal(forwarded(t).body.model, SERVED);
  assert.deepEqual(host.refusals, []);
});

test("no rewrite when the name is the served one, the deployment has none, or the body is not JSON / has no model", async () => {
  const host = await gateway({ table: TABLE });
  for (const [model, inst] of [[SERVED, "s1"], ["same", "x1"], ["plain", "p1"]] as const) {
    const text = body(model);
    const r = request(host, { body: text });
    assert.equal(picked(r), inst);
    assert.equal(r.upstreamBodyText, text, `${model}: byte for byte`);
    const hr = request(host, { model, body: text });
    assert.equal(hr.upstreamBodyText, text);
  }
  // Header-routed by the served name: the headers continue at once (no buffering).
  const direct = host.worker(0).stream();
  assert.equal(direct.requestHeaders([[":method", "POST"], [":path", "/v1/chat/completions"], [":authority", "gw"], ["content-type", "application/json"], ["x-model", SERVED]], false), 0);
  direct.finish();
  const noModel = request(host, { model: "qwen", body: '{"messages":[]}' });
  assert.equal(noModel.upstreamBodyText, '{"messages":[]}');
  const notJson = request(host, { model: "qwen", body: "plain text", headers: [["content-type", "text/plain"]] });
  assert.equal(notJson.upstreamBodyText, "plain text");
});

test("escaped names are matched decoded and replaced whole; the last top-level model is the one rewritten", async () => {
  const host = await gateway({ table: TABLE });
  const r = request(host, { body: '{"model":"chat-sm\\u0061ll","x":1}' });
  assert.deepEqual(forwarded(r).body, { model: SERVED, x: 1 });
  const last = request(host, { body: '{"model":"plain","model":"qwen"}' });
  assert.equal(picked(last), "s1");
  assert.equal(JSON.parse(last.upstreamBodyText).model, SERVED);
});

test("header-routed rewrite over max_body_bytes: 413 (the body cannot be read to rewrite it)", async () => {
  const host = await gateway({ table: TABLE, config: { max_body_bytes: 64 } });
  const r = request(host, { model: "qwen", body: body("qwen", { pad: "x".repeat(200) }) });
  assert.equal(r.localReply?.status, 413);
  assert.equal(metric(host, "gateway.body_too_large"), 1);
});

test("fuzz: any JSON object naming an alias reaches the engine as the same object with the served name", async () => {
  const host = await gateway({ table: TABLE });
  fc.assert(
    fc.property(fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => k !== "model"), fc.jsonValue({ maxDepth: 3 })), fc.constantFrom("chat-small", "qwen"), fc.boolean(), (obj, name, viaHeader) => {
      const text = JSON.stringify({ ...obj, model: name });
      const r = viaHeader ? request(host, { model: name, body: text }) : request(host, { body: text });
      const got = JSON.parse(r.upstreamBodyText) as Record<string, unknown>;
      assert.deepEqual(got, JSON.parse(JSON.stringify({ ...obj, model: SERVED })));
    }),
    { seed: 1415, numRuns: 300 },
  );
  assert.deepEqual(host.refusals, []);
});
