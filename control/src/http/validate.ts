/** Parse a request part with its zod schema; failures become 400 naming each bad field. */
import type { z } from "zod";
import { AppError, zodIssues } from "./errors.js";

export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  if (body === undefined) throw new AppError("validation_failed", "a JSON body is required", [{ path: "", message: "a JSON body is required" }]);
  const r = schema.safeParse(body);
  if (!r.success) throw new AppError("validation_failed", "the request body is invalid", zodIssues(r.error));
  return r.data;
}

export function parsePart<S extends z.ZodType>(schema: S, value: unknown, where: "path" | "query"): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) {
    throw new AppError(
      "validation_failed",
      `invalid ${where} parameters`,
      zodIssues(r.error).map((i) => ({ ...i, path: i.path === "" ? where : `${where}.${i.path}` })),
    );
  }
  return r.data;
}
