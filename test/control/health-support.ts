/** Helpers for the health tests: the compiled plugin bridged to a real control service, picks, events. */
import { fileURLToPath } from "node:url";
import { ProxyWasmHost } from "../../envoy/local/host/index.js";
import { bridgePlugin, type PluginBridge } from "../../envoy/local/bridge.js";
import { PLUGIN, type Api } from "./harness.js";

export const PLUGIN_WASM = fileURLToPath(new URL("../../build/plugin.wasm", import.meta.url));
export const CONTROL_CLUSTER = "gateway_control";

export type Host = Awaited<ReturnType<typeof ProxyWasmHost.start>>;

/** build/plugin.wasm in the test host, its control cluster bridged to `controlUrl`. */
export async function pluginGateway(controlUrl: string, config: Record<string, unknown> = {}): Promise<{ host: Host; bridge: PluginBridge }> {
  const host = await ProxyWasmHost.start({
    wasm: PLUGIN_WASM,
    workers: 1,
    configuration: JSON.stringify({ control_cluster: CONTROL_CLUSTER, control_token: PLUGIN, poll_interval_ms: 100, long_poll_seconds: 5, control_timeout_ms: 6000, ...config }),
    clusters: [CONTROL_CLUSTER],
    allowOnHeadersStopIteration: true,
    now: Date.now(),
  });
  return { host, bridge: bridgePlugin(host, { clusters: { [CONTROL_CLUSTER]: controlUrl } }) };
}

/**
 * One request for `model` through the plugin: the endpoints it chose (pick first, then fallbacks).
 * The plugin's telemetry counts a request against the instance Envoy used (`upstream.address`); by
 * default that is an address of no instance (TEST-NET), so probing picks adds no traffic statistics.
 */
export function route(host: Host, model: string, upstream: { status?: number; address?: string } = {}): string[] {
  const r = host.request({
    headers: [[":method", "POST"], [":path", "/v1/chat/completions"], [":authority", "gw"], [":scheme", "http"], ["x-model", model]],
    response: { status: upstream.status ?? 200, headers: [], body: "ok" },
    properties: { "upstream.address": upstream.address ?? "192.0.2.1:9", "response.flags": "-" },
  });
  const v = r.upstreamHeaders?.find(([k]) => k === "x-gateway-destination-endpoint")?.[1];
  return v === undefined ? [] : v.split(",");
}

/** Picks of n requests (first endpoint of each). */
export const picks = (host: Host, model: string, n: number): string[] => Array.from({ length: n }, () => route(host, model)[0] ?? "none");

export const addressOf = (url: string): string => new URL(url).host;

export async function events(api: Api, dep: string, inst: string): Promise<{ type: string; reason: string; state: string | null; evidence: any }[]> {
  const r = await api("GET", `/v1/deployments/${dep}/instances/${inst}/events`);
  if (r.status !== 200) throw new Error(`events: ${r.status} ${r.text}`);
  return r.body.events;
}

export async function instance(api: Api, dep: string, inst: string): Promise<any> {
  const r = await api("GET", `/v1/deployments/${dep}/instances/${inst}`);
  if (r.status !== 200) throw new Error(`instance: ${r.status} ${r.text}`);
  return r.body;
}

export const stateOf = async (api: Api, dep: string, inst: string): Promise<string> => (await instance(api, dep, inst)).state;

/** Parse Prometheus text: `name{labels} value` → [{name, labels, value}]. */
export function parseMetrics(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) throw new Error(`unparseable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}
