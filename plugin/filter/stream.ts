// Per-request context: find the model (header, else the JSON body), then hand over to router.ts.
// Pooled by the root: no allocation per request.
import { StreamContext } from "../abi/context";
import { Action, BufferType, MapType } from "../abi/types";
import { gotLen, gotPtr, headerDetach, headerGet, headerRelease } from "../abi/headers";
import { bufLen, bufPtr, bufferRelease, getBufferBytes } from "../abi/buffers";
import { incrementMetric } from "../abi/metrics";
import { utf8 } from "../abi/bytes";
import { modelFound, modelLen, modelPtr, modelTokenEnd, modelTokenStart, scanForModel, ScanResult, userLen, userPtr } from "../json/model_scanner";
import { replyBadBody, replyTooLarge, routedBlock, routedFlags, routedKind, routedLoadSlot, routedNowNs, routedPick, routeTo, stripRoutingHeaders, unknownModel } from "./router";
import { HOT_LAT, observeLatency } from "../strategy/load";
import { needsRename, rewriteModel } from "./served_name";
import { checkPath } from "./paths";
import { HotFlag } from "../table/hot_block";
import { replyNoTable } from "./errors";
import { GatewayRoot } from "./root";
import { Deployment, fastHot, RoutingTable } from "../table/routing_table";
import { slotAux, slotValue } from "../table/bytes_map";
import { HOT_RETURN_AT } from "../strategy/hot";
import { Config } from "../config";
import { nowNs } from "../abi/time";
import { answerModels, ModelsAnswer } from "./models_endpoint";

const CONTENT_TYPE = utf8("content-type");

/** media type (before ';', trimmed, case-insensitive) is application/json or ends in +json. */
function isJsonContentType(ptr: usize, len: usize): bool {
  let end: usize = 0;
  while (end < len && load<u8>(ptr + end) != 0x3b) end++;
  let start: usize = 0;
  while (start < end && (load<u8>(ptr + start) == 0x20 || load<u8>(ptr + start) == 0x09)) start++;
  while (end > start && (load<u8>(ptr + end - 1) == 0x20 || load<u8>(ptr + end - 1) == 0x09)) end--;
  const n = end - start;
  const p = ptr + start;
  if (n == 16) {
    const want = "application/json";
    for (let i = 0; i < 16; i++) if ((<i32>load<u8>(p + <usize>i) | 0x20) != want.charCodeAt(i)) return false;
    return true;
  }
  return n > 5 && (load<u8>(p + n - 5) == 0x2b) && (load<u8>(p + n - 4) | 0x20) == 0x6a &&
    (load<u8>(p + n - 3) | 0x20) == 0x73 && (load<u8>(p + n - 2) | 0x20) == 0x6f && (load<u8>(p + n - 1) | 0x20) == 0x6e;
}

export class GatewayStream extends StreamContext {
  /** Headers were held to read the body. */
  buffering: bool = false;
  /** The decision was made (routed, passed through or replied). */
  decided: bool = false;
  bufferedBytes: usize = 0;
  /**
   * Routed (and observing): the hot block the request was routed from and its position there (what
   * it was sent with), and the table they belong to (counted in its `observing` while held), for on_log.
   */
  routedHot: ArrayBuffer | null = null;
  routedPos: i32 = -1;
  routedTable: RoutingTable | null = null;
  /** The upstream result is observed in on_log (telemetry / passive ejection were on when routed). */
  observing: bool = false;
  /** least_request / latency: the pick's stats slot, in flight until release() (-1: none). */
  loadSlot: i32 = -1;
  /** latency: the pick's time to first byte feeds its peak-EWMA (strategy/load.ts). */
  feedsLatency: bool = false;
  startNs: u64 = 0;
  /** Time to the response headers (µs); -1 until they come. */
  ttfbUs: i64 = -1;
  /** Routed under a name its engine does not serve: the body's "model" gets the served name. */
  renameTo: Deployment | null = null;
  /** Header-routed with renameTo: the body is being buffered for the rewrite. */
  rewriting: bool = false;

  constructor(public root: GatewayRoot) {
    super();
  }

  reset(): void {
    this.buffering = false;
    this.decided = false;
    this.bufferedBytes = 0;
    this.release();
    this.ttfbUs = -1;
    this.renameTo = null;
    this.rewriting = false;
  }

