/**
 * One command to a working gateway (used by start.ts and demo.ts): Redis, the control service and a data
 * plane (real Envoy ≥ 1.35 when there is one, else the local data plane), and a clean stop of all of it.
 * Configuration: environment variables, see envoy/local/README.md.
 */
import { freePort } from "./ports.js";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, type WriteStream } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { loadConfig } from "../../control/src/config.js";
import { startControl, type Control } from "../../control/src/control.js";
import { formatIssue, validateBootstrap } from "../validate/index.js";
import { DEFAULT_PLUGIN_WASM } from "./dataplane.js";
import { startDataPlaneProcesses, type DataPlaneGroup } from "./dataplane-processes.js";
import { findEnvoy, localEnvoyBootstrap, which } from "./envoy-config.js";

export const REPO = fileURLToPath(new URL("../../", import.meta.url));
/** The control service's ADS port when `npm start` runs a real Envoy (envoy/bootstrap.yaml's gateway_xds port). */
export const DEFAULT_ADS_PORT = 18_000;

/** A problem the user can fix: printed without a stack trace, exit code 1. */
export class LaunchError extends Error {}

export interface LaunchOptions {
  env?: NodeJS.ProcessEnv;
  /** "persistent": .data/redis with AOF (npm start); "ephemeral": a temp dir, removed at stop (demo). */
  redisMode?: "persistent" | "ephemeral";
  /** Where progress lines go. Default stderr. */
  say?: (line: string) => void;
}

export interface Gateway {
  /** The URL clients use (data plane listener). */
  url: string;
  controlUrl: string;
  adminToken: string;
  /** Set when the admin token is the launcher's own (not CONTROL_ADMIN_TOKENS): the banner prints it. */
  adminTokenGenerated: boolean;
  /** Where the launcher keeps its admin token (null: CONTROL_ADMIN_TOKENS), and whether this start created it. */
  adminTokenFile: string | null;
  adminTokenCreated: boolean;
  /** Where the launcher keeps its plugin token (null: CONTROL_PLUGIN_TOKENS). */
  pluginTokenFile: string | null;
  /** The dashboard: `<control>/ui/`. */
  dashboardUrl: string;
  /** The dashboard with the launcher's admin token in the fragment (`#token=…`; null with CONTROL_ADMIN_TOKENS). */
  signInUrl: string | null;
  dataPlane: "local" | "envoy";
  envoyVersion: string | null;
  redisUrl: string;
  redisLaunched: boolean;
  logDir: string;
  /**
   * Resolves once the data plane routes with routing-table version `v`: every local worker has it, or
   * Envoy's plugin reports it and (given `cluster`) Envoy has `hosts` healthy hosts in that cluster (CDS/EDS
   * and active health checks come separately from the table).
   */
  waitForTable(v: number, opts?: { timeoutMs?: number; cluster?: string; hosts?: number }): Promise<void>;
  stop(): Promise<void>;
  /** Process ids this launcher started (Redis, Envoy). */
  children(): number[];
}

