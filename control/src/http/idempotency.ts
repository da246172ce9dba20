/**
 * `Idempotency-Key` on creates: the same key with the same body replays the first response
 * (status, body, ETag/Location); the same key with another body → 422; while the first is still
 * running → 409. 5xx answers are not kept (the client may retry), nor a 422 connectivity_failed: it stored
 * nothing, and the same request may pass once the instances answer (errors.ts RETRYABLE).
 */
import { createHash } from "node:crypto";
import type { NextFunction, Request, Response } from "express";
import { AppError, RETRYABLE, type ErrorCode } from "./errors.js";
import type { IdempotencyStore } from "./idempotency-store.js";
import type { Logger } from "../log.js";

const KEY = /^[\x21-\x7e]{1,255}$/;
const KEPT_HEADERS = ["etag", "location"];

/** Literal output text on the work stack of `stable` (a symbol key: JSON.parse never makes one). */
const TEXT = Symbol("text");
const text = (s: string) => ({ [TEXT]: s });

/**
 * Canonical JSON (object keys sorted) of a parsed body. Iterative: a body nested a few thousand levels deep
 * (well within the size limit) overflowed the stack of the recursive version — a 500 for any create sent
 * with an Idempotency-Key.
 */
export function stable(root: unknown): string {
  const out: string[] = [];
  const todo: unknown[] = [root];
  while (todo.length > 0) {
    const v = todo.pop();
    if (v !== null && typeof v === "object" && TEXT in v) {
      out.push((v as { [TEXT]: string })[TEXT]);
      continue;
    }
    const parts: unknown[] = [];
    if (Array.isArray(v)) {
      parts.push(text("["));
      v.forEach((x, i) => parts.push(...(i > 0 ? [text(","), x] : [x])));
      parts.push(text("]"));
    } else if (v !== null && typeof v === "object") {
      parts.push(text("{"));
      Object.keys(v).sort().forEach((k, i) => parts.push(text(`${i > 0 ? "," : ""}${JSON.stringify(k)}:`), (v as Record<string, unknown>)[k]));
      parts.push(text("}"));
    } else {
      out.push(JSON.stringify(v) ?? "null");
      continue;
    }
    for (let i = parts.length - 1; i >= 0; i--) todo.push(parts[i]);
  }
  return out.join("");
}

export function idempotency(store: IdempotencyStore, log: Logger) {
  return async (req: Request, res: Response, next: NextFunction) => {
    const key = req.get("idempotency-key");
    if (key === undefined) return next();
    if (!KEY.test(key)) throw new AppError("validation_failed", "invalid Idempotency-Key", [{ path: "header.idempotency-key", message: "1–255 printable ASCII characters" }]);
    const scope = `${req.role ?? ""} ${req.method} ${req.originalUrl.split("?")[0]} ${key}`;
    const fingerprint = createHash("sha256").update(stable(req.body ?? null)).digest("hex");
    const existing = await store.claim(scope, fingerprint);
    if (existing) {
      if (existing.fingerprint !== fingerprint) throw new AppError("idempotency_key_reused", "this Idempotency-Key was used with a different request body");
      if (existing.state === "in_progress" || existing.status === undefined) throw new AppError("idempotency_in_progress", "a request with this Idempotency-Key is still being processed");
      for (const [h, v] of Object.entries(existing.headers ?? {})) res.setHeader(h, v);
      res.setHeader("idempotent-replayed", "true");
      res.status(existing.status).json(existing.body);
      return;
    }
    const original = res.json.bind(res);
    res.json = (body: unknown) => {
      const status = res.statusCode;
      const headers: Record<string, string> = {};
      for (const h of KEPT_HEADERS) {
        const v = res.getHeader(h);
        if (typeof v === "string") headers[h] = v;
      }
      // 5xx, and answers that changed nothing but may succeed unchanged later (RETRYABLE), are not kept.
      const code = (body as { error?: { code?: unknown } } | null)?.error?.code;
      const retryable = status >= 500 || (status >= 400 && typeof code === "string" && RETRYABLE.has(code as ErrorCode));
      const done = retryable ? store.release(scope) : store.complete(scope, { fingerprint, state: "done", status, headers, body });
      done
        .catch((err: unknown) => log.warn("idempotency record not saved", { request_id: req.id, err_message: err instanceof Error ? err.message : String(err) }))
        .finally(() => original(body));
      return res;
    };
    next();
  };
}
