/**
 * REST-JSON xDS transport: serves the current XdsSnapshot (built by build.ts) to Envoy's polling
 * CDS/EDS subscriptions. Nothing here builds or changes resources.
 *
 *   POST /v3/discovery:clusters    DiscoveryRequest JSON → DiscoveryResponse (all clusters)
 *   POST /v3/discovery:endpoints   DiscoveryRequest JSON → DiscoveryResponse (the ClusterLoadAssignments
 *                                  named in resource_names; all when none is named)
 *
 * 200 with the resources; 304 (no body) when the request's version_info is the current one (Envoy
 * keeps what it has); 400 JSON naming the bad field; 503 JSON while no snapshot exists yet (Envoy
 * keeps its last config and polls again after refresh_delay). Auth is the caller's: pass
 * `authorize` (e.g. the control service's requireRole middleware) and it runs first.
 *
 * Protocol notes (envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol, REST-JSON polling):
 * CDS is state-of-the-world — a cluster missing from a response is removed — so CDS always answers
 * the complete set whatever resource_names says (the protocol allows it for CDS). Each EDS cluster
 * polls for its own name. Envoy's REST client does not report rejections back (no error_detail over
 * REST: watch its update_rejected stats); a client that sends `error_detail` gets it logged once.
 */
import express, { Router, type NextFunction, type Request, type RequestHandler, type Response } from "express";
import { z } from "zod";
import { TYPE_URL, type EnvoyCluster, type EnvoyClusterLoadAssignment, type XdsSnapshot, type XdsTypeUrl } from "./build.js";
import type { XdsNodes } from "./nodes.js";

export interface XdsLogger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const silent: XdsLogger = { debug() {}, info() {}, warn() {}, error() {} };

export interface XdsRouterOptions {
  /** The snapshot to serve now (undefined until the first one was built → 503). Called per request. */
  snapshot: () => XdsSnapshot | undefined;
  logger?: XdsLogger;
  /** Runs before the xDS handlers (authentication/authorization); omitted = open. */
  authorize?: RequestHandler | RequestHandler[];
  /** DiscoveryRequest size cap (default 1 MiB; Envoy's node metadata can be a few KiB). */
  bodyLimitBytes?: number;
  /** Where each poll's node, version_info and error_detail are recorded (nodes.ts); omitted = not recorded. */
  nodes?: XdsNodes;
}

export const XDS_PATHS = {
  clusters: "/v3/discovery:clusters",
  endpoints: "/v3/discovery:endpoints",
} as const;

const Str = (max: number) => z.string().max(max);

/** What we read of envoy.service.discovery.v3.DiscoveryRequest; other fields are allowed and ignored. */
export const DiscoveryRequest = z.looseObject({
  version_info: Str(256).default(""),
  node: z
    .looseObject({
      id: Str(1024).optional(),
      cluster: Str(1024).optional(),
    })
    .optional(),
  resource_names: z.array(z.string().min(1).max(1024)).max(100_000).default([]),
  type_url: Str(512).optional(),
  response_nonce: Str(256).optional(),
  error_detail: z.looseObject({ code: z.number().int().optional(), message: z.string().optional() }).optional(),
});
export type DiscoveryRequest = z.infer<typeof DiscoveryRequest>;

/** proto3 JSON parsers accept lowerCamelCase names too; map them to the snake_case we read. */
const CAMEL: Record<string, string> = {
  versionInfo: "version_info",
  resourceNames: "resource_names",
  typeUrl: "type_url",
  responseNonce: "response_nonce",
  errorDetail: "error_detail",
};

interface Issue {
  path: string;
  message: string;
}

type Parsed = { ok: true; req: DiscoveryRequest } | { ok: false; issues: Issue[] };

/** Parses a DiscoveryRequest body for the endpoint serving `typeUrl`. */
export function parseDiscoveryRequest(body: unknown, typeUrl: XdsTypeUrl): Parsed {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { ok: false, issues: [{ path: "", message: "the body must be a DiscoveryRequest JSON object (content-type application/json)" }] };
  }
  const src = { ...(body as Record<string, unknown>) };
  for (const [camel, snake] of Object.entries(CAMEL)) {
    if (!(camel in src)) continue;
    if (snake in src) return { ok: false, issues: [{ path: camel, message: `both ${snake} and ${camel} given` }] };
    src[snake] = src[camel];
    delete src[camel];
  }
  const r = DiscoveryRequest.safeParse(src);
  if (!r.success) {
    return { ok: false, issues: r.error.issues.map((i) => ({ path: i.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("").replace(/^\./, ""), message: i.message })) };
  }
  if (r.data.type_url !== undefined && r.data.type_url !== "" && r.data.type_url !== typeUrl) {
    return { ok: false, issues: [{ path: "type_url", message: `this endpoint serves ${typeUrl}, not ${r.data.type_url}` }] };
  }
  return { ok: true, req: r.data };
}

