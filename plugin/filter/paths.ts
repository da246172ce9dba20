// Paths a routed request may reach on an instance: the OpenAI inference API under api_prefix
// (chat/completions, completions, embeddings, models and models/…) and the deployment's extra_paths.
// The path is normalized first — percent-encoded dots decoded, runs of '/' collapsed, '.' and '..'
// segments resolved — and an encoded '/', an encoded or literal '\', a control byte, or '..' above the
// root refuse it. Anything else naming a managed model gets a 404 and is never forwarded (it would carry
// the instance's API key to whatever the engine serves there: vLLM's admin endpoints, /metrics, …).
import { MapType } from "../abi/types";
import { gotLen, gotPtr, headerGet, headerRelease, headerReplace } from "../abi/headers";
import { utf8 } from "../abi/bytes";
import { Config } from "../config";
import { Deployment } from "../table/routing_table";
import { errorBody, replyError } from "./errors";
import { hexVal } from "../json/parser";

const PATH = utf8(":path");
const METHOD = utf8(":method");
const MAX_PATH: usize = 2048;
const SCRATCH: usize = memory.data(2048);
const MAX_SEGMENTS: i32 = 128;
/** Start offsets (in SCRATCH) of the output's segments, to pop one for '..'. */
const SEGMENTS: usize = memory.data(128 * 4);

const STANDARD: ArrayBuffer[] = [utf8("chat/completions"), utf8("completions"), utf8("embeddings"), utf8("models")];
const MODELS_SLASH = utf8("models/");

/** Length of the normalized path written to SCRATCH, or -1 when the path is refused. */
function normalize(p: usize, n: usize): isize {
  if (n == 0 || load<u8>(p) != 0x2f || n > MAX_PATH) return -1;
  let out: usize = 0;
  let segs: i32 = 0;
  let i: usize = 0;
  while (i < n) {
    // One segment, after the '/' run before it.
    while (i < n && load<u8>(p + i) == 0x2f) i++;
    if (i >= n) break;
    const segOut = out;
    store<u8>(SCRATCH + out, 0x2f);
    out++;
    let dots = 0;
    let other = false;
    while (i < n) {
      const c = <u32>load<u8>(p + i);
      if (c == 0x2f) break;
      if (c == 0x5c || c < 0x20 || c == 0x7f) return -1;
      if (c == 0x25) {
        if (i + 2 >= n) return -1;
        const hi = hexVal(load<u8>(p + i + 1));
        const lo = hexVal(load<u8>(p + i + 2));
        if (hi < 0 || lo < 0) return -1;
        const v = <u32>(hi * 16 + lo);
        if (v == 0x2f || v == 0x5c || v < 0x20 || v == 0x7f) return -1;
        if (v == 0x2e) {
          store<u8>(SCRATCH + out, 0x2e);
          out++;
          dots++;
          i += 3;
          continue;
        }
        // Any other escape is kept as it came (the engine decodes it).
        memory.copy(SCRATCH + out, p + i, 3);
        out += 3;
        other = true;
        i += 3;
        continue;
      }
      store<u8>(SCRATCH + out, <u8>c);
      out++;
      if (c == 0x2e) dots++;
      else other = true;
      i++;
    }
    const segLen = out - segOut - 1;
    if (!other && segLen == 1 && dots == 1) { out = segOut; continue; } // "."
    if (!other && segLen == 2 && dots == 2) { // ".."
      if (segs == 0) return -1;
      segs--;
      out = <usize>load<u32>(SEGMENTS + (<usize>segs << 2));
      continue;
    }
    if (segs >= MAX_SEGMENTS) return -1;
    store<u32>(SEGMENTS + (<usize>segs << 2), <u32>segOut);
    segs++;
  }
  if (out == 0) {
    store<u8>(SCRATCH, 0x2f);
    out = 1;
  }
  return <isize>out;
}

@inline function equalAt(p: usize, n: usize, b: ArrayBuffer): bool {
  return <usize>b.byteLength == n && memory.compare(p, changetype<usize>(b), n) == 0;
}

/** Is the normalized path (SCRATCH, n) one the deployment serves under the prefix? */
function served(c: Config, d: Deployment, n: usize): bool {
  const prefix = c.apiPrefixBytes;
  const pn = <usize>prefix.byteLength;
  if (n <= pn + 1 || memory.compare(SCRATCH, changetype<usize>(prefix), pn) != 0 || load<u8>(SCRATCH + pn) != 0x2f) return false;
  const r = SCRATCH + pn + 1;
  const rn = n - pn - 1;
  for (let k = 0; k < STANDARD.length; k++) if (equalAt(r, rn, unchecked(STANDARD[k]))) return true;
  const ms = <usize>MODELS_SLASH.byteLength;
  if (rn > ms && memory.compare(r, changetype<usize>(MODELS_SLASH), ms) == 0) return true;
  const extra = d.extraPaths;
  for (let k = 0; k < extra.length; k++) if (equalAt(r, rn, unchecked(extra[k]))) return true;
  return false;
}

/**
 * Checks the request's :path for a routed request to `d`. Returns true when it may go upstream (the
 * :path is replaced by its normalized form when that differs); false after a 404 reply.
 */
export function checkPath(c: Config, d: Deployment): bool {
  if (!headerGet(MapType.RequestHeaders, PATH)) {
    refuse("(none)", 6);
    return false;
  }
  const p = gotPtr;
  const total = gotLen;
  let q: usize = 0;
  while (q < total && load<u8>(p + q) != 0x3f) q++;
  const n = normalize(p, q);
  if (n < 0 || !served(c, d, <usize>n)) {
    const shown = String.UTF8.decodeUnsafe(p, total > 200 ? 200 : total);
    headerRelease();
    refuse(shown, total);
    return false;
  }
  const nn = <usize>n;
  if (nn != q || memory.compare(SCRATCH, p, q) != 0) {
    // Forward the normalized path (query kept) so that the engine resolves exactly what was checked.
    const rest = total - q;
    if (nn + rest <= MAX_PATH) {
      memory.copy(SCRATCH + nn, p + q, rest);
      headerReplace(MapType.RequestHeaders, PATH, SCRATCH, nn + rest);
    } else {
      headerRelease();
      refuse("(too long)", total);
      return false;
    }
  }
  headerRelease();
  return true;
}

/** OpenAI's answer to a URL it does not serve: 404 "Invalid URL (METHOD path)". */
function refuse(path: string, total: usize): void {
  let method = "";
  if (headerGet(MapType.RequestHeaders, METHOD)) {
    method = String.UTF8.decodeUnsafe(gotPtr, gotLen > 16 ? 16 : gotLen);
    headerRelease();
  }
  const shown = total > 200 ? path + "…" : path;
  replyError(404, "gateway_path_not_served",
    errorBody("Invalid URL (" + method + " " + shown + "): not an inference path this model's deployment serves", "invalid_request_error", null, "unknown_url"));
}
