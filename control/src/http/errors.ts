/**
 * Errors: a machine-readable code, mapped to an HTTP status in one place (STATUS below).
 * The single error handler (app.ts) turns any thrown error into `{ error: { code, message, request_id, issues? } }`;
 * 5xx bodies never carry internals.
 */
import type { z } from "zod";

export const STATUS = {
  validation_failed: 400,
  malformed_json: 400,
  bad_request: 400,
  malformed_request: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  already_exists: 409,
  invalid_state: 409,
  idempotency_in_progress: 409,
  /**
   * A retry with an Idempotency-Key whose first request did apply its change, but whose answer was lost and
   * cannot be replayed (the replica answering it stopped): the change is made — read the resource.
   */
  idempotency_applied: 409,
  /** The write would take the routing table past one of its limits (TABLE_LIMITS): nothing written. */
  limit_exceeded: 409,
  /** The instance's server is already in the deployment under another spelling or id (canonical ip:port). */
  duplicate_address: 409,
  /** Optimistic-transaction retries exhausted under write contention: nothing written, retry. */
  write_conflict: 409,
  blocked_address: 422,
  precondition_failed: 412,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unprocessable: 422,
  unknown_model: 422,
  idempotency_key_reused: 422,
  connectivity_failed: 422,
  headers_too_large: 431,
  internal: 500,
  /** Redis could not be reached before anything was sent: the change was not made. */
  store_unavailable: 503,
  /**
   * The change was sent to Redis and no answer came back in time: it may or may not have been applied.
   * A retry with the same Idempotency-Key answers the real result; without one, read the resource.
   */
  outcome_unknown: 503,
  table_unavailable: 503,
  too_many_streams: 503,
} as const;

export type ErrorCode = keyof typeof STATUS;

export interface Issue {
  path: string;
  message: string;
}

/**
 * Answers that changed nothing and may well succeed when sent again unchanged (the world, not the request,
 * was wrong): an Idempotency-Key is released after them, as after a 5xx, so a retry with the same key runs.
 *
 * `outcome_unknown` is not RETRYABLE: the change may have been made. Its key is kept until the outcome is
 * known (idempotency.ts): a retry with the same key then answers the real result — the first request's
 * answer if the change was applied, a normal run if it was not (the lost attempt is fenced off first, so it
 * can never apply later). Never a duplicate, never a false "not made".
 */
export const RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>(["connectivity_failed", "write_conflict"]);

/** Answers sent with `Retry-After` (seconds). */
export const RETRY_AFTER: Partial<Record<ErrorCode, string>> = { store_unavailable: "1", outcome_unknown: "1" };

export class AppError extends Error {
  override readonly name = "AppError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly issues?: Issue[],
    /** More fields of the error object (e.g. `instances` of connectivity_failed). */
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
  get status(): number {
    return STATUS[this.code];
  }
}

/** Zod issues → `[{ path: "instances.0.url", message }]` (path "" = the whole body). */
export function zodIssues(error: z.ZodError): Issue[] {
  return error.issues.map((i) => ({ path: i.path.map(String).join("."), message: i.message }));
}

export const notFound = (what: string, id: string) => new AppError("not_found", `${what} ${id} not found`);
