/**
 * envoy/kubernetes/redis-sentinel.yaml, ConfigMap `redis-scripts`: the start scripts run for real.
 *
 * 1. common.sh + redis.sh / sentinel.sh are taken from the YAML as shipped, only their absolute paths
 *    (/scripts, /conf, /data) rewritten to temp dirs, and run with `sh` (dash on Debian, as in the redis
 *    image) with the pod's environment. `redis-server` and `redis-cli` on PATH are fakes: the fake server
 *    copies the config it is given and records its argv; the fake redis-cli answers per peer host like a
 *    sentinel that knows a primary, one that answers an error, or an unreachable peer (coreutils `timeout`
 *    is the real one). Checked: which primary each pod chooses, the files' content and mode, and that no
 *    password reaches a command line.
 * 2. The generated redis.conf of a primary and of a replica and the generated sentinel.conf, with the
 *    pod host names replaced by 127.0.0.1 and 6379/26379 by free ports (nothing else changed), are started
 *    with the real redis-server: the replica comes online with `masterauth`, the primary refuses writes
 *    until then (`min-replicas-to-write 1`) and accepts them after, and the sentinel (its own password)
 *    reports the primary and has discovered the replica through `auth-pass`. The generated sentinel.conf monitoring
 *    a host name (localhost) starts; without `sentinel resolve-hostnames yes` the real server refuses it.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createConnection } from "node:net";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import { parseAllDocuments } from "yaml";
import { freePort, spawnRedis, waitFor, type SpawnedRedis } from "../support/redis.js";
import { REPO } from "./support.js";

const NS = "ns-test";
const MASTER = "gwmaster";
const REDIS_PASSWORD = "r3dis+Pass/word=";
const SENTINEL_PASSWORD = "s3ntinel+Pass/word=";
const host = (i: number) => `redis-${i}.redis.${NS}.svc.cluster.local`;

/** The ConfigMap's scripts, exactly as shipped. */
function shippedScripts(): Record<string, string> {
  const text = readFileSync(join(REPO, "envoy/kubernetes/redis-sentinel.yaml"), "utf8");
  const docs = parseAllDocuments(text).map((d) => d.toJS() as Record<string, any>);
  const cm = docs.find((d) => d?.kind === "ConfigMap" && d.metadata?.name === "redis-scripts");
  assert.ok(cm, "no ConfigMap redis-scripts");
  for (const k of ["common.sh", "redis.sh", "sentinel.sh"]) assert.equal(typeof cm.data?.[k], "string", `redis-scripts has no ${k}`);
  return cm.data as Record<string, string>;
}

