// Telemetry batches (contract 3, control/contracts/telemetry.ts): every telemetry_interval_ms (checked
// on the root tick) a worker with counts POSTs them to telemetry_path on the control cluster. At most
// one batch in flight; at most MAX_INSTANCES_PER_BATCH instances per batch (the rest goes in the next,
// on the next tick). Counts leave the counters when the batch is sent: a refused, failed or non-2xx
// batch is dropped (counted in gateway.telemetry.dropped_*), never retried.
import { Config } from "../config";
import { ByteWriter, utf8 } from "../abi/bytes";
import { callToken, httpCall } from "../abi/http_call";
import { defineMetric, incrementMetric, NO_METRIC } from "../abi/metrics";
import { MetricType, Status } from "../abi/types";
import { BUCKET_COUNT, MAX_INSTANCES_PER_BATCH, TELEMETRY_SCHEMA } from "./buckets";
import { StatsRegistry } from "./stats";

const METHOD = utf8(":method");
const POST = utf8("POST");
const PATH = utf8(":path");
const AUTHORITY = utf8(":authority");
const AUTHORIZATION = utf8("authorization");
const CONTENT_TYPE = utf8("content-type");
const JSON_TYPE = utf8("application/json");

/** Telemetry is small and must not pile up: its call timeout is capped below control_timeout_ms. */
const MAX_TELEMETRY_TIMEOUT_MS: i32 = 5000;
/** Grace beyond the call timeout before a lost answer stops blocking new batches. */
const LOST_CALL_GRACE_MS: u64 = 5000;

export class TelemetrySender {
  inFlight: bool = false;
  token: u32 = 0;
  sentAt: u64 = 0;
  /** Requests counted in the batch in flight (for the dropped_requests metric). */
  inFlightRequests: u64 = 0;
  seq: u64 = 0;
  windowStart: u64 = 0;
  /** The last batch was cut at the size bound: send the rest on the next tick. */
  remainder: bool = false;
  source: string = "";

  private config: Config;
  private path: ArrayBuffer;
  private authority: ArrayBuffer;
  private bearer: ArrayBuffer | null = null;
  private timeoutMs: i32;

  batchesMetric: u32 = NO_METRIC;
  droppedBatchesMetric: u32 = NO_METRIC;
  droppedRequestsMetric: u32 = NO_METRIC;

  constructor(config: Config, source: string, nowMs: u64) {
    this.config = config;
    this.source = source;
    this.windowStart = nowMs;
    this.path = utf8(config.telemetryPath);
    this.authority = utf8(config.controlAuthority);
    const tok = config.controlToken;
    if (tok !== null) this.bearer = new ByteWriter(16 + tok.length).str("Bearer ").str(tok).toBuffer();
    this.timeoutMs = config.controlTimeoutMs < MAX_TELEMETRY_TIMEOUT_MS ? config.controlTimeoutMs : MAX_TELEMETRY_TIMEOUT_MS;
    this.batchesMetric = defineMetric(MetricType.Counter, "gateway.telemetry.batches");
    this.droppedBatchesMetric = defineMetric(MetricType.Counter, "gateway.telemetry.dropped_batches");
    this.droppedRequestsMetric = defineMetric(MetricType.Counter, "gateway.telemetry.dropped_requests");
  }

  /** Carries sequence and window over from the sender of the previous configuration. */
  continueFrom(prev: TelemetrySender): void {
    this.seq = prev.seq;
    this.inFlight = prev.inFlight;
    this.token = prev.token;
    this.sentAt = prev.sentAt;
    this.inFlightRequests = prev.inFlightRequests;
    this.windowStart = prev.windowStart;
    this.remainder = prev.remainder;
  }

  private drop(requests: u64): void {
    incrementMetric(this.droppedBatchesMetric);
    if (requests > 0) incrementMetric(this.droppedRequestsMetric, <i64>requests);
  }

