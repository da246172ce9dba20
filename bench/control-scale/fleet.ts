// Mock instance fleet, run as its own process (`fleet-main.ts`) so its CPU is not the control's.
// Instance k listens on 127.77.<j / 250>.<j % 250 + 1>:<basePort + k % portsPerIp> (j = k / portsPerIp):
// loopback only, clear of 127.0.0.1 and of the ephemeral port range. Each listener is a tiny HTTP/1.1
// server on a raw socket (answers and closes, as the prober connects once per probe):
//   GET  /v1/models            {"object":"list","data":[{"id":"<model of k>","owned_by":"vllm",…}]}
//   POST /v1/chat/completions  a 1-token chat completion (the connectivity test)
//   any other GET (/health)    {"status":"ok"}
// Every request is stamped per instance: while a window is open, the time since the instance's previous
// request is recorded (the probe interval as the instance sees it) and requests are counted per second.
// The previous request is forgotten on `resetLast` (when the measured control starts), so an interval is
// always between two probes of the measured control.

import net from "node:net";

export interface FleetOptions {
  count: number;
  /** Instances per deployment: instance k serves model `<modelPrefix><k / perDeployment>`. */
  perDeployment: number;
  modelPrefix: string;
  basePort: number;
  portsPerIp: number;
  /** Global index of this process's first instance (several fleet processes split a large fleet; default 0). */
  from?: number;
}

/** Per instance of this process, around a mark (e.g. a replica killed): ms relative to the mark, null = none. */
export interface MarkReport {
  /** The last request before the mark (≤ 0). */
  before: (number | null)[];
  /** The first request after the mark (≥ 0). */
  after: (number | null)[];
}

export function instanceAddress(k: number, o: Pick<FleetOptions, "basePort" | "portsPerIp">): { ip: string; port: number } {
  const j = Math.floor(k / o.portsPerIp);
  return { ip: `127.77.${Math.floor(j / 250)}.${(j % 250) + 1}`, port: o.basePort + (k % o.portsPerIp) };
}

export interface WindowReport {
  /** Instances observed (the first `instances` of the fleet). */
  instances: number;
  windowMs: number;
  requests: number;
  /** Requests per whole second of the window. */
  perSecond: number[];
  /** Time between consecutive requests to the same instance, ms, every interval ending in the window. */
  intervalsMs: number[];
  /**
   * Per instance: the longest time without a request across the window, ms (intervals ending in it,
   * and the time from its last request to the window's end); the window length when it got none.
   */
  maxGapMs: number[];
  /** Requests per instance in the window. */
  probesPerInstance?: number[];
  /** Instances that got no request in the window. */
  silent: number;
}

const HEALTH = '{"status":"ok"}';

function response(status: string, body: string): Buffer {
  return Buffer.from(`HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`, "latin1");
}

export class Fleet {
  private readonly servers: net.Server[] = [];
  private readonly last: Float64Array;
  private readonly health = response("200 OK", HEALTH);
  private readonly notFound = response("404 Not Found", '{"error":{"message":"not found"}}');
  private win: { start: number; instances: number; perSecond: number[]; intervals: number[]; maxGap: Float64Array; count: Uint32Array; requests: number } | null = null;
  /** Requests answered since start (any instance, any path). */
  total = 0;
  private markAt: number | null = null;
  private lastAtMark: Float64Array | null = null;
  private firstAfterMark: Float64Array | null = null;

  constructor(private readonly o: FleetOptions) {
    this.last = new Float64Array(o.count);
  }

  private modelOf(k: number): string {
    return `${this.o.modelPrefix}${Math.floor(((this.o.from ?? 0) + k) / this.o.perDeployment)}`;
  }

  private answer(k: number, method: string, path: string): Buffer {
    if (method === "GET" && path === "/v1/models") {
      return response("200 OK", JSON.stringify({ object: "list", data: [{ id: this.modelOf(k), object: "model", created: 0, owned_by: "vllm", max_model_len: 4096 }] }));
    }
    if (method === "POST" && path === "/v1/chat/completions") {
      return response("200 OK", JSON.stringify({
        id: "cmpl-scale", object: "chat.completion", created: 0, model: this.modelOf(k),
        choices: [{ index: 0, message: { role: "assistant", content: "." }, finish_reason: "length" }],
        usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
      }));
    }
    return method === "GET" ? this.health : this.notFound;
  }

