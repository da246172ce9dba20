// Child processes of the gateway bench (upstream mocks, load generator, local data plane): forked
// TypeScript entries under tsx, a request/answer protocol over the IPC channel, and a stop that always
// ends the process (SIGTERM, then SIGKILL). A child exits by itself when its parent goes away.
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

interface Request {
  id: number;
  cmd: string;
  args: unknown;
}
type Answer = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

export interface Child {
  readonly name: string;
  readonly pid: number;
  /** The payload of the child's `ready` message. */
  readonly ready: unknown;
  call<T>(cmd: string, args?: unknown, timeoutMs?: number): Promise<T>;
  /** Asks the child to stop, then SIGTERM / SIGKILL if it is still there. Never throws. */
  stop(): Promise<void>;
  /** Synchronous last resort (process 'exit' handler). */
  killNow(): void;
}

const TSX = import.meta.resolve("tsx");

/**
 * Forks `entry` (a .ts file next to this one) and waits for its `ready` message. `nodeArgs`: extra node
 * options for the child (V8 flags such as --trace-gc-nvp or --cpu-prof, which NODE_OPTIONS refuses).
 */
export async function forkChild(name: string, entry: string, env: Record<string, string>, startTimeoutMs = 30_000, nodeArgs: string[] = []): Promise<Child> {
  const file = fileURLToPath(new URL(entry, import.meta.url));
  const cp: ChildProcess = fork(file, [], {
    execArgv: [...nodeArgs, "--import", TSX],
    env: { ...process.env, ...env },
    serialization: "advanced", // Float64Array latencies travel as they are
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  let nextId = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  let exited = false;
  const exitedP = new Promise<void>((r) => cp.once("exit", () => r()));
  cp.once("exit", (code, signal) => {
    exited = true;
    for (const [, p] of pending) {
      clearTimeout(p.timer);
      p.reject(new Error(`${name} exited (${signal ?? code}) before answering`));
    }
    pending.clear();
  });
  let readyPayload: unknown = null;
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} not ready within ${startTimeoutMs} ms`)), startTimeoutMs);
    cp.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${signal ?? code}) at start`));
    });
    cp.on("message", (m: unknown) => {
      const msg = m as { ready?: unknown; id?: number; ok?: boolean; result?: unknown; error?: string };
      if ("ready" in msg) {
        clearTimeout(timer);
        readyPayload = msg.ready;
        resolve();
        return;
      }
      const p = msg.id !== undefined ? pending.get(msg.id) : undefined;
      if (!p) return;
      pending.delete(msg.id!);
      clearTimeout(p.timer);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new Error(`${name}: ${msg.error ?? "failed"}`));
    });
  });
  const child: Child = {
    name,
    pid: cp.pid ?? -1,
    get ready() {
      return readyPayload;
    },
    call<T>(cmd: string, args: unknown = null, timeoutMs = 60_000): Promise<T> {
      if (exited) return Promise.reject(new Error(`${name} is not running`));
      const id = ++nextId;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${name}: ${cmd} not answered within ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
        cp.send({ id, cmd, args } satisfies Request);
      });
    },
    async stop() {
      if (exited) return;
      try {
        if (cp.connected) cp.send({ id: 0, cmd: "stop", args: null } satisfies Request);
      } catch {
        // channel already closed
      }
      const within = (ms: number) => Promise.race([exitedP.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
      if (await within(3_000)) return;
      cp.kill("SIGTERM");
      if (await within(2_000)) return;
      cp.kill("SIGKILL");
      await within(2_000);
    },
    killNow() {
      if (!exited) cp.kill("SIGKILL");
    },
  };
  try {
    await ready;
  } catch (e) {
    child.killNow();
    throw e;
  }
  return child;
}

/**
 * Child side: answers the parent's requests with `handlers[cmd](args)`; `stop` runs `onStop` and exits.
 * Call `ready(payload)` once serving. Exits when the parent disconnects (it died or stopped us).
 */
export function serveParent(handlers: Record<string, (args: any) => unknown>, onStop: () => Promise<void>): { ready(payload: unknown): void } {
  if (!process.send) throw new Error("this file is a child process of bench/gateway.bench.ts (no IPC channel)");
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    try {
      await onStop();
    } catch (e) {
      process.stderr.write(`stop failed: ${e instanceof Error ? e.message : String(e)}\n`);
    }
    process.exit(code);
  };
  process.on("disconnect", () => void stop(0));
  process.on("SIGTERM", () => void stop(0));
  process.on("SIGINT", () => void stop(0));
  process.on("message", (m: unknown) => {
    const req = m as Request;
    if (req.cmd === "stop") return void stop(0);
    const h = handlers[req.cmd];
    const reply = (a: Answer) => {
      if (process.connected) process.send!(a);
    };
    if (!h) return reply({ id: req.id, ok: false, error: `unknown command ${req.cmd}` });
    Promise.resolve()
      .then(() => h(req.args))
      .then(
        (result) => reply({ id: req.id, ok: true, result }),
        (e) => reply({ id: req.id, ok: false, error: e instanceof Error ? e.message : String(e) }),
      );
  });
  return {
    ready(payload) {
      process.send!({ ready: payload });
    },
  };
}
