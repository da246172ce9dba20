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
import { declaresBody } from "./body.js";
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

/** The role of the request's bearer token; null without one, malformed, or unknown. */
export function roleOfRequest(auth: Authenticator, req: Request): Role | null {
  const header = req.get("authorization") ?? "";
  const m = /^Bearer[ ]+([\x21-\x7e]+)\s*$/i.exec(header);
  return m ? auth.roleOf(m[1]!) : null;
}

/** Middleware: 401 without a valid bearer token, 403 when its role is not among `allowed`. */
export function requireRole(auth: Authenticator, ...allowed: Role[]) {
  return (req: Request, _res: Response, next: NextFunction) => {
    const role = roleOfRequest(auth, req);
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
  const tokenless = passesWithoutToken(allowFrom);
  const byToken = requireRole(auth, ...roles);
  return (req: Request, res: Response, next: NextFunction) => {
    if (tokenless(req)) return next();
    byToken(req, res, next);
  };
}

/** Whether requirePeerOrRole(…, allowFrom, …) lets the request in without a token: no `authorization`, TCP peer on the list. */
export function passesWithoutToken(allowFrom: readonly [string, number, "ipv4" | "ipv6"][]): (req: Request) => boolean {
  const list = new BlockList();
  for (const [addr, prefix, family] of allowFrom) list.addSubnet(addr, prefix, family);
  return (req) => {
    if (allowFrom.length === 0 || req.get("authorization") !== undefined) return false;
    const peer = (req.socket.remoteAddress ?? "").replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, "$1");
    const family = isIPv4(peer) ? "ipv4" : isIPv6(peer) ? "ipv6" : null;
    return family !== null && list.check(peer, family);
  };
}

/**
 * Before any request body is read or parsed: a request declaring one, even empty (any method but GET and HEAD, whose
 * routes are public pages or reads that never read it) needs a valid token of some role — 401 otherwise,
 * its body unread (body.ts closeUnreadBody closes the connection rather than read a large one). Each route
 * then checks the role as before, and reads the body only after that (body.ts jsonBody). `tokenless`: the
 * requests a route may take without a token (requirePeerOrRole: xDS from allow-listed peers).
 */
export function tokenBeforeBody(auth: Authenticator, tokenless: (req: Request) => boolean) {
  return (req: Request, _res: Response, next: NextFunction) => {
    // An empty declared body counts too: otherwise a wrong token with `content-length: 0` would reach
    // routing and get a 400 for a bad path or Express's automatic OPTIONS answer instead of 401.
    if (req.method === "GET" || req.method === "HEAD" || !declaresBody(req)) return next();
    if (roleOfRequest(auth, req) === null && !tokenless(req)) return next(new AppError("unauthenticated", "a valid bearer token is required"));
    next();
  };
}