  /**
   * Lets go of what routing kept for on_log; ends the pick's in-flight count (on_log, else when the
   * pooled context is reset: a stream that never logged still ends exactly once).
   */
  private release(): void {
    const slot = this.loadSlot;
    if (slot >= 0) {
      this.root.observer.registry.endFlight(slot);
      this.loadSlot = -1;
    }
    this.feedsLatency = false;
    this.observing = false;
    const t = this.routedTable;
    if (t !== null) t.observing--;
    this.routedTable = null;
    this.routedHot = null;
  }

  /**
   * routeTo, plus what observing the upstream result needs (telemetry / passive ejection). `fast`:
   * the model slot's aux word (fastHot(d), or 0).
   */
  private route(c: Config, table: RoutingTable, d: Deployment, fast: usize, up: usize, ul: usize): bool {
    const reg = this.root.observer.registry;
    const observes = c.observes;
    let now: u64 = 0;
    if (observes) {
      now = nowNs();
      const returnAt = fast != 0 ? load<u64>(fast, HOT_RETURN_AT) : d.nextReturnAt;
      if (returnAt <= now / 1_000_000) {
        this.root.observer.restoreDue(now / 1_000_000, d);
        fast = fastHot(d); // rebuilt: a new block
      }
    }
    const ok = routeTo(c, table, d, fast, reg, now, up, ul);
    const b = routedBlock;
    // Kept for on_log when observing, and for the load-aware strategies (their in-flight count ends
    // there; holding the table keeps the pick's stats slot its own meanwhile, stats.ts "Slot lifetime").
    if (ok && routedPick >= 0 && b != 0 && (observes || routedLoadSlot >= 0)) {
      this.startNs = routedNowNs;
      this.routedHot = changetype<ArrayBuffer>(b); // the block routeTo picked from: routedPick is in its range
      this.routedPos = routedPick;
      this.routedTable = table;
      this.observing = observes;
      this.loadSlot = routedLoadSlot;
      this.feedsLatency = routedKind == HOT_LAT;
      table.observing++;
    }
    return ok;
  }

  /** The model's deployment and hot block (slot of the table's model map), then route or unknownModel. */
  /** `up`/`ul`: the body's "user" (session affinity's key; 0 when header-routed). */
  private routeModel(c: Config, table: RoutingTable | null, ptr: usize, len: usize, up: usize = 0, ul: usize = 0): bool {
    if (table === null && !c.beforeFirstTablePassthrough) {
      // No table yet: whether the model is ours is unknown, and passing it through would send a prompt
      // meant for our own GPUs down the fall-through (SaaS) route.
      incrementMetric(this.root.metrics.noTable);
      replyNoTable(c);
      return false;
    }
    const slot: usize = table === null ? 0 : table.find(ptr, len);
    const d: Deployment | null = slot == 0 ? null : slotValue<Deployment>(slot);
    if (d === null || table === null) return unknownModel(c, this.root.metrics, ptr, len);
    if (!checkPath(c, d)) {
      incrementMetric(this.root.metrics.pathRefused);
      return false;
    }
    const ok = this.route(c, table, d, <usize>slotAux(slot), up, ul);
    // Only deployments reached by names other than the served one look further (one flag test otherwise).
    if (ok && (routedFlags & HotFlag.RENAMES) != 0 && needsRename(d, ptr, len)) this.renameTo = d;
    return ok;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): u32 {
    const hot = this.routedHot;
    if (hot !== null && this.ttfbUs < 0) {
      const now = nowNs();
      const ns = now > this.startNs ? now - this.startNs : 0;
      this.ttfbUs = <i64>(ns / 1000);
      if (this.feedsLatency && this.loadSlot >= 0) {
        observeLatency(changetype<usize>(hot), this.root.observer.registry, this.loadSlot, <f64>ns / 1000.0, now);
      }
    }
    return Action.Continue;
  }

  onLog(): void {
    const hot = this.routedHot;
    if (hot === null) return;
    if (this.observing) this.root.observer.observe(this.routedTable, hot, this.routedPos, this.ttfbUs);
    this.release();
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): u32 {
    const root = this.root;
    const c = root.config;
    if (c === null) return Action.Continue;
    const table = root.table();
    let hasModel = headerGet(MapType.RequestHeaders, c.modelHeaderBytes);
    if (hasModel && gotLen == 0) { // an empty model header counts as absent
      headerRelease();
      hasModel = false;
    }
    if (hasModel) {
      const mp = gotPtr;
      const ml = gotLen;
      headerDetach(); // routeTo may read :path; this value stays ours until freed below
      this.decided = true;
      const ok = this.routeModel(c, table, mp, ml);
      if (mp != 0) heap.free(mp);
      if (!ok) return Action.Pause;
      // A JSON body naming the model too must carry the served name: hold the headers, read it.
      if (this.renameTo !== null && !endOfStream && this.hasJsonBody()) {
        this.rewriting = true;
        return Action.Pause;
      }
      return Action.Continue;
    }
    if (c.bodyRouting && !endOfStream && this.hasJsonBody()) {
      this.buffering = true;
      return Action.Pause; // StopIteration: headers held until the body is read
    }
    this.decided = true;
    return this.noModel(c, table);
  }

