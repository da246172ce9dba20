/**
 * The dashboard (control/ui/: HTML, CSS and plain ES modules, no build step) at /ui. The files are
 * public — they hold no data; the page asks for a token and calls the public API with it, like any
 * other client. Strict headers: scripts, styles and connections from this origin only, no inline
 * script or style, no framing, no referrer.
 */
import { fileURLToPath } from "node:url";
import express, { Router, type Response } from "express";
import { AppError } from "../http/errors.js";

export const UI_DIR = fileURLToPath(new URL("../../ui/", import.meta.url));

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const secure = (res: Response) => {
  res.setHeader("content-security-policy", CSP);
  res.setHeader("x-content-type-options", "nosniff");
  res.setHeader("referrer-policy", "no-referrer");
  res.setHeader("x-frame-options", "DENY");
  res.setHeader("cross-origin-opener-policy", "same-origin");
  res.setHeader("cache-control", "no-cache");
};

export function dashboardRoutes(dir = UI_DIR): Router {
  const r = Router();
  r.get("/ui", (req, res, next) => {
    if (!/^\/ui$/.test(req.path)) return next();
    secure(res);
    res.redirect(301, "/ui/");
  });
  const files = express.static(dir, {
    index: "index.html",
    dotfiles: "ignore",
    redirect: false,
    fallthrough: true,
    setHeaders: (res) => secure(res as Response),
  });
  // Only the page's own kinds of file are served (tsconfig.json and the like stay out).
  const served = /^\/(?:[A-Za-z0-9_-]+\.(?:html|css|js))?$/;
  r.use("/ui", (req, res, next) => (served.test(req.path) ? files(req, res, next) : next()));
  // Anything else under /ui: a plain 404 (no token needed to learn that a static file is missing).
  r.use("/ui", () => {
    throw new AppError("not_found", "no such file");
  });
  return r;
}
