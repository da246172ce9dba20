/**
 * `Idempotency-Key` on creates: the same key with the same body replays the first response
 * (status, body, ETag/Location); the same key with another body → 422; while the first is still
 * running → 409. 5xx answers are not kept (the client may retry), nor a 422 connectivity_failed: it stored
 * nothing, and the same request may pass once the instances answer (errors.ts RETRYABLE).
 *
 * Exactly once across unknown outcomes. The request's commits run under a fence (redis/cas.ts `fences`,
 * idempotency-store.ts): only the attempt holding the key can commit, and the commit marks the key
 * "applied" in the same script. When a commit was sent and Redis did not answer in time, the client gets
 * 503 `outcome_unknown` at once (Retry-After) and the request goes on in the background: the outcome is
 * learnt on the same connection (it runs after the lost commit); applied → the handler finishes and its
 * answer is kept, as if it had been sent; not applied → the fence is removed first (the lost commit can
 * never apply later) and the key is freed. A retry with the same key therefore gets the real answer
 * (replayed), 409 `idempotency_in_progress` while the outcome is not known yet, or runs normally — never a
 * second change, never a false "not made". Only if the answer of an applied change is lost for good (the
 * replica stopped) does a retry get 409 `idempotency_applied`: the change is made, read the resource.
 * An answer is kept only while the store still has the change (its fence "applied"): a failover that lost
 * it after the commit turns the 201 into 503 store_unavailable and frees the key, never a replayed success.
 */
import { createHash, randomUUID } from "node:crypto";
import type { NextFunction, Request, Response } from "express";
import { AppError, RETRYABLE, RETRY_AFTER, STATUS, type ErrorCode } from "./errors.js";
import type { Completed, IdempotencyStore } from "./idempotency-store.js";
import type { Logger } from "../log.js";
import { fences, type Fence } from "../redis/cas.js";
import { isConnectionError, outcomeUnknown, storeUnavailable } from "../redis/client.js";

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

type Answer = (status: number, headers: Record<string, string>, body: unknown) => void;

const keptHeaders = (get: (name: string) => unknown): Record<string, string> => {
  const headers: Record<string, string> = {};
  for (const h of KEPT_HEADERS) {
    const v = get(h);
    if (typeof v === "string") headers[h] = v;
  }
  return headers;
};

/**
 * After the client got its `outcome_unknown`, the handler may still finish (its change turned out applied):
 * from then on what it answers — the methods the handlers and the error handler use — is recorded, not
 * sent. `headersSent` reads false so that an error is answered the same way (instead of Express closing a
 * socket the client may be reusing).
 */
function recordInstead(res: Response, answer: Answer): void {
  let status = 200;
  let answered = false;
  const headers = new Map<string, string>();
  const set = (name: unknown, value?: unknown) => {
    if (typeof name === "string") headers.set(name.toLowerCase(), String(value));
    else if (name !== null && typeof name === "object") for (const [k, v] of Object.entries(name)) headers.set(k.toLowerCase(), String(v));
    return res;
  };
  const done = (body: unknown) => {
    if (!answered) answer(status, keptHeaders((h) => headers.get(h)), body);
    answered = true;
    return res;
  };
  Object.assign(res, {
    status: (code: number) => ((status = code), res),
    setHeader: set,
    set,
    header: set,
    getHeader: (name: string) => headers.get(name.toLowerCase()),
    location: (url: string) => set("location", url),
    json: (body: unknown) => done(body),
    send: (body?: unknown) => done(body ?? null),
    end: () => done(null),
  });
  Object.defineProperty(res, "headersSent", { configurable: true, get: () => false });
}

