/**
 * Request bodies: JSON only (415 otherwise), read only by the routes that take one — after their token and
 * role check (auth.ts), never before — each bounded by its own size limit (413 naming it) and by a nesting
 * depth (400), malformed JSON → 400.
 *
 * An answer given before a body was read (401, 403, 404, 413, a public page) does not read it afterwards
 * either: `closeUnreadBody` closes the connection after the answer unless what is left is small.
 */
import type { NextFunction, Request, RequestHandler, Response } from "express";
import { AppError } from "./errors.js";
import { lingerClose } from "./linger.js";

const WITH_BODY = new Set(["POST", "PUT", "PATCH"]);

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * Each route's body limit, fitting what it accepts (compact JSON of the largest valid request, with room for
 * whitespace and escapes). BODY_LIMIT_BYTES (config.ts) caps them all.
 */
export const BODY_LIMITS = {
  /** POST /v1/models, PATCH /v1/models/{id}: names ≤ 256 characters, ≤ 100 aliases (≈ 27 KB). */
  model: 64 * KiB,
  /** POST /v1/deployments: ≤ 1,024 instances, each ≤ 5 KB (a 4 KiB API key, URL, id, region) ≈ 5.2 MB. */
  deploymentCreate: 8 * MiB,
  /** PATCH /v1/deployments/{id}: settings, ≤ 32 extra paths (≈ 5 KB). */
  deploymentUpdate: 64 * KiB,
  /** POST /v1/deployments/{id}/instances, PATCH …/instances/{iid}: one instance (≈ 5 KB). */
  instance: 64 * KiB,
  /** POST /v1/deployments/{id}/migrations: a URL and an API key (≈ 5 KB). */
  migration: 64 * KiB,
  /** POST /v1/telemetry (contract 3): ≤ 2,048 instances of ≤ 662 bytes each ≈ 1.3 MiB. */
  telemetry: 2 * MiB,
  /** POST /v3/discovery:* (Envoy's DiscoveryRequest: node metadata, resource names). */
  xds: 1 * MiB,
} as const;

/** Deepest nesting of arrays and objects a body may have (our bodies nest ≤ 4 levels; Envoy's node metadata a few more). */
export const MAX_JSON_DEPTH = 64;

/** What an early answer may still read off (and discard) to keep the connection; beyond, it closes it. */
const DRAIN_MAX_BYTES = 64 * KiB;
/** Closing such a connection: what is still discarded before the close (http/linger.ts). */
const LINGER = { idleMs: 1000, maxBytes: MiB, maxMs: 5000 };

export type BodyKind = keyof typeof BODY_LIMITS;
export type BodyParsers = Record<BodyKind, RequestHandler>;

/** One parser per kind of body, each limited to min(its limit, `capBytes`). */
export function bodyParsers(capBytes: number = Number.POSITIVE_INFINITY): BodyParsers {
  const out = {} as Record<BodyKind, RequestHandler>;
  for (const kind of Object.keys(BODY_LIMITS) as BodyKind[]) out[kind] = jsonBody(Math.min(BODY_LIMITS[kind], capBytes));
  return out;
}

/** A body with bytes in it (what the parsers and the media-type check care about). */
export function hasBody(req: Request): boolean {
  const len = req.get("content-length");
  return req.get("transfer-encoding") !== undefined || (len !== undefined && len !== "0");
}

/** A body the client declared, empty ones included (`content-length: 0`): what needs a token before anything. */
export function declaresBody(req: Request): boolean {
  return req.get("transfer-encoding") !== undefined || req.get("content-length") !== undefined;
}

const isJson = (req: Request) => typeof req.is(["application/json", "application/*+json"]) === "string";

export function requireJson(req: Request, _res: Response, next: NextFunction): void {
  if (WITH_BODY.has(req.method) && hasBody(req) && !isJson(req)) {
    return next(new AppError("unsupported_media_type", "request bodies must be application/json"));
  }
  next();
}

/**
 * Answers given while the request's body is still arriving (not read: the route refused it first) close
 * the connection, so nothing parses the rest — unless at most DRAIN_MAX_BYTES are announced, which Node reads
 * off and discards to keep the connection. The close is graceful (LINGER). Install before any route.
 */
export function closeUnreadBody(req: Request, res: Response, next: NextFunction): void {
  if (!hasBody(req)) return next();
  const writeHead = res.writeHead;
  res.writeHead = function (this: Response, ...args: unknown[]) {
    if (!req.complete && !this.headersSent) {
      const len = Number(req.get("content-length") ?? Number.NaN);
      if (!(Number.isFinite(len) && len <= DRAIN_MAX_BYTES)) {
        this.setHeader("connection", "close");
        // …closed gracefully: the unread rest is discarded (bounded) before the close, so a client still
        // sending reads this answer instead of a reset (a fuzz run lost a 200 that way: seed 1254).
        lingerClose(req, LINGER);
      }
    }
    return (writeHead as (...a: unknown[]) => Response).apply(this, args);
  } as typeof res.writeHead;
  next();
}

const kib = (n: number) => (n >= MiB && n % MiB === 0 ? `${n / MiB} MiB` : n >= KiB && n % KiB === 0 ? `${n / KiB} KiB` : `${n} bytes`);
const tooLarge = (limit: number) => new AppError("payload_too_large", `the request body is over this endpoint's limit of ${limit} bytes (${kib(limit)})`);

/**
 * True when `text` nests arrays/objects deeper than `max` (brackets inside strings do not count). Stops at
 * the first level past `max`: a 1 MiB `[[[[…` is refused after `max` characters, never parsed.
 */
