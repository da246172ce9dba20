/**
 * Redis connections and error classification.
 *
 * Commands never queue while Redis is away (`enableOfflineQueue: false`): a write fails at once and the
 * API answers 503 `store_unavailable` (not made). A write that was sent and got no answer (command timeout,
 * connection lost with the command in flight) may still be applied: `outcome_unknown` (cas.ts). ioredis
 * reconnects forever (retryStrategy); the subscriber resubscribes on reconnect.
 *
 * Where Redis is: a URL (REDIS_URL), or Redis Sentinel (REDIS_SENTINELS + REDIS_MASTER_NAME): ioredis asks
 * the sentinels for the current primary on every (re)connect and checks its role, so after a failover both
 * connections land on the promoted replica by themselves. A node that answers READONLY (a demoted primary
 * still reached through a stale address, a partition) makes the connection reconnect — through the
 * sentinels — and the command fails as "not made" (a replica refuses every write: nothing ran).
 */
import { Redis, type RedisOptions } from "ioredis";
import { AppError } from "../http/errors.js";
import type { Logger } from "../log.js";

export type { Redis };

/** Where Redis is: a URL string, or config.ts's `RedisTarget` (a URL with credentials, or sentinels). */
export type RedisTarget =
  | string
  | { kind: "url"; url: string; username?: string; password?: string }
  | {
      kind: "sentinel";
      sentinels: { host: string; port: number }[];
      masterName: string;
      username?: string;
      password?: string;
      sentinelUsername?: string;
      sentinelPassword?: string;
    };

function retryStrategy(times: number): number {
  return Math.min(50 * times, 1_000);
}

/** The node is not (or not yet) a usable primary: reconnect, which finds the primary again. */
const WRONG_NODE = /^(READONLY|LOADING|MASTERDOWN)\b/;
/**
 * The node refused the command before it ran (not a bug): a wrong node, or a primary without enough
 * replicas for `min-replicas-to-write` (NOREPLICAS — a script fails at its first write, so nothing ran).
 */
const REFUSED = /^(READONLY|LOADING|MASTERDOWN|NOREPLICAS)\b/;

/** ioredis `reconnectOnError`: 1 = reconnect, the command fails (never resent: the caller decides). */
function reconnectOnError(err: Error): 1 | false {
  return WRONG_NODE.test(err.message) ? 1 : false;
}

/** The constructor arguments for a target: a URL plus options, or options naming the sentinels. */
function build(target: RedisTarget, options: RedisOptions): Redis {
  const t = typeof target === "string" ? { kind: "url" as const, url: target } : target;
  const auth = { ...(t.username !== undefined ? { username: t.username } : {}), ...(t.password !== undefined ? { password: t.password } : {}) };
  if (t.kind === "url") return new Redis(t.url, { ...options, ...auth });
  return new Redis({
    ...options,
    ...auth,
    sentinels: t.sentinels,
    name: t.masterName,
    role: "master",
    ...(t.sentinelUsername !== undefined ? { sentinelUsername: t.sentinelUsername } : {}),
    ...(t.sentinelPassword !== undefined ? { sentinelPassword: t.sentinelPassword } : {}),
    // Asking the sentinels is quick; every round of them failing waits like any other reconnect.
    sentinelRetryStrategy: retryStrategy,
    sentinelReconnectStrategy: retryStrategy,
    // Each sentinel is asked in turn; one that does not answer must not hold up the others.
    sentinelCommandTimeout: Math.min(options.connectTimeout ?? 1_000, 1_000),
    // Sentinels announce addresses as they see them (loopback in tests, pod IPs in Kubernetes): use as is.
    enableTLSForSentinelMode: false,
    // No `failoverDetector`: it reconnects on every sentinel's +switch-master, and sentinels learn of a
    // failover one after another — spurious reconnects (503s) after the client already found the new primary.
    // A demoted primary still reachable answers writes READONLY (reconnect, above); its subscribers keep
    // getting what the new primary publishes (PUBLISH is replicated).
  });
}

export function createCommandClient(target: RedisTarget, opts: { commandTimeoutMs: number; log: Logger; name: string }): Redis {
  const redis = build(target, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: opts.commandTimeoutMs,
    connectTimeout: Math.max(opts.commandTimeoutMs, 1_000),
    retryStrategy,
    reconnectOnError,
    connectionName: opts.name,
  });
  watchConnection(redis, opts.log, opts.name);
  return redis;
}

export function createSubscriber(target: RedisTarget, opts: { log: Logger; name: string }): Redis {
  const redis = build(target, {
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
    autoResubscribe: true,
    retryStrategy,
    reconnectOnError,
    connectionName: opts.name,
  });
  watchConnection(redis, opts.log, opts.name);
  return redis;
}

/** Log connection changes once per transition (not once per retry). */
function watchConnection(redis: Redis, log: Logger, name: string): void {
  let up = false;
  redis.on("ready", () => {
    if (!up) log.info("redis connected", { connection: name });
    up = true;
  });
  redis.on("error", (err: Error) => {
    if (up) log.warn("redis connection lost", { connection: name, err_message: err.message });
    up = false;
  });
  redis.on("end", () => {
    up = false;
  });
}

/** Redis answered with an error (a bug on our side) vs. Redis not reachable (503). */
export function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === "ReplyError";
}

export const storeUnavailable = () => new AppError("store_unavailable", "the state store (Redis) is unavailable; the change was not made, retry later");

export const outcomeUnknown = () =>
  new AppError(
    "outcome_unknown",
    "the change was sent to the state store (Redis), which did not answer in time: it may or may not have been applied. " +
      "Send the request again with the same Idempotency-Key to get its real result, or read the resource",
  );

const CONNECTION_ERRORS = /Connection is closed|Stream isn't writeable|enableOfflineQueue|Command timed out|Socket timeout|connect ETIMEDOUT|ECONNREFUSED|ECONNRESET|EPIPE|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT/;

/**
 * Redis could not be reached, or the node reached is not a usable primary (READONLY, LOADING, MASTERDOWN:
 * during a failover) — as opposed to a bug: another ReplyError, bad stored data, …
 */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (isRefused(err)) return true;
  if (err.name === "MaxRetriesPerRequestError") return true;
  const code = (err as NodeJS.ErrnoException).code;
  return CONNECTION_ERRORS.test(err.message) || (typeof code === "string" && CONNECTION_ERRORS.test(code));
}

const NOT_SENT = /enableOfflineQueue/;

/** The node refused the command (a replica, still loading, no primary, too few replicas): it did not run. */
export function isRefused(err: unknown): boolean {
  return err instanceof Error && REFUSED.test(err.message);
}

/**
 * Whether a command that failed with `err` may have reached Redis (and run, or still run later): the
 * connection was ready when it was issued (with `enableOfflineQueue: false`, ioredis writes a command only
 * then) and the failure came after — a timeout or a connection lost with the command in flight. A command
 * refused before it was written ("stream isn't writeable") never ran.
 */
export function mayHaveRun(err: unknown, readyWhenIssued: boolean): boolean {
  return readyWhenIssued && isConnectionError(err) && !isRefused(err) && !NOT_SENT.test((err as Error).message);
}

/** A command timed out (it is still queued on the connection: what is sent after it runs after it). */
export function isTimeout(err: unknown): boolean {
  return err instanceof Error && /Command timed out/.test(err.message);
}

/** Run a store operation; connection failures become `store_unavailable` (503), anything else stays a 500. */
export async function storeCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof AppError) && isConnectionError(err)) throw storeUnavailable();
    throw err;
  }
}