export function idempotency(store: IdempotencyStore, log: Logger) {
  return async (req: Request, res: Response, next: NextFunction) => {
    const key = req.get("idempotency-key");
    if (key === undefined) return next();
    if (!KEY.test(key)) throw new AppError("validation_failed", "invalid Idempotency-Key", [{ path: "header.idempotency-key", message: "1–255 printable ASCII characters" }]);
    const scope = `${req.role ?? ""} ${req.method} ${req.originalUrl.split("?")[0]} ${key}`;
    const fingerprint = createHash("sha256").update(stable(req.body ?? null)).digest("hex");
    const attempt = randomUUID();
    const claim = await store.claim(scope, fingerprint, attempt);
    switch (claim.kind) {
      case "reused":
        throw new AppError("idempotency_key_reused", "this Idempotency-Key was used with a different request body");
      case "running":
        throw new AppError("idempotency_in_progress", "a request with this Idempotency-Key is still being processed (or its outcome is being learnt); retry shortly");
      case "applied":
        throw new AppError(
          "idempotency_applied",
          "a request with this Idempotency-Key was applied, but its answer was lost (the replica handling it stopped); the change is made: read the resource",
        );
      case "done": {
        const existing = claim.record;
        for (const [h, v] of Object.entries(existing.headers ?? {})) res.setHeader(h, v);
        res.setHeader("idempotent-replayed", "true");
        res.status(existing.status!).json(existing.body);
        return;
      }
      case "run":
        break;
    }
    const warn = (err: unknown) => log.warn("idempotency record not saved", { request_id: req.id, err_message: err instanceof Error ? err.message : String(err) });
    const original = res.json.bind(res);
    // 5xx, and answers that changed nothing but may succeed unchanged later (RETRYABLE), are not kept: the
    // key is freed — unless the change was applied (release keeps "applied"; errors.ts on outcome_unknown).
    // The claim is kept while this attempt runs; if this replica dies, it runs out and a retry takes over.
    const renewUntil = Date.now() + store.settleMs;
    const renewal = setInterval(() => {
      if (Date.now() > renewUntil) return clearInterval(renewal);
      store.renew(scope, attempt).then((mine) => mine || clearInterval(renewal), () => undefined);
    }, Math.max(1, Math.floor(store.claimMs / 3)));
    renewal.unref();
    const end = async (status: number, headers: Record<string, string>, body: unknown): Promise<Completed | "released"> => {
      clearInterval(renewal);
      fence.active = false;
      const code = (body as { error?: { code?: unknown } } | null)?.error?.code;
      const retryable = status >= 500 || (status >= 400 && typeof code === "string" && RETRYABLE.has(code as ErrorCode));
      if (retryable) {
        await store.release(scope, attempt);
        return "released";
      }
      return store.complete(scope, attempt, { fingerprint, state: "done", status, headers, body }, fence.wrote);
    };
    /** Answer an error instead of the handler's success (its Location/ETag name a change that may not be there). */
    const answerInstead = (err: AppError) => {
      for (const h of KEPT_HEADERS) res.removeHeader(h);
      res.setHeader("retry-after", RETRY_AFTER[err.code]!);
      res.status(STATUS[err.code]);
      original({ error: { code: err.code, message: err.message, request_id: req.id } });
    };
    let detached = false;
    const fence: Fence = {
      ...store.fenceOf(scope),
      attempt,
      active: true,
      wrote: false,
      detach: () => {
        if (detached || res.headersSent) return false;
        detached = true;
        const err = outcomeUnknown();
        log.warn("request failed", { request_id: req.id, code: err.code, resolving: true });
        res.setHeader("retry-after", RETRY_AFTER.outcome_unknown!);
        res.status(STATUS.outcome_unknown);
        original({ error: { code: err.code, message: err.message, request_id: req.id } });
        recordInstead(res, (status, headers, body) => {
          log.info("outcome learnt", { request_id: req.id, status });
          void end(status, headers, body).then((r) => r === "lost" && lost(), warn);
        });
        return true;
      },
      resolve: () => store.persist(() => store.resolve(scope, attempt), Date.now() + store.settleMs),
    };
    const lost = () => log.warn("change lost by the state store after it was applied (a Redis failover): no answer kept, the key is freed", { request_id: req.id });
    res.json = (body: unknown) => {
      end(res.statusCode, keptHeaders((h) => res.getHeader(h)), body).then(
        (r) => {
          if (r !== "lost") return original(body);
          lost();
          // The current primary does not have the change: it is not made, and a retry with the key runs it.
          answerInstead(storeUnavailable());
        },
        (err) => {
          warn(err);
          // The change was made, but whether it is kept is not known until the record is written (retried in
          // the background): the same answer as any write whose outcome is in doubt.
          if (fence.wrote && isConnectionError(err)) answerInstead(outcomeUnknown());
          else original(body);
        },
      );
      return res;
    };
    fences.run(fence, () => next());
  };
}
