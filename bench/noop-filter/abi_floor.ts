// A second benchmark floor (built by bench/plugin.bench.ts, not by build:plugin): the host calls a
// header-routed request makes in the plugin — read the model header (the host allocates its value
// through our malloc), replace four headers, call clear_route_cache (counters are batched to the tick
// in the plugin) — with constant values and no routing logic. The plugin minus this floor is the cost
// of our own code; this floor minus the no-op is the host's ABI cost.
//
// With the plugin configuration "observe" it also makes the calls of the upstream-result path
// (telemetry / passive ejection): the clock at routing and in on_response_headers, and in on_log
// `upstream.address` and, when present, `response.code` (each a host-allocated value, freed at once).
import { RootContext, StreamContext } from "../../plugin/abi/context";
import { setRootFactory } from "../../plugin/abi/registry";
import { Action, MapType } from "../../plugin/abi/types";
import { headerGet, headerRelease, headerReplaceBuf } from "../../plugin/abi/headers";
import { callForeign } from "../../plugin/abi/foreign";
import { utf8 } from "../../plugin/abi/bytes";
import { nowNs } from "../../plugin/abi/time";
import { propertyGet, propertyInt, propertyRelease } from "../../plugin/abi/properties";

export * from "../../plugin/abi/exports";

const MODEL = utf8("x-model");
const H1 = utf8("x-gateway-destination-endpoint");
const H2 = utf8("x-gateway-cluster");
const H3 = utf8("x-model-deployment");
const H4 = utf8("x-model-instance");
const V1 = utf8("10.0.0.1:8000,10.0.0.2:8000,10.0.0.3:8000");
const V2 = utf8("gw.dep-1");
const V3 = utf8("dep-1");
const V4 = utf8("i1");
const CLEAR = utf8("clear_route_cache");
const UPSTREAM_ADDRESS = utf8("upstream\0address");
const RESPONSE_CODE = utf8("response\0code");

let observe = false;
/** Keeps results alive so nothing is optimized away. */
export let sink: u64 = 0;

class FloorStream extends StreamContext {
  onRequestHeaders(n: u32, eos: bool): u32 {
    if (headerGet(MapType.RequestHeaders, MODEL)) headerRelease();
    headerReplaceBuf(MapType.RequestHeaders, H1, V1);
    headerReplaceBuf(MapType.RequestHeaders, H2, V2);
    headerReplaceBuf(MapType.RequestHeaders, H3, V3);
    headerReplaceBuf(MapType.RequestHeaders, H4, V4);
    callForeign(CLEAR, 0, 0);
    if (observe) sink += nowNs();
    return Action.Continue;
  }

  onResponseHeaders(n: u32, eos: bool): u32 {
    if (observe) sink += nowNs();
    return Action.Continue;
  }

  onLog(): void {
    if (!observe) return;
    if (!propertyGet(UPSTREAM_ADDRESS)) return;
    propertyRelease();
    sink += <u64>propertyInt(RESPONSE_CODE, 0);
  }
}

const STREAM = new FloorStream();

class FloorRoot extends RootContext {
  onConfigure(size: usize): bool {
    observe = size == 7; // "observe"
    return true;
  }

  newStream(id: u32): StreamContext | null {
    return STREAM;
  }
}

function newRoot(id: u32): RootContext {
  return new FloorRoot(id);
}

setRootFactory(newRoot);
