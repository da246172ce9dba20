// The local data plane with several control replicas (issue 20): the plugin's calls go round-robin over
// them like envoy/bootstrap.yaml's gateway_control; a replica that dies is ejected after EJECT_AFTER
// failed calls, and the table long-poll resumes on the other one — a change made there reaches the
// plugin, telemetry keeps landing, routing never stops.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { EJECT_AFTER } from "../../envoy/local/bridge.js";
import { startLocalDataPlane, type LocalDataPlane } from "../../envoy/local/dataplane.js";
import { startMockOpenAI, type MockOpenAI } from "../../envoy/local/mock-openai.js";
import { PLUGIN, registerModel, startReplica, withRedis, type Replica } from "../control/harness.js";
import type { RedisServer } from "../support/redis.js";

let redis: RedisServer | null = null;
const replicas: Replica[] = [];
const mocks: MockOpenAI[] = [];
let dp: LocalDataPlane | null = null;
after(async () => {
  await dp?.close();
  for (const r of replicas) await r.stop().catch(() => undefined);
  for (const m of mocks) await m.close();
  await redis?.close();
});

async function deployOn(r: Replica, model: string): Promise<number> {
  const m = await startMockOpenAI({ model });
  mocks.push(m);
  await registerModel(r.api, model);
  const c = await r.api("POST", "/v1/deployments", { body: { id: `dep-${model}`, model, instances: [{ id: "i0", url: m.url }] } });
  assert.equal(c.status, 201, c.text);
  return (await r.api("GET", "/v1/routing-table", { token: PLUGIN })).body.version as number;
}

async function chat(model: string): Promise<number> {
  const res = await fetch(`${dp!.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", "x-model": model }, body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }) });
  await res.text();
  return res.status;
}

test("two control replicas: calls spread over both; one dies → ejected, the long-poll resumes on the other, no change missed", async () => {
  redis = await withRedis();
  const a = await startReplica(redis.url, { REPLICA_ID: "ctl-a" });
  const b = await startReplica(redis.url, { REPLICA_ID: "ctl-b" });
  replicas.push(a, b);
  const v1 = await deployOn(a, "rep-one");
  dp = await startLocalDataPlane({
    controlUrl: `${a.url},${b.url}`, pluginToken: PLUGIN, port: 0, log: () => undefined,
    pluginConfig: { poll_interval_ms: 100, long_poll_seconds: 2, telemetry_interval_ms: 200, control_timeout_ms: 6000 },
  });
  await dp.waitForTable(v1, 15_000);
  assert.equal(await chat("rep-one"), 200);
  await dp.bridge.waitFor(() => new Set(dp!.bridge.calls.filter((c) => c.status !== null && c.status < 500).map((c) => c.base)).size === 2, 15_000, "calls answered by both replicas");

  await a.stop();
  const before = dp.bridge.calls.length;
  // A change made through the survivor reaches the plugin and routes.
  const v2 = await deployOn(b, "rep-two");
  await dp.waitForTable(v2, 20_000);
  assert.equal(await chat("rep-two"), 200);
  assert.equal(await chat("rep-one"), 200);
  // Telemetry keeps landing (on b).
  await dp.bridge.waitFor(() => dp!.bridge.calls.slice(before).some((c) => c.path === "/v1/telemetry" && c.status === 200 && c.base === b.url), 10_000, "a telemetry batch accepted by b");
  // The dead replica was ejected: after its first failures, nothing more went to it for the ejection period.
  const toA = dp.bridge.calls.slice(before).filter((c) => c.base === a.url);
  assert.ok(toA.length >= 1 && toA.length <= EJECT_AFTER + 1, `calls to the dead replica: ${toA.length}`);
  assert.ok(toA.every((c) => c.status === null || c.status === 503 || c.error !== null));
});
