// Child process: our local data plane (envoy/local/dataplane.ts: build/plugin.wasm on the test host,
// BENCH_DP_WORKERS plugin VMs, default 1, as `npm start` runs it) in its own process and event loop,
// polling the control service at BENCH_CONTROL_URL like `npm start` does (plugin defaults: poll 500 ms,
// long-poll 20 s, telemetry and passive ejection on). Ready once every worker uses table
// BENCH_TABLE_VERSION. Plugin warnings/errors go to stderr; other log lines are counted only.
import { startDataPlaneProcesses } from "../../envoy/local/dataplane-processes.js";
import { serveParent } from "./ipc.js";

const controlUrl = process.env.BENCH_CONTROL_URL;
const token = process.env.BENCH_PLUGIN_TOKEN;
const version = Number(process.env.BENCH_TABLE_VERSION ?? 0);
const workers = Number(process.env.BENCH_DP_WORKERS ?? 1);
/** Data-plane processes on one port (GATEWAY_PROCESSES; envoy/local/dataplane-processes.ts), children of this one. */
const processes = Number(process.env.BENCH_DP_PROCESSES ?? 1);
/** BENCH_DP_PLUGIN_CONFIG: JSON merged into the plugin's configuration (experiments, e.g. telemetry off). */
const pluginConfig = process.env.BENCH_DP_PLUGIN_CONFIG ? (JSON.parse(process.env.BENCH_DP_PLUGIN_CONFIG) as Record<string, unknown>) : undefined;
if (!controlUrl || !token) throw new Error("BENCH_CONTROL_URL and BENCH_PLUGIN_TOKEN are required");

let lines = 0;
let warnings = 0;
const dp = await startDataPlaneProcesses({
  processes,
  controlUrl,
  pluginToken: token,
  port: 0,
  host: "127.0.0.1",
  workers,
  ...(pluginConfig ? { pluginConfig } : {}),
  ...(process.env.BENCH_DP_WASM ? { wasm: process.env.BENCH_DP_WASM, passthroughUrl: process.env.BENCH_DP_PASSTHROUGH ?? null } : {}),
  log: (l) => {
    lines++;
    if (/\] (warn|error|critical):|plugin failure|internal error|\[dataplane\]/.test(l)) {
      warnings++;
      if (warnings <= 20) process.stderr.write(`[local data plane] ${l}\n`);
    }
  },
});
// Another module (BENCH_DP_WASM) may not read the routing table at all.
if (!process.env.BENCH_DP_WASM) await dp.waitForTable(version, 15_000);

const parent = serveParent(
  { stats: async () => ({ logLines: lines, warnings, tableVersion: await dp.tableVersion() }) },
  () => dp.close(),
);
parent.ready({ url: dp.url, workers, processes });
