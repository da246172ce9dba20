// Publishing and reading the adopted table through shared data.
// Writer: CAS the bytes key first (never replacing a newer version), then raise the version key
// (CAS, monotonic). So whenever a reader sees version V in the small key, the bytes key already
// holds ≥ V. Readers read the small key every tick and the bytes only when it moved past theirs.
import { sharedCas, sharedGet, sharedLen, sharedPtr, sharedRelease, sharedSet } from "../abi/shared_data";
import { ByteWriter, parseDecimal } from "../abi/bytes";
import { Status } from "../abi/types";
import { TABLE_BYTES_KEY, TABLE_VERSION_KEY } from "./keys";

const MAX_CAS_ATTEMPTS: i32 = 4;

/** Version in the small key; 0 when absent or unreadable. */
export function readSharedVersion(): u64 {
  if (sharedGet(TABLE_VERSION_KEY) != Status.Ok) return 0;
  const v = parseDecimal(sharedPtr, sharedLen);
  sharedRelease();
  return v < 0 ? 0 : <u64>v;
}

/**
 * Reads the bytes key. On success returns its version and leaves the value in
 * (sharedPtr + 8, sharedLen - 8) — the caller must call sharedRelease(). Returns 0 (nothing held) otherwise.
 */
export function readSharedTable(): u64 {
  if (sharedGet(TABLE_BYTES_KEY) != Status.Ok) return 0;
  if (sharedLen < 8) { sharedRelease(); return 0; }
  return load<u64>(sharedPtr);
}

/** Publishes a validated document. Returns false when a newer or equal version is already there. */
export function publishTable(version: u64, docPtr: usize, docLen: usize): bool {
  let written = false;
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const st = sharedGet(TABLE_BYTES_KEY);
    let existing: u64 = 0;
    let cas: u32 = 0;
    if (st == Status.Ok) {
      if (sharedLen >= 8) existing = load<u64>(sharedPtr);
      cas = sharedCas;
      sharedRelease();
    } else if (st != Status.NotFound) {
      return false;
    }
    if (existing >= version) return false;
    const buf = heap.alloc(docLen + 8);
    store<u64>(buf, version);
    memory.copy(buf + 8, docPtr, docLen);
    const set = sharedSet(TABLE_BYTES_KEY, buf, docLen + 8, cas);
    heap.free(buf);
    if (set == Status.Ok) { written = true; break; }
    if (set != Status.CasMismatch) return false;
  }
  if (!written) return false;
  const w = new ByteWriter(24);
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const st = sharedGet(TABLE_VERSION_KEY);
    let current: i64 = 0;
    let cas: u32 = 0;
    if (st == Status.Ok) {
      current = parseDecimal(sharedPtr, sharedLen);
      cas = sharedCas;
      sharedRelease();
    }
    if (current >= 0 && <u64>current >= version) break;
    w.len = 0;
    w.uint(version);
    const set = sharedSet(TABLE_VERSION_KEY, w.ptr, <usize>w.len, cas);
    if (set != Status.CasMismatch) break;
  }
  return true;
}
