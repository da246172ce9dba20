/**
 * Requests on connections the test controls (client.ts's `send` uses fetch's shared pool, which
 * decides itself how many connections exist and which request uses which):
 *   - `ClientConnection`: one keep-alive HTTP/1.1 connection (an agent of one socket), requests one
 *     at a time. Envoy hands each accepted connection to one worker for its lifetime, so the requests
 *     of one ClientConnection meet one worker's plugin VM — unless Envoy closes the connection (e.g.
 *     `connection: close` while draining an old filter chain), when the next request opens a new one
 *     (`sockets` counts them).
 *   - `sendFresh`: a new connection for one request (`connection: close`): lands on whichever worker
 *     the kernel picks, on the listener's current filter chains.
 * Each request carries a unique `x-e2e-seq` (as client.ts does), so `UpstreamIndex` finds the upstream
 * request(s) it caused. `UpstreamIndex` indexes the mocks' and the SaaS stand-in's records by seq as
 * they grow (trace() in client.ts rescans everything per call: fine for tens of requests, not for the
 * thousands a traffic run sends).
 */
import { Agent, request as httpRequest } from "node:http";
import type { Socket } from "node:net";
import { SEQ_HEADER, requestParts, type Hit, type Sent, type SendOptions } from "./client.js";
import { CHAT, type Stack } from "./stack.js";

let counter = 0;

/** `onAnswer` gets the socket that carried the answer (so refused connection attempts are never counted). */
function requestOn(listener: string, agent: Agent | false, o: SendOptions, timeoutMs: number, onAnswer?: (s: Socket) => void): Promise<Sent> {
  const seq = `${process.pid}-k${++counter}`;
  const { method, headers, body } = requestParts(o, seq);
  if (body !== undefined) headers["content-length"] = String(Buffer.byteLength(body));
  const u = new URL(listener);
  return new Promise<Sent>((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: Number(u.port), method, path: o.path ?? CHAT, headers, agent, timeout: timeoutMs }, (res) => {
      onAnswer?.(res.socket);
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          if (v === undefined) continue;
          for (const x of Array.isArray(v) ? v : [v]) h.append(k, x);
        }
        let content: string | undefined;
        try {
          const j = JSON.parse(text) as { choices?: { message?: { content?: unknown } }[] };
          const c = j.choices?.[0]?.message?.content;
          content = typeof c === "string" ? c : undefined;
        } catch {
          content = undefined;
        }
        resolve({ seq, status: res.statusCode ?? 0, headers: h, text, content });
      });
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms (seq ${seq})`)));
    req.on("error", (e) => reject(Object.assign(e, { seq })));
    req.end(body);
  });
}

export class ClientConnection {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });
  private readonly ordinal = new WeakMap<Socket, number>();
  /** TCP connections of this client that carried an answer so far (1 unless Envoy closed one). */
  sockets = 0;

  constructor(
    readonly listener: string,
    readonly timeoutMs = 10_000,
  ) {}

  /** Sends `o`; `socket` is the ordinal (1, 2, …) of this client's TCP connection that carried it. */
  async send(o: SendOptions): Promise<Sent & { socket: number }> {
    let socket = 0;
    const sent = await requestOn(this.listener, this.agent, o, this.timeoutMs, (s) => {
      let n = this.ordinal.get(s);
      if (n === undefined) this.ordinal.set(s, (n = ++this.sockets));
      socket = n;
    });
    return { ...sent, socket };
  }

  close(): void {
    this.agent.destroy();
  }
}

/** One request on a new connection of its own, closed after the answer. */
export function sendFresh(listener: string, o: SendOptions, timeoutMs = 10_000): Promise<Sent> {
  return requestOn(listener, false, { ...o, headers: { connection: "close", ...o.headers } }, timeoutMs);
}

const seqOf = (h: Record<string, string | string[] | undefined>): string | undefined => {
  const v = h[SEQ_HEADER];
  return Array.isArray(v) ? v.join(",") : v;
};

/** Upstream records by seq, indexed incrementally (the records only grow). Same hits as client.ts trace(). */
export class UpstreamIndex {
  private readonly bySeq = new Map<string, Hit[]>();
  private readonly cursor = new Map<string, number>();

  constructor(private readonly stack: Stack) {}

  private sync(): void {
    const take = (where: string, list: readonly Hit["req"][]) => {
      const from = this.cursor.get(where) ?? 0;
      for (let i = from; i < list.length; i++) {
        const req = list[i]!;
        const seq = seqOf(req.headers);
        if (seq === undefined) continue;
        let hits = this.bySeq.get(seq);
        if (!hits) this.bySeq.set(seq, (hits = []));
        hits.push({ where, req });
      }
      this.cursor.set(where, list.length);
    };
    for (const [key, m] of this.stack.mocks) take(key, m.requests);
    take("saas", this.stack.saas.requests);
  }

  hits(seq: string): Hit[] {
    this.sync();
    return this.bySeq.get(seq) ?? [];
  }
}
