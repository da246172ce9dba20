// Shared bits of the end-to-end benches (propagation, detection): machine line, percentiles, markdown
// table, JSON result file, a probe request through the data plane, and a hard deadline that stops
// everything the bench started even when it hangs.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import type { LocalDataPlane } from "../envoy/local/dataplane.js";
import type { MockOpenAI } from "../envoy/local/mock-openai.js";

export const RESULTS_DIR = fileURLToPath(new URL("./results/", import.meta.url));

export interface Machine {
  cpu: string;
  cores: number;
  node: string;
  platform: string;
  loadStart: number[];
  loadEnd: number[];
}

export function machineStart(): Machine {
  const c = cpus();
  return { cpu: c[0]?.model.trim() ?? "unknown", cores: c.length, node: process.version, platform: `${process.platform} ${process.arch}`, loadStart: loadavg(), loadEnd: [] };
}

export function machineEnd(m: Machine): void {
  m.loadEnd = loadavg();
}

export function machineLines(m: Machine): string[] {
  const la = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(" ");
  return [
    `machine: ${m.cpu}, ${m.cores} cores, node ${m.node}, ${m.platform}`,
    `load average (1/5/15 min) at start ${la(m.loadStart)}, at end ${la(m.loadEnd)}`,
  ];
}

/** Nearest-rank percentile (p in 0..100) of a non-empty list; NaN for an empty one. */
export function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const k = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[k]!;
}

export const fmt = (x: number, digits = 1): string => (Number.isFinite(x) ? x.toFixed(digits) : "-");

export function markdownTable(head: string[], rows: string[][]): string {
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => "| " + r.map((x, c) => (c === 0 ? x.padEnd(widths[c]!) : x.padStart(widths[c]!))).join(" | ") + " |";
  return [line(head), "|" + widths.map((w, c) => (c === 0 ? ":" + "-".repeat(w + 1) : "-".repeat(w + 1) + ":")).join("|") + "|", ...rows.map(line)].join("\n");
}

/** Writes bench/results/<name>-<ISO date>.json and returns its path. */
export function writeResult(name: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = `${RESULTS_DIR}${name}-${new Date().toISOString().replace(/:/g, "-")}.json`;
  writeFileSync(file, JSON.stringify(data, null, 2) + "\n");
  return file;
}

/** One request through the data plane, as the probe loops send them. */
export interface Shot {
  id: number;
  /** performance.now() when the request was sent / when its answer was read. */
  sent: number;
  done: number;
  status: number;
  /** Index of the mock that answered ("hi from <model> #N"), null if none. */
  by: number | null;
  /** x-gateway-destination-endpoint as the instance received it ("" when unknown). */
  endpoints: string;
  /** The data plane's table version (gauge) when the request was sent. */
  version: number;
  error: string | null;
}

let nextId = 0;

/**
 * A header-routed chat completion through the data plane; the endpoint header the plugin set is read
 * from the mock that served it (matched by `x-req`).
 */
export async function shoot(dp: LocalDataPlane, model: string, ms: MockOpenAI[]): Promise<Shot> {
  const id = ++nextId;
  const shot: Shot = { id, sent: performance.now(), done: 0, status: 0, by: null, endpoints: "", version: dp.tableVersion(), error: null };
  try {
    const res = await fetch(`${dp.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-model": model, "x-req": String(id) },
      body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
    });
    shot.status = res.status;
    const text = await res.text();
    const m = /hi from [^#"]*#(\d+)/.exec(text);
    shot.by = m ? Number(m[1]) : null;
    if (shot.by !== null) {
      const reqs = ms[shot.by]?.requests ?? [];
      for (let k = reqs.length - 1; k >= 0 && k >= reqs.length - 50; k--) {
        if (reqs[k]!.headers["x-req"] === String(id)) {
          const h = reqs[k]!.headers["x-gateway-destination-endpoint"];
          shot.endpoints = Array.isArray(h) ? h.join(",") : (h ?? "");
          break;
        }
      }
    }
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    shot.error = err.cause?.code ?? err.message;
  }
  shot.done = performance.now();
  return shot;
}

/** Keeps the last `keep` requests of each mock (the probe loops send thousands). */
export function trimRequests(ms: MockOpenAI[], keep = 200): void {
  for (const m of ms) if (m.requests.length > keep * 2) m.requests.splice(0, m.requests.length - keep);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Stops what a bench started, in order; one that fails to stop is reported and the rest still stop. */
export async function stopInOrder(steps: Array<[what: string, stop: () => Promise<void> | undefined]>): Promise<void> {
  for (const [what, stop] of steps) {
    try {
      await stop();
    } catch (e) {
      console.error(`stopping ${what} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

/**
 * Runs `body`, then `cleanup` whatever happens; past `limitMs` (or on SIGINT/SIGTERM) runs `cleanup`
 * and exits 1, so a hung bench never leaves Redis, control, mocks or the data plane behind.
 */
export async function bounded(limitMs: number, cleanup: () => Promise<void>, body: () => Promise<void>): Promise<void> {
  let cleaned: Promise<void> | null = null;
  const clean = () => (cleaned ??= cleanup().catch((e) => console.error(`cleanup failed: ${e instanceof Error ? e.message : String(e)}`)));
  const abort = async (why: string) => {
    console.error(`bench aborted: ${why}; stopping everything it started`);
    await clean();
    process.exit(1);
  };
  const timer = setTimeout(() => void abort(`over its ${limitMs / 1000} s limit`), limitMs);
  const onSignal = (sig: NodeJS.Signals) => void abort(sig);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let failed = false;
  try {
    await body();
  } catch (e) {
    failed = true;
    console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  } finally {
    clearTimeout(timer);
    await clean();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  process.exit(failed ? 1 : 0);
}

/** Linux USER_HZ: 100 on every architecture Node runs on (getconf CLK_TCK). */
const TICKS_PER_SECOND = 100;

export interface ProcStat {
  /** utime + stime of every thread, seconds (10 ms ticks). */
  cpuSeconds: number;
  threads: number;
  ppid: number;
}

/** A process's CPU time from /proc/<pid>/stat (Linux); null when /proc is not there or the process is gone. */
export function procStat(pid: number): ProcStat | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces and parentheses): state is field 3.
    const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return { cpuSeconds: (Number(rest[11]) + Number(rest[12])) / TICKS_PER_SECOND, threads: Number(rest[17]), ppid: Number(rest[1]) };
  } catch {
    return null;
  }
}
