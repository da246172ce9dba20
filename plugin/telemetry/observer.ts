// Observes the upstream result of every request this worker routed (stream on_log): which instance
// Envoy actually used (`upstream.address`, after retries), how it went (response.code / flags /
// code_details), and feeds the telemetry counters and passive ejection. See plugin/README.md
// "Upstream results" for exactly what counts as a failure.
import { Config } from "../config";
import { bytesEqual, utf8 } from "../abi/bytes";
import { propertyGet, propertyInt, propertyRelease, propLen, propPtr } from "../abi/properties";
import { defineMetric, incrementMetric, NO_METRIC } from "../abi/metrics";
import { MetricType } from "../abi/types";
import { logInfo, logEnabled } from "../abi/log";
import { nowMs as currentMs } from "../abi/time";
import { LogLevel } from "../abi/types";
import { Deployment, RoutingTable, rebuildDeployment } from "../table/routing_table";
import { hotRecord, HotRec } from "../table/hot_block";
import { InstanceStats, Rec, StatsRegistry } from "./stats";

const UPSTREAM_ADDRESS = utf8("upstream\0address");
const RESPONSE_CODE = utf8("response\0code");
const RESPONSE_FLAGS = utf8("response\0flags");
const RESPONSE_CODE_DETAILS = utf8("response\0code_details");
const VIA_UPSTREAM = utf8("via_upstream");

/** Envoy's response flags (the legacy bit layout of `response.flags`, StreamInfo::ResponseFlag). */
export namespace Flag {
  export const NoHealthyUpstream: u64 = 0x2;             // UH
  export const UpstreamRequestTimeout: u64 = 0x4;        // UT
  export const LocalReset: u64 = 0x8;                    // LR
  export const UpstreamRemoteReset: u64 = 0x10;          // UR
  export const UpstreamConnectionFailure: u64 = 0x20;    // UF
  export const UpstreamConnectionTermination: u64 = 0x40; // UC
  export const UpstreamOverflow: u64 = 0x80;             // UO
  export const DownstreamConnectionTermination: u64 = 0x4000; // DC
  export const UpstreamRetryLimitExceeded: u64 = 0x8000; // URX
  export const UpstreamMaxStreamDurationReached: u64 = 0x80000; // UMSDR
  export const UpstreamProtocolError: u64 = 0x800000;    // UPE
  /** A flag name we do not know (string form only). */
  export const Other: u64 = 1 << 62;
}

/** No response from the upstream: connection failure, resets, connection termination. */
const NO_RESPONSE: u64 = Flag.UpstreamConnectionFailure | Flag.UpstreamRemoteReset |
  Flag.UpstreamConnectionTermination | Flag.LocalReset;
/** The upstream took too long or spoke broken HTTP: Envoy answers 504/502 on its behalf. */
const UPSTREAM_FAULT: u64 = Flag.UpstreamRequestTimeout | Flag.UpstreamMaxStreamDurationReached | Flag.UpstreamProtocolError;

export namespace Outcome {
  /** Counted as a request, neither success nor failure (client went away, Envoy's own limits, …). */
  export const Neutral: u8 = 0;
  export const Success: u8 = 1;
  export const Upstream5xx: u8 = 2;
  export const ConnectFailure: u8 = 3;
  /** Counted as a 5xx of the instance, but the response was Envoy's (504 timeout, 502 protocol error): no latency. */
  export const UpstreamFault: u8 = 4;
}

function flagOfName(p: usize, n: usize): u64 {
  if (n == 1 && load<u8>(p) == 0x2d) return 0; // "-"
  if (n == 2) {
    const a = load<u8>(p);
    const b = load<u8>(p + 1);
    if (a == 0x55) { // U?
      if (b == 0x46) return Flag.UpstreamConnectionFailure;
      if (b == 0x52) return Flag.UpstreamRemoteReset;
      if (b == 0x43) return Flag.UpstreamConnectionTermination;
      if (b == 0x54) return Flag.UpstreamRequestTimeout;
      if (b == 0x48) return Flag.NoHealthyUpstream;
      if (b == 0x4f) return Flag.UpstreamOverflow;
    }
    if (a == 0x4c && b == 0x52) return Flag.LocalReset;
    if (a == 0x44 && b == 0x43) return Flag.DownstreamConnectionTermination;
  }
  if (n == 3 && load<u8>(p) == 0x55) {
    if (load<u8>(p + 1) == 0x52 && load<u8>(p + 2) == 0x58) return Flag.UpstreamRetryLimitExceeded;
    if (load<u8>(p + 1) == 0x50 && load<u8>(p + 2) == 0x45) return Flag.UpstreamProtocolError;
  }
  if (n == 5 && load<u32>(p) == 0x44534d55 && load<u8>(p + 4) == 0x52) return Flag.UpstreamMaxStreamDurationReached; // UMSDR
  return Flag.Other;
}

