/**
 * The local data plane's connections to instances (and to the passthrough): one undici Pool per origin,
 * keep-alive, HTTP/1.1, no pipelining, driven through undici's low-level `dispatch` (no promise, no
 * response stream per request).
 *
 * Why not node:http's Agent/ClientRequest: at saturation its per-request machinery (Agent.addRequest,
 * ClientRequest, the IncomingMessage stream, header serialisation) was the largest part of what the forwarder
 * cost over the plain proxy, and undici's dispatch measured 55–57 µs per proxied request against node:http's
 * 65–66 µs in the same plain proxy (issue 19, envoy/local/README "Cost per request").
 *
 * What the forwarder keeps doing itself, as Envoy's router does: the per-try timers (first byte, idle
 * between body chunks: undici's own are off, they run on a 1 s wheel), retries, and every error → flag
 * mapping. The connect timeout is here (a precise timer around undici's connector, not its 1 s wheel).
 */
import { PassThrough } from "node:stream";
import type { Socket } from "node:net";
import { Client, Pool, buildConnector, type Dispatcher } from "undici";

export interface Target {
  /** What upstream.address reports (ip:port as in the routing table, or the passthrough host:port). */
  address: string;
  protocol: "http:" | "https:";
  hostname: string;
  port: number;
  pathPrefix: string;
  /** Host header override (passthrough: host_rewrite_literal). */
  authority?: string;
}

/**
 * What the forwarder hears about one request: methods of one long-lived object (the exchange), told which
 * request it is about, so a request costs no closures. Each runs at most once per request, except `data`.
 */
export interface UpstreamEvents {
  /** The whole request is on the wire (the first-byte timer starts). */
  upstreamSent(up: UpstreamRequest): void;
  /** The final response head (1xx skipped); header names and values as received. */
  upstreamHead(up: UpstreamRequest, status: number, rawHeaders: string[]): void;
  /** A body chunk; return false to hold the rest until `resume()`. */
  upstreamData(up: UpstreamRequest, chunk: Buffer): boolean;
  upstreamEnd(up: UpstreamRequest): void;
  /** Before or after `head`. Errors from `abort(err)` come back here as the same object. */
  upstreamError(up: UpstreamRequest, err: Error & { code?: string }): void;
}

/** Past this many pools, idle ones are closed before another is opened. */
export const IDLE_SWEEP_AT = 256;

/** A connect that does not finish in time fails like node:net's ETIMEDOUT (Envoy: connect timeout, UF). */
export const CONNECT_TIMEOUT = "ETIMEDOUT";

export class Upstreams {
  private readonly pools = new Map<string, Pool>();
  /** Targets are long-lived (cached per address by the forwarder): their pool is found without building its origin. */
  private readonly byTarget = new WeakMap<Target, Pool>();

  private readonly connector: buildConnector.connector;

  /** `connector`: what opens TCP (and TLS) connections; undici's own unless a test stands in for it. */
  constructor(connectTimeoutMs: number, connector: buildConnector.connector = buildConnector({ timeout: 0 })) {
    // The connector's own timeout is off (it runs on undici's 1 s wheel): the timer is ours.
    this.connector = (opts, callback) => {
      let settled = false;
      let sock: Socket | null = null;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        sock?.destroy();
        callback(Object.assign(new Error("connect timeout"), { code: CONNECT_TIMEOUT }), null);
      }, connectTimeoutMs);
      sock = connector(opts, (err, s) => {
        if (settled) {
          s?.destroy();
          return;
        }
        settled = true;
        clearTimeout(timer);
        if (err) callback(err, null);
        else callback(null, s);
      }) as unknown as Socket | null; // undici's connector returns the socket it opens
    };
  }

  private static origin(t: Target): string {
    return `${t.protocol}//${t.hostname.includes(":") ? `[${t.hostname}]` : t.hostname}:${t.port}`;
  }

  private pool(t: Target): Pool {
    const known = this.byTarget.get(t);
    if (known !== undefined && !known.closed && !known.destroyed) return known;
    const origin = Upstreams.origin(t);
    let p = this.pools.get(origin);
    if (p === undefined) {
      if (this.pools.size >= IDLE_SWEEP_AT) this.sweep();
      p = new Pool(origin, {
        connections: 256,
        pipelining: 1,
        headersTimeout: 0,
        bodyTimeout: 0,
        // Keep idle connections as node:http's keep-alive Agent did (a server's Keep-Alive hint still wins).
        keepAliveTimeout: 60_000,
        keepAliveMaxTimeout: 600_000,
        connect: this.connector,
      });
      this.pools.set(origin, p);
    }
    this.byTarget.set(t, p);
    return p;
  }

  /**
   * Instances come and go (a new pod, a new address): pools with nothing open or in flight are closed once
   * there are many, so addresses seen over weeks do not pile up.
   */
  private sweep(): void {
    for (const [origin, p] of this.pools) {
      const st = p.stats;
      if (st.connected === 0 && st.pending === 0 && st.running === 0) {
        this.pools.delete(origin);
        void p.close().catch(() => undefined);
      }
    }
  }

  /** Pools open (one per origin in use; tests read it). */
  get poolCount(): number {
    return this.pools.size;
  }

  /** A connection of its own, closed after the one request (the retry after a kept-alive connection failed). */
  private fresh(t: Target): Client {
    return new Client(Upstreams.origin(t), { pipelining: 1, headersTimeout: 0, bodyTimeout: 0, connect: this.connector });
  }

  /**
   * A request, sent by its `start()`. `body`: the whole body when it is already known (sent with the head in
   * one write), or "stream" to write it with `write`/`end` as it arrives.
   */
  request(t: Target, method: string, path: string, headers: string[], body: Uint8Array[] | "stream", ev: UpstreamEvents, freshConnection = false): UpstreamRequest {
    return new UpstreamRequest(freshConnection ? this.fresh(t) : this.pool(t), t, method, path, headers, body, ev, freshConnection);
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((p) => p.destroy().catch(() => undefined)));
  }
}

