/**
 * Everything the real-Envoy e2e needs except Envoy: Redis, one control service replica (in-process, as
 * the control tests run it, on a free port, with tokens), mock OpenAI-compatible instances on
 * 127.0.0.1 free ports, a stand-in for the SaaS API, and the deployments created through the API.
 * Used by the test that runs everywhere (the xDS Envoy would get) and by the Envoy traffic test.
 *
 * Each mock answers with its own key ("<deployment>/<instance>") as the completion text, and every
 * request the e2e sends carries `x-e2e-seq`, so a response can be traced to exactly one upstream
 * request record (and its headers: what the plugin set).
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { ADMIN, PLUGIN, registerModel, startReplica, type Replica } from "../../control/harness.js";
import { startMockOpenAI, type MockOpenAI, type RecordedRequest } from "../../../envoy/local/mock-openai.js";
import { startRedis, type RedisServer } from "../../support/redis.js";

export { ADMIN, PLUGIN };

export interface InstanceSpec {
  id: string;
  weight?: number;
  priority?: number;
  /**
   * Behind a front that fails /health for Envoy's active health check only (Envoy sends the cluster
   * name as Host; the control service's prober sends 127.0.0.1:<port>): the control service keeps the
   * instance active (the plugin picks it) while Envoy's own load balancer would never choose it.
   */
  envoyHcFails?: boolean;
  /** An upstream API key the instance requires on its API (not on /health, like vLLM's --api-key). */
  apiKey?: string;
}
export interface DeploymentSpec {
  id: string;
  model: string;
  strategy: "round_robin" | "weighted_round_robin" | "failover";
  instances: InstanceSpec[];
  /** Other names clients may send for the model (registered with it). */
  aliases?: string[];
  /**
   * The name the engines serve (the model's served_name; vLLM's --served-model-name): the mocks serve
   * this name only (vLLM's 404 for any other). Default: the model name.
   */
  servedName?: string;
  /** The deployment's on_unavailable; default "fail". */
  onUnavailable?: "fail" | "panic";
}

/** Control-service probes (and, via CDS, Envoy's active health check): fast, 2 to eject / re-admit. */
export const HEALTH = { interval_seconds: 0.5, timeout_seconds: 0.4, unhealthy_threshold: 2, healthy_threshold: 2, path: "/health" } as const;

export const DEPLOYMENTS: readonly DeploymentSpec[] = [
  { id: "rr", model: "e2e-rr", strategy: "round_robin", instances: [{ id: "a" }, { id: "b" }, { id: "c" }, { id: "d" }] },
  { id: "wrr", model: "e2e-wrr", strategy: "weighted_round_robin", instances: [{ id: "heavy", weight: 3 }, { id: "light", weight: 1 }] },
  {
    id: "fo",
    model: "e2e-fo",
    strategy: "failover",
    instances: [
      { id: "p1", priority: 0 },
      { id: "p2", priority: 0 },
      { id: "b1", priority: 10 },
      { id: "b2", priority: 10 },
    ],
  },
  { id: "ej", model: "e2e-ej", strategy: "round_robin", instances: [{ id: "e1" }, { id: "e2" }, { id: "e3" }] },
  { id: "ovr", model: "e2e-ovr", strategy: "round_robin", instances: [{ id: "o1" }, { id: "o2", envoyHcFails: true }] },
  { id: "key", model: "e2e-key", strategy: "round_robin", instances: [{ id: "k1", apiKey: "sk-e2e-k1" }, { id: "k2", apiKey: "sk-e2e-k2" }] },
];

/**
 * Front for an instance: proxies everything to `target`, except that GET /health with a Host other
 * than 127.0.0.1:… (Envoy's health checker sends the cluster name) answers 503.
 */
