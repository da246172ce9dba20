// End-to-end scenarios through the local data plane (build/plugin.wasm on the test host + the Node
// forwarder), a real control service and Redis, mock instances on 127.0.0.1, under bounded load:
// cross-region failover and return, rolling migration of an endpoint, deletion of an instance.
// Each test prints its measured numbers as `# …` lines.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { LocalDataPlane } from "../../envoy/local/dataplane.js";
import { controlVersion, dataplane, deploy, failed, mocks, stamp, startEnv, startLoad, waitFor, type Env, type Shot, summary, byInstance } from "./support.js";

let env: Env;
let dp: LocalDataPlane;

before(async () => {
  env = await startEnv();
  // 2 workers (2 plugin VMs, each with its own passive-ejection state); the shortest passive cooldown the
  // contract allows, so a passively ejected instance is a candidate again 1 s later.
  dp = await dataplane(env, { workers: 2, pluginConfig: { telemetry_interval_ms: 200, poll_interval_ms: 100, long_poll_seconds: 5, control_timeout_ms: 6000, passive_cooldown_ms: 1000 } });
});

after(async () => {
  await env?.stop();
});

const note = (line: string) => console.log(line);

async function instanceStates(dep: string): Promise<Record<string, string>> {
  const r = await env.api("GET", `/v1/deployments/${dep}`);
  assert.equal(r.status, 200, r.text);
  return Object.fromEntries(r.body.instances.map((i: { id: string; state: string }) => [i.id, i.state]));
}

