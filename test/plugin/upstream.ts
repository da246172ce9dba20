// Drives one routed request through the host with an upstream result: which host Envoy used
// (`upstream.address`), the response (or none), `response.flags` / `response.code_details`, and the
// time to the response headers on the virtual clock.
//
// The host takes stream properties when a stream is created, but the used host is only known after the
// plugin picked it (Envoy sets upstream info after routing). So the helper sets them after
// on_request_headers through HttpStream.setProperty (what proxy_set_property stores into), which the
// host reads before its own derived properties.
import { header, type Headers, type Host } from "./support.js";

/** Envoy's legacy response-flag bits (StreamInfo::ResponseFlag), as `response.flags` carries them. */
export const FLAG = {
  UH: 0x2n, UT: 0x4n, LR: 0x8n, UR: 0x10n, UF: 0x20n, UC: 0x40n, UO: 0x80n, DC: 0x4000n, URX: 0x8000n, UPE: 0x800000n,
} as const;

export interface Upstream {
  /** Host used: an address, a function of the endpoint list the plugin sent, or null for none. Default: the pick. */
  address?: string | null | ((endpoints: string[]) => string | null);
  /** Upstream (or Envoy local) response status; undefined = no response at all (response.code absent → 0). */
  status?: number;
  /** `response.flags`: a bigint bit vector (as Envoy sends it) or a string of short names. */
  flags?: bigint | string;
  /** `response.code_details` override (default: the host's "via_upstream" for a response). */
  details?: string;
  /** Raw property bytes set as they are (fuzzing), e.g. { "response.code": bytes }. */
  raw?: Record<string, Uint8Array>;
  /** Virtual ms between the request and the response headers. */
  latencyMs?: number;
  worker?: number;
  headers?: Headers;
}

const enc = new TextEncoder();

function int64(v: bigint): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(v);
  return new Uint8Array(b.buffer, b.byteOffset, 8);
}

type SettableStream = { setProperty(path: string, value: Uint8Array): void };

/** `up` may be a function of the pick (x-model-instance) and endpoint list: the result then depends on the pick. */
export function send(host: Host, model: string, upOrChoose: Upstream | ((pick: string | undefined, endpoints: string[]) => Upstream) = {}, worker = 0) {
  const first = typeof upOrChoose === "function" ? null : upOrChoose;
  const s = host.worker(first?.worker ?? worker).stream();
  s.requestHeaders([[":method", "POST"], [":path", "/v1/chat/completions"], [":authority", "gw"], [":scheme", "http"], ["x-model", model], ...(first?.headers ?? [])], true);
  const sent = s.result().upstreamHeaders;
  const endpoints = header(sent, "x-gateway-destination-endpoint")?.split(",") ?? [];
  const up = typeof upOrChoose === "function" ? upOrChoose(header(sent, "x-model-instance"), endpoints) : upOrChoose;
  const address = typeof up.address === "function" ? up.address(endpoints) : up.address === undefined ? (endpoints[0] ?? null) : up.address;
  const set = s as unknown as SettableStream;
  if (address !== null) set.setProperty("upstream.address", enc.encode(address));
  if (up.flags !== undefined) set.setProperty("response.flags", typeof up.flags === "bigint" ? int64(up.flags) : enc.encode(up.flags));
  if (up.details !== undefined) set.setProperty("response.code_details", enc.encode(up.details));
  for (const [k, v] of Object.entries(up.raw ?? {})) set.setProperty(k, v);
  if (up.latencyMs) host.advance(up.latencyMs);
  if (up.status !== undefined) s.respond({ status: up.status, body: "x" });
  const result = s.finish();
  return { result, endpoints, address, instance: header(sent, "x-model-instance") };
}
