/** Request bodies: JSON only (415 otherwise), bounded size (413), malformed JSON → 400. */
import express, { type NextFunction, type Request, type Response } from "express";
import { AppError } from "./errors.js";

const WITH_BODY = new Set(["POST", "PUT", "PATCH"]);

function hasBody(req: Request): boolean {
  const len = req.get("content-length");
  return req.get("transfer-encoding") !== undefined || (len !== undefined && len !== "0");
}

export function requireJson(req: Request, _res: Response, next: NextFunction): void {
  if (WITH_BODY.has(req.method) && hasBody(req) && !req.is(["application/json", "application/*+json"])) {
    return next(new AppError("unsupported_media_type", "request bodies must be application/json"));
  }
  next();
}

// inflate: false — compressed request bodies are refused (415) rather than decompressed.
export const jsonBody = (limitBytes: number) => express.json({ limit: limitBytes, type: ["application/json", "application/*+json"], strict: true, inflate: false });

/**
 * Errors raised by Express/body-parser for bad requests (they carry a 4xx `status`, http-errors style)
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