  /** No model named (header or body): the models endpoint, else passthrough without routing headers. */
  private noModel(c: Config, table: RoutingTable | null): u32 {
    const root = this.root;
    if (c.modelsEndpointLocal) {
      const a = answerModels(c, root.metrics, table);
      if (a != ModelsAnswer.NotMine) return a == ModelsAnswer.Replied ? Action.Pause : Action.Continue;
    }
    incrementMetric(root.metrics.noModel);
    stripRoutingHeaders(c);
    return Action.Continue;
  }

  private hasJsonBody(): bool {
    if (!headerGet(MapType.RequestHeaders, CONTENT_TYPE)) return false;
    const json = isJsonContentType(gotPtr, gotLen);
    headerRelease();
    return json;
  }

  onRequestBody(bodySize: usize, endOfStream: bool): u32 {
    if (this.rewriting) return this.rewriteBody(bodySize, endOfStream);
    if (!this.buffering || this.decided) return Action.Continue;
    const c = this.root.config;
    if (c === null) return Action.Continue;
    this.bufferedBytes = bodySize;
    if (bodySize > <usize>c.maxBodyBytes) {
      this.decided = true;
      replyTooLarge(c, this.root.metrics);
      return Action.Pause;
    }
    if (!endOfStream) return Action.Pause; // StopIterationAndBuffer
    return this.routeFromBody();
  }

  onRequestTrailers(numTrailers: u32): u32 {
    if (this.rewriting) return this.rewriteBody(this.bufferedBytes, true);
    if (!this.buffering || this.decided) return Action.Continue;
    return this.routeFromBody();
  }

  /** Header-routed under a name the engine does not serve: buffer the body, then rewrite its "model". */
  private rewriteBody(bodySize: usize, endOfStream: bool): u32 {
    const c = this.root.config;
    const d = this.renameTo;
    if (c === null || d === null) { this.rewriting = false; return Action.Continue; }
    this.bufferedBytes = bodySize;
    if (bodySize > <usize>c.maxBodyBytes) {
      this.rewriting = false;
      replyTooLarge(c, this.root.metrics);
      return Action.Pause;
    }
    if (!endOfStream) return Action.Pause; // StopIterationAndBuffer
    this.rewriting = false;
    if (!getBufferBytes(BufferType.HttpRequestBody, 0, <u32>bodySize)) return Action.Continue;
    // Not JSON, or no top-level "model": the body goes as it is (the engine answers for it).
    if (scanForModel(bufPtr, bufLen) == ScanResult.Ok && modelFound && needsRename(d, modelPtr, modelLen)) {
      rewriteModel(d, bufPtr, bufLen, modelTokenStart, modelTokenEnd);
    }
    bufferRelease();
    return Action.Continue;
  }

  private routeFromBody(): u32 {
    this.decided = true;
    const root = this.root;
    const c = root.config;
    if (c === null) return Action.Continue;
    const size = this.bufferedBytes;
    if (!getBufferBytes(BufferType.HttpRequestBody, 0, <u32>size)) {
      // Body unavailable: let the request through untouched (but never with client routing headers).
      stripRoutingHeaders(c);
      return Action.Continue;
    }
    const scan = scanForModel(bufPtr, bufLen);
    if (scan != ScanResult.Ok) {
      bufferRelease();
      replyBadBody(root.metrics, scan == ScanResult.TooDeep
        ? "request body nests JSON too deeply"
        : "request body is not valid JSON");
      return Action.Pause;
    }
    const table = root.table();
    if (!modelFound) {
      bufferRelease();
      return this.noModel(c, table);
    }
    const ok = this.routeModel(c, table, modelPtr, modelLen, userPtr, userLen);
    const d = this.renameTo;
    if (ok && d !== null) rewriteModel(d, bufPtr, bufLen, modelTokenStart, modelTokenEnd);
    bufferRelease();
    return ok ? Action.Continue : Action.Pause;
  }
}
