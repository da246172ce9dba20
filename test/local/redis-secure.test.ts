// Issue 16 item 5: the Redis `npm start` launches is owner-only on disk and password-protected.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { redactRedisUrl } from "../../envoy/local/launcher.js";
import { freePort, waitFor } from "../support/redis.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

function start(env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, ["--import", "tsx", "envoy/local/start.ts"], { cwd: REPO, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  let exit: { code: number | null; signal: string | null } | null = null;
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => child.once("exit", (code, signal) => r((exit = { code, signal }))));
  return { stdout: () => out, stderr: () => err, exit: () => exit, exited, pid: child.pid! };
}

/** Sends raw RESP commands, returns the first `replies` reply lines. */
function redisSay(port: number, commands: string[][], replies: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ port, host: "127.0.0.1" });
    let buf = "";
    sock.setTimeout(3_000, () => (sock.destroy(), reject(new Error(`no reply: ${JSON.stringify(buf)}`))));
    sock.on("error", reject);
    sock.on("connect", () => sock.write(commands.map((c) => `*${c.length}\r\n${c.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join("")}`).join("")));
    sock.on("data", (d) => {
      buf += d.toString();
      const lines = buf.split("\r\n");
      if (lines.length > replies) {
        sock.destroy();
        resolve(lines.slice(0, replies));
      }
    });
  });
}

/** Every entry under `dir`: [path, mode & 0o777, isDirectory]. */
function walk(dir: string): Array<[string, number, boolean]> {
  const out: Array<[string, number, boolean]> = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    out.push([p, statSync(p).mode & 0o777, e.isDirectory()]);
    if (e.isDirectory()) out.push(...walk(p));
  }
  return out;
}

describe("npm start: the local Redis is owner-only and needs a password", { timeout: 90_000 }, () => {
  test("data dir 0700, files 0600, no password → NOAUTH; the password is kept in <data>/secrets and never printed", async () => {
    const data = mkdtempSync(join(tmpdir(), "gw-redis-secure-"));
    // Today's layout from an earlier start: <data>/redis 0755 with a world-readable file in it.
    mkdirSync(join(data, "redis"), { mode: 0o755 });
    writeFileSync(join(data, "redis", "leftover.txt"), "x", { mode: 0o644 });
    let env: NodeJS.ProcessEnv = {};
    let g: ReturnType<typeof start> | null = null;
    // Free ports are picked before npm start binds them: a concurrent test can take one in between. Only
    // that (a bind failure in the log) is retried, with new ports; any other failure fails the test.
    for (let attempt = 1; ; attempt++) {
      env = { ...process.env, GATEWAY_DATA_PLANE: "local", GATEWAY_DATA_DIR: data, GATEWAY_PORT: String(await freePort()), CONTROL_PORT: String(await freePort()), REDIS_PORT: String(await freePort()) };
      for (const k of ["REDIS_URL", "CONTROL_ADMIN_TOKENS", "CONTROL_PLUGIN_TOKENS", "PASSTHROUGH_URL"]) delete env[k];
      const started = start(env);
      g = started;
      await waitFor(() => started.exit() !== null || started.stdout().includes("Ctrl-C stops everything"), 30_000, "the banner");
      if (started.exit() === null) break;
      const logs = [join(data, "logs", "redis.log"), join(data, "logs", "control.log")].map((f) => (existsSync(f) ? readFileSync(f, "utf8") : "")).join("\n") + started.stderr();
      if (attempt >= 3 || !/Address already in use|EADDRINUSE/.test(logs)) break;
    }
    const port = Number(env.REDIS_PORT);
    try {
      assert.equal(g.exit(), null, g.stderr());
      const token = /admin token\s+(\S+)/.exec(g.stdout())?.[1];
      const control = `http://127.0.0.1:${env.CONTROL_PORT}`;
      // The control service talks to it (with the password): a write lands in the AOF.
      const created = await fetch(`${control}/v1/models`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ name: "secret-model" }) });
      assert.equal(created.status, 201);

      // Without the password: refused.
      const [noauth] = await redisSay(port, [["GET", "anything"]], 1);
      assert.match(noauth!, /^-NOAUTH/);
      const [keys] = await redisSay(port, [["KEYS", "*"]], 1);
      assert.match(keys!, /^-NOAUTH/);
      // With the kept password: accepted.
      const secrets = join(data, "secrets");
      const pwFile = join(secrets, "redis-password");
      assert.equal(statSync(pwFile).mode & 0o777, 0o600);
      assert.equal(statSync(secrets).mode & 0o777, 0o700);
      const password = readFileSync(pwFile, "utf8").trim();
      assert.ok(password.length >= 16);
      assert.deepEqual(await redisSay(port, [["AUTH", password], ["PING"]], 2), ["+OK", "+PONG"]);
      // Not on the command line (`ps` shows it to every local user), not in the output.
      const cmdlines = (existsSync("/proc/self/cmdline") ? readdirSync("/proc") : []).filter((p) => /^\d+$/.test(p)).map((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, "utf8");
        } catch {
          return "";
        }
      });
      if (cmdlines.length > 0) assert.ok(cmdlines.some((c) => c.includes("redis-server") && c.includes(String(port))), "redis-server runs");
      assert.ok(!cmdlines.some((c) => c.includes(password)), "the password is on no command line");
      assert.ok(!g.stdout().includes(password) && !g.stderr().includes(password), "the password is not printed");

      process.kill(g.pid, "SIGTERM");
      assert.deepEqual(await g.exited, { code: 0, signal: null }, g.stderr());
      const dir = join(data, "redis");
      assert.equal(statSync(dir).mode & 0o777, 0o700, "<data>/redis is 0700");
      const entries = walk(dir);
      assert.ok(entries.some(([p, , d]) => !d && p.includes("appendonly")), `AOF files exist: ${JSON.stringify(entries)}`);
      for (const [p, mode, isDir] of entries) assert.equal(mode, isDir ? 0o700 : 0o600, `${p} is ${mode.toString(8)}`);
      assert.ok(readFileSync(join(dir, "appendonlydir", readdirSync(join(dir, "appendonlydir")).find((f) => f.endsWith(".incr.aof"))!), "utf8").includes("secret-model"));
    } finally {
      if (g.exit() === null) {
        process.kill(g.pid, "SIGKILL");
        await g.exited;
      }
      rmSync(data, { recursive: true, force: true });
    }
  });

  test("a printed Redis URL never shows the password", () => {
    assert.equal(redactRedisUrl("redis://:s3cret@127.0.0.1:6379"), "redis://:***@127.0.0.1:6379");
    assert.equal(redactRedisUrl("rediss://user:s3cret@h:6380/0"), "rediss://user:***@h:6380/0");
    assert.equal(redactRedisUrl("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
  });
});
