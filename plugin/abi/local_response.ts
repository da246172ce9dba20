// Local replies (the plugin answers instead of the upstream).
import { proxy_send_local_response } from "./imports";

/** headers: a serialized header map (see headers.ts). */
export function sendLocalResponse(status: u32, details: ArrayBuffer, body: ArrayBuffer, headers: ArrayBuffer): u32 {
  return proxy_send_local_response(status,
    changetype<usize>(details), <usize>details.byteLength,
    changetype<usize>(body), <usize>body.byteLength,
    changetype<usize>(headers), <usize>headers.byteLength, -1);
}

/** Same, with the body as raw bytes (e.g. a span of a prebuilt buffer). */
export function sendLocalResponseRaw(status: u32, details: ArrayBuffer, bodyPtr: usize, bodyLen: usize, headers: ArrayBuffer): u32 {
  return proxy_send_local_response(status,
    changetype<usize>(details), <usize>details.byteLength,
    bodyPtr, bodyLen,
    changetype<usize>(headers), <usize>headers.byteLength, -1);
}
