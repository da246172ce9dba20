import assert from "node:assert/strict";
import { test } from "node:test";
import { header, startFixture } from "./build-fixture.js";
import { Status } from "../../envoy/local/host/index.js";

const post = (op: string): [string, string][] => [[":method", "POST"], [":path", "/v1/chat/completions"], [":authority", "gw"], ["x-op", op]];

test("with allow_on_headers_stop_iteration, buffered body: each call sees the whole buffer and may still change headers", async () => {
  const host = await startFixture("probe", { allowOnHeadersStopIteration: true });
  const r = host.request({ headers: post("buffer"), body: ['{"model":', '"llama3",', '"x":1}'], response: { status: 200, body: "ok" } });
  assert.equal(r.outcome, "upstream");
  const bodyLogs = host.logs.filter((l) => l.message.startsWith("body ")).map((l) => l.message);
  assert.deepEqual(bodyLogs, [
    'body len=9 status_len=9 eos=0 bytes={"model":',
    'body len=18 status_len=18 eos=0 bytes={"model":"llama3",',
    'body len=24 status_len=24 eos=1 bytes={"model":"llama3","x":1}',
  ]);
  assert.equal(header(r.upstreamHeaders, "x-body"), '{"model":"llama3","x":1}');
  assert.equal(r.upstreamBodyText, '{"model":"llama3","x":1}');
});

test("buffering past the buffer limit ends in Envoy's 413 local reply, which the plugin's response callbacks see", async () => {
  const host = await startFixture("probe", { allowOnHeadersStopIteration: true, bufferLimitBytes: 16 });
  const r = host.request({ headers: post("buffer"), body: ["0123456789", "0123456789", "tail"] });
  assert.equal(r.outcome, "local_reply");
  assert.equal(r.localReply?.status, 413);
  assert.equal(r.localReply?.by, "host");
  assert.equal(r.localReply?.details, "request_payload_too_large");
  assert.equal(r.localReply?.bodyText, "Payload Too Large");
  assert.equal(r.upstreamHeaders, null);
  // The second chunk overflowed before reaching the plugin; the third never arrived.
  assert.equal(r.callbacks.filter((c) => c === "proxy_on_request_body").length, 1);
  assert.ok(r.callbacks.includes("proxy_on_response_headers"));
});

test("without the flag, StopIteration from headers stops everything: no body callbacks, the request hangs", async () => {
  const host = await startFixture("probe");
  const r = host.request({ headers: post("buffer"), body: ["abc", "def"], response: { status: 200 } });
  assert.equal(r.outcome, "hung");
  assert.equal(r.upstreamHeaders, null);
  assert.ok(!r.callbacks.includes("proxy_on_request_body"));
  assert.deepEqual(r.callbacks.slice(-3), ["proxy_on_log", "proxy_on_done", "proxy_on_delete"]);
});

test("with the flag, a header-only request paused in headers also hangs until continued", async () => {
  const host = await startFixture("probe", { allowOnHeadersStopIteration: true });
  const r = host.request({ headers: post("pause") });
  assert.equal(r.outcome, "hung");
});

test("request headers after they continued: BadArgument; while Envoy still holds the pointer: Ok but no effect", async () => {
  const host = await startFixture("probe", { allowOnHeadersStopIteration: true });
  const plain = host.request({ headers: post("late-change"), response: { status: 200 } });
  assert.equal(header(plain.downstreamHeaders, "x-late-status"), String(Status.BadArgument));
  assert.equal(host.refusals.at(-1)?.statusName, "BadArgument");
  assert.equal(host.refusals.at(-1)?.call, "proxy_replace_header_map_value");

  const buffered = host.request({ headers: post("buffer"), body: "{}", response: { status: 200 } });
  assert.equal(header(buffered.downstreamHeaders, "x-late-status"), String(Status.Ok));
  assert.equal(header(buffered.upstreamHeaders, "x-late"), undefined);
  assert.equal(host.refusals.at(-1)?.statusName, "Ok");
  assert.match(host.refusals.at(-1)!.detail, /no effect/);
});

test("stream API: StopAll holds the body until proxy_continue_stream, then delivers it to the plugin", async () => {
  const host = await startFixture("probe", { clusters: ["control"] });
  const s = host.worker(0).stream();
  assert.equal(s.requestHeaders([...post("wait-call"), ["x-cluster", "control"]], false), 1);
  assert.equal(s.requestBody("held", true), -1);
  assert.equal(s.requestComplete, false);
  host.httpCalls[0]!.respond({ status: 200, body: "picked" });
  assert.equal(s.requestComplete, true);
  const r = s.finish();
  assert.equal(r.outcome, "upstream");
  assert.equal(header(r.upstreamHeaders, "x-from-call"), "picked");
  assert.equal(r.upstreamBodyText, "held");
  assert.ok(r.callbacks.includes("proxy_on_request_body"));
});

test("a body that makes the module grow its memory is still read and written correctly", async () => {
  const host = await startFixture("probe", { allowOnHeadersStopIteration: true, bufferLimitBytes: 8 << 20 });
  const mib = "x".repeat(1 << 20);
  const r = host.request({ headers: post("buffer"), body: [mib, mib, mib + "end"] });
  assert.equal(r.outcome, "upstream");
  assert.equal(header(r.upstreamHeaders, "x-body")?.length, 3 * (1 << 20) + 3);
  assert.ok(header(r.upstreamHeaders, "x-body")!.endsWith("xend"));
  assert.equal(r.upstreamBody.length, 3 * (1 << 20) + 3);
});

test("stream API for a forwarding proxy: passedOn says what went on, drain hands each chunk over once", async () => {
  const host = await startFixture("probe", { allowOnHeadersStopIteration: true });
  const s = host.worker(0).stream();
  assert.deepEqual(s.passedOn("request"), { sent: false, complete: false });
  s.requestHeaders(post("pass"), false);
  assert.equal(s.passedOn("request").sent, true);
  s.requestBody("one,", false);
  s.requestBody("two", false);
  assert.deepEqual(s.drain("request").map((c) => Buffer.from(c).toString()), ["one,", "two"]);
  assert.deepEqual(s.drain("request"), [], "handed over, not kept");
  s.requestBody("three", true);
  assert.deepEqual(s.passedOn("request"), { sent: true, complete: true });
  assert.deepEqual(s.drain("request").map((c) => Buffer.from(c).toString()), ["three"]);
  assert.equal(s.finish().upstreamBodyText, "", "result() no longer holds drained chunks");
});