/** Serialized resources of a snapshot, computed once per snapshot (responses are string joins). */
interface Serialized {
  clusters: string;
  clusterJson: Map<string, string>;
  endpoints: Map<string, string>;
}
const serializedCache = new WeakMap<XdsSnapshot, Serialized>();

function serialized(s: XdsSnapshot): Serialized {
  let v = serializedCache.get(s);
  if (!v) {
    const clusterJson = new Map(s.clusters.map((c) => [c.name, JSON.stringify(c)]));
    v = {
      clusters: [...clusterJson.values()].join(","),
      clusterJson,
      endpoints: new Map(s.endpoints.map((e) => [e.cluster_name, JSON.stringify(e)])),
    };
    serializedCache.set(s, v);
  }
  return v;
}

/** One resource of a response: its name, the builder's object and its proto3 JSON text. */
export interface RenderedResource {
  name: string;
  resource: EnvoyCluster | EnvoyClusterLoadAssignment;
  json: string;
}

/**
 * The resources a request for `names` gets, in the snapshot's (sorted) order — the one selection both
 * transports serve (REST here, ADS in ads.ts). CDS is state of the world: every cluster, whatever the
 * names. EDS: the named ClusterLoadAssignments that exist (unknown names left out); `names` = "*" (not a
 * name in the list: REST looks such a name up like any other) = all of them.
 */
export function renderResources(s: XdsSnapshot, typeUrl: XdsTypeUrl, names: readonly string[] | "*"): RenderedResource[] {
  const ser = serialized(s);
  if (typeUrl === TYPE_URL.cluster) return s.clusters.map((c) => ({ name: c.name, resource: c, json: ser.clusterJson.get(c.name)! }));
  const wanted = names === "*" ? null : new Set(names);
  const out: RenderedResource[] = [];
  for (const e of s.endpoints) if (!wanted || wanted.has(e.cluster_name)) out.push({ name: e.cluster_name, resource: e, json: ser.endpoints.get(e.cluster_name)! });
  return out;
}

/**
 * The DiscoveryResponse body. `nonce` = version_info: REST has no ACK stream, so the nonce only has
 * to be present; a deterministic one keeps responses byte-identical across replicas.
 */
function responseBody(versionInfo: string, typeUrl: XdsTypeUrl, resourcesJson: string): string {
  const v = JSON.stringify(versionInfo);
  return `{"version_info":${v},"resources":[${resourcesJson}],"type_url":${JSON.stringify(typeUrl)},"nonce":${v}}`;
}

/** The DiscoveryResponse for a request (pure; exported for tests and other transports). No names = all. */
export function discoveryResponse(s: XdsSnapshot, typeUrl: XdsTypeUrl, resourceNames: readonly string[]): string {
  if (typeUrl === TYPE_URL.cluster) return responseBody(s.version_info, typeUrl, serialized(s).clusters);
  const parts = renderResources(s, typeUrl, resourceNames.length > 0 ? resourceNames : "*").map((r) => r.json);
  return responseBody(s.version_info, typeUrl, parts.join(","));
}

/** Node.user_agent_name and its version (either oneof member), e.g. "envoy 1.35.0"; null when absent. */
export function userAgent(node: Record<string, unknown> | undefined | null): string | null {
  if (!node) return null;
  const name = node.user_agent_name ?? node.userAgentName;
  if (typeof name !== "string" || name === "") return null;
  const v = node.user_agent_version ?? node.userAgentVersion;
  if (typeof v === "string" && v !== "") return `${name} ${v}`;
  const b = (node.user_agent_build_version ?? node.userAgentBuildVersion) as { version?: { major_number?: unknown; minor_number?: unknown; patch?: unknown } } | undefined;
  const ver = b?.version;
  if (ver && typeof ver === "object") return `${name} ${Number(ver.major_number ?? 0)}.${Number(ver.minor_number ?? 0)}.${Number(ver.patch ?? 0)}`;
  return name;
}

