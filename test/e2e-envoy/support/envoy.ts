/**
 * A real Envoy for the e2e tests: find the binary, check its version, run it with a bootstrap,
 * read its admin interface. Nothing here runs Envoy unless a test asks for it; `findEnvoy()` tells
 * whether one exists (ENVOY_BIN, else `envoy` on PATH).
 *
 * Admin endpoints used (envoyproxy.io/docs/envoy/latest/operations/admin):
 *   GET /ready                  200 "LIVE" once the server finished initialising (CDS first fetch,
 *                               cluster warming, listeners) — 503 before.
 *   GET /clusters?format=json   admin.v3.Clusters: cluster_statuses[].{name, added_via_api,
 *                               host_statuses[].{address.socket_address, health_status{…}}}.
 *   GET /stats?filter=<regex>   text lines "name: value". Stats defined by a wasm plugin live in the
 *                               custom namespace "wasmcustom." (only the Prometheus output strips it).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";

export const MIN_ENVOY: readonly [number, number] = [1, 35];

export function findEnvoy(): { bin?: string; why: string } {
  const fromEnv = process.env.ENVOY_BIN;
  if (fromEnv) return { bin: fromEnv, why: "" }; // explicitly asked for: a wrong path must fail, not skip
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const p = join(dir, "envoy");
    try {
      accessSync(p, constants.X_OK);
      return { bin: p, why: "" };
    } catch {
      // not here
    }
  }
  return { why: "no Envoy binary: set ENVOY_BIN or put `envoy` (>= 1.35) on PATH to run the real-Envoy checks" };
}

export function parseEnvoyVersion(text: string): [number, number, number] | undefined {
  const m = /version:\s*\S*?\/(\d+)\.(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/**
 * Throws unless `bin --version` reports Envoy >= MIN_ENVOY (override_host, allow_on_headers_stop_iteration);
 * returns the version line.
 */
export function assertEnvoyVersion(bin: string): string {
  const r = spawnSync(bin, ["--version"], { encoding: "utf8", timeout: 30_000 });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? String(r.error) : ""}`;
  if (r.status !== 0) throw new Error(`${bin} --version failed (status ${r.status}): ${out}`);
  const v = parseEnvoyVersion(out);
  if (!v) throw new Error(`cannot read Envoy's version from: ${out}`);
  if (v[0] < MIN_ENVOY[0] || (v[0] === MIN_ENVOY[0] && v[1] < MIN_ENVOY[1])) {
    throw new Error(`Envoy ${v.join(".")} < ${MIN_ENVOY.join(".")}: override_host and allow_on_headers_stop_iteration need 1.35`);
  }
  return out.split("\n").find((l) => l.includes("version:"))?.trim() ?? v.join(".");
}

// ---------------------------------------------------------------------------------------------
// Admin interface.

export interface HostStatus {
  /** "ip:port" — the key override_host looks hosts up by. */
  address: string;
  failedActiveHc: boolean;
  pendingActiveHc: boolean;
  failedOutlier: boolean;
  /** EDS health as the admin reports it ("HEALTHY", "UNHEALTHY", "DRAINING", …; absent = UNKNOWN). */
  eds: string;
  priority: number;
  weight: number;
}

export interface ClusterStatus {
  name: string;
  addedViaApi: boolean;
  hosts: HostStatus[];
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === "object" && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
/** proto3 JSON may use either the proto field name or lowerCamelCase. */
const field = (o: Obj, snake: string): unknown => o[snake] ?? o[snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())];