async function portFree(port: number, host: string): Promise<boolean> {
  return await new Promise((res) => {
    const s = createServer();
    s.once("error", () => res(false));
    s.listen(port, host, () => s.close(() => res(true)));
  });
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new LaunchError(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const token = () => randomBytes(24).toString("base64url");

/** What a kept token must look like to be used again (a token of the control service: ≥ 16 printable, no comma). */
const USABLE_TOKEN = /^[\x21-\x2b\x2d-\x7e]{16,512}$/;

/**
 * A token the launcher generates, kept across restarts: `<dir>/<name>`, the file mode 0600 in a directory
 * of mode 0700 (both owner-only), read again at the next start. A file that does not hold a usable token is
 * replaced (with a warning); one readable by others is made 0600 again.
 */
export function keptToken(dir: string, name: string, say: (l: string) => void = () => undefined): { token: string; file: string; created: boolean } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = join(dir, name);
  if (existsSync(file)) {
    const kept = readFileSync(file, "utf8").trim();
    if (USABLE_TOKEN.test(kept)) {
      if ((statSync(file).mode & 0o077) !== 0) {
        chmodSync(file, 0o600);
        say(`warning: ${file} was readable by others; it is 0600 again (consider replacing the token: delete the file)`);
      }
      return { token: kept, file, created: false };
    }
    say(`warning: ${file} does not hold a usable token; a new one replaces it`);
  }
  const fresh = token();
  // Written whole or not at all: a temporary file (0600 from the start), then renamed over the old one.
  const tmp = `${file}.${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  writeFileSync(tmp, fresh + "\n", { mode: 0o600, flag: "wx" });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return { token: fresh, file, created: true };
}

const firstOf = (list: string | undefined) => (list ?? "").split(",").map((t) => t.trim()).find((t) => t.length > 0);

/** `dir` and everything under it owner-only (directories 0700, files 0600): data of an earlier, laxer start included. */
function ownerOnly(dir: string, say: (l: string) => void): void {
  let loosened = false;
  const walk = (d: string) => {
    if ((statSync(d).mode & 0o077) !== 0) loosened = true;
    chmodSync(d, 0o700);
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        if ((statSync(p).mode & 0o077) !== 0) loosened = true;
        chmodSync(p, 0o600);
      }
    }
  };
  walk(dir);
  if (loosened) say(`warning: ${dir} was readable by others; it is owner-only again (0700, files 0600)`);
}

/** A redis.conf argument: double-quoted, every byte as \xHH (any password survives redis' config parser). */
const redisQuote = (v: string) => `"${[...Buffer.from(v, "utf8")].map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("")}"`;

/** A Redis URL fit to print: the password (if any) replaced with ***. */
export function redactRedisUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/)([^@/]*)@/, (_m, scheme: string, auth: string) => `${scheme}${auth.includes(":") ? `${auth.slice(0, auth.indexOf(":"))}:***` : "***"}@`);
}

/** AUTH then PING over a raw socket (RESP arrays): true when the Redis on 127.0.0.1:port accepts the password and answers. */
function redisAuthPing(port: number, password: string): Promise<boolean> {
  return new Promise((res) => {
    const sock = createConnection({ port, host: "127.0.0.1" });
    let buf = "";
    const done = (ok: boolean) => {
      sock.destroy();
      res(ok);
    };
    const cmd = (...parts: string[]) => `*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join("")}`;
    sock.setTimeout(500, () => done(false));
    sock.on("error", () => done(false));
    sock.on("connect", () => sock.write(cmd("AUTH", password) + cmd("PING")));
    sock.on("data", (d) => {
      buf += d.toString();
      if (buf.split("\r\n").length >= 3) done(buf.startsWith("+OK\r\n+PONG\r\n"));
    });
  });
}

export const REDIS_INSTALL_HELP = [
  "redis-server was not found on PATH, and REDIS_URL is not set.",
  "Install Redis, or point REDIS_URL at one you run (redis://host:port):",
  "  Debian/Ubuntu:  sudo apt-get install -y redis-server",
  "  macOS:          brew install redis",
].join("\n");

export async function launch(opts: LaunchOptions = {}): Promise<Gateway> {
  const env = opts.env ?? process.env;
  const say = opts.say ?? ((l: string) => process.stderr.write(l + "\n"));
  const dataDir = resolve(env.GATEWAY_DATA_DIR ?? join(REPO, ".data"));
  const logDir = join(dataDir, "logs");
  // Owner-only when we create it: Redis' data (API keys included) and the kept tokens live here.
  if (!existsSync(dataDir)) mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  mkdirSync(logDir, { recursive: true });
  const listenHost = env.GATEWAY_HOST ?? "127.0.0.1";
  const listenPort = env.GATEWAY_PORT !== undefined ? Number(env.GATEWAY_PORT) : 10_000;
  const controlHost = env.CONTROL_HOST ?? "127.0.0.1";
  const controlPort = env.CONTROL_PORT !== undefined ? Number(env.CONTROL_PORT) : 8080;
  const passthroughUrl = env.PASSTHROUGH_URL || null;
  if (passthroughUrl && !/^https?:\/\//.test(passthroughUrl)) throw new LaunchError(`PASSTHROUGH_URL must be an http(s) URL, got ${passthroughUrl}`);
  const workers = env.GATEWAY_WORKERS !== undefined ? Number(env.GATEWAY_WORKERS) : 1;
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new LaunchError("GATEWAY_WORKERS must be an integer 1..64");
  const processes = env.GATEWAY_PROCESSES !== undefined ? Number(env.GATEWAY_PROCESSES) : 1;
  if (!Number.isInteger(processes) || processes < 1 || processes > 64) throw new LaunchError("GATEWAY_PROCESSES must be an integer 1..64");
  // The local data plane's limits (defaults: the shipped bootstrap's, envoy/local/README.md).
  const limit = (name: string, min: number, max: number): number | undefined => {
    const raw = env[name];
    if (raw === undefined || raw === "") return undefined;
    const v = Number(raw);
    if (!Number.isInteger(v) || v < min || v > max) throw new LaunchError(`${name} must be an integer ${min}..${max}`);
    return v;
  };
  const dpLimits = {
    connectTimeoutMs: limit("GATEWAY_CONNECT_TIMEOUT_MS", 100, 600_000),
    firstByteTimeoutMs: limit("GATEWAY_FIRST_BYTE_TIMEOUT_MS", 100, 86_400_000),
    idleTimeoutMs: limit("GATEWAY_IDLE_TIMEOUT_MS", 100, 86_400_000),
    bufferLimitBytes: limit("GATEWAY_BUFFER_LIMIT_BYTES", 65_536, 1 << 30),
  };

  const stops: Array<() => Promise<void>> = [];
  const pids: number[] = [];
  const files: WriteStream[] = [];
  const logFile = (name: string) => {
    const f = createWriteStream(join(logDir, name), { flags: "a" });
    files.push(f);
    return f;
  };
  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      for (const s of stops.reverse()) {
        try {
          await s();
        } catch (e) {
          say(`stop: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      await Promise.all(files.map((f) => new Promise<void>((r) => f.end(() => r()))));
    })());

  const spawnChild = (bin: string, args: string[], log: WriteStream): { proc: ChildProcess; exited: Promise<number | null> } => {
    const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], cwd: REPO });
    proc.stdout?.pipe(log, { end: false });
    proc.stderr?.pipe(log, { end: false });
    const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
    proc.once("error", () => undefined);
    if (proc.pid !== undefined) pids.push(proc.pid);
    // Never leave it behind if this process dies without stopping it.
    const reap = () => proc.kill("SIGKILL");
    process.once("exit", reap);
    void exited.then(() => process.removeListener("exit", reap));
    stops.push(async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGTERM");
        const t = setTimeout(() => proc.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(t);
      }
    });
    return { proc, exited };
  };

  try {
    // ---------------------------------------------------------------- Redis
    // The Redis the launcher starts holds instance API keys and the deployments: owner-only on disk (dir
    // 0700, files 0600: redis-server creates its files under the umask it inherits) and password-protected
    // (a password generated at the first start, kept in <data>/secrets/redis-password like the tokens).
    // The password goes in a config file in <data>/secrets/ (0600), not on the command line (`ps` shows that).
    let redisUrl = env.REDIS_URL;
    let redisControlUrl = redisUrl;
    let redisLaunched = false;
    if (!redisUrl) {
      const bin = env.REDIS_SERVER_BIN || which("redis-server");
      if (!bin) throw new LaunchError(REDIS_INSTALL_HELP);
      const port = env.REDIS_PORT ? Number(env.REDIS_PORT) : await freePort();
      let dir: string;
      if (opts.redisMode === "ephemeral") {
        dir = mkdtempSync(join(tmpdir(), "gw-demo-redis-"));
        stops.push(async () => rmSync(dir, { recursive: true, force: true }));
      } else {
        dir = join(dataDir, "redis");
        mkdirSync(dir, { recursive: true, mode: 0o700 });
      }
      ownerOnly(dir, say);
      const persistent = opts.redisMode !== "ephemeral";
      const redisSecrets = join(dataDir, "secrets");
      const password = keptToken(redisSecrets, "redis-password", say).token;
      const conf = join(redisSecrets, "redis.conf");
      const confTmp = `${conf}.${process.pid}.tmp`;
      rmSync(confTmp, { force: true });
      writeFileSync(confTmp, `# Generated by envoy/local/launcher.ts at each start. Do not edit.\nrequirepass ${redisQuote(password)}\n`, { mode: 0o600, flag: "wx" });
      chmodSync(confTmp, 0o600);
      renameSync(confTmp, conf);
      const args = [conf, "--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", persistent ? "yes" : "no",
        "--appendfsync", "everysec", "--daemonize", "no", "--loglevel", "warning", "--protected-mode", "yes"];
      // redis-server creates its AOF/RDB files (and appendonlydir/) under the umask it inherits: owner-only.
      const umask = process.umask(0o077);
      let started: ReturnType<typeof spawnChild>;
      try {
        started = spawnChild(bin, args, logFile("redis.log"));
      } finally {
        process.umask(umask);
      }
      const { proc, exited } = started;
      let gone = false;
      void exited.then(() => (gone = true));
      await until(async () => gone || (await redisAuthPing(port, password)), 10_000, `redis-server on 127.0.0.1:${port}`);
      if (gone) throw new LaunchError(`redis-server (${bin}) exited at start (code ${proc.exitCode}); see ${join(logDir, "redis.log")}`);
      redisUrl = `redis://127.0.0.1:${port}`;
      redisControlUrl = `redis://:${encodeURIComponent(password)}@127.0.0.1:${port}`;
      redisLaunched = true;
      say(`redis      ${redisUrl} (${persistent ? `append-only data in ${dir}` : "in memory, for this run only"}; password in ${join(redisSecrets, "redis-password")})`);
    } else {
      say(`redis      ${redactRedisUrl(redisUrl)} (REDIS_URL)`);
    }

    // ---------------------------------------------------------------- tokens + control
    // Tokens the launcher generates are kept in <data>/secrets/ and reused at the next start (a dashboard
    // tab, a script's TOKEN, Envoy's bootstrap stay valid); CONTROL_ADMIN_TOKENS / CONTROL_PLUGIN_TOKENS win.
    const secrets = join(dataDir, "secrets");
    const configuredAdmin = firstOf(env.CONTROL_ADMIN_TOKENS);
    const keptAdmin = configuredAdmin === undefined ? keptToken(secrets, "admin-token", say) : null;
    const adminToken = configuredAdmin ?? keptAdmin!.token;
    const configuredPlugin = firstOf(env.CONTROL_PLUGIN_TOKENS);
    const keptPlugin = configuredPlugin === undefined ? keptToken(secrets, "plugin-token", say) : null;
    const pluginToken = configuredPlugin ?? keptPlugin!.token;
    // The data plane is chosen first: a real Envoy gets its clusters over ADS (envoy/bootstrap.yaml),
    // so the control service then serves gRPC on CONTROL_XDS_GRPC_PORT (default 18000, the shipped
    // bootstrap's; set it empty for the REST fallback). The local data plane needs no clusters: ADS stays
    // off unless CONTROL_XDS_GRPC_PORT is set.
    const choice = env.GATEWAY_DATA_PLANE ?? "auto";
    if (!["auto", "local", "envoy"].includes(choice)) throw new LaunchError("GATEWAY_DATA_PLANE must be auto, local or envoy");
    const envoy = choice === "local" ? null : findEnvoy(env);
    if (choice === "envoy" && !envoy?.usable) throw new LaunchError(`GATEWAY_DATA_PLANE=envoy but no Envoy ≥ 1.35 found (${envoy ? `${envoy.bin}: ${envoy.version ?? "unknown version"}` : "set ENVOY_BIN or put envoy on PATH"})`);
    if (envoy && !envoy.usable) say(`envoy      ${envoy.bin} is ${envoy.version ?? "of unknown version"}; the gateway needs ≥ 1.35: using the local data plane`);
    const adsPortEnv = env.CONTROL_XDS_GRPC_PORT ?? (envoy?.usable ? String(DEFAULT_ADS_PORT) : undefined);
    const loaded = loadConfig({
      LOG_LEVEL: "info",
      ...env,
      REDIS_URL: redisControlUrl,
      CONTROL_HOST: controlHost,
      CONTROL_PORT: String(controlPort),
      CONTROL_ADMIN_TOKENS: env.CONTROL_ADMIN_TOKENS || adminToken,
      CONTROL_PLUGIN_TOKENS: env.CONTROL_PLUGIN_TOKENS || pluginToken,
      ...(adsPortEnv !== undefined ? { CONTROL_XDS_GRPC_PORT: adsPortEnv } : {}),
    });
    if (!loaded.ok) throw new LaunchError(`invalid control configuration:\n${loaded.issues.map((i) => `  ${i.path || "(env)"}: ${i.message}`).join("\n")}`);
    if (!(await portFree(controlPort, controlHost))) throw new LaunchError(`CONTROL_PORT ${controlPort} on ${controlHost} is in use; set CONTROL_PORT to a free port`);
    const grpc = loaded.config.xdsGrpc;
    if (grpc && grpc.port !== 0 && !(await portFree(grpc.port, grpc.host))) {
      throw new LaunchError(`CONTROL_XDS_GRPC_PORT ${grpc.port} on ${grpc.host} (the control service's ADS port) is in use; set CONTROL_XDS_GRPC_PORT to a free port, or to nothing (CONTROL_XDS_GRPC_PORT=) for REST xDS`);
    }
    const controlLog = logFile("control.log");
    const control: Control = await startControl(loaded.config, { logSink: (l) => controlLog.write(l + "\n") });
    stops.push(() => control.stop());
    say(`control    ${control.url}${control.adsPort !== null ? `, ADS (xDS over gRPC) on port ${control.adsPort}` : ""} (log: ${join(logDir, "control.log")})`);

    // ---------------------------------------------------------------- plugin
    if (!existsSync(DEFAULT_PLUGIN_WASM)) {
      say("building the plugin (build/plugin.wasm is missing): npm run build:plugin");
      const r = spawnSync("npm", ["run", "build:plugin"], { cwd: REPO, stdio: ["ignore", "inherit", "inherit"] });
      if (r.status !== 0 || !existsSync(DEFAULT_PLUGIN_WASM)) throw new LaunchError("npm run build:plugin failed");
    }

    // ---------------------------------------------------------------- data plane
    if (!(await portFree(listenPort, listenHost))) throw new LaunchError(`GATEWAY_PORT ${listenPort} on ${listenHost} is in use; set GATEWAY_PORT to a free port`);

    let url: string;
    let dp: DataPlaneGroup | null = null;
    let envoyAdminPort = 0;
    if (envoy?.usable) {
      const adminPort = env.ENVOY_ADMIN_PORT ? Number(env.ENVOY_ADMIN_PORT) : await freePort();
      envoyAdminPort = adminPort;
      const doc = localEnvoyBootstrap({ listenHost, listenPort, adminPort, controlHost, controlPort: control.port, adsPort: control.adsPort, pluginToken, wasmPath: DEFAULT_PLUGIN_WASM, passthroughUrl });
      const v = validateBootstrap(doc);
      if (!v.ok) throw new LaunchError(`generated Envoy bootstrap does not validate:\n${v.errors.map(formatIssue).join("\n")}`);
      const dir = join(dataDir, "envoy");
      mkdirSync(dir, { recursive: true });
      const file = join(dir, "bootstrap.yaml");
      // It holds the plugin token: readable by the owner only.
      writeFileSync(file, `# Generated by envoy/local/launcher.ts from envoy/bootstrap.yaml for this run. Do not edit.\n${stringify(doc)}`, { mode: 0o600 });
      const { exited } = spawnChild(envoy.bin, ["-c", file, "--log-level", "warn", "--base-id", String(adminPort)], logFile("envoy.log"));
      let gone = false;
      void exited.then(() => (gone = true));
      await until(
        async () => gone || (await fetch(`http://127.0.0.1:${adminPort}/ready`).then((r) => r.ok, () => false)),
        30_000,
        `Envoy's admin /ready on 127.0.0.1:${adminPort}`,
      );
      if (gone) throw new LaunchError(`envoy exited at start; see ${join(logDir, "envoy.log")} (config: ${file})`);
      url = `http://${listenHost}:${listenPort}`;
      say(`envoy      ${envoy.bin} ${envoy.version} (config: ${file}, clusters ${control.adsPort !== null ? "over ADS" : "by REST polling"}, admin: http://127.0.0.1:${adminPort}, log: ${join(logDir, "envoy.log")})`);
    } else {
      const dpLog = logFile("dataplane.log");
      dp = await startDataPlaneProcesses({
        processes,
        controlUrl: control.url,
        pluginToken,
        port: listenPort,
        host: listenHost,
        passthroughUrl,
        workers,
        ...Object.fromEntries(Object.entries(dpLimits).filter(([, v]) => v !== undefined)),
        log: (l) => {
          dpLog.write(l + "\n");
          if (/\] (warn|error|critical):|plugin failure|internal error/.test(l)) say(l);
        },
      });
      stops.push(() => dp!.close());
      url = dp.url;
    }
    const gateway: Gateway = {
      url,
      controlUrl: control.url,
      adminToken,
      adminTokenGenerated: configuredAdmin === undefined,
      adminTokenFile: keptAdmin?.file ?? null,
      adminTokenCreated: keptAdmin?.created ?? false,
      pluginTokenFile: keptPlugin?.file ?? null,
      dashboardUrl: `${control.url}/ui/`,
      // The token rides in the fragment: the browser never sends it (no server or proxy log sees it); the
      // page reads it once and removes it from the address bar.
      signInUrl: configuredAdmin === undefined ? `${control.url}/ui/#token=${encodeURIComponent(adminToken)}` : null,
      dataPlane: dp ? "local" : "envoy",
      envoyVersion: dp ? null : (envoy?.version ?? null),
      redisUrl: redactRedisUrl(redisUrl),
      redisLaunched,
      logDir,
      async waitForTable(v, o = {}) {
        const timeoutMs = o.timeoutMs ?? 15_000;
        if (dp) return dp.waitForTable(v, timeoutMs);
        const admin = `http://127.0.0.1:${envoyAdminPort}`;
        // The plugin's gauge (Envoy prefixes plugin stats with "wasmcustom."), text format: "name: value".
        const version = async (): Promise<number> => {
          try {
            const text = await (await fetch(`${admin}/stats?filter=${encodeURIComponent("gateway\\.table\\.version$")}`)).text();
            return Math.max(0, ...[...text.matchAll(/gateway\.table\.version:\s*(\d+)/g)].map((m) => Number(m[1])));
          } catch {
            return 0;
          }
        };
        type HostStatus = { health_status?: Record<string, unknown> };
        const healthyHosts = async (cluster: string): Promise<number> => {
          try {
            const j = (await (await fetch(`${admin}/clusters?format=json`)).json()) as { cluster_statuses?: { name: string; host_statuses?: HostStatus[] }[] };
            const c = j.cluster_statuses?.find((x) => x.name === cluster);
            const ok = (h: HostStatus) => {
              const hs = h.health_status ?? {};
              return (hs.eds_health_status ?? "HEALTHY") === "HEALTHY" && !hs.failed_active_health_check && !hs.pending_active_hc && !hs.failed_outlier_check;
            };
            return (c?.host_statuses ?? []).filter(ok).length;
          } catch {
            return 0;
          }
        };
        await until(async () => (await version()) >= v, timeoutMs, `Envoy's plugin to report routing table version ${v}`);
        if (o.cluster) {
          // Not fatal: Envoy keeps polling CDS/EDS (refresh_delay) and health-checking; say so and go on.
          await until(async () => (await healthyHosts(o.cluster!)) >= (o.hosts ?? 1), timeoutMs, "").catch(() =>
            say(`warning: after ${timeoutMs} ms Envoy does not yet have ${o.hosts ?? 1} healthy hosts in cluster ${o.cluster} (CDS/EDS from the control service, active health checks); requests may get 503 "no healthy upstream" until it has. See ${admin}/clusters`),
          );
        }
        // The stats gauge is one for all workers; the others are nudged through a shared queue when the
        // poller adopts (plugin/control/notify.ts), a post to each worker's dispatcher: a short margin.
        await new Promise((r) => setTimeout(r, 200));
      },
      stop,
      children: () => [...pids],
    };
    // Ready means routing: until the data plane holds the control service's table, a request naming a
    // model gets 503 table_not_loaded. Wait for it before saying "running" (a warning if it is slow).
    const current = control.cache.current()?.version ?? 0;
    if (current > 0) await gateway.waitForTable(current).catch((e: unknown) => say(`warning: ${e instanceof Error ? e.message : String(e)}`));
    return gateway;
  } catch (e) {
    await stop();
    throw e;
  }
}

