// Outgoing HTTP calls (answered in proxy_on_http_call_response of the calling root context).
import { proxy_get_buffer_bytes, proxy_http_call } from "./imports";
import { OUT_LEN, OUT_PTR, freeOut, outLen, outPtr, resetOut } from "./memory";
import { BufferType, MapType, Status } from "./types";
import { headerPairs, serializeHeaders } from "./headers";
import { buffersEqual, utf8 } from "./bytes";

const TOKEN_OUT: usize = memory.data(4);
const EMPTY_MAP: usize = memory.data(4); // u32 count = 0

/** Token of the last successful httpCall. */
export let callToken: u32 = 0;

/** Dispatches a call; returns the host status (Ok → token in callToken). */
export function httpCall(cluster: ArrayBuffer, headerPairsList: ArrayBuffer[], body: ArrayBuffer | null, timeoutMs: u32): u32 {
  const headers = serializeHeaders(headerPairsList);
  store<u32>(TOKEN_OUT, 0);
  const bodyPtr: usize = body === null ? <usize>0 : changetype<usize>(body);
  const bodyLen: usize = body === null ? <usize>0 : <usize>body.byteLength;
  const st = proxy_http_call(changetype<usize>(cluster), <usize>cluster.byteLength,
    changetype<usize>(headers), <usize>headers.byteLength, bodyPtr, bodyLen, EMPTY_MAP, 4, timeoutMs, TOKEN_OUT);
  callToken = load<u32>(TOKEN_OUT);
  return st;
}

/** Body bytes of the response being delivered (raw host buffer; caller frees with heap.free), or 0. */
export let responseBodyPtr: usize = 0;
export let responseBodyLen: usize = 0;

export function takeResponseBody(size: usize): bool {
  responseBodyPtr = 0;
  responseBodyLen = 0;
  if (size == 0) return true;
  resetOut();
  const st = proxy_get_buffer_bytes(BufferType.HttpCallResponseBody, 0, <u32>size, OUT_PTR, OUT_LEN);
  if (st != Status.Ok) { freeOut(outPtr()); return false; }
  responseBodyPtr = outPtr();
  responseBodyLen = responseBodyPtr == 0 ? 0 : outLen();
  return true;
}

const STATUS_KEY = utf8(":status");

/** The :status of the response being delivered; 0 when absent (reset/timeout) or unparsable. */
export function responseStatus(): u32 {
  const pairs = headerPairs(MapType.HttpCallResponseHeaders);
  if (pairs === null) return 0;
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    if (buffersEqual(pairs[i], STATUS_KEY)) {
      const v = pairs[i + 1];
      if (v.byteLength != 3) return 0;
      let s: u32 = 0;
      for (let j = 0; j < 3; j++) {
        const c = <u32>load<u8>(changetype<usize>(v) + <usize>j);
        if (c < 0x30 || c > 0x39) return 0;
        s = s * 10 + c - 0x30;
      }
      return s;
    }
  }
  return 0;
}
