// Helpers for driving build/plugin.wasm through the test host (envoy/local/host/, API.md).
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import asc from "assemblyscript/asc";
import { ProxyWasmHost } from "../../envoy/local/host/index.js";

export const PLUGIN_WASM = fileURLToPath(new URL("../../build/plugin.wasm", import.meta.url));
export const NOOP_WASM = fileURLToPath(new URL("../../build/noop.wasm", import.meta.url));
export const CONTROL = "gateway_control";

export type Host = Awaited<ReturnType<typeof ProxyWasmHost.start>>;
export type HostCall = Host["httpCalls"][number];
export type Headers = Array<[string, string]>;

export interface InstanceSpec {
  id: string;
  address?: string;
  base_path?: string;
  weight?: number;
  priority?: number;
  region?: string;
  state?: "active" | "draining" | "ejected";
  /** The upstream `authorization` value (contract 1); omitted when undefined. */
  authorization?: string;
  /** The engine's load (contract 1 `load`); omitted when undefined. */
  load?: { score: number; at_ms: number; interval_ms: number; capacity?: number };
}

export interface DeploymentSpec {
  id: string;
  cluster?: string;
  strategy?: "round_robin" | "weighted_round_robin" | "failover" | "least_request" | "latency" | "load_aware";
  on_unavailable?: "fail" | "panic";
  /** The name the engine serves (contract 1 `served_name`); absent: none. */
  served_name?: string;
  forward_client_credentials?: boolean;
  extra_paths?: string[];
  /** Session affinity (contract 1 `affinity`); absent: none. */
  affinity?: { source: "header"; header: string; load_factor?: number } | { source: "user"; load_factor?: number };
  instances: InstanceSpec[];
}

let addressSeq = 0;

/** A routing-table document (contract 1). Models default to one per deployment, named like it. */
export function table(version: number, deployments: DeploymentSpec[], models?: Record<string, string>): object {
  return {
    schema: 1,
    version,
    models: models ?? Object.fromEntries(deployments.map((d) => [d.id, d.id])),
    deployments: deployments.map((d) => ({
      id: d.id,
      cluster: d.cluster ?? `gw.${d.id}`,
      strategy: d.strategy ?? "round_robin",
      on_unavailable: d.on_unavailable ?? "fail",
      ...(d.served_name !== undefined ? { served_name: d.served_name } : {}),
      ...(d.forward_client_credentials !== undefined ? { forward_client_credentials: d.forward_client_credentials } : {}),
      ...(d.extra_paths !== undefined ? { extra_paths: d.extra_paths } : {}),
      ...(d.affinity !== undefined ? { affinity: d.affinity } : {}),
      instances: d.instances.map((i) => ({
        id: i.id,
        address: i.address ?? `10.${(addressSeq >> 8) & 255}.${addressSeq++ & 255}.1:8000`,
        base_path: i.base_path ?? "/v1",
        weight: i.weight ?? 1,
        priority: i.priority ?? 0,
        region: i.region ?? "",
        state: i.state ?? "active",
        ...(i.authorization !== undefined ? { authorization: i.authorization } : {}),
        ...(i.load !== undefined ? { load: i.load } : {}),
      })),
    })),
  };
}

export interface GatewayOptions {
  workers?: number;
  config?: Record<string, unknown>;
  /** Delivered as the answer to the first poll. */
  table?: object | string;
  logLevel?: "trace" | "debug" | "info" | "warn" | "error" | "critical";
  bufferLimitBytes?: number;
  wasm?: string;
  /** The host's bootstrap node.id (property `node.id`); absent: not configured. */
  nodeId?: string;
}

