// The Portkey AI gateway (@portkey-ai/gateway, its Node server build/start-server.js, run as shipped:
// `node build/start-server.js --port=N --headless`) in its own process, configured per request by the
// `x-portkey-config` header: strategy loadbalance over OpenAI-compatible targets (provider "openai",
// custom_host = an upstream's base URL, weight = the bench weight). Portkey's loadbalance is a weighted
// random pick per request (Math.random() * Σweights), so shares match the weights statistically.
//
// Containment (127.0.0.1 only), through a preload module (`--import <temp dir>/loopback-guard.mjs`, plain
// JS written by this file, no change to Portkey's code):
// - its server calls listen(port) without a host (all interfaces); the preload binds it to 127.0.0.1;
// - every outgoing TCP connect to a host other than loopback is refused in-process and reported on stderr
//   as "portkey-guard: blocked …" (counted in the report). Its code has no start-up or per-request call
//   home (the only portkey.ai URLs are for hosted guardrails/files, unused here), so 0 is expected.
// The environment is reduced to PATH/HOME: no HTTP(S)_PROXY (Portkey reads them), no
// REDIS_CONNECTION_STRING (it would turn on its Redis cache). `--headless` drops the log UI routes;
// Portkey still clones and parses every /v1 response for its log stream in Node (its normal cost).
// stdout (a spinner and console.clear()) is discarded; stderr is kept for the report.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { freePort } from "../../test/support/redis.js";

const GUARD = `
import net from "node:net";
const LOOP = new Set(["127.0.0.1", "::1", "localhost", "::ffff:127.0.0.1"]);
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...a) {
  if (a[0] !== null && typeof a[0] === "object") a[0] = { ...a[0], host: a[0].path ? a[0].host : "127.0.0.1" };
  else if (typeof a[0] === "number" || (typeof a[0] === "string" && /^[0-9]+$/.test(a[0]))) {
    if (a[1] === undefined || a[1] === null) a[1] = "127.0.0.1";
    else if (typeof a[1] !== "string") a.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, a);
};
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...a) {
  let o = a[0];
  if (Array.isArray(o)) o = o[0];
  let host = "localhost", port = "";
  if (o !== null && typeof o === "object") {
    if (o.path) return connect.apply(this, a);
    host = o.host ?? "localhost"; port = o.port;
  } else { port = o; if (typeof a[1] === "string") host = a[1]; }
  if (!LOOP.has(host) && !/^127\\./.test(host)) {
    process.stderr.write("portkey-guard: blocked outbound connection to " + host + ":" + port + "\\n");
    const s = this;
    process.nextTick(() => s.destroy(Object.assign(new Error("portkey-guard: not allowed in the bench (127.0.0.1 only)"), { code: "ECONNREFUSED" })));
    return this;
  }
  return connect.apply(this, a);
};
`;

export interface Target {
  url: string;
  weight: number;
}

/** The x-portkey-config header value: loadbalance over `targets` (base URLs ending in /v1). */
export function portkeyConfig(targets: Target[]): string {
  return JSON.stringify({
    strategy: { mode: "loadbalance" },
    targets: targets.map((t) => ({ provider: "openai", api_key: "sk-bench-unused", custom_host: t.url, weight: t.weight })),
  });
}

export interface Portkey {
  url: string;
  version: string;
  pid: number;
  /** Outbound non-loopback connection attempts the guard blocked. */
  blocked(): string[];
  stderrTail(): string;
  stop(): Promise<void>;
  killNow(): void;
}

export function portkeyServer(): { script: string; version: string } | null {
  try {
    const req = createRequire(import.meta.url);
    const pkg = req.resolve("@portkey-ai/gateway/package.json");
    const script = join(dirname(pkg), "build", "start-server.js");
    if (!existsSync(script)) return null;
    return { script, version: (req(pkg) as { version: string }).version };
  } catch {
    return null;
  }
}

export async function startPortkey(): Promise<Portkey> {
  const found = portkeyServer();
  if (!found) throw new Error("@portkey-ai/gateway is not installed (npm install)");
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "gw-bench-portkey-"));
  const guard = join(dir, "loopback-guard.mjs");
  writeFileSync(guard, GUARD);
  const cp: ChildProcess = spawn(
    process.execPath,
    ["--import", guard, found.script, `--port=${port}`, "--headless"],
    {
      cwd: dirname(found.script),
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp" },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let err = "";
  const blocked: string[] = [];
  cp.stderr!.setEncoding("utf8");
  cp.stderr!.on("data", (s: string) => {
    err = (err + s).slice(-8_000);
    for (const m of s.matchAll(/portkey-guard: blocked outbound connection to (\S+)/g)) blocked.push(m[1]!);
  });
  let exited = false;
  const exitedP = new Promise<void>((r) =>
    cp.once("exit", () => {
      exited = true;
      rmSync(dir, { recursive: true, force: true });
      r();
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited) throw new Error(`Portkey exited at start: ${err.slice(-2_000)}`);
    const up = await fetch(`${url}/`).then((r) => r.text(), () => "");
    if (up.includes("AI Gateway")) break;
    if (Date.now() > deadline) {
      cp.kill("SIGKILL");
      throw new Error(`Portkey not answering on ${url} within 20 s: ${err.slice(-2_000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const within = (ms: number) => Promise.race([exitedP.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
  return {
    url,
    version: found.version,
    pid: cp.pid ?? -1,
    blocked: () => [...blocked],
    stderrTail: () => err,
    async stop() {
      if (exited) return;
      cp.kill("SIGTERM");
      if (await within(3_000)) return;
      cp.kill("SIGKILL");
      await within(2_000);
    },
    killNow() {
      if (!exited) cp.kill("SIGKILL");
    },
  };
}
