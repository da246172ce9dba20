// The local data plane with 4 plugin VMs (workers), as Envoy runs one per core: a deletion holds for
// every worker before the API answers it. Judged by send time: a request the client sent after it read
// the DELETE's 2xx must not reach the deleted deployment (or instance), whichever worker took it.
// (Only one VM polls the control service; the others learn of the new table through a shared-queue
// nudge, plugin/control/notify.ts. Before that, other workers kept routing to a deleted deployment until
// their next tick.)
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { LocalDataPlane } from "../../envoy/local/dataplane.js";
import { dataplane, deploy, mocks, stamp, startEnv, startLoad, type Env, type Shot } from "./support.js";

let env: Env;
let dp: LocalDataPlane;
const WORKERS = 4;

before(async () => {
  env = await startEnv();
  // Default tick (1 s): a worker that waited for its own tick would keep the old table for up to a second.
  dp = await dataplane(env, { workers: WORKERS, pluginConfig: { telemetry_interval_ms: 0, poll_interval_ms: 1000, long_poll_seconds: 20, control_timeout_ms: 25_000 } });
});

after(async () => {
  await env?.stop();
});

/** Requests an instance received that the client had sent after `t` (matched by x-req to the load's shots). */
function sentAfter(received: Array<{ req: { headers: Record<string, string | string[] | undefined> } }>, shots: Shot[], marker: string, t: number): number[] {
  const byId = new Map(shots.map((s) => [String(s.id), s]));
  return received
    .filter((x) => x.req.headers["x-test"] === marker)
    .map((x) => byId.get(String(x.req.headers["x-req"])))
    .filter((s): s is Shot => s !== undefined && s.t0 > t)
    .map((s) => s.id);
}

describe(`${WORKERS} workers`, { timeout: 40_000 }, () => {
  test("a deployment deleted under load gets no request sent after the DELETE response, on any worker", async () => {
    const ms = await mocks(env, "gone-model", 2);
    const received = ms.map((m) => stamp(m));
    const dep = await deploy(env, "gone-model", ms.map((m) => m.url));
    const load = startLoad(dp, "gone-model", { marker: "gone", concurrency: 12, maxRequests: 3_000, maxMs: 20_000 });
    await load.waitDone(200);
    const r = await env.api("DELETE", `/v1/deployments/${dep.id}`);
    const t2xx = Date.now();
    assert.equal(r.status, 204, r.text);
    const n = load.done();
    await load.waitDone(n + 300);
    const shots = await load.stop();
    const before = shots.filter((s) => s.t1 < t2xx && s.t1 > 0);
    const after = shots.filter((s) => s.t0 > t2xx);
    const late = received.flatMap((rx) => sentAfter(rx, shots, "gone", t2xx));
    console.log(`# delete deployment, ${WORKERS} workers: ${shots.length} requests (concurrency 12); before the 2xx ${before.filter((s) => s.status === 200).length} served; after it ${after.length} sent, ${after.filter((s) => s.status === 200).length} served by the deleted deployment, ${late.length} reached its instances`);
    assert.ok(before.filter((s) => s.status === 200).length >= 200, "it served load before the DELETE");
    assert.ok(after.length >= 250, "enough requests after the DELETE to judge");
    assert.deepEqual(late, [], "no request sent after the DELETE response reached the deleted deployment");
    // Afterwards the model is unknown here: the local data plane has no passthrough, so 404 model_not_found.
    assert.ok(after.every((s) => s.status === 404), `after the delete: ${JSON.stringify([...new Set(after.map((s) => s.status))])}`);
  });

  test("an instance deleted under load gets no request sent after the DELETE response; none fails", async () => {
    const ms = await mocks(env, "shrink-model", 3);
    const gone = stamp(ms[1]!);
    const dep = await deploy(env, "shrink-model", ms.map((m) => m.url));
    const load = startLoad(dp, "shrink-model", { marker: "shrink", concurrency: 12, maxRequests: 3_000, maxMs: 20_000 });
    await load.waitDone(200);
    const r = await env.api("DELETE", `/v1/deployments/${dep.id}/instances/i1`);
    const t2xx = Date.now();
    assert.equal(r.status, 204, r.text);
    const n = load.done();
    await load.waitDone(n + 300);
    const shots = await load.stop();
    const late = sentAfter(gone, shots, "shrink", t2xx);
    const failedShots = shots.filter((s) => s.status !== 200);
    console.log(`# delete instance, ${WORKERS} workers: ${shots.length} requests, ${failedShots.length} failed; ${late.length} sent after the 2xx reached the deleted instance`);
    assert.deepEqual(late, []);
    assert.equal(failedShots.length, 0, JSON.stringify(failedShots.slice(0, 3)));
  });
});
