/** Shared setup for control tests: a real Redis, a control replica in-process, a small HTTP client. */
import { loadConfig, type Config } from "../../control/src/config.js";
import { startControl, type Control, type ControlOptions } from "../../control/src/control.js";
import { startRedis, waitFor, type RedisServer } from "../support/redis.js";

export const ADMIN = "admin-token-0123456789abcdef";
export const VIEWER = "viewer-token-0123456789abcdef";
export const PLUGIN = "plugin-token-0123456789abcdef";

export { waitFor };

export function testConfig(redisUrl: string, env: Record<string, string> = {}): Readonly<Config> {
  const r = loadConfig({
    CONTROL_HOST: "127.0.0.1",
    CONTROL_PORT: "0",
    REDIS_URL: redisUrl,
    CONTROL_ADMIN_TOKENS: ADMIN,
    CONTROL_VIEWER_TOKENS: VIEWER,
    CONTROL_PLUGIN_TOKENS: PLUGIN,
    CREATE_WAIT_MS: "3000",
    CONNECTIVITY_TIMEOUT_MS: "400",
    WORKER_INTERVAL_MS: "20",
    PROBE_TICK_MS: "20",
    LEASE_MS: "2000",
    TABLE_REFRESH_MS: "200",
    DNS_REFRESH_MS: "0",
    DRAIN_TIMEOUT_SECONDS: "0.2",
    REDIS_COMMAND_TIMEOUT_MS: "500",
    LOG_LEVEL: "debug",
    ...env,
  });
  if (!r.ok) throw new Error(`bad test config: ${JSON.stringify(r.issues)}`);
  return r.config;
}

export interface Replica {
  control: Control;
  url: string;
  logs: string[];
  api: Api;
  stop(): Promise<void>;
}

export async function startReplica(redisUrl: string, env: Record<string, string> = {}, opts: ControlOptions = {}): Promise<Replica> {
  const logs: string[] = [];
  const control = await startControl(testConfig(redisUrl, env), { logSink: (l) => logs.push(l), ...opts });
  return { control, url: control.url, logs, api: client(control.url), stop: () => control.stop() };
}

export interface Res {
  status: number;
  headers: Headers;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  text: string;
  ms: number;
}

export type Api = (method: string, path: string, opts?: { token?: string | null; body?: unknown; raw?: string; headers?: Record<string, string>; signal?: AbortSignal }) => Promise<Res>;

export function client(base: string): Api {
  return async (method, path, opts = {}) => {
    const headers: Record<string, string> = { ...opts.headers };
    const token = opts.token === undefined ? ADMIN : opts.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (opts.raw !== undefined) body = opts.raw;
    else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers["content-type"] ??= "application/json";
    }
    const t0 = performance.now();
    const r = await fetch(base + path, { method, headers, body, signal: opts.signal });
    const text = await r.text();
    let parsed: unknown = null;
    try {
      parsed = text === "" ? null : JSON.parse(text);
    } catch {
      parsed = null;
    }
    return { status: r.status, headers: r.headers, body: parsed, text, ms: performance.now() - t0 };
  };
}

/** A running Redis plus helpers; close everything in `after`. */
export async function withRedis(opts: { appendonly?: boolean } = {}): Promise<RedisServer> {
  return await startRedis(opts);
}

export async function registerModel(api: Api, name: string, extra: Record<string, unknown> = {}): Promise<any> {
  const r = await api("POST", "/v1/models", { body: { name, ...extra } });
  if (r.status !== 201) throw new Error(`model create failed: ${r.status} ${r.text}`);
  return r.body;
}

export async function table(api: Api): Promise<any> {
  const r = await api("GET", "/v1/routing-table", { token: PLUGIN });
  if (r.status !== 200) throw new Error(`table: ${r.status} ${r.text}`);
  return r.body;
}
