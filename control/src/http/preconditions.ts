/** ETags for stored resources and If-Match (optimistic concurrency → 412). */
import type { Request } from "express";
import { AppError } from "./errors.js";

export const revisionEtag = (revision: number): string => `"${revision}"`;

/** The If-Match header, or undefined when absent. */
export function ifMatchOf(req: Request): string | undefined {
  const v = req.get("if-match");
  return v === undefined || v.trim() === "" ? undefined : v;
}

/** Throws 412 unless `ifMatch` (absent = no precondition) matches the current revision. */
export function checkIfMatch(ifMatch: string | undefined, revision: number): void {
  if (ifMatch === undefined) return;
  const tags = ifMatch.split(",").map((t) => t.trim());
  if (tags.includes("*") || tags.includes(revisionEtag(revision))) return;
  throw new AppError("precondition_failed", `If-Match does not match the current ETag ${revisionEtag(revision)}; re-read and retry`);
}