/** One request to an instance; also its own undici handler (the legacy interface: onConnect … onError). */
export class UpstreamRequest {
  private abortFn: ((err?: Error) => void) | null = null;
  private resumeFn: (() => void) | null = null;
  private stream: PassThrough | null = null;
  private paused = false;
  /** Ended: completed, failed or aborted; nothing more is reported. */
  finished = false;
  /** The response completed. */
  complete = false;
  private early: Error | null = null;
  private readonly payload: PassThrough | Buffer | Uint8Array | null;
  /** The caller's bookkeeping for this attempt (the forwarder: which endpoint, its first-byte timer). */
  index = 0;
  timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly dispatcher: Dispatcher,
    readonly target: Target,
    private readonly method: string,
    private readonly path: string,
    private readonly headers: string[],
    body: Uint8Array[] | "stream",
    private readonly ev: UpstreamEvents,
    /** On a connection of its own (closed once the request has ended). */
    readonly fresh: boolean,
  ) {
    if (body === "stream") this.payload = this.stream = new PassThrough();
    else this.payload = body.length === 0 ? null : body.length === 1 ? body[0]! : Buffer.concat(body);
  }

  /**
   * Sends it. Events may come before this returns (undici writes at once on an idle connection, and refuses a
   * bad request synchronously): the caller must be ready for them, e.g. have stored this request first.
   */
  start(): void {
    this.dispatcher.dispatch({ method: this.method, path: this.path, headers: this.headers, body: this.payload, reset: this.fresh }, this as never);
  }

  // ---- undici's handler interface

  onConnect(abort: (err?: Error) => void): void {
    if (this.early) return abort(this.early);
    this.abortFn = abort;
  }

  onRequestSent(): void {
    if (!this.finished) this.ev.upstreamSent(this);
  }

  onHeaders(status: number, raw: Buffer[], resume: () => void): boolean {
    if (this.finished) return false;
    if (status < 200) return true; // 1xx: informational, the final head follows
    this.resumeFn = resume;
    const out = new Array<string>(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw[i]!.toString("latin1");
    this.ev.upstreamHead(this, status, out);
    return !this.paused;
  }

  onData(chunk: Buffer): boolean {
    if (this.finished) return false;
    if (!this.ev.upstreamData(this, chunk)) this.paused = true;
    return !this.paused;
  }

  onComplete(): void {
    this.release();
    if (this.finished) return;
    this.finished = this.complete = true;
    this.ev.upstreamEnd(this);
  }

  onError(err: Error): void {
    this.release();
    if (this.finished) return;
    this.finished = true;
    this.stream?.destroy();
    this.ev.upstreamError(this, err);
  }

  // ---- the caller's side

  private release(): void {
    if (this.fresh) void this.dispatcher.destroy().catch(() => undefined);
  }

  /** Streams a body chunk; false: wait for `onDrain` before writing more. */
  write(chunk: Uint8Array): boolean {
    if (this.stream === null || this.stream.destroyed) return true;
    return this.stream.write(chunk);
  }

  onDrain(f: () => void): void {
    this.stream?.once("drain", f);
  }

  end(): void {
    if (this.stream !== null && !this.stream.writableEnded) this.stream.end();
  }

  /** Hold the response body (the client reads slower than the instance writes). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.resumeFn?.();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Cuts the request (and its connection): `error(err)` follows unless it already ended. */
  abort(err?: Error): void {
    if (this.finished) return;
    const e = err ?? Object.assign(new Error("aborted"), { code: "ECANCELED" });
    if (this.abortFn) return this.abortFn(e);
    // Still queued in the pool: refused when it gets a connection, but nothing calls back before one frees
    // up, so it ends here.
    this.early = e;
    this.finished = true;
    this.stream?.destroy();
    this.ev.upstreamError(this, e);
  }
}
