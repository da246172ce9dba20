import assert from "node:assert/strict";
import { test } from "node:test";
import { startFixture } from "./build-fixture.js";

const START = 1_700_000_000_000;

test("ticks of 4 workers fire in virtual-time order, each one period after the last, reading the virtual clock", async () => {
  // Worker k (by CAS claim order) ticks every 100·(k+1) ms.
  const host = await startFixture("probe", { workers: 4, configuration: "tick=100", now: START });
  host.advance(1200);
  const ticks = host.logs
    .filter((l) => l.message.startsWith("tick"))
    .map((l) => ({ worker: l.worker, seq: Number(/seq=(\d+)/.exec(l.message)![1]), at: Number(/at=(\d+)/.exec(l.message)![1]) - START }));
  const expected: { worker: number; seq: number; at: number }[] = [];
  for (let t = 100; t <= 1200; t += 100) for (let w = 0; w < 4; w++) if (t % (100 * (w + 1)) === 0) expected.push({ worker: w, seq: w, at: t });
  assert.deepEqual(ticks, expected);
  assert.equal(host.now, START + 1200);
  assert.deepEqual(host.workers.map((w) => w.nextTickAt! - START), [1300, 1400, 1500, 1600]);
});

test("advance in small steps fires the same ticks as one big step", async () => {
  const host = await startFixture("probe", { workers: 2, configuration: "tick=70", now: START });
  for (let i = 0; i < 30; i++) host.advance(10);
  assert.deepEqual(
    host.logs.filter((l) => l.message.startsWith("tick")).map((l) => l.message),
    // Equal times: lower worker first.
    ["tick seq=0 at=1700000000070", "tick seq=0 at=1700000000140", "tick seq=1 at=1700000000140", "tick seq=0 at=1700000000210", "tick seq=0 at=1700000000280", "tick seq=1 at=1700000000280"],
  );
});

test("no tick fires before a period is set or when time does not move", async () => {
  const host = await startFixture("probe", { workers: 2, now: START });
  host.advance(10_000);
  host.advance(0);
  assert.equal(host.logs.filter((l) => l.message.startsWith("tick")).length, 0);
  assert.deepEqual(host.workers.map((w) => w.nextTickAt), [null, null]);
});