/** The banner: what runs where, and how to use it. */
export function banner(g: Gateway): string {
  const lines: string[] = [];
  lines.push("");
  if (g.dataPlane === "local") {
    lines.push("Model gateway is running — LOCAL DATA PLANE (not Envoy): the plugin (build/plugin.wasm) runs in our");
    lines.push("TypeScript proxy-wasm test host in front of a Node forwarder. Put Envoy ≥ 1.35 on PATH (or set ENVOY_BIN) for the real thing.");
  } else {
    lines.push(`Model gateway is running — Envoy ${g.envoyVersion} with the plugin (build/plugin.wasm).`);
  }
  lines.push("");
  lines.push(`  gateway (send requests here)  ${g.url}`);
  lines.push(`  control service               ${g.controlUrl}`);
  if (g.signInUrl) {
    lines.push(`  dashboard (sign-in link)      ${g.signInUrl}`);
    lines.push(`  admin token                   ${g.adminToken}`);
    lines.push(`                                ${g.adminTokenCreated ? "generated now and kept" : "kept since an earlier start"} in ${g.adminTokenFile} (mode 0600): every start reuses it; CONTROL_ADMIN_TOKENS overrides it`);
  } else {
    lines.push(`  dashboard                     ${g.dashboardUrl} (sign in with a token of CONTROL_ADMIN_TOKENS)`);
    lines.push("  admin token                   from CONTROL_ADMIN_TOKENS");
  }
  if (g.pluginTokenFile) lines.push(`  plugin token                  kept in ${g.pluginTokenFile} (mode 0600); CONTROL_PLUGIN_TOKENS overrides it`);
  lines.push(`  redis                         ${g.redisUrl}${g.redisLaunched ? "" : " (REDIS_URL)"}`);
  lines.push(`  logs                          ${g.logDir}`);
  lines.push("");
  return lines.join("\n");
}

/**
 * SIGINT/SIGTERM → stop everything, exit 0. Ctrl-C reaches every process of the terminal's process group
 * (npm and this one; a `tsx` CLI parent, when started through it, relays it once more), so repeats within
 * 2 s are the same request. A signal
 * after that, or a stop taking over 20 s, exits at once (130).
 */
export function stopOnSignals(stopAll: () => Promise<void>, say: (l: string) => void = (l) => process.stderr.write(l + "\n")): void {
  let since: number | null = null;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      if (since !== null) {
        if (Date.now() - since < 2_000) return;
        say("stopping already; exiting now");
        process.exit(130);
      }
      since = Date.now();
      say(`\n${sig}: stopping…`);
      setTimeout(() => {
        say("stop took too long; exiting");
        process.exit(130);
      }, 20_000).unref();
      stopAll().then(
        () => {
          say("stopped.");
          process.exit(0);
        },
        (e: unknown) => {
          say(`stop failed: ${e instanceof Error ? e.message : String(e)}`);
          process.exit(1);
        },
      );
    });
  }
}
