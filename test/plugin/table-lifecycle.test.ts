// The routing table's life: polling, ETags, adoption, refusal, outages, sharing across workers,
// the poll lease, and shutdown.
import { test } from "node:test";
import assert from "node:assert/strict";
import { answerPoll, CONTROL, deliver, gateway, header, metric, nextPoll, picked, request, table, waitFor } from "./support.js";

const v = (n: number, inst = "a") => table(n, [{ id: "d", instances: [{ id: inst }] }], { m: "d" });

test("first fetch: GET {table_path}?wait=…, authority, bearer token, no if-none-match; table adopted", async () => {
  const host = await gateway({ config: { control_token: "t0ps3cret", control_authority: "ctl.svc", table_path: "/v1/routing-table", long_poll_seconds: 15, control_timeout_ms: 16000 }, logLevel: "trace" });
  const call = nextPoll(host);
  assert.equal(call.cluster, CONTROL);
  assert.equal(header(call.headers, ":method"), "GET");
  assert.equal(header(call.headers, ":path"), "/v1/routing-table?wait=15");
  assert.equal(header(call.headers, ":authority"), "ctl.svc");
  assert.equal(header(call.headers, "authorization"), "Bearer t0ps3cret");
  assert.equal(header(call.headers, "if-none-match"), undefined);
  assert.equal(call.timeoutMs, 16000);
  call.respond({ status: 200, headers: [["etag", '"3"']], body: JSON.stringify(v(3)) });
  assert.equal(picked(request(host, { model: "m" })), "a");
  assert.equal(metric(host, "gateway.table.version"), 3);
  assert.equal(metric(host, "gateway.table.adopted"), host.liveVms().length, "adopted once per VM (main thread and worker)");
  // The next poll carries the ETag.
  assert.equal(header(nextPoll(host).headers, "if-none-match"), '"3"');
  // The token is never logged, at any level.
  assert.ok(host.logs.every((l) => !l.message.includes("t0ps3cret")));
});

test("counts batched under one table are flushed before the next table replaces it", async () => {
  const host = await gateway({ table: v(1, "a") });
  const call = nextPoll(host); // in flight: no tick between the requests and the new table
  request(host, { model: "m" });
  request(host, { model: "m" });
  call.respond({ status: 200, body: JSON.stringify(v(2, "b")) });
  request(host, { model: "m" });
  host.advance(1000);
  assert.equal(metric(host, "gateway.deployment.d.requests"), 3);
  assert.equal(metric(host, "gateway.deployment.d.instance.a.picks"), 2);
  assert.equal(metric(host, "gateway.deployment.d.instance.b.picks"), 1);
});

test("304 changes nothing; a new version is adopted; only one poll in flight", async () => {
  const host = await gateway({ table: v(1, "a") });
  const c = nextPoll(host);
  // Defaults of contract 2.
  assert.equal(header(c.headers, ":path"), "/v1/routing-table?wait=20");
  assert.equal(header(c.headers, ":authority"), "gateway-control");
  assert.equal(header(c.headers, "authorization"), undefined);
  assert.equal(c.timeoutMs, 25000);
  host.advance(5000); // ticks while the long poll waits: no second call
  assert.equal(host.httpCalls.length, 1);
  c.respond({ status: 304 });
  assert.equal(picked(request(host, { model: "m" })), "a");
  assert.equal(metric(host, "gateway.table.version"), 1);
  deliver(host, v(2, "b"));
  assert.equal(picked(request(host, { model: "m" })), "b");
  assert.equal(metric(host, "gateway.table.version"), 2);
});

test("malformed, partial, old and oversized tables are refused: previous table stays, metric counts, logged once each", async () => {
  const host = await gateway({ table: v(5, "keep"), config: { max_table_bytes: 2048 } });
  const bad = [
    '{"schema":1,"version":6,"models":{"m":"d"},"deployments":[{"id":"d"', // partial
    "not json",
    JSON.stringify(v(6)).replace('"weight":1', '"weight":0'),
    JSON.stringify(v(4, "old")),
    JSON.stringify(v(5, "same")),
    JSON.stringify(table(6, [{ id: "d", instances: Array.from({ length: 40 }, (_, i) => ({ id: `i${i}` })) }], { m: "d" })), // > 2048 bytes
  ];
  for (const body of bad) {
    answerPoll(host, { status: 200, body });
    assert.equal(picked(request(host, { model: "m" })), "keep", body.slice(0, 60));
  }
  assert.equal(metric(host, "gateway.table.rejected"), bad.length);
  assert.equal(metric(host, "gateway.table.version"), 5);
  const refusals = () => host.logs.filter((l) => l.message.includes("routing table refused")).length;
  assert.equal(refusals(), bad.length);
  answerPoll(host, { status: 200, body: bad[0]! }); // same failure again: counted, not logged again
  assert.equal(metric(host, "gateway.table.rejected"), bad.length + 1);
  assert.equal(refusals(), bad.length);
  deliver(host, v(7, "new"));
  assert.equal(picked(request(host, { model: "m" })), "new");
});

