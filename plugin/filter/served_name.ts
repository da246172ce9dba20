// Served names: a deployment's engine serves one model name (vLLM's --served-model-name) and answers 404
// for any other. A request that named the deployment by another name (the model's public name, an
// alias) reaches the engine with the body's top-level "model" rewritten to the served name, and its
// content-length fixed. Only deployments reached by such names pay for it (HotFlag.RENAMES).
import { BufferType, MapType } from "../abi/types";
import { replaceBuffer } from "../abi/buffers";
import { headerGet, headerRelease, headerReplace } from "../abi/headers";
import { ByteWriter, utf8 } from "../abi/bytes";
import { Deployment } from "../table/routing_table";

const CONTENT_LENGTH = utf8("content-length");

/** Does the request's name (ptr, len) differ from the deployment's served name? */
export function needsRename(d: Deployment, ptr: usize, len: usize): bool {
  const served = d.servedNameBytes;
  if (served === null) return false;
  const n = <usize>served.byteLength;
  return n != len || memory.compare(changetype<usize>(served), ptr, len) != 0;
}

/**
 * Replaces the model's JSON string token [tokenStart, tokenEnd) of the buffered body (body, bodyLen)
 * with the served name's token and sets content-length to the new length when the request has one.
 * Returns false when the host refused the buffer change (the body then goes as it was).
 */
export function rewriteModel(d: Deployment, body: usize, bodyLen: usize, tokenStart: usize, tokenEnd: usize): bool {
  const token = d.servedToken;
  if (token === null || tokenStart < body || tokenEnd > body + bodyLen || tokenEnd < tokenStart) return false;
  const tn = <usize>token.byteLength;
  const before = tokenStart - body;
  const after = body + bodyLen - tokenEnd;
  const total = before + tn + after;
  const out = heap.alloc(total);
  memory.copy(out, body, before);
  memory.copy(out + before, changetype<usize>(token), tn);
  memory.copy(out + before + tn, tokenEnd, after);
  const ok = replaceBuffer(BufferType.HttpRequestBody, bodyLen, out, total);
  heap.free(out);
  if (!ok) return false;
  // A chunked request has no content-length: nothing to fix.
  if (headerGet(MapType.RequestHeaders, CONTENT_LENGTH)) {
    headerRelease();
    const n = new ByteWriter(24).uint(<u64>total);
    headerReplace(MapType.RequestHeaders, CONTENT_LENGTH, n.ptr, <usize>n.len);
  }
  return true;
}
