// Shared queues (process-wide per vm_id): a root context registers a queue by name; anyone who resolves
// the name can enqueue, and the host posts on_queue_ready to the registering root on its own thread.
import { proxy_dequeue_shared_queue, proxy_enqueue_shared_queue, proxy_register_shared_queue, proxy_resolve_shared_queue } from "./imports";
import { OUT_AUX, OUT_LEN, OUT_PTR, freeOut, outPtr, resetOut } from "./memory";
import { Status } from "./types";

/** Registers (or takes over) the queue `name` for the calling root; 0 when the host refused. */
export function registerQueue(name: ArrayBuffer): u32 {
  store<u32>(OUT_AUX, 0);
  const st = proxy_register_shared_queue(changetype<usize>(name), <usize>name.byteLength, OUT_AUX);
  return st == Status.Ok ? load<u32>(OUT_AUX) : 0;
}

/** The token of queue `name` in this vm_id (empty vm_id: the caller's), 0 when there is none. */
export function resolveQueue(name: ArrayBuffer): u32 {
  store<u32>(OUT_AUX, 0);
  const st = proxy_resolve_shared_queue(0, 0, changetype<usize>(name), <usize>name.byteLength, OUT_AUX);
  return st == Status.Ok ? load<u32>(OUT_AUX) : 0;
}

export function enqueue(token: u32, dataPtr: usize, dataLen: usize): u32 {
  return proxy_enqueue_shared_queue(token, dataPtr, dataLen);
}

/** Dequeues and drops every item; returns how many there were (bounded). */
export function drainQueue(token: u32, max: i32): i32 {
  let n = 0;
  while (n < max) {
    resetOut();
    const st = proxy_dequeue_shared_queue(token, OUT_PTR, OUT_LEN);
    freeOut(outPtr());
    if (st != Status.Ok) break;
    n++;
  }
  return n;
}