test("control unreachable (reset, 5xx, unknown cluster): last table kept, retried on the next tick", async () => {
  const host = await gateway({ table: v(1, "a") });
  nextPoll(host).fail();
  assert.equal(picked(request(host, { model: "m" })), "a");
  answerPoll(host, { status: 503, body: "down" });
  assert.equal(picked(request(host, { model: "m" })), "a");
  answerPoll(host, { status: 500 });
  assert.ok(metric(host, "gateway.control.failures") >= 3);
  deliver(host, v(2, "b")); // recovers
  assert.equal(picked(request(host, { model: "m" })), "b");
  assert.deepEqual(host.refusals, [], "no host call Envoy would refuse");

  const lost = await gateway({ config: { control_cluster: "not_a_cluster" } });
  lost.advance(5000);
  assert.equal(lost.httpCalls.length, 0);
  assert.ok(metric(lost, "gateway.control.failures") >= 1);
  assert.equal(request(lost, { model: "m" }).localReply?.status, 503, "no table: table_not_loaded, never a passthrough");
  const warned = lost.logs.filter((l) => l.message.includes("routing table poll failed"));
  assert.equal(warned.length, 1, "logged once per distinct failure");
});

test("other workers adopt a new table from shared data on their tick; one poller per process", async () => {
  const host = await gateway({ workers: 4, table: v(1, "a") });
  waitFor(host, () => [0, 1, 2, 3].every((w) => picked(request(host, { model: "m", worker: w })) === "a"), "all workers on v1");
  deliver(host, v(2, "b"));
  waitFor(host, () => [0, 1, 2, 3].every((w) => picked(request(host, { model: "m", worker: w })) === "b"), "all workers on v2", 100, 2000);
  // Over a minute of ticks, exactly one call is ever in flight, always from the same worker.
  const pollers = new Set<number>();
  for (let i = 0; i < 60; i++) {
    host.advance(1000);
    assert.ok(host.httpCalls.length <= 1);
    for (const c of host.httpCalls) pollers.add(c.worker);
    if (host.httpCalls.length === 1 && i % 10 === 9) host.httpCalls[0]!.respond({ status: 304 });
  }
  assert.equal(pollers.size, 1);
});

test("poll lease is taken over when its holder stops renewing", async () => {
  const host = await gateway({ workers: 2, table: v(1, "a") });
  const KEY = "gateway.control.poll_lease";
  const inFlight = nextPoll(host);
  const [, expires] = new TextDecoder().decode(host.sharedData.get(KEY)!.value).split(" ");
  // Another holder (a stuck worker) owns the lease until the current expiry and never renews.
  host.sharedData.set(KEY, `999999 ${expires}`);
  inFlight.respond({ status: 304 });
  const quiet = Number(expires) - host.now - 100;
  assert.ok(quiet >= 1000, `lease ttl spans several ticks (${quiet} ms)`);
  host.advance(quiet);
  assert.equal(host.httpCalls.length, 0, "nobody polls while someone else holds the lease");
  waitFor(host, () => host.httpCalls.length === 1, "a poll by the worker that took the lease over", 100, 10_000);
  assert.notEqual(new TextDecoder().decode(host.sharedData.get(KEY)!.value).split(" ")[0], "999999");
});

test("shared data never goes back to an older version", async () => {
  const host = await gateway({ workers: 2, table: v(5, "a") });
  const bytes = host.sharedData.get("gateway.table.bytes")!;
  assert.equal(new DataView(bytes.value.buffer, bytes.value.byteOffset).getBigUint64(0, true), 5n);
  assert.equal(new TextDecoder().decode(host.sharedData.get("gateway.table.version")!.value), "5");
  answerPoll(host, { status: 200, body: JSON.stringify(v(3, "old")) });
  assert.equal(new TextDecoder().decode(host.sharedData.get("gateway.table.version")!.value), "5");
});

