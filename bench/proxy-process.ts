// A reverse proxy from Debian's packages (nginx, HAProxy) run by a bench: found on PATH, its generated
// config checked, run in the foreground on a free 127.0.0.1 port, waited for until it listens, stopped
// (SIGTERM, then SIGKILL) and its temp dir removed. bench/gateway/nginx.ts and bench/balance/proxies.ts
// write the configs; this is the one runner.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { delimiter, join } from "node:path";

export interface ProxyProcess {
  url: string;
  version: string;
  pid: number;
  /** The end of its stderr and log file (for a failure message). */
  logTail(): string;
  stop(): Promise<void>;
  killNow(): void;
}

/** `name` on PATH (Debian: /usr/sbin), or null; HAPROXY_BIN / NGINX_BIN override. */
export function findBin(name: "haproxy" | "nginx"): string | null {
  const override = process.env[`${name.toUpperCase()}_BIN`];
  if (override) return existsSync(override) ? override : null;
  for (const d of [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/usr/local/sbin"]) {
    if (d !== "" && existsSync(join(d, name))) return join(d, name);
  }
  return null;
}

/** The version `bin flag` prints (HAProxy's or nginx's banner), or "unknown". */
export function versionOf(bin: string, flag: string): string {
  const v = spawnSync(bin, [flag], { encoding: "utf8" });
  const text = `${v.stdout ?? ""}${v.stderr ?? ""}`;
  return /(?:HAProxy version|nginx version: nginx\/)\s*(\S+)/.exec(text)?.[1] ?? "unknown";
}

/** Runs the proxy's own config check (`nginx -t`, `haproxy -c`); refused → the dir is removed and it throws. */
export function checkConfig(name: string, bin: string, args: string[], dir: string): void {
  const check = spawnSync(bin, args, { encoding: "utf8" });
  if (check.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${name} ${args[0]} refused the generated config: ${(check.stderr ?? "").trim()}`);
  }
}

async function listening(port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => (s.destroy(), r(true)));
    s.once("error", () => r(false));
  });
}

/** Starts `bin args` in the foreground and resolves once it listens on `port` (10 s at most). */
export async function runProxy(name: string, bin: string, version: string, dir: string, port: number, args: string[], logFile: string): Promise<ProxyProcess> {
  const cp: ChildProcess = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  cp.stderr!.setEncoding("utf8");
  cp.stderr!.on("data", (s: string) => (err = (err + s).slice(-4_000)));
  let exited = false;
  const exitedP = new Promise<void>((r) => cp.once("exit", () => ((exited = true), r())));
  const within = (ms: number) => Promise.race([exitedP.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
  const logTail = () => {
    let log = "";
    try {
      log = readFileSync(logFile, "utf8");
    } catch {
      // none yet
    }
    return (err + log).slice(-4_000);
  };
  const deadline = Date.now() + 10_000;
  while (!(await listening(port))) {
    if (exited || Date.now() > deadline) {
      const tail = logTail();
      cp.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`${name} did not start: ${tail}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    version,
    pid: cp.pid ?? -1,
    logTail,
    async stop() {
      if (!exited) {
        cp.kill("SIGTERM"); // fast shutdown (nginx: master and worker)
        if (!(await within(3_000))) {
          cp.kill("SIGKILL");
          await within(2_000);
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
    killNow() {
      if (!exited) cp.kill("SIGKILL");
    },
  };
}
