// Properties (`proxy_get_property`): path segments joined by NUL, e.g. ["upstream", "address"].
import { proxy_get_property } from "./imports";
import { OUT_LEN, OUT_PTR, outPtr, resetOut, takeOutBuffer, freeOut } from "./memory";
import { ByteWriter } from "./bytes";
import { Status } from "./types";

export function getProperty(path: string[]): ArrayBuffer | null {
  const w = new ByteWriter(64);
  for (let i = 0; i < path.length; i++) {
    if (i > 0) w.byte(0);
    w.str(path[i]);
  }
  resetOut();
  const st = proxy_get_property(w.ptr, <usize>w.len, OUT_PTR, OUT_LEN);
  if (st != Status.Ok) { freeOut(outPtr()); return null; }
  return takeOutBuffer();
}
