// Measures the host's per-request cost: `npx tsx test/host/bench-fast-path.ts [iterations]`.
// worker.runRequest = create + on_request_headers + on_log + on_done + on_delete, no result object.
import { buildFixture } from "./build-fixture.js";
import { ProxyWasmHost } from "../../envoy/local/host/host.js";
import type { HeaderPairs } from "../../envoy/local/host/types.js";

const iterations = Number(process.argv[2] ?? 1_000_000);
const headers: HeaderPairs = [[":method", "POST"], [":path", "/v1/chat/completions"], [":authority", "gw"], ["content-type", "application/json"]];

/** Runs `rounds` timed rounds after a warm-up; prints median and best (the machine is shared: noisy). */
function measure(label: string, run: () => void, n: number, rounds = 5): void {
  for (let i = 0; i < Math.min(n, 50_000); i++) run(); // warm up (JIT, wasm tier-up)
  const perRound: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) run();
    perRound.push(Number(process.hrtime.bigint() - t0) / n);
  }
  perRound.sort((a, b) => a - b);
  console.log(`${label.padEnd(50)} median ${perRound[rounds >> 1]!.toFixed(0).padStart(6)} ns/request, best ${perRound[0]!.toFixed(0).padStart(6)}`);
}

const noop = await ProxyWasmHost.start({ wasm: await buildFixture("noop") });
const w = noop.worker(0);
measure("noop module, worker.runRequest", () => w.runRequest(headers), iterations);
measure("noop module, host.request (full result)", () => noop.request({ headers }), Math.floor(iterations / 10));

const probe = await ProxyWasmHost.start({ wasm: await buildFixture("probe"), logLevel: "warn" });
const pw = probe.worker(0);
// probe reads x-op (one get_header_map_value through malloc) and tracks the context in a Map.
measure("probe module (1 header read), worker.runRequest", () => pw.runRequest(headers), Math.floor(iterations / 2));
