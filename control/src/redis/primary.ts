/**
 * Is the node we write to the primary the sentinels name now? (Sentinel mode only.)
 *
 * ioredis asks the sentinels where the primary is only when it (re)connects, and reconnects when a node
 * answers READONLY. A primary that Sentinel replaced but has not demoted yet keeps answering writes as a
 * primary without replicas, so `auto` WAITs for none, and Sentinel wipes what was written there when it
 * finally makes the node a replica. The fault test hit it: a second failover 0.5 s after the first
 * promoted the other replica, and the first one stayed a primary for 10 s (until Sentinel's
 * +convert-to-slave). A model answered 201 there was gone. Sentinel cannot demote a node it cannot reach
 * either (a partition), or one whose REPLICAOF is renamed.
 *
 * So in Sentinel mode each acknowledgement also asks the sentinels (durability.ts), and a connection found on
 * a superseded node is reconnected (ioredis asks the sentinels again). A check every second does the same
 * for the subscriber and for a replica that is not writing.
 *
 * While the newest view is mid-failover nothing is acknowledged: the old primary still takes writes, but
 * its remaining replicas are about to resync from the promoted one, so WAIT's acknowledgements count
 * copies that will be discarded.
 *
 * The sentinels' view is the answer with the highest config epoch among those that answer. A sentinel
 * learns of a failover from the others' hello messages within about 2 s. The node is named by its run_id
 * (unchanged by promotion, the same whatever address or hostname it is reached by). Right after a switch a
 * sentinel may not know the new primary's run_id yet, so an announced IP address is also compared with the
 * connection's peer (see `judge`).
 */
import { isIP } from "node:net";
import { Redis } from "ioredis";
import type { Logger } from "../log.js";

/** "failing_over": a sentinel is mid-failover. Whichever node is written to now may not be the primary after it. */
export type Verdict = "primary" | "superseded" | "failing_over" | "unknown";

export interface SentinelTarget {
  sentinels: { host: string; port: number }[];
  masterName: string;
  sentinelUsername?: string;
  sentinelPassword?: string;
}

export interface Checked {
  verdict: Verdict;
  /**
   * Replicas the sentinels could promote (not down, not disconnected, priority > 0), 0 when not known. A
   * replica still copying is one of them, yet the primary does not count it as in sync, so `auto` alone
   * would wait for none, and a failover right then promotes a replica that lacks the write. So is a
   * superseded primary that Sentinel lists as a replica but has not converted yet: Sentinel does promote
   * such a node (seen in the fault test: the next failover picked it, and 0.7 s of writes acknowledged
   * without a copy were gone). Writes then answer 503 until it has been converted and has copied (Sentinel
   * converts it within about 10 s). One copy is enough: among the candidates Sentinel prefers the replica
   * that has replicated the most.
   */
  promotable: number;
}

export interface PrimaryCheck {
  /**
   * After a commit sent on `socket`: is that socket's node the sentinels' primary? The sentinels are asked
   * after this call (never an answer begun before it). On "superseded" the connection is reconnected.
   */
  verify(socket: unknown): Promise<Checked>;
  stop(): void;
}

/** The sentinels' view of the primary: its run_id ("" until a sentinel has its INFO), address, replicas. */
export interface SentinelView {
  epoch: number;
  /** The answering sentinel leads a failover of this master now (flag failover_in_progress). */
  failingOver: boolean;
  runId: string;
  ip: string;
  port: number;
  replicaRunIds: string[];
  /** Replicas Sentinel could promote (`Checked.promotable`). */
  promotable: number;
}

/** A flat [k, v, k, v, …] reply (SENTINEL MASTER, each entry of SENTINEL REPLICAS) as an object. */
function pairs(reply: unknown): Record<string, string> {
  const o: Record<string, string> = Object.create(null); // field names are the sentinel's, never a prototype's
  if (!Array.isArray(reply)) return o;
  for (let i = 0; i + 1 < reply.length; i += 2) o[String(reply[i])] = String(reply[i + 1]);
  return o;
}

/** One sentinel's answer; null if it does not know the master or answered nonsense. */
export function parseView(master: unknown, replicas: unknown): SentinelView | null {
  const m = pairs(master);
  const epoch = Number(m["config-epoch"]);
  const port = Number(m.port);
  if (!m.ip || !Number.isInteger(port) || !Number.isInteger(epoch)) return null;
  const list = Array.isArray(replicas) ? replicas.map(pairs) : [];
  const replicaRunIds = list.map((r) => r.runid ?? "").filter((id) => id !== "");
  const promotable = list.filter((r) => !/(^|,)(s_down|o_down|disconnected)(,|$)/.test(r.flags ?? "") && r["slave-priority"] !== "0").length;
  const failingOver = (m.flags ?? "").split(",").includes("failover_in_progress");
  return { epoch, failingOver, runId: m.runid ?? "", ip: m.ip, port, replicaRunIds, promotable };
}

/**
 * The newest view: the highest config epoch wins (a sentinel that has not heard of the failover is behind);
 * among equal epochs one that knows the run_id. It is marked failing over if any sentinel at that epoch or
 * later leads a failover: until the promoted replica answers as a primary, the leader still has the old
 * epoch while the others name the old primary, and from then until the failover ends the leader names
 * the old address with the new epoch while the others name the new one.
 */
export function newest(views: (SentinelView | null)[]): SentinelView | null {
  let best: SentinelView | null = null;
  for (const v of views) if (v && (!best || v.epoch > best.epoch || (v.epoch === best.epoch && !best.runId && v.runId))) best = v;
  if (best && !best.failingOver && views.some((v) => v && v.failingOver && v.epoch >= best!.epoch)) return { ...best, failingOver: true };
  return best;
}

