// The local data plane on several cores (envoy/local/dataplane-processes.ts): N processes share one port
// through node:cluster; each routes with its own plugin VM(s) and table; all stop cleanly.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { startDataPlaneProcesses, type DataPlaneGroup } from "../../envoy/local/dataplane-processes.js";
import { PLUGIN } from "../control/harness.js";
import { controlVersion, deploy, mocks, startEnv, type Env } from "./support.js";

let env: Env | null = null;
let group: DataPlaneGroup | null = null;
after(async () => {
  await group?.close();
  await env?.stop();
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test("two data-plane processes share the port: each routes, new connections reach both, close stops both", async () => {
  env = await startEnv();
  const ups = await mocks(env, "proc-m", 2);
  await deploy(env, "proc-m", ups.map((m) => m.url));
  group = await startDataPlaneProcesses({
    controlUrl: env.control.url, pluginToken: PLUGIN, port: 0, host: "127.0.0.1", processes: 2,
    pluginConfig: { poll_interval_ms: 100, long_poll_seconds: 5, telemetry_interval_ms: 0 }, log: () => undefined,
  });
  assert.equal(group.pids.length, 2);
  assert.ok(group.pids.every((p) => p !== process.pid && alive(p)));
  await group.waitForTable(await controlVersion(env));
  // A new connection per request (no agent): the primary hands connections out round-robin.
  for (let i = 0; i < 20; i++) {
    const model = i < 10 ? "proc-m" : "no-such-model";
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${group!.url}/v1/chat/completions`, { method: "POST", agent: false, headers: { "content-type": "application/json", "x-model": model } }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      });
      req.on("error", reject);
      req.end(JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }));
    });
    assert.equal(status, i < 10 ? 200 : 404, `request ${i}`);
  }
  const unknown = await group.metric("gateway.unknown_model");
  assert.equal(unknown.reduce((a, b) => a + b, 0), 10, "each unknown-model request counted once");
  assert.ok(unknown.every((n) => n > 0), `both processes served (${unknown.join(", ")})`);
  assert.ok((await group.tableVersion()) >= (await controlVersion(env)));
  const pids = group.pids;
  await group.close();
  group = null;
  assert.ok(pids.every((p) => !alive(p)), "both processes exited");
});
