// Issue 20's fault test, short form (the long form is `npm run bench:faults`, whose table is in README):
// real Redis primary + 2 replicas + 3 sentinels, 3 control replica processes, 2 local data planes, 4 mock instances,
// steady traffic and API writes; the Redis primary and the control replica holding the probe lease are
// SIGKILLed and one data plane's control connections cut, one at a time (test/faults/fleet.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { runFleet, SHORT } from "./fleet.js";

test("faults one at a time: no client request fails, no acknowledged write is lost, writes/probing/tables recover, every data plane ends on the store's version", { timeout: 150_000 }, async (t) => {
  const r = await runFleet({ ...SHORT, log: (l) => t.diagnostic(l) });
  for (const row of r.rows) t.diagnostic(`${row.fault}: requests ${row.requests}, failed ${row.failed}; writes ${row.writeAttempts} (failed ${row.writeFailures}, back in ${row.writesBackMs} ms); probes back in ${row.probesBackMs} ms; tables in ${row.tablesBackMs} ms`);
  assert.deepEqual(r.unexpected, [], "API answers other than 201 / 503 / 409 in progress");
  assert.equal(r.rows.length, 4);
  for (const row of r.rows) {
    assert.ok(row.requests > 0, `${row.fault}: traffic ran`);
    assert.deepEqual(row.failures, [], `${row.fault}: client requests failed while every instance was healthy`);
    assert.ok(row.writeAttempts > 0, `${row.fault}: writes ran`);
  }
  // The primary's loss is seen by writes (the election takes ≥ down-after-milliseconds), then they succeed again.
  assert.ok(r.rows[1]!.writeFailures > 0 && r.rows[1]!.writesBackMs > 0, "the Redis failover interrupted writes");
  // Probing resumes on another replica within about one lease period after the holder died.
  assert.ok(r.rows[2]!.probesBackMs < SHORT.leaseMs + 5_000, `probing back in ${r.rows[2]!.probesBackMs} ms`);
  assert.ok(r.acknowledged > 20, `acknowledged writes: ${r.acknowledged}`);
  assert.deepEqual(r.lost, [], "acknowledged writes lost");
  assert.deepEqual(r.dataPlaneVersions, [r.storeVersion, r.storeVersion], "every data plane on the store's table version");
});