async function startEnvoyHcFailingFront(target: MockOpenAI): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const hostHeader = req.headers.host ?? "";
    if ((req.url ?? "").split("?")[0] === "/health" && !hostHeader.startsWith("127.0.0.1")) {
      res.writeHead(503, { "content-type": "text/plain" }).end("unhealthy for Envoy");
      return;
    }
    const up = httpRequest({ host: "127.0.0.1", port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on("error", () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  server.on("connection", (sock: Socket) => {
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A model no deployment serves: the plugin passes it through to the SaaS route. */
export const UNKNOWN_MODEL = "gpt-4o-mini";

export interface SaasRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface SaasStandIn {
  port: number;
  requests: SaasRequest[];
  close(): Promise<void>;
}

/** Stand-in for api.openai.com over plain HTTP: records every request, answers a fixed completion. */
export async function startSaasStandIn(): Promise<SaasStandIn> {
  const requests: SaasRequest[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      requests.push({ method: req.method ?? "", path: req.url ?? "", headers: { ...req.headers }, body });
      let model: unknown = null;
      try {
        model = (JSON.parse(body) as { model?: unknown }).model ?? null;
      } catch {
        // not JSON (e.g. GET /v1/models)
      }
      const text = JSON.stringify({
        id: "chatcmpl-saas",
        object: "chat.completion",
        model,
        choices: [{ index: 0, message: { role: "assistant", content: "saas" }, finish_reason: "stop" }],
      });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "x-served-by": "saas-stand-in" });
      res.end(text);
    });
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface Stack {
  redis: RedisServer;
  control: Replica;
  controlPort: number;
  /** The control service's ADS (gRPC) port: the e2e bootstrap's gateway_xds. */
  adsPort: number;
  saas: SaasStandIn;
  /** "<deployment>/<instance>" → its mock. */
  mocks: Map<string, MockOpenAI>;
  mock(key: string): MockOpenAI;
  /** "127.0.0.1:<port>" of an instance (its front, if any): the form the table, EDS and Envoy's host map all use. */
  address(key: string): string;
  /** Whether Envoy's active health check of this "ip:port" is made to fail (InstanceSpec.envoyHcFails). */
  envoyHcFails(address: string): boolean;
  /** The routing table as the plugin fetches it (plugin token). */
  table(): Promise<RoutingTableView>;
  /** Control-service log lines (JSON), newest last. */
  logTail(n?: number): string;
  close(): Promise<void>;
}

export interface RoutingTableView {
  version: number;
  models: Record<string, string>;
  deployments: { id: string; cluster: string; strategy: string; served_name?: string; instances: { id: string; address: string; state: string; weight: number; priority: number }[] }[];
}

export const CHAT = "/v1/chat/completions";
export const chatRequests = (m: MockOpenAI): RecordedRequest[] => m.requests.filter((r) => r.method === "POST" && r.path === CHAT);

export async function startStack(opts: { deployments?: readonly DeploymentSpec[] } = {}): Promise<Stack> {
  const deployments = opts.deployments ?? DEPLOYMENTS;
  const started: { close(): Promise<void> }[] = [];
  const closeAll = async () => {
    // Everything, in reverse order, even if one of them fails.
    const errors: unknown[] = [];
    const todo = started.splice(0).reverse();
    for (const s of todo) {
      try {
        await s.close();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, "stack cleanup failed");
  };
  try {
    const redis = await startRedis();
    started.push(redis);
    const mocks = new Map<string, MockOpenAI>();
    const urls = new Map<string, string>();
    const hcFails = new Set<string>();
    for (const d of deployments) {
      for (const i of d.instances) {
        const key = `${d.id}/${i.id}`;
        const m = await startMockOpenAI({ model: d.servedName ?? d.model, reply: key, ...(i.apiKey ? { apiKey: i.apiKey } : {}) });
        started.push(m);
        mocks.set(key, m);
        if (i.envoyHcFails) {
          const front = await startEnvoyHcFailingFront(m);
          started.push(front);
          urls.set(key, `http://127.0.0.1:${front.port}/v1`);
          hcFails.add(`127.0.0.1:${front.port}`);
        } else urls.set(key, m.url);
      }
    }
    const saas = await startSaasStandIn();
    started.push(saas);
    const control = await startReplica(redis.url, {
      // Envoy's xDS (its ADS stream, or the REST fallback's polls) carries no token: loopback peers may
      // subscribe without one (the default, made explicit).
      XDS_ALLOW_FROM: "127.0.0.1/32,::1/128",
      // ADS (xDS over gRPC) on an ephemeral port: the shipped bootstrap's gateway_xds points there.
      CONTROL_XDS_GRPC_PORT: "0",
      LOG_LEVEL: "debug",
    });
    started.push({ close: () => control.stop() });

    for (const d of deployments) {
      await registerModel(control.api, d.model, { ...(d.aliases ? { aliases: d.aliases } : {}), ...(d.servedName !== undefined ? { served_name: d.servedName } : {}) });
      const r = await control.api("POST", "/v1/deployments", {
        body: {
          id: d.id,
          model: d.model,
          strategy: d.strategy,
          on_unavailable: d.onUnavailable ?? "fail",
          health_check: HEALTH,
          instances: d.instances.map((i) => ({ id: i.id, url: urls.get(`${d.id}/${i.id}`)!, weight: i.weight ?? 1, priority: i.priority ?? 0, ...(i.apiKey ? { api_key: i.apiKey } : {}) })),
        },
      });
      if (r.status !== 201) throw new Error(`creating deployment ${d.id}: ${r.status} ${r.text}`);
      if (r.body.instances.some((i: { state: string }) => i.state !== "active")) throw new Error(`deployment ${d.id} not all active: ${r.text}`);
    }

    const stack: Stack = {
      redis,
      control,
      controlPort: control.control.port,
      adsPort: control.control.adsPort!,
      saas,
      mocks,
      mock(key) {
        const m = mocks.get(key);
        if (!m) throw new Error(`no instance ${key}`);
        return m;
      },
      address: (key) => {
        const u = urls.get(key);
        if (!u) throw new Error(`no instance ${key}`);
        return new URL(u).host;
      },
      envoyHcFails: (address) => hcFails.has(address),
      async table() {
        const r = await control.api("GET", "/v1/routing-table", { token: PLUGIN });
        if (r.status !== 200) throw new Error(`routing table: ${r.status} ${r.text}`);
        return r.body as RoutingTableView;
      },
      logTail: (n = 60) => control.logs.slice(-n).join("\n"),
      close: closeAll,
    };
    return stack;
  } catch (e) {
    await closeAll().catch(() => undefined);
    throw e;
  }
}
