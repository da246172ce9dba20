/**
 * The plugin under Envoy's VM lifecycle (envoy/local/host: the configuration canary, the main-thread VM,
 * one VM per worker, a configuration update as new root contexts), on the virtual clock:
 *   - cold start: before the first table a request naming a model gets 503 table_not_loaded (never a
 *     passthrough), and every worker routes within 500 ms of start when the control service answers at
 *     once, whatever poll_interval_ms is (the canary must not hold the poll lease);
 *   - a new table reaches every worker at once (shared-queue nudge), not on their next tick;
 *   - a configuration update routes at once from shared data, and polling continues once the old
 *     configuration is retired.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { CONTROL, gateway, header, picked, request, table, type Host } from "./support.js";

const WORKERS = [0, 1, 2, 3];
const tbl = (version: number, inst: string) => table(version, [{ id: "m", instances: [{ id: inst }] }]);

/** Answers every routing-table poll at once with `doc` (a long-poll with nothing newer stays pending). */
function serve(host: Host, doc: () => object): void {
  host.onHttpCall = (call) => {
    const v = (doc() as { version: number }).version;
    if (header(call.headers, "if-none-match") === `"${v}"`) return;
    call.respond({ status: 200, headers: [["etag", `"${v}"`]], body: JSON.stringify(doc()) });
  };
}

for (const poll of [1000, 60_000]) {
  test(`cold start at poll_interval_ms ${poll}: 503 table_not_loaded before the first table, every worker routes within 500 ms`, async () => {
    const host = await gateway({ workers: 4, config: { poll_interval_ms: poll, retry_after_seconds: 1 } });
    assert.equal(host.canaryRuns, 1, "the canary ran");
    assert.ok(host.mainVm !== null, "a main-thread VM runs");
    for (const w of WORKERS) {
      const r = request(host, { model: "m", worker: w });
      assert.equal(r.localReply?.status, 503, `worker ${w}: no passthrough before the first table`);
      assert.equal(JSON.parse(r.localReply!.bodyText).error.code, "table_not_loaded");
      assert.equal(header(r.localReply!.headers, "retry-after"), "1");
    }
    serve(host, () => tbl(1, "a"));
    const start = host.now;
    const routedAt = new Map<number, number>();
    while (routedAt.size < WORKERS.length && host.now - start <= 5_000) {
      host.advance(10);
      for (const w of WORKERS) if (!routedAt.has(w) && picked(request(host, { model: "m", worker: w })) === "a") routedAt.set(w, host.now - start);
    }
    const slowest = Math.max(...routedAt.values());
    assert.equal(routedAt.size, 4, `every worker routes (got ${JSON.stringify([...routedAt])})`);
    assert.ok(slowest <= 500, `every worker routes within 500 ms of start (slowest ${slowest} ms)`);
    host.shutdown();
  });
}

test("a new table reaches every worker at once, not on their next tick (poll_interval_ms 60000)", async () => {
  const host = await gateway({ workers: 4, config: { poll_interval_ms: 60_000 } });
  let doc = tbl(1, "a");
  serve(host, () => doc);
  host.advance(500);
  for (const w of WORKERS) assert.equal(picked(request(host, { model: "m", worker: w })), "a");
  // The long-poll is pending; the control service answers it with a new version.
  const poll = host.httpCalls.find((c) => c.cluster === CONTROL);
  assert.ok(poll, "a long-poll is pending");
  doc = tbl(2, "b");
  poll.respond({ status: 200, body: JSON.stringify(doc) });
  host.advance(0); // no virtual time passes: no tick can have run
  for (const w of WORKERS) assert.equal(picked(request(host, { model: "m", worker: w })), "b", `worker ${w} routes by version 2 at once`);
  host.shutdown();
});

test("the canary takes neither the poll lease nor a poll; exactly one VM polls", async () => {
  const host = await gateway({ workers: 2, config: { poll_interval_ms: 60_000 } });
  const lease = host.sharedData.get("gateway.control.poll_lease");
  assert.equal(lease, undefined, "nobody holds the lease before the first tick");
  host.advance(100);
  assert.equal(host.httpCalls.length, 1, "one poll, from a VM that ticks");
  assert.notEqual(host.httpCalls[0]!.worker, -2);
  host.shutdown();
});

test("configuration update: the new roots route at once from shared data; polling goes on after the old one is retired", async () => {
  const host = await gateway({ workers: 2, config: { poll_interval_ms: 1000 } });
  let doc = tbl(3, "a");
  serve(host, () => doc);
  host.advance(300);
  const old = host.current;
  host.updateConfiguration(JSON.stringify({ control_cluster: CONTROL, poll_interval_ms: 1000, max_fallbacks: 0 }));
  for (const w of [0, 1]) {
    const r = request(host, { model: "m", worker: w });
    assert.equal(picked(r), "a", `worker ${w}: the new configuration's root routes before any poll of its own`);
  }
  host.retire(old);
  doc = tbl(4, "b");
  // The old roots released the lease in on_done: a new root takes it and polls; the pending old poll was cancelled.
  host.advance(3000);
  for (const w of [0, 1]) assert.equal(picked(request(host, { model: "m", worker: w })), "b");
  assert.ok(host.httpCalls.length <= 1, "one poll in flight");
  host.shutdown();
});
