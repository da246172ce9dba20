// Abort handler wired with `--use abort=gateway_abort` (asconfig.json): the module then imports no
// `env.abort`. It logs through proxy_log at level critical and traps. It must not allocate (the
// allocator may be the thing that failed), so the message is copied into a static buffer.

@external("env", "proxy_log")
declare function __gateway_abort_log(level: u32, ptr: usize, len: usize): u32;

const ABORT_BUF_SIZE: usize = 512;
const ABORT_BUF: usize = memory.data(512);

function __gateway_abort_put(pos: usize, s: string | null): usize {
  if (s === null) return pos;
  const str = changetype<string>(s);
  const n = <usize>str.length;
  for (let i: usize = 0; i < n && pos < ABORT_BUF_SIZE; i++) {
    const c = <u32>load<u16>(changetype<usize>(str) + (i << 1));
    store<u8>(ABORT_BUF + pos, c < 0x80 ? <u8>c : <u8>0x3f); // non-ASCII → '?'
    pos++;
  }
  return pos;
}

function __gateway_abort_num(pos: usize, v: u32): usize {
  let digits: usize = 1;
  let t = v;
  while (t >= 10) { t /= 10; digits++; }
  if (pos + digits > ABORT_BUF_SIZE) return pos;
  let i = digits;
  t = v;
  do {
    i--;
    store<u8>(ABORT_BUF + pos + i, <u8>(0x30 + t % 10));
    t /= 10;
  } while (i > 0);
  return pos + digits;
}

export function gateway_abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let pos = __gateway_abort_put(0, "gateway plugin abort: ");
  pos = __gateway_abort_put(pos, message);
  pos = __gateway_abort_put(pos, " at ");
  pos = __gateway_abort_put(pos, fileName);
  pos = __gateway_abort_put(pos, ":");
  pos = __gateway_abort_num(pos, line);
  pos = __gateway_abort_put(pos, ":");
  pos = __gateway_abort_num(pos, column);
  __gateway_abort_log(5, ABORT_BUF, pos);
  unreachable();
}
