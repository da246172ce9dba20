/**
 * The local data plane on more than one core: `processes` copies of it (envoy/local/dataplane.ts), one per
 * process through node:cluster, sharing one listening port (the primary hands connections out round-robin,
 * Node's default on Linux).
 *
 * Why processes: a Node HTTP server cannot share its port between worker threads before Node 22
 * (`reusePort`), and the forwarder, not the plugin, is most of a request's cost. Each process is one
 * Envoy with `workers` VMs: its own shared data, its own table long-poll and telemetry source; node.id is
 * the same for all (one data plane, as the control service sees it). The plugin runs unchanged.
 *
 * Worker processes run this file (`GATEWAY_DP_PROCESS` set): options arrive as JSON in the environment
 * (functions cannot: log lines come back over IPC), and they answer `version` and `stop` messages.
 */
import cluster, { type Worker } from "node:cluster";
import { fileURLToPath } from "node:url";
import { startLocalDataPlane, type LocalDataPlane, type LocalDataPlaneOptions } from "./dataplane.js";

const ENTRY = fileURLToPath(import.meta.url);

/** What the launcher and benches use of a data plane, for one process or several. */
export interface DataPlaneGroup {
  readonly url: string;
  readonly port: number;
  /** Process ids of the data-plane processes (this one when `processes` is 1). */
  readonly pids: number[];
  /** The lowest table version every process has adopted. */
  tableVersion(): Promise<number>;
  waitForTable(version: number, timeoutMs?: number): Promise<void>;
  /** A plugin metric's value in each process (e.g. "gateway.unknown_model"). */
  metric(name: string): Promise<number[]>;
  close(): Promise<void>;
}

type Message = { ready?: { url: string; port: number } } | { log?: string } | { id: number; result?: unknown; error?: string };

/** `processes` ≤ 1: the data plane in this process. More: a cluster of them on one port. */
export async function startDataPlaneProcesses(opts: LocalDataPlaneOptions & { processes?: number }): Promise<DataPlaneGroup> {
  const n = opts.processes ?? 1;
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error("processes must be an integer 1..64");
  if (n === 1) {
    const dp = await startLocalDataPlane(opts);
    return {
      url: dp.url,
      port: dp.port,
      pids: [process.pid],
      tableVersion: async () => dp.tableVersion(),
      waitForTable: (v, t) => dp.waitForTable(v, t),
      metric: async (name) => [dp.host.metrics.get(name)?.value ?? 0],
      close: () => dp.close(),
    };
  }
  const { log = (l: string) => process.stderr.write(l + "\n"), processes: _n, ...rest } = opts;
  // The loader flags this process runs with (node --import tsx), not the test runner's or inspector's.
  const execArgv: string[] = [];
  for (let i = 0; i < process.execArgv.length; i++) {
    const a = process.execArgv[i]!;
    if ((a === "--import" || a === "--loader" || a === "--experimental-loader") && i + 1 < process.execArgv.length) execArgv.push(a, process.execArgv[++i]!);
    else if (/^--(import|loader|experimental-loader)=/.test(a)) execArgv.push(a);
  }
  cluster.setupPrimary({ exec: ENTRY, execArgv, silent: false });
  const workers: Worker[] = [];
  let nextId = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const ask = <T>(w: Worker, cmd: string, args: unknown = null): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = ++nextId;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      w.send({ id, cmd, args });
    });
  let listening: { url: string; port: number } | null = null;
  try {
    for (let i = 0; i < n; i++) {
      const w = cluster.fork({ GATEWAY_DP_PROCESS: String(i), GATEWAY_DP_OPTIONS: JSON.stringify(rest) });
      workers.push(w);
      w.on("message", (m: Message) => {
        if ("log" in m && m.log !== undefined) log(`[process ${i}] ${m.log}`);
        else if ("id" in m) {
          const p = pending.get(m.id);
          pending.delete(m.id);
          if (p) "error" in m && m.error !== undefined ? p.reject(new Error(m.error)) : p.resolve(m.result);
        }
      });
      const ready = await new Promise<{ url: string; port: number }>((resolve, reject) => {
        w.on("message", (m: Message) => {
          if ("ready" in m && m.ready) resolve(m.ready);
        });
        w.once("exit", (code, signal) => reject(new Error(`data-plane process ${i} exited at start (${signal ?? code})`)));
      });
      // Every process asks for the same address and port (0 included): the primary binds it once and
      // shares that socket, so port 0 gives all of them the same free port.
      listening ??= ready;
    }
  } catch (e) {
    for (const w of workers) w.process.kill("SIGKILL");
    throw e;
  }
  const first = listening!;
  const group: DataPlaneGroup = {
    url: first.url,
    port: first.port,
    pids: workers.map((w) => w.process.pid!),
    async tableVersion() {
      const vs = await Promise.all(workers.map((w) => ask<number>(w, "version")));
      return Math.min(...vs);
    },
    async waitForTable(version, timeoutMs = 15_000) {
      await Promise.all(workers.map((w) => ask(w, "waitForTable", { version, timeoutMs })));
    },
    metric: (name) => Promise.all(workers.map((w) => ask<number>(w, "metric", { name }))),
    async close() {
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve) => {
              if (w.isDead()) return resolve();
              w.once("exit", () => resolve());
              const kill = setTimeout(() => w.process.kill("SIGKILL"), 10_000);
              w.once("exit", () => clearTimeout(kill));
              void ask(w, "stop").catch(() => undefined);
            }),
        ),
      );
    },
  };
  return group;
}

// ---------------------------------------------------------------- a worker process
if (cluster.isWorker && process.env.GATEWAY_DP_PROCESS !== undefined) {
  const opts = JSON.parse(process.env.GATEWAY_DP_OPTIONS ?? "{}") as LocalDataPlaneOptions;
  const send = (m: unknown) => process.send?.(m);
  let dp: LocalDataPlane | null = null;
  process.on("message", (m: { id: number; cmd: string; args: { version?: number; timeoutMs?: number; name?: string } | null }) => {
    const reply = (p: Promise<unknown> | unknown) =>
      Promise.resolve(p).then(
        (result) => send({ id: m.id, result }),
        (e: unknown) => send({ id: m.id, error: e instanceof Error ? e.message : String(e) }),
      );
    if (!dp) return reply(Promise.reject(new Error("not started")));
    if (m.cmd === "version") return reply(dp.tableVersion());
    if (m.cmd === "metric") return reply(dp.host.metrics.get(m.args?.name ?? "")?.value ?? 0);
    if (m.cmd === "waitForTable") return reply(dp.waitForTable(m.args?.version ?? 0, m.args?.timeoutMs));
    if (m.cmd === "stop") {
      return reply(dp.close()).then(() => process.exit(0));
    }
    return reply(Promise.reject(new Error(`unknown command ${m.cmd}`)));
  });
  dp = await startLocalDataPlane({ ...opts, log: (l) => send({ log: l }) });
  send({ ready: { url: dp.url, port: dp.port } });
}
