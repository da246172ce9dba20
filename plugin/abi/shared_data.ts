// Shared data (process-wide per vm_id, bytes + CAS): the only state shared between worker VMs.
import { proxy_get_shared_data, proxy_set_shared_data } from "./imports";
import { OUT_AUX, OUT_LEN, OUT_PTR, freeOut, outLen, outPtr, resetOut } from "./memory";
import { Status } from "./types";

/** Result of the last sharedGet: value (host buffer, owned by caller until sharedRelease) and CAS. */
export let sharedPtr: usize = 0;
export let sharedLen: usize = 0;
export let sharedCas: u32 = 0;

/** Reads a key. Returns the status (Ok / NotFound / …); on Ok read sharedPtr/sharedLen/sharedCas. */
export function sharedGet(key: ArrayBuffer): u32 {
  resetOut();
  const st = proxy_get_shared_data(changetype<usize>(key), <usize>key.byteLength, OUT_PTR, OUT_LEN, OUT_AUX);
  sharedPtr = outPtr();
  sharedLen = sharedPtr == 0 ? 0 : outLen();
  sharedCas = load<u32>(OUT_AUX);
  if (st != Status.Ok) {
    freeOut(sharedPtr);
    sharedPtr = 0;
    sharedLen = 0;
  }
  return st;
}

export function sharedRelease(): void {
  freeOut(sharedPtr);
  sharedPtr = 0;
  sharedLen = 0;
}

/** Writes a key; cas 0 writes unconditionally, otherwise CasMismatch when someone wrote in between. */
export function sharedSet(key: ArrayBuffer, valuePtr: usize, valueLen: usize, cas: u32): u32 {
  return proxy_set_shared_data(changetype<usize>(key), <usize>key.byteLength, valuePtr, valueLen, cas);
}
