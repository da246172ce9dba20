// Host buffers (request body, http-call response body, configuration) read by range.
import { proxy_get_buffer_bytes, proxy_set_buffer_bytes } from "./imports";
import { OUT_LEN, OUT_PTR, freeOut, outLen, outPtr, resetOut } from "./memory";
import { Status } from "./types";

/** Result of the last getBufferBytes: a host block the caller frees with bufferRelease. */
export let bufPtr: usize = 0;
export let bufLen: usize = 0;

export function getBufferBytes(bufferType: u32, start: u32, maxSize: u32): bool {
  resetOut();
  const st = proxy_get_buffer_bytes(bufferType, start, maxSize, OUT_PTR, OUT_LEN);
  bufPtr = outPtr();
  bufLen = bufPtr == 0 ? 0 : outLen();
  if (st != Status.Ok) {
    bufferRelease();
    return false;
  }
  return true;
}

export function bufferRelease(): void {
  freeOut(bufPtr);
  bufPtr = 0;
  bufLen = 0;
}

/** Replaces the whole buffer (Envoy: start 0, length ≥ its size) with (ptr, len). */
export function replaceBuffer(bufferType: u32, oldLen: usize, ptr: usize, len: usize): bool {
  return proxy_set_buffer_bytes(bufferType, 0, <u32>oldLen, ptr, len) == Status.Ok;
}
