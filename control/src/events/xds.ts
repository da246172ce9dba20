/**
 * What the Envoys connected to this replica do, as stream events (GET /v1/events), derived locally:
 * each replica reports the xDS nodes that stream from it or poll it (control/xds/nodes.ts), as
 * GET /v1/dataplanes does — nothing goes through Redis.
 *
 * - `xds.nack`: every NACK (an Envoy refused a response and keeps its previous configuration), with
 *   Envoy's error_detail message cut to 1,024 characters. At most `maxNacksPerSecond` per second: a
 *   client that reconnects and NACKs in a loop cannot flood every open stream (and the replay ring);
 *   the ones left out are logged (once per second), and `dataplanes` still tells.
 * - `dataplanes`: "re-read GET /v1/dataplanes" after a node connected, disconnected, ACKed or NACKed.
 *   Coalesced: the first change sends one at once, later ones within `minIntervalMs` (1 s) one more at
 *   the end of the interval — at most one per second, and never later than a second after a change.
 *   Per ACK would be far too chatty (every Envoy ACKs CDS and EDS of every version).
 */
import type { Logger } from "../log.js";
import type { NackEvent, XdsNodes } from "../../xds/nodes.js";
import { NACK_EVENT_LIMITS, type StreamEvent } from "./schemas.js";
import { TYPE_URL } from "../../xds/build.js";

export interface XdsEventsOptions {
  nodes: Pick<XdsNodes, "onNack" | "onChange">;
  /** hub.local */
  emit(e: StreamEvent): void;
  replica: string;
  /** Coalescing interval of `dataplanes` (default 1000 ms). */
  minIntervalMs?: number;
  /** Default 20. */
  maxNacksPerSecond?: number;
  log?: Pick<Logger, "warn">;
  now?: () => number;
}

const clip = (s: string, n: number): string => (s.length <= n ? s : s.slice(0, n));

/** The stream event of one NACK (bounded: node, cluster and message come from the Envoy). */
export function nackEvent(n: NackEvent, replica: string): StreamEvent {
  const cut = n.message.length > NACK_EVENT_LIMITS.message;
  return {
    type: "xds.nack",
    at: n.at,
    replica,
    node: clip(n.node, NACK_EVENT_LIMITS.node),
    cluster: clip(n.cluster, NACK_EVENT_LIMITS.cluster),
    transport: n.transport,
    type_url: clip(n.type_url, NACK_EVENT_LIMITS.typeUrl),
    resource: n.type_url === TYPE_URL.cluster ? "clusters" : n.type_url === TYPE_URL.clusterLoadAssignment ? "endpoints" : "other",
    version: n.version === null ? null : clip(n.version, NACK_EVENT_LIMITS.version),
    accepted_version: clip(n.accepted_version, NACK_EVENT_LIMITS.version),
    message: cut ? `${n.message.slice(0, NACK_EVENT_LIMITS.message - 1)}…` : n.message,
    message_truncated: cut,
    code: Number.isSafeInteger(n.code) ? n.code : 0,
  };
}

export function xdsEvents(o: XdsEventsOptions): { stop(): void } {
  const now = o.now ?? Date.now;
  const minIntervalMs = o.minIntervalMs ?? 1000;
  const maxNacks = o.maxNacksPerSecond ?? 20;
  let lastSent = -Infinity;
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  let windowStart = -Infinity;
  let inWindow = 0;
  let warned = false;
  let left = 0;

  const send = () => {
    timer = null;
    if (stopped) return;
    lastSent = now();
    o.emit({ type: "dataplanes", at: new Date(lastSent).toISOString(), replica: o.replica });
  };
  const changed = () => {
    if (stopped || timer) return;
    const wait = lastSent + minIntervalMs - now();
    if (wait <= 0) send();
    else {
      timer = setTimeout(send, wait);
      timer.unref();
    }
  };

  const offNack = o.nodes.onNack((n) => {
    if (stopped) return;
    const t = now();
    if (t - windowStart >= 1000) {
      windowStart = t;
      inWindow = 0;
      warned = false;
    }
    if (inWindow >= maxNacks) {
      left++;
      if (!warned) o.log?.warn("xds.nack events left out (rate bound): GET /v1/dataplanes has every NACK", { per_second: maxNacks, left_out_total: left, node: n.node.slice(0, 256) });
      warned = true;
      return;
    }
    inWindow++;
    o.emit(nackEvent(n, o.replica));
  });
  const offChange = o.nodes.onChange(() => changed());

  return {
    stop() {
      stopped = true;
      offNack();
      offChange();
      if (timer) clearTimeout(timer);
      timer = null;
    },
  };
}