test("root on_done/on_delete at shutdown do not trap (with and without a table, with a poll in flight)", async () => {
  const a = await gateway({ workers: 2, table: v(1) });
  a.advance(1000); // worker 1 adopts the table from shared data on its tick
  nextPoll(a);
  request(a, { model: "m", worker: 0 });
  request(a, { model: "m", worker: 1 });
  a.shutdown();
  assert.equal(metric(a, "gateway.deployment.d.requests"), 2, "batched counts flushed in on_done");
  assert.deepEqual(a.refusals, []);
  assert.ok(a.logs.every((l) => l.level !== "critical" && l.level !== "error"), "no abort/error logged");
  const b = await gateway({});
  b.shutdown();
  assert.deepEqual(b.refusals, []);
});

test("a new VM (config reload) routes at once from the table in shared data, before any poll", async () => {
  const { ProxyWasmHost } = await import("../../envoy/local/host/index.js");
  const { PLUGIN_WASM } = await import("./support.js");
  const old = await gateway({ workers: 2, table: v(3, "a") });
  const reloaded = await ProxyWasmHost.start({
    wasm: PLUGIN_WASM, workers: 2, sharedData: old.sharedData, clusters: [CONTROL],
    configuration: JSON.stringify({ control_cluster: CONTROL, max_fallbacks: 0 }),
  });
  assert.equal(reloaded.httpCalls.length, 0, "the old VMs still hold the poll lease");
  for (const w of [0, 1]) assert.equal(picked(request(reloaded, { model: "m", worker: w })), "a");
  old.shutdown(); // releases the lease
  waitFor(reloaded, () => reloaded.httpCalls.length === 1, "the new VMs to take the poll over", 100, 2000);
  assert.equal(header(reloaded.httpCalls[0]!.headers, "if-none-match"), '"3"');
});

test("callbacks for unknown context ids get neutral answers, never a trap", async () => {
  const host = await gateway({ table: v(1) });
  type Fn = (...a: number[]) => number;
  const fn = (host.worker(0) as unknown as { fn: Record<string, Fn> }).fn;
  assert.equal(fn.proxy_on_request_headers!(4242, 3, 1), 0);
  assert.equal(fn.proxy_on_request_body!(4242, 10, 1), 0);
  assert.equal(fn.proxy_on_response_headers!(4242, 3, 1), 0);
  assert.equal(fn.proxy_on_done!(4242), 1);
  fn.proxy_on_delete!(4242);
  fn.proxy_on_log!(4242);
  fn.proxy_on_tick!(4242);
  fn.proxy_on_http_call_response!(4242, 1, 0, 0, 0);
  fn.proxy_on_context_create!(4243, 4242); // stream under an unknown root: ignored
  assert.equal(fn.proxy_on_request_headers!(4243, 3, 1), 0);
  // The plugin still works afterwards, and a second shutdown round is harmless.
  assert.equal(picked(request(host, { model: "m" })), "a");
  host.shutdown();
  assert.equal(fn.proxy_on_done!(1), 1, "on_done for the already deleted root");
  fn.proxy_on_delete!(1);
});

test("the long-poll is re-armed at once after a new table and after a 304 that waited, not after a fast 304", async () => {
  const host = await gateway({ table: v(1) });
  // After adopting a table the next long-poll is already in flight: no tick in between.
  assert.equal(host.httpCalls.length, 1, "re-armed immediately after the 200");
  assert.equal(header(host.httpCalls[0]!.headers, "if-none-match"), '"1"');
  // A 304 after the control service held the call (a real long-poll wait) re-arms at once too.
  const waited = host.httpCalls[0]!;
  host.advance(900);
  assert.equal(host.httpCalls.length, 1, "still waiting");
  host.advance(1100);
  waited.respond({ status: 304 });
  assert.equal(host.httpCalls.length, 1, "re-armed immediately after a 304 that waited");
  // A 304 that came back at once is not re-armed before the next tick (no busy loop).
  const fast = host.httpCalls[0]!;
  fast.respond({ status: 304 });
  assert.equal(host.httpCalls.length, 0, "a fast 304 waits for the tick");
  waitFor(host, () => host.httpCalls.length === 1, "the poll on the next tick", 100, 2000);
});
