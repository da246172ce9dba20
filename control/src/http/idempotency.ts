/**
 * `Idempotency-Key` on creates: the same key with the same body replays the first response
 * (status, body, ETag/Location); the same key with another body → 422; while the first is still
 * running → 409. 5xx answers are not kept (the client may retry).
 */
import { createHash } from "node:crypto";
import type { NextFunction, Request, Response } from "express";
import { AppError } from "./errors.js";
import type { IdempotencyStore } from "./idempotency-store.js";
import type { Logger } from "../log.js";

const KEY = /^[\x21-\x7e]{1,255}$/;
const KEPT_HEADERS = ["etag", "location"];

function stable(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stable).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stable((v as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
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
      const done = status >= 500 ? store.release(scope) : store.complete(scope, { fingerprint, state: "done", status, headers, body });
      done
        .catch((err: unknown) => log.warn("idempotency record not saved", { request_id: req.id, err_message: err instanceof Error ? err.message : String(err) }))
        .finally(() => original(body));
      return res;
    };
    next();
  };
}
