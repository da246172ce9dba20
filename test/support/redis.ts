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

/**
 * TEST_LOG_DIR (optional): where the fault tests keep every process's log, to rebuild a failure's timeline.
 * Redis nodes (startRedis and the sentinel sets) and sentinels log at `notice` (every +sdown,
 * +switch-master, …) to files there, and control processes write all their output at debug level
 * (control-process.ts). Unset: nothing is written.
 */
export const LOG_DIR = process.env.TEST_LOG_DIR || null;

/** How a redis-server logs, as config directives: `notice` to `LOG_DIR/<file>` when kept, else warnings only. */
export const logDirectives = (file: string): [string, string][] => (LOG_DIR ? [["loglevel", "notice"], ["logfile", join(LOG_DIR, file)]] : [["loglevel", "warning"]]);

/** The same as redis-server command-line arguments. */
export const nodeLog = (file: string): string[] => logDirectives(file).flatMap(([k, v]) => [`--${k}`, v]);

/** A redis-server child process (data node or sentinel) of a test. */
export interface SpawnedRedis {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  alive(): boolean;
  /** What it printed (stdout and stderr), for failure messages. */
  output(): string;
}

/** Spawns `binary args…`; it is SIGKILLed if the test process exits first (never a redis-server left behind). */
export function spawnRedis(args: string[], binary = "redis-server"): SpawnedRedis {
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let alive = true;
  child.stdout?.on("data", (d) => (out += d.toString()));
  child.stderr?.on("data", (d) => (out += d.toString()));
  const reap = () => child.kill("SIGKILL");
  process.once("exit", reap);
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      alive = false;
      process.removeListener("exit", reap);
      resolve();
    }),
  );
  return { child, exited, alive: () => alive, output: () => out };
}

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
      ...nodeLog(`redis-${port}.log`),
      "--protected-mode", "no",
      ...(opts.args ?? []),
    ];
    const spawned = spawnRedis(args, binary);
    const proc = spawned.child;
    child = proc;
    exited = spawned.exited;
    void spawned.exited.then(() => {
      if (child === proc) child = null;
    });
    await waitFor(async () => !spawned.alive() || (await redisPing(port)), startTimeoutMs, `redis-server on port ${port}`);
    if (!spawned.alive()) throw new Error(`redis-server exited at start: ${spawned.output()}`);
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
