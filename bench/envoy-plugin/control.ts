// The control service as the bench's Envoys see it, and nothing more (raw node:http, 127.0.0.1, in the
// orchestrating process, which is idle while load runs):
//   GET  /v1/routing-table?wait=N   contract 1 for the plugin: Bearer token required; 200 + etag when
//                                   If-None-Match names an older version (or none), else the long poll
//                                   is held N s and answered 304 (the table never changes here)
//   POST /v3/discovery:clusters     REST-JSON CDS / EDS from the control service's own builder and
//   POST /v3/discovery:endpoints    serializer (control/xds); 304 when version_info is current
//   POST /v1/telemetry              204 (the plugin-observe variant's batches), counted
//   anything else                   404 — the SaaS passthrough cluster points here, so a misrouted
//                                   request is a visible non-2xx
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tableEtag, type RoutingTable } from "../../control/contracts/routing-table.js";
import { TYPE_URL, type XdsSnapshot } from "../../control/xds/build.js";
import { XDS_PATHS, discoveryResponse } from "../../control/xds/discovery.js";

export interface ControlMock {
  port: number;
  /** Requests served, by "<METHOD> <path> <status>". */
  counts(): Record<string, number>;
  close(): Promise<void>;
}

export async function startControlMock(opts: { table: RoutingTable; snapshot: XdsSnapshot; token: string }): Promise<ControlMock> {
  const doc = JSON.stringify(opts.table);
  const etag = tableEtag(opts.table.version);
  const counts: Record<string, number> = {};
  const held = new Set<NodeJS.Timeout>();
  const done = (req: IncomingMessage, res: ServerResponse, status: number, body?: string, headers: Record<string, string> = {}) => {
    const key = `${req.method} ${(req.url ?? "/").split("?")[0]} ${status}`;
    counts[key] = (counts[key] ?? 0) + 1;
    if (body === undefined) res.writeHead(status, headers).end();
    else res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), ...headers }).end(body);
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://control");
      if (req.method === "GET" && url.pathname === "/v1/routing-table") {
        if (req.headers.authorization !== `Bearer ${opts.token}`) return done(req, res, 401, JSON.stringify({ error: { code: "unauthorized" } }));
        const inm = req.headers["if-none-match"];
        const have = typeof inm === "string" && /^"(\d+)"$/.test(inm.trim()) ? Number(inm.trim().slice(1, -1)) : 0;
        if (have < opts.table.version) return done(req, res, 200, doc, { etag, "cache-control": "no-cache" });
        const wait = Math.min(60, Math.max(0, Number(url.searchParams.get("wait") ?? 0) || 0));
        const t = setTimeout(() => {
          held.delete(t);
          if (!res.destroyed) done(req, res, 304, undefined, { etag });
        }, wait * 1000);
        held.add(t);
        res.on("close", () => {
          clearTimeout(t);
          held.delete(t);
        });
        return;
      }
      if (req.method === "POST" && (url.pathname === XDS_PATHS.clusters || url.pathname === XDS_PATHS.endpoints)) {
        const typeUrl = url.pathname === XDS_PATHS.clusters ? TYPE_URL.cluster : TYPE_URL.clusterLoadAssignment;
        let body: { version_info?: unknown; resource_names?: unknown } = {};
        try {
          body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as typeof body;
        } catch {
          return done(req, res, 400, JSON.stringify({ error: { code: "bad_request" } }));
        }
        if (body.version_info === opts.snapshot.version_info) return done(req, res, 304);
        const names = Array.isArray(body.resource_names) ? body.resource_names.filter((n): n is string => typeof n === "string") : [];
        return done(req, res, 200, discoveryResponse(opts.snapshot, typeUrl, names));
      }
      if (req.method === "POST" && url.pathname === "/v1/telemetry") return done(req, res, 204);
      done(req, res, 404, JSON.stringify({ error: { code: "not_found", message: `control mock: no ${req.method} ${url.pathname}` } }));
    });
  });
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 125_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    counts: () => ({ ...counts }),
    async close() {
      for (const t of held) clearTimeout(t);
      held.clear();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