/**
 * `response.flags`: Envoy hands the bit vector as an 8-byte int64 (its top byte is 0 for every
 * defined flag); a string of short names ("UF,URX", "-" for none, as in access logs) is accepted too.
 */
function readFlags(): u64 {
  if (!propertyGet(RESPONSE_FLAGS)) return 0;
  let flags: u64 = 0;
  const p = propPtr;
  const n = propLen;
  if (n == 8 && load<u8>(p + 7) == 0) flags = load<u64>(p);
  else if (n <= 256) {
    let start: usize = 0;
    for (let i: usize = 0; i <= n; i++) {
      if (i == n || load<u8>(p + i) == 0x2c) {
        if (i > start) flags |= flagOfName(p + start, i - start);
        start = i + 1;
      }
    }
  } else flags = Flag.Other;
  propertyRelease();
  return flags;
}

function viaUpstream(): bool {
  if (!propertyGet(RESPONSE_CODE_DETAILS)) return false;
  const yes = bytesEqual(VIA_UPSTREAM, propPtr, propLen);
  propertyRelease();
  return yes;
}

/**
 * Classifies the final attempt (see plugin/README.md, "Upstream results"). `response.flags` (and
 * `code_details`) are read only when the code is 0 or 5xx: an upstream host was used and a 1xx–4xx
 * status came back, which is the upstream's own answer (success) — one host call fewer on the common path.
 */
export function classifyAttempt(code: i64): u8 {
  if (code > 0 && code < 500) return Outcome.Success;
  return classify(code, readFlags());
}

export function classify(code: i64, flags: u64): u8 {
  if (flags & Flag.DownstreamConnectionTermination) return Outcome.Neutral;
  if (flags & NO_RESPONSE) return Outcome.ConnectFailure;
  if (flags & UPSTREAM_FAULT) return Outcome.UpstreamFault;
  if (code <= 0) return Outcome.Neutral;
  if (flags != 0) return Outcome.Neutral; // Envoy's own answer (overflow, rate limit, fault injection…)
  if (code >= 500 && code <= 599) return viaUpstream() ? Outcome.Upstream5xx : Outcome.Neutral;
  return Outcome.Success;
}

/** Per-VM observer: the stats registry, passive-ejection settings and state, their metrics. */
export class Observer {
  registry: StatsRegistry = new StatsRegistry();
  telemetryOn: bool = false;
  passiveFailures: i32 = 0;
  cooldownMs: u64 = 10000;
  /** Stats currently passively ejected by this worker (expired on tick or when a request sees it due). */
  ejected: InstanceStats[] = [];
  ejectionsMetric: u32 = NO_METRIC;
  private metricsDefined: bool = false;

  configure(c: Config): void {
    this.telemetryOn = c.telemetryIntervalMs > 0;
    this.passiveFailures = c.passiveFailures;
    this.cooldownMs = <u64>c.passiveCooldownMs;
    if (!this.metricsDefined) {
      this.ejectionsMetric = defineMetric(MetricType.Counter, "gateway.passive.ejections");
      this.metricsDefined = true;
    }
  }

  /**
   * on_log of a routed stream. `hot` is the hot block the request was routed from and `pick` its
   * position there (the pick, then the fallbacks Envoy's retries walk: table/hot_block.ts); `table`
   * the table it belongs to; `ttfbUs` the time to the response headers (< 0 if none came). Reads that
   * position's entry, its endpoint list and the stats slots it holds — no object.
   */
  observe(table: RoutingTable | null, hot: ArrayBuffer, pick: i32, ttfbUs: i64): void {
    if (!propertyGet(UPSTREAM_ADDRESS)) return; // never reached an upstream host
    const b = changetype<usize>(hot);
    // In bounds: `pick` came from this very block's picker and was checked against its HOT_N (router.ts).
    const rec = hotRecord(b, pick);
    const hostCount = <i32>load<u8>(rec, HotRec.HOSTS);
    let at = b + <usize>load<u32>(rec, HotRec.VALUES); // the endpoint list: pick, then fallbacks
    let len = <usize>load<u32>(rec, HotRec.PICK_LEN);
    let k = -1;
    let slot = -1;
    // Usually the pick itself: its address starts the endpoint list the request just wrote (in cache).
    if (propLen == len && (len == 0 || memory.compare(at, propPtr, len) == 0)) {
      k = 0;
      slot = load<i32>(rec, HotRec.SLOT);
    } else {
      const fb = b + <usize>load<u32>(rec, HotRec.FALLBACKS);
      for (let i = 1; i < hostCount; i++) {
        at += len + 1; // past the previous address and its ','
        const f = fb + (<usize>(i - 1) << 3);
        len = <usize>load<u32>(f, 4);
        if (propLen == len && (len == 0 || memory.compare(at, propPtr, len) == 0)) {
          k = i;
          slot = load<i32>(f);
          break;
        }
      }
    }
    if (k < 0 && table !== null && propLen > 0) {
      const inst = table.addresses.get(propPtr, propLen);
      if (inst !== null) slot = inst.stats.slot;
    }
    propertyRelease();
    if (slot < 0) return; // not one of ours (e.g. a SaaS passthrough host)
    const code = propertyInt(RESPONSE_CODE, 0);
    const outcome = classifyAttempt(code);
    // The clock only when a failure may eject.
    const nowMs: u64 = this.passiveFailures > 0 && (outcome != Outcome.Success || k > 0) ? currentMs() : 0;
    // override_host sends attempt j to the j-th address of the list: the host used is at k, so the
    // attempts on hosts 0..k-1 failed (retry_on connect-failure/reset/refused-stream).
    for (let j = 0; j < k; j++) {
      const s = j == 0 ? load<i32>(rec, HotRec.SLOT) : load<i32>(b + <usize>load<u32>(rec, HotRec.FALLBACKS) + (<usize>(j - 1) << 3));
      this.record(s, Outcome.ConnectFailure, -1, nowMs);
    }
    this.record(slot, outcome, ttfbUs, nowMs);
  }

