/**
 * Real Redis replication + Sentinel for tests: a primary, replicas (`--replicaof`) and sentinels
 * (`redis-server --sentinel` with a generated config in a temp dir), on free loopback ports, each waited for by
 * condition. `kill(port)` SIGKILLs one node (a crashed box); `close()` kills everything left and removes the
 * temp dir — call it in `after`/`finally` even when the test failed. Never mock Redis.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort, logDirectives, nodeLog, spawnRedis, waitFor } from "./redis.js";
import { redisPing } from "../../envoy/local/redis-ping.js";

export interface SentinelSetOptions {
  replicas?: number;
  sentinels?: number;
  masterName?: string;
  quorum?: number;
  downAfterMs?: number;
  failoverTimeoutMs?: number;
  startTimeoutMs?: number;
  /** Extra redis-server arguments for the first primary (e.g. rename REPLICAOF so Sentinel cannot demote it). */
  primaryArgs?: string[];
}

export interface RedisNode {
  readonly port: number;
  readonly kind: "data" | "sentinel";
  readonly running: boolean;
  /** What it printed (stdout and stderr). */
  readonly stderr: () => string;
}

export interface SentinelSet {
  readonly masterName: string;
  readonly primary: RedisNode;
  readonly replicas: RedisNode[];
  readonly sentinels: RedisNode[];
  /** `127.0.0.1:p1,127.0.0.1:p2,…` for REDIS_SENTINELS. */
  readonly sentinelList: string;
  /** The primary's port as the sentinels report it (the first sentinel that answers). */
  masterPort(): Promise<number | null>;
  /** A short-lived command to one node (null when it does not answer). */
  call(port: number, ...args: string[]): Promise<unknown>;
  /** SIGKILL a node and wait for it to exit. */
  kill(node: RedisNode): Promise<void>;
  /** Kill every process left and remove the temp dir. */
  close(): Promise<void>;
}

interface Proc extends RedisNode {
  child: ChildProcess;
  exited: Promise<void>;
}

export async function startSentinelSet(opts: SentinelSetOptions = {}): Promise<SentinelSet> {
  const masterName = opts.masterName ?? "mymaster";
  const nReplicas = opts.replicas ?? 2;
  const nSentinels = opts.sentinels ?? 3;
  const quorum = opts.quorum ?? Math.floor(nSentinels / 2) + 1;
  const startTimeoutMs = opts.startTimeoutMs ?? 15_000;
  const dir = mkdtempSync(join(tmpdir(), "gw-sentinel-"));
  const procs: Proc[] = [];

  const spawnNode = async (binary: string, args: string[], port: number, kind: "data" | "sentinel"): Promise<Proc> => {
    const spawned = spawnRedis(args, binary);
    const p: Proc = {
      port,
      kind,
      child: spawned.child,
      exited: spawned.exited,
      get running() {
        return spawned.alive();
      },
      stderr: spawned.output,
    };
    procs.push(p);
    await waitFor(async () => !spawned.alive() || (await redisPing(port)), startTimeoutMs, `${kind} redis on port ${port}`, 20);
    if (!spawned.alive()) throw new Error(`${binary} on port ${port} exited at start: ${spawned.output()}`);
    return p;
  };

  const dataArgs = (port: number, extra: string[]) =>
    // One temp dir for all nodes; each node's files are named by its port.
 ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--dbfilename", `dump-${port}.rdb`, "--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no", ...nodeLog(`data-${port}.log`), ...extra];

  const call = async (port: number, ...args: string[]): Promise<unknown> => {
    const c = new Redis({ port, host: "127.0.0.1", lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500, commandTimeout: 1_000 });
    c.on("error", () => undefined);
    try {
      await c.connect();
      return await c.call(args[0]!, ...args.slice(1));
    } catch {
      return null;
    } finally {
      c.disconnect();
    }
  };

  const close = async () => {
    for (const p of procs) if (p.running) p.child.kill("SIGKILL");
    await Promise.all(procs.map((p) => p.exited));
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const p0 = await freePort();
    const primary = await spawnNode("redis-server", dataArgs(p0, opts.primaryArgs ?? []), p0, "data");
    const replicas: Proc[] = [];
    for (let i = 0; i < nReplicas; i++) {
      const port = await freePort();
      replicas.push(await spawnNode("redis-server", dataArgs(port, ["--replicaof", "127.0.0.1", String(p0)]), port, "data"));
    }
    await waitFor(async () => {
      const info = String((await call(p0, "INFO", "replication")) ?? "");
      const online = info.match(/^slave\d+:.*state=online/gm) ?? [];
      return online.length === nReplicas;
    }, startTimeoutMs, `${nReplicas} replicas online`, 20);

    const sentinels: Proc[] = [];
    for (let i = 0; i < nSentinels; i++) {
      const port = await freePort();
      const file = join(dir, `sentinel-${port}.conf`);
      writeFileSync(
        file,
        [
          `port ${port}`,
          "bind 127.0.0.1",
          "protected-mode no",
          "daemonize no",
          `dir ${dir}`,
          ...logDirectives(`sentinel-${port}.log`).map(([k, v]) => `${k} ${v}`),
          `sentinel monitor ${masterName} 127.0.0.1 ${p0} ${quorum}`,
          `sentinel down-after-milliseconds ${masterName} ${opts.downAfterMs ?? 500}`,
          `sentinel failover-timeout ${masterName} ${opts.failoverTimeoutMs ?? 2_000}`,
          `sentinel parallel-syncs ${masterName} 1`,
          "",
        ].join("\n"),
      );
      // redis-server in sentinel mode (what Debian's redis-sentinel runs): no second package needed.
      sentinels.push(await spawnNode("redis-server", [file, "--sentinel"], port, "sentinel"));
    }
    // Every sentinel knows every replica and every other sentinel (discovered via hello messages): only then
    // can they agree on a failover.
    await waitFor(async () => {
      for (const s of sentinels) {
        const reps = (await call(s.port, "SENTINEL", "REPLICAS", masterName)) as unknown[] | null;
        const peers = (await call(s.port, "SENTINEL", "SENTINELS", masterName)) as unknown[] | null;
        if (!reps || reps.length !== nReplicas || !peers || peers.length !== nSentinels - 1) return false;
      }
      return true;
    }, startTimeoutMs, "sentinels to discover the replicas and each other", 50);

    return {
      masterName,
      primary,
      replicas,
      sentinels,
      sentinelList: sentinels.map((s) => `127.0.0.1:${s.port}`).join(","),
      async masterPort() {
        for (const s of sentinels) {
          if (!s.running) continue;
          const r = (await call(s.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName)) as string[] | null;
          if (r && r.length === 2) return Number(r[1]);
        }
        return null;
      },
      call,
      async kill(node) {
        const p = procs.find((x) => x.port === node.port);
        if (!p || !p.running) return;
        p.child.kill("SIGKILL");
        await p.exited;
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
