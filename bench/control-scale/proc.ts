// /proc readers for one process: CPU time (utime + stime of every thread, clock ticks) and memory
// (VmRSS, VmHWM), sampled once a second into per-second CPU% of one core.
import { readFileSync } from "node:fs";
import { procStat, type ProcStat } from "../support.js";

export { procStat, type ProcStat };

export interface ProcMem {
  rssKb: number;
  hwmKb: number;
}

export function procMem(pid: number): ProcMem | null {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? NaN);
    return { rssKb: kb("VmRSS"), hwmKb: kb("VmHWM") };
  } catch {
    return null;
  }
}

export interface Sample {
  /** Seconds since the sampler started. */
  t: number;
  phase: string;
  /** CPU% of one core over the last interval (100 = one core busy). */
  cpu: number;
  rssMb: number;
  hwmMb: number;
}

/** Samples each named pid every `everyMs`; `phase` tags the samples (only "window" ones are summarised). */
export class Sampler {
  readonly samples = new Map<string, Sample[]>();
  phase = "start";
  private timer: NodeJS.Timeout | null = null;
  private last = new Map<string, { at: number; cpu: number }>();
  private readonly t0 = performance.now();

  constructor(private readonly pids: () => Record<string, number | null>, private readonly everyMs = 1000) {}

  start(): void {
    this.tick();
    this.timer = setInterval(() => this.tick(), this.everyMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Forget the CPU baseline of `name` (a new process under the same name). */
  reset(name: string): void {
    this.last.delete(name);
  }

  private tick(): void {
    const now = performance.now();
    for (const [name, pid] of Object.entries(this.pids())) {
      if (pid === null) continue;
      const st = procStat(pid);
      const mem = procMem(pid);
      if (!st || !mem) continue;
      const prev = this.last.get(name);
      this.last.set(name, { at: now, cpu: st.cpuSeconds });
      if (!prev) continue;
      const dt = (now - prev.at) / 1000;
      if (dt <= 0) continue;
      const list = this.samples.get(name) ?? [];
      this.samples.set(name, list);
      list.push({ t: Math.round((now - this.t0) / 10) / 100, phase: this.phase, cpu: Math.round(((st.cpuSeconds - prev.cpu) / dt) * 1000) / 10, rssMb: Math.round(mem.rssKb / 102.4) / 10, hwmMb: Math.round(mem.hwmKb / 102.4) / 10 });
    }
  }

  of(name: string, phase: string): Sample[] {
    return (this.samples.get(name) ?? []).filter((s) => s.phase === phase);
  }
}
