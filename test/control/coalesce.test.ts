// Write coalescing (control/src/redis/coalesce.ts): one flush per event-loop turn, in call order,
// split at `max`, every caller's promise settling with its own flush.
import { test } from "node:test";
import assert from "node:assert/strict";
import { coalesce } from "../../control/src/redis/coalesce.js";

test("calls of one turn are flushed together, in order; a later turn gets its own flush", async () => {
  const flushes: number[][] = [];
  const write = coalesce<number>(async (xs) => void flushes.push(xs));
  await Promise.all([write(1), write(2), write(3)]);
  await write(4);
  assert.deepEqual(flushes, [[1, 2, 3], [4]]);
});

test("more than max items: several flushes, each caller settled by the flush that wrote it", async () => {
  const flushes: number[][] = [];
  const write = coalesce<number>(async (xs) => {
    if (xs.includes(3)) throw new Error("redis said no");
    flushes.push(xs);
  }, 2);
  const r = await Promise.allSettled([1, 2, 3, 4, 5].map(write));
  assert.deepEqual(flushes, [[1, 2], [5]]);
  assert.deepEqual(r.map((x) => x.status), ["fulfilled", "fulfilled", "rejected", "rejected", "fulfilled"]);
  assert.equal((r[2] as PromiseRejectedResult).reason.message, "redis said no");
});
