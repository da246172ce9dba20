/**
 * Redis connections and error classification.
 *
 * Commands never queue while Redis is away (`enableOfflineQueue: false`): a write fails at once and the
 * API answers 503 `store_unavailable` (not made). A write that was sent and got no answer (command timeout,
 * connection lost with the command in flight) may still be applied: `outcome_unknown` (cas.ts). ioredis
 * reconnects forever (retryStrategy); the subscriber resubscribes on reconnect.
 */
import { Redis } from "ioredis";
import { AppError } from "../http/errors.js";
import type { Logger } from "../log.js";

export type { Redis };

function retryStrategy(times: number): number {
  return Math.min(50 * times, 1_000);
}

export function createCommandClient(url: string, opts: { commandTimeoutMs: number; log: Logger; name: string }): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: opts.commandTimeoutMs,
    connectTimeout: Math.max(opts.commandTimeoutMs, 1_000),
    retryStrategy,
    connectionName: opts.name,
  });
  watchConnection(redis, opts.log, opts.name);
  return redis;
}

export function createSubscriber(url: string, opts: { log: Logger; name: string }): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
    autoResubscribe: true,
    retryStrategy,
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

/** Redis could not be reached (as opposed to a bug: a ReplyError, bad stored data, …). */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === "MaxRetriesPerRequestError") return true;
  const code = (err as NodeJS.ErrnoException).code;
  return CONNECTION_ERRORS.test(err.message) || (typeof code === "string" && CONNECTION_ERRORS.test(code));
}

const NOT_SENT = /enableOfflineQueue/;

/**
 * Whether a command that failed with `err` may have reached Redis (and run, or still run later): the
 * connection was ready when it was issued (with `enableOfflineQueue: false`, ioredis writes a command only
 * then) and the failure came after — a timeout or a connection lost with the command in flight. A command
 * refused before it was written ("stream isn't writeable") never ran.
 */
export function mayHaveRun(err: unknown, readyWhenIssued: boolean): boolean {
  return readyWhenIssued && isConnectionError(err) && !NOT_SENT.test((err as Error).message);
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