/**
 * Whether the node (its run_id, the connection's peer address) is the primary of `view`. The same run_id
 * says yes. Otherwise an announced IP address decides: it names the node whether or not the sentinel has
 * its run_id yet, or a new one after a quick restart. A hostname cannot be compared with the peer's IP, so
 * then only a run_id the sentinels know decides.
 */
export function judge(view: SentinelView | null, node: { runId: string | null; peer: { address?: string; port?: number } }): Verdict {
  if (!view || !node.runId) return "unknown";
  if (view.failingOver) return "failing_over";
  if (view.runId === node.runId) return "primary";
  if (isIP(view.ip) && node.peer.address !== undefined) {
    const same = node.peer.address.replace(/^::ffff:/, "") === view.ip && node.peer.port === view.port;
    return same ? "primary" : "superseded";
  }
  if (view.runId || view.replicaRunIds.includes(node.runId)) return "superseded";
  return "unknown";
}

type Socket = { remoteAddress?: string; remotePort?: number };

export function createPrimaryCheck(
  redis: Redis,
  sub: Redis | null,
  target: SentinelTarget,
  opts: { timeoutMs: number; log?: Logger; intervalMs?: number },
): PrimaryCheck {
  const sentinels = target.sentinels.map((s) => {
    const c = new Redis({
      host: s.host,
      port: s.port,
      ...(target.sentinelUsername !== undefined ? { username: target.sentinelUsername } : {}),
      ...(target.sentinelPassword !== undefined ? { password: target.sentinelPassword } : {}),
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: opts.timeoutMs,
      connectTimeout: Math.max(opts.timeoutMs, 500),
      retryStrategy: (times) => Math.min(50 * times, 1_000),
      connectionName: "gw-primary-check",
      lazyConnect: false,
    });
    c.on("error", () => undefined); // a sentinel that is down is one fewer answer, not a failure
    return c;
  });

  const ask = async (c: Redis): Promise<SentinelView | null> => {
    if (c.status !== "ready") return null;
    const r = await c
      .pipeline()
      .call("SENTINEL", "MASTER", target.masterName)
      .call("SENTINEL", "REPLICAS", target.masterName)
      .exec()
      .catch(() => null);
    if (!r || r[0]?.[0] || r[1]?.[0]) return null;
    return parseView(r[0]?.[1], r[1]?.[1]);
  };
  const query = async () => newest(await Promise.all(sentinels.map(ask)));

  // Callers after a commit must get an answer the sentinels gave after it: one query in flight, and every
  // caller that arrives meanwhile joins the one after it.
  let running: Promise<SentinelView | null> | null = null;
  let queued: Promise<SentinelView | null> | null = null;
  const freshView = (): Promise<SentinelView | null> => {
    if (!running) {
      running = query().finally(() => {
        running = null;
      });
      return running;
    }
    queued ??= running.then(() => {
      queued = null;
      return freshView();
    });
    return queued;
  };

  // The node behind a socket never changes: its run_id is read once per connection.
  const runIds = new WeakMap<object, Promise<string | null>>();
  const runIdOf = (socket: object): Promise<string | null> => {
    let p = runIds.get(socket);
    if (!p) {
      p = redis
        .info("server")
        .then((info) => (redis.stream === socket ? (/^run_id:(\w+)/m.exec(info)?.[1] ?? null) : null))
        .catch(() => null);
      p.then((id) => id === null && runIds.delete(socket));
      runIds.set(socket, p);
    }
    return p;
  };

  const reconnect = (socket: unknown, view: SentinelView | null) => {
    if (redis.stream !== socket) return; // already reconnected
    opts.log?.warn("redis node is no longer the sentinels' primary: reconnecting", { primary: view ? `${view.ip}:${view.port}` : null, epoch: view?.epoch });
    redis.disconnect(true);
    sub?.disconnect(true);
  };

  const verify = async (socket: unknown): Promise<Checked> => {
    if (!socket || typeof socket !== "object" || redis.stream !== socket) return { verdict: "unknown", promotable: 0 };
    const [view, runId] = await Promise.all([freshView(), runIdOf(socket)]);
    const s = socket as Socket;
    const verdict = judge(view, { runId, peer: { address: s.remoteAddress, port: s.remotePort } });
    opts.log?.debug("redis primary check", { verdict, node: `${s.remoteAddress}:${s.remotePort}`, primary: view ? `${view.ip}:${view.port}` : null, epoch: view?.epoch, promotable: view?.promotable });
    if (verdict === "superseded") reconnect(socket, view);
    return { verdict, promotable: view?.promotable ?? 0 };
  };

  // Without writes too: the subscriber and reads must not stay on a superseded node.
  const timer = setInterval(() => {
    if (redis.status !== "ready") return;
    const socket = redis.stream;
    void verify(socket).then(({ verdict }) => {
      if (verdict !== "primary" || !sub || sub.status !== "ready" || redis.stream !== socket) return;
      const a = socket as Socket;
      const b = sub.stream as Socket;
      if (a.remoteAddress !== b.remoteAddress || a.remotePort !== b.remotePort) {
        opts.log?.warn("redis subscriber is not on the primary: reconnecting", {});
        sub.disconnect(true);
      }
    });
  }, opts.intervalMs ?? 1_000);
  timer.unref();

  return {
    verify,
    stop() {
      clearInterval(timer);
      for (const c of sentinels) c.disconnect();
    },
  };
}