export function nestsDeeperThan(text: string, max: number): boolean {
  // Jump between the characters that matter ([ ] { } " and \ inside strings).
  const re = /[[\]{}"]/g;
  let depth = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const c = text.charCodeAt(m.index);
    if (c === 0x22) {
      // A string: its end is the next quote not escaped by an odd run of backslashes.
      let i = m.index + 1;
      for (;;) {
        const q = text.indexOf('"', i);
        if (q === -1) return false; // unterminated: JSON.parse refuses it
        let bs = 0;
        while (text.charCodeAt(q - 1 - bs) === 0x5c) bs++;
        i = q + 1;
        if (bs % 2 === 0) break;
      }
      re.lastIndex = i;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else depth--;
  }
  return false;
}

/** The parsed JSON value of a body (strict: an object or an array; an empty body is `{}`, as body-parser did). */
function parseJson(text: string, maxDepth: number): unknown {
  let i = 0;
  while (i < text.length && (text[i] === " " || text[i] === "\t" || text[i] === "\n" || text[i] === "\r")) i++;
  if (i === text.length) {
    if (text.length === 0) return {};
    throw new AppError("malformed_json", "the request body is not valid JSON");
  }
  if (text[i] !== "{" && text[i] !== "[") throw new AppError("malformed_json", "the request body is not valid JSON: it must be an object or an array");
  if (nestsDeeperThan(text, maxDepth)) throw new AppError("bad_request", `the request body nests arrays or objects more than ${maxDepth} levels deep (the limit)`);
  try {
    return JSON.parse(text);
  } catch {
    throw new AppError("malformed_json", "the request body is not valid JSON");
  }
}

/** The charset of the body, as a TextDecoder; null when it is not one JSON may be sent in (RFC 8259: UTF-8; UTF-16 accepted). */
function decoderFor(req: Request): TextDecoder | null {
  const m = /;\s*charset\s*=\s*"?([^";\s]*)"?/i.exec(req.get("content-type") ?? "");
  const charset = (m?.[1] ?? "utf-8").toLowerCase();
  if (!charset.startsWith("utf-")) return null;
  try {
    return new TextDecoder(charset); // strips a BOM
  } catch {
    return null;
  }
}

/**
 * Middleware reading a JSON body into `req.body` (undefined without one), at most `limitBytes`: a longer
 * announced length is refused (413) before anything is read, a longer stream as soon as it passes the limit.
 * Mount it after the route's role check. Compressed bodies are refused (415).
 */
export function jsonBody(limitBytes: number, opts: { maxDepth?: number } = {}): RequestHandler {
  const maxDepth = opts.maxDepth ?? MAX_JSON_DEPTH;
  return (req: Request, _res: Response, next: NextFunction) => {
    if (req.body !== undefined || req.readableEnded) return next(); // read already
    req.body = undefined;
    if (!hasBody(req)) return next();
    if (!isJson(req)) return next(new AppError("unsupported_media_type", "request bodies must be application/json"));
    if ((req.get("content-encoding") ?? "identity").toLowerCase() !== "identity") return next(new AppError("unsupported_media_type", "compressed request bodies are not accepted"));
    const decoder = decoderFor(req);
    if (!decoder) return next(new AppError("unsupported_media_type", "unsupported body charset (UTF-8 or UTF-16)"));
    const announced = Number(req.get("content-length") ?? Number.NaN);
    if (Number.isFinite(announced) && announced > limitBytes) return next(tooLarge(limitBytes));

    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (err?: AppError) => {
      if (settled) return;
      settled = true;
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
      if (err) {
        req.pause(); // nothing more is read; the answer closes the connection (closeUnreadBody)
        return next(err);
      }
      try {
        req.body = parseJson(decoder.decode(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)), maxDepth);
      } catch (e) {
        return next(e);
      }
      next();
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) return settle(tooLarge(limitBytes));
      chunks.push(chunk);
    };
    const onEnd = () => settle();
    const onError = () => settle(new AppError("bad_request", "the request body could not be read"));
    const onClose = () => settle(new AppError("bad_request", "the request body could not be read (the connection closed)"));
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  };
}

/**
 * Errors raised by Express for bad requests (they carry a 4xx `status`, http-errors style)
 * → our codes: a client can never cause a 500.
 */
export function clientError(err: unknown): AppError | null {
  if (typeof err !== "object" || err === null) return null;
  const typed = bodyParserError(err);
  if (typed) return typed;
  const status = (err as { status?: unknown; statusCode?: unknown }).status ?? (err as { statusCode?: unknown }).statusCode;
  if (typeof status !== "number" || status < 400 || status > 499) return null;
  if (status === 413) return new AppError("payload_too_large", "the request body is too large");
  if (status === 415) return new AppError("unsupported_media_type", "unsupported request body");
  if (err instanceof URIError) return new AppError("bad_request", "the request path is not valid percent-encoding");
  return new AppError("bad_request", "the request could not be read");
}

/** body-parser's errors (the xDS router's own parser, control/xds/discovery.ts, when a body reaches it unread). */
function bodyParserError(err: object): AppError | null {
  if (!("type" in err)) return null;
  switch ((err as { type: unknown }).type) {
    case "entity.parse.failed":
      return new AppError("malformed_json", "the request body is not valid JSON");
    case "entity.too.large":
      return new AppError("payload_too_large", "the request body is too large");
    case "encoding.unsupported":
    case "charset.unsupported":
      return new AppError("unsupported_media_type", "unsupported body encoding or charset");
    case "entity.verify.failed":
    case "request.aborted":
    case "request.size.invalid":
    case "stream.encoding.set":
    case "stream.not.readable":
      return new AppError("bad_request", "the request body could not be read");
    default:
      return null;
  }
}
