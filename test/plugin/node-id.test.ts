// The table poll names this Envoy (issue 17): `x-gateway-node: <node.id>` (the bootstrap's node id, read
// with proxy_get_property ["node","id"] from the root context), so the control service can send only what
// this Envoy has ACKed over xDS. A missing or unusable id is never sent, never traps, and changes nothing
// else about polling or routing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { deliver, gateway, header, metric, nextPoll, picked, request, table } from "./support.js";
import { send } from "./upstream.js";

const NODE = "x-gateway-node";
const v = (n: number, inst = "a") => table(n, [{ id: "d", instances: [{ id: inst }] }], { m: "d" });

test("every poll carries the node id: the first, after a 200, after a 304, from whichever VM holds the lease, after a reconfiguration", async () => {
  const host = await gateway({ nodeId: "sidecar~10.0.0.7~gw-5d8f.prod~prod.svc.cluster.local", workers: 2 });
  const id = "sidecar~10.0.0.7~gw-5d8f.prod~prod.svc.cluster.local";
  const first = nextPoll(host);
  assert.equal(header(first.headers, NODE), id);
  assert.equal(header(first.headers, "if-none-match"), undefined);
  first.respond({ status: 200, body: JSON.stringify(v(2)) });
  assert.equal(picked(request(host, { model: "m" })), "a");
  const second = nextPoll(host);
  assert.deepEqual([header(second.headers, NODE), header(second.headers, "if-none-match")], [id, '"2"']);
  second.respond({ status: 304 });
  assert.equal(header(nextPoll(host).headers, NODE), id);
  deliver(host, v(4, "b"));
  assert.equal(picked(request(host, { model: "m" })), "b");

  // A new configuration: new root contexts (and pollers) in every VM; once the old one drained, they poll and name the node too.
  const old = host.current;
  host.updateConfiguration(JSON.stringify({ control_cluster: "gateway_control", long_poll_seconds: 5, control_timeout_ms: 6000 }));
  host.retire(old);
  const seen = new Set<string>();
  for (let i = 0; i < 200 && !seen.has("/v1/routing-table?wait=5"); i++) {
    const c = nextPoll(host);
    assert.equal(header(c.headers, NODE), id, `poll ${header(c.headers, ":path")}`);
    seen.add(header(c.headers, ":path")!);
    c.respond({ status: 304 });
  }
  assert.ok(seen.has("/v1/routing-table?wait=5"), "the new configuration's poller polled");
  assert.deepEqual(host.refusals, []);
});

test("no node id configured: no header; polling and routing as before", async () => {
  const host = await gateway({});
  const c = nextPoll(host);
  assert.equal(header(c.headers, NODE), undefined);
  c.respond({ status: 200, body: JSON.stringify(v(2)) });
  assert.equal(picked(request(host, { model: "m" })), "a");
  assert.equal(header(nextPoll(host).headers, NODE), undefined);
  assert.deepEqual(host.refusals, []);
});

test("an id that cannot be a header value (empty, a space, a control or non-ASCII byte, over 1024 bytes) is not sent, and nothing traps", async () => {
  for (const id of ["", "envoy 1", " envoy", "envoy\t1", "nœud-1", "x".repeat(1025)]) {
    const host = await gateway({ nodeId: id });
    const c = nextPoll(host);
    assert.equal(header(c.headers, NODE), undefined, JSON.stringify(id.slice(0, 20)));
    c.respond({ status: 200, body: JSON.stringify(v(2)) });
    assert.equal(picked(request(host, { model: "m" })), "a");
    assert.equal(metric(host, "gateway.table.version"), 2);
    assert.deepEqual(host.refusals, []);
  }
  // The longest id the control service looks up is sent whole.
  const host = await gateway({ nodeId: "n".repeat(1024) });
  assert.equal(header(nextPoll(host).headers, NODE), "n".repeat(1024));
});

test("the host answers node.id to root contexts from its bootstrap id, and NotFound without one (as Envoy's LocalInfo)", async () => {
  // The telemetry source starts with the node id (read in on_configure, a root context): a witness that
  // the root reads what the host was configured with.
  const withId = await gateway({ nodeId: "gw-node-3", config: { telemetry_interval_ms: 1000 }, table: v(2) });
  const without = await gateway({ config: { telemetry_interval_ms: 1000 }, table: v(2) });
  for (const [host, prefix] of [[withId, "gw-node-3/"], [without, "envoy/"]] as const) {
    send(host, "m", { status: 200 });
    let batch: { source: string } | null = null;
    for (let i = 0; i < 50 && batch === null; i++) {
      host.advance(100);
      const t = host.httpCalls.find((c) => header(c.headers, ":path") === "/v1/telemetry");
      if (t) batch = JSON.parse(t.bodyText) as { source: string };
    }
    assert.ok(batch, "a telemetry batch");
    assert.ok(batch.source.startsWith(prefix), batch.source);
  }
});
