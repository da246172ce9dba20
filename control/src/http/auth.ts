/**
 * Bearer tokens with roles. Tokens are kept only as SHA-256 digests and compared with
 * crypto.timingSafeEqual against every configured digest (no early exit).
 *
 *   admin  — everything (reads and writes)
 *   viewer — reads of the management API and the routing table
 *   plugin — the plugin-facing endpoints only (routing table, telemetry)
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { BlockList, isIPv4, isIPv6 } from "node:net";
import type { NextFunction, Request, Response } from "express";
import { AppError } from "./errors.js";

export type Role = "admin" | "viewer" | "plugin";

declare module "express-serve-static-core" {
  interface Request {
    role?: Role;
  }
}

const digest = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest();

export interface Authenticator {
  roleOf(token: string): Role | null;
}

export function createAuthenticator(tokens: Record<Role, readonly string[]>): Authenticator {
  const entries: { role: Role; hash: Buffer }[] = [];
  for (const role of ["admin", "viewer", "plugin"] as const) for (const t of tokens[role]) entries.push({ role, hash: digest(t) });
  return {
    roleOf(token) {
      const h = digest(token);
      let found: Role | null = null;
      for (const e of entries) if (timingSafeEqual(e.hash, h) && found === null) found = e.role;
      return found;
    },
  };
}

/** Middleware: 401 without a valid bearer token, 403 when its role is not among `allowed`. */
export function requireRole(auth: Authenticator, ...allowed: Role[]) {
  return (req: Request, _res: Response, next: NextFunction) => {
    const header = req.get("authorization") ?? "";
    const m = /^Bearer[ ]+([\x21-\x7e]+)\s*$/i.exec(header);
    const role = m ? auth.roleOf(m[1]!) : null;
    if (role === null) return next(new AppError("unauthenticated", "a valid bearer token is required"));
    req.role = role;
    if (!allowed.includes(role)) return next(new AppError("forbidden", `role ${role} may not do this`));
    next();
  };
}

export const READ_ROLES: Role[] = ["admin", "viewer"];
export const WRITE_ROLES: Role[] = ["admin"];
export const TABLE_ROLES: Role[] = ["plugin", "admin", "viewer"];

/**
 * For callers that cannot send a token (Envoy's REST xDS): a peer address on the allow list passes;
 * anyone else needs a bearer token with one of `roles`. The peer is the TCP peer (never a header): behind a
 * sidecar or local proxy every caller is loopback, so CONTROL_REQUIRE_TOKENS=always empties the lists
 * (config.ts) and an empty list means a token from everyone.
 */
export function requirePeerOrRole(auth: Authenticator, allowFrom: readonly [string, number, "ipv4" | "ipv6"][], ...roles: Role[]) {
  const list = new BlockList();
  for (const [addr, prefix, family] of allowFrom) list.addSubnet(addr, prefix, family);
  const byToken = requireRole(auth, ...roles);
  return (req: Request, res: Response, next: NextFunction) => {
    const peer = (req.socket.remoteAddress ?? "").replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, "$1");
    const family = isIPv4(peer) ? "ipv4" : isIPv6(peer) ? "ipv6" : null;
    if (req.get("authorization") === undefined && family !== null && list.check(peer, family)) return next();
    byToken(req, res, next);
  };
}
