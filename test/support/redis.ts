/**
 * A real redis-server for tests: started on a free port in a temp dir, waited for by condition
 * (PING answers PONG), stoppable and restartable on the same port and data dir (for persistence and
 * "Redis went away" tests). Never mock Redis.
 */
import { freePort } from "../../envoy/local/ports.js";
import { redisPing } from "../../envoy/local/redis-ping.js";

export { freePort };
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface RedisServerOptions {
  /** Persist with an append-only file (restart keeps data). Default false: purely in memory. */
  appendonly?: boolean;
  /** Binary; default `redis-server` from PATH (Debian: /usr/bin/redis-server). */
  binary?: string;
  /** Give up waiting for readiness after this long. */
  startTimeoutMs?: number;
  /** More redis-server arguments (e.g. `["--replicaof", "127.0.0.1", "6379"]`). */
  args?: string[];
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** Stop the process (SIGTERM, then wait for exit). The port stays reserved for `start()`. */
  stop(): Promise<void>;
  /** Start again on the same port and data dir. */
  start(): Promise<void>;
  /** Stop and remove the temp dir. */
  close(): Promise<void>;
  readonly running: boolean;
}


export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, stepMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

export async function startRedis(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "gw-redis-"));
  const binary = opts.binary ?? process.env.REDIS_SERVER_BIN ?? "redis-server";
  const startTimeoutMs = opts.startTimeoutMs ?? 10_000;
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let stderr = "";

  const start = async () => {
    if (child) return;
    const args = [
      "--port", String(port),
      "--bind", "127.0.0.1",
      "--dir", dir,
      "--save", "",
      "--appendonly", opts.appendonly ? "yes" : "no",
      "--appendfsync", "always",
      "--daemonize", "no",
      "--loglevel", "warning",
      "--protected-mode", "no",
      ...(opts.args ?? []),
    ];
    const proc = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"] });
    child = proc;
    // Never leave a redis-server behind if the test process dies without closing it.
    const reap = () => proc.kill("SIGKILL");
    process.once("exit", reap);
    proc.once("exit", () => process.removeListener("exit", reap));
    proc.stderr?.on("data", (d) => (stderr += d.toString()));
    exited = new Promise((resolve) => proc.once("exit", () => resolve()));
    let failed = false;
    proc.once("exit", () => {
      failed = true;
      if (child === proc) child = null;
    });
    await waitFor(async () => failed || (await redisPing(port)), startTimeoutMs, `redis-server on port ${port}`);
    if (failed) throw new Error(`redis-server exited at start: ${stderr}`);
  };

  const stop = async () => {
    const proc = child;
    if (!proc) return;
    proc.kill("SIGTERM");
    await exited;
    child = null;
  };

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    stop,
    start,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    get running() {
      return child !== null;
    },
  };
}
