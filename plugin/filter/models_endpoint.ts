// `GET|HEAD {api_prefix}/models` and `…/models/{name}` answered by the plugin (models_endpoint:
// "local"), in OpenAI's format, from the listing compiled with the table (table/models_list.ts).
// Only requests that name no model reach here (stream.ts): a request naming a model is routed.
// Per request: the :path get (+ :method when the path matches), no GC allocation — bodies and header
// maps are prebuilt, a name is decoded into static scratch, a 404 body is written into static scratch.
import { Config } from "../config";
import { RoutingTable } from "../table/routing_table";
import { gotLen, gotPtr, headerGet, headerRelease } from "../abi/headers";
import { MapType } from "../abi/types";
import { ByteWriter, utf8 } from "../abi/bytes";
import { serializeHeaders } from "../abi/headers";
import { sendLocalResponse, sendLocalResponseRaw } from "../abi/local_response";
import { incrementMetric } from "../abi/metrics";
import { GatewayMetrics } from "./metrics";
import { errorBody, replyNoTable } from "./errors";
import { hexVal } from "../json/parser";
import { stripRoutingHeaders } from "./router";

export namespace ModelsAnswer {
  /** Not a models-endpoint request: the caller goes on as before. */
  export const NotMine: i32 = -1;
  /** Handled, the request continues (an unknown name under unknown_model: passthrough). */
  export const Continue: i32 = 0;
  /** A local reply was sent. */
  export const Replied: i32 = 1;
}

const PATH = utf8(":path");
const METHOD = utf8(":method");
const CONTENT_TYPE = utf8("content-type");
const JSON_TYPE = utf8("application/json");
const RETRY_AFTER = utf8("retry-after");
const JSON_HEADERS = serializeHeaders([CONTENT_TYPE, JSON_TYPE]);
const DETAILS_LIST = utf8("gateway_models_list");
const DETAILS_MODEL = utf8("gateway_model");
const DETAILS_NOT_FOUND = utf8("gateway_model_not_found");


/** The decoded {name}: at most MAX_NAME bytes kept (longer cannot be a model name). */
const MAX_NAME: usize = 256;
const NAME: usize = memory.data(264);
let nameLen: usize = 0;
let nameTooLong: bool = false;

const NOT_FOUND_PREFIX = utf8('{"error":{"message":"The model `');
const NOT_FOUND_SUFFIX = utf8('` does not exist","type":"invalid_request_error","param":"model","code":"model_not_found"}}');
const ELLIPSIS = utf8("…");
const REPLACEMENT = utf8("\\ufffd");
/** 404 body scratch: prefix + 256 × 6 (worst escape) + "…" + suffix < 2048. */
const BODY_SCRATCH: usize = memory.data(2048);

/** Percent-decodes [p, end) into NAME (a '%' not followed by two hex digits stays literal). */
function decodeName(p: usize, end: usize): void {
  nameLen = 0;
  nameTooLong = false;
  while (p < end) {
    let b = <u32>load<u8>(p);
    let step: usize = 1;
    if (b == 0x25 && end - p >= 3) {
      const hi = hexVal(load<u8>(p + 1));
      const lo = hexVal(load<u8>(p + 2));
      if (hi >= 0 && lo >= 0) { b = <u32>((hi << 4) | lo); step = 3; }
    }
    if (nameLen == MAX_NAME) { nameTooLong = true; return; }
    store<u8>(NAME + nameLen, <u8>b);
    nameLen++;
    p += step;
  }
}

@inline function put(at: usize, b: ArrayBuffer): usize {
  const n = <usize>b.byteLength;
  memory.copy(at, changetype<usize>(b), n);
  return at + n;
}

/** 404 model_not_found for the decoded name, written into BODY_SCRATCH. */
function replyNotFound(): void {
  let at = put(BODY_SCRATCH, NOT_FOUND_PREFIX);
  for (let i: usize = 0; i < nameLen; i++) {
    const b = load<u8>(NAME + i);
    if (b == 0x22 || b == 0x5c) { store<u8>(at, 0x5c); store<u8>(at + 1, b); at += 2; }
    else if (b >= 0x20 && b < 0x7f) { store<u8>(at, b); at++; }
    else at = put(at, REPLACEMENT); // control or non-ASCII byte: never a model name; keep the JSON valid
  }
  if (nameTooLong) at = put(at, ELLIPSIS);
  at = put(at, NOT_FOUND_SUFFIX);
  sendLocalResponseRaw(404, DETAILS_NOT_FOUND, BODY_SCRATCH, at - BODY_SCRATCH, JSON_HEADERS);
}


/** GET or HEAD (methods are case-sensitive). */
function isGetOrHead(): bool {
  if (!headerGet(MapType.RequestHeaders, METHOD)) return false;
  const p = gotPtr;
  const n = gotLen;
  const ok = (n == 3 && load<u8>(p) == 0x47 && load<u8>(p + 1) == 0x45 && load<u8>(p + 2) == 0x54) ||
    (n == 4 && load<u8>(p) == 0x48 && load<u8>(p + 1) == 0x45 && load<u8>(p + 2) == 0x41 && load<u8>(p + 3) == 0x44);
  headerRelease();
  return ok;
}

/**
 * Answers `GET|HEAD {api_prefix}/models[?…]` and `…/models/{name}[?…]` (name percent-decoded; it
 * may contain '/'). Returns a ModelsAnswer.
 */
export function answerModels(c: Config, m: GatewayMetrics, table: RoutingTable | null): i32 {
  if (!headerGet(MapType.RequestHeaders, PATH)) return ModelsAnswer.NotMine;
  const p = gotPtr;
  const n = gotLen;
  const prefix = c.modelsPathBytes;
  const pn = <usize>prefix.byteLength;
  if (n < pn || memory.compare(p, changetype<usize>(prefix), pn) != 0) { headerRelease(); return ModelsAnswer.NotMine; }
  let single = false;
  if (n > pn) {
    const next = load<u8>(p + pn);
    if (next == 0x2f) single = true;
    else if (next != 0x3f) { headerRelease(); return ModelsAnswer.NotMine; } // e.g. /models-foo
  }
  if (single) {
    let end = p + pn + 1;
    while (end < p + n && load<u8>(end) != 0x3f) end++;
    decodeName(p + pn + 1, end);
  }
  headerRelease();
  if (!isGetOrHead()) return ModelsAnswer.NotMine;

  if (table === null) {
    incrementMetric(m.modelsEndpoint);
    replyNoTable(c);
    return ModelsAnswer.Replied;
  }
  const list = table.modelsList;
  if (!single) {
    incrementMetric(m.modelsEndpoint);
    sendLocalResponse(200, DETAILS_LIST, list.body, JSON_HEADERS);
    return ModelsAnswer.Replied;
  }
  if (!nameTooLong) {
    const i = list.find(NAME, nameLen);
    if (i >= 0) {
      incrementMetric(m.modelsEndpoint);
      sendLocalResponseRaw(200, DETAILS_MODEL, list.spanStart(i), list.spanLen(i), JSON_HEADERS);
      return ModelsAnswer.Replied;
    }
    if (table.lookup(NAME, nameLen) !== null) {
      // Ours, but its deployment has no instance: not listed, so not found either.
      incrementMetric(m.modelsEndpoint);
      replyNotFound();
      return ModelsAnswer.Replied;
    }
  }
  incrementMetric(m.unknownModel);
  if (!c.unknownModelReject) {
    stripRoutingHeaders(c);
    return ModelsAnswer.Continue;
  }
  incrementMetric(m.modelsEndpoint);
  replyNotFound();
  return ModelsAnswer.Replied;
}
