/**
 * One replica's fan-out of stream events to its `GET /v1/events` clients.
 *
 * - Source: the `changes` channel on Redis (every replica publishes what its writes changed, every
 *   replica's hub receives it: a client sees changes made through any replica), plus what each replica
 *   derives itself: the routing-table version (from `table:changed`), a `stats` tick per telemetry
 *   bucket (the window statistics moved; never replayed), and what the Envoys connected to this replica
 *   did (`xds.nack`; `dataplanes`, coalesced and never replayed: events/xds.ts).
 * - Ids: `<epoch>-<seq>`, epoch = this hub's start. The last `replay` events are kept: a client that
 *   reconnects to the same replica with `Last-Event-ID` gets what it missed; anyone else gets `resync`
 *   (re-read everything). A new stream starts with its position (`id:`) and the `retry:` delay.
 * - Bounded: at most `maxStreams` streams (the route answers 503 beyond); a stream whose unsent bytes
 *   exceed `maxBufferBytes` (a client not reading) is dropped — memory never grows with a slow client;
 *   it reconnects and replays or resyncs. A comment every `heartbeatMs` keeps proxies from closing idle
 *   streams and lets a dead peer be noticed.
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "../log.js";
import { ChangeMessage, type StreamEvent } from "./schemas.js";

/** What a stream writes to: the HTTP response in production. */
export interface StreamSink {
  write(chunk: string): boolean;
  readonly writableLength: number;
  destroy(): void;
  end(): void;
}

export interface StreamHandle {
  close(): void;
}

export interface EventHub {
  /** Publish events on Redis; every replica's hub (this one included) delivers them. */
  publish(events: StreamEvent[]): void;
  /** A message from the Redis channel. */
  receive(message: string): void;
  /** An event this replica derives itself (every replica does the same; not published). */
  local(e: StreamEvent): void;
  /** Start a stream; null when `maxStreams` are open. */
  attach(sink: StreamSink, lastEventId: string | undefined): StreamHandle | null;
  readonly streams: number;
  /** Streams dropped for not reading (since start). */
  readonly dropped: number;
  stop(): void;
}

export interface HubOptions {
  /** Sends a message on the Redis channel. */
  send(message: string): Promise<unknown>;
  log: Logger;
  maxStreams: number;
  maxBufferBytes: number;
  heartbeatMs: number;
  /** Interval of the `stats` tick (the telemetry bucket width); 0 = none. */
  statsMs: number;
  replay?: number;
  /** Suggested reconnect delay sent to clients (`retry:`). */
  retryMs?: number;
}

export function createEventHub(opts: HubOptions): EventHub {
  const { log } = opts;
  const replay = opts.replay ?? 1_000;
  const epoch = `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
  const sinks = new Set<StreamSink>();
  const ring: { seq: number; frame: string }[] = [];
  let seq = 0;
  let dropped = 0;
  let badMessages = 0;
  let stopped = false;

  const idOf = (n: number) => `${epoch}-${n}`;

  const drop = (s: StreamSink) => {
    if (!sinks.delete(s)) return;
    dropped++;
    log.warn("event stream dropped: client not reading", { streams: sinks.size });
    s.destroy();
  };
  const write = (s: StreamSink, frame: string) => {
    if (s.writableLength > opts.maxBufferBytes) return drop(s);
    s.write(frame);
    if (s.writableLength > opts.maxBufferBytes) drop(s);
  };
  const broadcast = (frame: string) => {
    for (const s of [...sinks]) write(s, frame);
  };

  const deliver = (e: StreamEvent) => {
    if (e.type === "stats" || e.type === "resync" || e.type === "dataplanes") {
      // No id: never replayed (re-read hints that carry no change; they would only push real changes out of the ring).
      broadcast(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      return;
    }
    const n = ++seq;
    const frame = `id: ${idOf(n)}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
    ring.push({ seq: n, frame });
    if (ring.length > replay) ring.splice(0, ring.length - replay);
    broadcast(frame);
  };

  const heartbeat = opts.heartbeatMs > 0 ? setInterval(() => broadcast(`: keep-alive\n\n`), opts.heartbeatMs) : null;
  heartbeat?.unref();
  const stats =
    opts.statsMs > 0
      ? setInterval(() => {
          if (sinks.size > 0) deliver({ type: "stats", at: new Date().toISOString(), bucket_ms: opts.statsMs });
        }, opts.statsMs)
      : null;
  stats?.unref();

  return {
    publish(events) {
      if (stopped || events.length === 0) return;
      opts.send(JSON.stringify(events)).catch((e: unknown) => log.debug("change not published (Redis unavailable?)", { err_message: e instanceof Error ? e.message : String(e) }));
    },
    receive(message) {
      if (stopped) return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(message);
      } catch {
        parsed = undefined;
      }
      const r = ChangeMessage.safeParse(parsed);
      if (!r.success) {
        // Another version of the service, or a bug: log the first few, never fail the subscriber.
        if (badMessages++ < 5) log.warn("unreadable change message ignored", { bytes: message.length });
        return;
      }
      for (const e of r.data) deliver(e);
    },
    local(e) {
      if (!stopped) deliver(e);
    },
    attach(sink, lastEventId) {
      if (stopped || sinks.size >= opts.maxStreams) return null;
      sinks.add(sink);
      const retry = `retry: ${opts.retryMs ?? 2_000}\n`;
      const resync = (reason: "unknown_last_event_id" | "replay_gap") =>
        `${retry}id: ${idOf(seq)}\n\nevent: resync\ndata: ${JSON.stringify({ type: "resync", at: new Date().toISOString(), reason })}\n\n`;
      let head = `${retry}id: ${idOf(seq)}\n\n`;
      if (lastEventId !== undefined && lastEventId.trim() !== "") {
        const m = /^([a-z0-9]+)-(\d+)$/.exec(lastEventId.trim());
        const after = m && m[1] === epoch ? Number(m[2]) : null;
        const oldest = ring[0]?.seq ?? seq + 1;
        if (after === null || after > seq) head = resync("unknown_last_event_id");
        else if (after < oldest - 1) head = resync("replay_gap");
        else {
          const missed = ring.filter((x) => x.seq > after).map((x) => x.frame).join("");
          // A replay larger than half the buffer bound would only get the stream dropped: resync instead.
          head = Buffer.byteLength(missed) > opts.maxBufferBytes / 2 ? resync("replay_gap") : `${retry}\n${missed}`;
        }
      }
      write(sink, head);
      return {
        close() {
          sinks.delete(sink);
        },
      };
    },
    get streams() {
      return sinks.size;
    },
    get dropped() {
      return dropped;
    },
    stop() {
      stopped = true;
      if (heartbeat) clearInterval(heartbeat);
      if (stats) clearInterval(stats);
      for (const s of sinks) s.end();
      sinks.clear();
    },
  };
}