function sendError(req: Request, res: Response, status: number, code: string, message: string, issues?: Issue[]): void {
  const id = (req as { id?: unknown }).id;
  res
    .status(status)
    .setHeader("cache-control", "no-store")
    .json({ error: { code, message, ...(typeof id === "string" ? { request_id: id } : {}), ...(issues ? { issues } : {}) } });
}

export function createXdsRouter(opts: XdsRouterOptions): Router {
  const log = opts.logger ?? silent;
  const router = Router();
  // A no-op when the enclosing app already parsed the body.
  const json = express.json({ limit: opts.bodyLimitBytes ?? 1024 * 1024, type: ["application/json", "application/*+json"], strict: true, inflate: false });
  const auth = opts.authorize === undefined ? [] : Array.isArray(opts.authorize) ? opts.authorize : [opts.authorize];

  /** A client repeats error_detail on every poll until a new version is accepted: log each once. */
  const rejections = new Set<string>();
  const noteRejection = (d: DiscoveryRequest, typeUrl: string): void => {
    if (!d.error_detail) return;
    const node = d.node?.id ?? "";
    const key = `${node}\0${typeUrl}\0${d.version_info}\0${d.error_detail.message ?? ""}`;
    if (rejections.has(key)) return;
    if (rejections.size >= 1000) rejections.clear();
    rejections.add(key);
    log.warn("envoy rejected an xds response", {
      node,
      type_url: typeUrl,
      accepted_version: d.version_info,
      code: d.error_detail.code ?? null,
      detail: (d.error_detail.message ?? "").slice(0, 1000),
    });
  };

  const handler = (typeUrl: XdsTypeUrl) => (req: Request, res: Response) => {
    const parsed = parseDiscoveryRequest(req.body, typeUrl);
    if (!parsed.ok) return sendError(req, res, 400, "validation_failed", `invalid DiscoveryRequest: ${parsed.issues.map((i) => `${i.path || "<body>"}: ${i.message}`).join("; ")}`, parsed.issues);
    const d = parsed.req;
    noteRejection(d, typeUrl);
    const snap = opts.snapshot();
    const record = (served: { version: string; names: readonly string[] } | null): void =>
      opts.nodes?.restPoll({
        node: { id: d.node?.id ?? "", cluster: d.node?.cluster ?? "", user_agent: userAgent(d.node) },
        typeUrl,
        versionInfo: d.version_info,
        resourceNames: d.resource_names,
        errorDetail: d.error_detail,
        served,
      });
    if (!snap) {
      record(null);
      res.setHeader("retry-after", "1");
      return sendError(req, res, 503, "xds_snapshot_unavailable", "no xDS snapshot yet (the control service has not built one since start)");
    }
    if (d.version_info === snap.version_info) {
      record(null);
      res.status(304).setHeader("cache-control", "no-store").end();
      return;
    }
    log.debug("xds response", { node: d.node?.id ?? null, type_url: typeUrl, from: d.version_info, to: snap.version_info, names: d.resource_names.length });
    if (opts.nodes) record({ version: snap.version_info, names: renderResources(snap, typeUrl, d.resource_names.length > 0 ? d.resource_names : "*").map((r) => r.name) });
    res.status(200).setHeader("cache-control", "no-store").type("application/json").send(discoveryResponse(snap, typeUrl, d.resource_names));
  };

  // Express 5 path syntax: ':' must be escaped or it starts a parameter name.
  router.post("/v3/discovery\\:clusters", ...auth, json, handler(TYPE_URL.cluster));
  router.post("/v3/discovery\\:endpoints", ...auth, json, handler(TYPE_URL.clusterLoadAssignment));

  // Body errors of our own parser (when mounted standalone): JSON answers, never HTML.
  router.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    const type = (err as { type?: unknown } | null)?.type;
    if (type === "entity.parse.failed") return sendError(req, res, 400, "malformed_json", "the request body is not valid JSON");
    if (type === "entity.too.large") return sendError(req, res, 413, "payload_too_large", "the request body is too large");
    if (type === "encoding.unsupported" || type === "charset.unsupported") return sendError(req, res, 415, "unsupported_media_type", "unsupported body encoding or charset");
    next(err);
  });
  return router;
}
