// The root context (one per VM and plugin configuration: every worker, the main thread, a configuration
// update's new root beside the old): owns the configuration, its table, the poll lease and the poller.
// on_configure only reads: the configuration canary runs it too and is killed right after (no tick, no
// on_done), so it must take nothing a live VM would then wait for. Ticks: list this root for table
// nudges (first tick), sync from shared data, renew/take the lease, poll if holding it. Until the first
// table the tick is short, so a fresh Envoy routes within a few hundred ms whatever poll_interval_ms is.
import { RootContext, StreamContext } from "../abi/context";
import { BufferType } from "../abi/types";
import { bufLen, bufPtr, bufferRelease, getBufferBytes } from "../abi/buffers";
import { logError, logInfo, refreshLogLevel } from "../abi/log";
import { OnceLog } from "../control/once_log";
import { incrementMetric } from "../abi/metrics";
import { nowMs, nowNs, setTickPeriod } from "../abi/time";
import { getProperty } from "../abi/properties";
import { Observer } from "../telemetry/observer";
import { TelemetrySender } from "../telemetry/sender";
import { responseBodyLen, responseBodyPtr, responseStatus, takeResponseBody } from "../abi/http_call";
import { Config, configError, parseConfig } from "../config";
import { RoutingTable } from "../table/routing_table";
import { TableManager } from "../control/table_manager";
import { Poller } from "../control/poller";
import { holdLease, releaseLease } from "../control/lease";
import { takeWorkerSeq } from "../control/worker_seq";
import { listen, notifyListeners, unlisten } from "../control/notify";
import { drainQueue } from "../abi/queues";
import { GatewayMetrics } from "./metrics";
import { GatewayStream } from "./stream";

const MAX_POOLED_STREAMS: i32 = 4096;
/** Tick period until the first table is held (Envoy's first tick comes one period after it is set). */
const STARTUP_TICK_MS: i32 = 100;
/** A 304 this long after the call was sent was a long-poll that waited, not a refusal to wait. */
const LONG_POLL_REARM_MIN_MS: u64 = 1000;
const NODE_ID: string[] = ["node", "id"];

/** "<node.id>/w<worker seq>/<start nonce>": unique per VM (the nonce separates restarts and seq races). */
function telemetrySource(workerSeq: u32): string {
  let node = "envoy";
  const v = getProperty(NODE_ID);
  if (v !== null && v.byteLength > 0) {
    node = String.UTF8.decode(v);
    if (node.length > 200) node = node.substring(0, 200);
  }
  const nonce = <u32>((nowNs() / 1000) & 0xffffffff);
  return node + "/w" + workerSeq.toString() + "/" + nonce.toString(36);
}

export class GatewayRoot extends RootContext {
  config: Config | null = null;
  metrics: GatewayMetrics = new GatewayMetrics();
  manager: TableManager | null = null;
  poller: Poller | null = null;
  workerSeq: u32 = 0;
  leaseHolder: u64 = 0;
  holdsLease: bool = false;
  private metricsDefined: bool = false;
  private pollProblems: OnceLog = new OnceLog();
  private pool: GatewayStream[] = [];
  /** Upstream results: telemetry counters and passive ejection (per worker VM). */
  observer: Observer = new Observer();
  telemetry: TelemetrySender | null = null;
  /** Telemetry `source`: node id / worker sequence / start nonce, unique per VM. */
  source: string = "";
  /** This root's table-nudge queue (0 until its first tick lists it). */
  queueToken: u32 = 0;
  /** The tick period set last (ms): STARTUP_TICK_MS until a table is held, then poll_interval_ms. */
  private tickMs: i32 = 0;

  @inline table(): RoutingTable | null {
    const m = this.manager;
    return m === null ? null : m.table;
  }

  onConfigure(size: usize): bool {
    if (size == 0 || !getBufferBytes(BufferType.PluginConfiguration, 0, <u32>size)) {
      logError("invalid plugin configuration: (document): empty; expected a JSON object with at least {\"control_cluster\": string}");
      return false;
    }
    const c = parseConfig(bufPtr, bufLen);
    bufferRelease();
    if (c === null) {
      logError(configError);
      return false;
    }
    if (!this.metricsDefined) {
      this.metrics.define();
      this.metricsDefined = true;
      this.workerSeq = takeWorkerSeq(this.id);
      // Lease holder id: sequence + 1 in the low bits, start time (ns-ish) above, so two VMs that
      // raced for the same sequence number still differ in Envoy.
      this.leaseHolder = (<u64>this.workerSeq + 1) | ((nowMs() & 0xfffff) << 32);
      this.source = telemetrySource(this.workerSeq);
    }
    // A new configuration can change max_fallbacks/api_prefix: rebuild from shared data.
    const old = this.manager;
    if (old !== null) old.flushCounts();
    this.config = c;
    this.manager = new TableManager(c, this.metrics, this.workerSeq, this.observer.registry);
    this.observer.configure(c);
    const sender = new TelemetrySender(c, this.source, nowMs());
    const prevSender = this.telemetry;
    if (prevSender !== null) sender.continueFrom(prevSender);
    this.telemetry = sender;
    // Envoy's node id (bootstrap node.id; absent → not sent): the control service orders this Envoy's
    // table after its own xDS ACKs.
    this.poller = new Poller(c, getProperty(NODE_ID));
    if (old !== null) logInfo("plugin reconfigured; rebuilding the routing table from shared data");
    // Another VM (or this Envoy's previous configuration) may hold a table already: route by it now.
    this.manager!.syncFromShared();
    this.setTick();
    return true;
  }

