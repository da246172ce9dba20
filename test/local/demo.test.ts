// `npm run demo` as a user runs it: spawn `tsx envoy/local/demo.ts` on free ports, wait for the banner,
// send the printed curl's request, Ctrl-C (SIGINT to the whole process group, as a terminal does), and
// check the exit code and that no process it started is left.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { freePort, waitFor } from "../support/redis.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const TSX = fileURLToPath(new URL("../../node_modules/.bin/tsx", import.meta.url));

/** Every descendant of `root` (Linux: /proc via ps). */
function descendants(root: number): { pid: number; cmd: string }[] {
  const out = execFileSync("ps", ["-eo", "pid=,ppid=,args="], { encoding: "utf8" });
  const rows = out.split("\n").map((l) => /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l)).filter((m): m is RegExpExecArray => m !== null).map((m) => ({ pid: Number(m[1]), ppid: Number(m[2]), cmd: m[3]! }));
  const found: { pid: number; cmd: string }[] = [];
  const walk = (p: number) => {
    for (const r of rows) if (r.ppid === p) {
      found.push({ pid: r.pid, cmd: r.cmd });
      walk(r.pid);
    }
  };
  walk(root);
  return found;
}

/** Alive and not a zombie. */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

test("npm run demo: banner, a working curl, Ctrl-C → exit 0 and nothing left running", { timeout: 40_000 }, async () => {
  const [gatewayPort, controlPort] = [await freePort(), await freePort()];
  const data = mkdtempSync(join(tmpdir(), "gw-demo-test-"));
  const env: NodeJS.ProcessEnv = { ...process.env, GATEWAY_PORT: String(gatewayPort), CONTROL_PORT: String(controlPort), GATEWAY_DATA_PLANE: "local", GATEWAY_DATA_DIR: data };
  delete env.REDIS_URL;
  delete env.CONTROL_ADMIN_TOKENS;
  const child = spawn(TSX, ["envoy/local/demo.ts"], { cwd: REPO, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => child.once("exit", (code, signal) => r({ code, signal })));
  let exit: { code: number | null; signal: string | null } | null = null;
  void exited.then((e) => (exit = e));
  let tree: { pid: number; cmd: string }[] = [];
  try {
    await waitFor(() => exit !== null || stdout.includes("Ctrl-C stops everything"), 30_000, `the demo's banner\n${stdout}\n${stderr}`);
    assert.equal(exit, null, `the demo exited early:\n${stdout}\n${stderr}`);
    assert.match(stdout, /LOCAL DATA PLANE \(not Envoy\)/);
    assert.match(stdout, new RegExp(`gateway \\(send requests here\\)\\s+http://127\\.0\\.0\\.1:${gatewayPort}`));
    assert.match(stdout, new RegExp(`control service\\s+http://127\\.0\\.0\\.1:${controlPort}`));
    const token = /admin token\s+(\S{16,})/.exec(stdout)?.[1];
    assert.ok(token, stdout);
    assert.ok(stdout.includes(`http://127.0.0.1:${controlPort}/ui/#token=${token}`), "the banner's sign-in link to the dashboard");

    // The curl the banner prints, sent as it is.
    const curl = /curl (http:\/\/\S+\/v1\/chat\/completions) -H 'content-type: application\/json' -d '([^']+)'/.exec(stdout);
    assert.ok(curl, `no curl line in:\n${stdout}`);
    const answers = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const r: Response = await fetch(curl[1]!, { method: "POST", headers: { "content-type": "application/json" }, body: curl[2]! });
      assert.equal(r.status, 200);
      answers.add((await r.json()).choices[0].message.content);
    }
    assert.equal(answers.size, 4, `round robin over the 4 mock instances: ${[...answers].join(" | ")}`);

    tree = descendants(child.pid!);
    assert.ok(tree.some((p) => /redis-server/.test(p.cmd)), `the demo runs its own redis-server: ${JSON.stringify(tree)}`);
    process.kill(-child.pid!, "SIGINT"); // Ctrl-C: the whole process group
    await waitFor(() => exit !== null, 25_000, "the demo to exit after SIGINT");
    assert.deepEqual(exit, { code: 0, signal: null }, stderr);
    assert.match(stderr, /stopped\./);
    await waitFor(() => tree.every((p) => !running(p.pid)), 5_000, `every process of the demo gone: ${JSON.stringify(tree.filter((p) => running(p.pid)))}`);
    // Nothing listens any more.
    await assert.rejects(fetch(`http://127.0.0.1:${gatewayPort}/`));
    await assert.rejects(fetch(`http://127.0.0.1:${controlPort}/healthz`));
  } finally {
    if (exit === null) {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // gone
      }
    }
    for (const p of tree) if (running(p.pid)) process.kill(p.pid, "SIGKILL");
    rmSync(data, { recursive: true, force: true });
  }
});
