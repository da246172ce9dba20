// The table cache's view of itself (/healthz): behind the stored version, held deployments, the floor.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { BEHIND_GRACE_MS, createTableCache } from "../../control/src/routing-table/cache.js";
import type { Snapshot } from "../../control/src/routing-table/store.js";
import { createLogger } from "../../control/src/log.js";
import { dep, inst, model } from "./documents.js";

function fixture() {
  let clock = 1_000_000;
  let snap: Snapshot = { version: 2, models: [model("m", "llama")], deployments: [dep("d", "m", [inst("a", "active")])], apiKeys: {} };
  let failing = false;
  const raised: number[] = [];
  const cache = createTableCache({
    store: {
      snapshot: async () => {
        if (failing) throw new Error("Connection is closed.");
        return snap;
      },
    },
    log: createLogger({ level: "error", sink: () => undefined }),
    refreshMs: 60_000,
    now: () => clock,
    raiseVersion: async (floor) => {
      raised.push(floor);
      snap = { ...snap, version: floor + 2 };
      return { version: floor + 2, raised: true };
    },
  });
  return {
    cache,
    raised,
    set: (s: Partial<Snapshot>) => (snap = { ...snap, ...s }),
    fail: (f: boolean) => (failing = f),
    advance: (ms: number) => (clock += ms),
  };
}

describe("table cache status", () => {
  test("behind: only once the served table has lagged an announced version for longer than the grace", async () => {
    const f = fixture();
    await f.cache.refresh();
    assert.deepEqual(f.cache.status(), { served_version: 2, stored_version: 2, held: [], behind: false });
    // A newer version is announced but cannot be read (Redis gone after the publish).
    f.fail(true);
    f.cache.notify(4);
    await f.cache.refresh().catch(() => undefined);
    assert.equal(f.cache.status().stored_version, 4);
    assert.equal(f.cache.status().behind, false, "within the grace: a publish in flight");
    f.advance(BEHIND_GRACE_MS + 1);
    assert.equal(f.cache.status().behind, true);
    // Read again: caught up.
    f.fail(false);
    f.set({ version: 4 });
    await f.cache.refresh();
    assert.deepEqual(f.cache.status(), { served_version: 4, stored_version: 4, held: [], behind: false });
  });

  test("a store that went back in time is moved past the served version, and its state is served above it", async () => {
    const f = fixture();
    f.set({ version: 10 });
    await f.cache.refresh();
    f.set({ version: 6, deployments: [] });
    await f.cache.refresh();
    assert.deepEqual(f.raised, [10]);
    assert.equal(f.cache.current()!.version, 12);
    assert.deepEqual(f.cache.current()!.table.deployments, [], "the restored state");
  });

  test("raiseFloor moves the store only when a consumer is ahead of what this replica serves", async () => {
    const f = fixture();
    await f.cache.refresh();
    await f.cache.raiseFloor(2);
    assert.deepEqual(f.raised, [], "not ahead: nothing moves");
    await f.cache.raiseFloor(7);
    assert.deepEqual(f.raised, [7]);
    assert.equal(f.cache.current()!.version, 9);
  });
});
