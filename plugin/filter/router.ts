// The request decision once the model is known: deployment → pick → output headers. Everything it
// writes was encoded when the table was compiled; the only allocation-free host calls are the header
// writes, the route-cache clear and two counters.
import { Config } from "../config";
import { Deployment, RoutingTable } from "../table/routing_table";
import { hotNext, HOT_AFFINITY, HOT_KIND, HOT_N } from "../strategy/hot";
import { affinityNext } from "../strategy/affinity";
import { HOT_LAT, HOT_LR, loadNext } from "../strategy/load";
import { StatsRegistry, Rec } from "../telemetry/stats";
import { nowNs } from "../abi/time";
import { HotFlag, hotRecord, HotRec } from "../table/hot_block";
import { gotLen, gotPtr, headerGet, headerRelease, headerRemove, headerReplace } from "../abi/headers";
import { callForeign } from "../abi/foreign";
import { MapType } from "../abi/types";
import { ByteWriter, utf8 } from "../abi/bytes";
import { incrementMetric } from "../abi/metrics";
import { countNoEligible, countRequest, countRequestHot, GatewayMetrics } from "./metrics";
import { errorBody, replyError } from "./errors";

const PATH = utf8(":path");
const AUTHORIZATION = utf8("authorization");
const X_API_KEY = utf8("x-api-key");
const CLEAR_ROUTE_CACHE = utf8("clear_route_cache");

/** Scratch for the rewritten :path; longer paths use a temporary raw block. */
const PATH_SCRATCH_SIZE: usize = 2048;
const PATH_SCRATCH: usize = memory.data(2048);

/** Removes every client-supplied routing header (clients must not choose hosts). */
export function stripRoutingHeaders(c: Config): void {
  headerRemove(MapType.RequestHeaders, c.endpointHeaderBytes);
  headerRemove(MapType.RequestHeaders, c.clusterHeaderBytes);
  headerRemove(MapType.RequestHeaders, c.deploymentHeaderBytes);
  headerRemove(MapType.RequestHeaders, c.instanceHeaderBytes);
}

/**
 * Rewrites :path from api_prefix to the instance's base_path when the request path is under the
 * prefix (prefix followed by end, '/' or '?'); the rest, query included, is kept.
 */
function rewritePath(c: Config, basePath: ArrayBuffer): void {
  if (!headerGet(MapType.RequestHeaders, PATH)) return;
  const p = gotPtr;
  const n = gotLen;
  const prefix = c.apiPrefixBytes;
  const pn = <usize>prefix.byteLength;
  let under = n >= pn && (pn == 0 || memory.compare(p, changetype<usize>(prefix), pn) == 0);
  if (under && n > pn) {
    const next = load<u8>(p + pn);
    under = next == 0x2f || next == 0x3f;
  }
  if (under) {
    const bn = <usize>basePath.byteLength;
    const rest = n - pn;
    // "" base path + "?q" or "" would not be a valid :path: keep a leading '/'.
    const slash: usize = bn == 0 && (rest == 0 || load<u8>(p + pn) != 0x2f) ? 1 : 0;
    const total = slash + bn + rest;
    const out = total <= PATH_SCRATCH_SIZE ? PATH_SCRATCH : heap.alloc(total);
    if (slash) store<u8>(out, 0x2f);
    memory.copy(out + slash, changetype<usize>(basePath), bn);
    memory.copy(out + slash + bn, p + pn, rest);
    headerReplace(MapType.RequestHeaders, PATH, out, total);
    if (out != PATH_SCRATCH) heap.free(out);
  }
  headerRelease();
}

/** The position index of the last successful routeTo (what the request was sent with), -1 if none. */
export let routedPick: i32 = -1;
/** The hot block the last successful routeTo picked from (0 if none). */
export let routedBlock: usize = 0;
/** The picked entry's HotFlag bits of the last successful routeTo (0 if none). */
export let routedFlags: u8 = 0;
/** The stats slot whose in-flight count the last routeTo raised (-1: none); every routed request has one. */
export let routedLoadSlot: i32 = -1;
/** The hot block kind of the last successful routeTo (HOT_LAT: the stream feeds the pick's EWMA). */
export let routedKind: u32 = 0;
/** The clock (ns) the last routeTo picked at: `now` as given, or read for latency (0: not read). */
export let routedNowNs: u64 = 0;

/**
 * Picks an instance of `d` and sets the output headers. Returns false if a local reply was sent.
 * `fast`: fastHot(d) as the model's slot had it — the request then reads the hot block only, not `d`.
 * `userPtr`/`userLen`: the body's top-level "user" (body-routed requests; 0: none), session affinity's key
 * when the deployment's affinity source is "user".
 */
