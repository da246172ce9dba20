// Memory exchanged with the host. The host allocates the buffers it hands us (header values, bodies,
// shared data) by calling our exported `malloc`: raw TLSF blocks, not GC-managed. We copy or scan
// them and free them with `heap.free`.

/**
 * A static block the next allocation may use instead of the heap (`armScratch`, for one host call whose
 * value is read and released at once: `headerPeek`). Saves a TLSF alloc and free per keyed request.
 */
const SCRATCH_BYTES: usize = 512;
const SCRATCH: usize = memory.data(<i32>SCRATCH_BYTES, 16);
let scratchArmed = false;

/** Allocator export Envoy looks for (proxy-wasm-cpp-host: `malloc`, then `proxy_on_memory_allocate`). */
export function malloc(size: usize): usize {
  if (scratchArmed && size <= SCRATCH_BYTES) {
    scratchArmed = false; // one block per arming: a second allocation in the same call gets the heap
    return SCRATCH;
  }
  return heap.alloc(size);
}

/** The next allocation of at most SCRATCH_BYTES (in the next host call) may be the scratch block. */
@inline export function armScratch(): void { scratchArmed = true; }
@inline export function disarmScratch(): void { scratchArmed = false; }

/** Two u32/usize out-params for `*_ptr_ptr, *_size_ptr` host calls. Static: no allocation per call. */
export const OUT_PTR: usize = memory.data(8);
export const OUT_LEN: usize = memory.data(8);
export const OUT_AUX: usize = memory.data(8);

/** Reads the buffer a host call just returned: (ptr, len). Zero the slots before the call. */
export function resetOut(): void {
  store<u32>(OUT_PTR, 0);
  store<u32>(OUT_LEN, 0);
  store<u32>(OUT_AUX, 0);
}

@inline export function outPtr(): usize { return <usize>load<u32>(OUT_PTR); }
@inline export function outLen(): usize { return <usize>load<u32>(OUT_LEN); }

/** Frees a host-returned buffer (no-op for 0 and for the scratch block, which is never on the heap). */
@inline export function freeOut(ptr: usize): void {
  if (ptr != 0 && ptr != SCRATCH) heap.free(ptr);
}

/** Copies (ptr, len) into a new GC-managed ArrayBuffer. */
export function copyToBuffer(ptr: usize, len: usize): ArrayBuffer {
  const buf = new ArrayBuffer(<i32>len);
  if (len > 0) memory.copy(changetype<usize>(buf), ptr, len);
  return buf;
}

/** Takes the host-returned out buffer as an ArrayBuffer and frees the host block. */
export function takeOutBuffer(): ArrayBuffer {
  const p = outPtr();
  const n = outLen();
  const buf = copyToBuffer(p, p == 0 ? 0 : n);
  freeOut(p);
  return buf;
}
