// Worker sequence numbers from a shared counter (CAS increment): 0, 1, 2, … per VM in the process.
import { sharedCas, sharedGet, sharedLen, sharedPtr, sharedRelease, sharedSet } from "../abi/shared_data";
import { ByteWriter, parseDecimal } from "../abi/bytes";
import { Status } from "../abi/types";
import { WORKER_SEQ_KEY } from "./keys";

/** Returns this VM's sequence number (falls back to `fallback` if shared data keeps failing). */
export function takeWorkerSeq(fallback: u32): u32 {
  const w = new ByteWriter(24);
  for (let attempt = 0; attempt < 16; attempt++) {
    const st = sharedGet(WORKER_SEQ_KEY);
    let cur: i64 = 0;
    let cas: u32 = 0;
    if (st == Status.Ok) {
      cur = parseDecimal(sharedPtr, sharedLen);
      cas = sharedCas;
      sharedRelease();
      if (cur < 0) cur = 0;
    } else if (st != Status.NotFound) {
      return fallback;
    }
    w.len = 0;
    w.uint(<u64>cur + 1);
    const set = sharedSet(WORKER_SEQ_KEY, w.ptr, <usize>w.len, cas);
    if (set == Status.Ok) return <u32>cur;
    if (set != Status.CasMismatch) return fallback;
  }
  return fallback;
}