/** Parses admin `/clusters?format=json`. */
export function parseClusters(json: unknown): Map<string, ClusterStatus> {
  const out = new Map<string, ClusterStatus>();
  for (const c of arr(field(obj(json), "cluster_statuses")).map(obj)) {
    const name = String(c.name ?? "");
    const hosts = arr(field(c, "host_statuses")).map((h0): HostStatus => {
      const h = obj(h0);
      const sa = obj(field(obj(h.address), "socket_address"));
      const hs = obj(field(h, "health_status"));
      const ip = String(sa.address ?? "");
      const port = Number(field(sa, "port_value") ?? 0);
      return {
        address: ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`,
        failedActiveHc: field(hs, "failed_active_health_check") === true,
        pendingActiveHc: field(hs, "pending_active_hc") === true,
        failedOutlier: field(hs, "failed_outlier_check") === true,
        eds: String(field(hs, "eds_health_status") ?? "UNKNOWN"),
        priority: Number(h.priority ?? 0),
        weight: Number(h.weight ?? 0),
      };
    });
    out.set(name, { name, addedViaApi: field(c, "added_via_api") === true, hosts });
  }
  return out;
}

/** Parses admin `/stats` text output: integer counters and gauges only (text readouts, histograms skipped). */
export function parseStats(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^(\S+): (-?\d+)$/.exec(line.trim());
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

export const WASM_STAT_NAMESPACE = "wasmcustom.";

/** A plugin metric by the name the plugin defined, with or without Envoy's custom namespace. */
export function pluginStat(stats: Map<string, number>, name: string): number | undefined {
  return stats.get(WASM_STAT_NAMESPACE + name) ?? stats.get(name);
}

// ---------------------------------------------------------------------------------------------
// Process.

export interface RunningEnvoy {
  readonly admin: string;
  readonly listener: string;
  readonly pid: number | undefined;
  /** Last lines of Envoy's stdout + stderr (access log, health-check events, plugin logs). */
  logTail(lines?: number): string;
  /** null while running. */
  exitCode(): number | null | "signal";
  ready(): Promise<boolean>;
  clusters(): Promise<Map<string, ClusterStatus>>;
  stats(filter: string): Promise<Map<string, number>>;
  /** SIGTERM, then SIGKILL after a bound; removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

const MAX_LOG_LINES = 4000;

export async function startEnvoy(opts: {
  bin: string;
  bootstrap: unknown;
  adminPort: number;
  listenerPort: number;
  /** Worker threads. The e2e uses 1: each worker has its own picker state, exact shares need one. */
  concurrency?: number;
  logLevel?: string;
  readyTimeoutMs?: number;
}): Promise<RunningEnvoy> {
  const dir = mkdtempSync(join(tmpdir(), "gw-envoy-e2e-"));
  const file = join(dir, "bootstrap.json");
  writeFileSync(file, JSON.stringify(opts.bootstrap, null, 2));
  const args = [
    "-c", file,
    "--concurrency", String(opts.concurrency ?? 1),
    // Several Envoys may run on this machine (parallel test files): no shared-memory hot-restart domain.
    "--disable-hot-restart",
    "--log-level", opts.logLevel ?? "info",
  ];
  const lines: string[] = [];
  let partial = "";
  const push = (chunk: Buffer) => {
    const text = partial + chunk.toString("utf8");
    const parts = text.split("\n");
    partial = parts.pop() ?? "";
    lines.push(...parts);
    if (lines.length > MAX_LOG_LINES) lines.splice(0, lines.length - MAX_LOG_LINES);
  };
  const child: ChildProcess = spawn(opts.bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  // Never leave an Envoy behind if the test process exits without stopping it.
  const reap = () => child.kill("SIGKILL");
  process.once("exit", reap);
  let code: number | null | "signal" = null;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", (c, sig) => {
      code = c ?? (sig ? "signal" : null);
      process.removeListener("exit", reap);
      resolve();
    });
    child.once("error", (e) => {
      lines.push(`spawn error: ${String(e)}`);
      code = -1;
      process.removeListener("exit", reap);
      resolve();
    });
  });
  child.stdout?.on("data", push);
  child.stderr?.on("data", push);

  const admin = `http://127.0.0.1:${opts.adminPort}`;
  const get = async (path: string): Promise<Response> => await fetch(admin + path, { signal: AbortSignal.timeout(5_000) });
  let stopping: Promise<void> | null = null;
  const env: RunningEnvoy = {
    admin,
    listener: `http://127.0.0.1:${opts.listenerPort}`,
    pid: child.pid,
    logTail: (n = 120) => [...lines.slice(-n), partial].filter((l) => l !== "").join("\n"),
    exitCode: () => code,
    async ready() {
      try {
        const r = await get("/ready");
        await r.text();
        return r.status === 200;
      } catch {
        return false;
      }
    },
    async clusters() {
      const r = await get("/clusters?format=json");
      if (r.status !== 200) throw new Error(`admin /clusters: ${r.status} ${await r.text()}`);
      return parseClusters(await r.json());
    },
    async stats(filter) {
      const r = await get(`/stats?filter=${encodeURIComponent(filter)}`);
      if (r.status !== 200) throw new Error(`admin /stats: ${r.status} ${await r.text()}`);
      return parseStats(await r.text());
    },
    stop() {
      stopping ??= (async () => {
        if (code === null) {
          child.kill("SIGTERM");
          let t: NodeJS.Timeout | undefined;
          const killed = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => (t = setTimeout(() => r(true), 10_000)))]);
          clearTimeout(t);
          if (killed) {
            child.kill("SIGKILL");
            await exited;
          }
        }
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };

  // Ready = /ready answers 200; an exit before that fails at once with Envoy's own words.
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  for (;;) {
    if (code !== null) {
      await env.stop();
      throw new Error(`envoy exited (${String(code)}) before becoming ready:\n${env.logTail(200)}`);
    }
    if (await env.ready()) return env;
    if (Date.now() > deadline) {
      const tail = env.logTail(200);
      await env.stop();
      throw new Error(`envoy not ready (admin /ready) within ${opts.readyTimeoutMs ?? 60_000} ms:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A wrapper for test steps that adds what Envoy and the control service last said to a failure: the
 * plugin/xDS stats, Envoy's log tail and the control log tail (each getter may return undefined while
 * that part is not up).
 */
export function diagnoser(envoy: () => RunningEnvoy | undefined, controlLogTail: () => string | undefined): <T>(fn: () => Promise<T>) => Promise<T> {
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      let st = "";
      try {
        st = [...(await envoy()!.stats("gateway\\.|update_rejected"))].map(([k, v]) => `${k}: ${v}`).join("\n");
      } catch {
        st = "(stats unavailable)";
      }
      const more = `\n--- plugin/xds stats ---\n${st}\n--- envoy log (tail) ---\n${envoy()?.logTail(150) ?? ""}\n--- control log (tail) ---\n${controlLogTail() ?? ""}`;
      throw new Error(msg + more, { cause: e });
    }
  };
}

/** Envoy's clusters and hosts in one line each (health flags, EDS status), for failure messages. */
export async function clustersSeen(envoy: RunningEnvoy): Promise<string> {
  const cs = await envoy.clusters();
  return [...cs.values()].map((c) => `${c.name}${c.addedViaApi ? " (cds)" : ""}: ${c.hosts.map((h) => `${h.address}${h.failedActiveHc ? " hc-failed" : ""}${h.pendingActiveHc ? " hc-pending" : ""} eds=${h.eds}`).join(", ")}`).join("\n");
}