  record(slot: i32, outcome: u8, ttfbUs: i64, nowMs: u64): void {
    const reg = this.registry;
    if (this.telemetryOn && reg.count(slot)) {
      if (outcome == Outcome.Upstream5xx || outcome == Outcome.UpstreamFault) reg.bump(slot, Rec.UPSTREAM_5XX);
      else if (outcome == Outcome.ConnectFailure) reg.bump(slot, Rec.CONNECT_FAILURES);
      // Latency = time to the upstream's own response headers.
      if (ttfbUs >= 0 && (outcome == Outcome.Success || outcome == Outcome.Upstream5xx)) reg.recordLatency(slot, <u64>ttfbUs);
    }
    if (this.passiveFailures <= 0) return;
    if (outcome == Outcome.Success) {
      reg.setStreak(slot, 0);
    } else if (outcome != Outcome.Neutral && !reg.ejected(slot)) {
      const streak = reg.streak(slot) + 1;
      reg.setStreak(slot, streak);
      if (streak >= this.passiveFailures) {
        const s = reg.statsAt(slot);
        if (s !== null) this.eject(s, nowMs);
      }
    }
  }

  private eject(s: InstanceStats, nowMs: u64): void {
    const reg = this.registry;
    reg.setStreak(s.slot, 0);
    s.ejectedUntil = nowMs + this.cooldownMs;
    if (s.ejectedUntil == 0) s.ejectedUntil = 1;
    reg.setEjected(s.slot, true);
    this.ejected.push(s);
    incrementMetric(this.ejectionsMetric);
    if (!s.ejectedGaugeDefined) {
      s.ejectedGauge = defineMetric(MetricType.Gauge,
        "gateway.deployment." + s.deploymentId + ".instance." + s.instanceId + ".passive_ejected");
      s.ejectedGaugeDefined = true;
    }
    incrementMetric(s.ejectedGauge, 1);
    if (logEnabled(LogLevel.Info)) {
      logInfo("passive ejection: deployment " + s.deploymentId + " instance " + s.instanceId + " (" + s.address +
        ") after " + this.passiveFailures.toString() + " consecutive failures, for " + this.cooldownMs.toString() + " ms on this worker");
    }
    const d = s.owner;
    if (d !== null) rebuildDeployment(d, nowMs);
  }

  /** Ends every passive ejection due at `nowMs`; rebuilds their deployments (and `also`, if given). */
  restoreDue(nowMs: u64, also: Deployment | null): void {
    const list = this.ejected;
    const reg = this.registry;
    let i = 0;
    while (i < list.length) {
      const s = unchecked(list[i]);
      if (s.ejectedUntil > nowMs) { i++; continue; }
      s.ejectedUntil = 0;
      reg.setStreak(s.slot, 0);
      reg.setProbation(s.slot); // latency: back on probation (strategy/load.ts)
      reg.setEjected(s.slot, false);
      incrementMetric(s.ejectedGauge, -1);
      unchecked(list[i] = unchecked(list[list.length - 1]));
      list.length = list.length - 1;
      const d = s.owner;
      if (d !== null && d !== also && d.passivelyEjected > 0) rebuildDeployment(d, nowMs);
    }
    if (also !== null) rebuildDeployment(also, nowMs);
  }
}
