import { randomUUID } from "node:crypto";
import type { NextFunction, Request, Response } from "express";

declare module "express-serve-static-core" {
  interface Request {
    id: string;
  }
}

const SAFE = /^[A-Za-z0-9._:-]{1,64}$/;

/** Accept a sane incoming X-Request-Id, else generate one; echo it on the response. */
export function requestId(req: Request, res: Response, next: NextFunction): void {
  const incoming = req.get("x-request-id");
  req.id = incoming !== undefined && SAFE.test(incoming) ? incoming : randomUUID();
  res.setHeader("x-request-id", req.id);
  next();
}
