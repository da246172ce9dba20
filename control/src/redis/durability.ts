/**
 * Acknowledged writes survive a primary failover: after a commit, `WAIT n timeout` until n replicas have
 * the write (Redis replication is asynchronous: without it, a write the primary answered but had not yet
 * sent to a replica is lost when Sentinel promotes that replica — see control/README.md "Redis failover").
 *
 * How many replicas (REDIS_WAIT_REPLICAS):
 *   - a number n: every commit waits for n (0 = never wait);
 *   - `auto` (default): min(1, replicas in sync with the primary (INFO replication, state=online)), re-read every
 *     second, on every (re)connect and after a shortfall; with Sentinel, 1 also while the sentinels know a
 *     replica they could promote (one still copying counts: a failover may pick it — primary.ts). One is enough for Sentinel: it promotes the
 *     replica with the highest replication offset among those it can reach, so a write one replica has is
 *     on the promoted one unless that very replica is lost with the primary (two faults at once; set a
 *     number for that). With no replica (one Redis, or all replicas gone) nothing is waited for: the write
 *     is as safe as the primary alone — a lone Redis keeps working.
 *
 * WAIT covers every write sent before it on the same connection (the shared command connection: cheap — one
 * round trip to the replicas, usually well under a millisecond on a LAN). It blocks that connection until
 * the replicas answer or the timeout: while a replica is slow, reads queue behind it for up to
 * REDIS_WAIT_TIMEOUT_MS.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../log.js";
import type { PrimaryCheck } from "./primary.js";

export interface DurabilityOptions {
  replicas: number | "auto";
  timeoutMs: number;
  log?: Logger;
  /** How often `auto` re-reads the number of connected replicas. */
  refreshMs?: number;
  /** Sentinel mode: also confirm the node written to is the sentinels' primary (primary.ts). */
  primary?: PrimaryCheck;
}

export type Acknowledged =
  | { ok: true; needed: number; acked: number }
  | { ok: false; needed: number; acked: number; why: "replicas" | "superseded" | "failing_over" | "reconnected" };

export interface Durability {
  /**
   * Wait for the replicas to have everything written on this connection so far. `socket`: the connection
   * the write was sent on (`redis.stream` when it was sent). If the client has reconnected since, WAIT would
   * count a different connection's writes, so the write is not acknowledged.
   */
  acknowledged(socket?: unknown): Promise<Acknowledged>;
  /** Replicas each commit waits for now. */
  needed(): number;
  stop(): void;
}

/**
 * Replicas of INFO replication that are in sync (`slaveN:…,state=online,…`); null if this node is not a
 * primary. `connected_slaves` also counts a replica still loading its first full copy (wait_bgsave,
 * send_bulk): it acknowledges nothing until online, so counting it would make every WAIT time out.
 */
export function connectedReplicas(info: string): number | null {
  if (!/^role:master\b/m.test(info)) return null;
  let online = 0;
  for (const m of info.matchAll(/^slave\d+:(.*)$/gm)) if (/(?:^|,)state=online(?:,|$)/.test(m[1]!.trim())) online++;
  return online;
}

export function createDurability(redis: Redis, opts: DurabilityOptions): Durability {
  const fixed = opts.replicas === "auto" ? null : opts.replicas;
  let auto = 0;
  let timer: NodeJS.Timeout | null = null;
  let refreshing: Promise<void> | null = null;

  const refresh = (): Promise<void> => {
    if (fixed !== null || redis.status !== "ready") return Promise.resolve();
    refreshing ??= redis
      .info("replication")
      .then((info) => {
        const n = connectedReplicas(info);
        const next = n === null ? auto : Math.min(1, n);
        if (next !== auto) opts.log?.info("redis replicas acknowledging writes", { replicas: next, connected: n });
        auto = next;
      })
      .catch(() => undefined)
      .finally(() => {
        refreshing = null;
      });
    return refreshing;
  };

  if (fixed === null) {
    redis.on("ready", () => void refresh());
    timer = setInterval(() => void refresh(), opts.refreshMs ?? 1_000);
    timer.unref();
    void refresh();
  }

  const needed = () => fixed ?? auto;
  return {
    needed,
    async acknowledged(socket) {
      let n = needed();
      const wait = async (count: number): Promise<number> => {
        if (count === 0) return 0;
        try {
          return Number(await redis.wait(count, opts.timeoutMs));
        } catch (err) {
          // The connection failed or timed out: nothing confirms the write reached a replica.
          opts.log?.warn("redis WAIT failed", { err_message: err instanceof Error ? err.message : String(err) });
          return 0;
        }
      };
      const check = opts.primary && socket !== undefined ? opts.primary.verify(socket) : null;
      const [first, { verdict, promotable }] = await Promise.all([wait(n), check ?? ({ verdict: "primary", promotable: 0 } as const)]);
      let acked = first;
      // A replica the sentinels could promote, not yet counted by the primary (still copying): wait for it too.
      if (verdict === "primary" && n === 0 && promotable > 0) {
        n = 1;
        acked = await wait(n);
      }
      if (socket !== undefined && redis.stream !== socket) return { ok: false, needed: n, acked, why: "reconnected" };
      // Sentinels unreachable ("unknown"): as safe as WAIT alone — no failover can be agreed without them either.
      if (verdict === "superseded" || verdict === "failing_over") return { ok: false, needed: n, acked, why: verdict };
      if (acked >= n) return { ok: true, needed: n, acked };
      // A replica went away (or is slow): learn it before the next commit waits for it too.
      void refresh();
      return { ok: false, needed: n, acked, why: "replicas" };
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
      opts.primary?.stop();
    },
  };
}
