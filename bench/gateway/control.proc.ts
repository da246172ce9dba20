// Child process: the control service of "ours" and its Redis, in their own processes so the bench counts
// their CPU time and RSS as part of the stack (while ours is loaded they see the data plane's long-poll,
// its telemetry and their own health probes of the upstreams).
// Redis: test/support/redis.ts startRedis (redis-server, a child of this process, 127.0.0.1, in memory;
// `npm start` keeps an append-only file with fsync every second). Control: the configuration `npm start`
// gives it (envoy/local/launcher.ts: the config defaults, LOG_LEVEL info; log lines counted, not kept),
// not the test harness's fast ticks and debug logs, on 127.0.0.1:<free port>, the harness's tokens;
// BENCH_CONTROL_TEST_CONFIG=1 uses the harness's test configuration instead (test/control/harness.ts).
// Then a deployment of BENCH_MODEL on BENCH_BASES (JSON list of upstream base URLs) at BENCH_WEIGHTS_JSON
// (JSON list), strategy BENCH_STRATEGY (default weighted_round_robin).
// Ready payload: { url, version (routing table with the deployment), redisPid }.
import { loadConfig } from "../../control/src/config.js";
import { startControl, type Control } from "../../control/src/control.js";
import { startRedis } from "../../test/support/redis.js";
import { ADMIN, PLUGIN, client, registerModel, testConfig } from "../../test/control/harness.js";
import { serveParent } from "./ipc.js";
import { childPids, procComm } from "./stats.js";

const model = process.env.BENCH_MODEL ?? "bench-gw";
const bases = JSON.parse(process.env.BENCH_BASES ?? "[]") as string[];
const weights = JSON.parse(process.env.BENCH_WEIGHTS_JSON ?? "[]") as number[];
if (bases.length === 0 || weights.length !== bases.length) throw new Error("BENCH_BASES and BENCH_WEIGHTS_JSON (same length) are required");
const testCfg = process.env.BENCH_CONTROL_TEST_CONFIG === "1";

const redis = await startRedis();
let logLines = 0;
let control: Control;
try {
  let config: ReturnType<typeof testConfig>;
  if (testCfg) config = testConfig(redis.url);
  else {
    const loaded = loadConfig({
      LOG_LEVEL: "info",
      REDIS_URL: redis.url,
      CONTROL_HOST: "127.0.0.1",
      CONTROL_PORT: "0",
      CONTROL_ADMIN_TOKENS: ADMIN,
      CONTROL_PLUGIN_TOKENS: PLUGIN,
      DRAIN_TIMEOUT_SECONDS: "0.2", // only the stop at the end of the bench
    });
    if (!loaded.ok) throw new Error(`control config: ${JSON.stringify(loaded.issues)}`);
    config = loaded.config;
  }
  control = await startControl(config, { logSink: () => void logLines++ });
} catch (e) {
  await redis.close();
  throw e;
}
const stop = async () => {
  await control.stop();
  await redis.close();
};

const api = client(control.url);
await registerModel(api, model);
const created = await api("POST", "/v1/deployments", {
  body: { id: `dep-${model}`, model, strategy: process.env.BENCH_STRATEGY ?? "weighted_round_robin", instances: bases.map((url, i) => ({ id: `i${i}`, url, weight: weights[i] })) },
});
if (created.status !== 201) {
  await stop();
  throw new Error(`deployment create: ${created.status} ${created.text}`);
}
const t = await api("GET", "/v1/routing-table", { token: PLUGIN });
if (t.status !== 200) {
  await stop();
  throw new Error(`routing table: ${t.status} ${t.text}`);
}

const redisPid = childPids(process.pid).find((p) => procComm(p).startsWith("redis-server")) ?? null;

const parent = serveParent({ stats: () => ({ logLines, config: testCfg ? "test" : "npm start" }) }, stop);
parent.ready({ url: control.url, version: t.body.version as number, redisPid });
