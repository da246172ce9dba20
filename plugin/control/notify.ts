// Table notifications between the VMs of one Envoy. Envoy runs one VM per worker (and one on the main
// thread); only one of them polls the control service. So that the others adopt a new table at once
// rather than on their next tick, every root that ticks listens on a shared queue of its own, named by
// its worker sequence, and lists that sequence in shared data; the VM that adopts a table from the
// control service enqueues a one-byte nudge to each listed queue, and Envoy posts on_queue_ready to that
// root on its own thread (cpp-host SharedQueue::enqueue → dispatcher post), where it reads the table
// from shared data. A root lists itself on its first tick, never in on_configure: the configuration
// canary runs on_configure and is killed without on_done, and must leave no queue that fills forever.
// It takes itself off the list in on_done.
import { ByteWriter, parseDecimal, utf8 } from "../abi/bytes";
import { enqueue, registerQueue, resolveQueue } from "../abi/queues";
import { sharedCas, sharedGet, sharedLen, sharedPtr, sharedRelease, sharedSet } from "../abi/shared_data";
import { Status } from "../abi/types";
import { TABLE_LISTENERS_KEY, TABLE_QUEUE_PREFIX } from "./keys";

/** Listeners beyond this many (an Envoy with hundreds of workers) fall back to their tick. */
const MAX_LISTENERS: i32 = 512;
const MAX_ATTEMPTS: i32 = 8;
const NUDGE: usize = memory.data<u8>([0x31]);

function queueName(seq: u32): ArrayBuffer {
  return utf8(TABLE_QUEUE_PREFIX + seq.toString());
}

/** Reads the listed sequences into `out`; returns the key's cas (0 when absent). Malformed entries are skipped. */
function readListeners(out: u32[]): u32 {
  out.length = 0;
  if (sharedGet(TABLE_LISTENERS_KEY) != Status.Ok) return 0;
  const cas = sharedCas;
  const p = sharedPtr;
  const n = sharedLen;
  let start: usize = 0;
  for (let i: usize = 0; i <= n; i++) {
    if (i == n || load<u8>(p + i) == 0x20) {
      if (i > start && out.length < MAX_LISTENERS) {
        const v = parseDecimal(p + start, i - start);
        if (v >= 0 && v <= <i64>u32.MAX_VALUE) out.push(<u32>v);
      }
      start = i + 1;
    }
  }
  sharedRelease();
  return cas;
}

function writeListeners(list: u32[], cas: u32): u32 {
  const w = new ByteWriter(list.length * 11 + 8);
  for (let i = 0; i < list.length; i++) {
    if (i > 0) w.byte(0x20);
    w.uint(<u64>unchecked(list[i]));
  }
  return sharedSet(TABLE_LISTENERS_KEY, w.ptr, <usize>w.len, cas);
}

/**
 * Registers this root's queue and lists `seq`. Returns the queue token (0 if the host refused the
 * queue). A set on a missing key always succeeds, so two roots listing themselves at once may overwrite
 * each other: each re-reads until it sees its own entry.
 */
export function listen(seq: u32): u32 {
  const token = registerQueue(queueName(seq));
  if (token == 0) return 0;
  const list = new Array<u32>();
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const cas = readListeners(list);
    if (list.includes(seq) || list.length >= MAX_LISTENERS) break;
    list.push(seq);
    const st = writeListeners(list, cas);
    if (st != Status.Ok && st != Status.CasMismatch) break;
  }
  return token;
}

/** Takes `seq` off the list (on_done). */
export function unlisten(seq: u32): void {
  const list = new Array<u32>();
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const cas = readListeners(list);
    const i = list.indexOf(seq);
    if (i < 0) return;
    list.splice(i, 1);
    if (writeListeners(list, cas) != Status.CasMismatch) return;
  }
}

/** Nudges every listed root but `self`; returns how many queues took the nudge. */
export function notifyListeners(self: u32): i32 {
  const list = new Array<u32>();
  readListeners(list);
  let n = 0;
  for (let i = 0; i < list.length; i++) {
    const seq = unchecked(list[i]);
    if (seq == self) continue;
    const token = resolveQueue(queueName(seq));
    if (token != 0 && enqueue(token, NUDGE, 1) == Status.Ok) n++;
  }
  return n;
}