  private stamp(k: number): void {
    const now = performance.now();
    this.total++;
    if (this.firstAfterMark && Number.isNaN(this.firstAfterMark[k]!)) this.firstAfterMark[k] = now - this.markAt!;
    const w = this.win;
    const prev = this.last[k]!;
    this.last[k] = now;
    if (!w || k >= w.instances) return;
    w.requests++;
    w.count[k]!++;
    const sec = Math.floor((now - w.start) / 1000);
    w.perSecond[sec] = (w.perSecond[sec] ?? 0) + 1;
    if (prev > 0) {
      const gap = now - prev;
      w.intervals.push(Math.round(gap * 10) / 10);
      if (gap > w.maxGap[k]!) w.maxGap[k] = gap;
    }
  }

  private onConnection(k: number, sock: net.Socket): void {
    let buf: Buffer = Buffer.alloc(0);
    sock.setNoDelay(true);
    sock.on("error", () => undefined);
    sock.on("data", (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) {
        if (buf.length > 64 * 1024) sock.destroy();
        return;
      }
      const head = buf.subarray(0, end).toString("latin1");
      const cl = /^content-length:\s*(\d+)/im.exec(head);
      if (buf.length - end - 4 < (cl ? Number(cl[1]) : 0)) return; // read the whole body before answering
      const [method = "", path = ""] = head.slice(0, head.indexOf("\r\n") >>> 0).split(" ");
      sock.removeAllListeners("data");
      this.stamp(k);
      sock.end(this.answer(k, method, path));
    });
  }

  async listen(): Promise<void> {
    const batch = 500;
    for (let from = 0; from < this.o.count; from += batch) {
      await Promise.all(
        Array.from({ length: Math.min(batch, this.o.count - from) }, (_, i) => {
          const k = from + i;
          const { ip, port } = instanceAddress((this.o.from ?? 0) + k, this.o);
          const srv = net.createServer((s) => this.onConnection(k, s));
          this.servers.push(srv);
          return new Promise<void>((resolve, reject) => {
            srv.once("error", (e) => reject(new Error(`instance ${k} cannot listen on ${ip}:${port}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
            srv.listen({ host: ip, port, backlog: 511 }, () => resolve());
          });
        }),
      );
    }
  }

  /** Marks now: from here on each instance's first request is recorded (markReport). */
  mark(): void {
    this.markAt = performance.now();
    this.lastAtMark = Float64Array.from(this.last);
    this.firstAfterMark = new Float64Array(this.o.count).fill(NaN);
  }

  markReport(): MarkReport {
    const at = this.markAt ?? 0;
    const before = Array.from(this.lastAtMark ?? [], (t) => (t > 0 ? Math.round(t - at) : null));
    const after = Array.from(this.firstAfterMark ?? [], (t) => (Number.isNaN(t) ? null : Math.round(t)));
    return { before, after };
  }

  /** Forget every instance's last request (the connectivity tests of the setup are not probes). */
  resetLast(): void {
    this.last.fill(0);
  }

  openWindow(instances: number): void {
    this.win = { start: performance.now(), instances: Math.min(instances, this.o.count), perSecond: [], intervals: [], maxGap: new Float64Array(Math.min(instances, this.o.count)), count: new Uint32Array(Math.min(instances, this.o.count)), requests: 0 };
  }

  closeWindow(): WindowReport {
    const w = this.win;
    if (!w) throw new Error("no window open");
    this.win = null;
    const end = performance.now();
    const windowMs = end - w.start;
    let silent = 0;
    const maxGapMs: number[] = [];
    for (let k = 0; k < w.instances; k++) {
      const last = this.last[k]!;
      let gap = w.maxGap[k]!;
      if (last < w.start) {
        silent++;
        gap = last > 0 ? end - last : windowMs;
      } else gap = Math.max(gap, end - last);
      maxGapMs.push(Math.round(gap));
    }
    const secs = Math.floor(windowMs / 1000);
    const perSecond = Array.from({ length: secs }, (_, i) => w.perSecond[i] ?? 0);
    return { instances: w.instances, windowMs, requests: w.requests, perSecond, intervalsMs: w.intervals, maxGapMs, silent, probesPerInstance: Array.from(w.count) };
  }

  async close(): Promise<void> {
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}
