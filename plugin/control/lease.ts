// The poll lease: one VM per Envoy process long-polls the control service. The holder renews on every
// tick; any VM takes it over once it has expired (holder stuck or gone). Only a ticking root takes it
// (never on_configure: the configuration canary is killed right after, without on_done, and would hold
// it until it expires). CAS on an existing key makes takeover single-winner, but a set with cas 0 or on
// a missing key always succeeds (cpp-host SharedData::set): two VMs can both "win" the first lease, so
// the winner re-reads the key and holds the lease only if its own id is there.
import { sharedCas, sharedGet, sharedLen, sharedPtr, sharedRelease, sharedSet } from "../abi/shared_data";
import { ByteWriter } from "../abi/bytes";
import { Status } from "../abi/types";
import { POLL_LEASE_KEY } from "./keys";

const writer = new ByteWriter(48);

/** Parses "<holder> <expires>" from (ptr, len); returns false if malformed. */
let parsedHolder: u64 = 0;
let parsedExpires: u64 = 0;

function parseLease(ptr: usize, len: usize): bool {
  let i: usize = 0;
  let holder: u64 = 0;
  let expires: u64 = 0;
  let digits = 0;
  while (i < len && load<u8>(ptr + i) != 0x20) {
    const c = <u32>load<u8>(ptr + i) - 0x30;
    if (c > 9 || ++digits > 19) return false;
    holder = holder * 10 + c;
    i++;
  }
  if (i >= len || digits == 0) return false;
  i++;
  digits = 0;
  while (i < len) {
    const c = <u32>load<u8>(ptr + i) - 0x30;
    if (c > 9 || ++digits > 19) return false;
    expires = expires * 10 + c;
    i++;
  }
  if (digits == 0) return false;
  parsedHolder = holder;
  parsedExpires = expires;
  return true;
}

/** Takes or renews the lease for `holder` until now + ttl. True when this worker holds it. */
export function holdLease(holder: u64, nowMs: u64, ttlMs: u64): bool {
  const st = sharedGet(POLL_LEASE_KEY);
  let cas: u32 = 0;
  if (st == Status.Ok) {
    cas = sharedCas;
    const ok = parseLease(sharedPtr, sharedLen);
    sharedRelease();
    if (ok && parsedHolder != holder && nowMs < parsedExpires) return false;
  } else if (st != Status.NotFound) {
    return false;
  }
  writer.len = 0;
  writer.uint(holder).byte(0x20).uint(nowMs + ttlMs);
  if (sharedSet(POLL_LEASE_KEY, writer.ptr, <usize>writer.len, cas) != Status.Ok) return false;
  if (sharedGet(POLL_LEASE_KEY) != Status.Ok) return false;
  const mine = parseLease(sharedPtr, sharedLen) && parsedHolder == holder;
  sharedRelease();
  return mine;
}

/** Gives the lease up (at shutdown) so another worker takes over on its next tick. */
export function releaseLease(holder: u64): void {
  if (sharedGet(POLL_LEASE_KEY) != Status.Ok) return;
  const cas = sharedCas;
  const ok = parseLease(sharedPtr, sharedLen);
  sharedRelease();
  if (!ok || parsedHolder != holder) return;
  writer.len = 0;
  writer.uint(holder).byte(0x20).uint(0);
  sharedSet(POLL_LEASE_KEY, writer.ptr, <usize>writer.len, cas);
}