  /** Short ticks until the first table, then poll_interval_ms. */
  private setTick(): void {
    const c = this.config;
    if (c === null) return;
    const ms = this.table() === null && c.pollIntervalMs > STARTUP_TICK_MS ? STARTUP_TICK_MS : c.pollIntervalMs;
    if (ms == this.tickMs) return; // setting it again would restart the phase (Envoy's setTimerPeriod)
    this.tickMs = ms;
    setTickPeriod(<u32>ms);
  }

  onTick(): void {
    refreshLogLevel();
    const c = this.config;
    const m = this.manager;
    const p = this.poller;
    if (c === null || m === null || p === null) return;
    // Ticking: this root is live (not the canary). List it for nudges when a new table lands.
    if (this.queueToken == 0) this.queueToken = listen(this.workerSeq);
    m.flushCounts();
    m.syncFromShared();
    this.setTick();
    const now = nowMs();
    const obs = this.observer;
    if (obs.ejected.length > 0) obs.restoreDue(now, null);
    const tel = this.telemetry;
    if (tel !== null) tel.maybeSend(obs.registry, m.version, now);
    const ttl = <u64>c.pollIntervalMs * 3 + 1000;
    this.holdsLease = holdLease(this.leaseHolder, now, ttl);
    if (!this.holdsLease) return;
    if (!p.inFlight) incrementMetric(this.metrics.controlPolls);
    const st = p.maybePoll(m.version, now);
    if (st != 0) {
      incrementMetric(this.metrics.controlFailures);
      this.pollProblem("http_call to cluster " + c.controlCluster + " refused (status " + st.toString() + ")");
    }
  }

  /** Another VM adopted a table: read it from shared data now rather than on the next tick. */
  onQueueReady(token: u32): void {
    if (token != this.queueToken || token == 0) return;
    drainQueue(token, 64);
    const m = this.manager;
    if (m === null) return;
    m.syncFromShared();
    this.afterAdopting();
  }

  /** A table may have landed: end passive ejections it re-admitted, leave the startup tick. */
  private afterAdopting(): void {
    const obs = this.observer;
    if (obs.ejected.length > 0) obs.restoreDue(nowMs(), null);
    this.setTick();
  }

  private pollProblem(problem: string): void {
    this.pollProblems.warn("routing table poll failed: " + problem + "; keeping the current table, retrying on the next tick");
  }

  onHttpCallResponse(token: u32, numHeaders: u32, bodySize: usize, numTrailers: u32): void {
    const tel = this.telemetry;
    if (tel !== null && tel.owns(token)) {
      tel.accept(numHeaders == 0 ? <u32>0 : responseStatus());
      return;
    }
    const p = this.poller;
    const m = this.manager;
    const c = this.config;
    if (p === null || m === null || c === null || !p.accept(token)) return;
    // A reset/timeout arrives with no headers (Envoy has no map to read then).
    const status = numHeaders == 0 ? <u32>0 : responseStatus();
    if (status == 304) {
      incrementMetric(this.metrics.controlNotModified);
      this.pollProblems.clear();
      p.succeeded();
      // A long-poll that really waited ran out with nothing new: wait again at once, so a change
      // landing now is not held back a tick. (A 304 that came fast waits for the tick: no busy loop.)
      if (nowMs() >= p.sentAt + LONG_POLL_REARM_MIN_MS) this.pollAgain();
      return;
    }
    if (status != 200) {
      incrementMetric(this.metrics.controlFailures);
      p.failed(nowMs());
      this.pollProblem(status == 0 ? "no response (reset or timeout)" : "status " + status.toString());
      return;
    }
    this.pollProblems.clear();
    p.succeeded();
    if (bodySize > <usize>c.maxTableBytes) {
      m.refuseFromControl("document of " + bodySize.toString() + " bytes exceeds max_table_bytes " + c.maxTableBytes.toString());
      return;
    }
    if (!takeResponseBody(bodySize)) {
      incrementMetric(this.metrics.controlFailures);
      this.pollProblem("response body unavailable");
      return;
    }
    const adopted = m.offerFromControl(responseBodyPtr, responseBodyLen);
    if (responseBodyPtr != 0) heap.free(responseBodyPtr);
    if (adopted) {
      // Every other VM of this Envoy reads it from shared data now (control/notify.ts).
      notifyListeners(this.workerSeq);
      this.afterAdopting();
    }
    // Re-arm the long-poll right away: changes that follow each other closely then reach us one
    // round trip apart instead of one tick apart.
    if (adopted) this.pollAgain();
  }

  /** Starts the next long-poll now (lease holder only, long-poll on), instead of on the next tick. */
  private pollAgain(): void {
    const c = this.config;
    const m = this.manager;
    const p = this.poller;
    if (c === null || m === null || p === null || !this.holdsLease || c.longPollSeconds == 0) return;
    incrementMetric(this.metrics.controlPolls);
    const st = p.maybePoll(m.version, nowMs());
    if (st != 0) {
      incrementMetric(this.metrics.controlFailures);
      this.pollProblem("http_call to cluster " + c.controlCluster + " refused (status " + st.toString() + ")");
    }
  }

  newStream(id: u32): StreamContext | null {
    const pool = this.pool;
    if (pool.length > 0) return pool.pop();
    return new GatewayStream(this);
  }

  releaseStream(ctx: StreamContext): void {
    if (!(ctx instanceof GatewayStream)) return;
    const s = changetype<GatewayStream>(ctx);
    s.reset();
    if (this.pool.length < MAX_POOLED_STREAMS) this.pool.push(s);
  }

  onDone(): bool {
    const m = this.manager;
    if (m !== null) m.flushCounts();
    if (this.queueToken != 0) {
      unlisten(this.workerSeq);
      this.queueToken = 0;
    }
    if (this.holdsLease) {
      releaseLease(this.leaseHolder);
      this.holdsLease = false;
    }
    return true;
  }
}
