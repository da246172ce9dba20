import assert from "node:assert/strict";
import { test } from "node:test";
import { header, startFixture } from "./build-fixture.js";
import { Status } from "../../envoy/local/host/index.js";

const call = (extra: [string, string][]): [string, string][] => [[":method", "GET"], [":path", "/"], [":authority", "gw"], ["x-op", "http-call"], ...extra];

test("http_call to a cluster Envoy does not know is refused with BadArgument", async () => {
  const host = await startFixture("probe", { clusters: ["control"] });
  const r = host.request({ headers: call([["x-cluster", "nowhere"]]) });
  assert.equal(header(r.upstreamHeaders, "x-call-status"), String(Status.BadArgument));
  assert.equal(host.httpCalls.length, 0);
  assert.equal(host.refusals.length, 1);
  assert.equal(host.refusals[0]!.call, "proxy_http_call");
  assert.match(host.refusals[0]!.detail, /unknown cluster "nowhere"/);
});

test("http_call without :method, :path or :authority is refused with BadArgument", async () => {
  const host = await startFixture("probe", { clusters: ["control"] });
  for (const omit of [":method", ":path", ":authority"]) {
    const r = host.request({ headers: call([["x-cluster", "control"], ["x-omit", omit]]) });
    assert.equal(header(r.upstreamHeaders, "x-call-status"), String(Status.BadArgument), omit);
    assert.match(host.refusals.at(-1)!.detail, new RegExp(`missing ${omit}`));
  }
  assert.equal(host.httpCalls.length, 0);
});

test("a pending call is visible and its response reaches the root context's on_http_call_response", async () => {
  const host = await startFixture("probe", { clusters: ["control"], workers: 2 });
  const r = host.request({ worker: 1, headers: call([["x-cluster", "control"]]) });
  assert.equal(header(r.upstreamHeaders, "x-call-status"), String(Status.Ok));
  assert.equal(host.httpCalls.length, 1);
  const pending = host.httpCalls[0]!;
  assert.equal(pending.worker, 1);
  assert.equal(pending.cluster, "control");
  assert.equal(String(pending.token), header(r.upstreamHeaders, "x-call-token"));
  assert.equal(pending.bodyText, "ping");
  assert.equal(header(pending.headers, ":path"), "/v1/table");
  assert.equal(header(pending.headers, "content-length"), "4");
  assert.equal(pending.timeoutMs, 5000);
  pending.respond({ status: 200, headers: [["etag", '"3"']], body: "table-v3", trailers: [["x-t", "1"]] });
  assert.equal(host.httpCalls.length, 0);
  const line = host.logs.find((l) => l.message.startsWith("http response"));
  assert.equal(line?.worker, 1);
  assert.equal(line?.contextId, host.worker(1).rootContextId);
  assert.equal(line?.message, `http response token=${pending.token} status=200 headers=2 body=table-v3 trailers=1 get_status=0/`);
  assert.throws(() => pending.respond({ status: 200 }), /already answered/);
});

test("a failed call is delivered as 0 headers, 0 body and get_status (BrokenConnection, reset)", async () => {
  const host = await startFixture("probe", { clusters: ["control"] });
  host.request({ headers: call([["x-cluster", "control"]]) });
  const pending = host.httpCalls[0]!;
  pending.fail();
  const line = host.logs.find((l) => l.message.startsWith("http response"))!.message;
  assert.equal(line, `http response token=${pending.token} status=none(${Status.BadArgument}) headers=0 body= trailers=0 get_status=${Status.BrokenConnection}/reset`);
});

test("a call times out when the virtual clock passes its timeout, as Envoy's 504", async () => {
  const host = await startFixture("probe", { clusters: ["control"] });
  host.request({ headers: call([["x-cluster", "control"], ["x-timeout", "250"]]) });
  host.advance(249);
  assert.equal(host.httpCalls.length, 1);
  host.advance(1);
  assert.equal(host.httpCalls.length, 0);
  assert.match(host.logs.find((l) => l.message.startsWith("http response"))!.message, /status=504 headers=3 body=upstream request timeout/);
});

test("onHttpCall answers after the calling callback returns; the answer can continue the paused stream", async () => {
  const host = await startFixture("probe", {
    clusters: ["control"],
    onHttpCall: (c) => c.respond({ status: 200, body: "10.0.0.7:8000" }),
  });
  const r = host.request({ headers: [[":method", "POST"], [":path", "/"], [":authority", "gw"], ["x-op", "wait-call"], ["x-cluster", "control"]], body: "{}" });
  assert.equal(r.outcome, "upstream");
  assert.equal(header(r.upstreamHeaders, "x-from-call"), "10.0.0.7:8000");
  assert.equal(r.upstreamBodyText, "{}");
  assert.deepEqual(host.refusals, []);
});