describe("scenarios through the local data plane", { timeout: 40_000 }, () => {
  test("cross-region failover: primaries down → backup region serves with zero failures; primaries back → all traffic returns to them", async () => {
    // #0, #1: region eu-west (priority 0); #2, #3: region us-east (priority 1).
    const ms = await mocks(env, "fo-model", 4);
    const dep = await deploy(env, "fo-model", ms.map((m) => m.url), {
      strategy: "failover",
      instances: [
        { priority: 0, region: "eu-west" },
        { priority: 0, region: "eu-west" },
        { priority: 1, region: "us-east" },
        { priority: 1, region: "us-east" },
      ],
      health_check: { interval_seconds: 0.1, timeout_seconds: 0.3, unhealthy_threshold: 2, healthy_threshold: 2 },
    });
    const primaries = ["i0", "i1"];

    // Steady state: everything on the primary region.
    const warm = startLoad(dp, "fo-model", { marker: "fo-warm", concurrency: 8, maxRequests: 80 });
    const warmShots = await warm.stop();
    assert.deepEqual(summary(warmShots).failed, 0, JSON.stringify(summary(warmShots)));
    assert.deepEqual(byInstance(warmShots, 4).slice(2), [0, 0], "the backup region takes nothing while the primaries are up");

    // Primary region down (listeners closed, open sockets destroyed) under load.
    const load = startLoad(dp, "fo-model", { marker: "fo", concurrency: 12, maxRequests: 4_000, maxMs: 25_000 });
    await load.waitDone(60);
    const tDown = Date.now();
    await ms[0]!.stop();
    await ms[1]!.stop();
    await waitFor(async () => {
      const s = await instanceStates(dep.id);
      return primaries.every((i) => s[i] === "ejected");
    }, 10_000, "the control service to eject both primaries");
    const tEjected = Date.now();
    const vEjected = await controlVersion(env);
    await dp.waitForTable(vEjected);
    const tEjectedInDp = Date.now();
    const nDown = load.done();
    await load.waitDone(nDown + 100); // backup-only traffic

    // Primary region back.
    await ms[0]!.start();
    await ms[1]!.start();
    const tUp = Date.now();
    await waitFor(async () => {
      const s = await instanceStates(dep.id);
      return primaries.every((i) => s[i] === "active");
    }, 10_000, "the control service to re-admit both primaries");
    const tReadmitted = Date.now();
    await dp.waitForTable(await controlVersion(env));
    // The data plane uses them again once the table says active and no worker excludes them passively any more.
    const passive = (i: string) => dp.host.metrics.get(`gateway.deployment.${dep.id}.instance.${i}.passive_ejected`)?.value ?? 0;
    await waitFor(() => primaries.every((i) => passive(i) === 0), 5_000, "passive ejections of the primaries to end");
    const tConverged = Date.now();
    const nBack = load.done();
    await load.waitDone(nBack + 200);
    const shots = await load.stop();

    const s = summary(shots);
    const during = shots.filter((x) => x.t0 >= tDown && x.t0 < tUp);
    const firstPrimaryAfterUp = shots.filter((x) => x.t0 >= tUp && (x.by === 0 || x.by === 1)).sort((a, b) => a.t1 - b.t1)[0];
    const afterConverged = shots.filter((x) => x.t0 > tConverged);
    note(`failover: ${s.total} requests (concurrency 12), ${s.failed} failed; per instance [eu0, eu1, us0, us1] = ${byInstance(shots, 4).join(", ")}`);
    note(`failover: primaries down → control ejected both in ${tEjected - tDown} ms, data plane on that table ${tEjectedInDp - tDown} ms; ${during.length} requests while the region was down, ${during.filter(failed).length} failed, max latency ${Math.max(...during.map((x) => x.t1 - x.t0))} ms`);
    note(`failover: primaries up → re-admitted in ${tReadmitted - tUp} ms, passive exclusions over ${tConverged - tUp} ms after restart, first primary-served request finished ${firstPrimaryAfterUp ? firstPrimaryAfterUp.t1 - tUp : "n/a"} ms after restart; after convergence ${afterConverged.length} requests: ${byInstance(afterConverged, 4).join(", ")}`);
    assert.equal(s.failed, 0, JSON.stringify(s));
    assert.ok(during.filter((x) => x.by === 2 || x.by === 3).length >= 100, "the backup region served while the primaries were down");
    assert.ok(afterConverged.length >= 150);
    assert.deepEqual(byInstance(afterConverged, 4).slice(2), [0, 0], "after re-admission every request goes to the primary region");
    const [p0, p1] = byInstance(afterConverged, 4);
    assert.ok(p0! > 0 && p1! > 0, "both primaries serve again");
  });

  test("failover with more primaries than the endpoint list holds (3 > 1 + max_fallbacks 2): zero failures while the region goes down (a backup is always among the fallbacks)", async () => {
    // #0–#2 primaries (priority 0), #3 backup (priority 1). A pick lists itself + 2 fallbacks; the failover
    // picker makes the second fallback the first instance of the next tier, so even while the whole region
    // is down and not yet ejected every request has a live host in its list (the retry reaches the backup).
    const ms = await mocks(env, "fo3-model", 4);
    const dep = await deploy(env, "fo3-model", ms.map((m) => m.url), {
      strategy: "failover",
      instances: [{ priority: 0 }, { priority: 0 }, { priority: 0 }, { priority: 1 }],
      health_check: { interval_seconds: 0.1, timeout_seconds: 0.3, unhealthy_threshold: 2, healthy_threshold: 2 },
    });
    const load = startLoad(dp, "fo3-model", { marker: "fo3", concurrency: 12, maxRequests: 3_000, maxMs: 20_000 });
    await load.waitDone(60);
    const tDown = Date.now();
    for (const m of ms.slice(0, 3)) await m.stop();
    await waitFor(async () => {
      const st = await instanceStates(dep.id);
      return ["i0", "i1", "i2"].every((i) => st[i] === "ejected");
    }, 10_000, "the control service to eject the primaries");
    await dp.waitForTable(await controlVersion(env));
    const tEjected = Date.now();
    const n = load.done();
    await load.waitDone(n + 150);
    const shots = await load.stop();
    const bad = shots.filter(failed);
    const lastBad = bad.length > 0 ? Math.max(...bad.map((x) => x.t1)) - tDown : null;
    note(`failover 3 primaries: ${shots.length} requests, ${bad.length} failed (${[...new Set(bad.map((x) => `${x.status} ${x.text.slice(0, 60)}`))].join(" | ")}), the last one ${lastBad ?? "-"} ms after the region went down; control ejection in the data plane ${tEjected - tDown} ms`);
    // The failover picker lists the next tier as the second fallback, so every request has a backup.
    assert.equal(bad.length, 0, `no request fails while the primary region goes down (got ${bad.length})`);
    assert.equal(shots.filter((x) => x.t0 > tEjected).filter(failed).length, 0, "none once the data plane has the control's ejections");
    assert.ok(byInstance(shots.filter((x) => x.t0 > tEjected), 4)[3]! >= 100, "the backup serves");
  });

  test("rolling migration of an endpoint under load: zero failed requests; after it completes nothing reaches the old endpoint", async () => {
    // #0 (old endpoint of i0), #1 (i1, untouched), #2 (the new endpoint of i0).
    const ms = await mocks(env, "mig-model", 3);
    const oldStamps = stamp(ms[0]!);
    const dep = await deploy(env, "mig-model", [ms[0]!.url, ms[1]!.url], { health_check: { interval_seconds: 0.05, timeout_seconds: 0.3, healthy_threshold: 3 } });
    const load = startLoad(dp, "mig-model", { marker: "mig", concurrency: 12, maxRequests: 4_000, maxMs: 20_000 });
    await load.waitDone(50);
    const tStart = Date.now();
    const m = await env.api("POST", `/v1/deployments/${dep.id}/migrations`, { body: { instance_id: "i0", url: ms[2]!.url, new_instance_id: "i0-new", drain_timeout_seconds: 0.3 } });
    assert.equal(m.status, 202, m.text);
    const loc = m.headers.get("location")!;
    let mig: { phase: string; history: { phase: string; at: string }[] } = m.body;
    await waitFor(async () => {
      mig = (await env.api("GET", loc)).body;
      return mig.phase === "succeeded" || mig.phase === "rolled_back";
    }, 10_000, "the migration to finish");
    assert.equal(mig.phase, "succeeded", JSON.stringify(mig));
    const tDone = Date.now();
    await dp.waitForTable(await controlVersion(env));
    const tDoneInDp = Date.now();
    const oldAtDone = oldStamps.filter((x) => x.req.headers["x-test"] === "mig").length;
    const nDone = load.done();
    await load.waitDone(nDone + 200);
    const shots = await load.stop();

    const switchAt = Date.parse(mig.history.find((h) => h.phase === "draining")!.at);
    const oldChats = oldStamps.filter((x) => x.req.headers["x-test"] === "mig");
    const lastOld = Math.max(...oldChats.map((x) => x.at));
    const afterDone = shots.filter((x) => x.t0 > tDoneInDp);
    const s = summary(shots);
    note(`migration: ${s.total} requests (concurrency 12), ${s.failed} failed; served by [old, other, new] = ${byInstance(shots, 3).join(", ")}; migration took ${tDone - tStart} ms`);
    note(`migration: last request at the old endpoint ${lastOld - switchAt} ms after the switch (old → draining); ${oldChats.filter((x) => x.at > switchAt).length} requests reached it after the switch; after completion (table in the data plane) ${afterDone.length} requests, old endpoint got ${oldChats.length - oldAtDone}`);
    assert.equal(s.failed, 0, JSON.stringify(s));
    assert.equal(oldChats.length - oldAtDone, 0, "no request reaches the old endpoint after the migration completed");
    assert.equal(byInstance(afterDone, 3)[0], 0);
    assert.ok(byInstance(afterDone, 3)[2]! > 50, "the new endpoint takes its share");
    assert.ok(lastOld - switchAt < 1_000, `the old endpoint stops getting requests within 1 s of the switch (got ${lastOld - switchAt} ms)`);
  });

  test("deleting an instance under load: none fails; nothing reaches it once the data plane has the table (bound measured from the 204)", async () => {
    const ms = await mocks(env, "del-model", 3);
    const goneStamps = stamp(ms[1]!);
    const dep = await deploy(env, "del-model", ms.map((m) => m.url));
    const load = startLoad(dp, "del-model", { marker: "del", concurrency: 12, maxRequests: 4_000, maxMs: 20_000 });
    await load.waitDone(100);
    const r = await env.api("DELETE", `/v1/deployments/${dep.id}/instances/i1`);
    const t204 = Date.now();
    assert.equal(r.status, 204, r.text);
    await dp.waitForTable(await controlVersion(env));
    const tInDp = Date.now();
    const nDel = load.done();
    await load.waitDone(nDel + 200);
    const shots = await load.stop();

    const chats = goneStamps.filter((x) => x.req.headers["x-test"] === "del");
    const last = Math.max(...chats.map((x) => x.at));
    const late = chats.filter((x) => x.at > tInDp);
    const s = summary(shots);
    note(`delete: ${s.total} requests (concurrency 12), ${s.failed} failed; per instance ${byInstance(shots, 3).join(", ")}`);
    note(`delete: 204 → table in every worker ${tInDp - t204} ms (includes the DELETE's own response path); last request received by the deleted instance ${last - t204} ms after the 204; ${chats.filter((x) => x.at > t204).length} received after the 204, ${late.length} after the data plane had the table`);
    assert.equal(s.failed, 0, JSON.stringify(s));
    // A request picked just before the table arrived can still land a moment later: judge requests by
    // when they were sent, not when the instance saw them.
    assert.equal(byInstance(shots.filter((x) => x.t0 > tInDp), 3)[1], 0, "no request sent after every worker has the table reaches the deleted instance");
    assert.ok(last - t204 < 1_000, `propagation bound 1 s (measured ${last - t204} ms)`);
    const afterShots = shots.filter((x) => x.t0 > tInDp);
    assert.ok(afterShots.length >= 150 && byInstance(afterShots, 3)[1] === 0);
  });
});
