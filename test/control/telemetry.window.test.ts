// Window statistics (pure): histogram merge, P95 interpolation, error rate.
import { test } from "node:test";
import assert from "node:assert/strict";
import { addBucket, bucketOf, emptyStats, errorRate, quantile, BUCKETS } from "../../control/src/telemetry/window.js";

const hist = (counts: Record<number, number>) => Array.from({ length: BUCKETS }, (_, i) => counts[i] ?? 0);

test("quantile interpolates inside the bucket holding the rank (histogram_quantile)", () => {
  assert.equal(quantile(hist({}), 0.95), null);
  assert.equal(quantile(hist({ 0: 100 }), 0.95), 4.75); // (0, 5]: 5·0.95
  assert.equal(quantile(hist({ 2: 100 }), 0.95), 24.25); // (10, 25]: 10 + 15·0.95
  assert.equal(quantile(hist({ 2: 100, 6: 100 }), 0.95), 475); // rank 190: 90th of 100 in (250, 500]
  assert.equal(quantile(hist({ 2: 95, 6: 5 }), 0.95), 25); // rank 95 ends exactly at the bucket's top
  assert.equal(quantile(hist({ 13: 10 }), 0.95), 60_000); // overflow: the last finite bound
  assert.equal(quantile(hist({ 0: 1, 12: 1 }), 0.5), 5);
});

test("buckets add; error rate = (5xx + connect failures) / requests", () => {
  const s = emptyStats();
  addBucket(s, { r: "10", e5: "1", cf: "2", s: "120.5", h2: "10", pn: "3", pf: "1", p0: "3" });
  addBucket(s, { r: "30", e5: "3", h6: "30" });
  assert.equal(s.requests, 40);
  assert.equal(errorRate(s), 0.15);
  assert.equal(s.latency_buckets[2], 10);
  assert.equal(s.latency_buckets[6], 30);
  assert.equal(s.probes, 3);
  assert.equal(s.probe_failures, 1);
  assert.equal(errorRate(emptyStats()), null);
});

test("bucketOf: upper bounds inclusive, overflow last", () => {
  assert.equal(bucketOf(0), 0);
  assert.equal(bucketOf(5), 0);
  assert.equal(bucketOf(5.01), 1);
  assert.equal(bucketOf(60_000), 12);
  assert.equal(bucketOf(60_001), 13);
});