/** Rewrites only the absolute paths /scripts, /conf, /data (as whole path components) to the given dirs. */
function rewritePaths(script: string, dirs: { scripts: string; conf: string; data: string }): { text: string; hits: number } {
  let hits = 0;
  const text = script.replace(/(^|[\s"'=])\/(scripts|conf|data)(?=\/|\s|$|["'])/gm, (_m, pre: string, name: "scripts" | "conf" | "data") => {
    hits++;
    return pre + dirs[name];
  });
  assert.doesNotMatch(text, /(^|[\s"'=])\/(scripts|conf|data)\b/m, "an absolute path was left");
  return { text, hits };
}

let work = "";
let scripts: Record<string, string> = {};

/** The fakes: redis-server copies its config to $FAKE_OUT/config and its argv to $FAKE_OUT/argv; redis-cli answers
 * from $FAKE_CLI/<host> (exit 0) or fails like an unreachable peer, logging argv and REDISCLI_AUTH. */
function makeFakeBin(): string {
  const bin = join(work, "bin");
  mkdirSync(bin);
  writeFileSync(
    join(bin, "redis-server"),
    ['#!/bin/sh', 'printf "%s\\n" "$@" > "$FAKE_OUT/argv"', 'cp "$1" "$FAKE_OUT/config"', "exit 0", ""].join("\n"),
  );
  writeFileSync(
    join(bin, "redis-cli"),
    [
      "#!/bin/sh",
      'printf "%s\\n" "$*" >> "$FAKE_OUT/cli-argv"',
      'printf "%s\\n" "${REDISCLI_AUTH-<unset>}" >> "$FAKE_OUT/cli-auth"',
      'h=""; prev=""',
      'for a in "$@"; do if [ "$prev" = "-h" ]; then h="$a"; fi; prev="$a"; done',
      'if [ -n "$h" ] && [ -f "$FAKE_CLI/$h" ]; then cat "$FAKE_CLI/$h"; exit 0; fi',
      'echo "Could not connect to Redis at $h:26379: Name or service not known" >&2',
      "exit 1",
      "",
    ].join("\n"),
  );
  chmodSync(join(bin, "redis-server"), 0o755);
  chmodSync(join(bin, "redis-cli"), 0o755);
  return bin;
}

interface Run {
  config: string;
  configPath: string;
  mode: number;
  serverArgv: string[];
  cliArgv: string[];
  cliAuth: string[];
  dirs: { scripts: string; conf: string; data: string };
}

let runCount = 0;
/** Runs redis.sh or sentinel.sh for pod `redis-<pod>` with the fake redis-cli answering `answers` (host → stdout). */
function runScript(which: "redis" | "sentinel", pod: number, answers: Record<string, string>): Run {
  const dir = join(work, `run-${++runCount}-${which}-${pod}`);
  const dirs = { scripts: join(dir, "scripts"), conf: join(dir, "conf"), data: join(dir, "data") };
  const out = join(dir, "out");
  const cli = join(dir, "cli");
  for (const d of [dir, ...Object.values(dirs), out, cli]) mkdirSync(d, { recursive: true });
  let hits = 0;
  for (const [name, text] of Object.entries(scripts)) {
    const r = rewritePaths(text, dirs);
    hits += r.hits;
    writeFileSync(join(dirs.scripts, name), r.text);
  }
  // redis.sh: /scripts/common.sh, dir /data, /conf/redis.conf twice; sentinel.sh: /scripts/common.sh, dir /conf,
  // /conf/sentinel.conf twice.
  assert.equal(hits, 8, "the scripts' absolute paths changed: update the rewrite");
  for (const [h, answer] of Object.entries(answers)) writeFileSync(join(cli, h), answer);
  const r = spawnSync("sh", [join(dirs.scripts, `${which}.sh`)], {
    encoding: "utf8",
    timeout: 30_000,
    env: {
      PATH: `${join(work, "bin")}:${process.env.PATH}`,
      POD_NAME: `redis-${pod}`,
      POD_NAMESPACE: NS,
      MASTER_NAME: MASTER,
      REDIS_PASSWORD,
      SENTINEL_PASSWORD,
      FAKE_OUT: out,
      FAKE_CLI: cli,
    },
  });
  assert.equal(r.error, undefined, String(r.error));
  assert.equal(r.status, 0, `${which}.sh on redis-${pod} exited ${r.status} (${r.signal ?? ""}): ${r.stderr}`);
  assert.equal(r.stderr, "", `${which}.sh on redis-${pod} wrote to stderr`);
  const configPath = join(dirs.conf, `${which}.conf`);
  assert.ok(existsSync(join(out, "config")), `${which}.sh on redis-${pod} did not exec redis-server`);
  const lines = (f: string) => (existsSync(f) ? readFileSync(f, "utf8").split("\n").filter((l) => l !== "") : []);
  return {
    config: readFileSync(join(out, "config"), "utf8"),
    configPath,
    mode: statSync(configPath).mode & 0o777,
    serverArgv: lines(join(out, "argv")),
    cliArgv: lines(join(out, "cli-argv")),
    cliAuth: lines(join(out, "cli-auth")),
    dirs,
  };
}

const configLines = (c: string) => c.split("\n").filter((l) => l.trim() !== "");
const replicaofLines = (c: string) => configLines(c).filter((l) => /^(replicaof|slaveof)\b/.test(l));

/** Checks the parts of a run that do not depend on the chosen primary. */
function checkCommon(run: Run, which: "redis" | "sentinel", pod: number): void {
  assert.equal(run.mode, 0o600, `${which}.conf of redis-${pod} has mode ${run.mode.toString(8)}`);
  assert.deepEqual(run.serverArgv, which === "redis" ? [run.configPath] : [run.configPath, "--sentinel"]);
  for (const argv of [...run.serverArgv, ...run.cliArgv]) {
    assert.ok(!argv.includes(REDIS_PASSWORD) && !argv.includes(SENTINEL_PASSWORD), `a password on a command line: ${argv}`);
  }
  // redis-cli asked each other pod's sentinel (never its own), authenticating through the environment.
  const asked = run.cliArgv.map((a) => a.match(/-h (\S+)/)?.[1]);
  assert.ok(!asked.includes(host(pod)), `redis-${pod} asked its own sentinel`);
  for (const a of run.cliArgv) assert.match(a, new RegExp(`-p 26379 SENTINEL get-master-addr-by-name ${MASTER}$`));
  for (const a of run.cliAuth) assert.equal(a, SENTINEL_PASSWORD);
  const c = configLines(run.config);
  if (which === "redis") {
    assert.ok(c.includes("port 6379"));
    assert.ok(c.includes(`dir ${run.dirs.data}`));
    assert.ok(c.includes("appendonly yes"));
    assert.ok(c.includes(`requirepass "${REDIS_PASSWORD}"`));
    assert.ok(c.includes(`masterauth "${REDIS_PASSWORD}"`));
    assert.ok(c.includes(`replica-announce-ip ${host(pod)}`));
    assert.ok(c.includes("min-replicas-to-write 1"));
    assert.ok(c.includes("min-replicas-max-lag 10"));
  } else {
    assert.ok(c.includes("port 26379"));
    assert.ok(c.includes(`dir ${run.dirs.conf}`));
    assert.ok(c.includes(`sentinel announce-ip ${host(pod)}`));
    assert.ok(c.includes(`requirepass "${SENTINEL_PASSWORD}"`));
    assert.ok(c.includes(`sentinel sentinel-pass "${SENTINEL_PASSWORD}"`));
    assert.ok(c.includes(`sentinel auth-pass ${MASTER} "${REDIS_PASSWORD}"`));
    const monitor = c.findIndex((l) => l.startsWith("sentinel monitor "));
    assert.ok(monitor >= 0, "no sentinel monitor line");
    for (const d of ["sentinel resolve-hostnames yes", "sentinel announce-hostnames yes"]) {
      const i = c.indexOf(d);
      assert.ok(i >= 0 && i < monitor, `"${d}" must come before the monitor line`);
    }
    for (const l of c.slice(0, monitor)) assert.doesNotMatch(l, new RegExp(`^sentinel \\S+ ${MASTER}\\b`), "a per-master directive before its monitor");
  }
}

/** Asserts the primary every container of pod `pod` chose. */
function checkPrimary(pod: number, primary: number, answers: Record<string, string>): void {
  const r = runScript("redis", pod, answers);
  checkCommon(r, "redis", pod);
  if (pod === primary) assert.deepEqual(replicaofLines(r.config), [], `redis-${pod} is the primary: no replicaof`);
  else assert.deepEqual(replicaofLines(r.config), [`replicaof ${host(primary)} 6379`], `redis-${pod} replicates redis-${primary}`);
  const s = runScript("sentinel", pod, answers);
  checkCommon(s, "sentinel", pod);
  assert.deepEqual(configLines(s.config).filter((l) => l.startsWith("sentinel monitor ")), [`sentinel monitor ${MASTER} ${host(primary)} 6379 2`]);
}

before(() => {
  work = mkdtempSync(join(tmpdir(), "gw-redis-scripts-"));
  scripts = shippedScripts();
  makeFakeBin();
});
after(() => rmSync(work, { recursive: true, force: true }));

describe("envoy/kubernetes redis-scripts: the start scripts choose the primary and write the configs", () => {
  test("first start (no sentinel answers): redis-0 is the primary, redis-1 and redis-2 replicate it", () => {
    for (const pod of [0, 1, 2]) checkPrimary(pod, 0, {});
    // Every other pod's sentinel was asked (2 peers), none answered.
    const r = runScript("redis", 1, {});
    assert.deepEqual(r.cliArgv.map((a) => a.match(/-h (\S+)/)?.[1]), [host(0), host(2)]);
  });

  test("a sentinel knows redis-2 as primary (after a failover): every pod, redis-0 included, follows redis-2", () => {
    // Every sentinel answers (each pod asks the two others).
    const answers = { [host(0)]: `${host(2)}\n6379\n`, [host(1)]: `${host(2)}\n6379\n`, [host(2)]: `${host(2)}\n6379\n` };
    for (const pod of [0, 1, 2]) checkPrimary(pod, 2, answers);
  });

  test("the first peer unreachable, the second answers: its answer is taken", () => {
    checkPrimary(0, 1, { [host(2)]: `${host(1)}\n6379\n` });
  });

  test("errors and empty answers count as no answer (NOAUTH, ERR, LOADING, unknown master name)", () => {
    const answers = { [host(0)]: "NOAUTH Authentication required.\n", [host(1)]: "ERR No such master with that name\n", [host(2)]: "\n" };
    for (const pod of [0, 1, 2]) checkPrimary(pod, 0, answers);
    checkPrimary(2, 0, { [host(0)]: "LOADING Redis is loading the dataset in memory\n", [host(1)]: "" });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// 2. The generated configs with the real redis-server.

type Node = SpawnedRedis;

const nodes: Node[] = [];

function startNode(args: string[]): Node {
  const n = spawnRedis(args);
  nodes.push(n);
  return n;
}

/** One command on a fresh connection (AUTH with `password`); the error's message when Redis answers an error, null when unreachable. */
async function call(port: number, password: string | undefined, ...args: string[]): Promise<unknown> {
  const c = new Redis({ port, host: "127.0.0.1", password, lazyConnect: true, enableReadyCheck: false, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1_000, commandTimeout: 2_000 });
  c.on("error", () => undefined);
  try {
    try {
      await c.connect();
    } catch (err) {
      // A refused AUTH is an answer; a refused connection is not.
      return /WRONGPASS|NOAUTH|AUTH/i.test(String(err)) ? `ERROR ${(err as Error).message}` : null;
    }
    try {
      return await c.call(args[0]!, ...args.slice(1));
    } catch (err) {
      return `ERROR ${(err as Error).message}`;
    }
  } finally {
    c.disconnect();
  }
}

/** One inline command on a raw socket without authenticating (ioredis would send HELLO first): the first reply line. */
function unauthenticated(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ port, host: "127.0.0.1" });
    let buf = "";
    sock.setTimeout(2_000, () => {
      sock.destroy();
      reject(new Error(`no answer to ${command} on port ${port}`));
    });
    sock.on("error", reject);
    sock.on("connect", () => sock.write(`${command}\r\n`));
    sock.on("data", (d) => {
      buf += d.toString();
      const i = buf.indexOf("\r\n");
      if (i >= 0) {
        sock.destroy();
        resolve(buf.slice(0, i));
      }
    });
  });
}

/** Host names → 127.0.0.1; 26379 → sentinel port; 6379 in `port` → own port, elsewhere → the primary's. */
function localize(config: string, ports: { own: number; primary: number }): string {
  return config
    .replace(/\bredis-\d+\.redis\.[a-z0-9-]+\.svc\.cluster\.local\b/g, "127.0.0.1")
    .replace(/^port (2?6379)$/m, `port ${ports.own}`)
    .replace(/\b6379\b/g, String(ports.primary));
}

describe("envoy/kubernetes redis-scripts: the generated configs run with the real redis-server", () => {
  after(async () => {
    for (const n of nodes) if (n.alive()) n.child.kill("SIGKILL");
    await Promise.all(nodes.map((n) => n.exited));
  });

  test("primary + replica + sentinel: replication with masterauth, min-replicas-to-write, the sentinel reports the primary", async () => {
    const primaryRun = runScript("redis", 0, {});
    const replicaRun = runScript("redis", 1, {});
    const sentinelRun = runScript("sentinel", 2, {});
    assert.deepEqual(replicaofLines(primaryRun.config), []);
    assert.deepEqual(replicaofLines(replicaRun.config), [`replicaof ${host(0)} 6379`]);

    const [pPort, rPort, sPort] = [await freePort(), await freePort(), await freePort()];
    const dir = join(work, "real");
    mkdirSync(dir);
    const files = { primary: join(dir, "primary.conf"), replica: join(dir, "replica.conf"), sentinel: join(dir, "sentinel.conf") };
    writeFileSync(files.primary, localize(primaryRun.config, { own: pPort, primary: pPort }), { mode: 0o600 });
    writeFileSync(files.replica, localize(replicaRun.config, { own: rPort, primary: pPort }), { mode: 0o600 });
    const sentinelConf = localize(sentinelRun.config, { own: sPort, primary: pPort });
    assert.match(sentinelConf, new RegExp(`^sentinel monitor ${MASTER} 127\\.0\\.0\\.1 ${pPort} 2$`, "m"));
    writeFileSync(files.sentinel, sentinelConf, { mode: 0o600 });

    const primary = startNode([files.primary]);
    let replica: Node | undefined;
    let sentinel: Node | undefined;
    const diag = () => `\n--- primary ---\n${primary.output()}\n--- replica ---\n${replica?.output()}\n--- sentinel ---\n${sentinel?.output()}`;
    const up = (n: Node, port: number, password: string) => async () => {
      assert.ok(n.alive(), `a redis-server exited (config refused?)${diag()}`);
      return (await call(port, password, "PING")) === "PONG";
    };

    try {
      await waitFor(up(primary, pPort, REDIS_PASSWORD), 10_000, "the primary to answer PING", 20);
      // requirepass is in force.
      assert.match(await unauthenticated(pPort, "GET k"), /^-NOAUTH/);
      // min-replicas-to-write 1: no replica yet, no write.
      assert.match(String(await call(pPort, REDIS_PASSWORD, "SET", "k", "v")), /NOREPLICAS/);
      replica = startNode([files.replica]);
      await waitFor(up(replica, rPort, REDIS_PASSWORD), 10_000, "the replica to answer PING", 20);

      // The replica authenticates with masterauth and comes online at the primary (about 5 s: Redis 7's default
      // repl-diskless-sync-delay, which the generated config keeps).
      await waitFor(async () => {
        assert.ok(primary.alive() && replica!.alive(), `a redis-server exited${diag()}`);
        const info = String((await call(pPort, REDIS_PASSWORD, "INFO", "replication")) ?? "");
        return new RegExp(`^slave0:ip=127\\.0\\.0\\.1,port=${rPort},state=online`, "m").test(info);
      }, 15_000, `the replica online at the primary${diag()}`, 50);
      assert.match(String(await call(rPort, REDIS_PASSWORD, "INFO", "replication")), /^master_link_status:up/m);

      // min-replicas-to-write 1: accepted once the replica counts as connected (the count refreshes once a second).
      await waitFor(async () => (await call(pPort, REDIS_PASSWORD, "SET", "k", "v")) === "OK", 10_000, "the primary to accept a SET", 50);
      assert.equal(await call(pPort, REDIS_PASSWORD, "WAIT", "1", "5000"), 1);
      await waitFor(async () => (await call(rPort, REDIS_PASSWORD, "GET", "k")) === "v", 5_000, "the write on the replica", 20);

      // Started once the replica is attached, the sentinel finds it in its first INFO of the primary (not 10 s later).
      sentinel = startNode([files.sentinel, "--sentinel"]);
      await waitFor(up(sentinel, sPort, SENTINEL_PASSWORD), 10_000, "the sentinel to answer PING", 20);
      // The sentinel: its own password, the primary as configured, and the replica discovered (auth-pass works).
      assert.match(await unauthenticated(sPort, `SENTINEL get-master-addr-by-name ${MASTER}`), /^-NOAUTH/);
      assert.deepEqual(await call(sPort, SENTINEL_PASSWORD, "SENTINEL", "get-master-addr-by-name", MASTER), ["127.0.0.1", String(pPort)]);
      await waitFor(async () => {
        assert.ok(sentinel!.alive(), `the sentinel exited${diag()}`);
        const master = (await call(sPort, SENTINEL_PASSWORD, "SENTINEL", "MASTER", MASTER)) as string[] | null;
        const reps = (await call(sPort, SENTINEL_PASSWORD, "SENTINEL", "REPLICAS", MASTER)) as string[][] | null;
        if (!Array.isArray(master) || !Array.isArray(reps)) return false;
        const field = (arr: string[], k: string) => arr[arr.indexOf(k) + 1];
        return field(master, "flags") === "master" && reps.some((r) => field(r, "port") === String(rPort) && field(r, "flags") === "slave");
      }, 15_000, `the sentinel to see the primary up and discover the replica${diag()}`, 50);
    } finally {
      const started = [primary, replica, sentinel].filter((n): n is Node => n !== undefined);
      for (const n of started) if (n.alive()) n.child.kill("SIGKILL");
      await Promise.all(started.map((n) => n.exited));
    }
  });

  // With host names, `sentinel resolve-hostnames yes` is what makes the monitor line loadable: the generated
  // sentinel.conf with its host names kept as names (localhost) starts; the same file without that line is a fatal
  // config error — so the checks above can fail. (Redis 7 applies resolve-hostnames before `monitor` wherever it
  // stands in the file; Redis 6.2 reads in order, hence the order checked in the first part.)
  test("sentinel.conf monitoring by host name: accepted as generated, refused without resolve-hostnames", async () => {
    const run = runScript("sentinel", 1, {});
    const conf = (port: number) =>
      run.config.replace(/\bredis-\d+\.redis\.[a-z0-9-]+\.svc\.cluster\.local\b/g, "localhost").replace(/^port 26379$/m, `port ${port}`);
    const dir = join(work, "hostnames");
    mkdirSync(dir);

    const okPort = await freePort();
    const okFile = join(dir, "ok.conf");
    writeFileSync(okFile, conf(okPort), { mode: 0o600 });
    assert.match(readFileSync(okFile, "utf8"), new RegExp(`^sentinel monitor ${MASTER} localhost 6379 2$`, "m"));
    const ok = startNode([okFile, "--sentinel"]);

    const badPort = await freePort();
    const badFile = join(dir, "bad.conf");
    const without = conf(badPort).split("\n").filter((l) => l !== "sentinel resolve-hostnames yes");
    assert.equal(without.length, conf(badPort).split("\n").length - 1);
    writeFileSync(badFile, without.join("\n"), { mode: 0o600 });
    const bad = startNode([badFile, "--sentinel"]);
    try {
      await waitFor(async () => {
        assert.ok(ok.alive(), `the sentinel refused the generated config:\n${ok.output()}`);
        return (await call(okPort, SENTINEL_PASSWORD, "PING")) === "PONG";
      }, 10_000, "the sentinel with the generated order to answer PING", 20);
      await waitFor(() => !bad.alive(), 10_000, "the sentinel to refuse a host name without resolve-hostnames", 20);
      assert.match(bad.output(), /FATAL CONFIG FILE ERROR[\s\S]*Can't resolve instance hostname/);
    } finally {
      for (const n of [ok, bad]) if (n.alive()) n.child.kill("SIGKILL");
      await Promise.all([ok.exited, bad.exited]);
    }
  });
});
