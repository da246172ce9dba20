// Preloaded into the control process under measurement (`node --import tsx --import <this> control/src/server.ts`):
// once a second it sends the parent, over the IPC channel, what /proc cannot tell: V8 heap, external
// memory, event-loop utilisation and event-loop delay (p99/max over the second). Nothing else changes.
import { monitorEventLoopDelay, performance } from "node:perf_hooks";

export interface RuntimeSample {
  type: "runtime";
  heapUsedMb: number;
  heapTotalMb: number;
  externalMb: number;
  /** Share of the second the event loop was busy (0..1). */
  elu: number;
  /** Event-loop delay over the second, ms. */
  delayP99Ms: number;
  delayMaxMs: number;
}

if (process.send) {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  let elu = performance.eventLoopUtilization();
  const mb = (b: number) => Math.round(b / 104_857.6) / 10;
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    const next = performance.eventLoopUtilization();
    const sample: RuntimeSample = {
      type: "runtime",
      heapUsedMb: mb(m.heapUsed),
      heapTotalMb: mb(m.heapTotal),
      externalMb: mb(m.external),
      elu: Math.round(performance.eventLoopUtilization(next, elu).utilization * 1000) / 1000,
      delayP99Ms: Math.round(delay.percentile(99) / 1e4) / 100,
      delayMaxMs: Math.round(delay.max / 1e4) / 100,
    };
    elu = next;
    delay.reset();
    if (process.connected) process.send?.(sample);
  }, 1000);
  timer.unref();
  process.channel?.unref();
}