  /** On the tick: sends a batch when the interval is over (or a remainder waits) and nothing is in flight. */
  maybeSend(registry: StatsRegistry, tableVersion: u64, nowMs: u64): void {
    const interval = this.config.telemetryIntervalMs;
    if (interval <= 0) return;
    if (this.inFlight) {
      if (nowMs < this.sentAt + <u64>this.timeoutMs + LOST_CALL_GRACE_MS) return;
      this.inFlight = false; // the host never answered: count the batch lost
      this.drop(this.inFlightRequests);
    }
    if (!this.remainder && nowMs < this.windowStart + <u64>interval) return;
    this.remainder = false;
    const dirty = registry.dirty;
    // Skip slots without counts (defensive: a slot is in `dirty` exactly while it has counts); take at
    // most MAX_INSTANCES_PER_BATCH.
    const take = new Array<i32>();
    const mark = this.seq + 1;
    let used = 0;
    while (used < dirty.length && take.length < MAX_INSTANCES_PER_BATCH) {
      const slot = unchecked(dirty[used]);
      used++;
      const s = registry.statsAt(slot);
      if (s !== null && registry.requests(slot) > 0) { take.push(slot); s.batchMark = mark; }
    }
    if (used > 0) registry.dirty = dirty.slice(used);
    // In-flight counts (contract 3 `in_flight`): also instances without counts whose count is > 0 (so a
    // long stream keeps its report fresh) or changed since it was last reported (so 0 is reported once).
    const high = registry.slotCount;
    for (let slot = 0; slot < high && take.length < MAX_INSTANCES_PER_BATCH; slot++) {
      const s = registry.statsAt(slot);
      if (s === null || s.batchMark == mark) continue;
      const f = registry.inFlight(slot);
      if (f > 0 || f != s.reportedInFlight) { take.push(slot); s.batchMark = mark; }
    }
    const start = this.windowStart;
    // A cut batch: the rest follows on the next tick, over the same window start.
    if (registry.dirty.length > 0) this.remainder = true;
    else this.windowStart = nowMs;
    if (take.length == 0) return; // idle: no batch
    this.seq++;
    const w = new ByteWriter(256 + take.length * 256);
    w.str('{"schema":').uint(<u64>TELEMETRY_SCHEMA)
      .str(',"source":').jsonString(this.source)
      .str(',"seq":').uint(this.seq)
      .str(',"table_version":').uint(tableVersion)
      .str(',"start_ms":').uint(start)
      .str(',"end_ms":').uint(nowMs)
      .str(',"instances":[');
    let requests: u64 = 0;
    for (let i = 0; i < take.length; i++) {
      const slot = unchecked(take[i]);
      const s = registry.statsAt(slot);
      if (s === null) continue; // checked above
      if (i > 0) w.byte(0x2c);
      const n = registry.requests(slot);
      w.str('{"deployment":').jsonString(s.deploymentId)
        .str(',"instance":').jsonString(s.instanceId)
        .str(',"address":').jsonString(s.address)
        .str(',"requests":').uint(<u64>n)
        .str(',"upstream_5xx":').uint(<u64>registry.upstream5xx(slot))
        .str(',"connect_failures":').uint(<u64>registry.connectFailures(slot))
        .str(',"in_flight":').uint(<u64>registry.inFlight(slot))
        .str(',"latency_ms_buckets":[');
      for (let b = 0; b < BUCKET_COUNT; b++) {
        if (b > 0) w.byte(0x2c);
        w.uint(<u64>registry.bucket(slot, b));
      }
      const us = registry.latencySumUs(slot);
      w.str('],"latency_ms_sum":').uint(us / 1000);
      const frac = us % 1000;
      if (frac != 0) {
        w.byte(0x2e);
        w.byte(<u8>(0x30 + frac / 100)).byte(<u8>(0x30 + (frac / 10) % 10)).byte(<u8>(0x30 + frac % 10));
      }
      w.byte(0x7d);
      requests += <u64>n;
      s.reportedInFlight = registry.inFlight(slot);
      registry.clearCounts(slot);
    }
    w.str("]}");
    const pairs: ArrayBuffer[] = [METHOD, POST, PATH, this.path, AUTHORITY, this.authority, CONTENT_TYPE, JSON_TYPE];
    const bearer = this.bearer;
    if (bearer !== null) { pairs.push(AUTHORIZATION); pairs.push(bearer); }
    const st = httpCall(this.config.controlClusterBytes, pairs, w.toBuffer(), <u32>this.timeoutMs);
    if (st != Status.Ok) {
      this.drop(requests);
      return;
    }
    this.inFlight = true;
    this.token = callToken;
    this.sentAt = nowMs;
    this.inFlightRequests = requests;
  }

  @inline owns(token: u32): bool {
    return this.inFlight && token == this.token;
  }

  /** Judges the answer to our batch: 2xx = delivered, anything else (reset, timeout, non-2xx) = dropped. */
  accept(status: u32): void {
    this.inFlight = false;
    if (status >= 200 && status <= 299) incrementMetric(this.batchesMetric);
    else this.drop(this.inFlightRequests);
    this.inFlightRequests = 0;
  }
}
