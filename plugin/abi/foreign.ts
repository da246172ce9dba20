// Foreign functions (`proxy_call_foreign_function`), e.g. Envoy's `clear_route_cache`.
import { proxy_call_foreign_function } from "./imports";
import { OUT_LEN, OUT_PTR, freeOut, outPtr, resetOut } from "./memory";

/** Calls a host foreign function with raw args; any returned buffer is freed. Returns the status. */
export function callForeign(name: ArrayBuffer, argsPtr: usize, argsLen: usize): u32 {
  resetOut();
  const st = proxy_call_foreign_function(changetype<usize>(name), <usize>name.byteLength, argsPtr, argsLen, OUT_PTR, OUT_LEN);
  freeOut(outPtr());
  return st;
}