export function routeTo(c: Config, t: RoutingTable, d: Deployment, fast: usize, reg: StatsRegistry, now: u64,
  userPtr: usize = 0, userLen: usize = 0): bool {
  routedPick = -1;
  routedBlock = 0;
  routedFlags = 0;
  routedLoadSlot = -1;
  routedKind = 0;
  let b = fast;
  if (b != 0) countRequestHot(t, d, b);
  else {
    countRequest(t, d);
    if (d.noEligible) countNoEligible(d, !d.unavailable);
    const hot = d.hot;
    if (d.unavailable || hot === null) {
      replyError(503, "gateway_no_eligible_instance",
        errorBody("deployment " + d.id + " has no available instance", "server_error", null, "no_eligible_instance"),
        c.retryAfterSeconds);
      return false;
    }
    b = changetype<usize>(hot);
  }
  // Everything below reads the deployment's hot block (table/hot_block.ts): picker state, the
  // position's entry and its header values, in a few adjacent cache lines.
  const kind = load<u32>(b, HOT_KIND);
  // Session affinity first (strategy/affinity.ts): a keyed request's pick; -1 = no key, the base strategy.
  const affinity = load<u32>(b, HOT_AFFINITY);
  let pos: i32 = affinity != 0 ? affinityNext(b, reg, userPtr, userLen) : -1;
  if (pos >= 0) {} // picked by key
  else if (kind < HOT_LR) pos = hotNext(b);
  else {
    if (now == 0 && kind >= HOT_LAT) now = nowNs(); // latency, load_aware
    pos = loadNext(b, reg, now);
  }
  routedNowNs = now;
  if (pos < 0 || pos >= load<i32>(b, HOT_N)) return true; // defensive; pickers stay in range
  const rec = hotRecord(b, pos);
  // replace (not add): a client's copy of any of these headers must never survive.
  let v = b + <usize>load<u32>(rec, HotRec.VALUES);
  const endpointLen = <usize>load<u32>(rec, HotRec.ENDPOINT_LEN);
  headerReplace(MapType.RequestHeaders, c.endpointHeaderBytes, v, endpointLen);
  v += endpointLen;
  const clusterLen = <usize>load<u16>(rec, HotRec.CLUSTER_LEN);
  headerReplace(MapType.RequestHeaders, c.clusterHeaderBytes, v, clusterLen);
  v += clusterLen;
  const deploymentLen = <usize>load<u16>(rec, HotRec.DEPLOYMENT_LEN);
  headerReplace(MapType.RequestHeaders, c.deploymentHeaderBytes, v, deploymentLen);
  v += deploymentLen;
  headerReplace(MapType.RequestHeaders, c.instanceHeaderBytes, v, <usize>load<u16>(rec, HotRec.INSTANCE_LEN));
  const flags = load<u8>(rec, HotRec.FLAGS);
  // Client credentials never reach a self-hosted engine unless the deployment forwards them (a client's
  // SaaS key in a hybrid setup would otherwise go to every internal instance); the pick's own API key,
  // when it has one, replaces `authorization` (never logged).
  if ((flags & HotFlag.AUTHORIZATION) != 0) {
    const a = b + <usize>load<u32>(rec, HotRec.FALLBACKS) - HotRec.AUTHORIZATION_BEFORE_FALLBACKS;
    headerReplace(MapType.RequestHeaders, AUTHORIZATION, <usize>load<u32>(a), <usize>load<u32>(a, 4));
  } else if ((flags & HotFlag.FORWARD_CREDENTIALS) == 0) headerRemove(MapType.RequestHeaders, AUTHORIZATION);
  if ((flags & HotFlag.FORWARD_CREDENTIALS) == 0) headerRemove(MapType.RequestHeaders, X_API_KEY);
  if ((flags & HotFlag.REWRITE) != 0 && pos < d.positions.length) rewritePath(c, unchecked(d.positions[pos]).instance.basePathBytes);
  callForeign(CLEAR_ROUTE_CACHE, 0, 0);
  // A pick (collectPicks adds it to the instance's counter).
  store<u32>(rec, load<u32>(rec, HotRec.PICKS) + 1, HotRec.PICKS);
  // In flight until the stream ends (GatewayStream.release): the pick's own record. Every strategy keeps
  // the count (the load-aware ones and affinity pick by it; telemetry reports it for the dashboard).
  const slot = load<i32>(rec, HotRec.SLOT);
  const r = reg.record(slot);
  store<i32>(r, load<i32>(r, Rec.IN_FLIGHT) + 1, Rec.IN_FLIGHT);
  routedLoadSlot = slot;
  routedPick = pos;
  routedBlock = b;
  routedFlags = flags;
  routedKind = kind;
  return true;
}

/** Unknown model: passthrough (untouched but stripped) or 404. Returns false if a reply was sent. */
export function unknownModel(c: Config, m: GatewayMetrics, modelPtr: usize, modelLen: usize): bool {
  incrementMetric(m.unknownModel);
  if (!c.unknownModelReject) {
    stripRoutingHeaders(c);
    return true;
  }
  const shown = modelLen > 256 ? String.UTF8.decodeUnsafe(modelPtr, 256) + "…" : String.UTF8.decodeUnsafe(modelPtr, modelLen);
  replyError(404, "gateway_model_not_found",
    errorBody("The model `" + shown + "` does not exist", "invalid_request_error", "model", "model_not_found"));
  return false;
}

export function replyBadBody(m: GatewayMetrics, message: string): void {
  incrementMetric(m.badRequest);
  replyError(400, "gateway_invalid_json_body", errorBody(message, "invalid_request_error", "model", "invalid_json"));
}

export function replyTooLarge(c: Config, m: GatewayMetrics): void {
  incrementMetric(m.bodyTooLarge);
  const msg = new ByteWriter(64).str("request body exceeds ").uint(<u64>c.maxBodyBytes).str(" bytes, the limit for reading the model");
  replyError(413, "gateway_body_too_large",
    errorBody(String.UTF8.decode(msg.toBuffer()), "invalid_request_error", "model", "request_too_large"));
}