export async function gateway(o: GatewayOptions = {}): Promise<Host> {
  const host = await ProxyWasmHost.start({
    wasm: o.wasm ?? PLUGIN_WASM,
    workers: o.workers ?? 1,
    configuration: JSON.stringify({ control_cluster: CONTROL, ...(o.config ?? {}) }),
    clusters: [CONTROL],
    allowOnHeadersStopIteration: true,
    logLevel: o.logLevel ?? "info",
    ...(o.bufferLimitBytes !== undefined ? { bufferLimitBytes: o.bufferLimitBytes } : {}),
    ...(o.nodeId !== undefined ? { nodeId: o.nodeId } : {}),
  });
  if (o.table !== undefined) {
    answerPoll(host, { status: 200, body: typeof o.table === "string" ? o.table : JSON.stringify(o.table) });
  }
  return host;
}

/** Advances the virtual clock in steps until cond() holds (bounded). */
export function waitFor(host: Host, cond: () => boolean, what: string, stepMs = 100, maxMs = 120_000): void {
  for (let t = 0; t <= maxMs; t += stepMs) {
    if (cond()) return;
    host.advance(stepMs);
  }
  assert.fail(`timed out (virtual ${maxMs} ms) waiting for ${what}`);
}

/** The one poll in flight (waits for it on the virtual clock). */
export function nextPoll(host: Host): HostCall {
  waitFor(host, () => host.httpCalls.length > 0, "a routing-table poll");
  assert.equal(host.httpCalls.length, 1, "exactly one poll in flight per process");
  return host.httpCalls[0]!;
}

export function answerPoll(host: Host, response: { status: number; headers?: Headers; body?: string }): HostCall {
  const call = nextPoll(host);
  call.respond(response);
  return call;
}

export function deliver(host: Host, doc: object | string): void {
  answerPoll(host, { status: 200, body: typeof doc === "string" ? doc : JSON.stringify(doc) });
}

export function header(h: Headers | null | undefined, name: string): string | undefined {
  if (!h) return undefined;
  const found = h.filter(([k]) => k === name);
  return found.length === 0 ? undefined : found.map(([, v]) => v).join(",");
}

export function request(host: Host, opts: { model?: string; body?: string | string[] | Uint8Array; headers?: Headers; worker?: number; path?: string; trailers?: Headers }) {
  const headers: Headers = [
    [":method", "POST"],
    [":path", opts.path ?? "/v1/chat/completions"],
    [":authority", "gw"],
    [":scheme", "http"],
  ];
  if (opts.body !== undefined && !(opts.headers ?? []).some(([k]) => k === "content-type")) headers.push(["content-type", "application/json"]);
  if (opts.model !== undefined) headers.push(["x-model", opts.model]);
  headers.push(...(opts.headers ?? []));
  return host.request({
    headers,
    ...(opts.body !== undefined ? { body: opts.body } : {}),
    ...(opts.worker !== undefined ? { worker: opts.worker } : {}),
    ...(opts.trailers !== undefined ? { trailers: opts.trailers } : {}),
    response: { status: 200, headers: [], body: "ok" },
  });
}

/** The instance the plugin picked (x-model-instance as forwarded upstream). */
export function picked(r: ReturnType<typeof request>): string | undefined {
  return header(r.upstreamHeaders, "x-model-instance");
}

export function metric(host: Host, name: string): number {
  return host.metrics.get(name)?.value ?? 0;
}

export { prng } from "../support/prng.js";

let stubBuild: Promise<string> | null = null;
/**
 * The plugin built with AssemblyScript's `stub` runtime (a bump allocator that never collects), once per
 * process: with it, any GC allocation grows linear memory, so "memory does not grow over N requests"
 * proves the path allocates nothing.
 */
export function stubPluginWasm(): Promise<string> {
  stubBuild ??= (async () => {
    const dir = join(tmpdir(), `plugin-stub-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    const out = join(dir, "plugin.stub.wasm");
    const { error, stderr } = await asc.main(["plugin/index.ts", "--outFile", out, "--runtime", "stub", "--exportStart", "_initialize",
      "--lib", "./plugin/lib", "--use", "abort=gateway_abort", "-O3"], {});
    if (error) throw new Error(`stub build failed: ${stderr.toString()}`);
    return out;
  })();
  return stubBuild;
}
