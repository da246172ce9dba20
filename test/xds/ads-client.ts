/**
 * A raw ADS stream for tests: writes DiscoveryRequests exactly as given (so a test can send a stale
 * nonce, a NACK, a made-up version) and queues every DiscoveryResponse. Requests are encoded and
 * responses decoded with @grpc/proto-loader over the protos vendored by @grpc/grpc-js-xds (the same
 * loader and options its XdsClient uses) — not with the server's own encoder. Resources are decoded
 * by @grpc/grpc-js-xds's own `decodeSingleResource` (independent), or to proto3 JSON with
 * `anyToJson` (ours) for whole-resource comparisons.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { MethodDefinition } from "@grpc/proto-loader";
import { ADS_METHOD } from "../../control/xds/ads.js";

const require = createRequire(import.meta.url);
const XDS_DIR = dirname(require.resolve("@grpc/grpc-js-xds/package.json"));
// The proto-loader @grpc/grpc-js-xds itself uses (it resolves its own copy first).
const protoLoader = createRequire(join(XDS_DIR, "package.json"))("@grpc/proto-loader") as typeof import("@grpc/proto-loader");
/**
 * @grpc/grpc-js-xds's resource decoder (proto-loader, keepCase, enums/longs as strings, defaults). Loaded
 * on first use: its modules read their GRPC_* environment switches when first loaded.
 */
export function decodeSingleResource(typeUrl: string, value: Buffer | Uint8Array): any { // eslint-disable-line @typescript-eslint/no-explicit-any
  const m = require(join(XDS_DIR, "build/src/resources.js")) as { decodeSingleResource(typeUrl: string, value: Buffer): unknown };
  return m.decodeSingleResource(typeUrl, Buffer.from(value));
}

/** A module of @grpc/grpc-js-xds's build (its XdsClient is not exported from the package's index). */
export function xdsModule<T>(path: string): T {
  return require(join(XDS_DIR, "build/src", path)) as T;
}

const definition = protoLoader.loadSync(["envoy/service/discovery/v3/ads.proto"], {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((d) => join(XDS_DIR, "deps", d)),
});
const methodDef = (definition[ADS_METHOD.split("/")[1]!] as Record<string, MethodDefinition<object, object>>).StreamAggregatedResources!;

export interface AdsResponse {
  version_info: string;
  resources: { type_url: string; value: Buffer }[];
  type_url: string;
  nonce: string;
  control_plane: { identifier: string } | null;
}

export interface AdsRequest {
  version_info?: string;
  node?: Record<string, unknown> | null;
  resource_names?: string[];
  type_url: string;
  response_nonce?: string;
  error_detail?: { code: number; message: string } | null;
}

export class RawAds {
  readonly client: grpc.Client;
  readonly call: grpc.ClientDuplexStream<AdsRequest, AdsResponse>;
  /** Every response received, in order. */
  readonly received: AdsResponse[] = [];
  private taken = 0;
  status: grpc.StatusObject | null = null;
  private wake: (() => void) | null = null;

  constructor(address: string, metadata?: Record<string, string>) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(metadata ?? {})) md.set(k, v);
    this.call = this.client.makeBidiStreamRequest(ADS_METHOD, methodDef.requestSerialize, methodDef.responseDeserialize as (b: Buffer) => AdsResponse, md);
    this.call.on("data", (r: AdsResponse) => {
      this.received.push(r);
      this.wake?.();
    });
    this.call.on("status", (s) => {
      this.status = s;
      this.wake?.();
    });
    this.call.on("error", () => undefined);
  }

  send(req: AdsRequest): void {
    this.call.write(req);
  }

  /** The next response not taken yet (waits for it). */
  async next(timeoutMs = 5000, what = "an ADS response"): Promise<AdsResponse> {
    const deadline = Date.now() + timeoutMs;
    while (this.received.length <= this.taken) {
      if (this.status) throw new Error(`stream ended (${grpc.status[this.status.code]}: ${this.status.details}) while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = null;
    }
    return this.received[this.taken++]!;
  }

  /** Responses received and not taken. */
  pending(): number {
    return this.received.length - this.taken;
  }

  async ended(timeoutMs = 5000): Promise<grpc.StatusObject> {
    const deadline = Date.now() + timeoutMs;
    while (!this.status) {
      if (Date.now() > deadline) throw new Error("the stream did not end");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 20);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return this.status;
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}
