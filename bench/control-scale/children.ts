// The processes the bench starts (each its own pid, so /proc tells their cost apart) and their teardown:
// the control service (the real entry, control/src/server.ts, configured by environment) and the mock fleet.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { RuntimeSample } from "./reporter.js";
import type { FleetOptions, MarkReport, WindowReport } from "./fleet.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SERVER = fileURLToPath(new URL("../../control/src/server.ts", import.meta.url));
const REPORTER = fileURLToPath(new URL("./reporter.ts", import.meta.url));
const FLEET = fileURLToPath(new URL("./fleet-main.ts", import.meta.url));

/** Every child still running; killed (SIGKILL) if the bench process exits without stopping them. */
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});

function track(c: ChildProcess): void {
  live.add(c);
  c.once("exit", () => live.delete(c));
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function terminate(c: ChildProcess, graceMs = 5_000): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise<void>((r) => c.once("exit", () => r()));
  c.kill("SIGTERM");
  const t = setTimeout(() => c.kill("SIGKILL"), graceMs);
  await gone;
  clearTimeout(t);
}

const nodeArgs = (...imports: string[]) => imports.flatMap((i) => ["--import", i]);

export interface ControlProcess {
  pid: number;
  url: string;
  child: ChildProcess;
  /** Last log lines (JSON) and the count of warn/error lines. */
  tail: string[];
  warnings: number;
  errors: number;
  /** warn/error lines counted by message. */
  messages: Record<string, number>;
  runtime: (RuntimeSample & { at: number })[];
  stop(): Promise<void>;
}

export async function startControlProcess(env: Record<string, string>, opts: { port: number; label: string; readyTimeoutMs?: number; nodeArgs?: string[] }): Promise<ControlProcess> {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), ...nodeArgs("tsx", REPORTER), SERVER], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", NODE_ENV: "production", ...env, CONTROL_HOST: "127.0.0.1", CONTROL_PORT: String(opts.port) },
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  track(child);
  const cp: ControlProcess = {
    pid: child.pid ?? -1,
    url: `http://127.0.0.1:${opts.port}`,
    child,
    tail: [],
    warnings: 0,
    errors: 0,
    messages: {},
    runtime: [],
    // A saturated control may need a while to finish its stop (and write a --cpu-prof profile).
    stop: () => terminate(child, 15_000),
  };
  const onLines = (chunk: Buffer) => {
    for (const line of chunk.toString("utf8").split("\n")) {
      if (line === "") continue;
      const level = /"level":"(warn|error)"/.exec(line)?.[1];
      if (level) {
        if (level === "warn") cp.warnings++;
        else cp.errors++;
        const msg = `${level}: ${/"msg":"([^"]*)"/.exec(line)?.[1] ?? line.slice(0, 80)}`;
        cp.messages[msg] = (cp.messages[msg] ?? 0) + 1;
      }
      cp.tail.push(line.length > 400 ? line.slice(0, 400) + "…" : line);
      if (cp.tail.length > 200) cp.tail.splice(0, cp.tail.length - 100);
    }
  };
  child.stdout!.on("data", onLines);
  child.stderr!.on("data", onLines);
  child.on("message", (m: RuntimeSample) => {
    if (m?.type === "runtime") cp.runtime.push({ ...m, at: Date.now() });
  });
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${opts.label} exited at start (${child.exitCode}):\n${cp.tail.slice(-20).join("\n")}`);
    try {
      const r = await fetch(`${cp.url}/healthz`);
      if (r.status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      await cp.stop();
      throw new Error(`${opts.label} not ready within ${opts.readyTimeoutMs ?? 30_000} ms:\n${cp.tail.slice(-20).join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return cp;
}

export interface FleetProcess {
  pid: number;
  child: ChildProcess;
  /** Forget every instance's last request (intervals start with the measured control's first probe). */
  reset(): Promise<void>;
  open(instances: number): Promise<void>;
  close(): Promise<WindowReport>;
  total(): Promise<number>;
  /** From now on, record each instance's first request (and keep its last one before now). */
  mark(): Promise<void>;
  markReport(): Promise<MarkReport>;
  stop(): Promise<void>;
}

export async function startFleet(o: FleetOptions, readyTimeoutMs = 60_000): Promise<FleetProcess> {
  const child = spawn(process.execPath, [...nodeArgs("tsx"), FLEET, JSON.stringify(o)], { cwd: ROOT, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  track(child);
  const next = <T>(type: string, timeoutMs = 30_000) =>
    new Promise<T>((resolve, reject) => {
      const onMsg = (m: { type: string; message?: string }) => {
        if (m.type === type) done(() => resolve(m as T));
        else if (m.type === "error") done(() => reject(new Error(`mock fleet: ${m.message}`)));
      };
      const onExit = (code: number | null) => done(() => reject(new Error(`mock fleet exited (${code})`)));
      const t = setTimeout(() => done(() => reject(new Error(`mock fleet: no ${type} within ${timeoutMs} ms`))), timeoutMs);
      function done(f: () => void) {
        clearTimeout(t);
        child.off("message", onMsg);
        child.off("exit", onExit);
        f();
      }
      child.on("message", onMsg);
      child.once("exit", onExit);
    });
  await next("ready", readyTimeoutMs);
  return {
    pid: child.pid ?? -1,
    child,
    async reset() {
      const p = next("reset");
      child.send({ type: "reset" });
      await p;
    },
    async open(instances) {
      const p = next("opened");
      child.send({ type: "open", instances });
      await p;
    },
    async close() {
      const p = next<{ report: WindowReport }>("report");
      child.send({ type: "close" });
      return (await p).report;
    },
    async total() {
      const p = next<{ total: number }>("total");
      child.send({ type: "total" });
      return (await p).total;
    },
    async mark() {
      const p = next("marked");
      child.send({ type: "mark" });
      await p;
    },
    async markReport() {
      const p = next<{ report: MarkReport }>("markReport");
      child.send({ type: "markReport" });
      return (await p).report;
    },
    stop: () => terminate(child),
  };
}
