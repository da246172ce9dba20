import assert from "node:assert/strict";
import { test } from "node:test";
import { header, startFixture } from "./build-fixture.js";
import { Status } from "../../envoy/local/host/index.js";

const req = (worker: number) => ({ worker, headers: [[":method", "GET"], [":path", "/"], [":authority", "gw"], ["x-op", "metrics"]] as [string, string][] });

test("metrics defined by every worker under one name are one Envoy stat", async () => {
  const host = await startFixture("probe", { workers: 4, configuration: "metrics" });
  const seen: string[] = [];
  for (let i = 0; i < 10; i++) seen.push(header(host.request(req(i % 4)).upstreamHeaders, "x-counter-value")!);
  assert.deepEqual(seen, ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]);
  assert.deepEqual(host.metrics.get("gw_requests_total"), { type: "counter", value: 10, samples: [] });
  // +1 on each request, −1 on each on_done.
  assert.equal(host.metrics.get("gw_inflight")?.value, 0);
  assert.equal(host.metrics.get("gw_inflight")?.type, "gauge");
  assert.deepEqual(host.metrics.get("gw_latency_ms")?.samples, Array(10).fill(42));
});

test("bad metric ids are NotFound and decrementing a counter is BadArgument, both recorded", async () => {
  const host = await startFixture("probe", { configuration: "metrics" });
  const r = host.request(req(0));
  assert.equal(header(r.upstreamHeaders, "x-bad-metric"), String(Status.NotFound));
  assert.equal(header(r.upstreamHeaders, "x-counter-decrement"), String(Status.BadArgument));
  assert.deepEqual(host.refusals.map((x) => [x.call, x.statusName]), [["proxy_increment_metric", "NotFound"], ["proxy_increment_metric", "BadArgument"]]);
});
