// The production path stays lean (issue 19): the local data plane runs the host with `recording: false`,
// so routed requests — streamed or not, with telemetry and passive ejection on — leave no per-request
// record behind (callback names, foreign calls, the clear_route_cache each routed request makes). The
// same requests on a recording host do leave them: the check can fail.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost } from "../../envoy/local/host/index.js";
import { DEFAULT_PLUGIN_WASM } from "../../envoy/local/dataplane.js";
import { chat, dataplane, deploy, mocks, startEnv, type Env } from "./support.js";

let env: Env | null = null;
after(async () => {
  await env?.stop();
});

test("the local data plane records nothing per request; a recording host does", async () => {
  env = await startEnv();
  const dp = await dataplane(env, { workers: 2 });
  assert.equal(dp.host.recording, false, "the data plane host is the production path");
  const upstreams = await mocks(env, "lean-m", 2);
  await deploy(env, "lean-m", upstreams.map((m) => m.url));
  for (let i = 0; i < 40; i++) {
    const r = await chat(dp, "lean-m", i % 4 === 0 ? { stream: true } : { headers: { "x-model": "lean-m" } });
    assert.equal(r.status, 200, r.text);
  }
  assert.equal(dp.host.foreignCalls.length, 0, "no foreign-call records (each routed request clears the route cache)");
  for (const w of [0, 1]) {
    const s = dp.host.worker(w).stream();
    s.requestHeaders([[":method", "GET"], [":path", "/health-of-nothing"], [":authority", "gw"], [":scheme", "http"]], true);
    assert.deepEqual(s.result().callbacks, [], `worker ${w}: no callback names recorded`);
    s.finish();
  }

  // The same plugin on a recording host keeps both (what tests read), so the assertions above can fail.
  const recording = await ProxyWasmHost.start({ wasm: DEFAULT_PLUGIN_WASM, configuration: JSON.stringify({ control_cluster: "c" }), clusters: ["c"], allowOnHeadersStopIteration: true });
  assert.equal(recording.recording, true);
  const s = recording.worker(0).stream();
  s.requestHeaders([[":method", "GET"], [":path", "/x"], [":authority", "gw"], [":scheme", "http"]], true);
  assert.ok(s.result().callbacks.length > 0, "callbacks recorded");
  recording.shutdown();
});
