/**
 * A control replica as its own process: the real entry (control/src/server.ts, configured by environment),
 * so a test can SIGKILL it — the box gone, nothing released, no `finally` run. Ready once GET /healthz
 * answers 200. Killed when the test process exits, whatever happened. With TEST_LOG_DIR set, its whole
 * output at debug level goes to a file there (test/support/redis.ts).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, LOG_DIR } from "./redis.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SERVER = fileURLToPath(new URL("../../control/src/server.ts", import.meta.url));

export interface ControlProcess {
  readonly url: string;
  readonly port: number;
  readonly replica: string;
  /** Recent output lines (JSON logs), for failure messages. */
  readonly tail: string[];
  readonly running: boolean;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM (a graceful stop), SIGKILL after 5 s. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});

export async function startControlProcess(env: Record<string, string>, opts: { replica: string; readyTimeoutMs?: number }): Promise<ControlProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ["--import", "tsx", SERVER], {
    cwd: ROOT,
    // TEST_LOG_DIR: every line at debug level, kept in a file per replica (for a failure's timeline).
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env, ...(LOG_DIR ? { LOG_LEVEL: "debug" } : {}), REPLICA_ID: opts.replica, CONTROL_HOST: "127.0.0.1", CONTROL_PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(child);
  const exited = new Promise<void>((r) => child.once("exit", () => (live.delete(child), r())));
  const tail: string[] = [];
  const file = LOG_DIR ? createWriteStream(join(LOG_DIR, `control-${opts.replica}-${port}.log`)) : null;
  const onLines = (chunk: Buffer) => {
    file?.write(chunk);
    for (const line of chunk.toString("utf8").split("\n")) if (line !== "") tail.push(line.slice(0, 400));
    if (tail.length > 200) tail.splice(0, tail.length - 100);
  };
  child.stdout!.on("data", onLines);
  child.stderr!.on("data", onLines);
  const cp: ControlProcess = {
    url: `http://127.0.0.1:${port}`,
    port,
    replica: opts.replica,
    tail,
    get running() {
      return child.exitCode === null && child.signalCode === null;
    },
    async kill() {
      if (cp.running) child.kill("SIGKILL");
      await exited;
    },
    async stop() {
      if (!cp.running) return;
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  for (;;) {
    if (!cp.running) throw new Error(`control ${opts.replica} exited at start:\n${tail.slice(-20).join("\n")}`);
    const ok = await fetch(`${cp.url}/healthz`).then((r) => r.status === 200, () => false);
    if (ok) return cp;
    if (Date.now() > deadline) {
      await cp.kill();
      throw new Error(`control ${opts.replica} not ready within ${opts.readyTimeoutMs ?? 30_000} ms:\n${tail.slice(-20).join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
